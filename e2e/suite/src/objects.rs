//! Reading and writing any object by apiVersion and kind, as JSON: server-side apply of YAML
//! manifests, get, list, merge patch, delete, decoded Secrets and both kinds of Events.
//! Plain methods panic with context on API errors; `try_` methods return them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde::Deserialize as _;
use serde_json::Value;

use crate::cluster::Cluster;

/// The field manager of every write the harness makes.
pub const FIELD_MANAGER: &str = "e2e";

fn group_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// Parses every non-empty document of a (multi-document) YAML text into JSON.
///
/// # Panics
/// On invalid YAML, naming the document.
pub fn parse_yaml_documents(yaml: &str) -> Vec<Value> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(document)
            .unwrap_or_else(|error| panic!("YAML document {} is invalid: {error}", index + 1));
        if !value.is_null() {
            documents.push(value);
        }
    }
    documents
}

/// A list item as JSON with its apiVersion and kind, which list responses leave out.
fn to_json(object: DynamicObject, resource: &ApiResource) -> Value {
    let mut value = serde_json::to_value(object).expect("a DynamicObject serializes to JSON");
    value["apiVersion"] = Value::from(resource.api_version.clone());
    value["kind"] = Value::from(resource.kind.clone());
    value
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

impl Cluster {
    /// The resource behind `api_version` and `kind`, from discovery (cached per cluster).
    pub async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), kube::Error> {
        let key = (api_version.to_owned(), kind.to_owned());
        let mut cache = self.resources.lock().await;
        if let Some(found) = cache.get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = group_version(api_version);
        let found = kube::discovery::pinned_kind(
            &self.client(),
            &GroupVersionKind::gvk(group, version, kind),
        )
        .await?;
        cache.insert(key, found.clone());
        Ok(found)
    }

    /// A dynamic API for `api_version`/`kind`: in `namespace` when the kind is namespaced,
    /// cluster-wide otherwise (`namespace` is then ignored).
    pub async fn dynamic_api(
        &self,
        namespace: &str,
        api_version: &str,
        kind: &str,
    ) -> Result<(Api<DynamicObject>, ApiResource), kube::Error> {
        let (resource, capabilities) = self.resource(api_version, kind).await?;
        let api = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(self.client(), namespace, &resource),
            Scope::Cluster => Api::all_with(self.client(), &resource),
        };
        Ok((api, resource))
    }

    /// Server-side applies every document of `yaml` (field manager `e2e`, conflicts forced: the
    /// test declares the state it wants). Namespaced objects go to `namespace`, whatever their
    /// manifest says. Returns the objects as the server stored them.
    ///
    /// # Panics
    /// On invalid YAML, an unknown kind or an API error.
    pub async fn apply_yaml(&self, namespace: &str, yaml: &str) -> Vec<Value> {
        let mut applied = Vec::new();
        for document in parse_yaml_documents(yaml) {
            applied.push(self.apply(namespace, &document).await);
        }
        applied
    }

    /// Server-side applies one object given as JSON; see [`Cluster::apply_yaml`].
    pub async fn apply(&self, namespace: &str, object: &Value) -> Value {
        self.try_apply(namespace, object)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "apply {} {} in namespace {namespace}: {error}",
                    object["kind"].as_str().unwrap_or("(no kind)"),
                    object["metadata"]["name"].as_str().unwrap_or("(no name)")
                )
            })
    }

    /// [`Cluster::apply`], returning the API error.
    pub async fn try_apply(&self, namespace: &str, object: &Value) -> Result<Value, kube::Error> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("a {kind} to apply has no metadata.name: {object}"))
            .to_owned();
        let (resource, capabilities) = self.resource(api_version, kind).await?;
        let mut object = object.clone();
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                object["metadata"]["namespace"] = Value::from(namespace);
                Api::namespaced_with(self.client(), namespace, &resource)
            }
            Scope::Cluster => {
                if let Some(metadata) = object["metadata"].as_object_mut() {
                    metadata.remove("namespace");
                }
                Api::all_with(self.client(), &resource)
            }
        };
        let parameters = PatchParams::apply(FIELD_MANAGER).force();
        let stored = api
            .patch(&name, &parameters, &Patch::Apply(&object))
            .await?;
        Ok(to_json(stored, &resource))
    }

    /// The object, or `None` when it does not exist.
    pub async fn get(
        &self,
        namespace: &str,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Option<Value> {
        self.try_get(namespace, api_version, kind, name)
            .await
            .unwrap_or_else(|error| panic!("get {api_version} {kind} {namespace}/{name}: {error}"))
    }

    /// [`Cluster::get`], returning the API error.
    pub async fn try_get(
        &self,
        namespace: &str,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<Value>, kube::Error> {
        let (api, resource) = self.dynamic_api(namespace, api_version, kind).await?;
        Ok(api
            .get_opt(name)
            .await?
            .map(|object| to_json(object, &resource)))
    }

    /// Every object of the kind in `namespace` (cluster-wide for cluster-scoped kinds).
    pub async fn list(&self, namespace: &str, api_version: &str, kind: &str) -> Vec<Value> {
        self.try_list(namespace, api_version, kind)
            .await
            .unwrap_or_else(|error| panic!("list {api_version} {kind} in {namespace}: {error}"))
    }

    /// [`Cluster::list`], returning the API error.
    pub async fn try_list(
        &self,
        namespace: &str,
        api_version: &str,
        kind: &str,
    ) -> Result<Vec<Value>, kube::Error> {
        let (api, resource) = self.dynamic_api(namespace, api_version, kind).await?;
        let list = api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .map(|object| to_json(object, &resource))
            .collect())
    }

    /// Applies an RFC 7386 merge patch and returns the object after it.
    pub async fn merge_patch(
        &self,
        namespace: &str,
        api_version: &str,
        kind: &str,
        name: &str,
        patch: &Value,
    ) -> Value {
        self.try_merge_patch(namespace, api_version, kind, name, patch)
            .await
            .unwrap_or_else(|error| {
                panic!("merge-patch {api_version} {kind} {namespace}/{name} with {patch}: {error}")
            })
    }

    /// [`Cluster::merge_patch`], returning the API error.
    pub async fn try_merge_patch(
        &self,
        namespace: &str,
        api_version: &str,
        kind: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, kube::Error> {
        let (api, resource) = self.dynamic_api(namespace, api_version, kind).await?;
        let parameters = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patched = api.patch(name, &parameters, &Patch::Merge(patch)).await?;
        Ok(to_json(patched, &resource))
    }

    /// Asks for the object's deletion; false when it did not exist. With finalizers the object
    /// stays (with a deletionTimestamp) until they are removed: wait for it if that matters.
    pub async fn delete(&self, namespace: &str, api_version: &str, kind: &str, name: &str) -> bool {
        self.try_delete(namespace, api_version, kind, name)
            .await
            .unwrap_or_else(|error| {
                panic!("delete {api_version} {kind} {namespace}/{name}: {error}")
            })
    }

    /// [`Cluster::delete`], returning the API error.
    pub async fn try_delete(
        &self,
        namespace: &str,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Result<bool, kube::Error> {
        let (api, _) = self.dynamic_api(namespace, api_version, kind).await?;
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The Secret's data, decoded (as UTF-8, lossily), or `None` when it does not exist.
    pub async fn read_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<BTreeMap<String, String>> {
        let secrets: Api<Secret> = Api::namespaced(self.client(), namespace);
        let secret = secrets
            .get_opt(name)
            .await
            .unwrap_or_else(|error| panic!("get Secret {namespace}/{name}: {error}"))?;
        let mut data: BTreeMap<String, String> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, String::from_utf8_lossy(&value.0).into_owned()))
            .collect();
        // A real API server folds stringData into data and never returns it; kept for writers
        // that use it against a server that does not.
        for (key, value) in secret.string_data.unwrap_or_default() {
            data.entry(key).or_insert(value);
        }
        Some(data)
    }

    /// The namespace's Events: core/v1 first, then events.k8s.io/v1. A real API server serves the
    /// same events through both, so expect each one twice there; match on content, not count.
    pub async fn events(&self, namespace: &str) -> Vec<Value> {
        let mut events = self.list(namespace, "v1", "Event").await;
        events.extend(self.list(namespace, "events.k8s.io/v1", "Event").await);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let documents = parse_yaml_documents("# only a comment\n---\na: 1\n---\n---\nb: [x]\n");
        assert_eq!(
            documents,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": ["x"]})]
        );
    }

    #[test]
    fn group_and_version() {
        assert_eq!(group_version("v1"), ("", "v1"));
        assert_eq!(
            group_version("keyturn.dev/v1alpha1"),
            ("keyturn.dev", "v1alpha1")
        );
    }
}
