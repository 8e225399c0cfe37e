//! Benchmarks of the real `keyturn-operator` binary against the in-process API stand-in and the
//! real PostgreSQL. Prints figures; asserts nothing about time. Run with `./scripts/bench.sh`
//! (or `cargo bench -p keyturn-e2e --bench controller` with the backends' env sourced and the
//! operator built).
//!
//! 1. A batch of N rotations due at once (first issuance, then a manual request on all):
//!    rotations/s, start latency, duplicates, and the operator's API writes per rotation.
//! 2. Memory: RSS of the operator with M paused ManagedSecrets and unrelated Secrets.
//! 3. Idle: API requests per minute once everything has settled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keyturn_e2e::postgres::{Postgres, Strategy};
use keyturn_e2e::{Cluster, OperatorProcess, RecordedRequest, wait_for};
use serde_json::json;

const API_VERSION: &str = "keyturn.dev/v1alpha1";

fn argument(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// The operator's writes (the bench itself only patches ManagedSecrets' metadata and reads).
fn operator_writes(requests: &[RecordedRequest]) -> BTreeMap<String, usize> {
    let mut writes = BTreeMap::new();
    for request in requests.iter().filter(|request| request.method != "GET") {
        let kind = if request.path.ends_with("/status") {
            "managedsecrets/status"
        } else if request.path.contains("/leases") {
            "leases"
        } else if request.path.contains("/events") {
            "events"
        } else if request.path.contains("/secrets") {
            "secrets"
        } else if request.path.contains("/deployments") {
            "deployments"
        } else if request.path.contains("/managedsecrets") {
            continue;
        } else {
            "other"
        };
        *writes
            .entry(format!("{} {kind}", request.method))
            .or_insert(0) += 1;
    }
    writes
}

async fn count_at_revision(cluster: &Cluster, namespace: &str, revision: u64) -> usize {
    cluster
        .list(namespace, API_VERSION, "ManagedSecret")
        .await
        .iter()
        .filter(|object| {
            object["status"]["revision"].as_u64() >= Some(revision)
                && object["status"]["inFlight"].is_null()
        })
        .count()
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

async fn rotation_batch(postgres: &Postgres, rotations: usize, concurrency: usize) {
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("bench").await;
    let ns = namespace.name();
    postgres.install_admin_secret(&cluster, ns).await;
    let mut names = Vec::new();
    for index in 0..rotations {
        let role = postgres.create_login_role().await;
        let manifest = postgres
            .managed_secret(&format!("ms-{index}"), &role.name)
            .strategy(Strategy::SingleUser)
            .every("1h")
            .ttl(Some("24h"));
        names.push((manifest.to_json(), format!("ms-{index}")));
    }
    let operator = OperatorProcess::builder(&cluster, &namespace)
        .identity("bench")
        .flag("--concurrency", &concurrency.to_string())
        .spawn();
    operator
        .wait_for_log("leading; starting the controller", Duration::from_secs(60))
        .await;
    let standin = cluster
        .standin()
        .expect("the bench runs against the stand-in");

    // Batch 1: first issuance of all N at once.
    let started = Instant::now();
    for (manifest, _) in &names {
        cluster.apply(ns, manifest).await;
    }
    wait_for(
        "first issuance of every ManagedSecret",
        Duration::from_secs(1800),
        async || {
            let done = count_at_revision(&cluster, ns, 1).await;
            if done == rotations { Ok(()) } else { Err(done) }
        },
    )
    .await;
    let initial = started.elapsed();

    // Batch 2: a manual request on all at once; API writes counted over this batch only.
    tokio::time::sleep(Duration::from_secs(2)).await;
    standin.clear_requests();
    let mut requested_at = BTreeMap::new();
    let started = Instant::now();
    for (_, name) in &names {
        let patch =
            json!({"metadata": {"annotations": {"keyturn.dev/rotate-requested-at": "bench"}}});
        cluster
            .merge_patch(ns, API_VERSION, "ManagedSecret", name, &patch)
            .await;
        requested_at.insert(format!("{ns}/{name}"), chrono::Utc::now());
    }
    wait_for(
        "the manual rotation of every ManagedSecret",
        Duration::from_secs(1800),
        async || {
            let done = count_at_revision(&cluster, ns, 2).await;
            if done == rotations { Ok(()) } else { Err(done) }
        },
    )
    .await;
    let manual = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = operator_writes(&standin.requests());

    // Start latency: from the request to the first step's log line.
    let mut latencies: Vec<f64> = Vec::new();
    let mut stage_runs = 0usize;
    let records = operator.log_records();
    for record in records
        .iter()
        .filter(|record| record["message"] == "running step" && record["step"] == "Stage")
    {
        stage_runs += 1;
        let (Some(object), Some(time)) = (
            record["managed_secret"].as_str(),
            record["timestamp"].as_str(),
        ) else {
            continue;
        };
        if let (Some(requested), Ok(started)) = (
            requested_at.get(object),
            chrono::DateTime::parse_from_rfc3339(time),
        ) && started.with_timezone(&chrono::Utc) >= *requested
        {
            latencies.push((started.with_timezone(&chrono::Utc) - *requested).as_seconds_f64());
        }
    }
    latencies.sort_by(f64::total_cmp);
    let revisions: Vec<u64> = cluster
        .list(ns, API_VERSION, "ManagedSecret")
        .await
        .iter()
        .map(|object| object["status"]["revision"].as_u64().unwrap_or(0))
        .collect();
    let duplicates = revisions.iter().filter(|revision| **revision != 2).count();

    println!(
        "## Rotations: {rotations} PostgreSQL SingleUser ManagedSecrets due at once, --concurrency {concurrency}"
    );
    println!(
        "first issuance: {:.1} s, {:.1} rotations/s",
        initial.as_secs_f64(),
        rotations as f64 / initial.as_secs_f64()
    );
    println!(
        "manual batch:   {:.1} s, {:.1} rotations/s",
        manual.as_secs_f64(),
        rotations as f64 / manual.as_secs_f64()
    );
    println!(
        "start latency after the request (manual batch): p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "Stage runs: {stage_runs} for {} rotations; ManagedSecrets not at revision 2: {duplicates}",
        2 * rotations
    );
    println!("operator API writes during the manual batch ({rotations} rotations):");
    for (kind, count) in &writes {
        println!(
            "  {kind:<32} {count:>6}  ({:.2} per rotation)",
            *count as f64 / rotations as f64
        );
    }
    let object_writes: usize = writes
        .iter()
        .filter(|(kind, _)| !kind.ends_with("events") && !kind.ends_with("leases"))
        .map(|(_, count)| count)
        .sum();
    println!(
        "  object writes (Secrets + status) per rotation: {:.2}",
        object_writes as f64 / rotations as f64
    );
    operator.terminate();
    operator.wait_exit(Duration::from_secs(30)).await;
}

async fn memory_and_idle(managed_secrets: usize, unrelated_secrets: usize) {
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("memory").await;
    let ns = namespace.name();
    let operator = OperatorProcess::builder(&cluster, &namespace)
        .identity("memory")
        .flag("--lease-duration", "15s")
        .flag("--lease-renew-interval", "5s")
        .spawn();
    operator
        .wait_for_log("leading; starting the controller", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = rss_kib(operator.pid());

    let padding = "x".repeat(2048);
    for index in 0..unrelated_secrets {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("unrelated-{index}")},
                            "data": {"blob": base64_of(&padding)}});
        cluster.apply(ns, &secret).await;
    }
    for index in 0..managed_secrets {
        let object = json!({
            "apiVersion": API_VERSION, "kind": "ManagedSecret",
            "metadata": {"name": format!("paused-{index}")},
            "spec": {
                "rotator": {"postgres": {"host": "db.example.internal", "adminSecretRef": {"name": "pg-admin"}, "role": format!("app_{index}")}},
                "rotation": {"every": "720h", "paused": true},
                "expiry": {"ttl": "2160h"}
            }
        });
        cluster.apply(ns, &object).await;
    }
    wait_for(
        "every ManagedSecret reconciled",
        Duration::from_secs(1800),
        async || {
            let done = cluster
                .list(ns, API_VERSION, "ManagedSecret")
                .await
                .iter()
                .filter(|object| !object["status"]["observedGeneration"].is_null())
                .count();
            if done == managed_secrets {
                Ok(())
            } else {
                Err(done)
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded = rss_kib(operator.pid());

    let standin = cluster
        .standin()
        .expect("the bench runs against the stand-in");
    standin.clear_requests();
    let idle = Duration::from_secs(60);
    tokio::time::sleep(idle).await;
    let requests = standin.requests();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for request in &requests {
        let kind = if request.path.contains("/leases") {
            "lease"
        } else if request.is_watch() {
            "watch"
        } else {
            "other"
        };
        *by_kind
            .entry(format!("{} {kind}", request.method))
            .or_insert(0) += 1;
    }

    println!(
        "## Memory and idle: {managed_secrets} paused ManagedSecrets, {unrelated_secrets} unrelated 2 KiB Secrets"
    );
    println!(
        "operator RSS: {:.1} MiB before any object, {:.1} MiB after; {:.2} MiB per 1,000 ManagedSecrets above the baseline",
        baseline as f64 / 1024.0,
        loaded as f64 / 1024.0,
        (loaded.saturating_sub(baseline)) as f64 / 1024.0 / (managed_secrets as f64 / 1000.0)
    );
    println!(
        "API requests over {} s idle: {} ({by_kind:?})",
        idle.as_secs(),
        requests.len()
    );
    operator.terminate();
    operator.wait_exit(Duration::from_secs(30)).await;
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::main]
async fn main() {
    let rotations = argument("KEYTURN_BENCH_ROTATIONS", 200);
    let concurrency = argument("KEYTURN_BENCH_CONCURRENCY", 8);
    match Postgres::from_env() {
        Some(postgres) => rotation_batch(&postgres, rotations, concurrency).await,
        None => println!("rotation batch skipped: no PostgreSQL (source target/test-env.sh)"),
    }
    for managed_secrets in [1_000, argument("KEYTURN_BENCH_OBJECTS", 10_000)] {
        memory_and_idle(managed_secrets, argument("KEYTURN_BENCH_UNRELATED", 2_000)).await;
    }
}
