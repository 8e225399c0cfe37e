//! Retention against SQLite (always) and the test PostgreSQL: `prune` never deletes a record
//! younger than the retention (boundary times, injected clock), leaves an anchor from which
//! the rest verifies, and the verifier still names edits, deletions and a moved or edited
//! anchor. The schema's triggers allow no deletion but a prune's, and the operator's role
//! none at all. Also: migrations report what they applied, and the operator's start check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use keyturn_audit::store::{PruneError, PruneOptions};
use keyturn_audit::{
    AuditEntry, AuditRecord, AuditStore, Checkpoint, PRUNE_ACTION, Retention, StoreError,
    VerifyError,
};
use sqlx::{Connection, Executor};

/// The injected clock: 2023-01-01T00:00:00Z (before the database's own clock, which the
/// schema requires of a prune's time).
const NOW: i64 = 1_672_531_200;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

/// `now - 7y` = 2016-01-01T00:00:00Z.
fn cutoff() -> i64 {
    Retention::DEFAULT.cutoff(now()).unwrap().timestamp()
}

fn entry_at(time: i64, n: u32) -> AuditEntry {
    AuditEntry {
        time: DateTime::from_timestamp(time, 0).unwrap(),
        actor: "keyturn-operator".into(),
        action: "StepCompleted".into(),
        namespace: "payments".into(),
        managed_secret: "db-password".into(),
        rotation_id: Some(format!("kt-{n}")),
        step: None,
        fingerprint: Some("sha256:ab12".into()),
        outcome: "Success".into(),
        details: format!("record {n}"),
    }
}

fn options(retention: Retention) -> PruneOptions {
    PruneOptions {
        retention,
        now: Some(now()),
        allow_short_retention: false,
        dry_run: false,
        checkpoints: Vec::new(),
        actor: "admin".into(),
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Records 1..=6: three old enough (the last exactly at the cut-off), one a second younger,
/// then one much younger and one old again (appended late, e.g. a delayed read event).
async fn boundary_chain(store: &AuditStore) -> Vec<AuditRecord> {
    let c = cutoff();
    let times = [c - 86_400, c - 1, c, c + 1, c + 86_400, c - 3_600];
    let entries: Vec<AuditEntry> = times
        .iter()
        .zip(1..)
        .map(|(time, n)| entry_at(*time, n))
        .collect();
    store.append_batch(&entries).await.unwrap()
}

/// The "never deletes earlier" property at the boundary, on either backend.
async fn prune_keeps_every_record_younger_than_the_retention(store: &AuditStore) {
    let records = boundary_chain(store).await;
    let head_before = store.head().await.unwrap().unwrap();

    // Dry run: the plan, nothing deleted, nothing appended.
    let dry = store
        .prune(&PruneOptions {
            dry_run: true,
            ..options(Retention::DEFAULT)
        })
        .await
        .unwrap();
    assert_eq!(dry.cutoff.timestamp(), cutoff());
    assert_eq!(dry.anchor.unwrap().sequence, 3);
    assert!(dry.prune_record.is_none());
    assert_eq!(store.head().await.unwrap(), Some(head_before));
    assert_eq!(store.read_range(1, 100).await.unwrap().len(), 6);

    let outcome = store.prune(&options(Retention::DEFAULT)).await.unwrap();
    let anchor = outcome.anchor.unwrap();
    // Records 1..=3 (the third exactly at the cut-off) go; record 4, one second younger,
    // stays, and so does record 6 although it is old: it comes after a younger one.
    assert_eq!(outcome.first_pruned, 1);
    assert_eq!(anchor.sequence, 3);
    assert_eq!(anchor.hash, records[2].hash);
    assert_eq!(anchor.time.timestamp(), cutoff());
    assert_eq!(anchor.pruned_count, 3);
    assert_eq!(anchor.pruned_at, now());
    let remaining = store.read_range(1, 100).await.unwrap();
    let sequences: Vec<u64> = remaining.iter().map(|r| r.sequence).collect();
    assert_eq!(sequences, vec![4, 5, 6, 7]);
    assert_eq!(remaining[..3], records[3..]);
    let prune_record = outcome.prune_record.unwrap();
    assert_eq!(prune_record.sequence, 7);
    assert_eq!(prune_record.action, PRUNE_ACTION);
    assert_eq!(remaining[3], prune_record);
    assert_eq!(store.anchors().await.unwrap(), vec![anchor]);

    // Verifies from the anchor; a checkpoint of a pruned record is before the retained range.
    let before = Checkpoint::of(&records[0]);
    let head = store.head().await.unwrap().unwrap();
    let summary = store.verify(&[before, head]).await.unwrap().unwrap();
    assert_eq!(summary.records, 4);
    assert_eq!(summary.anchor, Some(anchor));
    assert_eq!(summary.checkpoints_before_retained, 1);
    assert_eq!(summary.checkpoints_matched, 1);

    // Appends continue the chain after the prune record.
    let appended = store.append_batch(&[entry_at(NOW, 7)]).await.unwrap();
    assert_eq!(appended[0].sequence, 8);
    assert_eq!(appended[0].previous_hash, prune_record.hash);

    // Again at the same moment: nothing more is old enough (record 4 is a second too young).
    let again = store.prune(&options(Retention::DEFAULT)).await.unwrap();
    assert_eq!(again.anchor, None);
    assert_eq!(store.head().await.unwrap().unwrap().sequence, 8);

    // Two days later, records 4..=6 are old enough (the prune record, dated `now`, is not):
    // they go, and the chain still verifies.
    let later = DateTime::from_timestamp(NOW + 2 * 86_400, 0).unwrap();
    let second = store
        .prune(&PruneOptions {
            now: Some(later),
            ..options(Retention::DEFAULT)
        })
        .await
        .unwrap();
    let second_anchor = second.anchor.unwrap();
    assert_eq!((second.first_pruned, second_anchor.sequence), (4, 6));
    assert_eq!(store.anchors().await.unwrap(), vec![anchor, second_anchor]);
    let summary = store.verify(&[before, head]).await.unwrap().unwrap();
    assert_eq!(summary.anchor, Some(second_anchor));
    assert_eq!(summary.records, 3); // 7, 8 and the second prune record
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_prune_keeps_every_record_younger_than_the_retention() {
    let db = sqlite().await;
    prune_keeps_every_record_younger_than_the_retention(&db.store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_prune_keeps_every_record_younger_than_the_retention() {
    let Some(pg) = Pg::new().await else { return };
    let store = pg.owner_store().await;
    prune_keeps_every_record_younger_than_the_retention(&store).await;
    store.close().await;
    pg.drop().await;
}

/// Short retention, an invalid chain, and a clock ahead of the database's are refused.
async fn prune_refusals(store: &AuditStore) {
    boundary_chain(store).await;
    let short = store
        .prune(&options(Retention::Days(30)))
        .await
        .unwrap_err();
    assert!(
        matches!(short, PruneError::ShortRetention { .. }),
        "{short}"
    );
    assert!(short.to_string().contains("--allow-short-retention"));
    // Allowed explicitly, 400 days back from `now` prunes all six but the newest.
    let allowed = store
        .prune(&PruneOptions {
            allow_short_retention: true,
            dry_run: true,
            ..options(Retention::Days(30))
        })
        .await
        .unwrap();
    assert_eq!(allowed.anchor.unwrap().sequence, 6);

    // A clock ten years ahead of the database's: the schema refuses the anchor.
    let future = DateTime::from_timestamp(Utc::now().timestamp() + 10 * 366 * 86_400, 0).unwrap();
    let error = store
        .prune(&PruneOptions {
            now: Some(future),
            ..options(Retention::DEFAULT)
        })
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("after the database clock"),
        "{error}"
    );
    assert_eq!(store.read_range(1, 100).await.unwrap().len(), 6);
    assert!(store.anchors().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_prune_refusals() {
    let db = sqlite().await;
    prune_refusals(&db.store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_prune_refusals() {
    let Some(pg) = Pg::new().await else { return };
    let store = pg.owner_store().await;
    prune_refusals(&store).await;
    store.close().await;
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_prune_refuses_a_chain_that_does_not_verify() {
    let db = sqlite().await;
    boundary_chain(&db.store).await;
    let mut attacker = db.attacker().await;
    attacker
        .execute("UPDATE audit_records SET details = 'edited' WHERE sequence = 2")
        .await
        .unwrap();
    let error = db
        .store
        .prune(&options(Retention::DEFAULT))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PruneError::ChainInvalid(VerifyError::HashMismatch { sequence: 2 })
        ),
        "{error}"
    );
    assert_eq!(db.store.read_range(1, 100).await.unwrap().len(), 6);
}

// ------------------------------------------------- tampering after a prune (SQLite file)

#[tokio::test(flavor = "multi_thread")]
async fn pruned_then_retained_record_edited_is_named() {
    let db = sqlite().await;
    boundary_chain(&db.store).await;
    db.store.prune(&options(Retention::DEFAULT)).await.unwrap();
    let mut attacker = db.attacker().await;
    attacker
        .execute("UPDATE audit_records SET details = 'edited' WHERE sequence = 5")
        .await
        .unwrap();
    assert_eq!(
        db.store.verify(&[]).await.unwrap().unwrap_err(),
        VerifyError::HashMismatch { sequence: 5 }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pruned_then_anchor_edited_is_detected() {
    let db = sqlite().await;
    let records = boundary_chain(&db.store).await;
    // A checkpoint taken while record 3 was the head, kept outside the store.
    let at_three = Checkpoint::of(&records[2]);
    db.store.prune(&options(Retention::DEFAULT)).await.unwrap();
    assert!(db.store.verify(&[at_three]).await.unwrap().is_ok());

    let mut attacker = db.attacker().await;
    let mut forged = records[2].hash;
    forged[0] ^= 1;
    sqlx::query("UPDATE audit_anchor SET hash = ?1")
        .bind(forged.to_vec())
        .execute(&mut attacker)
        .await
        .unwrap();
    // Without a checkpoint: the first retained record does not link to it.
    assert_eq!(
        db.store.verify(&[]).await.unwrap().unwrap_err(),
        VerifyError::BrokenLink { sequence: 4 }
    );
    // With the checkpoint at the anchor: named before any record is read.
    assert_eq!(
        db.store.verify(&[at_three]).await.unwrap().unwrap_err(),
        VerifyError::AnchorMismatch { sequence: 3 }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pruned_then_records_deleted_beyond_the_anchor_is_a_gap() {
    let db = sqlite().await;
    let records = boundary_chain(&db.store).await;
    db.store.prune(&options(Retention::DEFAULT)).await.unwrap();
    let mut attacker = db.attacker().await;
    attacker
        .execute("DELETE FROM audit_records WHERE sequence = 4")
        .await
        .unwrap();
    assert_eq!(
        db.store.verify(&[]).await.unwrap().unwrap_err(),
        VerifyError::SequenceGap {
            expected: 4,
            found: 5
        }
    );
    // Hiding it by moving the anchor to record 4 (insert a newer one, as prune would):
    // the prune record in the chain names record 3, so nothing names the new anchor.
    sqlx::query(
        "INSERT INTO audit_anchor (sequence, hash, time_unix, pruned_at_unix, cutoff_unix, \
         pruned_count) VALUES (4, ?1, ?2, ?3, ?4, 1)",
    )
    .bind(records[3].hash.to_vec())
    .bind(records[3].time.timestamp())
    .bind(NOW)
    .bind(records[3].time.timestamp())
    .execute(&mut attacker)
    .await
    .unwrap();
    assert_eq!(
        db.store.verify(&[]).await.unwrap().unwrap_err(),
        VerifyError::AnchorUnconfirmed { sequence: 4 }
    );
}

// ------------------------------------------------- append-only enforcement with retention

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_triggers_allow_only_a_prunes_deletion() {
    let db = sqlite().await;
    let records = boundary_chain(&db.store).await;
    db.store.append_batch(&[entry_at(NOW, 7)]).await.unwrap();
    let mut conn = db.plain().await;
    // No anchor: no deletion, however old the record.
    let error = conn
        .execute("DELETE FROM audit_records WHERE sequence = 1")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
    // An anchor over records of which one is younger than its cut-off is refused.
    let error = insert_anchor_sqlite(&mut conn, &records[5], cutoff(), 6)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("newer than the cut-off"),
        "{error}"
    );

    // Within a prune's transaction: the anchor's records may go, a young one may not, even
    // named explicitly.
    let mut tx = conn.begin().await.unwrap();
    insert_anchor_sqlite(&mut tx, &records[2], cutoff(), 3)
        .await
        .unwrap();
    let error = tx
        .execute("DELETE FROM audit_records WHERE sequence = 4")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
    tx.execute("DELETE FROM audit_records WHERE sequence <= 3")
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    for sql in [
        "UPDATE audit_records SET details = 'x' WHERE sequence = 2",
        "DELETE FROM audit_records",
    ] {
        let error = conn.execute(sql).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    // The anchor table is append-only too.
    db.store.prune(&options(Retention::DEFAULT)).await.unwrap();
    for sql in [
        "UPDATE audit_anchor SET pruned_count = 1",
        "DELETE FROM audit_anchor",
    ] {
        let error = conn.execute(sql).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    assert!(db.store.verify(&[]).await.unwrap().is_ok());
}

async fn insert_anchor_sqlite(
    conn: &mut sqlx::SqliteConnection,
    record: &AuditRecord,
    cutoff: i64,
    count: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_anchor (sequence, hash, time_unix, pruned_at_unix, cutoff_unix, \
         pruned_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(record.sequence as i64)
    .bind(record.hash.to_vec())
    .bind(record.time.timestamp())
    .bind(NOW)
    .bind(cutoff)
    .bind(count)
    .execute(conn)
    .await
    .map(|_| ())
}

// ------------------------------------------------- migrations

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_migrations_report_what_they_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    // A store from before retention (only the first migration's table): read-only, it has no
    // anchors and verifies from the genesis hash.
    {
        let mut conn = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        conn.execute(include_str!("../migrations/sqlite/0001_audit_records.sql"))
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let reader = AuditStore::open_sqlite_read_only(&path).await.unwrap();
    assert!(reader.anchors().await.unwrap().is_empty());
    assert_eq!(reader.verify(&[]).await.unwrap().unwrap().records, 0);
    reader.close().await;
    // Pruning it asks for the migration first.
    let admin = AuditStore::open_sqlite_unmigrated(&path).await.unwrap();
    let error = admin.prune(&options(Retention::DEFAULT)).await.unwrap_err();
    assert!(error.to_string().contains("audit migrate"), "{error}");
    let report = admin.apply_migrations().await.unwrap_err();
    // Its first migration was applied by hand, without sqlx's bookkeeping: sqlx refuses to
    // re-create the table rather than overwrite anything.
    assert!(report.to_string().contains("migration"), "{report}");
    admin.close().await;
    std::fs::remove_file(&path).unwrap();

    let store = AuditStore::open_sqlite(&path).await.unwrap(); // migrates on open
    let report = store.apply_migrations().await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.known, 3);
    assert!(store.check_schema().await.unwrap());
    prune_keeps_every_record_younger_than_the_retention(&store).await;
}

// ------------------------------------------------- helpers

struct Sqlite {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: AuditStore,
}

impl Sqlite {
    async fn plain(&self) -> sqlx::SqliteConnection {
        sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(&self.path),
        )
        .await
        .unwrap()
    }

    /// Anyone who can write the file: every trigger dropped.
    async fn attacker(&self) -> sqlx::SqliteConnection {
        let mut conn = self.plain().await;
        conn.execute(
            "DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete;
             DROP TRIGGER audit_anchor_no_update; DROP TRIGGER audit_anchor_check_insert;",
        )
        .await
        .unwrap();
        conn
    }
}

async fn sqlite() -> Sqlite {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = AuditStore::open_sqlite(&path).await.unwrap();
    Sqlite {
        _dir: dir,
        path,
        store,
    }
}

struct Pg {
    admin: sqlx::PgPool,
    schema: String,
    env: keyturn_testenv::PostgresEnv,
    roles: Vec<String>,
}

impl Pg {
    async fn new() -> Option<Pg> {
        let env = keyturn_testenv::postgres()?;
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&env.url)
            .await
            .unwrap();
        let schema = unique("audit_r");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .unwrap();
        Some(Pg {
            admin,
            schema,
            env,
            roles: Vec::new(),
        })
    }

    fn options(&self, url: &str) -> sqlx::postgres::PgConnectOptions {
        use std::str::FromStr;
        sqlx::postgres::PgConnectOptions::from_str(url)
            .unwrap()
            .options([("search_path", self.schema.as_str())])
    }

    async fn owner_store(&self) -> AuditStore {
        let store = AuditStore::connect_postgres_with(self.options(&self.env.url))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// A new login role without any grant; returns its URL.
    async fn role(&mut self) -> (String, String) {
        let role = unique("kt_op");
        let password = unique("pw");
        self.admin
            .execute(sqlx::AssertSqlSafe(format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{password}'"
            )))
            .await
            .unwrap();
        self.roles.push(role.clone());
        let url = self.env.url_for_user(&role, &password);
        (role, url)
    }

    async fn drop(self) {
        let mut sql = format!("DROP SCHEMA {} CASCADE;", self.schema);
        for role in &self.roles {
            sql.push_str(&format!(" DROP ROLE {role};"));
        }
        self.admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
        self.admin.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_migrate_grant_and_an_insert_select_role() {
    let Some(mut pg) = Pg::new().await else {
        return;
    };
    let (role, url) = pg.role().await;

    // The operator's role on an empty schema: a clear error naming the fix.
    let as_operator = AuditStore::connect_postgres_with(pg.options(&url))
        .await
        .unwrap();
    let error = as_operator.check_schema().await.unwrap_err();
    assert!(matches!(error, StoreError::SchemaMissing { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("keyturn-operator audit migrate --store")
    );
    // ... and it may not apply the schema itself.
    assert!(as_operator.apply_migrations().await.is_err());

    let owner = AuditStore::connect_postgres_with(pg.options(&pg.env.url))
        .await
        .unwrap();
    let report = owner.apply_migrations().await.unwrap();
    let versions: Vec<i64> = report.applied.iter().map(|m| m.version).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(report.applied[2].description, "audit anchor");
    // Twice: nothing applied.
    assert!(owner.apply_migrations().await.unwrap().applied.is_empty());

    // Migrated, no grants yet: the schema is invisible to the role (no USAGE).
    assert!(matches!(
        as_operator.check_schema().await.unwrap_err(),
        StoreError::SchemaMissing { .. }
    ));
    // USAGE and SELECT only: the role sees the table but may not append.
    pg.admin
        .execute(sqlx::AssertSqlSafe(format!(
            "GRANT USAGE ON SCHEMA {schema} TO {role}; GRANT SELECT ON {schema}.audit_records TO {role}",
            schema = pg.schema
        )))
        .await
        .unwrap();
    let error = as_operator.check_schema().await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::PrivilegeMissing {
                privilege: "INSERT",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("--grant-to"));
    let statements = owner.grant_operator_role(&role).await.unwrap();
    assert_eq!(statements.len(), 4);
    assert!(statements[1].ends_with(&format!("audit_records TO {role}")));
    assert!(statements[2].ends_with(&format!("audit_append_keys TO {role}")));
    assert!(as_operator.check_schema().await.unwrap());

    // The role appends, reads and verifies, before and after an owner's prune.
    let c = cutoff();
    let entries: Vec<AuditEntry> = [c - 10, c, c + 1]
        .iter()
        .zip(1..)
        .map(|(time, n)| entry_at(*time, n))
        .collect();
    as_operator.append_batch(&entries).await.unwrap();
    assert_eq!(as_operator.verify(&[]).await.unwrap().unwrap().records, 3);
    // The operator's role cannot prune: it may not insert an anchor.
    let error = as_operator
        .prune(&options(Retention::DEFAULT))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("permission denied"), "{error}");
    let outcome = owner.prune(&options(Retention::DEFAULT)).await.unwrap();
    assert_eq!(outcome.anchor.unwrap().sequence, 2);
    as_operator.append_batch(&[entry_at(NOW, 4)]).await.unwrap();
    let summary = as_operator.verify(&[]).await.unwrap().unwrap();
    assert_eq!(summary.records, 3); // 3, the prune record, and the new one
    assert_eq!(summary.anchor, outcome.anchor);

    // It cannot change or delete anything, pruned range or not, nor forge an anchor.
    let mut conn = sqlx::PgConnection::connect_with(&pg.options(&url))
        .await
        .unwrap();
    for sql in [
        "DELETE FROM audit_records WHERE sequence = 3",
        "SELECT set_config('keyturn.prune_through', '2', false); DELETE FROM audit_records WHERE sequence <= 2",
        "UPDATE audit_records SET details = 'x'",
        "TRUNCATE audit_records",
        "INSERT INTO audit_anchor (sequence, hash, time_unix, pruned_at_unix, cutoff_unix, pruned_count) \
         SELECT sequence, hash, time_unix, time_unix + 1, time_unix, 1 FROM audit_records WHERE sequence = 3",
        "DELETE FROM audit_anchor",
        "UPDATE audit_anchor SET pruned_count = 1",
    ] {
        let error = conn.execute(sql).await.unwrap_err();
        assert!(
            error.to_string().contains("permission denied"),
            "{sql}: {error}"
        );
    }
    conn.close().await.unwrap();
    as_operator.close().await;
    owner.close().await;
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_triggers_allow_only_a_prunes_deletion() {
    let Some(pg) = Pg::new().await else { return };
    let store = pg.owner_store().await;
    let records = boundary_chain(&store).await;
    store.append_batch(&[entry_at(NOW, 7)]).await.unwrap();
    // The schema's owner (here a superuser), triggers in place.
    let mut conn = sqlx::PgConnection::connect_with(&pg.options(&pg.env.url))
        .await
        .unwrap();
    let insert_anchor = |record: &AuditRecord, count: i64| {
        sqlx::query(
            "INSERT INTO audit_anchor (sequence, hash, time_unix, pruned_at_unix, cutoff_unix, \
             pruned_count) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.sequence as i64)
        .bind(record.hash.to_vec())
        .bind(record.time.timestamp())
        .bind(NOW)
        .bind(cutoff())
        .bind(count)
    };

    // An anchor over records of which one is younger than the cut-off.
    let error = insert_anchor(&records[5], 6)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("newer than the cut-off"),
        "{error}"
    );

    let mut tx = conn.begin().await.unwrap();
    insert_anchor(&records[2], 3)
        .execute(&mut *tx)
        .await
        .unwrap();
    // Without the prune's transaction-local setting: refused even for the anchor's records.
    tx.execute("SAVEPOINT s").await.unwrap();
    let error = tx
        .execute("DELETE FROM audit_records WHERE sequence = 1")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
    tx.execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    tx.execute("SELECT set_config('keyturn.prune_through', '3', true)")
        .await
        .unwrap();
    // A young record, even inside the prune: refused.
    tx.execute("SAVEPOINT s").await.unwrap();
    let error = tx
        .execute("DELETE FROM audit_records WHERE sequence = 4")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
    tx.execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    // Only part of the anchor's records: cannot commit.
    tx.execute("DELETE FROM audit_records WHERE sequence = 1")
        .await
        .unwrap();
    let error = tx.commit().await.unwrap_err();
    assert!(error.to_string().contains("remain at commit"), "{error}");
    assert_eq!(store.read_range(1, 100).await.unwrap().len(), 7);
    assert!(store.anchors().await.unwrap().is_empty());

    for sql in [
        "DELETE FROM audit_records",
        "TRUNCATE audit_records",
        "UPDATE audit_records SET details = 'x' WHERE sequence = 1",
    ] {
        let error = conn.execute(sql).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    store.prune(&options(Retention::DEFAULT)).await.unwrap();
    for sql in [
        "DELETE FROM audit_anchor",
        "TRUNCATE audit_anchor",
        "UPDATE audit_anchor SET pruned_count = 1",
    ] {
        let error = conn.execute(sql).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    // A temporary table cannot stand in for the anchor table in the trigger.
    conn.execute(
        "CREATE TEMP TABLE audit_anchor (sequence BIGINT, hash BYTEA, time_unix BIGINT, \
         pruned_at_unix BIGINT, cutoff_unix BIGINT, pruned_count BIGINT);
         INSERT INTO pg_temp.audit_anchor VALUES (100, NULL, 0, 0, 99999999999, 1);
         SELECT set_config('keyturn.prune_through', '100', false);",
    )
    .await
    .unwrap();
    let error = conn
        .execute("DELETE FROM audit_records WHERE sequence = 4")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
    assert!(store.verify(&[]).await.unwrap().is_ok());
    conn.close().await.unwrap();
    store.close().await;
    pg.drop().await;
}

/// Prune drops the dedupe keys of the records it prunes and keeps the others: a key of a
/// retained record still deduplicates, a pruned record's key no longer does.
#[tokio::test]
async fn sqlite_prune_drops_the_dedupe_keys_of_pruned_records_only() {
    let db = sqlite().await;
    let c = cutoff();
    let keyed = |key: &str, time: i64, n: u32| keyturn_audit::KeyedEntries {
        key: key.to_owned(),
        entries: vec![entry_at(time, n)],
    };
    let first = db
        .store
        .append_batch_once(&[keyed("old", c - 60, 1), keyed("young", c + 60, 2)])
        .await
        .unwrap();
    assert_eq!(first.records.len(), 2);
    let pruned = db.store.prune(&options(Retention::DEFAULT)).await.unwrap();
    assert_eq!(pruned.anchor.unwrap().sequence, 1);
    let again = db
        .store
        .append_batch_once(&[keyed("young", c + 60, 2), keyed("old", c - 60, 1)])
        .await
        .unwrap();
    assert_eq!(
        again.duplicate_keys, 1,
        "the retained record's key still deduplicates"
    );
    assert_eq!(again.records.len(), 1, "the pruned record's key is gone");
}
