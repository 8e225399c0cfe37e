//! JSON merge patch (RFC 7386) and a simplified server-side apply: field ownership is tracked per
//! field manager as leaf paths in `metadata.managedFields` (FieldsV1), lists are atomic.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field path (object keys from the root); a leaf is a scalar, list or empty object.
pub type FieldPath = Vec<String>;

/// Applies an RFC 7386 merge patch in place.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Leaf paths of an applied configuration (ignoring apiVersion/kind and the identifying
/// metadata fields, which every applier sets).
pub fn leaf_paths(v: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    // metadata.finalizers is a set (`x-kubernetes-list-type: set`): each value is owned alone.
    if let Some(items) = v["metadata"]["finalizers"].as_array() {
        out.remove(&finalizers_path());
        for f in items {
            out.insert(vec![
                "metadata".into(),
                "finalizers".into(),
                format!("v:{f}"),
            ]);
        }
    }
    out.retain(|p| {
        let first = p.first().map(String::as_str);
        let meta = p.get(1).map(String::as_str);
        let identifying = first == Some("metadata")
            && matches!(
                meta,
                Some(
                    "name"
                        | "namespace"
                        | "resourceVersion"
                        | "uid"
                        | "managedFields"
                        | "generation"
                        | "creationTimestamp"
                        | "deletionTimestamp"
                        | "deletionGracePeriodSeconds"
                        | "selfLink"
                )
            );
        !identifying && !matches!(first, Some("apiVersion" | "kind"))
    });
    out
}

fn finalizers_path() -> FieldPath {
    vec!["metadata".into(), "finalizers".into()]
}

/// Renders leaf paths as a FieldsV1 document (`{"f:spec": {"f:x": {}}}`).
pub fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    for p in paths {
        let mut cur = &mut root;
        for k in p {
            let key = if k.starts_with("v:") {
                k.clone()
            } else {
                format!("f:{k}")
            };
            cur = cur
                .as_object_mut()
                .map(|m| m.entry(key).or_insert_with(|| json!({})))
                .unwrap_or_else(|| unreachable!("FieldsV1 nodes are objects"));
        }
    }
    root
}

/// Parses a FieldsV1 document back into leaf paths (`k:`/`v:` list keys are kept verbatim).
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m.iter().filter(|(k, _)| *k != ".") {
                    path.push(k.strip_prefix("f:").unwrap_or(k).to_string());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// The value at a path as ownership sees it: for a set element (`v:...`), whether it is present.
pub fn value_at(v: &Value, path: &[String]) -> Option<Value> {
    if let Some((last, parents)) = path.split_last()
        && let Some(item) = last.strip_prefix("v:")
    {
        let item: Value = serde_json::from_str(item).ok()?;
        let present = get_path(v, parents)?.as_array()?.contains(&item);
        return present.then_some(Value::Bool(true));
    }
    get_path(v, path).cloned()
}

/// The value at a path, if any.
pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

/// Removes the value at a path and then any objects left empty on the way up.
pub fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if parents.is_empty() {
        if let Some(m) = v.as_object_mut() {
            m.remove(last);
        } else if let (Some(a), Some(item)) = (v.as_array_mut(), last.strip_prefix("v:")) {
            let item: Value = serde_json::from_str(item).unwrap_or(Value::Null);
            a.retain(|x| *x != item);
        }
        return;
    }
    if let Some(parent) = v.get_mut(&parents[0]) {
        remove_path(parent, &path[1..]);
        if parent.as_object().is_some_and(Map::is_empty)
            && let Some(m) = v.as_object_mut()
        {
            m.remove(&parents[0]);
        }
    }
}

/// Merges an applied object into the live one: like [`apply_merge`], except that
/// `metadata.finalizers` is merged as a set.
pub fn apply_merge_object(live: &mut Value, applied: &Value) {
    let kept = live["metadata"]["finalizers"].as_array().cloned();
    apply_merge(live, applied);
    if let (Some(mut kept), Some(new)) = (kept, applied["metadata"]["finalizers"].as_array()) {
        for f in new {
            if !kept.contains(f) {
                kept.push(f.clone());
            }
        }
        live["metadata"]["finalizers"] = Value::Array(kept);
    }
}

/// Merges an applied configuration into the live object: objects merge key by key, everything
/// else (scalars, lists) is replaced.
pub fn apply_merge(live: &mut Value, applied: &Value) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, v) in a {
                match l.get_mut(k) {
                    Some(lv) if lv.is_object() && v.is_object() => apply_merge(lv, v),
                    _ => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        merge_patch(&mut t, &json!({"l": [1, 2]}));
        merge_patch(&mut t, &json!({"l": [3]}));
        assert_eq!(t["l"], json!([3]));
    }

    #[test]
    fn fields_v1_round_trip() {
        let applied = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n", "labels": {"a": "b"}},
                             "spec": {"x": 1, "l": [1], "o": {}}});
        let paths = leaf_paths(&applied);
        let fv1 = to_fields_v1(&paths);
        assert_eq!(
            fv1,
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:x": {}, "f:l": {}, "f:o": {}}})
        );
        assert_eq!(from_fields_v1(&fv1), paths);
    }

    #[test]
    fn finalizers_are_a_set() {
        let applied = json!({"metadata": {"finalizers": ["a", "b"]}});
        let paths = leaf_paths(&applied);
        assert!(paths.contains(&vec![
            "metadata".to_string(),
            "finalizers".into(),
            "v:\"a\"".into()
        ]));
        assert_eq!(from_fields_v1(&to_fields_v1(&paths)), paths);
        let mut live = json!({"metadata": {"finalizers": ["x", "a"]}});
        apply_merge_object(&mut live, &applied);
        assert_eq!(live["metadata"]["finalizers"], json!(["x", "a", "b"]));
        remove_path(
            &mut live,
            &["metadata".into(), "finalizers".into(), "v:\"x\"".into()],
        );
        assert_eq!(live["metadata"]["finalizers"], json!(["a", "b"]));
    }

    #[test]
    fn remove_path_prunes_empty_parents() {
        let mut v = json!({"spec": {"a": {"b": 1}}, "k": 2});
        remove_path(&mut v, &["spec".into(), "a".into(), "b".into()]);
        assert_eq!(v, json!({"k": 2}));
    }
}

fn pointer_tokens(ptr: &str) -> Result<Vec<String>, String> {
    if ptr.is_empty() {
        return Ok(Vec::new());
    }
    let rest = ptr
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {ptr:?}"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("path segment {t:?} not found"))?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("bad array index {t:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of range"))?
            }
            _ => return Err(format!("cannot descend into a scalar at {t:?}")),
        };
    }
    Ok(cur)
}

fn pointer_add(doc: &mut Value, ptr: &str, value: Value) -> Result<(), String> {
    let tokens = pointer_tokens(ptr)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse().map_err(|_| format!("bad index {last:?}"))?
            };
            if i > a.len() {
                return Err(format!("array index {i} out of range"));
            }
            a.insert(i, value);
        }
        _ => return Err(format!("cannot add to a scalar at {ptr:?}")),
    }
    Ok(())
}

fn pointer_remove(doc: &mut Value, ptr: &str) -> Result<Value, String> {
    let tokens = pointer_tokens(ptr)?;
    let (last, parents) = tokens.split_last().ok_or("cannot remove the root")?;
    match parent_mut(doc, parents)? {
        Value::Object(m) => m.remove(last).ok_or_else(|| format!("{ptr:?} not found")),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| format!("bad index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("array index {i} out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("{ptr:?} not found")),
    }
}

/// Applies an RFC 6902 JSON patch (add, remove, replace, move, copy, test); all or nothing.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut out = doc.clone();
    for op in ops {
        let path = op["path"].as_str().ok_or("operation without path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("{path:?}: operation without value"))
        };
        match op["op"].as_str() {
            Some("add") => pointer_add(&mut out, path, value()?)?,
            Some("remove") => {
                pointer_remove(&mut out, path)?;
            }
            Some("replace") => {
                pointer_remove(&mut out, path)?;
                pointer_add(&mut out, path, value()?)?;
            }
            Some("move") => {
                let v = pointer_remove(&mut out, op["from"].as_str().ok_or("move without from")?)?;
                pointer_add(&mut out, path, v)?;
            }
            Some("copy") => {
                let from = op["from"].as_str().ok_or("copy without from")?;
                let v = out
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("{from:?} not found"))?;
                pointer_add(&mut out, path, v)?;
            }
            Some("test") => {
                // Like the API server's json-patch library: a missing member tests equal to
                // null (kube-runtime's finalizer helper relies on it).
                if out.pointer(path).unwrap_or(&Value::Null) != &value()? {
                    return Err(format!("test failed at {path:?}"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod json_patch_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_patch_ops() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = json_patch(
            &doc,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": ["a", "b"]},
                    {"op": "remove", "path": "/metadata/finalizers/0"},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": "c"},
                    {"op": "replace", "path": "/metadata/finalizers/0", "value": "z"},
                    {"op": "copy", "from": "/metadata/finalizers", "path": "/spec"}]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["z", "c"]}, "spec": ["z", "c"]})
        );
        assert!(
            json_patch(
                &doc,
                &json!([{"op": "test", "path": "/metadata/finalizers", "value": []}])
            )
            .is_err()
        );
        assert!(json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
