//! The controller in-process against the Kubernetes API stand-in and the real PostgreSQL:
//! rotations happen on schedule and are published, a bad spec stalls without a hot loop, and
//! deletion with `Revoke` retires the credential. The e2e suite repeats the important cases
//! with the real binary; these run faster and give precise failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use keyturn_apiserver::{Config, Handle, start};
use keyturn_operator::controller::audit_sink::AuditSink;
use keyturn_operator::controller::{self, Context};
use keyturn_operator::metrics::Metrics;
use keyturn_rotators::RotatorRegistry;
use keyturn_testenv::PostgresEnv;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const NAMESPACE: &str = "default";

struct Harness {
    handle: Handle,
    client: Client,
    _audit_dir: tempfile::TempDir,
    controller: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

async fn harness() -> Harness {
    harness_with_audit(None).await
}

/// A harness whose audit store is at `audit_location` (default: a SQLite file of its own).
async fn harness_with_audit(audit_location: Option<String>) -> Harness {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/keyturn.dev_managedsecrets.yaml"
    ))
    .unwrap();
    let handle = start(Config {
        crds: vec![crd],
        ..Config::default()
    })
    .await
    .unwrap();
    let client = Client::try_from(kube::Config::new(handle.url().parse().unwrap())).unwrap();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_location = audit_location
        .unwrap_or_else(|| format!("sqlite:{}", audit_dir.path().join("audit.db").display()));
    let store = AuditSink::open(&audit_location).await.unwrap();
    let context = Arc::new(Context::new(
        client.clone(),
        RotatorRegistry::new(),
        AuditSink::new(store),
        Arc::new(Metrics::new()),
        "test",
        None,
    ));
    let controller = tokio::spawn(async move {
        controller::run(context, Some(NAMESPACE), 4, std::future::pending()).await;
    });
    Harness {
        handle,
        client,
        _audit_dir: audit_dir,
        controller,
    }
}

fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

async fn exec(pg: &PostgresEnv, statement: &str) {
    let mut connection = PgConnection::connect(&pg.url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.ok();
}

async fn can_log_in(pg: &PostgresEnv, username: &str, password: &str) -> bool {
    let options = PgConnectOptions::new_without_pgpass()
        .host(&pg.host)
        .port(pg.port)
        .database(&pg.database)
        .username(username)
        .password(password)
        .ssl_mode(PgSslMode::Prefer);
    match tokio::time::timeout(
        Duration::from_secs(10),
        PgConnection::connect_with(&options),
    )
    .await
    {
        Ok(Ok(connection)) => {
            connection.close().await.ok();
            true
        }
        _ => false,
    }
}

/// A login role with a bootstrap password, and the admin Secret keyturn uses to rotate it.
async fn postgres_target(harness: &Harness, pg: &PostgresEnv) -> String {
    let role = format!("kt_ctl_{}", suffix());
    exec(
        pg,
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'bootstrap-{role}'"),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(harness.client.clone(), NAMESPACE);
    let admin = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": admin_secret_name(&role)},
        "stringData": {"username": pg.user, "password": pg.password}});
    let admin: Secret = serde_json::from_value(json!({
        "metadata": admin["metadata"],
        "data": {
            "username": base64(&pg.user),
            "password": base64(&pg.password),
        }
    }))
    .unwrap();
    secrets.create(&Default::default(), &admin).await.unwrap();
    role
}

/// A valid Secret name for the role's admin Secret (role names have '_', Secret names may not).
fn admin_secret_name(role: &str) -> String {
    format!("admin-{}", role.replace('_', "-"))
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn managed_secret(name: &str, pg: &PostgresEnv, role: &str, extra: Value) -> Value {
    let mut object = json!({
        "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "rotator": {"postgres": {
                "host": pg.host, "port": pg.port, "database": pg.database, "sslMode": "prefer",
                "adminSecretRef": {"name": admin_secret_name(role)},
                "role": role, "strategy": "SingleUser"}},
            "rotation": {"every": "1m"},
            "expiry": {"ttl": "1h"},
        }
    });
    merge(&mut object["spec"], &extra);
    object
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn api(harness: &Harness) -> Api<DynamicObject> {
    Api::namespaced_with(
        harness.client.clone(),
        NAMESPACE,
        &Context::managed_secret_resource(),
    )
}

async fn apply(harness: &Harness, object: &Value) {
    let name = object["metadata"]["name"].as_str().unwrap();
    api(harness)
        .patch(name, &PatchParams::apply("test"), &Patch::Apply(object))
        .await
        .unwrap();
}

async fn wait_for<T>(
    harness: &Harness,
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            let objects: Vec<Value> = api(harness)
                .list(&Default::default())
                .await
                .map(|list| {
                    list.items
                        .into_iter()
                        .map(|item| serde_json::to_value(item).unwrap())
                        .collect()
                })
                .unwrap_or_default();
            let requests: Vec<String> = harness
                .handle
                .state
                .faults
                .requests()
                .iter()
                .rev()
                .take(40)
                .map(|request| {
                    format!(
                        "{} {} {}",
                        request["method"], request["path"], request["status"]
                    )
                })
                .collect();
            panic!(
                "timed out waiting for {what}\nobjects: {objects:#?}\nlast requests (newest first): {requests:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(harness: &Harness, name: &str) -> Value {
    api(harness)
        .get(name)
        .await
        .map(|object| object.data["status"].clone())
        .unwrap_or(Value::Null)
}

async fn published(harness: &Harness, name: &str) -> Option<BTreeMap<String, String>> {
    let secrets: Api<Secret> = Api::namespaced(harness.client.clone(), NAMESPACE);
    let secret = secrets.get_opt(name).await.unwrap()?;
    Some(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, String::from_utf8(value.0).unwrap()))
            .collect(),
    )
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == type_)
}

#[tokio::test]
async fn postgres_credential_rotates_on_schedule_and_is_published() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let harness = harness().await;
    let role = postgres_target(&harness, &pg).await;
    apply(
        &harness,
        &managed_secret(
            "orders",
            &pg,
            &role,
            json!({"secretName": "orders-credentials"}),
        ),
    )
    .await;

    // First issuance, then at least one scheduled rotation 6s later.
    let first = wait_for(
        &harness,
        "the first credential",
        Duration::from_secs(30),
        async || {
            let status = status(&harness, "orders").await;
            (status["revision"].as_u64() >= Some(1)).then_some(status)
        },
    )
    .await;
    assert_eq!(
        condition(&first, "Ready").unwrap()["status"],
        "True",
        "{first:#}"
    );
    let secret = published(&harness, "orders-credentials").await.unwrap();
    assert_eq!(secret["username"], role);
    assert!(
        can_log_in(&pg, &role, &secret["password"]).await,
        "published password works"
    );
    assert!(
        !can_log_in(&pg, &role, &format!("bootstrap-{role}")).await,
        "bootstrap password retired"
    );
    assert_eq!(first["secretName"], "orders-credentials");
    assert!(
        first["preview"]["changes"]
            .as_array()
            .is_some_and(|changes| !changes.is_empty()),
        "{first:#}"
    );

    // A manual request rotates at once.
    let request = json!({"metadata": {"annotations": {"keyturn.dev/rotate-requested-at": "2026-11-22T00:00:00Z"}}});
    api(&harness)
        .patch("orders", &PatchParams::default(), &Patch::Merge(&request))
        .await
        .unwrap();
    let second = wait_for(
        &harness,
        "the manual rotation",
        Duration::from_secs(30),
        async || {
            let status = status(&harness, "orders").await;
            (status["revision"].as_u64() >= Some(2)).then_some(status)
        },
    )
    .await;
    assert_eq!(second["lastFailure"], Value::Null, "{second:#}");
    assert_eq!(second["handledRotateRequest"], "2026-11-22T00:00:00Z");
    let rotated = published(&harness, "orders-credentials").await.unwrap();
    assert_ne!(rotated["password"], secret["password"]);
    assert!(can_log_in(&pg, &role, &rotated["password"]).await);
    assert!(
        !can_log_in(&pg, &role, &secret["password"]).await,
        "SingleUser: the old password stops working"
    );

    // Then the schedule: one minute after the last rotation, and only one.
    let third = wait_for(
        &harness,
        "the scheduled rotation",
        Duration::from_secs(90),
        async || {
            let status = status(&harness, "orders").await;
            (status["revision"].as_u64() >= Some(3)).then_some(status)
        },
    )
    .await;
    assert_eq!(third["revision"], 3, "{third:#}");
    let scheduled = published(&harness, "orders-credentials").await.unwrap();
    assert!(can_log_in(&pg, &role, &scheduled["password"]).await);

    // The staging Secret and the published one are owned by the ManagedSecret.
    let secrets: Api<Secret> = Api::namespaced(harness.client.clone(), NAMESPACE);
    let staging = secrets.get("orders-keyturn-staging").await.unwrap();
    assert_eq!(staging.metadata.owner_references.unwrap()[0].name, "orders");
}

#[tokio::test]
async fn invalid_spec_stalls_with_the_field_named_and_no_hot_loop() {
    let harness = harness().await;
    let object = json!({
        "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
        "metadata": {"name": "broken", "namespace": NAMESPACE},
        "spec": {"rotator": {"postgres": {"host": "db", "adminSecretRef": {"name": "a"}, "role": "app"}},
                 "rotation": {"every": "banana"}}
    });
    apply(&harness, &object).await;
    let stalled = wait_for(&harness, "Stalled", Duration::from_secs(20), async || {
        let status = status(&harness, "broken").await;
        condition(&status, "Stalled").cloned()
    })
    .await;
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "InvalidSpec");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("spec.rotation.every"),
        "{stalled}"
    );

    // Settled: no further writes to the object.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = || {
        harness
            .handle
            .state
            .faults
            .requests()
            .into_iter()
            .filter(|request| {
                request["method"] != "GET"
                    && request["path"]
                        .as_str()
                        .unwrap_or("")
                        .contains("managedsecrets/broken")
            })
            .count()
    };
    let settled = writes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        writes(),
        settled,
        "the controller keeps writing a stalled object"
    );
    assert!(settled <= 3, "{settled} writes for one invalid object");
}

#[tokio::test]
async fn deletion_with_revoke_retires_the_credential() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let harness = harness().await;
    let role = postgres_target(&harness, &pg).await;
    let object = managed_secret(
        "revoked",
        &pg,
        &role,
        json!({"deletionPolicy": "Revoke", "rotation": {"every": "1h"}}),
    );
    apply(&harness, &object).await;
    wait_for(
        &harness,
        "the first credential",
        Duration::from_secs(30),
        async || (status(&harness, "revoked").await["revision"].as_u64() >= Some(1)).then_some(()),
    )
    .await;
    let secret = published(&harness, "revoked").await.unwrap();
    assert!(can_log_in(&pg, &role, &secret["password"]).await);

    api(&harness)
        .delete("revoked", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        &harness,
        "the ManagedSecret to go",
        Duration::from_secs(30),
        async || {
            api(&harness)
                .get_opt("revoked")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        !can_log_in(&pg, &role, &secret["password"]).await,
        "Revoke retires the credential"
    );
    let secrets: Api<Secret> = Api::namespaced(harness.client.clone(), NAMESPACE);
    assert!(
        secrets
            .get_opt("revoked-keyturn-staging")
            .await
            .unwrap()
            .is_none()
    );
}

/// A Deployment reading the published Secret through envFrom, rolled out (the stand-in runs no
/// deployment controller, so the test plays its part by writing status).
async fn create_consumer(harness: &Harness, name: &str, secret: &str) {
    let deployments: Api<Deployment> = Api::namespaced(harness.client.clone(), NAMESPACE);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                                        "envFrom": [{"secretRef": {"name": secret}}]}]}}}
    }))
    .unwrap();
    deployments
        .create(&Default::default(), &deployment)
        .await
        .unwrap();
    finish_rollout(harness, name).await;
}

async fn finish_rollout(harness: &Harness, name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(harness.client.clone(), NAMESPACE);
    let generation = deployments
        .get(name)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap_or(1);
    let status = json!({"status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
                                   "readyReplicas": 1, "availableReplicas": 1}});
    deployments
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn fail_rollout(harness: &Harness, name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(harness.client.clone(), NAMESPACE);
    let generation = deployments
        .get(name)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap_or(1);
    let status = json!({"status": {"observedGeneration": generation, "replicas": 2, "updatedReplicas": 1,
        "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet has timed out progressing"}]}});
    deployments
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn request_rotation(harness: &Harness, name: &str, value: &str) {
    let request = json!({"metadata": {"annotations": {"keyturn.dev/rotate-requested-at": value}}});
    api(harness)
        .patch(name, &PatchParams::default(), &Patch::Merge(&request))
        .await
        .unwrap();
}

async fn in_flight_step(harness: &Harness, name: &str) -> Option<String> {
    status(harness, name).await["inFlight"]["step"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn previous_credential_stays_valid_until_consumers_roll_out() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let harness = harness().await;
    let role = postgres_target(&harness, &pg).await;
    create_consumer(&harness, "orders-api", "orders").await;
    let object = managed_secret(
        "orders",
        &pg,
        &role,
        json!({"rotator": {"postgres": {"strategy": "AlternatingUsers"}},
               "rotation": {"every": "1h"},
               "consumers": {"restart": [{"kind": "Deployment", "name": "orders-api"}], "rolloutTimeout": "10m"}}),
    );
    apply(&harness, &object).await;

    // First issuance waits for the consumer's rollout like any other rotation.
    wait_for(
        &harness,
        "the first rollout wait",
        Duration::from_secs(30),
        async || {
            (in_flight_step(&harness, "orders").await.as_deref() == Some("AwaitRollout"))
                .then_some(())
        },
    )
    .await;
    finish_rollout(&harness, "orders-api").await;
    wait_for(
        &harness,
        "revision 1",
        Duration::from_secs(30),
        async || (status(&harness, "orders").await["revision"] == 1).then_some(()),
    )
    .await;
    let first = published(&harness, "orders").await.unwrap();

    // Second rotation: the other role gets the new password; the first keeps working until the
    // restarted Deployment has rolled out.
    request_rotation(&harness, "orders", "second").await;
    let waiting = wait_for(
        &harness,
        "the second rollout wait",
        Duration::from_secs(30),
        async || {
            let status = status(&harness, "orders").await;
            (status["inFlight"]["step"] == "AwaitRollout").then_some(status)
        },
    )
    .await;
    assert_eq!(
        condition(&waiting, "Rotating").unwrap()["status"],
        "True",
        "{waiting:#}"
    );
    assert_eq!(waiting["consumers"][0]["name"], "orders-api", "{waiting:#}");
    let second = published(&harness, "orders").await.unwrap();
    assert_ne!(
        second["username"], first["username"],
        "AlternatingUsers switches roles"
    );
    assert!(can_log_in(&pg, &second["username"], &second["password"]).await);
    assert!(
        can_log_in(&pg, &first["username"], &first["password"]).await,
        "the previous credential must stay valid while the consumer rolls out"
    );
    let deployments: Api<Deployment> = Api::namespaced(harness.client.clone(), NAMESPACE);
    let annotations = deployments
        .get("orders-api")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    let token = waiting["inFlight"]["rotationId"].as_str().unwrap();
    assert!(
        annotations["keyturn.dev/restarted-for"].contains(token),
        "{annotations:?}"
    );

    finish_rollout(&harness, "orders-api").await;
    wait_for(
        &harness,
        "revision 2",
        Duration::from_secs(30),
        async || (status(&harness, "orders").await["revision"] == 2).then_some(()),
    )
    .await;
    assert!(
        !can_log_in(&pg, &first["username"], &first["password"]).await,
        "retired after the rollout"
    );
    assert!(can_log_in(&pg, &second["username"], &second["password"]).await);

    // A failed rollout keeps the previous credential and says which workload failed.
    request_rotation(&harness, "orders", "third").await;
    wait_for(
        &harness,
        "the third rollout wait",
        Duration::from_secs(30),
        async || {
            (in_flight_step(&harness, "orders").await.as_deref() == Some("AwaitRollout"))
                .then_some(())
        },
    )
    .await;
    fail_rollout(&harness, "orders-api").await;
    let degraded = wait_for(&harness, "Degraded", Duration::from_secs(30), async || {
        let status = status(&harness, "orders").await;
        condition(&status, "Degraded")
            .filter(|degraded| degraded["status"] == "True")
            .cloned()
    })
    .await;
    assert!(
        degraded["message"].as_str().unwrap().contains("orders-api"),
        "{degraded}"
    );
    assert!(
        can_log_in(&pg, &second["username"], &second["password"]).await,
        "a failed rollout keeps the previous credential valid"
    );
    assert_eq!(status(&harness, "orders").await["revision"], 2);
}

#[tokio::test]
async fn paused_holds_rotation_and_an_invalid_object_can_still_be_deleted() {
    let harness = harness().await;
    // Paused from the start: nothing is issued, the hold is visible, and nothing is written to
    // any backend (the host does not even exist).
    let paused = json!({
        "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
        "metadata": {"name": "held", "namespace": NAMESPACE},
        "spec": {"rotator": {"postgres": {"host": "db.invalid", "adminSecretRef": {"name": "none"}, "role": "app"}},
                 "rotation": {"every": "1h", "paused": true}, "expiry": {"ttl": "24h"}}
    });
    apply(&harness, &paused).await;
    let held = wait_for(&harness, "Paused", Duration::from_secs(20), async || {
        let status = status(&harness, "held").await;
        let is_paused =
            condition(&status, "Paused").is_some_and(|paused| paused["status"] == "True");
        is_paused.then_some(status)
    })
    .await;
    assert_eq!(held["revision"].as_u64().unwrap_or(0), 0, "{held:#}");
    assert!(
        held["lastFailure"].is_null(),
        "a paused object touches no backend: {held:#}"
    );
    assert!(published(&harness, "held").await.is_none());

    // An object whose spec cannot be acted on still goes away when deleted (the finalizer
    // does not wait for a backend it cannot know).
    let broken = json!({
        "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
        "metadata": {"name": "broken-delete", "namespace": NAMESPACE},
        "spec": {"rotator": {"postgres": {"host": "db", "adminSecretRef": {"name": "a"}, "role": "app"}},
                 "rotation": {"every": "soon"}, "deletionPolicy": "Revoke"}
    });
    apply(&harness, &broken).await;
    wait_for(
        &harness,
        "the finalizer",
        Duration::from_secs(20),
        async || {
            let object = api(&harness).get("broken-delete").await.ok()?;
            object
                .metadata
                .finalizers
                .filter(|finalizers| !finalizers.is_empty())
                .map(|_| ())
        },
    )
    .await;
    api(&harness)
        .delete("broken-delete", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        &harness,
        "the invalid object to go",
        Duration::from_secs(20),
        async || {
            api(&harness)
                .get_opt("broken-delete")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

fn access_object(name: &str, access: Value) -> Value {
    // Paused and pointing at a host that does not exist: access must not wait for a credential.
    let mut object = json!({
        "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"rotator": {"postgres": {"host": "db.invalid", "adminSecretRef": {"name": "none"}, "role": "app"}},
                 "rotation": {"every": "1h", "paused": true}, "expiry": {"ttl": "24h"},
                 "secretName": format!("{name}-credentials")}
    });
    if !access.is_null() {
        object["spec"]["access"] = access;
    }
    object
}

fn rbac_api(harness: &Harness, plural: &str, kind: &str, namespaced: bool) -> Api<DynamicObject> {
    let resource = kube::discovery::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
        plural,
    );
    if namespaced {
        Api::namespaced_with(harness.client.clone(), NAMESPACE, &resource)
    } else {
        Api::all_with(harness.client.clone(), &resource)
    }
}

async fn binding_subjects(harness: &Harness, name: &str) -> Option<Vec<String>> {
    let binding = rbac_api(harness, "rolebindings", "RoleBinding", true)
        .get_opt(name)
        .await
        .unwrap()?;
    Some(
        binding.data["subjects"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|subject| {
                format!(
                    "{}/{}",
                    subject["kind"].as_str().unwrap(),
                    subject["name"].as_str().unwrap()
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn access_bindings_follow_the_spec_and_broader_grants_are_drift() {
    let harness = harness().await;
    apply(
        &harness,
        &access_object("billing", json!({"serviceAccounts": ["api", "worker"]})),
    )
    .await;
    let subjects = wait_for(
        &harness,
        "the RoleBinding",
        Duration::from_secs(20),
        async || binding_subjects(&harness, "billing-keyturn-read").await,
    )
    .await;
    assert_eq!(subjects, ["ServiceAccount/api", "ServiceAccount/worker"]);
    let role = rbac_api(&harness, "roles", "Role", true)
        .get("billing-keyturn-read")
        .await
        .unwrap();
    assert_eq!(
        role.data["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["billing-credentials"], "verbs": ["get"]}])
    );
    assert_eq!(role.metadata.owner_references.unwrap()[0].name, "billing");
    let clean = wait_for(
        &harness,
        "AccessDrift False",
        Duration::from_secs(20),
        async || {
            let status = status(&harness, "billing").await;
            condition(&status, "AccessDrift")
                .is_some_and(|drift| drift["status"] == "False")
                .then_some(status)
        },
    )
    .await;
    assert_eq!(
        condition(&clean, "AccessDrift").unwrap()["reason"],
        "NoBroaderAccess"
    );
    assert_eq!(
        clean["access"]["roleBinding"], "billing-keyturn-read",
        "{clean:#}"
    );
    assert_eq!(clean["access"]["serviceAccounts"], json!(["api", "worker"]));
    assert_eq!(
        clean["revision"].as_u64().unwrap_or(0),
        0,
        "paused: nothing issued"
    );

    // Steady state: no writes of any kind for a few seconds.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = || {
        harness
            .handle
            .state
            .faults
            .requests()
            .into_iter()
            .filter(|request| request["method"] != "GET")
            .count()
    };
    let settled = writes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        writes(),
        settled,
        "the controller keeps writing in a steady state"
    );

    // A service account removed from the spec loses access.
    apply(
        &harness,
        &access_object("billing", json!({"serviceAccounts": ["api"]})),
    )
    .await;
    wait_for(
        &harness,
        "the subject to go",
        Duration::from_secs(20),
        async || {
            let subjects = binding_subjects(&harness, "billing-keyturn-read").await?;
            (subjects == ["ServiceAccount/api"]).then_some(())
        },
    )
    .await;

    // A namespace-wide Secret reader is drift until it is deleted.
    rbac_api(&harness, "roles", "Role", true)
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "secret-reader", "namespace": NAMESPACE},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    rbac_api(&harness, "rolebindings", "RoleBinding", true)
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "batch-reads-secrets", "namespace": NAMESPACE},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "batch", "namespace": NAMESPACE},
                             {"kind": "ServiceAccount", "name": "api", "namespace": NAMESPACE}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let drifted = wait_for(
        &harness,
        "AccessDrift True",
        Duration::from_secs(20),
        async || {
            let status = status(&harness, "billing").await;
            condition(&status, "AccessDrift")
                .is_some_and(|drift| drift["status"] == "True")
                .then_some(status)
        },
    )
    .await;
    let drift_condition = condition(&drifted, "AccessDrift").unwrap();
    assert_eq!(drift_condition["reason"], "BroaderSecretAccess");
    assert!(
        drift_condition["message"]
            .as_str()
            .unwrap()
            .contains("RoleBinding/batch-reads-secrets"),
        "{drift_condition}"
    );
    assert_eq!(
        drifted["access"]["drift"],
        json!([{"binding": "RoleBinding/batch-reads-secrets", "role": "Role/secret-reader",
                "subjects": ["ServiceAccount/default/batch"], "verbs": ["get", "list"]}])
    );
    rbac_api(&harness, "rolebindings", "RoleBinding", true)
        .delete("batch-reads-secrets", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        &harness,
        "the drift to clear",
        Duration::from_secs(20),
        async || {
            let status = status(&harness, "billing").await;
            condition(&status, "AccessDrift")
                .is_some_and(|drift| drift["status"] == "False")
                .then_some(())
        },
    )
    .await;

    // Without spec.access, keyturn's Role and RoleBinding go, and so does the condition.
    apply(&harness, &access_object("billing", Value::Null)).await;
    wait_for(
        &harness,
        "the bindings to go",
        Duration::from_secs(20),
        async || {
            let role = rbac_api(&harness, "roles", "Role", true)
                .get_opt("billing-keyturn-read")
                .await
                .unwrap();
            let binding = binding_subjects(&harness, "billing-keyturn-read").await;
            let status = status(&harness, "billing").await;
            (role.is_none()
                && binding.is_none()
                && status["access"].is_null()
                && condition(&status, "AccessDrift").is_none())
            .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_invalid_spec_gets_no_access_bindings() {
    let harness = harness().await;
    let mut object = access_object("invalid-access", json!({"serviceAccounts": ["api"]}));
    object["spec"]["rotation"]["every"] = json!("banana");
    apply(&harness, &object).await;
    wait_for(&harness, "Stalled", Duration::from_secs(20), async || {
        condition(&status(&harness, "invalid-access").await, "Stalled").map(|_| ())
    })
    .await;
    assert!(
        rbac_api(&harness, "roles", "Role", true)
            .get_opt("invalid-access-keyturn-read")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        binding_subjects(&harness, "invalid-access-keyturn-read")
            .await
            .is_none()
    );
}

/// A namespace-scoped install may not list ClusterRoleBindings: access still works, the drift
/// check covers the namespace, and status says the cluster-wide bindings went unchecked.
#[tokio::test]
async fn a_namespace_scoped_operator_reports_cluster_bindings_as_unchecked() {
    let harness = harness().await;
    let forbid = |path: &str| {
        let rule = json!({"path": path, "method": "GET", "status": 403});
        http::Request::post("/_standin/faults")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&rule).unwrap())
            .unwrap()
    };
    for path in [
        "^/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "^/apis/rbac.authorization.k8s.io/v1/clusterroles",
    ] {
        harness.client.request_text(forbid(path)).await.unwrap();
    }
    apply(
        &harness,
        &access_object("scoped", json!({"serviceAccounts": ["api"]})),
    )
    .await;
    let status = wait_for(
        &harness,
        "access status with the cluster scope unchecked",
        Duration::from_secs(20),
        async || {
            let status = status(&harness, "scoped").await;
            (status["access"]["clusterBindingsUnchecked"] == true).then_some(status)
        },
    )
    .await;
    assert_eq!(status["access"]["roleBinding"], "scoped-keyturn-read");
    let drift = condition(&status, "AccessDrift").expect("an AccessDrift condition");
    assert_eq!(drift["status"], "False", "{drift}");
    assert!(
        binding_subjects(&harness, "scoped-keyturn-read")
            .await
            .is_some(),
        "the binding is made all the same"
    );
}

/// Fail closed: while the audit store refuses appends, a requested rotation does not run a
/// single step (the credential is untouched, nothing is staged) and `AuditUnavailable` says
/// why; once the store is back, the rotation runs and the condition clears.
#[tokio::test]
async fn no_step_runs_while_the_audit_store_refuses_appends() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let schema = format!("audit_fail_closed_{}", suffix());
    exec(&pg, &format!("CREATE SCHEMA {schema}")).await;
    let separator = if pg.url.contains('?') { '&' } else { '?' };
    let location = format!("{}{separator}options[search_path]={schema}", pg.url);
    // The schema's owner migrates; the operator does not (its role may only append and read).
    let owner = keyturn_audit::AuditStore::connect_postgres(&location)
        .await
        .unwrap();
    owner.migrate().await.unwrap();
    owner.close().await;
    let harness = harness_with_audit(Some(location)).await;
    let role = postgres_target(&harness, &pg).await;
    apply(
        &harness,
        &managed_secret("audited", &pg, &role, json!({"rotation": {"every": "1h"}})),
    )
    .await;
    wait_for(
        &harness,
        "revision 1",
        Duration::from_secs(30),
        async || (status(&harness, "audited").await["revision"] == 1).then_some(()),
    )
    .await;
    let secret_before = published(&harness, "audited").await.unwrap();
    let staging_before = staging_version(&harness).await;

    // The store goes away (the table is renamed by its owner): appends fail.
    exec(
        &pg,
        &format!("ALTER TABLE {schema}.audit_records RENAME TO audit_records_away"),
    )
    .await;
    request_rotation(&harness, "audited", "2026-11-22T01:00:00Z").await;
    let unavailable = wait_for(
        &harness,
        "AuditUnavailable True",
        Duration::from_secs(30),
        async || {
            let status = status(&harness, "audited").await;
            condition(&status, "AuditUnavailable")
                .is_some_and(|condition| condition["status"] == "True")
                .then_some(status)
        },
    )
    .await;
    assert_eq!(unavailable["revision"], 1, "{unavailable:#}");
    assert!(
        unavailable["inFlight"].is_null(),
        "no step started: {unavailable:#}"
    );
    assert_eq!(
        staging_version(&harness).await,
        staging_before,
        "nothing was staged"
    );
    assert_eq!(published(&harness, "audited").await.unwrap(), secret_before);
    assert!(
        can_log_in(&pg, &role, &secret_before["password"]).await,
        "the credential was not touched"
    );

    // The store is back: the rotation runs and the condition clears.
    exec(
        &pg,
        &format!("ALTER TABLE {schema}.audit_records_away RENAME TO audit_records"),
    )
    .await;
    let rotated = wait_for(
        &harness,
        "revision 2",
        Duration::from_secs(60),
        async || {
            let status = status(&harness, "audited").await;
            (status["revision"] == 2 && status["inFlight"].is_null()).then_some(status)
        },
    )
    .await;
    assert!(
        condition(&rotated, "AuditUnavailable")
            .is_none_or(|condition| condition["status"] == "False"),
        "{rotated:#}"
    );
    drop(harness);
    exec(&pg, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

/// The resourceVersion of ManagedSecret `audited`'s staging Secret, if it has one.
async fn staging_version(harness: &Harness) -> Option<String> {
    let secrets: Api<Secret> = Api::namespaced(harness.client.clone(), NAMESPACE);
    secrets
        .get_opt("audited-keyturn-staging")
        .await
        .unwrap()
        .and_then(|secret| secret.metadata.resource_version)
}
