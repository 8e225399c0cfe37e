//! A read as an audit record: one `SecretRead` record per managed Secret an event covered,
//! keyed by the event's auditID so a retried batch is stored once. The details are a JSON
//! object (stable keys, documented in docs/audit.md) built only from metadata fields.

use chrono::{DateTime, Utc};
use keyturn_audit::{AuditEntry, AuditRecord, KeyedEntries};
use serde::{Deserialize, Serialize};

use super::event::{Event, REASON_ANNOTATION};
use super::index::SecretIndex;

/// The `action` of every read record.
pub const READ_ACTION: &str = "SecretRead";
/// Prefix of the store's idempotency keys for audit events.
const KEY_PREFIX: &str = "k8s-audit:";

/// Bounds on the free-form parts of an event, so a record stays small whatever a caller sends.
const MAX_TEXT: usize = 256;
const MAX_LIST: usize = 16;

/// The `details` of a read record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadDetails {
    pub verb: String,
    /// The Secret read (a ManagedSecret's published or staging Secret).
    pub secret: String,
    /// Its `keyturn.dev/role`: `published`, `staging`.
    #[serde(default)]
    pub secret_role: String,
    /// `object` (a get, or a watch of one name), `namespace` or `cluster` (a list or watch of
    /// every Secret there, recorded against each managed Secret it covered).
    pub scope: String,
    #[serde(rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    /// The authorizer's decision: `allow`, `forbid`, or empty when the event had none.
    pub decision: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    /// The authenticated user when it impersonated the reader (the record's actor).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub impersonated_by: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((index, _)) => format!("{}...", &text[..index]),
        None => text.to_owned(),
    }
}

fn cut_list(items: &[String]) -> Vec<String> {
    items.iter().take(MAX_LIST).map(|item| cut(item)).collect()
}

/// What one batch adds up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub keyed: Vec<KeyedEntries>,
    /// Events that were reads of Secrets (managed or not).
    pub secret_reads: usize,
}

/// The records for the reads of managed Secrets among `events`; everything else is dropped.
/// `now` stands in for an event without timestamps.
pub fn records_for(events: &[Event], index: &SecretIndex, now: DateTime<Utc>) -> Batch {
    let mut batch = Batch::default();
    for event in events {
        let Some(scope) = event.secret_read_scope() else {
            continue;
        };
        batch.secret_reads += 1;
        let covered = index.in_scope(&scope);
        if covered.is_empty() {
            continue;
        }
        let decision = event
            .annotations
            .get(super::event::DECISION_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let impersonated_by = if event.impersonated_user.is_some() {
            cut(&event.user.username)
        } else {
            String::new()
        };
        let entries = covered
            .into_iter()
            .map(|read| {
                let details = ReadDetails {
                    verb: event.verb.clone(),
                    secret: read.secret,
                    secret_role: read.owner.role,
                    scope: scope.as_str().to_owned(),
                    source_ips: cut_list(&event.source_ips),
                    decision: cut(&decision),
                    reason: event
                        .annotations
                        .get(REASON_ANNOTATION)
                        .map(|reason| cut(reason))
                        .unwrap_or_default(),
                    audit_id: cut(&event.audit_id),
                    stage: cut(&event.stage),
                    code: event
                        .response_status
                        .as_ref()
                        .and_then(|status| status.code),
                    user_agent: event.user_agent.as_deref().map(cut).unwrap_or_default(),
                    impersonated_by: impersonated_by.clone(),
                    groups: cut_list(
                        event
                            .impersonated_user
                            .as_ref()
                            .map_or(&event.user.groups, |user| &user.groups),
                    ),
                };
                AuditEntry {
                    time: event.time().unwrap_or(now),
                    actor: cut(event.reader()),
                    action: READ_ACTION.to_owned(),
                    namespace: read.namespace,
                    managed_secret: read.owner.managed_secret,
                    rotation_id: None,
                    step: None,
                    fingerprint: None,
                    outcome: event.outcome().to_owned(),
                    // Serialising plain strings and numbers cannot fail; an empty object would
                    // still leave actor, outcome and time in the record.
                    details: serde_json::to_string(&details).unwrap_or_else(|_| "{}".to_owned()),
                }
            })
            .collect();
        batch.keyed.push(KeyedEntries {
            key: format!("{KEY_PREFIX}{}", event.audit_id),
            entries,
        });
    }
    batch
}

/// A read record back as a read for the summary; `None` for other records.
pub fn read_of(record: &AuditRecord) -> Option<keyturn_core::reads::Read> {
    if record.action != READ_ACTION {
        return None;
    }
    let verb = serde_json::from_str::<ReadDetails>(&record.details)
        .map(|details| details.verb)
        .unwrap_or_default();
    Some(keyturn_core::reads::Read {
        time: record.time,
        user: record.actor.clone(),
        verb,
        allowed: record.outcome == "Allowed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reads::event::parse_event_list;
    use crate::reads::index::Owner;

    fn index() -> SecretIndex {
        let owner = |name: &str, role: &str| Owner {
            managed_secret: name.into(),
            role: role.into(),
        };
        SecretIndex::from_entries([
            (
                "payments".into(),
                "orders-db".into(),
                owner("orders-db", "published"),
            ),
            (
                "payments".into(),
                "orders-db-keyturn-staging".into(),
                owner("orders-db", "staging"),
            ),
            ("shop".into(), "cart".into(), owner("cart", "published")),
        ])
    }

    fn event(audit_id: &str, verb: &str, object_ref: &str, decision: &str) -> String {
        format!(
            r#"{{"auditID":"{audit_id}","stage":"ResponseComplete","verb":"{verb}",
            "user":{{"username":"system:serviceaccount:payments:orders-api","groups":["system:authenticated"]}},
            "sourceIPs":["10.0.0.7","192.168.1.1"],"userAgent":"kubectl/v1.33.0",
            "objectRef":{object_ref},"responseStatus":{{"code":200}},
            "responseObject":{{"data":{{"password":"c2VjcmV0"}}}},
            "requestReceivedTimestamp":"2026-11-22T08:00:00.5Z",
            "annotations":{{"authorization.k8s.io/decision":"{decision}"}}}}"#
        )
    }

    fn parse(items: &[String]) -> Vec<Event> {
        let body = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
            items.join(",")
        );
        parse_event_list(body.as_bytes()).unwrap()
    }

    #[test]
    fn one_record_per_managed_secret_covered() {
        let now: DateTime<Utc> = "2026-11-22T09:00:00Z".parse().unwrap();
        let events = parse(&[
            event(
                "get-1",
                "get",
                r#"{"resource":"secrets","namespace":"payments","name":"orders-db"}"#,
                "allow",
            ),
            event(
                "get-unmanaged",
                "get",
                r#"{"resource":"secrets","namespace":"payments","name":"other"}"#,
                "allow",
            ),
            event(
                "list-ns",
                "list",
                r#"{"resource":"secrets","namespace":"payments"}"#,
                "forbid",
            ),
            event("watch-all", "watch", r#"{"resource":"secrets"}"#, "allow"),
            event(
                "cm",
                "get",
                r#"{"resource":"configmaps","namespace":"payments","name":"orders-db"}"#,
                "allow",
            ),
        ]);
        let batch = records_for(&events, &index(), now);
        assert_eq!(batch.secret_reads, 4);
        let summary: Vec<(String, usize)> = batch
            .keyed
            .iter()
            .map(|group| (group.key.clone(), group.entries.len()))
            .collect();
        assert_eq!(
            summary,
            [
                ("k8s-audit:get-1".to_owned(), 1),
                ("k8s-audit:list-ns".to_owned(), 2),
                ("k8s-audit:watch-all".to_owned(), 3)
            ]
        );
        let get = &batch.keyed[0].entries[0];
        assert_eq!(get.actor, "system:serviceaccount:payments:orders-api");
        assert_eq!(
            (get.namespace.as_str(), get.managed_secret.as_str()),
            ("payments", "orders-db")
        );
        assert_eq!(
            (get.action.as_str(), get.outcome.as_str()),
            ("SecretRead", "Allowed")
        );
        assert_eq!(
            get.time,
            "2026-11-22T08:00:00.5Z".parse::<DateTime<Utc>>().unwrap()
        );
        let details: ReadDetails = serde_json::from_str(&get.details).unwrap();
        assert_eq!(details.source_ips, ["10.0.0.7", "192.168.1.1"]);
        assert_eq!(
            (details.scope.as_str(), details.secret_role.as_str()),
            ("object", "published")
        );
        assert_eq!(details.code, Some(200));
        assert_eq!(batch.keyed[1].entries[0].outcome, "Denied");
        for group in &batch.keyed {
            for entry in &group.entries {
                assert!(!entry.details.contains("c2VjcmV0"), "{}", entry.details);
            }
        }
    }

    #[test]
    fn hostile_sizes_are_cut() {
        let long = "x".repeat(10_000);
        let mut events = parse(&[event(
            "big",
            "get",
            r#"{"resource":"secrets","namespace":"payments","name":"orders-db"}"#,
            "allow",
        )]);
        events[0].user_agent = Some(long.clone());
        events[0].source_ips = vec![long.clone(); 1000];
        let batch = records_for(&events, &index(), Utc::now());
        let entry = &batch.keyed[0].entries[0];
        assert!(entry.details.len() < 8 * 1024, "{}", entry.details.len());
        assert!(entry.validate().is_ok());
    }

    #[test]
    fn records_read_back_as_reads() {
        let events = parse(&[event(
            "g",
            "watch",
            r#"{"resource":"secrets","namespace":"shop","name":"cart"}"#,
            "allow",
        )]);
        let entry = records_for(&events, &index(), Utc::now())
            .keyed
            .remove(0)
            .entries
            .remove(0);
        let record = AuditRecord::chain(None, entry);
        let read = read_of(&record).unwrap();
        assert_eq!((read.verb.as_str(), read.allowed), ("watch", true));
        assert_eq!(read.user, "system:serviceaccount:payments:orders-api");
    }
}
