//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. kubectl prints whatever columns and
//! cells the server sends, so these follow the real API server: a CRD's
//! `additionalPrinterColumns` (evaluated with `crate::jsonpath`), and for built-ins the columns
//! of the API server's own printers (kubernetes `pkg/printers/internalversion`). Like the real
//! server, every column is sent; kubectl hides those with a priority above 0 unless `-o wide`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::jsonpath::JsonPath;
use crate::resources::ResourceType;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// Nothing.
    None,
    /// The object's metadata as a `PartialObjectMetadata` (the default; kubectl reads the
    /// namespace and labels from it for `-A`, `--show-labels` and `-L`).
    Metadata,
    /// The whole object (kubectl asks for it with `--sort-by`).
    Object,
}

impl Include {
    /// Parses the `includeObject` query parameter.
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v.unwrap_or("") {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(ApiError::bad_request(format!(
                "unrecognized includeObject value: {other:?}"
            ))),
        }
    }
}

/// A built-in printer's cell from the object and the current time.
type CellFn = fn(&Value, DateTime<Utc>) -> Value;

/// How a cell is computed.
enum Cell {
    /// A CRD column: a JSONPath and the column's type.
    Path(JsonPath),
    /// A built-in printer's cell.
    Fn(CellFn),
}

struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    cell: Cell,
}

impl Column {
    fn definition(&self) -> Value {
        json!({"name": self.name, "type": self.kind, "format": self.format,
               "description": self.description, "priority": self.priority})
    }
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating \
    resources, although some resources may allow a client to request the generation of an \
    appropriate name automatically.";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when \
    this object was created.";

fn builtin(name: &str, priority: i64, description: &str, cell: CellFn) -> Column {
    Column {
        name: name.into(),
        kind: "string".into(),
        format: if name == "Name" { "name" } else { "" }.into(),
        description: description.into(),
        priority,
        cell: Cell::Fn(cell),
    }
}

fn name_column() -> Column {
    builtin("Name", 0, NAME_DESCRIPTION, |o, _| {
        json!(o["metadata"]["name"].as_str().unwrap_or(""))
    })
}

fn age_column() -> Column {
    builtin("Age", 0, AGE_DESCRIPTION, |o, now| {
        json!(age(o["metadata"]["creationTimestamp"].as_str(), now))
    })
}

/// The columns of a type, in order.
fn columns(t: &ResourceType) -> Vec<Column> {
    if t.custom {
        return crd_columns(t);
    }
    let mut cols = vec![name_column()];
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "secrets") => {
            cols.push(builtin("Type", 0, "The type of the secret", |o, _| {
                json!(o["type"].as_str().unwrap_or("Opaque"))
            }));
            cols.push(builtin(
                "Data",
                0,
                "Number of data items in the secret",
                |o, _| {
                    // stringData is merged into data on a real server's write; the stand-in
                    // keeps both, so count the keys of either.
                    let mut keys: Vec<&String> = Vec::new();
                    for f in ["data", "stringData"] {
                        if let Some(m) = o[f].as_object() {
                            keys.extend(m.keys());
                        }
                    }
                    keys.sort();
                    keys.dedup();
                    json!(keys.len())
                },
            ));
            cols.push(age_column());
        }
        ("", "configmaps") => {
            cols.push(builtin(
                "Data",
                0,
                "Number of data items in the ConfigMap",
                |o, _| json!(count(&o["data"]) + count(&o["binaryData"])),
            ));
            cols.push(age_column());
        }
        ("", "namespaces") => {
            cols.push(builtin(
                "Status",
                0,
                "The status of the namespace",
                |o, _| json!(o["status"]["phase"].as_str().unwrap_or("")),
            ));
            cols.push(age_column());
        }
        ("", "serviceaccounts") => {
            cols.push(builtin(
                "Secrets",
                0,
                "Secrets is the list of secrets allowed to be used by pods running using this ServiceAccount.",
                |o, _| json!(o["secrets"].as_array().map_or(0, Vec::len)),
            ));
            cols.push(age_column());
        }
        ("", "events") | ("events.k8s.io", "events") => return event_columns(),
        ("apps", "deployments") => {
            cols.push(builtin(
                "Ready",
                0,
                "Number of the pod with ready state",
                |o, _| {
                    json!(format!(
                        "{}/{}",
                        int(&o["status"]["readyReplicas"]),
                        replicas(o)
                    ))
                },
            ));
            cols.push(builtin(
                "Up-to-date",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                |o, _| json!(int(&o["status"]["updatedReplicas"])),
            ));
            cols.push(builtin(
                "Available",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                |o, _| json!(int(&o["status"]["availableReplicas"])),
            ));
            cols.push(age_column());
            cols.extend(workload_wide_columns(true));
        }
        ("apps", "statefulsets") => {
            cols.push(builtin(
                "Ready",
                0,
                "Number of the pod with ready state",
                |o, _| {
                    json!(format!(
                        "{}/{}",
                        int(&o["status"]["readyReplicas"]),
                        replicas(o)
                    ))
                },
            ));
            cols.push(age_column());
            cols.extend(workload_wide_columns(false));
        }
        ("apps", "daemonsets") => {
            let counts: [(&str, CellFn); 5] = [
                ("Desired", |o, _| {
                    json!(int(&o["status"]["desiredNumberScheduled"]))
                }),
                ("Current", |o, _| {
                    json!(int(&o["status"]["currentNumberScheduled"]))
                }),
                ("Ready", |o, _| json!(int(&o["status"]["numberReady"]))),
                ("Up-to-date", |o, _| {
                    json!(int(&o["status"]["updatedNumberScheduled"]))
                }),
                ("Available", |o, _| {
                    json!(int(&o["status"]["numberAvailable"]))
                }),
            ];
            for (name, cell) in counts {
                cols.push(builtin(name, 0, "", cell));
            }
            cols.push(builtin(
                "Node Selector",
                0,
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
                |o, _| {
                    json!(format_labels(
                        &o["spec"]["template"]["spec"]["nodeSelector"]
                    ))
                },
            ));
            cols.push(age_column());
            cols.extend(workload_wide_columns(true));
        }
        ("coordination.k8s.io", "leases") => {
            cols.push(builtin(
                "Holder",
                0,
                "HolderIdentity contains the identity of the holder of a current lease.",
                |o, _| json!(o["spec"]["holderIdentity"].as_str().unwrap_or("")),
            ));
            cols.push(age_column());
        }
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => {
            cols.push(builtin("Created At", 0, AGE_DESCRIPTION, |o, _| {
                json!(o["metadata"]["creationTimestamp"].as_str().unwrap_or(""))
            }));
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            cols.push(builtin(
                "Role",
                0,
                "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
                |o, _| {
                    let r = &o["roleRef"];
                    json!(format!(
                        "{}/{}",
                        r["kind"].as_str().unwrap_or(""),
                        r["name"].as_str().unwrap_or("")
                    ))
                },
            ));
            cols.push(age_column());
            cols.push(builtin("Users", 1, "Users in the roleBinding", |o, _| {
                json!(subjects(o, "User"))
            }));
            cols.push(builtin("Groups", 1, "Groups in the roleBinding", |o, _| {
                json!(subjects(o, "Group"))
            }));
            cols.push(builtin(
                "ServiceAccounts",
                1,
                "ServiceAccounts in the roleBinding",
                |o, _| json!(subjects(o, "ServiceAccount")),
            ));
        }
        _ => cols.push(age_column()),
    }
    cols
}

/// A CRD's columns: Name, then the served version's `additionalPrinterColumns` (the API server
/// defaults them to a single Age column when the CRD declares none).
fn crd_columns(t: &ResourceType) -> Vec<Column> {
    let mut cols = vec![name_column()];
    if t.printer_columns.is_empty() {
        cols.push(age_column());
        return cols;
    }
    for c in &t.printer_columns {
        // Paths were checked when the CRD was loaded; should one still fail, its cells are empty.
        let cell = match JsonPath::parse(&c.json_path) {
            Ok(p) => Cell::Path(p),
            Err(_) => Cell::Fn(|_, _| Value::Null),
        };
        cols.push(Column {
            name: c.name.clone(),
            kind: c.kind.clone(),
            format: c.format.clone(),
            description: c.description.clone(),
            priority: c.priority,
            cell,
        });
    }
    cols
}

/// The Event printer's columns; Name comes last and only with `-o wide`.
fn event_columns() -> Vec<Column> {
    vec![
        builtin(
            "Last Seen",
            0,
            "The time at which the most recent occurrence of this event was recorded.",
            |o, now| json!(event_times(&event_view(o), now).1),
        ),
        builtin(
            "Type",
            0,
            "Type of this event (Normal, Warning), new types could be added in the future",
            |o, _| json!(event_view(o)["type"].as_str().unwrap_or("")),
        ),
        builtin(
            "Reason",
            0,
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            |o, _| json!(event_view(o)["reason"].as_str().unwrap_or("")),
        ),
        builtin(
            "Object",
            0,
            "The object that this event is about.",
            |o, _| {
                let e = event_view(o);
                let r = &e["involvedObject"];
                let kind = r["kind"].as_str().unwrap_or("").to_lowercase();
                json!(match r["name"].as_str().filter(|n| !n.is_empty()) {
                    Some(n) => format!("{kind}/{n}"),
                    None => kind,
                })
            },
        ),
        builtin(
            "Subobject",
            1,
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
            |o, _| {
                json!(
                    event_view(o)["involvedObject"]["fieldPath"]
                        .as_str()
                        .unwrap_or("")
                )
            },
        ),
        builtin(
            "Source",
            1,
            "The component reporting this event.",
            |o, _| {
                let e = event_view(o);
                let pick = |a: &Value, b: &Value| {
                    a.as_str()
                        .filter(|s| !s.is_empty())
                        .or_else(|| b.as_str())
                        .unwrap_or("")
                        .to_string()
                };
                let component = pick(&e["source"]["component"], &e["reportingComponent"]);
                let instance = pick(&e["source"]["host"], &e["reportingInstance"]);
                json!(if instance.is_empty() {
                    component
                } else {
                    format!("{component}, {instance}")
                })
            },
        ),
        builtin(
            "Message",
            0,
            "A human-readable description of the status of this operation.",
            |o, _| json!(event_view(o)["message"].as_str().unwrap_or("").trim()),
        ),
        builtin(
            "First Seen",
            1,
            "The time at which the event was first recorded.",
            |o, now| json!(event_times(&event_view(o), now).0),
        ),
        builtin(
            "Count",
            1,
            "The number of times this event has occurred.",
            |o, _| {
                let e = event_view(o);
                let n = if e["series"].is_object() {
                    int(&e["series"]["count"])
                } else {
                    int(&e["count"])
                };
                json!(if n == 0 { 1 } else { n })
            },
        ),
        builtin("Name", 1, NAME_DESCRIPTION, |o, _| {
            json!(o["metadata"]["name"].as_str().unwrap_or(""))
        }),
    ]
}

/// An `events.k8s.io/v1` Event in the field names of a core `v1` one (a real server stores one
/// object and serves it through both APIs; the printer works on the core form).
fn event_view(o: &Value) -> Value {
    if o["apiVersion"].as_str() != Some("events.k8s.io/v1") {
        return o.clone();
    }
    let mut e = o.clone();
    for (from, to) in [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("deprecatedSource", "source"),
        ("reportingController", "reportingComponent"),
    ] {
        e[to] = o[from].clone();
    }
    e
}

/// (first seen, last seen) of an Event as ages.
fn event_times(e: &Value, now: DateTime<Utc>) -> (String, String) {
    fn set(v: &Value) -> Option<&str> {
        v.as_str().filter(|s| !s.is_empty())
    }
    let first = match set(&e["firstTimestamp"]) {
        Some(t) => age(Some(t), now),
        None => age(set(&e["eventTime"]), now),
    };
    let last = if let Some(t) = set(&e["series"]["lastObservedTime"]) {
        age(Some(t), now)
    } else if let Some(t) = set(&e["lastTimestamp"]) {
        age(Some(t), now)
    } else {
        first.clone()
    };
    (first, last)
}

/// Containers, Images (and Selector) of a workload, shown with `-o wide`.
fn workload_wide_columns(selector: bool) -> Vec<Column> {
    let mut cols = vec![
        builtin(
            "Containers",
            1,
            "Names of each container in the template.",
            |o, _| json!(containers(o, "name")),
        ),
        builtin(
            "Images",
            1,
            "Images referenced by each container in the template.",
            |o, _| json!(containers(o, "image")),
        ),
    ];
    if selector {
        cols.push(builtin(
            "Selector",
            1,
            "Label selector for pods.",
            |o, _| json!(format_selector(&o["spec"]["selector"])),
        ));
    }
    cols
}

fn containers(o: &Value, field: &str) -> String {
    o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c[field].as_str().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// `k=v,k2=v2` in key order, `<none>` when empty (apimachinery's `labels.FormatLabels`).
fn format_labels(m: &Value) -> String {
    let mut pairs: Vec<String> = m
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs.sort();
    pairs.join(",")
}

/// A `LabelSelector` in selector syntax (`metav1.FormatLabelSelector`).
fn format_selector(sel: &Value) -> String {
    if !sel.is_object() {
        return "<none>".into();
    }
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op} ({})", values.join(",")),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn subjects(o: &Value, kind: &str) -> String {
    o["subjects"]
        .as_array()
        .map(|ss| {
            ss.iter()
                .filter(|s| s["kind"] == kind)
                .map(|s| {
                    let name = s["name"].as_str().unwrap_or("");
                    match s["namespace"].as_str() {
                        Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                        _ => name.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// `spec.replicas`, which a real server defaults to 1.
fn replicas(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// A CRD cell: the first value the path selects, typed like the real server's table convertor
/// (`string` columns print any value as text, `date` ones as an age, mismatches are empty).
fn crd_cell(path: &JsonPath, kind: &str, obj: &Value, now: DateTime<Utc>) -> Value {
    let Some(v) = path.first(obj).filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match kind {
        "string" => json!(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        "integer" => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        "number" => v.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => v.as_bool().map_or(Value::Null, |b| json!(b)),
        "date" => v.as_str().map_or(Value::Null, |s| json!(age(Some(s), now))),
        _ => Value::Null,
    }
}

/// The age of an RFC 3339 timestamp as the API server prints it (`translateTimestampSince`):
/// `<unknown>` without one, `<invalid>` for garbage.
pub fn age(ts: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(ts) = ts.filter(|s| !s.is_empty()) else {
        return "<unknown>".into();
    };
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => human_duration(now.signed_duration_since(t.with_timezone(&Utc))),
        Err(_) => "<invalid>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`: two or three significant figures, coarser as the
/// duration grows (`45s`, `5m30s`, `12m`, `3h20m`, `3d4h`, `400d`, `2y30d`).
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds();
    // A clock up to a second ahead counts as now.
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Builds a `Table` of `objects` (already filtered). `list_meta` is the list's metadata
/// (`resourceVersion`, `continue`, `remainingItemCount`); for a single object pass `None` and the
/// table carries the object's resourceVersion. `api_version` is `meta.k8s.io/v1` or
/// `meta.k8s.io/v1beta1`, as negotiated.
pub fn to_table(
    t: &ResourceType,
    objects: &[Value],
    list_meta: Option<Value>,
    include: Include,
    api_version: &str,
    now: DateTime<Utc>,
) -> Value {
    let cols = columns(t);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols
                .iter()
                .map(|c| match &c.cell {
                    Cell::Path(p) => crd_cell(p, &c.kind, o, now),
                    Cell::Fn(f) => f(o, now),
                })
                .collect();
            let mut row = json!({"cells": cells});
            match include {
                Include::None => {}
                Include::Metadata => {
                    let mut meta = o["metadata"].clone();
                    // The real server drops managedFields from these partial objects.
                    if let Some(m) = meta.as_object_mut() {
                        m.remove("managedFields");
                    }
                    row["object"] = json!({"kind": "PartialObjectMetadata",
                        "apiVersion": api_version, "metadata": meta});
                }
                Include::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let metadata = list_meta.unwrap_or_else(|| {
        let rv = objects
            .first()
            .and_then(|o| o["metadata"]["resourceVersion"].as_str())
            .unwrap_or("");
        json!({"resourceVersion": rv})
    });
    json!({
        "kind": "Table", "apiVersion": api_version, "metadata": metadata,
        "columnDefinitions": cols.iter().map(Column::definition).collect::<Vec<_>>(),
        "rows": rows,
    })
}

/// The media type an `Accept` header asks for, in the order it lists them: `Some(version)` for
/// a `Table` (`as=Table;g=meta.k8s.io;v=v1|v1beta1` on JSON), `None` otherwise.
pub fn table_version(accept: &str) -> Option<&'static str> {
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let (mut as_, mut g, mut v) = ("", "", "");
        for p in parts {
            match p.split_once('=') {
                Some(("as", x)) => as_ = x,
                Some(("g", x)) => g = x,
                Some(("v", x)) => v = x,
                _ => {}
            }
        }
        let json_like = matches!(media, "application/json" | "*/*" | "application/*");
        if !json_like {
            continue;
        }
        if as_.is_empty() {
            return None;
        }
        if as_ == "Table" && g == "meta.k8s.io" {
            match v {
                "v1" => return Some("meta.k8s.io/v1"),
                "v1beta1" => return Some("meta.k8s.io/v1beta1"),
                _ => {}
            }
        }
        // Another conversion (PartialObjectMetadata): not a table.
        if as_ != "Table" {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn human_durations() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (47 * 3600, "47h"),
            (2 * 86400, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (400 * 86400, "400d"),
            ((2 * 365 + 30) * 86400, "2y30d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(TimeDelta::seconds(secs)), want, "{secs}");
        }
    }

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(table_version(kubectl), Some("meta.k8s.io/v1"));
        assert_eq!(
            table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
            Some("meta.k8s.io/v1beta1")
        );
        assert_eq!(table_version("application/json"), None);
        assert_eq!(table_version(""), None);
        assert_eq!(
            table_version("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            None
        );
        // Protobuf first (which the stand-in cannot speak), then a JSON table.
        assert_eq!(
            table_version(
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io"
            ),
            Some("meta.k8s.io/v1")
        );
    }

    fn at(ts: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(ts)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn managed_secret_table() {
        let crd = include_str!("../../../crds/keyturn.dev_managedsecrets.yaml");
        let types = crate::resources::from_crd_yaml(crd).unwrap();
        let ms = &types[0];
        let obj = json!({
            "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
            "metadata": {"name": "db", "namespace": "ns", "resourceVersion": "7",
                         "creationTimestamp": "2030-01-01T00:00:00Z", "managedFields": [{}]},
            "status": {"rotator": "postgres", "lastRotationTime": "2030-01-01T01:00:00Z",
                       "nextRotationTime": "2030-02-01T00:00:00Z",
                       "conditions": [{"type": "Ready", "status": "False", "reason": "Failing"}]},
        });
        let table = to_table(
            ms,
            &[obj],
            Some(json!({"resourceVersion": "9"})),
            Include::Metadata,
            "meta.k8s.io/v1",
            at("2030-01-01T03:30:00Z"),
        );
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["metadata"]["resourceVersion"], "9");
        let defs: Vec<(String, i64)> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().into(),
                    c["priority"].as_i64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, i64)> = [
            ("Name", 0),
            ("Rotator", 0),
            ("Ready", 0),
            ("Last Rotated", 0),
            ("Next Rotation", 0),
            ("Expires", 0),
            ("Age", 0),
            ("Reason", 1),
        ]
        .iter()
        .map(|(n, p)| ((*n).into(), *p))
        .collect();
        assert_eq!(defs, want);
        let row = &table["rows"][0];
        assert_eq!(
            row["cells"],
            json!([
                "db",
                "postgres",
                "False",
                "150m",
                "2030-02-01T00:00:00Z",
                null,
                "3h30m",
                "Failing"
            ])
        );
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["namespace"], "ns");
        assert!(row["object"]["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn builtin_tables() {
        let types = crate::resources::builtins();
        let find = |g: &str, p: &str| crate::resources::find(&types, g, "v1", p).unwrap();
        let now = at("2030-01-01T00:00:45Z");
        let created = json!({"name": "x", "creationTimestamp": "2030-01-01T00:00:00Z",
                             "resourceVersion": "3"});
        let cells = |t: &ResourceType, obj: Value, include: Include| {
            let table = to_table(t, &[obj], None, include, "meta.k8s.io/v1", now);
            assert_eq!(table["metadata"]["resourceVersion"], "3");
            table["rows"][0].clone()
        };
        let row = cells(
            find("", "secrets"),
            json!({"metadata": created, "type": "kubernetes.io/tls",
                   "data": {"tls.crt": "", "tls.key": ""}}),
            Include::None,
        );
        assert_eq!(row["cells"], json!(["x", "kubernetes.io/tls", 2, "45s"]));
        assert!(row.get("object").is_none());
        let deployment = json!({"metadata": created, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "a"},
                         "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
            "template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let row = cells(find("apps", "deployments"), deployment, Include::Object);
        assert_eq!(
            row["cells"],
            json!(["x", "2/3", 3, 2, "45s", "c", "i:1", "app=a,tier in (web)"])
        );
        assert_eq!(row["object"]["spec"]["replicas"], 3);
        let row = cells(
            find("", "configmaps"),
            json!({"metadata": created}),
            Include::None,
        );
        assert_eq!(row["cells"], json!(["x", 0, "45s"]));
        let event = json!({"apiVersion": "events.k8s.io/v1", "metadata": created,
            "regarding": {"kind": "ManagedSecret", "name": "db"}, "note": " rotated ",
            "reason": "Rotated", "type": "Normal", "eventTime": "2030-01-01T00:00:40.000000Z",
            "reportingController": "keyturn", "reportingInstance": "pod-1"});
        let row = cells(find("events.k8s.io", "events"), event, Include::None);
        assert_eq!(
            row["cells"],
            json!([
                "5s",
                "Normal",
                "Rotated",
                "managedsecret/db",
                "",
                "keyturn, pod-1",
                "rotated",
                "5s",
                1,
                "x"
            ])
        );
    }

    #[test]
    fn crd_cells_by_type() {
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let obj = json!({"status": {"s": "x", "n": 3, "f": 1.5, "b": true, "m": {"a": 1},
                                    "t": "2030-01-01T00:05:00Z", "bad": "yesterday"}});
        let cell = |p: &str, k: &str| crd_cell(&JsonPath::parse(p).unwrap(), k, &obj, now);
        assert_eq!(cell(".status.s", "string"), json!("x"));
        assert_eq!(cell(".status.n", "string"), json!("3"));
        assert_eq!(cell(".status.m", "string"), json!("{\"a\":1}"));
        assert_eq!(cell(".status.n", "integer"), json!(3));
        assert_eq!(cell(".status.f", "number"), json!(1.5));
        assert_eq!(cell(".status.b", "boolean"), json!(true));
        assert_eq!(cell(".status.s", "integer"), Value::Null);
        assert_eq!(cell(".status.t", "date"), json!("5m"));
        assert_eq!(cell(".status.bad", "date"), json!("<invalid>"));
        assert_eq!(cell(".status.missing", "string"), Value::Null);
    }
}
