//! Audit benchmark (DESIGN.md, "Performance": ≥ 10k records/s appended with batching,
//! ≥ 1M records/s verified). Measures and prints; asserts nothing about time.
//!
//! ```sh
//! cargo bench -p keyturn-audit --bench audit                 # SQLite + verification
//! source target/test-env.sh && cargo bench -p keyturn-audit --bench audit   # + PostgreSQL
//! cargo bench -p keyturn-audit --bench audit -- --records 200000 --batch 1000 --verify 1000000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::DateTime;
use keyturn_audit::{AuditEntry, AuditRecord, AuditStore, Checkpoint, Verifier};
use sqlx::Executor;

struct Args {
    records: u64,
    batch: u64,
    verify: u64,
}

fn args() -> Args {
    let mut a = Args {
        records: 100_000,
        batch: 1_000,
        verify: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match flag.as_str() {
            "--records" => a.records = value(),
            "--batch" => a.batch = value(),
            "--verify" => a.verify = value(),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// A realistic entry (~200 bytes of fields).
fn entry(n: u64) -> AuditEntry {
    AuditEntry {
        time: DateTime::from_timestamp(1_700_000_000 + (n / 10) as i64, 0).unwrap(),
        actor: "system:serviceaccount:keyturn-system:keyturn-operator".into(),
        action: "StepCompleted".into(),
        namespace: format!("team-{}", n % 50),
        managed_secret: format!("db-password-{}", n % 1000),
        rotation_id: Some(format!("kt-{:016x}", n / 8)),
        step: Some("Verify".into()),
        fingerprint: Some(
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        outcome: "Success".into(),
        details: "logged in with the staged credential".into(),
    }
}

async fn bench_appends(name: &str, store: &AuditStore, a: &Args) {
    let batches = a.records.div_ceil(a.batch);
    let mut n = 0;
    let start = Instant::now();
    for _ in 0..batches {
        let batch: Vec<AuditEntry> = (n..(n + a.batch).min(a.records)).map(entry).collect();
        n += batch.len() as u64;
        store.append_batch(&batch).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let verify_start = Instant::now();
    let summary = store.verify(&[]).await.unwrap().unwrap();
    let verify_secs = verify_start.elapsed().as_secs_f64();
    assert_eq!(summary.records, a.records);
    println!(
        "{name:<10} append: {} records in batches of {}: {:.2} s, {:.0} records/s ({:.2} ms per batch); \
         read back + verify: {:.0} records/s",
        a.records,
        a.batch,
        secs,
        a.records as f64 / secs,
        secs * 1000.0 / batches as f64,
        a.records as f64 / verify_secs,
    );
    // Single-record appends (no batching), for comparison.
    let singles = 200;
    let start = Instant::now();
    for i in 0..singles {
        store.append_batch(&[entry(a.records + i)]).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<10} append: {singles} single-record batches: {:.0} records/s",
        singles as f64 / secs
    );
}

fn bench_verify(a: &Args) {
    let build = Instant::now();
    let mut records: Vec<AuditRecord> = Vec::with_capacity(a.verify as usize);
    let mut prev = None;
    for n in 0..a.verify {
        let r = AuditRecord::chain(prev, entry(n));
        prev = Some((r.sequence, r.hash));
        records.push(r);
    }
    let build_secs = build.elapsed().as_secs_f64();
    let head = Checkpoint::of(records.last().unwrap());
    let mid = Checkpoint::of(&records[records.len() / 2]);
    let bytes: usize = records.iter().map(|r| r.canonical_bytes().len()).sum();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let mut v = Verifier::new(&[mid, head]);
        for r in &records {
            v.push(r).unwrap();
        }
        let summary = v.finish().unwrap();
        best = best.min(start.elapsed().as_secs_f64());
        assert_eq!(summary.records, a.verify);
    }
    println!(
        "verify     {} in-memory records (mean canonical size {} bytes, 2 checkpoints): best of 3 {:.3} s, \
         {:.0} records/s ({:.0} MB/s hashed); building the chain: {:.0} records/s",
        a.verify,
        bytes / records.len(),
        best,
        a.verify as f64 / best,
        bytes as f64 / best / 1e6,
        a.verify as f64 / build_secs,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    println!(
        "keyturn-audit benchmark: {} appends (batch {}), {} records verified; {} cores",
        a.records,
        a.batch,
        a.verify,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    bench_verify(&a);

    let dir = tempfile::tempdir().unwrap();
    let store = AuditStore::open_sqlite(dir.path().join("audit.db"))
        .await
        .unwrap();
    bench_appends("sqlite", &store, &a).await;
    store.close().await;

    match std::env::var("KEYTURN_TEST_POSTGRES_URL") {
        Ok(url) => {
            let admin = sqlx::PgPool::connect(&url).await.unwrap();
            let schema = format!("audit_bench_{}", std::process::id());
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .await
                .unwrap();
            let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
            let store =
                AuditStore::connect_postgres_with(options.options([("search_path", &schema)]))
                    .await
                    .unwrap();
            store.migrate().await.unwrap();
            bench_appends("postgres", &store, &a).await;
            store.close().await;
            admin
                .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .unwrap();
        }
        Err(_) => println!("postgres   skipped: KEYTURN_TEST_POSTGRES_URL is not set"),
    }
}
