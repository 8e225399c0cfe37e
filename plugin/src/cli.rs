//! The command line of `kubectl keyturn`. kubectl finds the binary as a plugin (`kubectl-keyturn`
//! on PATH) and passes every argument after `keyturn` through.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use keyturn_operator::cli::AuditCommand;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-keyturn",
    bin_name = "kubectl keyturn",
    version,
    about = "Inspect and operate keyturn ManagedSecrets: rotation status, manual rotation, \
             pause/resume, history, who can read each Secret, and the auditor commands"
)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Which cluster and namespace, as kubectl spells them.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Namespace; default: the namespace of the kubeconfig context.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use; default: the current context.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file; default: $KUBECONFIG, then ~/.kube/config.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A table of ManagedSecrets: rotator, ready, last and next rotation, expiry, consumers
    /// and readers.
    Status(StatusArgs),
    /// Ask for a rotation now (sets the keyturn.dev/rotate-requested-at annotation; the
    /// operator honours each value once).
    Rotate(NameArgs),
    /// Hold scheduled rotations (spec.rotation.paused: true). A credential still expires.
    Pause(NameArgs),
    /// Let scheduled rotations run again (spec.rotation.paused: false).
    Resume(NameArgs),
    /// The rotation history of one ManagedSecret: from the audit store with --store (complete),
    /// else from the cluster's Events (recent only).
    History(HistoryArgs),
    /// Who RBAC lets read the published Secret, through which binding and role, and whether
    /// spec.access lists them.
    WhoCanRead(WhoCanReadArgs),
    /// Write an evidence bundle per ManagedSecret of the namespace for auditors: policy,
    /// rotation history with due and actual times, who can read, reads, audit records, the
    /// chain's verification, and a SHA-256 manifest.
    Evidence(EvidenceArgs),
    /// Check or export the audit log (the same commands as `keyturn-operator audit`). `verify`
    /// exits 0 when the log is intact, 1 when it names a bad record, 2 when it could not check.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One ManagedSecret; default: every one in the namespace.
    pub name: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The ManagedSecret's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The ManagedSecret's name.
    pub name: String,
    /// The audit store (`sqlite:PATH` or a `postgres://` URL), opened read-only. Without it
    /// the history comes from Events, which the API server keeps for about an hour.
    #[arg(long, env = "KEYTURN_AUDIT_STORE")]
    pub store: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct WhoCanReadArgs {
    /// The ManagedSecret's name.
    pub name: String,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// The period: records from this long ago until now (`90d`, `12h`, `1y` is `365d`).
    #[arg(long, default_value = "90d")]
    pub since: String,
    /// The audit store (`sqlite:PATH` or a `postgres://` URL), opened read-only.
    #[arg(long, env = "KEYTURN_AUDIT_STORE")]
    pub store: String,
    /// Directory to write the bundle to (created); default: keyturn-evidence-NAMESPACE-DATE.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A JSON file of checkpoints `[{"sequence", "hash", "time"}]` kept outside the store.
    #[arg(long)]
    pub checkpoints: Option<PathBuf>,
    /// Also check the checkpoints in the ConfigMap keyturn-audit-checkpoints of this namespace
    /// (the operator's).
    #[arg(long)]
    pub checkpoints_namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}
