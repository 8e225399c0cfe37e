//! The persisted rotation state, embedded as-is in the ManagedSecret `status`: the lifecycle
//! resumes from it after any crash. Holds credential ids and fingerprints, never values, and
//! only whole-second timestamps because that is all a Kubernetes status can keep.

use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::due::DueReason;
use crate::machine::Step;

/// Truncates to whole seconds, as the API server would when it stores the time; applied to every
/// time written into state so a value read back compares equal to the value written.
pub fn whole_seconds(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(0)
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RotationState {
    /// Completed rotations; part of the rotation id, so it changes exactly once per rotation.
    pub revision: u64,
    /// The credential consumers use now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<CredentialRef>,
    /// The credential replaced by the last publish, kept valid until consumers have rolled out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<CredentialRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,
    /// When the last rotation completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<DateTime<Utc>>,
    /// When the next rotation is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<DateTime<Utc>>,
    /// When the current credential stops working at the backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Consecutive failures of the in-flight step; reset when a step succeeds.
    pub failed_attempts: u32,
    /// The most recent failed step: which, when and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// When a failed step is retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// The last rotate-request annotation value acted on; a different value requests a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handled_rotate_request: Option<String>,
    /// Keyed by `type` so that server-side apply merges conditions written by different field
    /// managers instead of replacing the whole list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Identifies a credential without revealing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRef {
    /// Backend identifier: a role name, a KV version, an AWS VersionId.
    pub id: String,
    /// A one-way fingerprint (e.g. truncated SHA-256) to match the Secret against the backend.
    pub fingerprint: String,
    /// When the credential was issued.
    pub issued_at: DateTime<Utc>,
    /// When the backend stops accepting it; absent when it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl CredentialRef {
    /// The same reference with times truncated for storage.
    pub fn normalized(mut self) -> CredentialRef {
        self.issued_at = whole_seconds(self.issued_at);
        self.expires_at = self.expires_at.map(whole_seconds);
        self
    }
}

/// A rotation between its start and its completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    /// Deterministic; rotators key every backend call on it (AWS ClientRequestToken).
    pub rotation_id: String,
    /// The step to run (or re-run) next.
    pub step: Step,
    pub reason: DueReason,
    /// When the rotation became due.
    pub due_at: DateTime<Utc>,
    /// When it started; rotators use it to recognise their own earlier effects.
    pub started_at: DateTime<Utc>,
    /// The new credential once Stage has persisted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<CredentialRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// Stable, low-cardinality class such as `Unreachable` or `PermissionDenied`.
    pub category: String,
    /// Human-readable cause; the operator must pass text that holds no credential value.
    pub message: String,
    /// Whether retrying may succeed without a change (else the ManagedSecret is `Stalled`).
    pub retryable: bool,
    /// When the failure happened.
    pub time: DateTime<Utc>,
    /// The spec generation the failure happened under: a permanent failure is retried as soon as
    /// the spec changes rather than after the full backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// Shaped like Kubernetes `metav1.Condition` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Rotating`, `Degraded`, `Stalled`, `Expired`, `Paused`, `AuditUnavailable`,
    /// `AccessDrift`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// PascalCase machine-readable cause.
    pub reason: String,
    /// Human-readable detail; never a credential value.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The spec generation the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl RotationState {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|condition| condition.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_status_deserialises_to_default() {
        let state: RotationState = serde_json::from_str("{}").unwrap();
        assert_eq!(state, RotationState::default());
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            r#"{"revision":0,"failedAttempts":0}"#
        );
    }

    #[test]
    fn condition_matches_metav1_wire_shape() {
        let condition = Condition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            reason: "CredentialValid".into(),
            message: "ok".into(),
            last_transition_time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            observed_generation: Some(3),
        };
        let json = serde_json::to_value(&condition).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "Ready",
                "status": "True",
                "reason": "CredentialValid",
                "message": "ok",
                "lastTransitionTime": "2023-11-14T22:13:20Z",
                "observedGeneration": 3
            })
        );
    }

    #[test]
    fn whole_seconds_truncates() {
        let time = DateTime::from_timestamp(10, 999_999_999).unwrap();
        assert_eq!(
            whole_seconds(time),
            DateTime::from_timestamp(10, 0).unwrap()
        );
    }

    #[test]
    fn schema_is_generated() {
        let schema = schemars::schema_for!(RotationState);
        let json = serde_json::to_string(&schema).unwrap();
        assert!(json.contains("inFlight") && json.contains("handledRotateRequest"));
        assert!(!json.to_lowercase().contains("password"));
    }
}
