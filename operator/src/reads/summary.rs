//! The leader's view of recent reads: it pages through the read records appended since it last
//! looked (on the first pass, those of the last 24 hours), folds them into one summary per
//! ManagedSecret (`keyturn_core::reads`), and names the ManagedSecrets whose `status.reads`
//! would change so the controller reconciles them. Only the controller writes status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyturn_audit::{AuditStore, StoreError};
use keyturn_core::reads::{ReadsSummary, WINDOW_HOURS, unexpected_readers};
use keyturn_crds::{ReadBy, ReadsStatus};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use super::record::{READ_ACTION, read_of};
use crate::controller::resource::ManagedSecretResource;

/// Records read per store query.
const PAGE: u32 = 5_000;

#[derive(Debug, Default)]
struct Inner {
    /// Sequence of the newest read record folded in.
    last_sequence: u64,
    loaded: bool,
    /// The `now` of the last refresh: what status said then is what changes are measured from.
    refreshed_at: Option<DateTime<Utc>>,
    by_object: HashMap<(String, String), ReadsSummary>,
}

/// Per-ManagedSecret read summaries, shared between the refresher and the reconciles.
#[derive(Debug, Default)]
pub struct ReadSummaries {
    inner: Mutex<Inner>,
    /// keyturn's own username (`system:serviceaccount:NS:NAME`), never an unexpected reader.
    own_identity: Option<String>,
}

/// A ManagedSecret, by namespace and name.
pub type ObjectKey = (String, String);

impl ReadSummaries {
    pub fn new(own_identity: Option<String>) -> ReadSummaries {
        ReadSummaries {
            inner: Mutex::new(Inner::default()),
            own_identity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds in the read records appended since the last call and moves the window to `now`.
    /// Returns the ManagedSecrets whose reads status changed.
    pub async fn refresh(
        &self,
        store: &AuditStore,
        now: DateTime<Utc>,
    ) -> Result<Vec<ObjectKey>, StoreError> {
        let (mut after, loaded) = {
            let inner = self.lock();
            (inner.last_sequence, inner.loaded)
        };
        // The first pass reads the window; later passes everything new, however old its time
        // (a record's time is the read's, which can be older than records before it).
        let since = if loaded {
            DateTime::<Utc>::MIN_UTC
        } else {
            now - chrono::Duration::hours(WINDOW_HOURS)
        };
        let mut records = Vec::new();
        loop {
            let page = store
                .read_action_since(READ_ACTION, after, since, PAGE)
                .await?;
            let full = page.len() == PAGE as usize;
            if let Some(last) = page.last() {
                after = last.sequence;
            }
            records.extend(page);
            if !full {
                break;
            }
        }
        let mut inner = self.lock();
        let previous_now = inner.refreshed_at.unwrap_or(now);
        let before: HashMap<ObjectKey, (Option<ReadBy>, u64, Vec<String>)> = inner
            .by_object
            .iter()
            .map(|(key, summary)| (key.clone(), projection(summary, previous_now)))
            .collect();
        for record in &records {
            if let Some(read) = read_of(record) {
                inner
                    .by_object
                    .entry((record.namespace.clone(), record.managed_secret.clone()))
                    .or_default()
                    .add(&read, now);
            }
        }
        for summary in inner.by_object.values_mut() {
            summary.prune(now);
        }
        let mut changed: Vec<ObjectKey> = inner
            .by_object
            .iter()
            .filter(|(key, summary)| before.get(*key) != Some(&projection(summary, now)))
            .map(|(key, _)| key.clone())
            .collect();
        changed.sort();
        // Idle objects are dropped from memory; their last read stays in their status.
        inner
            .by_object
            .retain(|_, summary| summary.reads_in_window(now) > 0);
        inner.last_sequence = inner.last_sequence.max(after);
        inner.loaded = true;
        inner.refreshed_at = Some(now);
        Ok(changed)
    }

    /// The reads status of one ManagedSecret: the summary merged with what its status already
    /// says (`stored`, which keeps the last read across restarts and beyond the window), and
    /// its unexpected readers under `access` (`spec.access.serviceAccounts`, `None` without
    /// spec.access).
    pub fn status(
        &self,
        namespace: &str,
        name: &str,
        stored: Option<&ReadsStatus>,
        access: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> ReadsStatus {
        let inner = self.lock();
        let summary = inner
            .by_object
            .get(&(namespace.to_owned(), name.to_owned()));
        let from_summary = summary
            .and_then(|summary| summary.last_read.as_ref())
            .map(|last| ReadBy {
                user: last.user.clone(),
                verb: last.verb.clone(),
                time: last.time,
            });
        let stored_last = stored.and_then(|stored| stored.last_read_by.clone());
        let last_read_by = match (from_summary, stored_last) {
            (Some(new), Some(old)) => Some(if old.time > new.time { old } else { new }),
            (new, old) => new.or(old),
        };
        let readers: Vec<&str> = summary
            .map(|summary| summary.readers_in_window(now).collect())
            .unwrap_or_default();
        ReadsStatus {
            last_read_by,
            reads_last24h: summary.map_or(0, |summary| summary.reads_in_window(now)),
            unexpected_readers: unexpected_readers(
                readers,
                namespace,
                access,
                self.own_identity.as_deref(),
            ),
        }
    }
}

fn projection(summary: &ReadsSummary, now: DateTime<Utc>) -> (Option<ReadBy>, u64, Vec<String>) {
    (
        summary.last_read.as_ref().map(|last| ReadBy {
            user: last.user.clone(),
            verb: last.verb.clone(),
            time: last.time,
        }),
        summary.reads_in_window(now),
        summary.readers_in_window(now).map(str::to_owned).collect(),
    )
}

/// Refreshes `summaries` every `interval` (and at once) until dropped, and sends the
/// ManagedSecrets whose reads changed to the controller. A store failure is logged and retried
/// at the next interval.
pub async fn run(
    summaries: Arc<ReadSummaries>,
    store: AuditStore,
    interval: Duration,
    triggers: mpsc::UnboundedSender<ObjectRef<ManagedSecretResource>>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match summaries.refresh(&store, Utc::now()).await {
            Ok(changed) => {
                for (namespace, name) in changed {
                    let object =
                        ObjectRef::<ManagedSecretResource>::new_with(&name, ()).within(&namespace);
                    if triggers.send(object).is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "refresh the reads summaries; retrying at the next interval")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use keyturn_audit::AuditEntry;

    use super::*;

    fn read(minute: i64, user: &str, managed_secret: &str, outcome: &str) -> AuditEntry {
        AuditEntry {
            time: DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap(),
            actor: user.into(),
            action: READ_ACTION.into(),
            namespace: "payments".into(),
            managed_secret: managed_secret.into(),
            rotation_id: None,
            step: None,
            fingerprint: None,
            outcome: outcome.into(),
            details: r#"{"verb":"get"}"#.into(),
        }
    }

    #[tokio::test]
    async fn refresh_reports_changes_and_status_merges_the_stored_last_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuditStore::open_sqlite(dir.path().join("audit.db"))
            .await
            .unwrap();
        let api = "system:serviceaccount:payments:orders-api";
        let debug = "system:serviceaccount:payments:debug";
        store
            .append_batch(&[
                read(-2000, debug, "orders-db", "Allowed"), // older than 24 h
                read(1, api, "orders-db", "Allowed"),
                read(2, debug, "orders-db", "Denied"),
            ])
            .await
            .unwrap();
        let summaries = ReadSummaries::new(None);
        let now = DateTime::from_timestamp(1_800_000_000 + 600, 0).unwrap();
        let changed = summaries.refresh(&store, now).await.unwrap();
        assert_eq!(changed, [("payments".to_owned(), "orders-db".to_owned())]);
        assert!(summaries.refresh(&store, now).await.unwrap().is_empty());

        let access = vec!["orders-api".to_owned()];
        let status = summaries.status("payments", "orders-db", None, Some(&access), now);
        assert_eq!(status.reads_last24h, 1);
        assert!(
            status.unexpected_readers.is_empty(),
            "a denied read reads nothing"
        );
        assert_eq!(
            status.last_read_by.as_ref().map(|r| r.user.as_str()),
            Some(api)
        );

        store
            .append_batch(&[read(3, debug, "orders-db", "Allowed")])
            .await
            .unwrap();
        let changed = summaries.refresh(&store, now).await.unwrap();
        assert_eq!(changed.len(), 1);
        let status = summaries.status("payments", "orders-db", None, Some(&access), now);
        assert_eq!(status.unexpected_readers, [debug]);
        assert_eq!(status.reads_last24h, 2);

        // A day later: nothing in the window, the object is reported once more and forgotten;
        // the last read survives through the stored status.
        let later = now + chrono::Duration::hours(25);
        assert_eq!(summaries.refresh(&store, later).await.unwrap().len(), 1);
        let status_later =
            summaries.status("payments", "orders-db", Some(&status), Some(&access), later);
        assert_eq!(status_later.reads_last24h, 0);
        assert!(status_later.unexpected_readers.is_empty());
        assert_eq!(status_later.last_read_by, status.last_read_by);
        assert!(summaries.refresh(&store, later).await.unwrap().is_empty());
    }
}
