//! `kubectl keyturn status`: one row per ManagedSecret, read from its status as JSON so that an
//! object whose spec no longer parses still shows (with its reason).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// One row of the status table; also what `-o json|yaml` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRow {
    pub namespace: String,
    pub name: String,
    pub rotator: Option<String>,
    /// The Ready condition's status (`True`, `False`, `Unknown`), absent before the first
    /// reconcile.
    pub ready: Option<String>,
    /// The Ready condition's reason.
    pub reason: Option<String>,
    pub revision: u64,
    pub last_rotated: Option<DateTime<Utc>>,
    pub next_rotation: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub paused: bool,
    /// Consumers whose rollout finished (or that have nothing to roll out), of all listed.
    pub consumers_ready: usize,
    pub consumers: usize,
    /// Reads of the Secret in the last 24 hours, when the operator records reads.
    pub reads_last_24h: Option<u64>,
    /// Whether a reader outside spec.access was seen (the UnexpectedReader condition).
    pub unexpected_reader: bool,
}

impl StatusRow {
    pub fn of(object: &Value) -> StatusRow {
        let text = |value: &Value| value.as_str().map(str::to_owned);
        let time = |value: &Value| {
            value
                .as_str()
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .map(|time| time.with_timezone(&Utc))
        };
        let status = &object["status"];
        let condition = |kind: &str| {
            status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|condition| condition["type"] == kind)
        };
        let ready = condition("Ready");
        let consumers = status["consumers"].as_array().cloned().unwrap_or_default();
        let consumers_ready = consumers
            .iter()
            .filter(|consumer| {
                matches!(
                    consumer["state"].as_str(),
                    Some("RolledOut" | "ScaledToZero")
                )
            })
            .count();
        StatusRow {
            namespace: text(&object["metadata"]["namespace"]).unwrap_or_default(),
            name: text(&object["metadata"]["name"]).unwrap_or_default(),
            rotator: text(&status["rotator"]),
            ready: ready.and_then(|condition| text(&condition["status"])),
            reason: ready.and_then(|condition| text(&condition["reason"])),
            revision: status["revision"].as_u64().unwrap_or(0),
            last_rotated: time(&status["lastRotationTime"]),
            next_rotation: time(&status["nextRotationTime"]),
            expires: time(&status["expiresAt"]),
            paused: object["spec"]["rotation"]["paused"]
                .as_bool()
                .unwrap_or(false),
            consumers_ready,
            consumers: consumers.len(),
            reads_last_24h: status["reads"]["readsLast24h"].as_u64(),
            unexpected_reader: condition("UnexpectedReader")
                .is_some_and(|condition| condition["status"] == "True"),
        }
    }
}

/// `3m ago`, `in 2h`, `-`: kubectl's short ages, relative to `now`.
pub fn relative(time: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(time) = time else {
        return "-".to_owned();
    };
    let seconds = (time - now).num_seconds();
    let magnitude = short_duration(seconds.unsigned_abs());
    if seconds < 0 {
        format!("{magnitude} ago")
    } else {
        format!("in {magnitude}")
    }
}

fn short_duration(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7_200 => format!("{}m", seconds / 60),
        7_200..172_800 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// The table, aligned like kubectl's; `colour` marks Ready (green/red) and unexpected readers.
pub fn table(rows: &[StatusRow], all_namespaces: bool, now: DateTime<Utc>, colour: bool) -> String {
    let mut header = vec![];
    if all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "ROTATOR",
        "READY",
        "LAST ROTATED",
        "NEXT ROTATION",
        "EXPIRES",
        "CONSUMERS",
        "READERS",
    ]);
    let mut lines: Vec<Vec<Cell>> = vec![header.iter().map(|text| Cell::plain(text)).collect()];
    for row in rows {
        let mut cells = vec![];
        if all_namespaces {
            cells.push(Cell::plain(&row.namespace));
        }
        let ready = match (&row.ready, &row.reason) {
            (Some(status), Some(reason)) if status != "True" => format!("{status} ({reason})"),
            (Some(status), _) => status.clone(),
            (None, _) => "-".to_owned(),
        };
        let ready_colour = match row.ready.as_deref() {
            Some("True") => Some(GREEN),
            Some("False") => Some(RED),
            _ => None,
        };
        let next = if row.paused {
            "paused".to_owned()
        } else {
            relative(row.next_rotation, now)
        };
        let consumers = if row.consumers == 0 {
            "-".to_owned()
        } else {
            format!("{}/{}", row.consumers_ready, row.consumers)
        };
        let readers = match (row.reads_last_24h, row.unexpected_reader) {
            (_, true) => Cell::coloured("unexpected", RED),
            (Some(reads), false) => Cell::plain(&format!("{reads}/24h")),
            (None, false) => Cell::plain("-"),
        };
        cells.extend([
            Cell::plain(&row.name),
            Cell::plain(row.rotator.as_deref().unwrap_or("-")),
            Cell {
                text: ready,
                colour: ready_colour,
            },
            Cell::plain(&relative(row.last_rotated, now)),
            Cell::plain(&next),
            Cell::plain(&relative(row.expires, now)),
            Cell::plain(&consumers),
            readers,
        ]);
        lines.push(cells);
    }
    render(&lines, colour)
}

pub const GREEN: &str = "\x1b[32m";
pub const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// One table cell; the colour applies only when writing to a terminal.
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub colour: Option<&'static str>,
}

impl Cell {
    pub fn plain(text: &str) -> Cell {
        Cell {
            text: text.to_owned(),
            colour: None,
        }
    }

    pub fn coloured(text: &str, colour: &'static str) -> Cell {
        Cell {
            text: text.to_owned(),
            colour: Some(colour),
        }
    }
}

/// Columns padded to their widest cell and separated by three spaces, as kubectl does.
pub fn render(lines: &[Vec<Cell>], colour: bool) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            lines
                .iter()
                .filter_map(|line| line.get(column))
                .map(|cell| cell.text.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let mut text = String::new();
        for (column, cell) in line.iter().enumerate() {
            let last = column + 1 == line.len();
            let padding = if last {
                0
            } else {
                widths[column] - cell.text.chars().count() + 3
            };
            match cell.colour {
                Some(code) if colour => text.push_str(&format!("{code}{}{RESET}", cell.text)),
                _ => text.push_str(&cell.text),
            }
            text.push_str(&" ".repeat(padding));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn object() -> Value {
        json!({
            "metadata": {"name": "orders", "namespace": "payments"},
            "spec": {"rotation": {"every": "1h"}},
            "status": {
                "rotator": "postgres",
                "revision": 4,
                "lastRotationTime": "2026-11-22T11:57:00Z",
                "nextRotationTime": "2026-11-22T12:57:00Z",
                "expiresAt": "2026-11-23T11:57:00Z",
                "consumers": [
                    {"kind": "Deployment", "name": "api", "state": "RolledOut"},
                    {"kind": "Deployment", "name": "worker", "state": "Progressing"}
                ],
                "reads": {"readsLast24h": 12},
                "conditions": [{"type": "Ready", "status": "True", "reason": "Rotated"}]
            }
        })
    }

    #[test]
    fn a_row_reads_status_conditions_consumers_and_reads() {
        let row = StatusRow::of(&object());
        assert_eq!(row.name, "orders");
        assert_eq!(row.rotator.as_deref(), Some("postgres"));
        assert_eq!(row.ready.as_deref(), Some("True"));
        assert_eq!((row.consumers_ready, row.consumers), (1, 2));
        assert_eq!(row.reads_last_24h, Some(12));
        assert!(!row.unexpected_reader);
    }

    #[test]
    fn the_table_is_aligned_and_relative_and_has_no_colour_unless_asked() {
        let mut stalled = object();
        stalled["metadata"]["name"] = json!("billing-db");
        stalled["spec"]["rotation"]["paused"] = json!(true);
        stalled["status"]["conditions"] = json!([
            {"type": "Ready", "status": "False", "reason": "Stalled"},
            {"type": "UnexpectedReader", "status": "True", "reason": "UnlistedServiceAccount"}
        ]);
        let rows = [StatusRow::of(&object()), StatusRow::of(&stalled)];
        let text = table(&rows, false, now(), false);
        assert_eq!(
            text,
            "NAME         ROTATOR    READY             LAST ROTATED   NEXT ROTATION   EXPIRES   CONSUMERS   READERS\n\
             orders       postgres   True              3m ago         in 57m          in 23h    1/2         12/24h\n\
             billing-db   postgres   False (Stalled)   3m ago         paused          in 23h    1/2         unexpected\n"
        );
        assert!(!text.contains('\x1b'));
        let coloured = table(&rows, true, now(), true);
        assert!(coloured.starts_with("NAMESPACE"));
        assert!(coloured.contains(&format!("{GREEN}True")));
        assert!(coloured.contains(&format!("{RED}False (Stalled)")));
    }

    #[test]
    fn an_object_never_reconciled_shows_dashes() {
        let row = StatusRow::of(&json!({"metadata": {"name": "new", "namespace": "ns"}}));
        let text = table(&[row], false, now(), false);
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with("new    -         -       -"),
            "{text}"
        );
    }
}
