//! The entry points the operator calls: `plan` (what to do now) and `record_outcome` (fold the
//! result of a step into the state, then plan again). Both return the complete next status,
//! the audit records to append before acting, and the exact instant to look again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::audit::{AuditAction, AuditEvent, AuditOutcome};
use crate::backoff::{MAX_DELAY, retry_delay};
use crate::conditions::{
    self, ConditionContext, EXPIRED, PAUSED, REASON_ROTATION_HELD, compute_conditions, timestamp,
};
use crate::due::{
    Due, add, credential_expiry, due_ignoring_pause, next_due, pending_manual_request,
};
use crate::machine::{Step, rotation_id};
use crate::policy::RotationPolicy;
use crate::state::{
    ConditionStatus, CredentialRef, Failure, InFlight, RotationState, whole_seconds,
};

/// Failure messages are kept short in status; the full text belongs in logs.
const MAX_FAILURE_MESSAGE_CHARS: usize = 512;

/// What the operator knows when it asks the lifecycle for a decision.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// `metadata.uid`, part of the rotation id so two resources never share one.
    pub uid: &'a str,
    /// `metadata.generation`, written to the conditions' `observedGeneration`.
    pub generation: Option<i64>,
    pub policy: &'a RotationPolicy,
    /// The state as last persisted in `status`.
    pub state: &'a RotationState,
    pub now: DateTime<Utc>,
    /// The rotate-request annotation's value; a value not yet handled requests a rotation.
    pub manual_request: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub action: Action,
    /// The status to persist (with optimistic concurrency) before running `action`.
    pub state: RotationState,
    /// Records to append to the audit log before persisting `state`.
    pub audit: Vec<AuditEvent>,
    /// When to reconcile again if nothing changes; always in the future, `None` for `Run` (the
    /// operator reports the outcome right away) or when nothing will ever be due.
    pub requeue_at: Option<DateTime<Utc>>,
}

impl Plan {
    /// `requeue_at` as a delay from `now`, for controllers that requeue after a duration.
    pub fn requeue_after(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.requeue_at
            .map(|at| (at - now).to_std().unwrap_or(Duration::ZERO))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Wait,
    /// Run `step` of rotation `rotation_id`, then call [`record_outcome`].
    Run {
        rotation_id: String,
        step: Step,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step is done. Stage must return the staged credential; any step up to Publish may
    /// return a refreshed ref of it (e.g. the backend's real expiry), later steps of the current.
    Succeeded { credential: Option<CredentialRef> },
    /// Not finished yet (e.g. a rollout still progressing); ask again after `retry_after`.
    Pending { retry_after: Duration },
    /// `message` must not contain credential values.
    Failed {
        category: String,
        message: String,
        retryable: bool,
    },
}

/// Decides what to do now from the persisted state.
pub fn plan(observation: &Observation<'_>) -> Plan {
    decide(observation, observation.state.clone(), Vec::new())
}

/// Folds the outcome of `step` of `rotation_id` into the state, then decides what to do next.
///
/// An outcome that does not match the in-flight rotation and step (a duplicate after a crash,
/// a stale report, another rotation) changes nothing but an audit note: every rotation advances
/// at most once per step, so a rotation is never repeated and the revision never skips.
pub fn record_outcome(
    observation: &Observation<'_>,
    rotation_id: &str,
    step: Step,
    outcome: StepOutcome,
) -> Plan {
    let now = observation.now;
    let mut state = observation.state.clone();
    let mut audit = Vec::new();
    let in_flight = match state.in_flight.take() {
        Some(in_flight) if in_flight.rotation_id == rotation_id && in_flight.step == step => {
            in_flight
        }
        other => {
            let details = match &other {
                Some(in_flight) => format!(
                    "ignored outcome for {step} of {rotation_id}: rotation {} is at {}",
                    in_flight.rotation_id, in_flight.step
                ),
                None => {
                    format!("ignored outcome for {step} of {rotation_id}: no rotation is in flight")
                }
            };
            state.in_flight = other;
            audit.push(
                AuditEvent::new(
                    now,
                    AuditAction::StaleOutcomeIgnored,
                    AuditOutcome::Skipped,
                    details,
                )
                .rotation(rotation_id)
                .step(step),
            );
            return decide(observation, state, audit);
        }
    };
    match outcome {
        StepOutcome::Succeeded { credential } => {
            succeed(observation, &mut state, &mut audit, in_flight, credential);
        }
        StepOutcome::Pending { retry_after } => {
            let retry_after =
                round_up_to_second(retry_after).clamp(Duration::from_secs(1), MAX_DELAY);
            state.retry_at = add(whole_seconds(now), retry_after);
            audit.push(
                AuditEvent::new(
                    now,
                    AuditAction::StepPending,
                    AuditOutcome::Pending,
                    format!(
                        "{step} not finished; checking again at {}",
                        optional_timestamp(state.retry_at)
                    ),
                )
                .rotation(rotation_id)
                .step(step),
            );
            state.in_flight = Some(in_flight);
        }
        StepOutcome::Failed {
            category,
            message,
            retryable,
        } => fail(
            observation,
            &mut state,
            &mut audit,
            in_flight,
            category,
            message,
            retryable,
        ),
    }
    decide(observation, state, audit)
}

fn succeed(
    observation: &Observation<'_>,
    state: &mut RotationState,
    audit: &mut Vec<AuditEvent>,
    mut in_flight: InFlight,
    credential: Option<CredentialRef>,
) {
    let now = observation.now;
    let step = in_flight.step;
    if let Some(credential) = credential.map(CredentialRef::normalized) {
        if step.is_after_publish() {
            if let Some(current) = state
                .current
                .as_mut()
                .filter(|current| current.id == credential.id)
            {
                *current = credential;
            }
        } else {
            in_flight.staged = Some(credential);
        }
    }
    let contract_broken = match step {
        Step::Stage | Step::Publish => in_flight.staged.is_none(),
        _ => false,
    };
    if contract_broken {
        let message = format!("{step} reported success without the staged credential reference");
        return fail(
            observation,
            state,
            audit,
            in_flight,
            "InvalidOutcome".into(),
            message,
            true,
        );
    }
    let staged_fingerprint = in_flight
        .staged
        .as_ref()
        .map(|staged| staged.fingerprint.clone());
    if step == Step::Publish
        && let Some(staged) = in_flight.staged.clone()
    {
        // Publish is the point of no return: from here the new credential is current and
        // the old one is only kept valid until consumers have rolled out.
        state.previous = state.current.replace(staged);
        audit.push(
            AuditEvent::new(
                now,
                AuditAction::CredentialPublished,
                AuditOutcome::Success,
                "new credential is current",
            )
            .rotation(&in_flight.rotation_id)
            .step(step)
            .fingerprint(staged_fingerprint.as_deref()),
        );
    }
    state.failed_attempts = 0;
    state.retry_at = None;
    audit.push(
        AuditEvent::new(
            now,
            AuditAction::StepCompleted,
            AuditOutcome::Success,
            format!("{step} completed"),
        )
        .rotation(&in_flight.rotation_id)
        .step(step)
        .fingerprint(staged_fingerprint.as_deref()),
    );
    match step.next() {
        Some(next) => {
            in_flight.step = next;
            state.in_flight = Some(in_flight);
        }
        None => {
            state.previous = None;
            state.revision += 1;
            state.last_rotation_time = Some(whole_seconds(now));
            let fingerprint = state
                .current
                .as_ref()
                .map(|current| current.fingerprint.as_str());
            audit.push(
                AuditEvent::new(
                    now,
                    AuditAction::RotationCompleted,
                    AuditOutcome::Success,
                    format!(
                        "rotation ({}, due at {}) completed; revision is now {}",
                        in_flight.reason,
                        timestamp(in_flight.due_at),
                        state.revision
                    ),
                )
                .rotation(&in_flight.rotation_id)
                .fingerprint(fingerprint),
            );
            state.in_flight = None;
        }
    }
}

/// The step stays where it is: it is resumed, never rolled back, because after Publish
/// consumers may already use the new credential and before it the old one is still in use.
fn fail(
    observation: &Observation<'_>,
    state: &mut RotationState,
    audit: &mut Vec<AuditEvent>,
    in_flight: InFlight,
    category: String,
    message: String,
    retryable: bool,
) {
    let now = observation.now;
    let step = in_flight.step;
    let message: String = message.chars().take(MAX_FAILURE_MESSAGE_CHARS).collect();
    state.failed_attempts = state.failed_attempts.saturating_add(1);
    let time_to_expiry =
        credential_expiry(observation.policy, state).map(|expires_at| expires_at - now);
    let delay = retry_delay(state.failed_attempts, time_to_expiry, retryable);
    state.retry_at = add(whole_seconds(now), delay);
    audit.push(
        AuditEvent::new(
            now,
            AuditAction::StepFailed,
            AuditOutcome::Failure,
            format!(
                "{step} failed ({category}, {}, attempt {}): {message}; retrying at {}",
                if retryable { "retryable" } else { "permanent" },
                state.failed_attempts,
                optional_timestamp(state.retry_at)
            ),
        )
        .rotation(&in_flight.rotation_id)
        .step(step),
    );
    state.last_failure = Some(Failure {
        step: Some(step),
        category,
        message,
        retryable,
        time: whole_seconds(now),
        generation: observation.generation,
    });
    state.in_flight = Some(in_flight);
}

/// Everything after the state transition: start or resume a rotation or wait, keep the derived
/// fields current, recompute conditions and pick the requeue instant.
fn decide(
    observation: &Observation<'_>,
    mut state: RotationState,
    mut audit: Vec<AuditEvent>,
) -> Plan {
    let now = observation.now;
    let policy = observation.policy;
    state.expires_at = credential_expiry(policy, &state);
    let mut pending_manual = pending_manual_request(&state, observation.manual_request);
    let mut wake_candidates = vec![state.expires_at];
    let mut held = None;

    let action = if let Some(in_flight) = state.in_flight.clone() {
        if permanent_failure_spec_changed(&state, observation.generation) {
            state.retry_at = None;
        }
        state.next_rotation_time = Some(in_flight.due_at);
        match state.retry_at.filter(|retry_at| *retry_at > now) {
            Some(retry_at) => {
                wake_candidates.push(Some(retry_at));
                Action::Wait
            }
            None => {
                state.retry_at = None;
                Action::Run {
                    rotation_id: in_flight.rotation_id,
                    step: in_flight.step,
                }
            }
        }
    } else {
        state.retry_at = None;
        let due = next_due(policy, &state, now, observation.manual_request);
        if policy.paused {
            held = due_ignoring_pause(policy, &state, now, observation.manual_request);
            wake_candidates.push(held.map(|due| due.at));
        }
        state.next_rotation_time = due.map(|due| due.at);
        match due {
            Some(due) if due.is_due(now) => {
                let action = start(observation, &mut state, &mut audit, due, pending_manual);
                pending_manual = None;
                action
            }
            Some(due) => {
                wake_candidates.push(Some(due.at));
                Action::Wait
            }
            None => Action::Wait,
        }
    };

    let context = ConditionContext {
        now,
        observed_generation: observation.generation,
        paused: policy.paused,
        held,
        pending_manual_request: pending_manual,
    };
    let conditions = compute_conditions(&state, &context);
    audit.extend(transition_events(&state, &conditions, now));
    state.conditions = conditions;

    let requeue_at = match action {
        Action::Run { .. } => None,
        Action::Wait => wake_candidates
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .min(),
    };
    Plan {
        action,
        state,
        audit,
        requeue_at,
    }
}

fn start(
    observation: &Observation<'_>,
    state: &mut RotationState,
    audit: &mut Vec<AuditEvent>,
    due: Due,
    pending_manual: Option<&str>,
) -> Action {
    let now = observation.now;
    let id = rotation_id(observation.uid, state.revision, due.at);
    if let Some(request) = pending_manual {
        // Any rotation starting now satisfies "rotate now", whatever made it due first.
        state.handled_rotate_request = Some(request.to_owned());
        audit.push(
            AuditEvent::new(
                now,
                AuditAction::ManualRequestAccepted,
                AuditOutcome::Success,
                format!("rotate request {request:?} accepted"),
            )
            .rotation(&id),
        );
    }
    let fingerprint = state
        .current
        .as_ref()
        .map(|current| current.fingerprint.as_str());
    audit.push(
        AuditEvent::new(
            now,
            AuditAction::RotationStarted,
            AuditOutcome::Success,
            format!(
                "rotation started ({}, due at {})",
                due.reason,
                timestamp(due.at)
            ),
        )
        .rotation(&id)
        .step(Step::Stage)
        .fingerprint(fingerprint),
    );
    state.in_flight = Some(InFlight {
        rotation_id: id.clone(),
        step: Step::Stage,
        reason: due.reason,
        due_at: due.at,
        started_at: whole_seconds(now),
        staged: None,
    });
    state.failed_attempts = 0;
    state.retry_at = None;
    Action::Run {
        rotation_id: id,
        step: Step::Stage,
    }
}

/// A permanent failure is retried at once when the spec generation has moved on since it
/// happened: the change may be the fix.
fn permanent_failure_spec_changed(state: &RotationState, generation: Option<i64>) -> bool {
    match (&state.last_failure, generation) {
        (Some(failure), Some(generation)) => {
            state.failed_attempts > 0
                && !failure.retryable
                && failure
                    .generation
                    .is_some_and(|failed_under| failed_under != generation)
        }
        _ => false,
    }
}

/// Audit records for condition changes worth an auditor's attention, emitted once per change
/// because the previous conditions are part of the persisted state.
fn transition_events(
    state: &RotationState,
    conditions: &[crate::state::Condition],
    now: DateTime<Utc>,
) -> Vec<AuditEvent> {
    let find = |list: &[crate::state::Condition], type_: &str| {
        list.iter()
            .find(|condition| condition.type_ == type_)
            .map(|condition| (condition.status, condition.reason.clone()))
    };
    let mut events = Vec::new();
    let expired_now =
        find(conditions, EXPIRED).is_some_and(|(status, _)| status == ConditionStatus::True);
    let expired_before =
        find(&state.conditions, EXPIRED).is_some_and(|(status, _)| status == ConditionStatus::True);
    if expired_now && !expired_before {
        let current = state.current.as_ref();
        events.push(
            AuditEvent::new(
                now,
                AuditAction::CredentialExpired,
                AuditOutcome::Failure,
                format!(
                    "credential {} expired at {}",
                    current.map_or("", |current| current.id.as_str()),
                    optional_timestamp(state.expires_at)
                ),
            )
            .fingerprint(current.map(|current| current.fingerprint.as_str())),
        );
    }
    let held = |list: &[crate::state::Condition]| {
        find(list, PAUSED).is_some_and(|(status, reason)| {
            status == ConditionStatus::True && reason == REASON_ROTATION_HELD
        })
    };
    if held(conditions) && !held(&state.conditions) {
        let message = conditions
            .iter()
            .find(|condition| condition.type_ == conditions::PAUSED)
            .map(|condition| condition.message.clone())
            .unwrap_or_default();
        events.push(AuditEvent::new(
            now,
            AuditAction::RotationSkippedPaused,
            AuditOutcome::Skipped,
            message,
        ));
    }
    events
}

fn round_up_to_second(duration: Duration) -> Duration {
    if duration.subsec_nanos() == 0 {
        duration
    } else {
        Duration::from_secs(duration.as_secs().saturating_add(1))
    }
}

fn optional_timestamp(time: Option<DateTime<Utc>>) -> String {
    time.map_or_else(|| "never".to_owned(), timestamp)
}
