//! Reads reach status: the controller in-process against the Kubernetes API stand-in and the
//! real PostgreSQL, the managed-Secret index fed by its metadata watch of the stand-in, read
//! records appended the way the webhook appends them, and the leader's summary loop. A read by
//! a listed service account shows in `status.reads` without `UnexpectedReader`; a read by an
//! unlisted one sets it (condition and metric).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Secret;
use keyturn_apiserver::{Config, start};
use keyturn_audit::AuditStore;
use keyturn_operator::controller::audit_sink::AuditSink;
use keyturn_operator::controller::{self, Context};
use keyturn_operator::metrics::Metrics;
use keyturn_operator::reads::event::parse_event_list;
use keyturn_operator::reads::index::{self, SecretIndex};
use keyturn_operator::reads::record::records_for;
use keyturn_operator::reads::summary::{self, ReadSummaries};
use keyturn_rotators::RotatorRegistry;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const NAMESPACE: &str = "default";
const KEYTURN: &str = "system:serviceaccount:keyturn-system:keyturn-operator";

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read_event(audit_id: &str, user: &str, secret: &str) -> String {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    format!(
        r#"{{"auditID":"{audit_id}","stage":"ResponseComplete","verb":"get",
        "user":{{"username":"{user}"}},"sourceIPs":["10.0.0.9"],
        "objectRef":{{"resource":"secrets","namespace":"{NAMESPACE}","name":"{secret}","apiVersion":"v1"}},
        "responseStatus":{{"code":200}},"requestReceivedTimestamp":"{now}",
        "annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
    )
}

/// What the webhook does with an authenticated batch.
async fn record_reads(store: &AuditStore, index: &SecretIndex, events: &[String]) {
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        events.join(",")
    );
    let events = parse_event_list(body.as_bytes()).unwrap();
    let batch = records_for(&events, index, Utc::now());
    let appended = store.append_batch_once(&batch.keyed).await.unwrap();
    assert_eq!(appended.records.len(), events.len());
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == type_)
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_show_in_status_and_an_unlisted_reader_sets_unexpected_reader() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
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

    let role = format!("kt_reads_{:08x}", rand::random::<u32>());
    let mut connection = PgConnection::connect(&pg.url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'bootstrap-{role}'"
    )))
    .execute(&mut connection)
    .await
    .unwrap();
    connection.close().await.ok();
    let admin_name = format!("admin-{}", role.replace('_', "-"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let base64 = |text: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    };
    let admin: Secret = serde_json::from_value(json!({
        "metadata": {"name": admin_name},
        "data": {"username": base64(&pg.user), "password": base64(&pg.password)},
    }))
    .unwrap();
    secrets.create(&Default::default(), &admin).await.unwrap();

    let audit_dir = tempfile::tempdir().unwrap();
    let sink = AuditSink::open(&format!(
        "sqlite:{}",
        audit_dir.path().join("audit.db").display()
    ))
    .await
    .unwrap();
    let store = sink.clone();
    let metrics = Arc::new(Metrics::new());
    let summaries = Arc::new(ReadSummaries::new(Some(KEYTURN.to_owned())));
    let context = Arc::new(
        Context::new(
            client.clone(),
            RotatorRegistry::new(),
            AuditSink::new(sink),
            metrics.clone(),
            "test",
            None,
        )
        .with_reads(summaries.clone()),
    );
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let triggers = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|object| (object, receiver))
    });
    let controller = tokio::spawn(async move {
        controller::run_with_triggers(
            context,
            Some(NAMESPACE),
            4,
            triggers,
            std::future::pending(),
        )
        .await;
    });
    let secret_index = SecretIndex::default();
    let index_task = tokio::spawn(index::run(
        client.clone(),
        Some(NAMESPACE.to_owned()),
        secret_index.clone(),
    ));
    let summary_task = tokio::spawn(summary::run(
        summaries,
        store.clone(),
        Duration::from_millis(200),
        sender,
    ));

    let managed_secrets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &Context::managed_secret_resource(),
    );
    let object = json!({
        "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
        "metadata": {"name": "orders", "namespace": NAMESPACE},
        "spec": {
            "secretName": "orders-credentials",
            "rotator": {"postgres": {
                "host": pg.host, "port": pg.port, "database": pg.database, "sslMode": "prefer",
                "adminSecretRef": {"name": admin_name},
                "role": role, "strategy": "SingleUser"}},
            "rotation": {"every": "720h"},
            "expiry": {"ttl": "2160h"},
            "access": {"serviceAccounts": ["orders-api"]},
        }
    });
    managed_secrets
        .patch(
            "orders",
            &PatchParams::apply("test"),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();
    let status = async || {
        managed_secrets
            .get("orders")
            .await
            .map(|object| object.data["status"].clone())
            .unwrap_or(Value::Null)
    };
    wait_for("the published Secret in the index", async || {
        let index = secret_index.clone();
        (!index
            .in_scope(&keyturn_operator::reads::event::Scope::Object {
                namespace: NAMESPACE,
                name: "orders-credentials",
            })
            .is_empty())
        .then_some(())
    })
    .await;

    // Expected readers: the listed service account, a kubelet, keyturn itself.
    let listed = format!("system:serviceaccount:{NAMESPACE}:orders-api");
    record_reads(
        &store,
        &secret_index,
        &[
            read_event("r-1", "system:node:worker-1", "orders-credentials"),
            read_event("r-2", KEYTURN, "orders-credentials"),
            read_event("r-3", &listed, "orders-credentials"),
        ],
    )
    .await;
    let expected = wait_for("status.reads with the listed reader", async || {
        let status = status().await;
        (status["reads"]["lastReadBy"]["user"] == listed.as_str()).then_some(status)
    })
    .await;
    assert_eq!(expected["reads"]["readsLast24h"], 3);
    assert!(expected["reads"]["unexpectedReaders"].is_null());
    let quiet = condition(&expected, "UnexpectedReader").expect("the condition is set");
    assert_eq!(quiet["status"], "False");
    assert_eq!(quiet["reason"], "OnlyExpectedReaders");

    let unlisted = format!("system:serviceaccount:{NAMESPACE}:debug-shell");
    record_reads(
        &store,
        &secret_index,
        &[read_event("r-4", &unlisted, "orders-credentials")],
    )
    .await;
    let flagged = wait_for("UnexpectedReader True", async || {
        let status = status().await;
        condition(&status, "UnexpectedReader")
            .is_some_and(|condition| condition["status"] == "True")
            .then_some(status)
    })
    .await;
    assert_eq!(flagged["reads"]["unexpectedReaders"], json!([unlisted]));
    assert_eq!(flagged["reads"]["readsLast24h"], 4);
    assert_eq!(flagged["reads"]["lastReadBy"]["user"], unlisted.as_str());
    let set = condition(&flagged, "UnexpectedReader").unwrap();
    assert_eq!(set["reason"], "UnexpectedReader");
    assert!(set["message"].as_str().unwrap().contains(&unlisted));
    assert!(
        metrics.encode().contains(&format!(
            "keyturn_unexpected_readers{{namespace=\"{NAMESPACE}\",name=\"orders\"}} 1"
        )),
        "{}",
        metrics.encode()
    );
    // The rest of status is still the controller's: the credential was issued.
    assert!(flagged["revision"].as_u64() >= Some(1));

    // Listing the reader in spec.access clears the condition at the next reconcile.
    let mut allowed = object.clone();
    allowed["spec"]["access"]["serviceAccounts"] = json!(["orders-api", "debug-shell"]);
    managed_secrets
        .patch(
            "orders",
            &PatchParams::apply("test"),
            &Patch::Apply(&allowed),
        )
        .await
        .unwrap();
    wait_for(
        "UnexpectedReader False after the spec lists the reader",
        async || {
            let status = status().await;
            condition(&status, "UnexpectedReader")
                .is_some_and(|condition| condition["status"] == "False")
                .then_some(())
        },
    )
    .await;
    assert!(!metrics.encode().contains("keyturn_unexpected_readers{"));

    controller.abort();
    index_task.abort();
    summary_task.abort();
}
