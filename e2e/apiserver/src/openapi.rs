//! `/openapi/v3`: just enough OpenAPI for kubectl.
//!
//! `kubectl apply`/`create`/`replace` validate by default (`--validate=strict`). kubectl first
//! asks the server's OpenAPI v3 document whether the PATCH operation of the object's kind takes
//! the `fieldValidation` query parameter; if it does, kubectl leaves validation to the server
//! (sending `fieldValidation=Strict`), and if no OpenAPI is served at all it refuses to go on
//! ("failed to download openapi ... turn validation off with --validate=false"). So every
//! group-version gets a document whose paths carry the operations with their
//! `x-kubernetes-group-version-kind` and parameters. The stand-in does not validate (see
//! README), so `fieldValidation` is accepted and ignored.
//!
//! The PATCH operations do not list `application/strategic-merge-patch+json`: kubectl would
//! then compute client-side apply patches from the document's schemas, which built-ins lack
//! here; without it kubectl uses the schemas compiled into it, as it does for older servers.
//! CRD documents carry the CRD's `openAPIV3Schema` (so `kubectl explain` works for them);
//! built-ins carry none. `/openapi/v2` is not served.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// The group-version path (`api/v1`, `apis/apps/v1`) of a type.
fn gv_path(t: &ResourceType) -> String {
    if t.group.is_empty() {
        format!("api/{}", t.version)
    } else {
        format!("apis/{}/{}", t.group, t.version)
    }
}

/// FNV-1a, to give each document a stable `hash` in its URL as a real server does (clients
/// cache the documents by it).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `GET /openapi/v3`: the group-versions and where their documents are.
pub fn root(types: &[ResourceType]) -> Value {
    let mut paths = serde_json::Map::new();
    for t in types {
        let gv = gv_path(t);
        if paths.contains_key(&gv) {
            continue;
        }
        if let Some(doc) = group_version(types, &gv) {
            let hash = format!("{:016X}", fnv1a(doc.to_string().as_bytes()));
            paths.insert(
                gv.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

fn param(name: &str, location: &str, kind: &str) -> Value {
    json!({"name": name, "in": location, "required": location == "path",
           "schema": {"type": kind}, "uniqueItems": true})
}

fn operation(t: &ResourceType, action: &str, id: &str, extra: &[Value]) -> Value {
    let mut params: Vec<Value> = vec![param("pretty", "query", "string")];
    params.extend(extra.iter().cloned());
    json!({
        "operationId": id,
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
    })
}

fn write_params() -> Vec<Value> {
    vec![
        param("dryRun", "query", "string"),
        param("fieldManager", "query", "string"),
        param("fieldValidation", "query", "string"),
    ]
}

fn body(types: &[&str]) -> Value {
    let content: serde_json::Map<String, Value> = types
        .iter()
        .map(|t| ((*t).to_string(), json!({"schema": {"type": "object"}})))
        .collect();
    json!({"content": content, "required": true})
}

fn patch_operation(t: &ResourceType, id: &str) -> Value {
    let mut params = write_params();
    params.push(param("force", "query", "boolean"));
    let mut op = operation(t, "patch", id, &params);
    op["requestBody"] = body(&[
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ]);
    op
}

fn list_params() -> Vec<Value> {
    [
        "allowWatchBookmarks",
        "continue",
        "fieldSelector",
        "labelSelector",
        "limit",
        "resourceVersion",
        "resourceVersionMatch",
        "sendInitialEvents",
        "timeoutSeconds",
        "watch",
    ]
    .iter()
    .map(|n| param(n, "query", "string"))
    .collect()
}

/// `GET /openapi/v3/{api/v1 | apis/GROUP/VERSION}`.
pub fn group_version(types: &[ResourceType], gv: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = types.iter().filter(|t| gv_path(t) == gv).collect();
    if served.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in served {
        let base = format!("/{gv}");
        let coll = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{base}/{}", t.plural)
        };
        let scope_params: Vec<Value> = if t.namespaced {
            vec![param("namespace", "path", "string")]
        } else {
            Vec::new()
        };
        let id = |verb: &str, suffix: &str| format!("{verb}{}{suffix}", t.kind);
        let mut create = operation(t, "post", &id("create", ""), &write_params());
        create["requestBody"] = body(&["*/*"]);
        let mut item_params = scope_params.clone();
        item_params.push(param("name", "path", "string"));
        paths.insert(
            coll.clone(),
            json!({
                "parameters": scope_params,
                "get": operation(t, "list", &id("list", ""), &list_params()),
                "post": create,
                "delete": operation(t, "deletecollection", &id("deletecollection", ""), &list_params()),
            }),
        );
        let mut replace = operation(t, "put", &id("replace", ""), &write_params());
        replace["requestBody"] = body(&["*/*"]);
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({
                "parameters": item_params,
                "get": operation(t, "get", &id("read", ""), &[]),
                "put": replace,
                "patch": patch_operation(t, &id("patch", "")),
                "delete": operation(t, "delete", &id("delete", ""), &[param("dryRun", "query", "string")]),
            }),
        );
        if t.status_subresource {
            let mut replace = operation(t, "put", &id("replace", "Status"), &write_params());
            replace["requestBody"] = body(&["*/*"]);
            paths.insert(
                format!("{coll}/{{name}}/status"),
                json!({
                    "parameters": item_params,
                    "get": operation(t, "get", &id("read", "Status"), &[]),
                    "put": replace,
                    "patch": patch_operation(t, &id("patch", "Status")),
                }),
            );
        }
        if t.namespaced {
            paths.insert(
                format!("{base}/{}", t.plural),
                json!({"get": operation(t, "list", &id("list", "ForAllNamespaces"), &list_params())}),
            );
        }
        if let Some(schema) = &t.schema {
            let mut schema = schema.clone();
            schema["x-kubernetes-group-version-kind"] =
                json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
            let mut reversed: Vec<&str> = t.group.split('.').collect();
            reversed.reverse();
            schemas.insert(
                format!("{}.{}.{}", reversed.join("."), t.version, t.kind),
                schema,
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_group_version_has_a_patch_with_field_validation() {
        let types = crate::resources::builtins();
        let root = root(&types);
        let paths = root["paths"].as_object().unwrap();
        assert!(paths.contains_key("api/v1"));
        assert!(paths.contains_key("apis/apps/v1"));
        let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        let doc = group_version(&types, "apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        assert!(group_version(&types, "apis/nope/v1").is_none());
    }
}
