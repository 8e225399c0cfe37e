//! Appends the controller's audit records to the hash-chained store, failing closed: the
//! caller runs no rotation step whose records could not be written. Also mirrors each record
//! to the log, so the chain's progress is visible outside the store.

use std::sync::atomic::{AtomicBool, Ordering};

use keyturn_audit::{AuditEntry, AuditStore, StoreError};
use keyturn_core::audit::AuditEvent;

pub struct AuditSink {
    store: AuditStore,
    available: AtomicBool,
}

impl AuditSink {
    pub fn new(store: AuditStore) -> AuditSink {
        AuditSink {
            store,
            available: AtomicBool::new(true),
        }
    }

    /// Opens the store named by `--audit-store`: `sqlite:PATH` (created and migrated: the
    /// operator owns the file) or a `postgres://` URL, whose schema the operator never applies
    /// (its role may only INSERT and SELECT): a missing schema or grant fails here, naming
    /// `keyturn-operator audit migrate` as the fix, rather than at the first rotation step.
    pub async fn open(location: &str) -> Result<AuditStore, StoreError> {
        let store = Self::open_unchecked(location).await?;
        match store.check_schema().await {
            Ok(true) => Ok(store),
            Ok(false) => {
                tracing::warn!(
                    "the audit store's schema predates this operator (no audit_anchor table): appends work, `keyturn-operator audit prune` does not until the schema's owner runs `keyturn-operator audit migrate --store ...`"
                );
                Ok(store)
            }
            Err(error) => {
                store.close().await;
                Err(error)
            }
        }
    }

    async fn open_unchecked(location: &str) -> Result<AuditStore, StoreError> {
        match location.strip_prefix("sqlite:") {
            Some(path) => {
                let path = path.strip_prefix("//").unwrap_or(path);
                if let Some(parent) = std::path::Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    // A missing directory surfaces as the store's own open error below.
                    let _ = std::fs::create_dir_all(parent);
                }
                AuditStore::open_sqlite(path).await
            }
            None => AuditStore::connect_postgres(location).await,
        }
    }

    pub fn store(&self) -> &AuditStore {
        &self.store
    }

    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Appends the lifecycle's records for one ManagedSecret as one batch.
    pub async fn append_events(
        &self,
        actor: &str,
        namespace: &str,
        name: &str,
        events: &[AuditEvent],
    ) -> Result<usize, StoreError> {
        let entries: Vec<AuditEntry> = events
            .iter()
            .map(|event| AuditEntry::from_event(actor, namespace, name, event))
            .collect();
        self.append(&entries).await
    }

    pub async fn append(&self, entries: &[AuditEntry]) -> Result<usize, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        match self.store.append_batch(entries).await {
            Ok(records) => {
                self.available.store(true, Ordering::Relaxed);
                for record in &records {
                    tracing::info!(
                        audit.sequence = record.sequence,
                        audit.hash = %hex_prefix(&record.hash),
                        audit.action = %record.action,
                        audit.outcome = %record.outcome,
                        namespace = %record.namespace,
                        managed_secret = %record.managed_secret,
                        rotation_id = record.rotation_id.as_deref().unwrap_or(""),
                        step = record.step.as_deref().unwrap_or(""),
                        "audit record appended"
                    );
                }
                Ok(records.len())
            }
            Err(error) => {
                self.available.store(false, Ordering::Relaxed);
                Err(error)
            }
        }
    }
}

fn hex_prefix(hash: &[u8; 32]) -> String {
    hash.iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
