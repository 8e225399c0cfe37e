//! The administrator's side of the store: applying the schema and reporting what was applied,
//! granting the operator's PostgreSQL role what it needs (and nothing more), checking at the
//! operator's start that the schema is there, reading prune anchors, and pruning.
//!
//! Pruning deletes a prefix of the chain, never the newest record, and never a record newer
//! than the cut-off: the plan stops before the first record (by sequence) newer than it, and
//! the schema's triggers refuse any deletion not covered by the anchor inserted first.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use super::{
    AuditStore, Backend, HEAD_SQL, POSTGRES_APPEND_LOCK, POSTGRES_MIGRATOR, SQLITE_MIGRATOR,
    StoreError, chain_and_insert, db_error, hash32, head_row, seq_u64,
};
use crate::record::{AuditEntry, AuditRecord};
use crate::retention::{Anchor, PRUNE_ACTION, Retention};
use crate::verify::{Checkpoint, VerifyError, VerifySummary};

/// One migration applied by [`AuditStore::apply_migrations`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
}

/// What [`AuditStore::apply_migrations`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Applied now, in order.
    pub applied: Vec<AppliedMigration>,
    /// Migrations this binary knows of, all applied now.
    pub known: usize,
}

/// What to prune and how.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub retention: Retention,
    /// The moment to prune at; `None`: the database's clock (the authority the schema checks
    /// an anchor against, so a wrong clock on the administrator's machine cannot prune early).
    pub now: Option<DateTime<Utc>>,
    /// Permit a retention below [`Retention::MINIMUM`].
    pub allow_short_retention: bool,
    /// Plan and report, delete nothing.
    pub dry_run: bool,
    /// Checkpoints kept outside the store; the chain must verify against them first.
    pub checkpoints: Vec<Checkpoint>,
    /// Who prunes, for the prune's own audit record.
    pub actor: String,
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneOutcome {
    pub now: DateTime<Utc>,
    pub cutoff: DateTime<Utc>,
    /// The verification that preceded it.
    pub verified: VerifySummary,
    /// The new anchor; `None` when nothing is old enough.
    pub anchor: Option<Anchor>,
    /// First record pruned (the one after the previous anchor).
    pub first_pruned: u64,
    /// The record appended to the chain naming the anchor (not with `dry_run`).
    pub prune_record: Option<AuditRecord>,
    pub dry_run: bool,
}

/// Why a prune did not run.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Pruning a chain that does not verify would destroy the evidence of what was done to it.
    #[error("audit prune refused: the chain does not verify: {0}")]
    ChainInvalid(VerifyError),
    #[error(
        "audit prune refused: retention {retention} is shorter than {minimum} (pass --allow-short-retention to prune anyway)"
    )]
    ShortRetention {
        retention: Retention,
        minimum: Retention,
    },
    #[error("audit prune refused: retention {0} reaches before the earliest representable time")]
    RetentionOutOfRange(Retention),
}

/// `$n` placeholders for PostgreSQL, `?n` for SQLite.
fn dialect(backend: &Backend, sql: &'static str) -> AssertSqlSafe<String> {
    match backend {
        Backend::Postgres(_) => AssertSqlSafe(sql.to_owned()),
        Backend::Sqlite(_) => AssertSqlSafe(sql.replace('$', "?")),
    }
}

const ANCHOR_COLUMNS_SQL: &str = "SELECT sequence, hash, time_unix, pruned_at_unix, cutoff_unix, \
     pruned_count FROM audit_anchor ORDER BY sequence";
const TABLE_EXISTS_SQLITE: &str =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1";
const TABLE_EXISTS_POSTGRES: &str = "SELECT count(*) FROM (SELECT to_regclass($1) AS t) r \
     WHERE r.t IS NOT NULL";

impl AuditStore {
    /// Opens (creating it if missing) the SQLite file like [`AuditStore::open_sqlite`] but
    /// without applying the schema, so that [`AuditStore::apply_migrations`] can report it.
    pub async fn open_sqlite_unmigrated(
        path: impl AsRef<std::path::Path>,
    ) -> Result<AuditStore, StoreError> {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| db_error("open_sqlite", e))?;
        Ok(AuditStore {
            backend: Backend::Sqlite(pool),
        })
    }

    async fn table_exists(
        &self,
        table: &'static str,
        call: &'static str,
    ) -> Result<bool, StoreError> {
        let err = |e| db_error(call, e);
        let count: i64 = match &self.backend {
            Backend::Sqlite(pool) => sqlx::query_scalar(TABLE_EXISTS_SQLITE)
                .bind(table)
                .fetch_one(pool)
                .await
                .map_err(err)?,
            Backend::Postgres(pool) => sqlx::query_scalar(TABLE_EXISTS_POSTGRES)
                .bind(table)
                .fetch_one(pool)
                .await
                .map_err(err)?,
        };
        Ok(count > 0)
    }

    async fn applied_versions(&self) -> Result<Vec<i64>, StoreError> {
        const CALL: &str = "apply_migrations";
        if !self.table_exists("_sqlx_migrations", CALL).await? {
            return Ok(Vec::new());
        }
        let sql = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
        let err = |e| db_error(CALL, e);
        match &self.backend {
            Backend::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.map_err(err),
            Backend::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.map_err(err),
        }
    }

    /// Applies the schema's pending migrations and says which (none when it is up to date).
    /// For PostgreSQL, run by the role that owns the schema, never the operator's.
    pub async fn apply_migrations(&self) -> Result<MigrationReport, StoreError> {
        let before = self.applied_versions().await?;
        let migrator = match &self.backend {
            Backend::Sqlite(_) => &SQLITE_MIGRATOR,
            Backend::Postgres(_) => &POSTGRES_MIGRATOR,
        };
        let migrate_error = |source| StoreError::Migrate {
            call: "migrate",
            source,
        };
        match &self.backend {
            Backend::Sqlite(pool) => migrator.run(pool).await.map_err(migrate_error)?,
            Backend::Postgres(pool) => {
                // A failed run can leave the migrator's session-level advisory lock held on
                // its connection: that connection is closed rather than returned to the pool.
                let connection = pool.acquire().await.map_err(|e| db_error("migrate", e))?;
                let mut connection = connection.detach();
                let result = migrator.run(&mut connection).await;
                let _ = sqlx::Connection::close(connection).await;
                result.map_err(migrate_error)?;
            }
        }
        let applied = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !before.contains(&m.version))
            .map(|m| AppliedMigration {
                version: m.version,
                description: m.description.to_string(),
            })
            .collect();
        Ok(MigrationReport {
            applied,
            known: migrator.iter().count(),
        })
    }

    /// PostgreSQL: grants `role` exactly what the operator needs: USAGE on the schema, SELECT
    /// and INSERT on `audit_records`, SELECT on `audit_anchor` (records take their sequence
    /// from the chain, so there is no sequence object to grant). Returns the statements run.
    pub async fn grant_operator_role(&self, role: &str) -> Result<Vec<String>, StoreError> {
        const CALL: &str = "grant_operator_role";
        let Backend::Postgres(pool) = &self.backend else {
            return Err(StoreError::Unsupported {
                call: CALL,
                reason: "SQLite has no roles: the operator owns the file",
            });
        };
        let err = |e| db_error(CALL, e);
        let (schema, role): (String, String) = sqlx::query_as(
            "SELECT relnamespace::regnamespace::text, quote_ident($1) FROM pg_class \
             WHERE oid = to_regclass('audit_records')",
        )
        .bind(role)
        .fetch_optional(pool)
        .await
        .map_err(err)?
        .ok_or(StoreError::SchemaMissing { call: CALL })?;
        let statements = vec![
            format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
            format!("GRANT SELECT, INSERT ON {schema}.audit_records TO {role}"),
            format!("GRANT SELECT, INSERT ON {schema}.audit_append_keys TO {role}"),
            format!("GRANT SELECT ON {schema}.audit_anchor TO {role}"),
        ];
        let mut tx = pool.begin().await.map_err(err)?;
        for statement in &statements {
            // Both names come quoted by the database itself (regnamespace, quote_ident).
            sqlx::query(AssertSqlSafe(statement.clone()))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(statements)
    }

    /// For the operator at start: the schema is there and this role may append and read.
    /// SQLite is migrated when opened, so only PostgreSQL is checked. Returns whether the
    /// newest migrations are applied too (`false`: the operator still works; an administrator
    /// should run `audit migrate`).
    pub async fn check_schema(&self) -> Result<bool, StoreError> {
        const CALL: &str = "check_schema";
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(true);
        };
        if !self.table_exists("audit_records", CALL).await? {
            return Err(StoreError::SchemaMissing { call: CALL });
        }
        for privilege in ["INSERT", "SELECT"] {
            let granted: bool =
                sqlx::query_scalar("SELECT has_table_privilege('audit_records', $1)")
                    .bind(privilege)
                    .fetch_one(pool)
                    .await
                    .map_err(|e| db_error(CALL, e))?;
            if !granted {
                return Err(StoreError::PrivilegeMissing {
                    call: CALL,
                    privilege,
                });
            }
        }
        self.table_exists("audit_anchor", CALL).await
    }

    /// Every prune anchor, oldest first; none when the table does not exist (a store from
    /// before retention, or one never pruned). A missing table cannot hide a prune: the chain
    /// would then start after a gap.
    pub async fn anchors(&self) -> Result<Vec<Anchor>, StoreError> {
        const CALL: &str = "anchors";
        if !self.table_exists("audit_anchor", CALL).await? {
            return Ok(Vec::new());
        }
        let err = |e| db_error(CALL, e);
        let rows = match &self.backend {
            Backend::Sqlite(pool) => sqlx::query(ANCHOR_COLUMNS_SQL)
                .fetch_all(pool)
                .await
                .map_err(err)?
                .iter()
                .map(anchor_from_row)
                .collect::<Result<Vec<_>, _>>(),
            Backend::Postgres(pool) => sqlx::query(ANCHOR_COLUMNS_SQL)
                .fetch_all(pool)
                .await
                .map_err(err)?
                .iter()
                .map(anchor_from_row)
                .collect::<Result<Vec<_>, _>>(),
        };
        rows.map_err(|(sequence, reason)| StoreError::Malformed {
            call: CALL,
            sequence,
            reason,
        })
    }

    /// The database's clock, whole seconds.
    pub async fn database_now(&self) -> Result<DateTime<Utc>, StoreError> {
        const CALL: &str = "database_now";
        let err = |e| db_error(CALL, e);
        let seconds: i64 = match &self.backend {
            Backend::Sqlite(pool) => sqlx::query_scalar("SELECT unixepoch()")
                .fetch_one(pool)
                .await
                .map_err(err)?,
            Backend::Postgres(pool) => sqlx::query_scalar(
                "SELECT floor(extract(epoch FROM statement_timestamp()))::bigint",
            )
            .fetch_one(pool)
            .await
            .map_err(err)?,
        };
        DateTime::from_timestamp(seconds, 0).ok_or(StoreError::Malformed {
            call: CALL,
            sequence: 0,
            reason: "database clock out of range",
        })
    }

    /// Deletes the records older than the retention, as one transaction under the append
    /// lock: appends the prune's own record (naming the anchor), inserts the anchor, deletes
    /// records `first..=anchor`. The chain must verify first. Never deletes a record newer than
    /// `now - retention`, nor any record after one that is (records are pruned as a prefix),
    /// nor the newest record.
    pub async fn prune(&self, options: &PruneOptions) -> Result<PruneOutcome, PruneError> {
        const CALL: &str = "prune";
        if !self.table_exists("audit_anchor", CALL).await? {
            return Err(StoreError::Unsupported {
                call: CALL,
                reason: "the schema predates retention (no audit_anchor table): run `keyturn-operator audit migrate --store ...` first",
            }
            .into());
        }
        let now = match options.now {
            Some(now) => now,
            None => self.database_now().await?,
        };
        let now = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        if options.retention.is_short(now) && !options.allow_short_retention {
            return Err(PruneError::ShortRetention {
                retention: options.retention,
                minimum: Retention::MINIMUM,
            });
        }
        let cutoff = options
            .retention
            .cutoff(now)
            .ok_or(PruneError::RetentionOutOfRange(options.retention))?;
        // Verified without the lock (a long read must not stall appends); the plan below never
        // goes past the head verified here.
        let verified = match self.verify(&options.checkpoints).await? {
            Ok(summary) => summary,
            Err(error) => return Err(PruneError::ChainInvalid(error)),
        };
        let verified_head = verified.head.map_or(0, |head| head.sequence);
        let err = |e| db_error(CALL, e);
        let mut outcome = PruneOutcome {
            now,
            cutoff,
            verified,
            anchor: None,
            first_pruned: 0,
            prune_record: None,
            dry_run: options.dry_run,
        };
        match &self.backend {
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
                let plan = plan::<sqlx::Sqlite>(&mut tx, &self.backend, cutoff, now, verified_head)
                    .await?;
                if let (Some(anchor), false) = (plan.anchor, options.dry_run) {
                    outcome.prune_record = Some(
                        execute::<sqlx::Sqlite>(&mut tx, &self.backend, &anchor, &options.actor)
                            .await?,
                    );
                    tx.commit().await.map_err(err)?;
                }
                outcome.anchor = plan.anchor;
                outcome.first_pruned = plan.first;
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(err)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(POSTGRES_APPEND_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                let plan =
                    plan::<sqlx::Postgres>(&mut tx, &self.backend, cutoff, now, verified_head)
                        .await?;
                if let (Some(anchor), false) = (plan.anchor, options.dry_run) {
                    // Marks the transaction as a prune of exactly this anchor for the trigger.
                    sqlx::query("SELECT set_config('keyturn.prune_through', $1, true)")
                        .bind(anchor.sequence.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                    outcome.prune_record = Some(
                        execute::<sqlx::Postgres>(&mut tx, &self.backend, &anchor, &options.actor)
                            .await?,
                    );
                    tx.commit().await.map_err(err)?;
                }
                outcome.anchor = plan.anchor;
                outcome.first_pruned = plan.first;
            }
        }
        Ok(outcome)
    }
}

struct Plan {
    /// First record that would be pruned.
    first: u64,
    anchor: Option<Anchor>,
}

/// Which records are old enough: the prefix after the newest anchor up to (not including) the
/// first record newer than `cutoff`, no further than `limit` (the verified head).
async fn plan<DB>(
    connection: &mut DB::Connection,
    backend: &Backend,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Plan, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'q> i64: sqlx::Decode<'q, DB> + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> Vec<u8>: sqlx::Decode<'q, DB> + sqlx::Type<DB>,
{
    const CALL: &str = "prune";
    let err = |e| db_error(CALL, e);
    let previous: Option<i64> = sqlx::query_scalar::<DB, Option<i64>>(dialect(
        backend,
        "SELECT max(sequence) FROM audit_anchor",
    ))
    .fetch_one(&mut *connection)
    .await
    .map_err(err)?;
    let previous = seq_u64(previous.unwrap_or(0), CALL)?;
    let first_young: Option<i64> = sqlx::query_scalar::<DB, Option<i64>>(dialect(
        backend,
        "SELECT min(sequence) FROM audit_records WHERE sequence > $1 AND time_unix > $2",
    ))
    .bind(i64::try_from(previous).unwrap_or(i64::MAX))
    .bind(cutoff.timestamp())
    .fetch_one(&mut *connection)
    .await
    .map_err(err)?;
    let head = head_row(
        sqlx::query::<DB>(HEAD_SQL)
            .fetch_optional(&mut *connection)
            .await
            .map_err(err)?,
        CALL,
    )?
    .map_or(0, |(sequence, _)| sequence);
    let mut through = head.min(limit);
    if let Some(young) = first_young {
        through = through.min(seq_u64(young, CALL)?.saturating_sub(1));
    }
    let first = previous + 1;
    if through < first {
        return Ok(Plan {
            first,
            anchor: None,
        });
    }
    let through_i64 = i64::try_from(through).unwrap_or(i64::MAX);
    let row = sqlx::query::<DB>(dialect(
        backend,
        "SELECT hash, time_unix FROM audit_records WHERE sequence = $1",
    ))
    .bind(through_i64)
    .fetch_one(&mut *connection)
    .await
    .map_err(err)?;
    let hash: Vec<u8> = row.try_get(0).map_err(err)?;
    let time_unix: i64 = row.try_get(1).map_err(err)?;
    let count: i64 = sqlx::query_scalar::<DB, i64>(dialect(
        backend,
        "SELECT count(*) FROM audit_records WHERE sequence <= $1",
    ))
    .bind(through_i64)
    .fetch_one(&mut *connection)
    .await
    .map_err(err)?;
    let malformed = |reason| StoreError::Malformed {
        call: CALL,
        sequence: through_i64,
        reason,
    };
    Ok(Plan {
        first,
        anchor: Some(Anchor {
            sequence: through,
            hash: hash32(&hash, through_i64, CALL)?,
            time: DateTime::from_timestamp(time_unix, 0).ok_or(malformed("time out of range"))?,
            pruned_at: now,
            cutoff,
            pruned_count: u64::try_from(count).map_err(|_| malformed("negative count"))?,
        }),
    })
}

/// Appends the prune record, inserts the anchor and deletes its records, in the caller's
/// locked transaction.
async fn execute<DB>(
    connection: &mut DB::Connection,
    backend: &Backend,
    anchor: &Anchor,
    actor: &str,
) -> Result<AuditRecord, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'q> i64: sqlx::Decode<'q, DB> + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Vec<u8>: sqlx::Decode<'q, DB> + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DB::QueryResult: RowsAffected,
{
    const CALL: &str = "prune";
    let err = |e| db_error(CALL, e);
    let entry = AuditEntry {
        time: anchor.pruned_at,
        actor: actor.to_owned(),
        action: PRUNE_ACTION.to_owned(),
        namespace: String::new(),
        managed_secret: String::new(),
        rotation_id: None,
        step: None,
        fingerprint: None,
        outcome: "Success".to_owned(),
        details: anchor.prune_record_details(),
    };
    entry
        .validate()
        .map_err(|source| StoreError::InvalidEntry {
            call: CALL,
            index: 0,
            source,
        })?;
    let mut records = chain_and_insert::<DB>(&mut *connection, &[entry], CALL).await?;
    let as_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    sqlx::query::<DB>(dialect(
        backend,
        "INSERT INTO audit_anchor (sequence, hash, time_unix, pruned_at_unix, cutoff_unix, \
         pruned_count) VALUES ($1, $2, $3, $4, $5, $6)",
    ))
    .bind(as_i64(anchor.sequence))
    .bind(anchor.hash.to_vec())
    .bind(anchor.time.timestamp())
    .bind(anchor.pruned_at.timestamp())
    .bind(anchor.cutoff.timestamp())
    .bind(as_i64(anchor.pruned_count))
    .execute(&mut *connection)
    .await
    .map_err(err)?;
    let deleted = sqlx::query::<DB>(dialect(
        backend,
        "DELETE FROM audit_records WHERE sequence <= $1",
    ))
    .bind(as_i64(anchor.sequence))
    .execute(&mut *connection)
    .await
    .map_err(err)?;
    if <DB::QueryResult as RowsAffected>::rows(&deleted) != anchor.pruned_count {
        return Err(StoreError::Malformed {
            call: CALL,
            sequence: as_i64(anchor.sequence),
            reason: "deleted another number of records than planned",
        });
    }
    // The reads webhook's dedupe keys of the pruned records: outside the chain, and a retry of
    // an audit batch older than the retention cannot arrive any more.
    sqlx::query::<DB>(dialect(
        backend,
        "DELETE FROM audit_append_keys WHERE sequence <= $1",
    ))
    .bind(as_i64(anchor.sequence))
    .execute(&mut *connection)
    .await
    .map_err(err)?;
    records.pop().ok_or(StoreError::Malformed {
        call: CALL,
        sequence: as_i64(anchor.sequence),
        reason: "the prune record was not appended",
    })
}

/// Rows affected, over both backends' query results.
trait RowsAffected {
    fn rows(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

type RowError = (i64, &'static str);

fn anchor_from_row<R: Row>(row: &R) -> Result<Anchor, RowError>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let unreadable = |_| (0, "unreadable anchor");
    let sequence: i64 = row.try_get(0).map_err(unreadable)?;
    let hash: Vec<u8> = row.try_get(1).map_err(unreadable)?;
    let time = |index: usize| -> Result<DateTime<Utc>, RowError> {
        let seconds: i64 = row.try_get(index).map_err(unreadable)?;
        DateTime::from_timestamp(seconds, 0).ok_or((sequence, "anchor time out of range"))
    };
    let count: i64 = row.try_get(5).map_err(unreadable)?;
    Ok(Anchor {
        sequence: u64::try_from(sequence).map_err(|_| (sequence, "negative anchor sequence"))?,
        hash: hash
            .as_slice()
            .try_into()
            .map_err(|_| (sequence, "anchor hash is not 32 bytes"))?,
        time: time(2)?,
        pruned_at: time(3)?,
        cutoff: time(4)?,
        pruned_count: u64::try_from(count).map_err(|_| (sequence, "negative pruned count"))?,
    })
}
