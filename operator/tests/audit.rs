//! The audit commands and the checkpoint writer against a temporary SQLite store and the
//! Kubernetes API stand-in: checkpoints land in the ConfigMap, `audit verify` passes a good
//! store and names an edited record or the deleted newest records, and exports match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::DateTime;
use k8s_openapi::api::core::v1::ConfigMap;
use keyturn_apiserver::{Config, Handle, start};
use keyturn_audit::{AuditEntry, AuditStore, VerifyError};
use keyturn_operator::audit_checkpoints::{self, CONFIG_MAP_NAME, CheckpointRecord};
use keyturn_operator::audit_command::{self, VerifyOutcome};
use keyturn_operator::cli::ExportFormat;
use kube::Client;
use kube::api::Api;
use sqlx::{Connection, Executor};

const NAMESPACE: &str = "default";

fn entry(n: i64) -> AuditEntry {
    AuditEntry {
        time: DateTime::from_timestamp(1_700_000_000 + n * 60, 0).unwrap(),
        actor: "keyturn-operator".into(),
        action: "StepCompleted".into(),
        namespace: "payments".into(),
        managed_secret: "db-password".into(),
        rotation_id: Some(format!("kt-{n}")),
        step: if n % 2 == 0 {
            Some("Verify".into())
        } else {
            None
        },
        fingerprint: Some("sha256:ab12".into()),
        outcome: "Success".into(),
        details: format!("record {n}, \"quoted\""),
    }
}

struct Store {
    dir: tempfile::TempDir,
    store: AuditStore,
}

impl Store {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("audit.db")
    }

    fn location(&self) -> String {
        format!("sqlite:{}", self.path().display())
    }

    /// A raw connection to the file, like anyone who can write it, triggers dropped.
    async fn attacker(&self) -> sqlx::SqliteConnection {
        let mut connection = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(self.path()),
        )
        .await
        .unwrap();
        connection
            .execute("DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete;")
            .await
            .unwrap();
        connection
    }
}

async fn store_with(records: i64) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let store = AuditStore::open_sqlite(dir.path().join("audit.db"))
        .await
        .unwrap();
    let entries: Vec<AuditEntry> = (0..records).map(entry).collect();
    store.append_batch(&entries).await.unwrap();
    Store { dir, store }
}

async fn cluster() -> (Handle, Client) {
    let handle = start(Config::default()).await.unwrap();
    let client = Client::try_from(kube::Config::new(handle.url().parse().unwrap())).unwrap();
    (handle, client)
}

async fn verify(store: &Store, checkpoints: &[keyturn_audit::Checkpoint]) -> VerifyOutcome {
    let reader = audit_command::open_read_only(&store.location())
        .await
        .unwrap();
    let outcome = audit_command::verify_store(&reader, checkpoints)
        .await
        .unwrap();
    reader.close().await;
    outcome
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_writer_applies_the_head_to_the_config_map() {
    let (_handle, client) = cluster().await;
    let store = store_with(3).await;
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();

    let written = audit_checkpoints::write_once(&client, NAMESPACE, &store.store, now)
        .await
        .unwrap()
        .unwrap();
    let head = store.store.head().await.unwrap().unwrap();
    assert_eq!(written, CheckpointRecord::new(head, now));

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let config_map = api.get(CONFIG_MAP_NAME).await.unwrap();
    let managers: Vec<String> = config_map
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| entry.manager)
        .collect();
    assert_eq!(managers, vec![audit_checkpoints::FIELD_MANAGER.to_owned()]);
    let data = config_map.data.unwrap();
    let latest: CheckpointRecord = serde_json::from_str(&data["latest"]).unwrap();
    assert_eq!(latest.sequence, 3);
    assert_eq!(latest.hash, hex::encode(head.hash));
    assert_eq!(latest.time, now);
    let history: Vec<CheckpointRecord> = serde_json::from_str(&data["history"]).unwrap();
    assert_eq!(history, vec![latest.clone()]);

    // The head did not move: `latest` is refreshed, `history` unchanged.
    let later = DateTime::from_timestamp(1_800_000_300, 0).unwrap();
    audit_checkpoints::write_once(&client, NAMESPACE, &store.store, later)
        .await
        .unwrap();
    let data = api.get(CONFIG_MAP_NAME).await.unwrap().data.unwrap();
    let history: Vec<CheckpointRecord> = serde_json::from_str(&data["history"]).unwrap();
    assert_eq!(history, vec![latest.clone()]);

    // The head moved: appended to `history`.
    store
        .store
        .append_batch(&[entry(3), entry(4)])
        .await
        .unwrap();
    audit_checkpoints::write_once(&client, NAMESPACE, &store.store, later)
        .await
        .unwrap();
    let data = api.get(CONFIG_MAP_NAME).await.unwrap().data.unwrap();
    let history: Vec<CheckpointRecord> = serde_json::from_str(&data["history"]).unwrap();
    assert_eq!(
        history.iter().map(|c| c.sequence).collect::<Vec<_>>(),
        vec![3, 5]
    );
    let from_cluster = audit_checkpoints::read_from_cluster(&client, NAMESPACE)
        .await
        .unwrap();
    assert_eq!(from_cluster.iter().map(|c| c.sequence).max(), Some(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_store_writes_no_checkpoint() {
    let (_handle, client) = cluster().await;
    let store = store_with(0).await;
    let written =
        audit_checkpoints::write_once(&client, NAMESPACE, &store.store, chrono::Utc::now())
            .await
            .unwrap();
    assert_eq!(written, None);
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    assert!(api.get_opt(CONFIG_MAP_NAME).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_a_good_store_with_cluster_checkpoints() {
    let (_handle, client) = cluster().await;
    let store = store_with(6).await;
    audit_checkpoints::write_once(&client, NAMESPACE, &store.store, chrono::Utc::now())
        .await
        .unwrap();
    store.store.close().await;
    let checkpoints = audit_checkpoints::read_from_cluster(&client, NAMESPACE)
        .await
        .unwrap();
    let outcome = verify(&store, &checkpoints).await;
    let VerifyOutcome::Valid(summary) = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(summary.records, 6);
    assert_eq!(summary.head.unwrap().sequence, 6);
    let line = outcome.line();
    assert!(line.contains("6 records verified"), "{line}");
    assert!(line.contains("head sequence 6"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_an_edited_record() {
    let store = store_with(6).await;
    store.store.close().await;
    let mut attacker = store.attacker().await;
    attacker
        .execute("UPDATE audit_records SET outcome = 'Failure' WHERE sequence = 4")
        .await
        .unwrap();
    attacker.close().await.unwrap();
    let outcome = verify(&store, &[]).await;
    assert_eq!(
        outcome,
        VerifyOutcome::Invalid(VerifyError::HashMismatch { sequence: 4 })
    );
    assert!(
        outcome.line().starts_with("audit log INVALID at record 4:"),
        "{}",
        outcome.line()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_detects_records_deleted_after_a_cluster_checkpoint() {
    let (_handle, client) = cluster().await;
    let store = store_with(8).await;
    audit_checkpoints::write_once(&client, NAMESPACE, &store.store, chrono::Utc::now())
        .await
        .unwrap();
    store.store.close().await;
    let mut attacker = store.attacker().await;
    attacker
        .execute("DELETE FROM audit_records WHERE sequence > 5")
        .await
        .unwrap();
    attacker.close().await.unwrap();

    // Without the checkpoint, the shorter chain is consistent.
    assert!(matches!(verify(&store, &[]).await, VerifyOutcome::Valid(_)));
    let checkpoints = audit_checkpoints::read_from_cluster(&client, NAMESPACE)
        .await
        .unwrap();
    let outcome = verify(&store, &checkpoints).await;
    assert_eq!(
        outcome,
        VerifyOutcome::Invalid(VerifyError::Truncated {
            last: 5,
            checkpoint: 8
        })
    );
    assert!(
        outcome.line().contains("records 6..=8 are missing"),
        "{}",
        outcome.line()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_does_not_change_the_store() {
    let store = store_with(3).await;
    store.store.close().await;
    let before = std::fs::read(store.path()).unwrap();
    assert!(matches!(verify(&store, &[]).await, VerifyOutcome::Valid(_)));
    assert_eq!(std::fs::read(store.path()).unwrap(), before);
    // A missing store is an error, never a new empty one.
    let missing = store.dir.path().join("missing.db");
    assert!(
        audit_command::open_read_only(&format!("sqlite:{}", missing.display()))
            .await
            .is_err()
    );
    assert!(!missing.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn export_writes_the_time_range_as_jsonl_and_csv() {
    let store = store_with(4).await;
    let records = store.store.read_range(1, 10).await.unwrap();
    let hash = |sequence: usize| hex::encode(records[sequence - 1].hash);
    let previous = |sequence: usize| hex::encode(records[sequence - 1].previous_hash);
    // Records 2 and 3: times 1_700_000_060 and 1_700_000_120; `until` is exclusive.
    let since = DateTime::from_timestamp(1_700_000_060, 0);
    let until = DateTime::from_timestamp(1_700_000_180, 0);

    let mut jsonl = Vec::new();
    let count = audit_command::export(&store.store, since, until, ExportFormat::Jsonl, &mut jsonl)
        .await
        .unwrap();
    assert_eq!(count, 2);
    let expected_jsonl = format!(
        concat!(
            r#"{{"sequence":2,"time":"2023-11-14T22:14:20Z","actor":"keyturn-operator","action":"StepCompleted","namespace":"payments","managedSecret":"db-password","rotationId":"kt-1","step":null,"fingerprint":"sha256:ab12","outcome":"Success","details":"record 1, \"quoted\"","previousHash":"{}","hash":"{}"}}"#,
            "\n",
            r#"{{"sequence":3,"time":"2023-11-14T22:15:20Z","actor":"keyturn-operator","action":"StepCompleted","namespace":"payments","managedSecret":"db-password","rotationId":"kt-2","step":"Verify","fingerprint":"sha256:ab12","outcome":"Success","details":"record 2, \"quoted\"","previousHash":"{}","hash":"{}"}}"#,
            "\n"
        ),
        previous(2),
        hash(2),
        previous(3),
        hash(3)
    );
    assert_eq!(String::from_utf8(jsonl).unwrap(), expected_jsonl);

    let mut csv = Vec::new();
    audit_command::export(&store.store, since, until, ExportFormat::Csv, &mut csv)
        .await
        .unwrap();
    let expected_csv = format!(
        "sequence,time,actor,action,namespace,managedSecret,rotationId,step,fingerprint,outcome,details,previousHash,hash\r\n\
         2,2023-11-14T22:14:20Z,keyturn-operator,StepCompleted,payments,db-password,kt-1,,sha256:ab12,Success,\"record 1, \"\"quoted\"\"\",{},{}\r\n\
         3,2023-11-14T22:15:20Z,keyturn-operator,StepCompleted,payments,db-password,kt-2,Verify,sha256:ab12,Success,\"record 2, \"\"quoted\"\"\",{},{}\r\n",
        previous(2),
        hash(2),
        previous(3),
        hash(3)
    );
    assert_eq!(String::from_utf8(csv).unwrap(), expected_csv);

    // No range: everything.
    let mut all = Vec::new();
    let count = audit_command::export(&store.store, None, None, ExportFormat::Jsonl, &mut all)
        .await
        .unwrap();
    assert_eq!(count, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_loop_writes_at_once_and_stops_on_request() {
    let (_handle, client) = cluster().await;
    let store = store_with(2).await;
    let (stop_sender, mut stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(audit_checkpoints::run(
        client.clone(),
        NAMESPACE.to_owned(),
        store.store.clone(),
        std::time::Duration::from_millis(50),
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        },
    ));
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let mut sequence = None;
    for _ in 0..100 {
        store.store.append_batch(&[entry(9)]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if let Some(data) = api
            .get_opt(CONFIG_MAP_NAME)
            .await
            .unwrap()
            .and_then(|c| c.data)
        {
            let history: Vec<CheckpointRecord> = serde_json::from_str(&data["history"]).unwrap();
            if history.len() >= 2 {
                sequence = history.last().map(|c| c.sequence);
                break;
            }
        }
    }
    assert!(
        sequence.is_some_and(|sequence| sequence > 2),
        "{sequence:?}"
    );
    stop_sender.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("the loop stops when asked")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_store_is_verified_in_read_only_sessions() {
    let Some(env) = keyturn_testenv::postgres() else {
        return;
    };
    let schema = format!("audit_cmd_{}", std::process::id());
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.url)
        .await
        .unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        )))
        .await
        .unwrap();
    let separator = if env.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}options[search_path]={schema}", env.url);
    let writer = AuditStore::connect_postgres(&url).await.unwrap();
    writer.migrate().await.unwrap();
    writer
        .append_batch(&(0..3).map(entry).collect::<Vec<_>>())
        .await
        .unwrap();
    writer.close().await;

    let reader = audit_command::open_read_only(&url).await.unwrap();
    let outcome = audit_command::verify_store(&reader, &[]).await.unwrap();
    assert!(
        matches!(&outcome, VerifyOutcome::Valid(summary) if summary.records == 3),
        "{outcome:?}"
    );
    // Even the superuser's session cannot write through the verifier's store.
    let error = reader.append_batch(&[entry(3)]).await.unwrap_err();
    assert!(error.to_string().contains("read-only"), "{error}");
    reader.close().await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
    admin.close().await;
}
