//! Strategic merge patch (`application/strategic-merge-patch+json`) for the built-in types, as
//! kubectl sends it for `apply` (client-side), `annotate`, `label`, `edit`, `scale`, `set image`.
//!
//! Objects merge like a JSON merge patch. Lists are replaced, except the ones the built-in
//! types declare with `patchStrategy: merge`: lists of objects merge element by element on
//! their `patchMergeKey` (containers by `name`, ports by `containerPort`, ...) and lists of
//! strings (`finalizers`) become the union. The directives `$patch` (replace / delete / merge),
//! `$retainKeys`, `$setElementOrder/FIELD` and `$deleteFromPrimitiveList/FIELD` are understood.
//!
//! Simplification: the merge strategy is looked up by field name alone, not by the field's
//! place in a typed schema; for the types the stand-in serves the names are unambiguous
//! (a Service's `ports`, merged on `port`, is not served).

use serde_json::{Map, Value};

/// How a list field merges.
enum ListStrategy {
    /// Objects merged on this key.
    MergeKey(&'static str),
    /// Strings merged as a set.
    Set,
    /// Replaced whole (the default).
    Replace,
}

fn list_strategy(field: &str) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "secrets" => ListStrategy::MergeKey("name"),
        "ports" => ListStrategy::MergeKey("containerPort"),
        "volumeMounts" => ListStrategy::MergeKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeKey("devicePath"),
        "hostAliases" => ListStrategy::MergeKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeKey("topologyKey"),
        "ownerReferences" => ListStrategy::MergeKey("uid"),
        "conditions" => ListStrategy::MergeKey("type"),
        "finalizers" => ListStrategy::Set,
        _ => ListStrategy::Replace,
    }
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch in place; errors are malformed directives (400 on a real
/// server).
pub fn apply(target: &mut Value, patch: &Value) -> Result<(), String> {
    match patch {
        Value::Object(p) => merge_object(target, p),
        other => {
            *target = other.clone();
            Ok(())
        }
    }
}

fn directive(p: &Map<String, Value>) -> Option<&str> {
    p.get("$patch").and_then(Value::as_str)
}

/// A patch object with its directives removed, as stored when it has nothing to merge into.
fn strip(p: &Value) -> Result<Value, String> {
    let mut out = Value::Object(Map::new());
    apply(&mut out, p)?;
    Ok(out)
}

fn merge_object(target: &mut Value, p: &Map<String, Value>) -> Result<(), String> {
    match directive(p) {
        Some("replace") => {
            let mut rest = p.clone();
            rest.remove("$patch");
            *target = strip(&Value::Object(rest))?;
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch directive $patch: {other}")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    let mut orders = Vec::new();
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix(SET_ORDER) {
            orders.push((field, v));
            continue;
        }
        if let Some(field) = k.strip_prefix(DELETE_FROM) {
            let gone = v.as_array().ok_or_else(|| format!("{k} must be a list"))?;
            if let Some(Value::Array(items)) = t.get_mut(field) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(child) if directive(child) == Some("delete") => {
                t.remove(k);
            }
            Value::Object(_) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                apply(slot, v)?;
            }
            Value::Array(items) => {
                let merged = merge_list(t.get(k), items, k)?;
                t.insert(k.clone(), merged);
            }
            scalar => {
                t.insert(k.clone(), scalar.clone());
            }
        }
    }
    for (field, order) in orders {
        if let Some(Value::Array(items)) = t.get_mut(field) {
            reorder(items, order, field);
        }
    }
    if let Some(keep) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep
            .as_array()
            .ok_or("$retainKeys must be a list")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn merge_list(current: Option<&Value>, items: &[Value], field: &str) -> Result<Value, String> {
    // A `{"$patch": "replace"}` element replaces the list with the other elements.
    let is_replace = |i: &Value| {
        i.as_object()
            .is_some_and(|m| directive(m) == Some("replace"))
    };
    if items.iter().any(is_replace) {
        let rest: Result<Vec<Value>, String> =
            items.iter().filter(|i| !is_replace(i)).map(strip).collect();
        return rest.map(Value::Array);
    }
    let mut out: Vec<Value> = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match list_strategy(field) {
        ListStrategy::Replace => {
            return items
                .iter()
                .map(strip)
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array);
        }
        ListStrategy::Set => {
            for i in items {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
        }
        ListStrategy::MergeKey(key) => {
            for i in items {
                let Some(obj) = i.as_object() else {
                    return Err(format!("{field}: elements must be objects with {key}"));
                };
                let id = obj
                    .get(key)
                    .ok_or_else(|| format!("{field}: an element has no merge key {key}"))?;
                let pos = out.iter().position(|o| o.get(key) == Some(id));
                match (pos, directive(obj)) {
                    (Some(p), Some("delete")) => {
                        out.remove(p);
                    }
                    (None, Some("delete")) => {}
                    (Some(p), _) => apply(&mut out[p], i)?,
                    (None, _) => out.push(strip(i)?),
                }
            }
        }
    }
    Ok(Value::Array(out))
}

/// `$setElementOrder`: the listed elements come first, in that order; elements it does not
/// mention (kept from the live object) follow in their previous order. (The real server
/// interleaves those by their old positions; the set of elements is the same.)
fn reorder(items: &mut Vec<Value>, order: &Value, field: &str) {
    let Some(order) = order.as_array() else {
        return;
    };
    let same = |item: &Value, o: &Value| match list_strategy(field) {
        ListStrategy::MergeKey(key) => item.get(key).is_some() && item.get(key) == o.get(key),
        _ => item == o,
    };
    let mut sorted = Vec::with_capacity(items.len());
    for o in order {
        if let Some(pos) = items.iter().position(|i| same(i, o)) {
            sorted.push(items.remove(pos));
        }
    }
    sorted.append(items);
    *items = sorted;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn patched(mut target: Value, patch: Value) -> Value {
        apply(&mut target, &patch).unwrap();
        target
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        assert_eq!(
            patched(
                json!({"metadata": {"annotations": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"annotations": {"a": null, "c": "3"}}})
            ),
            json!({"metadata": {"annotations": {"b": "2", "c": "3"}}})
        );
    }

    #[test]
    fn containers_merge_on_name() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "side:1"}]}}}});
        // What `kubectl apply` sends after an image bump and a new env var.
        let out = patched(
            live,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"name": "app", "image": "app:2",
                                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                                "env": [{"name": "B", "value": "2"}]}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "image": "app:2",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                   {"name": "sidecar", "image": "side:1"}])
        );
    }

    #[test]
    fn directives() {
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                   "args": ["x", "y"], "strategy": {"type": "RollingUpdate",
                                   "rollingUpdate": {"maxSurge": 1}}},
                          "metadata": {"finalizers": ["f1", "f2"]}});
        let out = patched(
            live.clone(),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}],
                            "args": ["z"],
                            "strategy": {"$retainKeys": ["type"], "type": "Recreate"}},
                   "metadata": {"finalizers": ["f3"], "$deleteFromPrimitiveList/finalizers": ["f1"]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
        assert_eq!(out["spec"]["args"], json!(["z"]));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["f2", "f3"]));

        let out = patched(
            live.clone(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "c"}]));
        let out = patched(
            live.clone(),
            json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let out = patched(live, json!({"spec": {"strategy": {"$patch": "delete"}}}));
        assert!(out["spec"].get("strategy").is_none());
        let mut t = json!({});
        assert!(apply(&mut t, &json!({"spec": {"containers": [{"image": "x"}]}})).is_err());
        assert!(apply(&mut t, &json!({"$patch": "explode"})).is_err());
    }

    #[test]
    fn set_element_order_reorders() {
        let out = patched(
            json!({"ports": [{"containerPort": 80}, {"containerPort": 443}]}),
            json!({"$setElementOrder/ports": [{"containerPort": 443}, {"containerPort": 80}]}),
        );
        assert_eq!(
            out["ports"],
            json!([{"containerPort": 443}, {"containerPort": 80}])
        );
    }
}
