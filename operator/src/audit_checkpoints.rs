//! Checkpoints of the audit chain's head kept outside the store: while leading, the operator
//! logs the head and applies it to the ConfigMap `keyturn-audit-checkpoints`, so that deleting
//! the newest records is detected by `audit verify`. Pure merging and parsing, then a thin
//! Kubernetes part.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use keyturn_audit::{AuditStore, Checkpoint, StoreError};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};

/// Name of the ConfigMap holding the checkpoints, in the lease namespace.
pub const CONFIG_MAP_NAME: &str = "keyturn-audit-checkpoints";
/// Field manager of the server-side apply.
pub const FIELD_MANAGER: &str = "keyturn/audit";
/// Most checkpoints kept in `history`; the oldest go first.
pub const HISTORY_LIMIT: usize = 100;

/// One checkpoint as written to the ConfigMap and read from a `--checkpoints` file:
/// `{"sequence": 7, "hash": "<64 hex digits>", "time": "<RFC 3339>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub sequence: u64,
    /// SHA-256 of the record `sequence`, lower-case hex.
    pub hash: String,
    /// When the head was read.
    pub time: DateTime<Utc>,
}

/// Why checkpoints cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("audit checkpoints: parse {what}: {source}")]
    Parse {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "audit checkpoints: {what}: checkpoint {sequence} has a hash that is not 64 hex digits"
    )]
    BadHash { what: String, sequence: u64 },
    #[error("audit checkpoints: read the store head: {0}")]
    Store(#[from] StoreError),
    #[error("audit checkpoints: {call} ConfigMap {namespace}/{CONFIG_MAP_NAME}: {source}")]
    Kubernetes {
        call: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

impl CheckpointRecord {
    /// The record of `checkpoint` read at `time`.
    pub fn new(checkpoint: Checkpoint, time: DateTime<Utc>) -> CheckpointRecord {
        CheckpointRecord {
            sequence: checkpoint.sequence,
            hash: hex::encode(checkpoint.hash),
            time,
        }
    }

    /// The verifier's checkpoint; `what` names the source in the error.
    pub fn to_checkpoint(&self, what: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = || CheckpointError::BadHash {
            what: what.to_owned(),
            sequence: self.sequence,
        };
        let bytes = hex::decode(&self.hash).map_err(|_| bad())?;
        let hash: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(Checkpoint {
            sequence: self.sequence,
            hash,
        })
    }
}

/// Parses a JSON list of checkpoints (a `--checkpoints` file or the ConfigMap's `history`).
pub fn parse_list(text: &str, what: &str) -> Result<Vec<Checkpoint>, CheckpointError> {
    let records: Vec<CheckpointRecord> =
        serde_json::from_str(text).map_err(|source| CheckpointError::Parse {
            what: what.to_owned(),
            source,
        })?;
    records
        .iter()
        .map(|record| record.to_checkpoint(what))
        .collect()
}

/// The checkpoints in a ConfigMap's `data`: `history` and `latest` (either may be missing).
pub fn parse_config_map_data(
    data: &BTreeMap<String, String>,
) -> Result<Vec<Checkpoint>, CheckpointError> {
    let mut checkpoints = match data.get("history") {
        Some(history) => parse_list(history, "ConfigMap data.history")?,
        None => Vec::new(),
    };
    if let Some(latest) = data.get("latest") {
        let record: CheckpointRecord =
            serde_json::from_str(latest).map_err(|source| CheckpointError::Parse {
                what: "ConfigMap data.latest".to_owned(),
                source,
            })?;
        checkpoints.push(record.to_checkpoint("ConfigMap data.latest")?);
    }
    Ok(checkpoints)
}

/// `history` with `new` appended when the head moved since its last entry, keeping the newest
/// [`HISTORY_LIMIT`].
pub fn merge_history(
    mut history: Vec<CheckpointRecord>,
    new: &CheckpointRecord,
) -> Vec<CheckpointRecord> {
    let moved = history
        .last()
        .is_none_or(|last| last.sequence != new.sequence || last.hash != new.hash);
    if moved {
        history.push(new.clone());
    }
    let excess = history.len().saturating_sub(HISTORY_LIMIT);
    history.drain(..excess);
    history
}

/// The ConfigMap's `data` for `latest` and `history`.
pub fn config_map_data(
    latest: &CheckpointRecord,
    history: &[CheckpointRecord],
) -> Result<BTreeMap<String, String>, CheckpointError> {
    let encode = |what: &str, result: serde_json::Result<String>| {
        result.map_err(|source| CheckpointError::Parse {
            what: what.to_owned(),
            source,
        })
    };
    Ok(BTreeMap::from([
        (
            "latest".to_owned(),
            encode("latest", serde_json::to_string(latest))?,
        ),
        (
            "history".to_owned(),
            encode("history", serde_json::to_string(history))?,
        ),
    ]))
}

/// Reads the checkpoints from the ConfigMap in `namespace` (none when it does not exist).
pub async fn read_from_cluster(
    client: &Client,
    namespace: &str,
) -> Result<Vec<Checkpoint>, CheckpointError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config_map =
        api.get_opt(CONFIG_MAP_NAME)
            .await
            .map_err(|source| CheckpointError::Kubernetes {
                call: "get",
                namespace: namespace.to_owned(),
                source,
            })?;
    match config_map.and_then(|config_map| config_map.data) {
        Some(data) => parse_config_map_data(&data),
        None => Ok(Vec::new()),
    }
}

/// Reads the store's head, logs it and applies it to the ConfigMap. Returns the checkpoint
/// written, or `None` while the log is empty.
pub async fn write_once(
    client: &Client,
    namespace: &str,
    store: &AuditStore,
    now: DateTime<Utc>,
) -> Result<Option<CheckpointRecord>, CheckpointError> {
    let Some(head) = store.head().await? else {
        return Ok(None);
    };
    let latest = CheckpointRecord::new(head, now);
    tracing::info!(
        sequence = latest.sequence,
        hash = %latest.hash,
        time = %latest.time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "audit checkpoint"
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let kubernetes_error = |call| {
        let namespace = namespace.to_owned();
        move |source| CheckpointError::Kubernetes {
            call,
            namespace,
            source,
        }
    };
    let existing = api
        .get_opt(CONFIG_MAP_NAME)
        .await
        .map_err(kubernetes_error("get"))?;
    let history = match existing
        .and_then(|config_map| config_map.data)
        .and_then(|mut data| data.remove("history"))
    {
        Some(text) => serde_json::from_str::<Vec<CheckpointRecord>>(&text).map_err(|source| {
            CheckpointError::Parse {
                what: "ConfigMap data.history".to_owned(),
                source,
            }
        })?,
        None => Vec::new(),
    };
    let history = merge_history(history, &latest);
    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(CONFIG_MAP_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        data: Some(config_map_data(&latest, &history)?),
        ..Default::default()
    };
    let mut body = serde_json::to_value(&config_map).map_err(|source| CheckpointError::Parse {
        what: "ConfigMap".to_owned(),
        source,
    })?;
    // Server-side apply needs the type in the body; the k8s-openapi type leaves it out.
    if let Some(object) = body.as_object_mut() {
        object.insert("apiVersion".to_owned(), "v1".into());
        object.insert("kind".to_owned(), "ConfigMap".into());
    }
    api.patch(
        CONFIG_MAP_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(kubernetes_error("apply"))?;
    Ok(Some(latest))
}

/// Writes a checkpoint at once and then every `interval` until `stop` resolves. Failures are
/// logged and retried at the next interval: checkpoints must never stop the controller.
pub async fn run(
    client: Client,
    namespace: String,
    store: AuditStore,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    // The head last written: while it stays the same, an interval costs a query of the store
    // and no API request (an idle operator only renews its Lease).
    let mut written: Option<Checkpoint> = None;
    loop {
        let unchanged = match store.head().await {
            Ok(head) => head.is_some() && head == written,
            Err(_) => false,
        };
        if !unchanged {
            match write_once(&client, &namespace, &store, Utc::now()).await {
                Ok(latest) => {
                    written = latest
                        .and_then(|latest| latest.to_checkpoint("the checkpoint just written").ok())
                }
                Err(error) => {
                    tracing::warn!(error = %error, "audit checkpoint not written; retrying at the next interval");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: u64, byte: u8) -> CheckpointRecord {
        CheckpointRecord::new(
            Checkpoint {
                sequence,
                hash: [byte; 32],
            },
            DateTime::from_timestamp(1_700_000_000 + sequence as i64, 0).unwrap(),
        )
    }

    #[test]
    fn merge_appends_only_when_the_head_moved() {
        let history = merge_history(Vec::new(), &record(3, 1));
        assert_eq!(history, vec![record(3, 1)]);
        let mut same_later = record(3, 1);
        same_later.time = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let history = merge_history(history, &same_later);
        assert_eq!(history, vec![record(3, 1)]);
        let history = merge_history(history, &record(5, 2));
        assert_eq!(history, vec![record(3, 1), record(5, 2)]);
    }

    #[test]
    fn merge_keeps_the_newest_hundred() {
        let mut history = Vec::new();
        for sequence in 1..=150 {
            history = merge_history(history, &record(sequence, sequence as u8));
        }
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history[0].sequence, 51);
        assert_eq!(history[HISTORY_LIMIT - 1].sequence, 150);
    }

    #[test]
    fn config_map_data_round_trips() {
        let history = vec![record(3, 1), record(5, 2)];
        let data = config_map_data(&record(5, 2), &history).unwrap();
        let checkpoints = parse_config_map_data(&data).unwrap();
        assert_eq!(
            checkpoints,
            vec![
                Checkpoint {
                    sequence: 3,
                    hash: [1; 32]
                },
                Checkpoint {
                    sequence: 5,
                    hash: [2; 32]
                },
                Checkpoint {
                    sequence: 5,
                    hash: [2; 32]
                },
            ]
        );
    }

    #[test]
    fn parse_list_reads_the_file_format() {
        let text = format!(
            r#"[{{"sequence": 7, "hash": "{}", "time": "2023-11-14T22:13:20Z"}}]"#,
            "ab".repeat(32)
        );
        assert_eq!(
            parse_list(&text, "file").unwrap(),
            vec![Checkpoint {
                sequence: 7,
                hash: [0xab; 32]
            }]
        );
    }

    #[test]
    fn parse_list_rejects_bad_hashes_naming_the_checkpoint() {
        let text = r#"[{"sequence": 7, "hash": "abcd", "time": "2023-11-14T22:13:20Z"}]"#;
        let error = parse_list(text, "checkpoints.json").unwrap_err();
        assert!(matches!(
            error,
            CheckpointError::BadHash { sequence: 7, .. }
        ));
        assert!(error.to_string().contains("checkpoints.json"));
        assert!(parse_list("{", "checkpoints.json").is_err());
    }
}
