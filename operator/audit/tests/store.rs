//! The audit store against SQLite (always) and the test PostgreSQL (`keyturn_testenv`):
//! round trip, tampering of every kind, concurrent appenders, append-only enforcement, and
//! that a credential value never reaches the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::DateTime;
use keyturn_audit::{
    AuditEntry, AuditRecord, AuditStore, Checkpoint, KeyedEntries, StoreError, VerifyError,
};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor};

/// A password that only ever lives in this test: the store gets its fingerprint.
const CANARY: &str = "canary-Pa55w0rd-9c1e2f7d";

fn fingerprint_of(value: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(value.as_bytes())))
}

fn entry(n: u64) -> AuditEntry {
    AuditEntry {
        time: DateTime::from_timestamp(1_700_000_000 + n as i64, 123).unwrap(),
        actor: "keyturn-operator".into(),
        action: "StepCompleted".into(),
        namespace: "payments".into(),
        managed_secret: "db-password".into(),
        rotation_id: Some(format!("kt-{n}")),
        step: if n.is_multiple_of(2) {
            Some("Verify".into())
        } else {
            None
        },
        fingerprint: Some(fingerprint_of(CANARY)),
        outcome: "Success".into(),
        details: format!("record {n}"),
    }
}

fn entries(range: std::ops::Range<u64>) -> Vec<AuditEntry> {
    range.map(entry).collect()
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

/// Recomputes every hash and link, as an attacker rewriting the chain would.
fn rehash(records: &mut [AuditRecord]) {
    let mut prev = keyturn_audit::GENESIS_HASH;
    for r in records.iter_mut() {
        r.previous_hash = prev;
        r.hash = r.compute_hash();
        prev = r.hash;
    }
}

// ---------------------------------------------------------------- SQLite

struct Sqlite {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: AuditStore,
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

/// A raw connection to the file, like anyone who can write it; triggers dropped.
async fn sqlite_attacker(path: &std::path::Path) -> sqlx::SqliteConnection {
    let mut conn = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
    )
    .await
    .unwrap();
    conn.execute("DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete;")
        .await
        .unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_round_trip_and_reopen() {
    let db = sqlite().await;
    assert_eq!(db.store.head().await.unwrap(), None);
    assert!(db.store.append_batch(&[]).await.unwrap().is_empty());
    let first = db.store.append_batch(&entries(0..5)).await.unwrap();
    let second = db.store.append_batch(&entries(5..12)).await.unwrap();
    assert_eq!(first[0].sequence, 1);
    assert_eq!(first[0].previous_hash, [0; 32]);
    assert_eq!(second[0].previous_hash, first[4].hash);
    assert_eq!(second[6].sequence, 12);
    assert_eq!(first[0].time.timestamp_subsec_nanos(), 0);

    let all = db.store.read_range(1, 100).await.unwrap();
    let written: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_eq!(all, written);
    assert_eq!(db.store.read_range(5, 3).await.unwrap(), written[4..7]);
    let head = db.store.head().await.unwrap().unwrap();
    assert_eq!(head, Checkpoint::of(&second[6]));
    let summary = db.store.verify(&[head]).await.unwrap().unwrap();
    assert_eq!(summary.records, 12);

    // WAL mode, and the log survives closing and reopening.
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut sqlite_plain(&db.path).await)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    db.store.close().await;
    let reopened = AuditStore::open_sqlite(&db.path).await.unwrap();
    assert_eq!(reopened.head().await.unwrap(), Some(head));
    assert_eq!(reopened.verify(&[head]).await.unwrap().unwrap().records, 12);
}

async fn sqlite_plain(path: &std::path::Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect_with(&sqlx::sqlite::SqliteConnectOptions::new().filename(path))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_triggers_reject_update_and_delete() {
    let db = sqlite().await;
    db.store.append_batch(&entries(0..3)).await.unwrap();
    let mut conn = sqlite_plain(&db.path).await;
    for sql in [
        "UPDATE audit_records SET details = 'x' WHERE sequence = 2",
        "DELETE FROM audit_records WHERE sequence = 3",
        "DELETE FROM audit_records",
    ] {
        let err = conn.execute(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(db.store.verify(&[]).await.unwrap().unwrap().records, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_flipped_byte_is_detected() {
    let db = sqlite().await;
    db.store.append_batch(&entries(0..10)).await.unwrap();
    let mut conn = sqlite_attacker(&db.path).await;
    // One byte of a text field: 'r' of "record 3" becomes 's'.
    conn.execute("UPDATE audit_records SET details = 's' || substr(details, 2) WHERE sequence = 4")
        .await
        .unwrap();
    assert_eq!(
        db.store.verify(&[]).await.unwrap().unwrap_err(),
        VerifyError::HashMismatch { sequence: 4 }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_flipped_hash_bit_is_detected() {
    let db = sqlite().await;
    let records = db.store.append_batch(&entries(0..10)).await.unwrap();
    let mut conn = sqlite_attacker(&db.path).await;
    let mut hash = records[6].hash;
    hash[0] ^= 1;
    sqlx::query("UPDATE audit_records SET hash = ?1 WHERE sequence = 7")
        .bind(hash.to_vec())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        db.store.verify(&[]).await.unwrap().unwrap_err(),
        VerifyError::HashMismatch { sequence: 7 }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_deleted_row_is_detected() {
    let db = sqlite().await;
    db.store.append_batch(&entries(0..10)).await.unwrap();
    let mut conn = sqlite_attacker(&db.path).await;
    conn.execute("DELETE FROM audit_records WHERE sequence = 5")
        .await
        .unwrap();
    let err = db.store.verify(&[]).await.unwrap().unwrap_err();
    assert_eq!(
        err,
        VerifyError::SequenceGap {
            expected: 5,
            found: 6
        }
    );
    assert_eq!(err.first_bad_sequence(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_reordered_rows_are_detected() {
    let db = sqlite().await;
    db.store.append_batch(&entries(0..10)).await.unwrap();
    let mut conn = sqlite_attacker(&db.path).await;
    conn.execute(
        "UPDATE audit_records SET sequence = 1000 WHERE sequence = 3;
         UPDATE audit_records SET sequence = 3 WHERE sequence = 6;
         UPDATE audit_records SET sequence = 6 WHERE sequence = 1000;",
    )
    .await
    .unwrap();
    assert_eq!(
        db.store.verify(&[]).await.unwrap().unwrap_err(),
        VerifyError::HashMismatch { sequence: 3 }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_truncated_tail_is_detected_with_a_checkpoint() {
    let db = sqlite().await;
    db.store.append_batch(&entries(0..10)).await.unwrap();
    let checkpoint = db.store.head().await.unwrap().unwrap();
    let mut conn = sqlite_attacker(&db.path).await;
    conn.execute("DELETE FROM audit_records WHERE sequence > 7")
        .await
        .unwrap();
    // Without the checkpoint the shorter chain is consistent; with it, the loss shows.
    assert!(db.store.verify(&[]).await.unwrap().is_ok());
    assert_eq!(
        db.store.verify(&[checkpoint]).await.unwrap().unwrap_err(),
        VerifyError::Truncated {
            last: 7,
            checkpoint: 10
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_rehashed_chain_disagrees_with_the_checkpoint() {
    let db = sqlite().await;
    let mut records = db.store.append_batch(&entries(0..10)).await.unwrap();
    let old_mid = Checkpoint::of(&records[4]);
    let checkpoint = db.store.head().await.unwrap().unwrap();
    let mut conn = sqlite_attacker(&db.path).await;
    records[2].details = "rewritten".into();
    rehash(&mut records);
    // Rewrite from the tail back so no two rows share a previous_hash at any moment.
    for r in records.iter().rev() {
        sqlx::query(
            "UPDATE audit_records SET details = ?1, previous_hash = ?2, hash = ?3 WHERE sequence = ?4",
        )
        .bind(&r.details)
        .bind(r.previous_hash.to_vec())
        .bind(r.hash.to_vec())
        .bind(r.sequence as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    assert!(db.store.verify(&[]).await.unwrap().is_ok());
    assert_eq!(
        db.store.verify(&[checkpoint]).await.unwrap().unwrap_err(),
        VerifyError::CheckpointMismatch { sequence: 10 }
    );
    assert_eq!(
        db.store
            .verify(&[old_mid, checkpoint])
            .await
            .unwrap()
            .unwrap_err(),
        VerifyError::CheckpointMismatch { sequence: 5 }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_concurrent_appenders_make_one_chain() {
    let db = sqlite().await;
    concurrent_appenders(&db.store).await;
}

async fn concurrent_appenders(store: &AuditStore) {
    const TASKS: u64 = 6;
    const BATCHES: u64 = 15;
    const PER_BATCH: u64 = 7;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let start = (t * BATCHES + b) * PER_BATCH;
                let mut attempt = 0;
                loop {
                    match store.append_batch(&entries(start..start + PER_BATCH)).await {
                        Ok(records) => {
                            // A batch is contiguous.
                            for w in records.windows(2) {
                                assert_eq!(w[1].sequence, w[0].sequence + 1);
                                assert_eq!(w[1].previous_hash, w[0].hash);
                            }
                            break;
                        }
                        Err(e) if e.is_retryable() && attempt < 20 => {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let total = TASKS * BATCHES * PER_BATCH;
    let head = store.head().await.unwrap().unwrap();
    assert_eq!(head.sequence, total);
    let summary = store.verify(&[head]).await.unwrap().unwrap();
    assert_eq!(summary.records, total);
    // Every entry is there exactly once.
    let mut details: Vec<String> = store
        .read_range(1, u32::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.details)
        .collect();
    details.sort();
    details.dedup();
    assert_eq!(details.len() as u64, total);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_never_holds_the_credential_value() {
    let db = sqlite().await;
    let records = db.store.append_batch(&entries(0..20)).await.unwrap();
    for r in &records {
        assert!(!format!("{r:?}").contains(CANARY));
    }
    db.store.close().await;
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.path.clone().into_os_string();
        p.push(suffix);
        if let Ok(b) = std::fs::read(&p) {
            bytes.extend(b);
        }
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(fingerprint_of(CANARY).as_bytes()), "search works");
    assert!(!contains(CANARY.as_bytes()));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_entries_write_nothing() {
    let db = sqlite().await;
    let mut batch = entries(0..3);
    batch[1].details = "x".repeat(keyturn_audit::record::MAX_FIELD_LEN + 1);
    let err = db.store.append_batch(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidEntry { index: 1, .. }));
    assert!(!err.is_retryable());
    assert!(err.to_string().starts_with("audit store append_batch:"));
    assert_eq!(db.store.head().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_call_and_hide_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let err = AuditStore::open_sqlite(dir.path().join("missing-dir/audit.db"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("audit store open_sqlite:"),
        "{err}"
    );

    // An unparsable URL: the message does not quote it.
    let err = AuditStore::connect_postgres("postgres://u:s3cr3t-pw@127.0.0.1:notaport/db")
        .await
        .unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(msg.contains("connect_postgres"), "{msg}");
    assert!(!msg.contains("s3cr3t-pw"), "{msg}");
    assert!(!err.is_retryable());

    // Nothing listens on port 1: an append fails as unavailable, retryable, and the message
    // holds neither the password nor the entry's contents.
    let options: sqlx::postgres::PgConnectOptions =
        "postgres://u:s3cr3t-pw@127.0.0.1:1/db".parse().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_lazy_with(options);
    let store = AuditStore::from_postgres_pool(pool);
    let err = store.append_batch(&entries(0..1)).await.unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                call: "append_batch",
                ..
            }
        ),
        "{msg}"
    );
    assert!(err.is_retryable(), "{msg}");
    assert!(!msg.contains("s3cr3t-pw"), "{msg}");
    assert!(!msg.contains("record 0"), "{msg}");
}

/// Set in the child process of `sqlite_appends_survive_sigkill`: the database to append to.
const SIGKILL_CHILD_DB: &str = "KEYTURN_AUDIT_TEST_SIGKILL_CHILD_DB";

/// An appender (this test binary, re-run as a child) is killed with SIGKILL while appending;
/// every batch it reported as committed is in the store, and the chain verifies.
#[test]
fn sqlite_appends_survive_sigkill() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(path) = std::env::var(SIGKILL_CHILD_DB) {
        // Child: append batches of 10 until killed, reporting each commit.
        runtime.block_on(async {
            let store = AuditStore::open_sqlite(&path).await.unwrap();
            for b in 0u64.. {
                let records = store
                    .append_batch(&entries(b * 10..b * 10 + 10))
                    .await
                    .unwrap();
                println!("acked {}", records.last().unwrap().sequence);
            }
        });
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["sqlite_appends_survive_sigkill", "--exact", "--nocapture"])
        .env(SIGKILL_CHILD_DB, &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = 0u64;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(seq) = line.strip_prefix("acked ") {
            acked = seq.trim().parse().unwrap();
            if acked >= 300 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(acked >= 300, "the child stopped early at {acked}");
    runtime.block_on(async {
        let store = AuditStore::open_sqlite(&path).await.unwrap();
        let head = store.head().await.unwrap().unwrap();
        assert!(
            head.sequence >= acked,
            "lost acknowledged records: {head:?} < {acked}"
        );
        assert_eq!(head.sequence % 10, 0, "a batch was written in part");
        let summary = store.verify(&[]).await.unwrap().unwrap();
        assert_eq!(summary.records, head.sequence);
    });
}

// ---------------------------------------------------------------- PostgreSQL

struct Pg {
    admin: sqlx::PgPool,
    schema: String,
    env: keyturn_testenv::PostgresEnv,
}

impl Pg {
    async fn new() -> Option<Pg> {
        let env = keyturn_testenv::postgres()?;
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&env.url)
            .await
            .unwrap();
        let schema = unique("audit_t");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .unwrap();
        Some(Pg { admin, schema, env })
    }

    fn options(&self, url: &str) -> sqlx::postgres::PgConnectOptions {
        use std::str::FromStr;
        sqlx::postgres::PgConnectOptions::from_str(url)
            .unwrap()
            .options([("search_path", self.schema.as_str())])
    }

    /// The store as the superuser, with the schema applied.
    async fn store(&self) -> AuditStore {
        let store = AuditStore::connect_postgres_with(self.options(&self.env.url))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// A superuser connection in the schema with the append-only triggers disabled: what an
    /// attacker with database superuser can do.
    async fn attacker(&self) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect_with(&self.options(&self.env.url))
            .await
            .unwrap();
        conn.execute(
            "ALTER TABLE audit_records DISABLE TRIGGER audit_records_no_update_delete;
             ALTER TABLE audit_records DISABLE TRIGGER audit_records_no_truncate;",
        )
        .await
        .unwrap();
        conn
    }

    async fn drop(self) {
        self.admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {} CASCADE",
                self.schema
            )))
            .await
            .unwrap();
        self.admin.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_round_trip() {
    let Some(pg) = Pg::new().await else { return };
    let store = pg.store().await;
    store.migrate().await.unwrap(); // idempotent
    assert_eq!(store.backend_name(), "postgres");
    let first = store.append_batch(&entries(0..600)).await.unwrap(); // > one INSERT
    let second = store.append_batch(&entries(600..610)).await.unwrap();
    assert_eq!(second[0].previous_hash, first[599].hash);
    let head = store.head().await.unwrap().unwrap();
    assert_eq!(head.sequence, 610);
    let all = store.read_range(1, 1000).await.unwrap();
    assert_eq!(all.len(), 610);
    assert_eq!(all[600..], second[..]);
    assert_eq!(store.verify(&[head]).await.unwrap().unwrap().records, 610);
    store.close().await;
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_role_with_insert_and_select_only_cannot_change_records() {
    let Some(pg) = Pg::new().await else { return };
    let owner = pg.store().await;
    owner.append_batch(&entries(0..3)).await.unwrap();

    // The documented grant set (docs/audit.md), as `audit migrate --grant-to` applies it.
    let role = unique("kt_audit");
    let password = unique("pw");
    pg.admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'"
        )))
        .await
        .unwrap();
    owner.grant_operator_role(&role).await.unwrap();
    let url = pg.env.url_for_user(&role, &password);
    let writer = AuditStore::connect_postgres_with(pg.options(&url))
        .await
        .unwrap();
    let appended = writer.append_batch(&entries(3..6)).await.unwrap();
    assert_eq!(appended[2].sequence, 6);
    let keyed = [KeyedEntries {
        key: "role-key".into(),
        entries: entries(6..7),
    }];
    assert_eq!(
        writer
            .append_batch_once(&keyed)
            .await
            .unwrap()
            .records
            .len(),
        1
    );
    assert_eq!(
        writer
            .append_batch_once(&keyed)
            .await
            .unwrap()
            .duplicate_keys,
        1
    );
    assert_eq!(writer.verify(&[]).await.unwrap().unwrap().records, 7);

    let mut as_role = sqlx::PgConnection::connect_with(&pg.options(&url))
        .await
        .unwrap();
    let mut as_superuser = sqlx::PgConnection::connect_with(&pg.options(&pg.env.url))
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_records SET details = 'x' WHERE sequence = 2",
        "DELETE FROM audit_append_keys",
        "DELETE FROM audit_records WHERE sequence = 3",
        "TRUNCATE audit_records",
    ] {
        let err = as_role.execute(sql).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
        // Even the superuser is stopped by the trigger (until it disables it); the keys table
        // has no trigger (deleting a key only allows a duplicate, see the migration).
        if sql.contains("audit_append_keys") {
            continue;
        }
        let err = as_superuser.execute(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(owner.verify(&[]).await.unwrap().unwrap().records, 7);

    as_role.close().await.unwrap();
    as_superuser.close().await.unwrap();
    writer.close().await;
    owner.close().await;
    let admin = pg.admin.clone();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE; DROP ROLE {role};",
            pg.schema
        )))
        .await
        .unwrap();
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_superuser_tampering_is_detected() {
    let Some(pg) = Pg::new().await else { return };
    let store = pg.store().await;
    let mut records = store.append_batch(&entries(0..20)).await.unwrap();
    let checkpoint = store.head().await.unwrap().unwrap();
    let mut attacker = pg.attacker().await;

    // One flipped byte.
    attacker
        .execute("UPDATE audit_records SET details = 's' || substr(details, 2) WHERE sequence = 4")
        .await
        .unwrap();
    assert_eq!(
        store.verify(&[checkpoint]).await.unwrap().unwrap_err(),
        VerifyError::HashMismatch { sequence: 4 }
    );
    attacker
        .execute("UPDATE audit_records SET details = 'r' || substr(details, 2) WHERE sequence = 4")
        .await
        .unwrap();
    assert!(store.verify(&[checkpoint]).await.unwrap().is_ok());

    // Reordered rows.
    attacker
        .execute(
            "UPDATE audit_records SET sequence = 1000 WHERE sequence = 3;
             UPDATE audit_records SET sequence = 3 WHERE sequence = 6;
             UPDATE audit_records SET sequence = 6 WHERE sequence = 1000;",
        )
        .await
        .unwrap();
    assert_eq!(
        store.verify(&[checkpoint]).await.unwrap().unwrap_err(),
        VerifyError::HashMismatch { sequence: 3 }
    );
    attacker
        .execute(
            "UPDATE audit_records SET sequence = 1000 WHERE sequence = 3;
             UPDATE audit_records SET sequence = 3 WHERE sequence = 6;
             UPDATE audit_records SET sequence = 6 WHERE sequence = 1000;",
        )
        .await
        .unwrap();
    assert!(store.verify(&[checkpoint]).await.unwrap().is_ok());

    // Re-hashed chain: consistent, but not what the checkpoint says.
    records[10].details = "rewritten".into();
    rehash(&mut records);
    for r in records.iter().rev() {
        sqlx::query(
            "UPDATE audit_records SET details = $1, previous_hash = $2, hash = $3 WHERE sequence = $4",
        )
        .bind(&r.details)
        .bind(r.previous_hash.to_vec())
        .bind(r.hash.to_vec())
        .bind(r.sequence as i64)
        .execute(&mut attacker)
        .await
        .unwrap();
    }
    assert!(store.verify(&[]).await.unwrap().is_ok());
    assert_eq!(
        store.verify(&[checkpoint]).await.unwrap().unwrap_err(),
        VerifyError::CheckpointMismatch { sequence: 20 }
    );

    // Deleted row, then truncated tail.
    attacker
        .execute("DELETE FROM audit_records WHERE sequence = 8")
        .await
        .unwrap();
    assert_eq!(
        store.verify(&[]).await.unwrap().unwrap_err(),
        VerifyError::SequenceGap {
            expected: 8,
            found: 9
        }
    );
    attacker
        .execute("DELETE FROM audit_records WHERE sequence >= 8")
        .await
        .unwrap();
    assert!(store.verify(&[]).await.unwrap().is_ok());
    assert_eq!(
        store.verify(&[checkpoint]).await.unwrap().unwrap_err(),
        VerifyError::Truncated {
            last: 7,
            checkpoint: 20
        }
    );

    attacker.close().await.unwrap();
    store.close().await;
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_concurrent_appenders_make_one_chain() {
    let Some(pg) = Pg::new().await else { return };
    let store = pg.store().await;
    concurrent_appenders(&store).await;
    // A second pool (another operator process) appends onto the same chain.
    let other = AuditStore::connect_postgres_with(pg.options(&pg.env.url))
        .await
        .unwrap();
    let (batch_a, batch_b) = (entries(10_000..10_050), entries(20_000..20_050));
    let (a, b) = tokio::join!(store.append_batch(&batch_a), other.append_batch(&batch_b));
    a.unwrap();
    b.unwrap();
    assert!(store.verify(&[]).await.unwrap().is_ok());
    other.close().await;
    store.close().await;
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_never_holds_the_credential_value() {
    let Some(pg) = Pg::new().await else { return };
    let store = pg.store().await;
    store.append_batch(&entries(0..20)).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT row_to_json(r)::text FROM {}.audit_records r",
        pg.schema
    )))
    .fetch_all(&pg.admin)
    .await
    .unwrap();
    assert_eq!(rows.len(), 20);
    let all = rows.concat();
    assert!(all.contains(&fingerprint_of(CANARY)));
    assert!(!all.contains(CANARY));
    store.close().await;
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_read_only_open_verifies_without_writing() {
    let db = sqlite().await;
    db.store.append_batch(&entries(0..5)).await.unwrap();
    db.store.close().await;
    let reader = AuditStore::open_sqlite_read_only(&db.path).await.unwrap();
    let summary = reader.verify(&[]).await.unwrap().unwrap();
    assert_eq!(summary.records, 5);
    // The verifier's store cannot append.
    assert!(reader.append_batch(&entries(5..6)).await.is_err());
    assert_eq!(reader.head().await.unwrap().unwrap().sequence, 5);
    // A missing file is an error, not a new empty store.
    let missing = db.path.with_file_name("missing.db");
    assert!(AuditStore::open_sqlite_read_only(&missing).await.is_err());
    assert!(!missing.exists());
}

// ---------------------------------------------------------------- idempotent appends

fn keyed(key: &str, range: std::ops::Range<u64>) -> KeyedEntries {
    KeyedEntries {
        key: key.into(),
        entries: entries(range),
    }
}

/// A retried batch adds nothing, a partly new one adds only its new keys, a key repeated inside
/// one batch counts once, and the chain stays one chain; `read_action_since` pages by action,
/// sequence and time.
async fn keyed_appends_are_idempotent(store: &AuditStore) {
    store.append_batch(&entries(0..2)).await.unwrap();
    let first = store
        .append_batch_once(&[keyed("a", 2..4), keyed("b", 4..5), keyed("a", 5..6)])
        .await
        .unwrap();
    assert_eq!(first.records.len(), 3);
    assert_eq!(first.duplicate_keys, 1);
    assert_eq!(first.records[0].sequence, 3);
    let retried = store
        .append_batch_once(&[keyed("a", 2..4), keyed("b", 4..5)])
        .await
        .unwrap();
    assert_eq!(
        retried,
        keyturn_audit::KeyedAppend {
            records: vec![],
            duplicate_keys: 2
        }
    );
    let mixed = store
        .append_batch_once(&[keyed("b", 4..5), keyed("c", 6..8), keyed("empty", 0..0)])
        .await
        .unwrap();
    assert_eq!(mixed.records.len(), 2);
    assert_eq!(mixed.records[0].previous_hash, first.records[2].hash);
    // Many keys: more than one lookup statement.
    let many: Vec<KeyedEntries> = (0..1200)
        .map(|n| keyed(&format!("k{n}"), n..n + 1))
        .collect();
    assert_eq!(
        store.append_batch_once(&many).await.unwrap().records.len(),
        1200
    );
    assert_eq!(
        store.append_batch_once(&many).await.unwrap().duplicate_keys,
        1200
    );
    assert_eq!(
        store.verify(&[]).await.unwrap().unwrap().records,
        2 + 3 + 2 + 1200
    );

    let mut read = entry(9000);
    read.action = "SecretRead".into();
    read.time = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let mut old_read = read.clone();
    old_read.time = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    store
        .append_batch(&[read.clone(), old_read, read.clone(), read])
        .await
        .unwrap();
    let since = DateTime::from_timestamp(1_750_000_000, 0).unwrap();
    let reads = store
        .read_action_since("SecretRead", 0, since, 10)
        .await
        .unwrap();
    assert_eq!(
        reads.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [1208, 1210, 1211]
    );
    let page = store
        .read_action_since("SecretRead", 1208, since, 1)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|r| r.sequence).collect::<Vec<_>>(), [1210]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_keyed_appends_are_idempotent() {
    let db = sqlite().await;
    keyed_appends_are_idempotent(&db.store).await;
    db.store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_keyed_appends_are_idempotent() {
    let Some(pg) = Pg::new().await else { return };
    let store = pg.store().await;
    keyed_appends_are_idempotent(&store).await;
    store.close().await;
    pg.drop().await;
}
