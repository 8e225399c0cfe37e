//! `keyturn-operator audit verify` and `audit export`: for auditors. Both open the store
//! without changing it (SQLite read-only, no migration) and never print a credential (records
//! hold fingerprints only). `audit migrate` and `audit prune`: for the store's administrator,
//! the only commands that change its schema or delete records.

use std::io::Write;
use std::str::FromStr;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use keyturn_audit::store::{MigrationReport, PruneError, PruneOptions, PruneOutcome};
use keyturn_audit::{
    Anchor, AuditRecord, AuditStore, Checkpoint, StoreError, VerifyError, VerifySummary,
};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;

use crate::audit_checkpoints;
use crate::cli::{AuditCommand, ExportArgs, ExportFormat, MigrateArgs, PruneArgs, VerifyArgs};

/// Records per page when exporting.
const EXPORT_PAGE: u32 = 10_000;

/// Opens the store at `location` (`sqlite:PATH` or a `postgres://` URL) without creating or
/// migrating anything.
pub async fn open_read_only(location: &str) -> Result<AuditStore, StoreError> {
    match location.strip_prefix("sqlite:") {
        Some(path) => {
            let path = path.strip_prefix("//").unwrap_or(path);
            AuditStore::open_sqlite_read_only(path).await
        }
        None => {
            // The parse error may quote the URL, which may hold a password: it is dropped.
            let options =
                PgConnectOptions::from_str(location).map_err(|_| StoreError::Database {
                    call: "connect_postgres",
                    source: sqlx::Error::Configuration("invalid PostgreSQL connection URL".into()),
                })?;
            // Read-only sessions: even a role that may write cannot change what is verified.
            let options = options.options([("default_transaction_read_only", "on")]);
            AuditStore::connect_postgres_with(options).await
        }
    }
}

/// Opens the store at `location` for its administrator: SQLite created if missing but not
/// migrated (so `migrate` can say what it applied), PostgreSQL as given.
pub async fn open_for_admin(location: &str) -> Result<AuditStore, StoreError> {
    match location.strip_prefix("sqlite:") {
        Some(path) => {
            let path = path.strip_prefix("//").unwrap_or(path);
            AuditStore::open_sqlite_unmigrated(path).await
        }
        None => AuditStore::connect_postgres(location).await,
    }
}

/// The outcome of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    Valid(VerifySummary),
    Invalid(VerifyError),
}

impl VerifyOutcome {
    /// The line printed for it: a summary, or the first bad record and what is wrong.
    pub fn line(&self) -> String {
        match self {
            VerifyOutcome::Valid(summary) => {
                let mut line = match summary.head {
                    Some(head) => format!(
                        "audit log valid: {} records verified, head sequence {} hash {}, {} checkpoints matched",
                        summary.records,
                        head.sequence,
                        &hex::encode(head.hash)[..16],
                        summary.checkpoints_matched
                    ),
                    None => "audit log valid: empty (0 records)".to_owned(),
                };
                if summary.checkpoints_before_retained > 0 {
                    line.push_str(&format!(
                        ", {} before the retained range",
                        summary.checkpoints_before_retained
                    ));
                }
                if let Some(anchor) = summary.anchor {
                    line.push_str("; ");
                    line.push_str(&anchor_line(&anchor));
                }
                line
            }
            VerifyOutcome::Invalid(VerifyError::Truncated { last, checkpoint }) => format!(
                "audit log INVALID at record {}: records {}..={} are missing (a checkpoint names record {}, the store ends at {}: newest records deleted)",
                last + 1,
                last + 1,
                checkpoint,
                checkpoint,
                last
            ),
            VerifyOutcome::Invalid(error) => format!(
                "audit log INVALID at record {}: {error}",
                error.first_bad_sequence()
            ),
        }
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What a prune anchor says, for the `verify` summary.
pub fn anchor_line(anchor: &Anchor) -> String {
    format!(
        "records 1..={} pruned (newest pruned record from {}, last prune at {} with cut-off {}, {} records), verified from anchor hash {}",
        anchor.sequence,
        rfc3339(anchor.time),
        rfc3339(anchor.pruned_at),
        rfc3339(anchor.cutoff),
        anchor.pruned_count,
        &hex::encode(anchor.hash)[..16],
    )
}

/// The lines `audit migrate` prints.
pub fn migrate_lines(report: &MigrationReport, grants: &[String]) -> Vec<String> {
    let mut lines: Vec<String> = report
        .applied
        .iter()
        .map(|m| format!("applied migration {} ({})", m.version, m.description))
        .collect();
    lines.push(if report.applied.is_empty() {
        format!(
            "audit store schema already up to date ({} migrations); nothing applied",
            report.known
        )
    } else {
        format!(
            "audit store schema up to date ({} migrations, {} applied now)",
            report.known,
            report.applied.len()
        )
    });
    lines.extend(
        grants
            .iter()
            .map(|statement| format!("granted: {statement}")),
    );
    lines
}

/// The line `audit prune` prints.
pub fn prune_line(outcome: &PruneOutcome, retention: keyturn_audit::Retention) -> String {
    let Some(anchor) = outcome.anchor else {
        return format!(
            "nothing to prune: no record from {} on is older than the cut-off {} (retention {retention} at {})",
            outcome.first_pruned,
            rfc3339(outcome.cutoff),
            rfc3339(outcome.now),
        );
    };
    let what = format!(
        "records {}..={} ({} records, the newest from {}), not newer than the cut-off {} (retention {retention} at {})",
        outcome.first_pruned,
        anchor.sequence,
        anchor.pruned_count,
        rfc3339(anchor.time),
        rfc3339(outcome.cutoff),
        rfc3339(outcome.now),
    );
    match &outcome.prune_record {
        None => format!("dry run: would prune {what}; nothing deleted"),
        Some(record) => format!(
            "pruned {what}; anchor sequence {} hash {}; recorded as audit record {} hash {}",
            anchor.sequence,
            hex::encode(anchor.hash),
            record.sequence,
            hex::encode(record.hash),
        ),
    }
}

/// Verifies the whole chain of `store` against `checkpoints`.
pub async fn verify_store(
    store: &AuditStore,
    checkpoints: &[Checkpoint],
) -> Result<VerifyOutcome, StoreError> {
    Ok(match store.verify(checkpoints).await? {
        Ok(summary) => VerifyOutcome::Valid(summary),
        Err(error) => VerifyOutcome::Invalid(error),
    })
}

/// One exported record, with the field names of the export formats.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedRecord<'a> {
    sequence: u64,
    time: String,
    actor: &'a str,
    action: &'a str,
    namespace: &'a str,
    managed_secret: &'a str,
    rotation_id: Option<&'a str>,
    step: Option<&'a str>,
    fingerprint: Option<&'a str>,
    outcome: &'a str,
    details: &'a str,
    previous_hash: String,
    hash: String,
}

impl<'a> ExportedRecord<'a> {
    fn of(record: &'a AuditRecord) -> ExportedRecord<'a> {
        ExportedRecord {
            sequence: record.sequence,
            time: record.time_rfc3339(),
            actor: &record.actor,
            action: &record.action,
            namespace: &record.namespace,
            managed_secret: &record.managed_secret,
            rotation_id: record.rotation_id.as_deref(),
            step: record.step.as_deref(),
            fingerprint: record.fingerprint.as_deref(),
            outcome: &record.outcome,
            details: &record.details,
            previous_hash: hex::encode(record.previous_hash),
            hash: hex::encode(record.hash),
        }
    }
}

const CSV_HEADER: &str = "sequence,time,actor,action,namespace,managedSecret,rotationId,step,\
                          fingerprint,outcome,details,previousHash,hash";

/// A CSV field quoted as RFC 4180 requires: in double quotes, with inner quotes doubled,
/// when it holds a comma, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// One CSV line (with CRLF, as RFC 4180 specifies). An absent optional field is empty.
fn csv_line(record: &ExportedRecord<'_>) -> String {
    let fields = [
        record.sequence.to_string(),
        record.time.clone(),
        csv_field(record.actor),
        csv_field(record.action),
        csv_field(record.namespace),
        csv_field(record.managed_secret),
        csv_field(record.rotation_id.unwrap_or("")),
        csv_field(record.step.unwrap_or("")),
        csv_field(record.fingerprint.unwrap_or("")),
        csv_field(record.outcome),
        csv_field(record.details),
        record.previous_hash.clone(),
        record.hash.clone(),
    ];
    format!("{}\r\n", fields.join(","))
}

/// Export errors: the store's, or writing the output.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("audit export: {0}")]
    Store(#[from] StoreError),
    #[error("audit export: write record {sequence}: {source}")]
    Write {
        sequence: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("audit export: encode record {sequence}: {source}")]
    Encode {
        sequence: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// Writes the records with `since <= time < until` to `out`; returns how many.
pub async fn export(
    store: &AuditStore,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let mut written = 0;
    if format == ExportFormat::Csv {
        write!(out, "{CSV_HEADER}\r\n").map_err(|source| ExportError::Write {
            sequence: 0,
            source,
        })?;
    }
    let mut from = 1;
    loop {
        let page = store.read_range(from, EXPORT_PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.sequence.saturating_add(1);
        for record in &page {
            // Scanning by sequence rather than an index on time: an export reads everything
            // once, and records appended out of time order are still found.
            let after_since = since.is_none_or(|since| record.time >= since);
            let before_until = until.is_none_or(|until| record.time < until);
            if !(after_since && before_until) {
                continue;
            }
            let exported = ExportedRecord::of(record);
            let line = match format {
                ExportFormat::Jsonl => {
                    let mut line =
                        serde_json::to_string(&exported).map_err(|source| ExportError::Encode {
                            sequence: record.sequence,
                            source,
                        })?;
                    line.push('\n');
                    line
                }
                ExportFormat::Csv => csv_line(&exported),
            };
            out.write_all(line.as_bytes())
                .map_err(|source| ExportError::Write {
                    sequence: record.sequence,
                    source,
                })?;
            written += 1;
        }
        if page.len() < EXPORT_PAGE as usize {
            break;
        }
    }
    Ok(written)
}

/// Runs an `audit` subcommand; `Ok(false)` when verification found a bad record.
pub fn run(command: AuditCommand) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        match command {
            AuditCommand::Verify(args) => run_verify(args).await,
            AuditCommand::Export(args) => run_export(args).await.map(|()| true),
            AuditCommand::Migrate(args) => run_migrate(args).await.map(|()| true),
            AuditCommand::Prune(args) => run_prune(args).await,
        }
    })
}

fn read_checkpoints(path: Option<&std::path::Path>) -> anyhow::Result<Vec<Checkpoint>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read --checkpoints {}", path.display()))?;
    Ok(audit_checkpoints::parse_list(
        &text,
        &path.display().to_string(),
    )?)
}

async fn run_migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let store = open_for_admin(&args.store)
        .await
        .context("open the audit store --store")?;
    let result = async {
        let report = store
            .apply_migrations()
            .await
            .context("apply the audit store's migrations")?;
        let grants = match &args.grant_to {
            Some(role) => store
                .grant_operator_role(role)
                .await
                .with_context(|| format!("grant the operator's privileges to role {role:?}"))?,
            None => Vec::new(),
        };
        Ok::<_, anyhow::Error>(migrate_lines(&report, &grants))
    }
    .await;
    store.close().await;
    for line in result? {
        println!("{line}");
    }
    Ok(())
}

async fn run_prune(args: PruneArgs) -> anyhow::Result<bool> {
    let checkpoints = read_checkpoints(args.checkpoints.as_deref())?;
    let store = open_for_admin(&args.store)
        .await
        .context("open the audit store --store")?;
    let options = PruneOptions {
        retention: args.retention,
        now: None,
        allow_short_retention: args.allow_short_retention,
        dry_run: args.dry_run,
        checkpoints,
        actor: "keyturn-operator audit prune".to_owned(),
    };
    let result = store.prune(&options).await;
    store.close().await;
    match result {
        Ok(outcome) => {
            println!("{}", prune_line(&outcome, args.retention));
            Ok(true)
        }
        Err(PruneError::ChainInvalid(error)) => {
            println!(
                "audit prune refused, nothing deleted: {}",
                VerifyOutcome::Invalid(error).line()
            );
            Ok(false)
        }
        Err(error) => Err(error.into()),
    }
}

async fn run_verify(args: VerifyArgs) -> anyhow::Result<bool> {
    let mut checkpoints = read_checkpoints(args.checkpoints.as_deref())?;
    if args.checkpoints_from_cluster {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::infer()
            .await
            .context("load the kubeconfig or in-cluster configuration")?;
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).context("build the Kubernetes client")?;
        let from_cluster = audit_checkpoints::read_from_cluster(&client, &namespace).await?;
        if from_cluster.is_empty() {
            eprintln!(
                "warning: no checkpoints in ConfigMap {namespace}/{}",
                audit_checkpoints::CONFIG_MAP_NAME
            );
        }
        checkpoints.extend(from_cluster);
    }
    let store = open_read_only(&args.store)
        .await
        .context("open the audit store --store")?;
    let outcome = verify_store(&store, &checkpoints).await;
    store.close().await;
    let outcome = outcome?;
    println!("{}", outcome.line());
    Ok(matches!(outcome, VerifyOutcome::Valid(_)))
}

async fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    let store = open_read_only(&args.store)
        .await
        .context("open the audit store --store")?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = export(&store, args.since, args.until, args.format, &mut out).await;
    store.close().await;
    result?;
    out.flush().context("flush standard output")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn truncation_names_the_missing_range() {
        let line = VerifyOutcome::Invalid(VerifyError::Truncated {
            last: 5,
            checkpoint: 8,
        })
        .line();
        assert!(line.contains("records 6..=8 are missing"), "{line}");
    }

    #[test]
    fn other_findings_name_the_first_bad_record() {
        let line = VerifyOutcome::Invalid(VerifyError::HashMismatch { sequence: 4 }).line();
        assert!(line.starts_with("audit log INVALID at record 4:"), "{line}");
    }
}
