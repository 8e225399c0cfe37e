//! Property 2 with the real binary: two replicas share a Lease and only the leader runs rotation
//! steps; when the leader is killed (SIGKILL, no release) the standby takes over after the Lease
//! expires and carries on, and no rotation runs twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use keyturn_e2e::postgres::{Postgres, Strategy};
use keyturn_e2e::{Cluster, OperatorProcess};
use serde_json::json;

const API_VERSION: &str = "keyturn.dev/v1alpha1";

/// Rotation steps this replica ran, from its JSON log.
fn steps_run(operator: &OperatorProcess) -> Vec<(String, String)> {
    operator
        .log_records()
        .into_iter()
        .filter(|record| record["message"] == "running step")
        .map(|record| {
            (
                record["rotation_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                record["step"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_replicas_never_both_rotate_and_the_standby_takes_over() {
    let Some(postgres) = Postgres::from_env() else {
        return;
    };
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("replicas").await;
    let ns = namespace.name();
    let role = postgres.create_login_role().await;
    postgres.install_admin_secret(&cluster, ns).await;
    let manifest = postgres
        .managed_secret("orders", &role.name)
        .strategy(Strategy::AlternatingUsers)
        .every("1h")
        .ttl(Some("24h"));

    let first = OperatorProcess::builder(&cluster, &namespace)
        .identity("replica-a")
        .spawn();
    first
        .wait_for_log("leading; starting the controller", Duration::from_secs(30))
        .await;
    let second = OperatorProcess::builder(&cluster, &namespace)
        .identity("replica-b")
        .spawn();
    second
        .wait_for_log("waiting to lead", Duration::from_secs(30))
        .await;
    second.wait_ready().await;

    cluster.apply_yaml(ns, &manifest.to_yaml()).await;
    cluster
        .wait_for_revision(ns, "orders", 1, true, Duration::from_secs(90))
        .await;
    for request in ["one", "two"] {
        let patch =
            json!({"metadata": {"annotations": {"keyturn.dev/rotate-requested-at": request}}});
        cluster
            .merge_patch(ns, API_VERSION, "ManagedSecret", "orders", &patch)
            .await;
        cluster
            .wait_for_revision(
                ns,
                "orders",
                if request == "one" { 2 } else { 3 },
                true,
                Duration::from_secs(90),
            )
            .await;
    }
    assert!(
        steps_run(&second).is_empty(),
        "the standby ran steps while the leader held the Lease:\n{}",
        second.logs()
    );
    let leader_steps = steps_run(&first);
    assert_eq!(
        leader_steps.len(),
        3 * 7,
        "three rotations of seven steps, each once: {leader_steps:?}"
    );
    assert!(
        second.metrics().await.contains("keyturn_leader 0"),
        "the standby reports it does not lead"
    );

    // The leader dies without releasing the Lease; the standby waits it out, then leads.
    first.kill();
    second
        .wait_for_log("leading; starting the controller", Duration::from_secs(60))
        .await;
    let patch =
        json!({"metadata": {"annotations": {"keyturn.dev/rotate-requested-at": "after-failover"}}});
    cluster
        .merge_patch(ns, API_VERSION, "ManagedSecret", "orders", &patch)
        .await;
    let status = cluster
        .wait_for_revision(ns, "orders", 4, true, Duration::from_secs(90))
        .await;
    assert_eq!(status["handledRotateRequest"], "after-failover");
    let taken_over = steps_run(&second);
    assert_eq!(
        taken_over.len(),
        7,
        "one rotation of seven steps after failover: {taken_over:?}"
    );
    for step in &taken_over {
        assert!(
            !leader_steps.contains(step),
            "step {step:?} ran on both replicas"
        );
    }
    let published = cluster
        .read_secret(ns, manifest.published_secret_name())
        .await
        .unwrap();
    postgres
        .pg_select(&published["username"], &published["password"], &role.table)
        .await
        .unwrap();
    assert!(second.metrics().await.contains("keyturn_leader 1"));
}
