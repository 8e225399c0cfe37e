//! The append-only audit store, through sqlx: SQLite embedded (a file in WAL mode, the default)
//! or PostgreSQL (production). Both use one schema, in `migrations/sqlite` and
//! `migrations/postgres` (same table, same columns; only the types' spelling and the
//! append-only triggers differ).
//!
//! [`AuditStore::append_batch`] assigns sequence numbers and hashes inside one transaction that
//! first takes the chain's write lock — `BEGIN IMMEDIATE` in SQLite, a transaction-scoped
//! advisory lock in PostgreSQL — so concurrent appenders (tasks, or several processes) can never
//! fork the chain; the `UNIQUE` constraint on `previous_hash` is a second guard.
//!
//! Retention: [`AuditStore::prune`] (an administrator's call, never the operator's) deletes the
//! oldest records and leaves an [`Anchor`] in `audit_anchor` in the same transaction, under the
//! same lock; the schema's triggers allow no other deletion (migration 0003).
//!
//! The store takes [`AuditEntry`]s: fingerprints, never credential values. Error messages name
//! the call and the database's reason; they never contain the connection URL or an entry's
//! contents.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};

use crate::record::{AuditEntry, AuditRecord, EntryError};
use crate::verify::{Checkpoint, Verifier, VerifyError, VerifySummary};

mod admin;

pub use admin::{AppliedMigration, MigrationReport, PruneError, PruneOptions, PruneOutcome};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Key of the PostgreSQL advisory lock that serialises appenders (`ktaudit1` in ASCII).
pub const POSTGRES_APPEND_LOCK: i64 = 0x6b74_6175_6469_7431;
/// Rows per INSERT statement (13 bind parameters each; well under both databases' limits).
const ROWS_PER_STATEMENT: usize = 500;
/// Records per page when [`AuditStore::verify`] reads the chain.
const VERIFY_PAGE: u32 = 10_000;

const COLUMNS: &str = "sequence, time_unix, actor, action, namespace, managed_secret, \
                       rotation_id, step, fingerprint, outcome, details, previous_hash, hash";

/// Errors of the audit store. Messages name the call; they never contain credential values,
/// connection URLs or record contents.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer in time; retry later.
    #[error("audit store {call}: database unavailable: {source}")]
    Unavailable {
        call: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// The database refused the statement (permission, constraint, trigger, ...).
    #[error("audit store {call}: {source}")]
    Database {
        call: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Applying the schema failed.
    #[error("audit store {call}: migration failed: {source}")]
    Migrate {
        call: &'static str,
        #[source]
        source: MigrateError,
    },
    /// An entry of the batch cannot be encoded; nothing of the batch was written.
    #[error("audit store {call}: entry {index} of the batch: {source}")]
    InvalidEntry {
        call: &'static str,
        index: usize,
        #[source]
        source: EntryError,
    },
    /// The schema is not there, or not visible to this role: the operator never applies it to
    /// PostgreSQL.
    #[error(
        "audit store {call}: table audit_records not found (the schema was not applied, or this role has no USAGE on its schema or no search_path to it); run `keyturn-operator audit migrate --store ...` as the schema's owner"
    )]
    SchemaMissing { call: &'static str },
    /// The role may not append or read.
    #[error(
        "audit store {call}: this role lacks {privilege} on audit_records; as the schema's owner run `keyturn-operator audit migrate --store ... --grant-to ROLE`"
    )]
    PrivilegeMissing {
        call: &'static str,
        privilege: &'static str,
    },
    /// The call cannot run on this backend or with these arguments.
    #[error("audit store {call}: {reason}")]
    Unsupported {
        call: &'static str,
        reason: &'static str,
    },
    /// A stored row cannot be read back as a record (wrong hash length, negative sequence...).
    #[error("audit store {call}: stored record {sequence} is malformed: {reason}")]
    Malformed {
        call: &'static str,
        sequence: i64,
        reason: &'static str,
    },
}

impl StoreError {
    /// Whether the same call may succeed later (connection trouble, lock contention,
    /// serialisation failures, a concurrent append that won the race).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Database { source, .. } => is_retryable_db(source),
            StoreError::Migrate { source, .. } => match source {
                MigrateError::Execute(e) => is_retryable_db(e) || is_unavailable(e),
                _ => false,
            },
            StoreError::InvalidEntry { .. }
            | StoreError::Malformed { .. }
            | StoreError::SchemaMissing { .. }
            | StoreError::PrivilegeMissing { .. }
            | StoreError::Unsupported { .. } => false,
        }
    }
}

fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    )
}

fn is_retryable_db(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return is_unavailable(e);
    };
    // A concurrent appender took the same sequence (can only happen across processes without
    // the lock, e.g. a foreign writer): the next attempt reads the new head.
    if db.is_unique_violation() {
        return true;
    }
    let Some(code) = db.code() else { return false };
    let code: &str = &code;
    match code {
        // PostgreSQL: serialization failure, deadlock, lock not available, shutdown, too many
        // connections / insufficient resources, connection exceptions.
        "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300" => true,
        c if c.starts_with("08") || c.starts_with("53") => true,
        // SQLite (primary or extended result codes): BUSY, LOCKED.
        c => matches!(c.parse::<u32>().map(|n| n & 0xff), Ok(5 | 6)),
    }
}

fn db_error(call: &'static str, source: sqlx::Error) -> StoreError {
    if is_unavailable(&source) {
        StoreError::Unavailable { call, source }
    } else {
        StoreError::Database { call, source }
    }
}

/// Runs a record query on whichever backend the store has and decodes the rows: the two arms
/// differ only in the SQL dialect and the pool type, so `$bind` adds the same parameters to both.
macro_rules! fetch_records {
    ($store:expr, $call:expr, $sqlite:expr, $postgres:expr, |$query:ident| $bind:expr) => {{
        let err = |e| db_error($call, e);
        match &$store.backend {
            Backend::Sqlite(pool) => {
                let $query = sqlx::query($sqlite);
                $bind
                    .fetch_all(pool)
                    .await
                    .map_err(err)?
                    .iter()
                    .map(|row| record_from_row(row, $call))
                    .collect()
            }
            Backend::Postgres(pool) => {
                let $query = sqlx::query($postgres);
                $bind
                    .fetch_all(pool)
                    .await
                    .map_err(err)?
                    .iter()
                    .map(|row| record_from_row(row, $call))
                    .collect()
            }
        }
    }};
}

/// The append-only audit store.
#[derive(Debug, Clone)]
pub struct AuditStore {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl AuditStore {
    /// Opens (creating it if missing) the SQLite file at `path` in WAL mode with
    /// `synchronous = FULL` (a committed append survives a crash of the process and of the
    /// machine), and applies the schema.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<AuditStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| db_error("open_sqlite", e))?;
        let store = AuditStore {
            backend: Backend::Sqlite(pool),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Opens an existing SQLite file read-only, for verifying and exporting: no file is
    /// created, no schema applied, no journal mode set, so a verifier never changes what it
    /// verifies. Appends through this store fail.
    pub async fn open_sqlite_read_only(path: impl AsRef<Path>) -> Result<AuditStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| db_error("open_sqlite_read_only", e))?;
        Ok(AuditStore {
            backend: Backend::Sqlite(pool),
        })
    }

    /// Connects to PostgreSQL. Does not apply the schema: the operator's role has only
    /// SELECT and INSERT; the schema owner runs [`AuditStore::migrate`] (see docs/audit.md).
    pub async fn connect_postgres(url: &str) -> Result<AuditStore, StoreError> {
        // The parse error may quote the URL, which may hold a password: it is dropped.
        let options = PgConnectOptions::from_str(url).map_err(|_| StoreError::Database {
            call: "connect_postgres",
            source: sqlx::Error::Configuration("invalid PostgreSQL connection URL".into()),
        })?;
        Self::connect_postgres_with(options).await
    }

    /// Connects to PostgreSQL with prepared options (e.g. a `search_path`).
    pub async fn connect_postgres_with(
        options: PgConnectOptions,
    ) -> Result<AuditStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| db_error("connect_postgres", e))?;
        Ok(AuditStore::from_postgres_pool(pool))
    }

    /// A store on an existing PostgreSQL pool.
    pub fn from_postgres_pool(pool: PgPool) -> AuditStore {
        AuditStore {
            backend: Backend::Postgres(pool),
        }
    }

    /// Which backend: `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Applies the schema (idempotent). [`AuditStore::apply_migrations`] also says what it
    /// applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.apply_migrations().await.map(|_| ())
    }

    /// Closes the connections.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Appends `entries`, in order, as one transaction: all are written or none. Returns the
    /// records as stored (sequence, whole-second time, hashes). An empty batch writes nothing.
    pub async fn append_batch(
        &self,
        entries: &[AuditEntry],
    ) -> Result<Vec<AuditRecord>, StoreError> {
        const CALL: &str = "append_batch";
        for (index, entry) in entries.iter().enumerate() {
            entry
                .validate()
                .map_err(|source| StoreError::InvalidEntry {
                    call: CALL,
                    index,
                    source,
                })?;
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let err = |e| db_error(CALL, e);
        match &self.backend {
            Backend::Sqlite(pool) => {
                // IMMEDIATE: take the write lock before reading the head.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
                let records = chain_and_insert::<sqlx::Sqlite>(&mut tx, entries, CALL).await?;
                tx.commit().await.map_err(err)?;
                Ok(records)
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(err)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(POSTGRES_APPEND_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                let records = chain_and_insert::<sqlx::Postgres>(&mut tx, entries, CALL).await?;
                tx.commit().await.map_err(err)?;
                Ok(records)
            }
        }
    }

    /// Appends each group of entries whose key was never appended before, as one transaction
    /// (all or nothing), and remembers the keys in the same transaction. Groups whose key is
    /// already stored, or repeated earlier in `batch`, are skipped. This is what makes a retried
    /// batch (the Kubernetes API server retries a webhook batch it got no 2xx for) add nothing:
    /// the check runs under the chain's write lock, so it holds across tasks, replicas and
    /// restarts, for every key ever appended. Groups with no entries are skipped.
    pub async fn append_batch_once(
        &self,
        batch: &[KeyedEntries],
    ) -> Result<KeyedAppend, StoreError> {
        const CALL: &str = "append_batch_once";
        let mut index = 0;
        for group in batch {
            for entry in &group.entries {
                entry
                    .validate()
                    .map_err(|source| StoreError::InvalidEntry {
                        call: CALL,
                        index,
                        source,
                    })?;
                index += 1;
            }
            if group.key.len() > crate::record::MAX_FIELD_LEN {
                return Err(StoreError::InvalidEntry {
                    call: CALL,
                    index,
                    source: EntryError::FieldTooLong {
                        field: "key",
                        len: group.key.len(),
                    },
                });
            }
        }
        let batch: Vec<&KeyedEntries> = batch
            .iter()
            .filter(|group| !group.entries.is_empty())
            .collect();
        if batch.is_empty() {
            return Ok(KeyedAppend::default());
        }
        let err = |e| db_error(CALL, e);
        match &self.backend {
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
                let appended = keyed_insert::<sqlx::Sqlite>(&mut tx, &batch, CALL).await?;
                tx.commit().await.map_err(err)?;
                Ok(appended)
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(err)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(POSTGRES_APPEND_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                let appended = keyed_insert::<sqlx::Postgres>(&mut tx, &batch, CALL).await?;
                tx.commit().await.map_err(err)?;
                Ok(appended)
            }
        }
    }

    /// Up to `limit` records of `action` with `sequence > after` and `time >= since`, in
    /// sequence order: what a reader of one kind of record (e.g. reads summaries) pages through.
    pub async fn read_action_since(
        &self,
        action: &str,
        after: u64,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        const CALL: &str = "read_action_since";
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        fetch_records!(
            self,
            CALL,
            ACTION_SQL_SQLITE,
            ACTION_SQL_POSTGRES,
            |query| query
                .bind(action)
                .bind(after)
                .bind(since.timestamp())
                .bind(i64::from(limit))
        )
    }

    /// Up to `limit` records with `sequence >= from`, in sequence order.
    pub async fn read_range(&self, from: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        const CALL: &str = "read_range";
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let limit = i64::from(limit);
        fetch_records!(self, CALL, RANGE_SQL_SQLITE, RANGE_SQL_POSTGRES, |query| {
            query.bind(from).bind(limit)
        })
    }

    /// The newest record's `(sequence, hash)`: what to keep as a checkpoint outside the store.
    /// `None` while the log is empty.
    pub async fn head(&self) -> Result<Option<Checkpoint>, StoreError> {
        const CALL: &str = "head";
        let err = |e| db_error(CALL, e);
        let head = match &self.backend {
            Backend::Sqlite(pool) => head_row(
                sqlx::query(HEAD_SQL)
                    .fetch_optional(pool)
                    .await
                    .map_err(err)?,
                CALL,
            )?,
            Backend::Postgres(pool) => head_row(
                sqlx::query(HEAD_SQL)
                    .fetch_optional(pool)
                    .await
                    .map_err(err)?,
                CALL,
            )?,
        };
        Ok(head.map(|(sequence, hash)| Checkpoint { sequence, hash }))
    }

    /// Reads the whole chain in pages and verifies it against `checkpoints`, from the newest
    /// prune anchor when there is one. The outer error is the store's; the inner result is the
    /// verification's.
    pub async fn verify(
        &self,
        checkpoints: &[Checkpoint],
    ) -> Result<Result<VerifySummary, VerifyError>, StoreError> {
        let anchors = self.anchors().await?;
        let mut verifier = match Verifier::after_anchors(&anchors, checkpoints) {
            Ok(verifier) => verifier,
            Err(error) => return Ok(Err(error)),
        };
        // From 1, not from after the anchor: a record left at or before it is a finding.
        let mut from = 1;
        loop {
            let page = self.read_range(from, VERIFY_PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.sequence.saturating_add(1);
            for record in &page {
                if let Err(e) = verifier.push(record) {
                    return Ok(Err(e));
                }
            }
            if page.len() < VERIFY_PAGE as usize {
                break;
            }
        }
        Ok(verifier.finish())
    }
}

const HEAD_SQL: &str = "SELECT sequence, hash FROM audit_records ORDER BY sequence DESC LIMIT 1";
const RANGE_SQL_SQLITE: &str = "SELECT sequence, time_unix, actor, action, namespace, \
     managed_secret, rotation_id, step, fingerprint, outcome, details, previous_hash, hash \
     FROM audit_records WHERE sequence >= ?1 ORDER BY sequence LIMIT ?2";
const RANGE_SQL_POSTGRES: &str = "SELECT sequence, time_unix, actor, action, namespace, \
     managed_secret, rotation_id, step, fingerprint, outcome, details, previous_hash, hash \
     FROM audit_records WHERE sequence >= $1 ORDER BY sequence LIMIT $2";

const ACTION_SQL_SQLITE: &str = "SELECT sequence, time_unix, actor, action, namespace, \
     managed_secret, rotation_id, step, fingerprint, outcome, details, previous_hash, hash \
     FROM audit_records WHERE action = ?1 AND sequence > ?2 AND time_unix >= ?3 \
     ORDER BY sequence LIMIT ?4";
const ACTION_SQL_POSTGRES: &str = "SELECT sequence, time_unix, actor, action, namespace, \
     managed_secret, rotation_id, step, fingerprint, outcome, details, previous_hash, hash \
     FROM audit_records WHERE action = $1 AND sequence > $2 AND time_unix >= $3 \
     ORDER BY sequence LIMIT $4";

/// A group of entries appended at most once: `key` names what they record (e.g. the auditID
/// of a Kubernetes audit event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedEntries {
    pub key: String,
    pub entries: Vec<AuditEntry>,
}

/// What [`AuditStore::append_batch_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyedAppend {
    /// The records written, in order.
    pub records: Vec<AuditRecord>,
    /// Groups skipped because their key was already appended (or repeated in the batch).
    pub duplicate_keys: usize,
}

/// Keys per `IN (...)` lookup and rows per key insert.
const KEYS_PER_STATEMENT: usize = 500;

/// Drops the groups whose key is stored or repeated, then chains and inserts the rest and their
/// keys, inside the caller's transaction (which holds the write lock and commits).
async fn keyed_insert<DB>(
    connection: &mut DB::Connection,
    batch: &[&KeyedEntries],
    call: &'static str,
) -> Result<KeyedAppend, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'q> i64: sqlx::Decode<'q, DB> + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> Vec<u8>: sqlx::Decode<'q, DB> + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let err = |e| db_error(call, e);
    let mut stored = std::collections::HashSet::new();
    for chunk in batch.chunks(KEYS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<DB>::new("SELECT key FROM audit_append_keys WHERE key IN (");
        let mut separated = qb.separated(", ");
        for group in chunk {
            separated.push_bind(group.key.as_str());
        }
        qb.push(")");
        for row in qb.build().fetch_all(&mut *connection).await.map_err(err)? {
            let key: String = row.try_get(0).map_err(err)?;
            stored.insert(key);
        }
    }
    let mut fresh: Vec<&KeyedEntries> = Vec::with_capacity(batch.len());
    let mut duplicate_keys = 0;
    for group in batch {
        // `insert` is false for a stored key and for one seen earlier in this batch.
        if stored.insert(group.key.clone()) {
            fresh.push(group);
        } else {
            duplicate_keys += 1;
        }
    }
    let entries: Vec<AuditEntry> = fresh
        .iter()
        .flat_map(|group| group.entries.iter().cloned())
        .collect();
    let records = chain_and_insert::<DB>(connection, &entries, call).await?;
    // The first record of each group, to say where a key's records start.
    let mut firsts = Vec::with_capacity(fresh.len());
    let mut position = 0;
    for group in &fresh {
        if let Some(record) = records.get(position) {
            firsts.push((group.key.as_str(), record.sequence as i64));
        }
        position += group.entries.len();
    }
    for chunk in firsts.chunks(KEYS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<DB>::new("INSERT INTO audit_append_keys (key, sequence) ");
        qb.push_values(chunk, |mut b, (key, sequence)| {
            b.push_bind(*key).push_bind(*sequence);
        });
        qb.build().execute(&mut *connection).await.map_err(err)?;
    }
    Ok(KeyedAppend {
        records,
        duplicate_keys,
    })
}

fn insert_prefix() -> String {
    format!("INSERT INTO audit_records ({COLUMNS}) ")
}

fn chain_onto(head: Option<(u64, [u8; 32])>, entries: &[AuditEntry]) -> Vec<AuditRecord> {
    let mut records: Vec<AuditRecord> = Vec::with_capacity(entries.len());
    let mut previous = head;
    for entry in entries {
        let record = AuditRecord::chain(previous, entry.clone());
        previous = Some((record.sequence, record.hash));
        records.push(record);
    }
    records
}

/// Reads the chain head, chains `entries` onto it and inserts them in multi-row statements, all
/// inside the caller's transaction, which already holds the backend's write lock and commits.
async fn chain_and_insert<DB>(
    connection: &mut DB::Connection,
    entries: &[AuditEntry],
    call: &'static str,
) -> Result<Vec<AuditRecord>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'q> i64: sqlx::Decode<'q, DB> + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Vec<u8>: sqlx::Decode<'q, DB> + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let err = |e| db_error(call, e);
    let head = head_row(
        sqlx::query::<DB>(HEAD_SQL)
            .fetch_optional(&mut *connection)
            .await
            .map_err(err)?,
        call,
    )?;
    let records = chain_onto(head, entries);
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<DB>::new(insert_prefix());
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.sequence as i64)
                .push_bind(r.time.timestamp())
                .push_bind(r.actor.as_str())
                .push_bind(r.action.as_str())
                .push_bind(r.namespace.as_str())
                .push_bind(r.managed_secret.as_str())
                .push_bind(r.rotation_id.as_deref())
                .push_bind(r.step.as_deref())
                .push_bind(r.fingerprint.as_deref())
                .push_bind(r.outcome.as_str())
                .push_bind(r.details.as_str())
                .push_bind(r.previous_hash.to_vec())
                .push_bind(r.hash.to_vec());
        });
        qb.build().execute(&mut *connection).await.map_err(err)?;
    }
    Ok(records)
}

fn head_row<R: Row>(
    row: Option<R>,
    call: &'static str,
) -> Result<Option<(u64, [u8; 32])>, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let Some(row) = row else { return Ok(None) };
    let sequence: i64 = row.try_get(0).map_err(|e| db_error(call, e))?;
    let hash: Vec<u8> = row.try_get(1).map_err(|e| db_error(call, e))?;
    Ok(Some((
        seq_u64(sequence, call)?,
        hash32(&hash, sequence, call)?,
    )))
}

fn record_from_row<R: Row>(row: &R, call: &'static str) -> Result<AuditRecord, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let get_err = |e| db_error(call, e);
    let sequence: i64 = row.try_get(0).map_err(get_err)?;
    let time_unix: i64 = row.try_get(1).map_err(get_err)?;
    let previous_hash: Vec<u8> = row.try_get(11).map_err(get_err)?;
    let hash: Vec<u8> = row.try_get(12).map_err(get_err)?;
    Ok(AuditRecord {
        sequence: seq_u64(sequence, call)?,
        time: DateTime::from_timestamp(time_unix, 0).ok_or(StoreError::Malformed {
            call,
            sequence,
            reason: "time out of range",
        })?,
        actor: row.try_get(2).map_err(get_err)?,
        action: row.try_get(3).map_err(get_err)?,
        namespace: row.try_get(4).map_err(get_err)?,
        managed_secret: row.try_get(5).map_err(get_err)?,
        rotation_id: row.try_get(6).map_err(get_err)?,
        step: row.try_get(7).map_err(get_err)?,
        fingerprint: row.try_get(8).map_err(get_err)?,
        outcome: row.try_get(9).map_err(get_err)?,
        details: row.try_get(10).map_err(get_err)?,
        previous_hash: hash32(&previous_hash, sequence, call)?,
        hash: hash32(&hash, sequence, call)?,
    })
}

fn seq_u64(sequence: i64, call: &'static str) -> Result<u64, StoreError> {
    u64::try_from(sequence).map_err(|_| StoreError::Malformed {
        call,
        sequence,
        reason: "negative sequence",
    })
}

fn hash32(bytes: &[u8], sequence: i64, call: &'static str) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Malformed {
        call,
        sequence,
        reason: "a hash is not 32 bytes",
    })
}
