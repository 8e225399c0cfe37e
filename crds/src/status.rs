//! The `status` of a ManagedSecret: what the operator observed and decided. The rotation
//! lifecycle's own state is embedded as-is (flattened), so the controller resumes from exactly
//! what the pure core persisted; only fields the core does not own are added here.

use keyturn_core::state::RotationState;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator observed and decided; written only by keyturn (field manager
/// `keyturn/controller`), never a credential value.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedSecretStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Which backend issues the credential (`postgres`, `vault`, `awsSecretsManager`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotator: Option<String>,
    /// Rotation progress: revision, current/previous/in-flight credential ids and fingerprints
    /// (never values), timestamps, failures and conditions.
    #[serde(flatten)]
    pub rotation: RotationState,
    /// The Secret the current credential is published to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The workloads restarted for the last rotation and how their rollout went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["kind", "name"]))]
    pub consumers: Vec<ConsumerStatus>,
    /// A dry run of the next rotation: when, why, and what it will change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<RotationPreview>,
    /// Who may read the published Secret through keyturn's Role and RoleBinding, and broader
    /// grants found beside them. Absent when `spec.access` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessStatus>,
    /// Reads of the Secret recorded through the Kubernetes audit webhook (absent while the
    /// webhook is not enabled on the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<ReadsStatus>,
}

/// The access keyturn grants to the published Secret and the drift it found.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessStatus {
    /// The Role granting `get` on exactly the published Secret; absent when no service
    /// account is listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The RoleBinding of that Role to the listed service accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_binding: Option<String>,
    /// The service accounts bound, as listed in `spec.access.serviceAccounts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// Bindings that let subjects not listed read the Secret (or every Secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<AccessDrift>,
    /// True when the operator may not list ClusterRoleBindings (a namespace-scoped install):
    /// bindings that grant read cluster-wide are then not checked and not in `drift`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_bindings_unchecked: bool,
}

/// One binding granting read of the published Secret beyond what `spec.access` lists.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct AccessDrift {
    /// `RoleBinding/NAME` (in this namespace) or `ClusterRoleBinding/NAME`.
    pub binding: String,
    /// `Role/NAME` or `ClusterRole/NAME`.
    pub role: String,
    /// The subjects not listed in `spec.access`: `ServiceAccount/NAMESPACE/NAME`, `User/NAME`,
    /// `Group/NAME`.
    pub subjects: Vec<String>,
    /// The read verbs granted on Secrets: `get`, `list`, `watch` or `*`.
    pub verbs: Vec<String>,
}

/// Who read the Secret, from the audit log.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReadsStatus {
    /// The newest allowed read of the published or staging Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read_by: Option<ReadBy>,
    /// Allowed reads in the current hour and the 23 before it.
    #[serde(default)]
    pub reads_last24h: u64,
    /// Service accounts not allowed by spec.access that read the Secret in the last 24 hours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unexpected_readers: Vec<String>,
}

/// One read: who, how and when.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReadBy {
    /// The Kubernetes username, e.g. `system:serviceaccount:payments:orders-api`.
    pub user: String,
    /// `get`, `list` or `watch`.
    pub verb: String,
    /// When the API server received the request.
    pub time: chrono::DateTime<chrono::Utc>,
}

/// One consuming workload and where its restart stands.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// The workload's kind.
    pub kind: crate::spec::WorkloadKind,
    /// The workload's name.
    pub name: String,
    /// `Restarted` or `Progressing` (rollout not finished), `RolledOut`, `Failed` (failed or
    /// timed out; the previous credential stays valid), `ScaledToZero`, `NotFound` (listed but
    /// absent), `NotRestarted` (the restart is requested again).
    pub state: ConsumerState,
    /// Why it is in that state, e.g. which replicas are not ready yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsumerState {
    /// Restart requested; rollout not finished.
    Restarted,
    /// Every replica runs with the new credential.
    RolledOut,
    Progressing,
    /// The rollout failed or timed out; the previous credential stays valid.
    Failed,
    /// No replicas, so nothing to restart.
    ScaledToZero,
    /// Listed in spec.consumers.restart but absent from the namespace.
    NotFound,
    /// The pod template does not carry this rotation's restart token (yet): the restart is
    /// requested again, which is always safe.
    NotRestarted,
}

/// What the next rotation will do, computed without touching any backend.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RotationPreview {
    /// When the next rotation is due; absent while paused or when nothing is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why it will be due (`Interval`, `Schedule`, `ExpiryApproaching`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each change the rotation will make, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}
