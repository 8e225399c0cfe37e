//! One reconcile of a ManagedSecret, as a pipeline: read the object, validate, then let the
//! lifecycle core decide and run its steps one at a time, appending audit records before each
//! step (fail closed) and persisting status only where a crash would otherwise lose something.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keyturn_core::conditions::stalled_for_invalid_spec;
use keyturn_core::due::{DueReason, next_due};
use keyturn_core::machine::Step;
use keyturn_core::plan::{
    Action as PlanAction, Observation, Plan, StepOutcome, plan, record_outcome,
};
use keyturn_core::state::{Condition, ConditionStatus, RotationState};
use keyturn_crds::validate::{FieldError, ValidatedSpec};
use keyturn_crds::{AccessStatus, ManagedSecretSpec, ManagedSecretStatus};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::context::Context;
use super::crash::Phase;
use super::error::ReconcileError;
use super::events;
use super::object::ManagedSecretObject;
use super::preview::preview;
use super::status::StatusWriter;
use super::steps::StepRunner;
use crate::access::AccessTarget;
use crate::access::cluster::{reconcile_access, remove_bindings};
use crate::access::condition::{ACCESS_DRIFT, AccessFailure, BINDING_FAILED, access_condition};
use crate::metrics::RotationOutcome;

/// Condition set while audit records cannot be written; rotation steps wait for it to clear.
pub const AUDIT_UNAVAILABLE: &str = "AuditUnavailable";
/// How soon to try again while the audit store is down.
const AUDIT_RETRY: Duration = Duration::from_secs(10);
/// Longest sleep between reconciles of an idle object; a wake-up with nothing due costs no
/// API request.
const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// Requeue slightly after the due instant so the timer never fires just before it.
const REQUEUE_MARGIN: Duration = Duration::from_millis(20);
/// How soon to try again when access bindings could not be written or checked.
const ACCESS_RETRY: Duration = Duration::from_secs(30);
/// Upper bound on lifecycle decisions per reconcile (a rotation needs about 16).
const MAX_DECISIONS: usize = 64;

pub async fn apply(
    object: &ManagedSecretObject,
    context: &Arc<Context>,
) -> Result<Action, ReconcileError> {
    if let Some(problem) = &object.status_unreadable {
        tracing::warn!(managed_secret = %object.key(), %problem, "status unreadable; starting from an empty state");
    }
    match &object.spec {
        Err(problems) => invalid_spec(object, context, problems).await,
        Ok((spec, validated)) => run_lifecycle(object, context, spec, validated).await,
    }
}

/// A spec that cannot be acted on: say so once, in a Stalled condition naming each field, and
/// wait for the next change of the object (no requeue, so no hot loop).
async fn invalid_spec(
    object: &ManagedSecretObject,
    context: &Arc<Context>,
    problems: &[FieldError],
) -> Result<Action, ReconcileError> {
    let message = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let mut desired = object.status.clone();
    desired.observed_generation = object.generation;
    desired.rotation.conditions = stalled_for_invalid_spec(
        &object.status.rotation.conditions,
        &message,
        Utc::now(),
        object.generation,
    );
    let mut writer = StatusWriter::new(context, object);
    if writer
        .write(&desired)
        .await
        .map_err(|source| ReconcileError::status(object, source))?
    {
        tracing::warn!(managed_secret = %object.key(), problems = %message, "invalid spec");
        events::publish(
            context,
            object,
            EventType::Warning,
            "InvalidSpec",
            "Validate",
            &message,
        )
        .await;
    }
    context
        .metrics
        .set_schedule(&object.namespace, &object.name, None, None);
    Ok(Action::await_change())
}

async fn run_lifecycle(
    object: &ManagedSecretObject,
    context: &Arc<Context>,
    spec: &ManagedSecretSpec,
    validated: &ValidatedSpec,
) -> Result<Action, ReconcileError> {
    let policy = &validated.policy;
    let secret_name = object.published_secret_name();
    fn observe<'a>(
        object: &'a ManagedSecretObject,
        policy: &'a keyturn_core::policy::RotationPolicy,
        state: &'a RotationState,
    ) -> Observation<'a> {
        Observation {
            uid: &object.uid,
            generation: object.generation,
            policy,
            state,
            now: Utc::now(),
            manual_request: object.rotate_request.as_deref(),
        }
    }
    let mut writer = StatusWriter::new(context, object);
    let mut runner = StepRunner::new(context, object, spec, validated);
    let mut consumers = object.status.consumers.clone();
    let mut decision = plan(&observe(object, policy, &object.status.rotation));
    // Before acting, make sure the state is current: the watch cache can lag behind this
    // controller's own last status write, and replaying steps from an older state could act on
    // a credential that has since changed roles (a late retire).
    if matches!(decision.action, PlanAction::Run { .. }) && !object.fresh {
        return match object.refetch(context.client.clone()).await? {
            Some(latest) => Box::pin(apply(&latest, context)).await,
            None => Ok(Action::await_change()),
        };
    }
    // Access does not depend on the rotation: it is reconciled while paused and before the
    // first credential exists, and its failures never stop a step.
    let access = reconcile_object_access(object, context, spec).await;
    for _ in 0..MAX_DECISIONS {
        if let Err(error) = context
            .audit
            .append_events(
                &context.actor,
                &object.namespace,
                &object.name,
                &decision.audit,
            )
            .await
        {
            return audit_unavailable(object, context, &mut writer, &error.to_string()).await;
        }
        context.metrics.audit_appended(decision.audit.len() as u64);
        context.metrics.set_audit_unavailable(false);
        events::publish_audit_events(context, object, &decision.audit).await;
        let mut desired = desired_status(
            object,
            spec,
            validated,
            &decision.state,
            &consumers,
            &secret_name,
            &access,
        );
        super::reads::add_to_status(context, object, spec, &mut desired);
        match decision.action.clone() {
            PlanAction::Wait => {
                writer
                    .write(&desired)
                    .await
                    .map_err(|source| ReconcileError::status(object, source))?;
                context.metrics.set_schedule(
                    &object.namespace,
                    &object.name,
                    decision.state.expires_at,
                    decision.state.next_rotation_time,
                );
                return Ok(requeue(&decision, access.failed));
            }
            PlanAction::Run { rotation_id, step } => {
                if must_persist_before(step, &decision.state, writer.stored()) {
                    writer
                        .write(&desired)
                        .await
                        .map_err(|source| ReconcileError::status(object, source))?;
                }
                if let Some(crash_point) = &context.crash_point {
                    crash_point.check(Phase::Before, step);
                }
                tracing::info!(managed_secret = %object.key(), %rotation_id, %step, "running step");
                let outcome = runner.run(&decision.state, &rotation_id, step).await;
                if let Some(crash_point) = &context.crash_point {
                    crash_point.check(Phase::After, step);
                }
                if let Some(latest) = runner.consumers.take() {
                    consumers = latest;
                }
                record_step_metrics(context, validated, step, &outcome);
                let revision_before = decision.state.revision;
                decision = record_outcome(
                    &observe(object, policy, &decision.state),
                    &rotation_id,
                    step,
                    outcome,
                );
                if decision.state.revision > revision_before {
                    context
                        .metrics
                        .rotation_finished(validated.rotator.as_str(), RotationOutcome::Completed);
                    tracing::info!(managed_secret = %object.key(), %rotation_id, revision = decision.state.revision, "rotation completed");
                }
            }
        }
    }
    tracing::warn!(managed_secret = %object.key(), "too many lifecycle decisions in one reconcile; continuing shortly");
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// Status is written before a step only where a crash would otherwise change the rotation's
/// identity: rotation ids of first issuance and of manual requests depend on the moment they
/// started, so that moment must be durable before any backend hears of the credential. Every
/// other rotation id is a function of persisted state and survives a crash by itself; the
/// staging Secret, keyed by that id, keeps the credential.
fn must_persist_before(step: Step, state: &RotationState, stored: &ManagedSecretStatus) -> bool {
    let Some(in_flight) = &state.in_flight else {
        return false;
    };
    let known = stored
        .rotation
        .in_flight
        .as_ref()
        .is_some_and(|stored| stored.rotation_id == in_flight.rotation_id);
    step == Step::Apply
        && !known
        && matches!(in_flight.reason, DueReason::Initial | DueReason::Manual)
}

fn record_step_metrics(
    context: &Context,
    validated: &ValidatedSpec,
    step: Step,
    outcome: &StepOutcome,
) {
    let label = match outcome {
        StepOutcome::Succeeded { .. } => "succeeded",
        StepOutcome::Pending { .. } => "pending",
        StepOutcome::Failed { .. } => "failed",
    };
    context.metrics.step_finished(step.as_str(), label);
    if let StepOutcome::Failed {
        category,
        retryable,
        ..
    } = outcome
    {
        context.metrics.step_failed(category);
        if !retryable {
            context
                .metrics
                .rotation_finished(validated.rotator.as_str(), RotationOutcome::Failed);
        }
    }
}

/// What this reconcile found about access, ready to go into status.
struct AccessView {
    status: Option<AccessStatus>,
    /// `None` when access is not managed (no `spec.access`), so no condition is shown.
    condition: Option<Condition>,
    failed: bool,
}

async fn reconcile_object_access(
    object: &ManagedSecretObject,
    context: &Context,
    spec: &ManagedSecretSpec,
) -> AccessView {
    let mut service_accounts: Vec<String> = spec
        .access
        .iter()
        .flat_map(|access| {
            access
                .service_accounts
                .iter()
                .map(|account| account.0.clone())
        })
        .collect();
    service_accounts.sort();
    service_accounts.dedup();
    let target = AccessTarget {
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        uid: object.uid.clone(),
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        secret_name: object.published_secret_name(),
        service_accounts,
    };
    let previous = object.status.rotation.condition(ACCESS_DRIFT);
    let now = Utc::now();
    if spec.access.is_none() {
        // Never managed: nothing to look at, no request made.
        if object.status.access.is_none() {
            return AccessView {
                status: None,
                condition: None,
                failed: false,
            };
        }
        // `spec.access` was removed: our bindings go, and so does the condition.
        return match remove_bindings(&context.client, &context.audit, &context.actor, &target).await
        {
            Ok(_) => AccessView {
                status: None,
                condition: None,
                failed: false,
            },
            Err(error) => {
                tracing::warn!(managed_secret = %object.key(), %error, "access bindings not removed");
                let failure = AccessFailure {
                    reason: BINDING_FAILED,
                    message: error.to_string(),
                };
                AccessView {
                    status: object.status.access.clone(),
                    condition: Some(access_condition(
                        previous,
                        None,
                        Some(&failure),
                        now,
                        object.generation,
                    )),
                    failed: true,
                }
            }
        };
    }
    let outcome = reconcile_access(&context.client, &context.audit, &context.actor, &target).await;
    AccessView {
        condition: Some(access_condition(
            previous,
            outcome.drift.as_deref(),
            outcome.failure.as_ref(),
            now,
            object.generation,
        )),
        failed: outcome.failure.is_some(),
        status: Some(outcome.status),
    }
}

fn desired_status(
    object: &ManagedSecretObject,
    spec: &ManagedSecretSpec,
    validated: &ValidatedSpec,
    state: &RotationState,
    consumers: &[keyturn_crds::ConsumerStatus],
    secret_name: &str,
    access: &AccessView,
) -> ManagedSecretStatus {
    let due = match &state.in_flight {
        Some(in_flight) => Some((in_flight.due_at, in_flight.reason)),
        None => next_due(
            &validated.policy,
            state,
            Utc::now(),
            object.rotate_request.as_deref(),
        )
        .map(|due| (due.at, due.reason)),
    };
    let mut rotation = state.clone();
    // The audit store answered, or this status would not be written.
    rotation.conditions.retain(|condition| {
        condition.type_ != AUDIT_UNAVAILABLE && condition.type_ != ACCESS_DRIFT
    });
    rotation.conditions.extend(access.condition.clone());
    ManagedSecretStatus {
        observed_generation: object.generation,
        rotator: Some(validated.rotator.as_str().to_owned()),
        rotation,
        secret_name: state.current.as_ref().map(|_| secret_name.to_owned()),
        consumers: consumers.to_vec(),
        preview: Some(preview(spec, state, due, validated.policy.ttl, secret_name)),
        access: access.status.clone(),
        reads: object.status.reads.clone(),
    }
}

fn requeue(decision: &Plan, access_failed: bool) -> Action {
    let after = match decision.requeue_after(Utc::now()) {
        Some(after) => (after + REQUEUE_MARGIN).min(MAX_REQUEUE),
        None => MAX_REQUEUE,
    };
    // A failed binding write is retried soon even when no rotation is near.
    Action::requeue(if access_failed {
        after.min(ACCESS_RETRY)
    } else {
        after
    })
}

/// The audit store refused the records: no step runs. The condition and metric say why, and
/// the reconcile comes back soon; nothing else in status changes, so the records the core
/// produced are produced again once the store is back.
async fn audit_unavailable(
    object: &ManagedSecretObject,
    context: &Arc<Context>,
    writer: &mut StatusWriter<'_>,
    error: &str,
) -> Result<Action, ReconcileError> {
    context.metrics.set_audit_unavailable(true);
    tracing::error!(managed_secret = %object.key(), %error, "audit store unavailable; rotation steps wait");
    let mut desired = writer.stored().clone();
    let message = format!(
        "audit records cannot be written, so no rotation step runs until they can: {error}"
    );
    let now = keyturn_core::state::whole_seconds(Utc::now());
    let previous = desired
        .rotation
        .conditions
        .iter()
        .find(|condition| condition.type_ == AUDIT_UNAVAILABLE)
        .cloned();
    desired
        .rotation
        .conditions
        .retain(|condition| condition.type_ != AUDIT_UNAVAILABLE);
    desired.rotation.conditions.push(Condition {
        type_: AUDIT_UNAVAILABLE.to_owned(),
        status: ConditionStatus::True,
        reason: "AuditStoreUnavailable".to_owned(),
        message: message.clone(),
        last_transition_time: previous
            .filter(|previous| previous.status == ConditionStatus::True)
            .map_or(now, |previous| previous.last_transition_time),
        observed_generation: object.generation,
    });
    if writer
        .write(&desired)
        .await
        .map_err(|source| ReconcileError::status(object, source))?
    {
        events::publish(
            context,
            object,
            EventType::Warning,
            "AuditUnavailable",
            "Audit",
            &message,
        )
        .await;
    }
    Ok(Action::requeue(AUDIT_RETRY))
}
