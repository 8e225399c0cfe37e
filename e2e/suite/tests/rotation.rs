//! Real rotations through the real binary: a PostgreSQL, an OpenBao (Vault API) and an AWS
//! Secrets Manager (moto) ManagedSecret each get their first credential and then rotate on
//! schedule; the PostgreSQL login really works with the new password and the retired role is
//! refused; the published Secrets match what each backend holds; and no credential (nor the
//! admin password keyturn used) appears in logs, Events, status or metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use keyturn_e2e::aws::Moto;
use keyturn_e2e::openbao::{DEV_KV_MOUNT, OpenBao};
use keyturn_e2e::postgres::{Postgres, Strategy};
use keyturn_e2e::{Cluster, OperatorProcess, assert_no_canary};
use serde_json::Value;

/// First issuance plus one scheduled rotation (every 1m, the minimum) with room to spare.
const SCHEDULED: Duration = Duration::from_secs(150);

fn ready(status: &Value) -> bool {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
}

#[tokio::test]
async fn postgres_openbao_and_aws_rotate_on_schedule() {
    let (Some(postgres), Some(openbao), Some(moto)) =
        (Postgres::from_env(), OpenBao::from_env(), Moto::from_env())
    else {
        return;
    };
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("rotation").await;
    let ns = namespace.name();

    let role = postgres.create_login_role().await;
    postgres.install_admin_secret(&cluster, ns).await;
    let orders = postgres
        .managed_secret("orders", &role.name)
        .strategy(Strategy::AlternatingUsers);
    openbao.install_token_secret(&cluster, ns).await;
    let kv_path = openbao.unique_path();
    let reporting = openbao.managed_secret("reporting", &kv_path);
    let aws_secret = moto
        .create_secret("e2e-webhook", "initial-value-set-by-hand")
        .await;
    let webhook = moto.managed_secret("webhook", &aws_secret);

    let operator = OperatorProcess::builder(&cluster, &namespace)
        .identity("a")
        .spawn();
    operator.wait_ready().await;
    for manifest in [orders.to_yaml(), reporting.to_yaml(), webhook.to_yaml()] {
        cluster.apply_yaml(ns, &manifest).await;
    }

    // First issuance of all three.
    let first_orders = cluster
        .wait_for_revision(ns, "orders", 1, false, Duration::from_secs(60))
        .await;
    cluster
        .wait_for_revision(ns, "reporting", 1, false, Duration::from_secs(60))
        .await;
    cluster
        .wait_for_revision(ns, "webhook", 1, false, Duration::from_secs(60))
        .await;
    assert!(ready(&first_orders), "{first_orders:#}");
    let first = cluster
        .read_secret(ns, orders.published_secret_name())
        .await
        .unwrap();
    postgres
        .pg_select(&first["username"], &first["password"], &role.table)
        .await
        .unwrap();
    assert!(
        postgres
            .pg_login(&role.name, &role.bootstrap_password)
            .await
            .is_err(),
        "the bootstrap password stops working once keyturn has issued the first credential"
    );

    // One scheduled rotation each, one minute after the first.
    let second_orders = cluster
        .wait_for_revision(ns, "orders", 2, false, SCHEDULED)
        .await;
    assert_eq!(
        second_orders["lastFailure"],
        Value::Null,
        "{second_orders:#}"
    );
    let second = cluster
        .read_secret(ns, orders.published_secret_name())
        .await
        .unwrap();
    assert_ne!(
        second["username"], first["username"],
        "AlternatingUsers moved to the other role"
    );
    postgres
        .pg_select(&second["username"], &second["password"], &role.table)
        .await
        .unwrap();
    assert!(
        postgres
            .pg_login(&first["username"], &first["password"])
            .await
            .is_err(),
        "the previous role is retired once the rotation completes"
    );

    cluster
        .wait_for_revision(ns, "reporting", 2, false, SCHEDULED)
        .await;
    let published_kv = cluster
        .read_secret(ns, reporting.published_secret_name())
        .await
        .unwrap();
    let kv = openbao.read_kv(DEV_KV_MOUNT, &kv_path).await.unwrap();
    assert_eq!(
        kv["password"].as_str(),
        Some(published_kv["password"].as_str()),
        "the published Secret holds the latest KV version"
    );

    cluster
        .wait_for_revision(ns, "webhook", 2, false, SCHEDULED)
        .await;
    let published_aws = cluster
        .read_secret(ns, webhook.published_secret_name())
        .await
        .unwrap();
    let current = moto.secret_value(&aws_secret, "AWSCURRENT").await.unwrap();
    assert!(
        current.contains(&published_aws["password"]),
        "AWSCURRENT is what keyturn published"
    );
    let stages: BTreeMap<String, Vec<String>> = moto.version_stages(&aws_secret).await;
    assert!(
        !stages.values().flatten().any(|stage| stage == "AWSPENDING"),
        "no AWSPENDING left behind: {stages:?}"
    );

    // Each rotation is one audit trail of Events, and no credential leaked anywhere.
    let events = cluster.events(ns).await;
    assert!(
        events
            .iter()
            .any(|event| event.to_string().contains("RotationCompleted")),
        "RotationCompleted Events are published"
    );
    let metrics = operator.metrics().await;
    assert!(metrics.contains("keyturn_rotations_total{"), "{metrics}");
    assert!(
        metrics.contains("keyturn_next_rotation_timestamp_seconds{"),
        "{metrics}"
    );
    for canary in [
        first["password"].as_str(),
        second["password"].as_str(),
        published_kv["password"].as_str(),
        published_aws["password"].as_str(),
        postgres.env().password.as_str(),
    ] {
        assert_no_canary(&cluster, ns, &[&operator], canary).await;
    }
}
