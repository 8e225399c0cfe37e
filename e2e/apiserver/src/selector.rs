//! Label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`) and the
//! field selectors the stand-in supports (`metadata.name`, `metadata.namespace` and some
//! per-type fields, with `=`/`==`/`!=`).

use serde_json::Value;

use crate::error::ApiError;
use crate::resources::ResourceType;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Req>);

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(rest: &str) -> Result<Vec<String>, ApiError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: {rest}")))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_top_level(s)
            .into_iter()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let bad = || ApiError::bad_request(format!("unable to parse requirement: {term}"));
            let req = if let Some(k) = term.strip_prefix('!') {
                Req::NotExists(k.trim().into())
            } else if let Some((k, v)) = term.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set_values(rest)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                Req::In(k.trim().into(), set_values(rest)?)
            } else if term.contains(|c: char| c.is_whitespace() || "()".contains(c)) {
                return Err(bad());
            } else {
                Req::Exists(term.into())
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Whether an object's labels match.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
            Req::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Req::NotIn(k, vs) => get(k).is_none_or(|l| vs.iter().all(|v| v != l)),
        })
    }
}

/// A parsed field selector: `metadata.name` and `metadata.namespace` on every type, plus the
/// fields a real API server indexes for some types (Events: `involvedObject.*` / `regarding.*`,
/// `reason`, `type`, `source` / `reportingController`, which `kubectl describe` uses; Secrets:
/// `type`; Namespaces: `status.phase`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

/// Where a supported selector field lives in objects of a type (`None`: not supported).
fn field_location(t: &ResourceType, field: &str) -> Option<&'static str> {
    Some(match (t.group.as_str(), t.plural.as_str(), field) {
        (_, _, "metadata.name") => "metadata.name",
        (_, _, "metadata.namespace") => "metadata.namespace",
        ("", "events", "involvedObject.kind") => "involvedObject.kind",
        ("", "events", "involvedObject.namespace") => "involvedObject.namespace",
        ("", "events", "involvedObject.name") => "involvedObject.name",
        ("", "events", "involvedObject.uid") => "involvedObject.uid",
        ("", "events", "involvedObject.apiVersion") => "involvedObject.apiVersion",
        ("", "events", "involvedObject.resourceVersion") => "involvedObject.resourceVersion",
        ("", "events", "involvedObject.fieldPath") => "involvedObject.fieldPath",
        ("", "events", "source") => "source.component",
        ("", "events", "reportingComponent") => "reportingComponent",
        ("events.k8s.io", "events", "regarding.kind") => "regarding.kind",
        ("events.k8s.io", "events", "regarding.namespace") => "regarding.namespace",
        ("events.k8s.io", "events", "regarding.name") => "regarding.name",
        ("events.k8s.io", "events", "regarding.uid") => "regarding.uid",
        ("events.k8s.io", "events", "regarding.apiVersion") => "regarding.apiVersion",
        ("events.k8s.io", "events", "regarding.resourceVersion") => "regarding.resourceVersion",
        ("events.k8s.io", "events", "regarding.fieldPath") => "regarding.fieldPath",
        ("events.k8s.io", "events", "reportingController") => "reportingController",
        ("" | "events.k8s.io", "events", "reason") => "reason",
        ("" | "events.k8s.io", "events", "type") => "type",
        ("", "secrets", "type") => "type",
        ("", "namespaces", "status.phase") => "status.phase",
        _ => return None,
    })
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter for objects of type `t`; a field the type
    /// does not support is 400, as on a real server.
    pub fn parse(s: &str, t: &ResourceType) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_unescaped(s, ',')
            .into_iter()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            // The operator is the first unescaped `!=`, `==` or `=`; values may escape theirs.
            let (field, eq, value) = match split_unescaped(term, '=').as_slice() {
                [k, v] if k.ends_with('!') => (&k[..k.len() - 1], false, *v),
                [k, v] => (*k, true, *v),
                [k, "", v] => (*k, true, *v),
                _ => return Err(ApiError::bad_request(format!("invalid selector: '{term}'"))),
            };
            let field = field.trim();
            let Some(loc) = field_location(t, field) else {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            };
            reqs.push((
                loc.split('.').map(String::from).collect(),
                eq,
                unescape(value.trim()),
            ));
        }
        Ok(Self(reqs))
    }

    /// Whether an object matches; a missing field counts as the empty string.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, value)| {
            let actual = path
                .iter()
                .try_fold(obj, |v, k| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *eq
        })
    }
}

/// Splits at every `sep` that is not escaped with a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut escaped) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == sep => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Field selector values escape `\`, `,` and `=` with a backslash (client-go's `EscapeValue`).
fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "n", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_selector_forms() {
        let o = obj(json!({"a": "b", "env": "prod"}));
        for (sel, want) in [
            ("", true),
            ("a=b", true),
            ("a==b", true),
            ("a=c", false),
            ("a!=c", true),
            ("a!=b", false),
            ("x!=b", true),
            ("a", true),
            ("!a", false),
            ("!x", true),
            ("env in (prod, dev)", true),
            ("env in (dev)", false),
            ("env notin (dev)", true),
            ("x notin (dev)", true),
            ("a=b,env in (prod,dev),!x", true),
            ("a=b,x", false),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("a in b").is_err());
    }

    #[test]
    fn field_selector_forms() {
        let types = crate::resources::builtins();
        let find = |g: &str, p: &str| crate::resources::find(&types, g, "v1", p).unwrap();
        let cm = find("", "configmaps");
        let o = obj(json!({}));
        let parse = |s: &str| FieldSelector::parse(s, cm);
        assert!(parse("metadata.name=n").unwrap().matches(&o));
        assert!(!parse("metadata.name!=n").unwrap().matches(&o));
        assert!(
            parse("metadata.namespace==ns,metadata.name=n")
                .unwrap()
                .matches(&o)
        );
        assert!(parse("spec.x=1").is_err());
        assert!(parse("involvedObject.name=n").is_err());

        // What `kubectl describe` asks for (client-go's GetFieldSelector), on both Event APIs.
        let ev = json!({"metadata": {"name": "e", "namespace": "ns"}, "reason": "Rotated",
                        "involvedObject": {"kind": "ManagedSecret", "name": "db", "namespace": "ns",
                                           "uid": "u-1"}});
        let core = find("", "events");
        let sel = "involvedObject.kind=ManagedSecret,involvedObject.name=db,\
                   involvedObject.namespace=ns,involvedObject.uid=u-1";
        assert!(FieldSelector::parse(sel, core).unwrap().matches(&ev));
        assert!(
            !FieldSelector::parse("involvedObject.name=other", core)
                .unwrap()
                .matches(&ev)
        );
        assert!(
            FieldSelector::parse("reason=Rotated,type!=Warning", core)
                .unwrap()
                .matches(&ev)
        );
        let v1 = find("events.k8s.io", "events");
        let ev1 = json!({"metadata": {"name": "e"}, "regarding": {"name": "db"}});
        assert!(
            FieldSelector::parse("regarding.name=db", v1)
                .unwrap()
                .matches(&ev1)
        );
        assert!(FieldSelector::parse("involvedObject.name=db", v1).is_err());
        // Escaped values.
        let odd = json!({"metadata": {"name": "a,b=c"}});
        assert!(
            FieldSelector::parse(r"metadata.name=a\,b\=c", cm)
                .unwrap()
                .matches(&odd)
        );
    }
}
