//! The controller's side of RestartConsumers and AwaitRollout: which workloads to restart for
//! a ManagedSecret, and whether they have all rolled out, as a lifecycle outcome.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyturn_core::plan::StepOutcome;
use keyturn_crds::{ConsumerState, ConsumerStatus, ManagedSecretSpec};
use keyturn_rotators::{ErrorCategory, RotatorError};

use super::context::Context;
use super::object::ManagedSecretObject;
use super::steps::ROLLOUT_POLL;

/// Where every consumer's rollout stands.
#[derive(Debug, Clone, Default)]
pub struct RolloutProgress {
    pub statuses: Vec<ConsumerStatus>,
}

impl RolloutProgress {
    /// Done when every consumer rolled out (or has nothing to roll out); failed when one
    /// failed or the rollout took longer than `timeout` since the rotation started.
    pub fn outcome(&self, started_at: DateTime<Utc>, timeout: Duration) -> StepOutcome {
        let failed: Vec<String> = self
            .statuses
            .iter()
            .filter(|status| status.state == ConsumerState::Failed)
            .map(describe)
            .collect();
        if !failed.is_empty() {
            return StepOutcome::Failed {
                category: "RolloutFailed".into(),
                message: format!(
                    "rollout failed: {}; the previous credential stays valid",
                    failed.join(", ")
                ),
                retryable: true,
            };
        }
        let waiting: Vec<String> = self
            .statuses
            .iter()
            .filter(|status| {
                matches!(
                    status.state,
                    ConsumerState::Restarted | ConsumerState::Progressing
                )
            })
            .map(describe)
            .collect();
        if waiting.is_empty() {
            return StepOutcome::Succeeded { credential: None };
        }
        let waited = (Utc::now() - started_at).to_std().unwrap_or(Duration::ZERO);
        if waited > timeout {
            return StepOutcome::Failed {
                category: "RolloutTimedOut".into(),
                message: format!(
                    "rollout not complete after {}s (spec.consumers.rolloutTimeout): {}; the previous credential stays valid",
                    timeout.as_secs(),
                    waiting.join(", ")
                ),
                retryable: true,
            };
        }
        StepOutcome::Pending {
            retry_after: ROLLOUT_POLL,
        }
    }
}

fn describe(status: &ConsumerStatus) -> String {
    match &status.message {
        Some(message) => format!("{} {} ({message})", status.kind, status.name),
        None => format!("{} {}", status.kind, status.name),
    }
}

fn has_consumers(spec: &ManagedSecretSpec) -> bool {
    spec.consumers
        .as_ref()
        .is_some_and(|consumers| consumers.auto_discover || !consumers.restart.is_empty())
}

pub async fn restart(
    _context: &Context,
    _object: &ManagedSecretObject,
    spec: &ManagedSecretSpec,
    _rotation_id: &str,
) -> Result<Vec<ConsumerStatus>, RotatorError> {
    if !has_consumers(spec) {
        return Ok(Vec::new());
    }
    Err(RotatorError::new(
        ErrorCategory::Misconfigured,
        "restart consumers",
        "restarting consumers is not built yet",
    ))
}

pub async fn progress(
    _context: &Context,
    _object: &ManagedSecretObject,
    spec: &ManagedSecretSpec,
    _rotation_id: &str,
) -> Result<RolloutProgress, RotatorError> {
    if !has_consumers(spec) {
        return Ok(RolloutProgress::default());
    }
    Err(RotatorError::new(
        ErrorCategory::Misconfigured,
        "check consumer rollouts",
        "restarting consumers is not built yet",
    ))
}
