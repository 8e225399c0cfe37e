//! The audit records the lifecycle emits for each decision. The operator appends them to the
//! hash-chained log before acting on the plan; this module only describes them. Records carry
//! ids and fingerprints, never credential values.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::machine::Step;
use crate::state::whole_seconds;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub time: DateTime<Utc>,
    pub action: AuditAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// Fingerprint of the credential the event concerns, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub outcome: AuditOutcome,
    pub details: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AuditAction {
    RotationStarted,
    StepCompleted,
    StepFailed,
    StepPending,
    /// The new credential became current (after Publish).
    CredentialPublished,
    RotationCompleted,
    /// A rotation came due (or was requested) while paused; emitted once per held rotation.
    RotationSkippedPaused,
    ManualRequestAccepted,
    /// The current credential's expiry passed; emitted once when that is first observed.
    CredentialExpired,
    /// An outcome for a step that is not the one in flight was ignored.
    StaleOutcomeIgnored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AuditOutcome {
    Success,
    Failure,
    Pending,
    Skipped,
}

impl AuditEvent {
    pub fn new(
        time: DateTime<Utc>,
        action: AuditAction,
        outcome: AuditOutcome,
        details: impl Into<String>,
    ) -> AuditEvent {
        AuditEvent {
            time: whole_seconds(time),
            action,
            rotation_id: None,
            step: None,
            fingerprint: None,
            outcome,
            details: details.into(),
        }
    }

    pub fn rotation(mut self, rotation_id: &str) -> AuditEvent {
        self.rotation_id = Some(rotation_id.to_owned());
        self
    }

    pub fn step(mut self, step: Step) -> AuditEvent {
        self.step = Some(step);
        self
    }

    pub fn fingerprint(mut self, fingerprint: Option<&str>) -> AuditEvent {
        self.fingerprint = fingerprint.map(str::to_owned);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_camel_case_without_empty_fields() {
        let time = DateTime::from_timestamp(1_700_000_000, 500).unwrap();
        let event = AuditEvent::new(
            time,
            AuditAction::StepCompleted,
            AuditOutcome::Success,
            "ok",
        )
        .rotation("kt-1")
        .step(Step::Verify);
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({
                "time": "2023-11-14T22:13:20Z",
                "action": "StepCompleted",
                "rotationId": "kt-1",
                "step": "Verify",
                "outcome": "Success",
                "details": "ok"
            })
        );
    }
}
