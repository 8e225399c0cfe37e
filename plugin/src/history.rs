//! `kubectl keyturn history`: what happened to one ManagedSecret, oldest first. The audit store
//! is the complete record; Events are what the cluster still remembers (about an hour).

use anyhow::Context;
use chrono::{DateTime, Utc};
use k8s_openapi::api::events::v1::Event;
use keyturn_audit::AuditRecord;
use serde::Serialize;

use crate::status::{Cell, render};

/// Records read per page from the store.
const PAGE: u32 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub time: Option<DateTime<Utc>>,
    /// The audit action or the Event reason: `RotationStarted`, `StepCompleted`, ...
    pub action: String,
    pub step: Option<String>,
    pub outcome: String,
    pub rotation_id: Option<String>,
    /// The credential's fingerprint, never its value.
    pub fingerprint: Option<String>,
    pub details: String,
    /// The audit record's sequence number (absent for Events).
    pub sequence: Option<u64>,
}

impl HistoryEntry {
    fn of_record(record: &AuditRecord) -> HistoryEntry {
        HistoryEntry {
            time: Some(record.time),
            action: record.action.clone(),
            step: record.step.clone(),
            outcome: record.outcome.clone(),
            rotation_id: record.rotation_id.clone(),
            fingerprint: record.fingerprint.clone(),
            details: record.details.clone(),
            sequence: Some(record.sequence),
        }
    }
}

/// Every record of `namespace/name` in the store, opened read-only.
pub async fn from_store(
    location: &str,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Vec<HistoryEntry>> {
    let store = keyturn_operator::audit_command::open_read_only(location)
        .await
        .with_context(|| format!("open the audit store {}", redact_url(location)))?;
    let mut entries = Vec::new();
    let mut from = 1;
    loop {
        let page = store
            .read_range(from, PAGE)
            .await
            .context("read the audit store")?;
        let Some(last) = page.last() else { break };
        from = last.sequence.saturating_add(1);
        entries.extend(
            page.iter()
                .filter(|record| record.namespace == namespace && record.managed_secret == name)
                .map(HistoryEntry::of_record),
        );
        if page.len() < PAGE as usize {
            break;
        }
    }
    store.close().await;
    Ok(entries)
}

/// The Events keyturn wrote about the ManagedSecret, oldest first.
pub fn from_events(events: &[Event]) -> Vec<HistoryEntry> {
    let mut entries: Vec<HistoryEntry> = events
        .iter()
        .map(|event| HistoryEntry {
            time: event
                .event_time
                .as_ref()
                .map(|time| time.0)
                .or_else(|| {
                    event
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|time| time.0)
                })
                .and_then(|time| DateTime::from_timestamp(time.as_second(), 0)),
            action: event.reason.clone().unwrap_or_default(),
            step: event.action.clone(),
            outcome: event.type_.clone().unwrap_or_default(),
            rotation_id: None,
            fingerprint: None,
            details: event.note.clone().unwrap_or_default(),
            sequence: None,
        })
        .collect();
    entries.sort_by_key(|entry| entry.time);
    entries
}

pub fn table(entries: &[HistoryEntry]) -> String {
    if entries.is_empty() {
        return "No history recorded.\n".to_owned();
    }
    let mut lines = vec![
        ["TIME", "ACTION", "STEP", "OUTCOME", "ROTATION", "DETAILS"]
            .map(Cell::plain)
            .to_vec(),
    ];
    for entry in entries {
        lines.push(vec![
            Cell::plain(&entry.time.map_or_else(
                || "-".to_owned(),
                |time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )),
            Cell::plain(&entry.action),
            Cell::plain(entry.step.as_deref().unwrap_or("-")),
            Cell::plain(&entry.outcome),
            Cell::plain(entry.rotation_id.as_deref().unwrap_or("-")),
            Cell::plain(&entry.details),
        ]);
    }
    render(&lines, false)
}

/// A store location without its password, for error messages.
pub fn redact_url(location: &str) -> String {
    match (location.find("://"), location.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &location[..scheme], &location[at + 1..])
        }
        _ => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_loses_its_credentials_in_messages() {
        assert_eq!(
            redact_url("postgres://auditor:hunter2@db:5432/audit"),
            "postgres://***@db:5432/audit"
        );
        assert_eq!(
            redact_url("sqlite:/var/lib/keyturn/audit.db"),
            "sqlite:/var/lib/keyturn/audit.db"
        );
    }

    #[test]
    fn events_become_entries_oldest_first() {
        let event = |reason: &str, second: u32| Event {
            reason: Some(reason.into()),
            action: Some("Publish".into()),
            type_: Some("Normal".into()),
            note: Some(format!("{reason} note")),
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::from_second(1_795_000_000 + i64::from(second))
                    .unwrap(),
            )),
            ..Event::default()
        };
        let entries = from_events(&[event("StepCompleted", 5), event("RotationStarted", 1)]);
        let actions: Vec<&str> = entries.iter().map(|entry| entry.action.as_str()).collect();
        assert_eq!(actions, vec!["RotationStarted", "StepCompleted"]);
        assert!(table(&entries).contains("RotationStarted   Publish   Normal"));
    }
}
