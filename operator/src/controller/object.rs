//! Reads a watched ManagedSecret into the controller's view of it. The controller watches
//! untyped objects so that a spec which does not even deserialise still reaches `reconcile`
//! and ends with a condition naming the bad field, instead of failing silently in the watcher.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keyturn_crds::validate::{FieldError, ValidatedSpec, validate_spec};
use keyturn_crds::{ManagedSecretSpec, ManagedSecretStatus};
use kube::ResourceExt;

use super::error::ReconcileError;
use super::resource::{GROUP, KIND, ManagedSecretResource, VERSION};

/// Longest ManagedSecret name (the CRD's CEL rule): `<name>-keyturn-staging` must stay a valid
/// Secret name.
const MAX_NAME_CHARACTERS: usize = 200;

/// Annotation whose value, when it changes, requests one rotation now.
pub const ROTATE_REQUEST_ANNOTATION: &str = "keyturn.dev/rotate-requested-at";

/// A watched ManagedSecret, parsed as far as it parses.
#[derive(Debug, Clone)]
pub struct ManagedSecretObject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub resource_version: Option<String>,
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
    pub rotate_request: Option<String>,
    /// The spec, or every problem found with it (deserialisation or validation).
    pub spec: Result<(ManagedSecretSpec, ValidatedSpec), Vec<FieldError>>,
    /// The persisted status; an unreadable status starts over from empty (it only holds ids
    /// and times, and the staging Secret keeps any credential in flight).
    pub status: ManagedSecretStatus,
    pub status_unreadable: Option<String>,
    /// Read from the API just now rather than from the watch cache, which may lag behind the
    /// controller's own last status write.
    pub fresh: bool,
    pub api_version: String,
    pub kind: String,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to read ManagedSecret {object}: {source}")]
pub struct RefetchError {
    pub object: String,
    #[source]
    pub source: kube::Error,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("ManagedSecret {0} has no namespace, uid or name; it cannot be reconciled")]
    MissingMetadata(String),
}

impl ManagedSecretObject {
    pub fn from_resource(
        object: &ManagedSecretResource,
    ) -> Result<ManagedSecretObject, ObjectError> {
        let name = object.name_any();
        let (Some(namespace), Some(uid)) = (object.namespace(), object.uid()) else {
            return Err(ObjectError::MissingMetadata(name));
        };
        if name.is_empty() {
            return Err(ObjectError::MissingMetadata(format!("{namespace}/?")));
        }
        let mut spec = parse_spec(object.spec.as_deref());
        if name.chars().count() > MAX_NAME_CHARACTERS {
            let problem = FieldError {
                field: "metadata.name".into(),
                message: format!(
                    "must be at most {MAX_NAME_CHARACTERS} characters so that the Secrets keyturn derives from it stay valid names; recreate the ManagedSecret with a shorter name"
                ),
            };
            spec = Err(match spec {
                Ok(_) => vec![problem],
                Err(mut problems) => {
                    problems.insert(0, problem);
                    problems
                }
            });
        }
        let (status, status_unreadable) = match object.status.as_deref() {
            None => (ManagedSecretStatus::default(), None),
            Some(text) => {
                let mut deserializer = serde_json::Deserializer::from_str(text);
                match serde_path_to_error::deserialize(&mut deserializer) {
                    Ok(status) => (status, None),
                    Err(error) => (
                        ManagedSecretStatus::default(),
                        Some(format!("status.{}: {}", error.path(), error.inner())),
                    ),
                }
            }
        };
        Ok(ManagedSecretObject {
            rotate_request: object.annotations().get(ROTATE_REQUEST_ANNOTATION).cloned(),
            being_deleted: object.metadata.deletion_timestamp.is_some(),
            finalizers: object.finalizers().to_vec(),
            generation: object.metadata.generation,
            resource_version: object.resource_version(),
            namespace,
            name,
            uid,
            spec,
            status,
            status_unreadable,
            fresh: false,
            api_version: format!("{GROUP}/{VERSION}"),
            kind: KIND.to_owned(),
        })
    }

    /// The object as the API has it now, or `None` if it is gone.
    pub async fn refetch(
        &self,
        client: kube::Client,
    ) -> Result<Option<ManagedSecretObject>, ReconcileError> {
        let api: kube::Api<ManagedSecretResource> = kube::Api::namespaced(client, &self.namespace);
        let latest = api
            .get_opt(&self.name)
            .await
            .map_err(|source| RefetchError {
                object: self.key(),
                source,
            })?;
        let Some(mut latest) = latest else {
            return Ok(None);
        };
        super::resource::slim(&mut latest);
        let mut object = ManagedSecretObject::from_resource(&latest)?;
        object.fresh = true;
        Ok(Some(object))
    }

    /// `namespace/name`, as logs and errors name the object.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The Secret consumers read: `spec.secretName`, else the ManagedSecret's name.
    pub fn published_secret_name(&self) -> String {
        self.spec
            .as_ref()
            .ok()
            .and_then(|(spec, _)| spec.secret_name.clone())
            .unwrap_or_else(|| self.name.clone())
    }

    /// Where the new credential is kept between Stage and Publish.
    pub fn staging_secret_name(&self) -> String {
        format!("{}-keyturn-staging", self.name)
    }

    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    pub fn object_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            resource_version: self.resource_version.clone(),
            field_path: None,
        }
    }

    /// Labels on every object keyturn creates for this ManagedSecret; the controller's
    /// metadata-only Secret watch selects on the first.
    pub fn owned_labels(&self, role: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (
                "keyturn.dev/managed-secret".to_owned(),
                label_value(&self.name),
            ),
            ("keyturn.dev/role".to_owned(), role.to_owned()),
        ])
    }
}

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "keyturn";

/// Label values are at most 63 characters; longer names are cut (the owner reference, not the
/// label, is what ties objects together).
fn label_value(name: &str) -> String {
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.', '_']).to_owned()
}

fn parse_spec(text: Option<&str>) -> Result<(ManagedSecretSpec, ValidatedSpec), Vec<FieldError>> {
    let missing = || {
        vec![FieldError {
            field: "spec".into(),
            message: "is missing; a ManagedSecret needs at least spec.rotator and spec.rotation"
                .into(),
        }]
    };
    let Some(text) = text else {
        return Err(missing());
    };
    // Through a Value: serde then reports no byte positions (which would point into text no
    // user wrote), and the shape can be checked first (serde reads a JSON array as a struct's
    // fields in order, which would accept `spec: [...]`).
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| missing())?;
    if !value.is_object() {
        return Err(vec![FieldError {
            field: "spec".into(),
            message: format!(
                "must be an object, not {}; see `kubectl explain managedsecret.spec`",
                json_type(&value)
            ),
        }]);
    }
    let spec: ManagedSecretSpec = serde_path_to_error::deserialize(&value).map_err(|error| {
        let mut path = error.path().to_string();
        let inner = error.inner().to_string();
        // "missing field `role`" belongs to the field itself, not to its parent.
        if let Some(field) = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            path = if path == "." || path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
        }
        vec![FieldError {
            field: if path == "." || path.is_empty() {
                "spec".to_owned()
            } else {
                format!("spec.{path}")
            },
            message: format!(
                "{inner}; see `kubectl explain managedsecret.spec` for the expected shape"
            ),
        }]
    })?;
    match validate_spec(&spec) {
        Ok(validated) => Ok((spec, validated)),
        Err(errors) => Err(errors.errors().to_vec()),
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(spec: serde_json::Value) -> ManagedSecretResource {
        let text = json!({
            "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
            "metadata": {"name": "db", "namespace": "payments", "uid": "u-1", "generation": 2},
            "spec": spec,
        })
        .to_string();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_wrongly_typed_field_is_named() {
        let parsed = ManagedSecretObject::from_resource(&object(
            json!({"rotator": {"postgres": {"host": 5}}, "rotation": {"every": "1h"}}),
        ))
        .unwrap();
        let errors = parsed.spec.unwrap_err();
        assert!(
            errors[0].field.starts_with("spec.rotator.postgres"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_missing_field_is_named_itself_and_a_list_is_not_a_spec() {
        let parsed = ManagedSecretObject::from_resource(&object(
            json!({"rotator": {"postgres": {"host": "db", "adminSecretRef": {"name": "a"}}}, "rotation": {"every": "1h"}}),
        ))
        .unwrap();
        let errors = parsed.spec.unwrap_err();
        assert_eq!(errors[0].field, "spec.rotator.postgres.role", "{errors:?}");
        assert!(!errors[0].message.contains("line 1"), "{errors:?}");
        let parsed =
            ManagedSecretObject::from_resource(&object(json!([null, "Opaque", {}, {}]))).unwrap();
        let errors = parsed.spec.unwrap_err();
        assert_eq!(errors[0].field, "spec");
        assert!(errors[0].message.contains("a list"), "{errors:?}");
    }

    #[test]
    fn a_missing_spec_is_reported() {
        let mut object = object(json!(null));
        object.spec = None;
        let parsed = ManagedSecretObject::from_resource(&object).unwrap();
        assert_eq!(parsed.spec.unwrap_err()[0].field, "spec");
    }

    #[test]
    fn names_derive_from_the_object() {
        let parsed = ManagedSecretObject::from_resource(&object(json!({}))).unwrap();
        assert_eq!(parsed.published_secret_name(), "db");
        assert_eq!(parsed.staging_secret_name(), "db-keyturn-staging");
        assert_eq!(parsed.key(), "payments/db");
        assert_eq!(parsed.api_version, "keyturn.dev/v1alpha1");
        assert_eq!(label_value(&"a".repeat(70)).len(), 63);
    }
}
