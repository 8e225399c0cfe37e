//! The `status` of a ManagedSecret: what the operator observed and decided. The rotation
//! lifecycle's own state is embedded as-is (flattened), so the controller resumes from exactly
//! what the pure core persisted; only fields the core does not own are added here.

use keyturn_core::state::RotationState;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
}
