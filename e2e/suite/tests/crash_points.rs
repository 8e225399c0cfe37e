//! Property 1 with the real binary: the operator aborts itself (as a SIGKILL would: no cleanup,
//! no flush) before and after each rotation step, a fresh process takes over, and the rotation
//! ends with exactly one new credential that works, the previous one retired, and the revision
//! advanced exactly once.
//!
//! Each case: a first operator issues the initial credential and stops cleanly; a second one,
//! with `KEYTURN_TEST_CRASH_POINT`, starts a manual rotation (AlternatingUsers, so there is a
//! previous role to retire) and dies at the crash point; a third resumes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;

use keyturn_e2e::postgres::{Postgres, Strategy};
use keyturn_e2e::{Cluster, OperatorProcess};
use serde_json::{Value, json};

const API_VERSION: &str = "keyturn.dev/v1alpha1";

async fn crash_and_resume(point: &str) {
    let Some(postgres) = Postgres::from_env() else {
        return;
    };
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("crash").await;
    let ns = namespace.name();
    let role = postgres.create_login_role().await;
    postgres.install_admin_secret(&cluster, ns).await;
    let manifest = postgres
        .managed_secret("orders", &role.name)
        .strategy(Strategy::AlternatingUsers)
        .every("1h")
        .ttl(Some("24h"));

    // Revision 1, issued by an operator that then shuts down cleanly (releasing the Lease).
    let first = OperatorProcess::builder(&cluster, &namespace)
        .identity("first")
        .spawn();
    first.wait_ready().await;
    cluster.apply_yaml(ns, &manifest.to_yaml()).await;
    cluster
        .wait_for_revision(ns, "orders", 1, true, Duration::from_secs(90))
        .await;
    first.terminate();
    assert_eq!(
        first
            .wait_exit(Duration::from_secs(30))
            .await
            .and_then(|status| status.code()),
        Some(0)
    );
    let before = cluster
        .read_secret(ns, manifest.published_secret_name())
        .await
        .unwrap();

    // A manual rotation, interrupted at `point`.
    let crashing = OperatorProcess::builder(&cluster, &namespace)
        .identity("crashing")
        .crash_at(point)
        .spawn();
    crashing.wait_ready().await;
    let request =
        json!({"metadata": {"annotations": {"keyturn.dev/rotate-requested-at": "crash-test"}}});
    cluster
        .merge_patch(ns, API_VERSION, "ManagedSecret", "orders", &request)
        .await;
    let died = crashing
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the crash point was reached");
    assert_eq!(
        died.signal(),
        Some(6),
        "aborted at {point}: {}",
        crashing.log_tail(20)
    );

    // A new process resumes from status and the staging Secret.
    let resumed = OperatorProcess::builder(&cluster, &namespace)
        .identity("resumed")
        .spawn();
    resumed.wait_ready().await;
    let after = cluster
        .wait_for_revision(ns, "orders", 2, true, Duration::from_secs(90))
        .await;
    assert_eq!(after["handledRotateRequest"], "crash-test", "{after:#}");
    assert_eq!(after["lastFailure"], Value::Null, "{after:#}");

    let published = cluster
        .read_secret(ns, manifest.published_secret_name())
        .await
        .unwrap();
    assert_ne!(
        published["username"], before["username"],
        "the rotation switched roles"
    );
    postgres
        .pg_select(&published["username"], &published["password"], &role.table)
        .await
        .unwrap_or_else(|error| {
            panic!("the published credential must work after a crash at {point}: {error}")
        });
    assert!(
        postgres
            .pg_login(&before["username"], &before["password"])
            .await
            .is_err(),
        "the previous credential is retired after a crash at {point}"
    );
    let staging = cluster
        .read_secret(ns, "orders-keyturn-staging")
        .await
        .unwrap();
    assert_eq!(
        staging["password"], published["password"],
        "one new credential, staged and published"
    );
    assert_eq!(after["current"]["id"], published["username"].as_str());

    // No second rotation for the same request, however long it runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cluster.managed_secret_status(ns, "orders").await["revision"],
        2
    );
}

macro_rules! crash_cases {
    ($($name:ident => $point:literal,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                crash_and_resume($point).await;
            }
        )*
    };
}

crash_cases! {
    before_stage => "before:Stage",
    after_stage => "after:Stage",
    before_apply => "before:Apply",
    after_apply => "after:Apply",
    before_verify => "before:Verify",
    after_verify => "after:Verify",
    before_publish => "before:Publish",
    after_publish => "after:Publish",
    before_restart_consumers => "before:RestartConsumers",
    after_restart_consumers => "after:RestartConsumers",
    before_await_rollout => "before:AwaitRollout",
    after_await_rollout => "after:AwaitRollout",
    before_retire_previous => "before:RetirePrevious",
    after_retire_previous => "after:RetirePrevious",
}

/// A scheduled rotation's id comes from persisted state alone, so nothing is written to status
/// before Apply (ADR 0004): a crash right after Apply must still resume the same rotation with
/// the same staged credential.
#[tokio::test]
async fn scheduled_rotation_crashing_after_apply_resumes_the_same_rotation() {
    let Some(postgres) = Postgres::from_env() else {
        return;
    };
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("crash-scheduled").await;
    let ns = namespace.name();
    let role = postgres.create_login_role().await;
    postgres.install_admin_secret(&cluster, ns).await;
    let manifest = postgres
        .managed_secret("orders", &role.name)
        .strategy(Strategy::AlternatingUsers)
        .every("1m");

    let crashing = OperatorProcess::builder(&cluster, &namespace)
        .identity("crashing")
        .crash_at("after:Apply")
        .spawn();
    crashing.wait_ready().await;
    cluster.apply_yaml(ns, &manifest.to_yaml()).await;
    // The first issuance (Initial) crashes at after:Apply too; resume it, then crash the
    // scheduled one.
    crashing
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("first crash");
    let resumed = OperatorProcess::builder(&cluster, &namespace)
        .identity("resumed")
        .spawn();
    cluster
        .wait_for_revision(ns, "orders", 1, true, Duration::from_secs(90))
        .await;
    resumed.terminate();
    resumed.wait_exit(Duration::from_secs(30)).await;
    let before = cluster
        .read_secret(ns, manifest.published_secret_name())
        .await
        .unwrap();

    let crashing = OperatorProcess::builder(&cluster, &namespace)
        .identity("crashing-2")
        .crash_at("after:Apply")
        .spawn();
    let died = crashing
        .wait_exit(Duration::from_secs(120))
        .await
        .expect("the scheduled rotation reached Apply");
    assert_eq!(died.signal(), Some(6));
    let persisted = cluster.managed_secret_status(ns, "orders").await;
    assert!(
        persisted["inFlight"].is_null(),
        "nothing persisted before Apply for a scheduled rotation: {persisted:#}"
    );
    let staged = cluster
        .read_secret(ns, "orders-keyturn-staging")
        .await
        .unwrap();

    let _final = OperatorProcess::builder(&cluster, &namespace)
        .identity("final")
        .spawn();
    cluster
        .wait_for_revision(ns, "orders", 2, true, Duration::from_secs(90))
        .await;
    let published = cluster
        .read_secret(ns, manifest.published_secret_name())
        .await
        .unwrap();
    assert_eq!(
        published["password"], staged["password"],
        "the credential staged before the crash is the one published"
    );
    postgres
        .pg_select(&published["username"], &published["password"], &role.table)
        .await
        .unwrap();
    assert!(
        postgres
            .pg_login(&before["username"], &before["password"])
            .await
            .is_err()
    );
}
