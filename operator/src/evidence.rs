//! Evidence bundles for auditors (`kubectl keyturn evidence`): per ManagedSecret of a namespace,
//! its policy, its rotation history with due and actual times, who may read it, the reads seen,
//! its audit records, and the verification of the whole chain, with a SHA-256 manifest so the
//! bundle itself can be checked after it leaves the cluster.
//!
//! Everything comes from the audit store and the ManagedSecret objects; no credential is ever
//! read (records hold fingerprints only).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use keyturn_audit::{AuditRecord, AuditStore, Checkpoint, StoreError};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::access::readers::{BEYOND_RBAC, ReadGrant};
use crate::audit_command::{VerifyOutcome, verify_store};
use crate::reads::record::READ_ACTION;

/// Records read per page from the store.
const PAGE: u32 = 10_000;

/// What the caller gathered from the cluster for one ManagedSecret.
#[derive(Debug, Clone)]
pub struct ManagedSecretEvidence {
    /// The ManagedSecret as the API server returned it (JSON).
    pub object: Value,
    /// Who RBAC lets read its Secret, and whether cluster-wide bindings went unchecked.
    pub readers: Option<(Vec<ReadGrant>, bool)>,
}

/// The request: a namespace and a period.
#[derive(Debug, Clone)]
pub struct EvidenceRequest {
    pub namespace: String,
    pub since: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub out: PathBuf,
    /// Checkpoints kept outside the store (the cluster ConfigMap, a file).
    pub checkpoints: Vec<Checkpoint>,
    /// The store location as given, for the record (without a password).
    pub store_label: String,
}

/// What was written, for the command's summary line and for tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceSummary {
    pub managed_secrets: Vec<String>,
    pub chain_valid: bool,
    pub verification: String,
    pub files: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encode {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One rotation, assembled from its audit records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationEvidence {
    pub rotation_id: String,
    /// Why it ran: Initial, Interval, Schedule, ExpiryApproaching, Expired, Manual.
    pub reason: Option<String>,
    /// When policy made it due.
    pub due_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Seconds from due to start (negative never happens; a missing due time leaves it empty).
    pub start_delay_seconds: Option<i64>,
    /// Completed, InProgress, or Failing (a step failed and the rotation has not completed).
    pub outcome: String,
    /// Fingerprint of the credential it published (never the credential).
    pub published_fingerprint: Option<String>,
    pub failed_steps: usize,
}

/// Writes the bundle: `<out>/<namespace>/<name>/...` per ManagedSecret, plus `verification.json`,
/// `summary.json`, `README.md` and `MANIFEST.sha256` at the top.
pub async fn write_bundle(
    store: &AuditStore,
    request: &EvidenceRequest,
    managed_secrets: &BTreeMap<String, ManagedSecretEvidence>,
) -> Result<EvidenceSummary, EvidenceError> {
    let mut files = BundleFiles::new(&request.out);
    let outcome = verify_store(store, &request.checkpoints).await?;
    let chain_valid = matches!(outcome, VerifyOutcome::Valid(_));
    files.json(
        "verification.json",
        &json!({
            "valid": chain_valid,
            "result": outcome.line(),
            "checkpointsGiven": request.checkpoints.len(),
            "verifiedAt": rfc3339(request.now),
            "scope": "the whole chain, every record from the first, not only this namespace",
        }),
    )?;

    let records = records_of_namespace(store, &request.namespace, request.since).await?;
    // Every ManagedSecret that exists now, and every one the period's records mention (a
    // deleted one still has a history to show).
    let names: BTreeSet<&str> = managed_secrets
        .keys()
        .map(String::as_str)
        .chain(records.iter().map(|record| record.managed_secret.as_str()))
        .filter(|name| !name.is_empty())
        .collect();
    for name in &names {
        let own: Vec<&AuditRecord> = records
            .iter()
            .filter(|record| record.managed_secret == *name)
            .collect();
        let directory = format!("{}/{name}", request.namespace);
        let evidence = managed_secrets.get(*name);
        files.json(
            &format!("{directory}/policy.json"),
            &policy(evidence.map(|evidence| &evidence.object)),
        )?;
        let rotations = rotations(&own);
        files.json(&format!("{directory}/rotations.json"), &rotations)?;
        files.text(
            &format!("{directory}/rotations.csv"),
            &rotations_csv(&rotations),
        )?;
        files.json(&format!("{directory}/access.json"), &access(evidence))?;
        let reads: Vec<Value> = own
            .iter()
            .filter(|record| record.action == READ_ACTION)
            .map(|record| record_json(record))
            .collect();
        files.json(&format!("{directory}/reads.json"), &reads)?;
        let mut lines = String::new();
        for record in &own {
            let line = serde_json::to_string(&record_json(record)).map_err(|source| {
                EvidenceError::Encode {
                    what: format!("record {}", record.sequence),
                    source,
                }
            })?;
            lines.push_str(&line);
            lines.push('\n');
        }
        files.text(&format!("{directory}/audit-records.jsonl"), &lines)?;
    }
    let summary = EvidenceSummary {
        managed_secrets: names.iter().map(|name| (*name).to_owned()).collect(),
        chain_valid,
        verification: outcome.line(),
        files: files.written.len() + 3,
    };
    files.json(
        "summary.json",
        &json!({
            "namespace": request.namespace,
            "since": rfc3339(request.since),
            "until": rfc3339(request.now),
            "store": request.store_label,
            "managedSecrets": summary.managed_secrets,
            "chainValid": chain_valid,
            "generatedBy": format!("keyturn {}", env!("CARGO_PKG_VERSION")),
        }),
    )?;
    files.text("README.md", &readme(request, &summary))?;
    files.manifest()?;
    Ok(summary)
}

/// The namespace's records with `time >= since`, in chain order.
async fn records_of_namespace(
    store: &AuditStore,
    namespace: &str,
    since: DateTime<Utc>,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut records = Vec::new();
    let mut from = 1;
    loop {
        let page = store.read_range(from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.sequence.saturating_add(1);
        let full = page.len() == PAGE as usize;
        records.extend(
            page.into_iter()
                .filter(|record| record.namespace == namespace && record.time >= since),
        );
        if !full {
            break;
        }
    }
    Ok(records)
}

/// The rotations among `records` (one ManagedSecret's), oldest first.
pub fn rotations(records: &[&AuditRecord]) -> Vec<RotationEvidence> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, RotationEvidence> = BTreeMap::new();
    for record in records {
        let Some(id) = record.rotation_id.as_deref() else {
            continue;
        };
        let rotation = by_id.entry(id.to_owned()).or_insert_with(|| {
            order.push(id.to_owned());
            RotationEvidence {
                rotation_id: id.to_owned(),
                reason: None,
                due_at: None,
                started_at: None,
                completed_at: None,
                start_delay_seconds: None,
                outcome: "InProgress".to_owned(),
                published_fingerprint: None,
                failed_steps: 0,
            }
        });
        match record.action.as_str() {
            "RotationStarted" => {
                rotation.started_at = Some(record.time);
                let (reason, due_at) = parse_started(&record.details);
                rotation.reason = reason;
                rotation.due_at = due_at;
            }
            "CredentialPublished" => rotation
                .published_fingerprint
                .clone_from(&record.fingerprint),
            "StepFailed" => rotation.failed_steps += 1,
            "RotationCompleted" => rotation.completed_at = Some(record.time),
            _ => {}
        }
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .map(|mut rotation| {
            rotation.start_delay_seconds = rotation
                .due_at
                .zip(rotation.started_at)
                .map(|(due, started)| (started - due).num_seconds());
            rotation.outcome = match (rotation.completed_at, rotation.failed_steps) {
                (Some(_), _) => "Completed",
                (None, 0) => "InProgress",
                (None, _) => "Failing",
            }
            .to_owned();
            rotation
        })
        .collect()
}

/// `rotation started (Interval, due at 2026-11-22T10:00:00Z)` → reason and due time.
fn parse_started(details: &str) -> (Option<String>, Option<DateTime<Utc>>) {
    let Some(inner) = details
        .strip_prefix("rotation started (")
        .and_then(|rest| rest.strip_suffix(')'))
    else {
        return (None, None);
    };
    let Some((reason, due)) = inner.split_once(", due at ") else {
        return (Some(inner.to_owned()), None);
    };
    let due = DateTime::parse_from_rfc3339(due)
        .ok()
        .map(|time| time.with_timezone(&Utc));
    (Some(reason.to_owned()), due)
}

fn rotations_csv(rotations: &[RotationEvidence]) -> String {
    let time = |time: Option<DateTime<Utc>>| time.map(rfc3339).unwrap_or_default();
    let mut text = String::from(
        "rotationId,reason,dueAt,startedAt,completedAt,startDelaySeconds,outcome,publishedFingerprint,failedSteps\r\n",
    );
    for rotation in rotations {
        let _ = write!(
            text,
            "{},{},{},{},{},{},{},{},{}\r\n",
            rotation.rotation_id,
            rotation.reason.as_deref().unwrap_or_default(),
            time(rotation.due_at),
            time(rotation.started_at),
            time(rotation.completed_at),
            rotation
                .start_delay_seconds
                .map(|seconds| seconds.to_string())
                .unwrap_or_default(),
            rotation.outcome,
            rotation
                .published_fingerprint
                .as_deref()
                .unwrap_or_default(),
            rotation.failed_steps,
        );
    }
    text
}

/// The ManagedSecret's identity, spec and status, or a note that it no longer exists.
fn policy(object: Option<&Value>) -> Value {
    match object {
        Some(object) => json!({
            "apiVersion": object["apiVersion"],
            "kind": object["kind"],
            "metadata": {
                "name": object["metadata"]["name"],
                "namespace": object["metadata"]["namespace"],
                "uid": object["metadata"]["uid"],
                "generation": object["metadata"]["generation"],
                "creationTimestamp": object["metadata"]["creationTimestamp"],
            },
            "spec": object["spec"],
            "status": object["status"],
        }),
        None => json!({
            "note": "this ManagedSecret no longer exists in the cluster; its history below comes from the audit store"
        }),
    }
}

fn access(evidence: Option<&ManagedSecretEvidence>) -> Value {
    let Some(evidence) = evidence else {
        return json!({"note": "the ManagedSecret no longer exists"});
    };
    let (readers, unchecked) = match &evidence.readers {
        Some((grants, unchecked)) => (json!(grants), json!(unchecked)),
        None => (Value::Null, Value::Null),
    };
    json!({
        "spec": evidence.object["spec"]["access"],
        "status": evidence.object["status"]["access"],
        "whoCanRead": readers,
        "clusterBindingsUnchecked": unchecked,
        "beyondRbac": BEYOND_RBAC,
    })
}

fn record_json(record: &AuditRecord) -> Value {
    json!({
        "sequence": record.sequence,
        "time": record.time_rfc3339(),
        "actor": record.actor,
        "action": record.action,
        "namespace": record.namespace,
        "managedSecret": record.managed_secret,
        "rotationId": record.rotation_id,
        "step": record.step,
        "fingerprint": record.fingerprint,
        "outcome": record.outcome,
        "details": record.details,
        "previousHash": hex::encode(record.previous_hash),
        "hash": hex::encode(record.hash),
    })
}

fn readme(request: &EvidenceRequest, summary: &EvidenceSummary) -> String {
    format!(
        "# keyturn evidence: namespace {namespace}\n\n\
         Period: {since} to {until}. Generated by keyturn {version} from the audit store {store}.\n\n\
         Audit chain: {verification}\n\n\
         Per ManagedSecret (`{namespace}/<name>/`):\n\
         - `policy.json`: the ManagedSecret's spec (rotation policy, expiry, consumers, access) and status.\n\
         - `rotations.json`, `rotations.csv`: each rotation with its reason, due time, start, completion,\n  \
           start delay, outcome and the fingerprint of the credential it published.\n\
         - `access.json`: the service accounts allowed, keyturn's bindings, drift, and every subject\n  \
           RBAC lets read the Secret (who-can-read).\n\
         - `reads.json`: reads of the Secret recorded from the API server's audit webhook.\n\
         - `audit-records.jsonl`: every audit record of the ManagedSecret in the period, with hashes.\n\n\
         `verification.json` is the result of verifying the whole hash chain against {checkpoints} external\n\
         checkpoints. `MANIFEST.sha256` lists the SHA-256 of every file (`sha256sum -c MANIFEST.sha256`).\n\
         Which controls this supplies evidence for: docs/compliance.md.\n",
        namespace = request.namespace,
        since = rfc3339(request.since),
        until = rfc3339(request.now),
        version = env!("CARGO_PKG_VERSION"),
        store = request.store_label,
        verification = summary.verification,
        checkpoints = request.checkpoints.len(),
    )
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The files of a bundle and their digests, for the manifest.
struct BundleFiles {
    root: PathBuf,
    written: Vec<(String, String)>,
}

impl BundleFiles {
    fn new(root: &Path) -> BundleFiles {
        BundleFiles {
            root: root.to_owned(),
            written: Vec::new(),
        }
    }

    fn json(&mut self, relative: &str, value: &impl Serialize) -> Result<(), EvidenceError> {
        let mut text =
            serde_json::to_string_pretty(value).map_err(|source| EvidenceError::Encode {
                what: relative.to_owned(),
                source,
            })?;
        text.push('\n');
        self.text(relative, &text)
    }

    fn text(&mut self, relative: &str, text: &str) -> Result<(), EvidenceError> {
        let path = self.root.join(relative);
        let write_error = |source| EvidenceError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        std::fs::write(&path, text).map_err(write_error)?;
        self.written.push((
            relative.to_owned(),
            hex::encode(Sha256::digest(text.as_bytes())),
        ));
        Ok(())
    }

    /// `MANIFEST.sha256` in the format `sha256sum -c` reads.
    fn manifest(&mut self) -> Result<(), EvidenceError> {
        let mut lines = String::new();
        for (relative, digest) in &self.written {
            let _ = writeln!(lines, "{digest}  {relative}");
        }
        let path = self.root.join("MANIFEST.sha256");
        std::fs::write(&path, lines).map_err(|source| EvidenceError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record(
        sequence: u64,
        second: u32,
        action: &str,
        rotation: &str,
        details: &str,
    ) -> AuditRecord {
        AuditRecord {
            sequence,
            time: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, second).unwrap(),
            actor: "keyturn-operator".into(),
            action: action.into(),
            namespace: "payments".into(),
            managed_secret: "orders".into(),
            rotation_id: Some(rotation.into()),
            step: None,
            fingerprint: (action == "CredentialPublished").then(|| format!("fp-{rotation}")),
            outcome: "Success".into(),
            details: details.into(),
            previous_hash: [0; 32],
            hash: [0; 32],
        }
    }

    #[test]
    fn rotations_carry_reason_due_start_completion_and_delay() {
        let records = [
            record(
                1,
                5,
                "RotationStarted",
                "kt-a",
                "rotation started (Interval, due at 2026-11-22T10:00:00Z)",
            ),
            record(2, 6, "StepFailed", "kt-a", "backend down"),
            record(3, 9, "CredentialPublished", "kt-a", ""),
            record(4, 10, "RotationCompleted", "kt-a", ""),
            record(
                5,
                20,
                "RotationStarted",
                "kt-b",
                "rotation started (Manual, due at 2026-11-22T10:00:19Z)",
            ),
            record(6, 21, "StepFailed", "kt-b", "backend down"),
        ];
        let refs: Vec<&AuditRecord> = records.iter().collect();
        let rotations = rotations(&refs);
        assert_eq!(rotations.len(), 2);
        let first = &rotations[0];
        assert_eq!(first.reason.as_deref(), Some("Interval"));
        assert_eq!(first.start_delay_seconds, Some(5));
        assert_eq!(first.outcome, "Completed");
        assert_eq!(first.failed_steps, 1);
        assert_eq!(first.published_fingerprint.as_deref(), Some("fp-kt-a"));
        assert_eq!(rotations[1].outcome, "Failing");
        assert_eq!(rotations[1].start_delay_seconds, Some(1));
        let csv = rotations_csv(&rotations);
        assert!(csv.contains("kt-a,Interval,2026-11-22T10:00:00Z,2026-11-22T10:00:05Z,2026-11-22T10:00:10Z,5,Completed,fp-kt-a,1\r\n"), "{csv}");
    }

    #[test]
    fn unparseable_start_details_leave_the_due_time_empty() {
        assert_eq!(parse_started("something else"), (None, None));
        assert_eq!(
            parse_started("rotation started (Initial)"),
            (Some("Initial".into()), None)
        );
    }
}
