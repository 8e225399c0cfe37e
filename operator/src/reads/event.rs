//! The `audit.k8s.io/v1` EventList the API server posts, reduced to the fields a read record
//! needs, and the rule for which events are reads of Secrets. Request and response bodies
//! (`requestObject`, `responseObject`) are not fields here: serde skips them without keeping
//! them, so a hostile caller sending RequestResponse-level events cannot get Secret data into
//! anything keyturn keeps.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

pub const API_VERSION: &str = "audit.k8s.io/v1";
pub const KIND: &str = "EventList";
/// The annotation the authorizer sets: `allow` or `forbid`.
pub const DECISION_ANNOTATION: &str = "authorization.k8s.io/decision";
pub const REASON_ANNOTATION: &str = "authorization.k8s.io/reason";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventListEnvelope {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    items: Option<Vec<Event>>,
}

/// One audit event (the fields keyturn reads; every other field is ignored).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: String,
    pub verb: String,
    #[serde(default)]
    pub user: UserInfo,
    #[serde(default)]
    pub impersonated_user: Option<UserInfo>,
    #[serde(default, rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub object_ref: Option<ObjectReference>,
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    #[serde(default)]
    pub request_received_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub stage_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub api_group: Option<String>,
    #[serde(default)]
    pub subresource: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ResponseStatus {
    #[serde(default)]
    pub code: Option<i32>,
}

/// Why a body is not an EventList keyturn accepts (the webhook answers 400).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not a valid audit EventList: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "expected apiVersion {API_VERSION} kind {KIND}, got apiVersion {api_version:?} kind {kind:?}"
    )]
    WrongKind { api_version: String, kind: String },
}

/// Parses one webhook body. Unknown fields (and the request/response objects) are ignored.
pub fn parse_event_list(body: &[u8]) -> Result<Vec<Event>, ParseError> {
    let envelope: EventListEnvelope = serde_json::from_slice(body)?;
    if envelope.api_version != API_VERSION || envelope.kind != KIND {
        return Err(ParseError::WrongKind {
            api_version: envelope.api_version,
            kind: envelope.kind,
        });
    }
    Ok(envelope.items.unwrap_or_default())
}

/// Which Secrets a read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One named Secret (a get, or a list/watch narrowed to one name by a field selector, which
    /// the API server reports as the object's name).
    Object { namespace: &'a str, name: &'a str },
    /// Every Secret of a namespace.
    Namespace(&'a str),
    /// Every Secret of the cluster.
    Cluster,
}

impl Scope<'_> {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Object { .. } => "object",
            Scope::Namespace(_) => "namespace",
            Scope::Cluster => "cluster",
        }
    }
}

/// Stages that say the response (or its stream) exists. RequestReceived does not (and carries no
/// authorization decision yet). A watch logs ResponseStarted when its stream begins and
/// ResponseComplete when it ends, with one auditID: the store keeps the first one it receives
/// (see `append_batch_once`), so a watch is recorded once, as early as the policy allows.
const READ_STAGES: [&str; 3] = ["ResponseStarted", "ResponseComplete", "Panic"];
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

impl Event {
    /// The Secrets this event read, or `None` when it is not a read of core/v1 Secrets at a
    /// stage that says a response was produced.
    pub fn secret_read_scope(&self) -> Option<Scope<'_>> {
        if !READ_STAGES.contains(&self.stage.as_str()) || !READ_VERBS.contains(&self.verb.as_str())
        {
            return None;
        }
        let object = self.object_ref.as_ref()?;
        let core_group = object.api_group.as_deref().is_none_or(str::is_empty);
        if object.resource.as_deref() != Some("secrets")
            || !core_group
            || object
                .subresource
                .as_deref()
                .is_some_and(|sub| !sub.is_empty())
        {
            return None;
        }
        let namespace = object.namespace.as_deref().filter(|ns| !ns.is_empty());
        let name = object.name.as_deref().filter(|name| !name.is_empty());
        Some(match (namespace, name) {
            (Some(namespace), Some(name)) => Scope::Object { namespace, name },
            (Some(namespace), None) => Scope::Namespace(namespace),
            // A name without a namespace cannot address a Secret; treat it as the whole cluster
            // rather than dropping a read.
            (None, _) => Scope::Cluster,
        })
    }

    /// Who read: the impersonated user when there is one (authorization was for them).
    pub fn reader(&self) -> &str {
        let user = self
            .impersonated_user
            .as_ref()
            .map_or(self.user.username.as_str(), |user| user.username.as_str());
        if user.is_empty() { "(unknown)" } else { user }
    }

    /// `Allowed`, `Denied` or `Unknown`: the record's outcome.
    pub fn outcome(&self) -> &'static str {
        match self
            .annotations
            .get(DECISION_ANNOTATION)
            .map(String::as_str)
        {
            Some("allow") => "Allowed",
            Some("forbid") => "Denied",
            _ => "Unknown",
        }
    }

    /// When the read happened: when the API server received it.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.request_received_timestamp.or(self.stage_timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real-shaped Metadata-level event, as kube-apiserver 1.33 sends it, plus a
    /// responseObject a hostile caller could add.
    pub(crate) fn event_json(audit_id: &str, stage: &str, verb: &str, object_ref: &str) -> String {
        format!(
            r#"{{"level":"Metadata","auditID":"{audit_id}","stage":"{stage}",
            "requestURI":"/api/v1/namespaces/payments/secrets/orders-db","verb":"{verb}",
            "user":{{"username":"system:serviceaccount:payments:orders-api","uid":"u-1",
              "groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"],
              "extra":{{"authentication.kubernetes.io/pod-name":["orders-api-7d9"]}}}},
            "sourceIPs":["10.0.0.7"],"userAgent":"orders-api/1.0",
            "objectRef":{object_ref},
            "responseStatus":{{"metadata":{{}},"code":200}},
            "responseObject":{{"kind":"Secret","data":{{"password":"Y2FuYXJ5"}}}},
            "requestReceivedTimestamp":"2026-11-22T08:00:00.123456Z",
            "stageTimestamp":"2026-11-22T08:00:00.130000Z",
            "annotations":{{"authorization.k8s.io/decision":"allow",
              "authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"orders-db-read/payments\""}},
            "someFutureField":{{"x":1}}}}"#
        )
    }

    pub(crate) fn list_json(items: &[String]) -> String {
        format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
            items.join(",")
        )
    }

    const SECRET: &str =
        r#"{"resource":"secrets","namespace":"payments","name":"orders-db","apiVersion":"v1"}"#;

    #[test]
    fn parses_a_real_shaped_event_list_ignoring_unknown_fields_and_bodies() {
        let body = list_json(&[event_json("a-1", "ResponseComplete", "get", SECRET)]);
        let events = parse_event_list(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.audit_id, "a-1");
        assert_eq!(event.reader(), "system:serviceaccount:payments:orders-api");
        assert_eq!(event.user.groups.len(), 3);
        assert_eq!(event.source_ips, ["10.0.0.7"]);
        assert_eq!(event.outcome(), "Allowed");
        assert_eq!(
            event.time().unwrap().to_rfc3339(),
            "2026-11-22T08:00:00.123456+00:00"
        );
        assert_eq!(
            event.secret_read_scope(),
            Some(Scope::Object {
                namespace: "payments",
                name: "orders-db"
            })
        );
        // Nothing of the response body survives parsing.
        assert!(!format!("{event:?}").contains("Y2FuYXJ5"));
    }

    #[test]
    fn rejects_malformed_bodies_and_other_kinds() {
        for body in [
            "",
            "{",
            r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"stage":"x"}]}"#,
        ] {
            assert!(
                matches!(parse_event_list(body.as_bytes()), Err(ParseError::Json(_))),
                "{body}"
            );
        }
        for body in [
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1"}"#,
            r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}"#,
            r#"{"items":[]}"#,
            // serde reads an array as the struct's fields in order: still not an EventList.
            "[]",
        ] {
            assert!(
                matches!(
                    parse_event_list(body.as_bytes()),
                    Err(ParseError::WrongKind { .. })
                ),
                "{body}"
            );
        }
        let empty = parse_event_list(br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}"#);
        assert!(empty.unwrap().is_empty());
    }

    fn scope_of(stage: &str, verb: &str, object_ref: &str) -> Option<String> {
        let body = list_json(&[event_json("a", stage, verb, object_ref)]);
        let events = parse_event_list(body.as_bytes()).unwrap();
        events[0]
            .secret_read_scope()
            .map(|scope| format!("{scope:?}"))
    }

    #[test]
    fn keeps_only_reads_of_core_secrets_at_response_stages() {
        for stage in ["ResponseStarted", "ResponseComplete", "Panic"] {
            for verb in ["get", "list", "watch"] {
                assert!(scope_of(stage, verb, SECRET).is_some(), "{stage} {verb}");
            }
        }
        assert_eq!(scope_of("RequestReceived", "get", SECRET), None);
        for verb in ["create", "update", "patch", "delete", "deletecollection"] {
            assert_eq!(scope_of("ResponseComplete", verb, SECRET), None, "{verb}");
        }
        let configmap = r#"{"resource":"configmaps","namespace":"payments","name":"orders-db"}"#;
        assert_eq!(scope_of("ResponseComplete", "get", configmap), None);
        let other_group =
            r#"{"resource":"secrets","namespace":"p","name":"n","apiGroup":"example.com"}"#;
        assert_eq!(scope_of("ResponseComplete", "get", other_group), None);
        let subresource =
            r#"{"resource":"secrets","namespace":"p","name":"n","subresource":"status"}"#;
        assert_eq!(scope_of("ResponseComplete", "get", subresource), None);
        assert_eq!(scope_of("ResponseComplete", "get", "null"), None);

        let namespace = r#"{"resource":"secrets","namespace":"payments","apiVersion":"v1"}"#;
        assert_eq!(
            scope_of("ResponseComplete", "list", namespace).as_deref(),
            Some(r#"Namespace("payments")"#)
        );
        let cluster = r#"{"resource":"secrets","apiVersion":"v1"}"#;
        assert_eq!(
            scope_of("ResponseStarted", "watch", cluster).as_deref(),
            Some("Cluster")
        );
    }

    #[test]
    fn reader_and_outcome() {
        let body = list_json(&[event_json("a", "ResponseComplete", "get", SECRET)]);
        let mut event = parse_event_list(body.as_bytes()).unwrap().remove(0);
        event.impersonated_user = Some(UserInfo {
            username: "alice".into(),
            groups: vec![],
        });
        assert_eq!(event.reader(), "alice");
        event
            .annotations
            .insert(DECISION_ANNOTATION.into(), "forbid".into());
        assert_eq!(event.outcome(), "Denied");
        event.annotations.clear();
        assert_eq!(event.outcome(), "Unknown");
        event.impersonated_user = None;
        event.user.username.clear();
        assert_eq!(event.reader(), "(unknown)");
    }
}
