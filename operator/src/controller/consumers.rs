//! The controller's side of RestartConsumers and AwaitRollout: which workloads to restart for
//! a ManagedSecret, and whether they have all rolled out, as a lifecycle outcome.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyturn_core::plan::StepOutcome;
use keyturn_crds::{ConsumerState, ConsumerStatus, ManagedSecretSpec};
use keyturn_rotators::{ErrorCategory, RotatorError};

use crate::consumers::{ConsumerError, ConsumerTarget};

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
    let kind = crate::consumers::kind_name(status.kind);
    match &status.message {
        Some(message) => format!("{kind} {} ({message})", status.name),
        None => format!("{kind} {}", status.name),
    }
}

fn has_consumers(spec: &ManagedSecretSpec) -> bool {
    spec.consumers
        .as_ref()
        .is_some_and(|consumers| consumers.auto_discover || !consumers.restart.is_empty())
}

/// A consumer failure as a step failure (the rotation keeps the previous credential valid).
fn step_error(operation: &str, error: &ConsumerError) -> RotatorError {
    let category = match error.category() {
        crate::consumers::ErrorCategory::PermissionDenied => ErrorCategory::PermissionDenied,
        crate::consumers::ErrorCategory::AuthenticationFailed => {
            ErrorCategory::AuthenticationFailed
        }
        crate::consumers::ErrorCategory::NotFound => ErrorCategory::NotFound,
        crate::consumers::ErrorCategory::Rejected => ErrorCategory::Misconfigured,
        _ => ErrorCategory::Unreachable,
    };
    RotatorError::new(category, operation, error.to_string())
}

async fn targets(
    context: &Context,
    object: &ManagedSecretObject,
    spec: &ManagedSecretSpec,
) -> Result<Vec<crate::consumers::ConsumerTarget>, RotatorError> {
    crate::consumers::targets(
        &context.client,
        &object.namespace,
        spec.consumers.as_ref(),
        &object.published_secret_name(),
    )
    .await
    .map_err(|error| step_error("find the consumers", &error))
}

/// RestartConsumers: one restart per workload for this rotation (the token is the rotation id,
/// so a replay after a crash restarts nothing again).
pub async fn restart(
    context: &Context,
    object: &ManagedSecretObject,
    spec: &ManagedSecretSpec,
    rotation_id: &str,
) -> Result<Vec<ConsumerStatus>, RotatorError> {
    if !has_consumers(spec) {
        return Ok(Vec::new());
    }
    let targets = targets(context, object, spec).await?;
    restart_targets(context, object, &targets, rotation_id).await
}

async fn restart_targets(
    context: &Context,
    object: &ManagedSecretObject,
    targets: &[ConsumerTarget],
    rotation_id: &str,
) -> Result<Vec<ConsumerStatus>, RotatorError> {
    let statuses = crate::consumers::restart_all(
        &context.restarter,
        &context.client,
        &object.namespace,
        targets,
        rotation_id,
    )
    .await
    .map_err(|error| step_error("restart the consumers", &error))?;
    for status in statuses
        .iter()
        .filter(|status| status.state == ConsumerState::Restarted)
    {
        context
            .metrics
            .consumer_restarted(crate::consumers::kind_name(status.kind));
    }
    Ok(statuses)
}

/// AwaitRollout: where each consumer's rollout stands. A consumer whose template lost the
/// token (another rotation restarted it in between) is restarted again.
pub async fn progress(
    context: &Context,
    object: &ManagedSecretObject,
    spec: &ManagedSecretSpec,
    rotation_id: &str,
) -> Result<RolloutProgress, RotatorError> {
    if !has_consumers(spec) {
        return Ok(RolloutProgress::default());
    }
    // One discovery for both the check and a possible restart.
    let targets = targets(context, object, spec).await?;
    let query = async || {
        crate::consumers::rollout_progress(
            &context.client,
            &object.namespace,
            &targets,
            rotation_id,
        )
        .await
        .map_err(|error| step_error("check the consumers' rollout", &error))
    };
    let mut statuses = query().await?;
    if statuses
        .iter()
        .any(|status| status.state == ConsumerState::NotRestarted)
    {
        restart_targets(context, object, &targets, rotation_id).await?;
        statuses = query().await?;
    }
    Ok(RolloutProgress { statuses })
}
