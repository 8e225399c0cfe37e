//! The form in which ManagedSecrets are watched and cached: metadata plus the spec and status
//! kept as compact JSON text. Text costs about its own length in memory, a parsed
//! `serde_json::Value` several times that, and a typed spec could not hold a spec that does not
//! deserialise (which must still reach `reconcile` to be reported). The reconcile parses both.
//! (`serde_json::value::RawValue` would avoid the detour through `Value`, but watch events are
//! an adjacently tagged enum that serde may buffer, and a buffered RawValue fails.)

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "keyturn.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "ManagedSecret";
pub const PLURAL: &str = "managedsecrets";

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ManagedSecretResource {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text")]
    pub spec: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text")]
    pub status: Option<Box<str>>,
}

/// A JSON member held as its compact text; `null` reads as absent.
mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Box<str>>, D::Error> {
        let value = Option::<Value>::deserialize(deserializer)?;
        Ok(value
            .filter(|value| !value.is_null())
            .map(|value| value.to_string().into_boxed_str()))
    }

    pub fn serialize<S: Serializer>(
        text: &Option<Box<str>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let value: Option<Value> = match text {
            Some(text) => Some(serde_json::from_str(text).map_err(serde::ser::Error::custom)?),
            None => None,
        };
        value.serialize(serializer)
    }
}

impl Resource for ManagedSecretResource {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The annotation `kubectl apply` keeps a whole copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the controller never reads before an object enters the cache: managed fields
/// and kubectl's copy of the last applied object, which together are often larger than the
/// rest of the object.
pub fn slim(object: &mut ManagedSecretResource) {
    object.metadata.managed_fields = None;
    if let Some(annotations) = object.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_spec_and_status_as_text_and_slims_metadata() {
        let text = r#"{"apiVersion":"keyturn.dev/v1alpha1","kind":"ManagedSecret",
            "metadata":{"name":"db","namespace":"ns","uid":"u","managedFields":[{"manager":"kubectl"}],
                        "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}","keep":"me"}},
            "spec":{"rotation":{"every":5}},"status":{"revision":3}}"#;
        let mut object: ManagedSecretResource = serde_json::from_str(text).unwrap();
        slim(&mut object);
        assert!(object.metadata.managed_fields.is_none());
        assert_eq!(object.metadata.annotations.unwrap().len(), 1);
        assert_eq!(object.spec.as_deref(), Some(r#"{"rotation":{"every":5}}"#));
        assert_eq!(object.status.as_deref(), Some(r#"{"revision":3}"#));
        // The order serde may see in a watch event: the object before its type.
        let event = format!(r#"{{"object":{text},"type":"ADDED"}}"#);
        let parsed: kube::core::WatchEvent<ManagedSecretResource> =
            serde_json::from_str(&event).unwrap();
        assert!(matches!(parsed, kube::core::WatchEvent::Added(_)));
    }
}
