//! Every transition of the rotation state machine, with a fixed clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use keyturn_core::conditions::{DEGRADED, READY, ROTATING, STALLED};
use keyturn_core::{
    Action, AuditAction, ConditionStatus, DueReason, RotateBefore, Step, StepOutcome, rotation_id,
};

fn status(harness: &Harness, type_: &str) -> (ConditionStatus, String) {
    let condition = harness.state.condition(type_).unwrap();
    (condition.status, condition.reason.clone())
}

fn actions(plan: &keyturn_core::Plan) -> Vec<AuditAction> {
    plan.audit.iter().map(|event| event.action).collect()
}

fn failed(category: &str, retryable: bool) -> StepOutcome {
    StepOutcome::Failed {
        category: category.into(),
        message: "connection refused by 10.0.0.5:5432".into(),
        retryable,
    }
}

#[test]
fn initial_issuance_starts_at_once_with_a_deterministic_id() {
    let now = at("2024-06-01T00:00:00.750Z");
    let mut harness = Harness::new(interval_policy(720 * HOUR), now);
    let plan = harness.plan();
    let (id, step) = run_action(&plan);
    assert_eq!(step, Step::Stage);
    assert_eq!(id, rotation_id(UID, 0, at("2024-06-01T00:00:00Z")));
    let in_flight = harness.state.in_flight.clone().unwrap();
    assert_eq!(in_flight.reason, DueReason::Initial);
    assert_eq!(in_flight.started_at, at("2024-06-01T00:00:00Z"));
    assert_eq!(actions(&plan), vec![AuditAction::RotationStarted]);
    assert_eq!(plan.requeue_at, None);
    assert_eq!(
        status(&harness, READY),
        (ConditionStatus::False, "NoCredential".into())
    );
    assert_eq!(
        status(&harness, ROTATING),
        (ConditionStatus::True, "Stage".into())
    );
    // Planning again (a re-list) resumes the same rotation, it does not start another.
    let again = harness.plan();
    assert_eq!(run_action(&again), (id, Step::Stage));
    assert!(again.audit.is_empty());
}

#[test]
fn each_success_advances_one_step_and_publish_swaps_credentials() {
    let now = at("2024-06-01T00:00:00Z");
    let mut harness = Harness::new(interval_policy(720 * HOUR), now);
    harness.state.current = Some(credential("old", at("2024-05-01T00:00:00Z"), None));
    harness.state.last_rotation_time = Some(at("2024-05-01T00:00:00Z"));
    let mut plan = harness.plan();
    let (id, _) = run_action(&plan);
    assert_eq!(
        harness.state.in_flight.as_ref().unwrap().reason,
        DueReason::Interval
    );
    for step in keyturn_core::Step::ALL {
        assert_eq!(run_action(&plan), (id.clone(), step));
        harness.advance(Duration::from_secs(5));
        let outcome = harness.success_for(step);
        plan = harness.report(&id, step, outcome);
        match step {
            Step::Stage => {
                let staged = harness
                    .state
                    .in_flight
                    .as_ref()
                    .unwrap()
                    .staged
                    .clone()
                    .unwrap();
                assert_eq!(staged.id, "cred-1");
                assert_eq!(harness.state.current.as_ref().unwrap().id, "old");
            }
            Step::Apply | Step::Verify => {
                assert_eq!(harness.state.current.as_ref().unwrap().id, "old");
                assert!(harness.state.previous.is_none());
            }
            Step::Publish => {
                assert_eq!(harness.state.current.as_ref().unwrap().id, "cred-1");
                assert_eq!(harness.state.previous.as_ref().unwrap().id, "old");
                assert!(actions(&plan).contains(&AuditAction::CredentialPublished));
            }
            Step::RestartConsumers | Step::AwaitRollout => {
                assert_eq!(harness.state.previous.as_ref().unwrap().id, "old");
            }
            Step::RetirePrevious => {}
        }
        if step != Step::RetirePrevious {
            assert_eq!(harness.state.revision, 0);
            assert!(actions(&plan).contains(&AuditAction::StepCompleted));
        }
    }
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(harness.state.revision, 1);
    assert!(harness.state.previous.is_none());
    assert!(harness.state.in_flight.is_none());
    assert_eq!(
        harness.state.last_rotation_time,
        Some(at("2024-06-01T00:00:35Z"))
    );
    assert_eq!(harness.state.failed_attempts, 0);
    assert!(actions(&plan).contains(&AuditAction::RotationCompleted));
    // The next rotation is exactly one interval after completion.
    let next = at("2024-07-01T00:00:35Z");
    assert_eq!(harness.state.next_rotation_time, Some(next));
    assert_eq!(plan.requeue_at, Some(next));
    assert_eq!(
        status(&harness, ROTATING),
        (ConditionStatus::False, "Idle".into())
    );
}

#[test]
fn stage_without_a_credential_reference_is_a_failure() {
    let mut harness = Harness::new(interval_policy(HOUR), at("2024-06-01T00:00:00Z"));
    let (id, _) = run_action(&harness.plan());
    let plan = harness.report(
        &id,
        Step::Stage,
        StepOutcome::Succeeded { credential: None },
    );
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(harness.state.in_flight.as_ref().unwrap().step, Step::Stage);
    assert_eq!(harness.state.failed_attempts, 1);
    assert_eq!(
        harness.state.last_failure.as_ref().unwrap().category,
        "InvalidOutcome"
    );
}

#[test]
fn failure_keeps_the_step_backs_off_and_resumes_there() {
    let mut harness = Harness::new(interval_policy(720 * HOUR), at("2024-06-01T00:00:00Z"));
    harness.state.current = Some(credential("old", at("2024-05-01T00:00:00Z"), None));
    let (id, _) = run_action(&harness.plan());
    let outcome = harness.success_for(Step::Stage);
    harness.report(&id, Step::Stage, outcome);
    let plan = harness.report(&id, Step::Apply, failed("unreachable", true));
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(plan.requeue_at, Some(at("2024-06-01T00:00:10Z")));
    assert_eq!(harness.state.retry_at, Some(at("2024-06-01T00:00:10Z")));
    assert_eq!(harness.state.failed_attempts, 1);
    assert_eq!(actions(&plan), vec![AuditAction::StepFailed]);
    assert_eq!(
        status(&harness, DEGRADED),
        (ConditionStatus::True, "Unreachable".into())
    );
    assert_eq!(status(&harness, STALLED).0, ConditionStatus::False);
    assert_eq!(
        status(&harness, READY).0,
        ConditionStatus::True,
        "old credential still serves"
    );

    // Before retry_at: wait for exactly retry_at.
    harness.advance(Duration::from_secs(3));
    let plan = harness.plan();
    assert_eq!(
        (plan.action.clone(), plan.requeue_at),
        (Action::Wait, Some(at("2024-06-01T00:00:10Z")))
    );

    // At retry_at: the same step again, not Stage.
    harness.advance(Duration::from_secs(7));
    assert_eq!(run_action(&harness.plan()), (id.clone(), Step::Apply));
    let plan = harness.report(&id, Step::Apply, failed("unreachable", true));
    assert_eq!(harness.state.failed_attempts, 2);
    assert_eq!(plan.requeue_at, Some(at("2024-06-01T00:00:30Z")));

    harness.advance(Duration::from_secs(20));
    harness.plan();
    harness.report(
        &id,
        Step::Apply,
        StepOutcome::Succeeded { credential: None },
    );
    assert_eq!(harness.state.failed_attempts, 0);
    assert_eq!(harness.state.in_flight.as_ref().unwrap().step, Step::Verify);
    assert_eq!(status(&harness, DEGRADED).0, ConditionStatus::False);
    assert!(harness.state.last_failure.is_some(), "kept as history");
}

#[test]
fn failure_after_publish_never_rolls_back() {
    let mut harness = Harness::new(interval_policy(720 * HOUR), at("2024-06-01T00:00:00Z"));
    harness.state.current = Some(credential("old", at("2024-05-01T00:00:00Z"), None));
    let (id, _) = run_action(&harness.plan());
    for step in [Step::Stage, Step::Apply, Step::Verify, Step::Publish] {
        let outcome = harness.success_for(step);
        harness.report(&id, step, outcome);
    }
    harness.report(
        &id,
        Step::RestartConsumers,
        StepOutcome::Succeeded { credential: None },
    );
    harness.report(&id, Step::AwaitRollout, failed("rollout_failed", true));
    assert_eq!(
        harness.state.in_flight.as_ref().unwrap().step,
        Step::AwaitRollout
    );
    assert_eq!(harness.state.current.as_ref().unwrap().id, "cred-1");
    assert_eq!(
        harness.state.previous.as_ref().unwrap().id,
        "old",
        "previous stays valid"
    );
    assert_eq!(
        status(&harness, DEGRADED),
        (ConditionStatus::True, "RolloutFailed".into())
    );
}

#[test]
fn pending_waits_without_counting_a_failure() {
    let mut harness = Harness::new(interval_policy(720 * HOUR), at("2024-06-01T00:00:00Z"));
    let (id, _) = run_action(&harness.plan());
    for step in [
        Step::Stage,
        Step::Apply,
        Step::Verify,
        Step::Publish,
        Step::RestartConsumers,
    ] {
        let outcome = harness.success_for(step);
        harness.report(&id, step, outcome);
    }
    let plan = harness.report(
        &id,
        Step::AwaitRollout,
        StepOutcome::Pending {
            retry_after: Duration::from_millis(4_200),
        },
    );
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(plan.requeue_at, Some(at("2024-06-01T00:00:05Z")));
    assert_eq!(harness.state.failed_attempts, 0);
    assert_eq!(actions(&plan), vec![AuditAction::StepPending]);
    assert_eq!(status(&harness, DEGRADED).0, ConditionStatus::False);
    // A zero retry_after cannot make a hot loop.
    harness.advance(Duration::from_secs(5));
    harness.plan();
    let plan = harness.report(
        &id,
        Step::AwaitRollout,
        StepOutcome::Pending {
            retry_after: Duration::ZERO,
        },
    );
    assert_eq!(plan.requeue_at, Some(at("2024-06-01T00:00:06Z")));
}

#[test]
fn permanent_failure_stalls_and_retries_when_the_spec_changes() {
    let mut harness = Harness::new(interval_policy(720 * HOUR), at("2024-06-01T00:00:00Z"));
    let (id, _) = run_action(&harness.plan());
    let plan = harness.report(&id, Step::Stage, failed("permission denied", false));
    assert_eq!(plan.requeue_at, Some(at("2024-06-01T01:00:00Z")));
    assert_eq!(
        status(&harness, STALLED),
        (ConditionStatus::True, "PermissionDenied".into())
    );
    assert_eq!(status(&harness, DEGRADED).0, ConditionStatus::True);
    harness.advance(Duration::from_secs(60));
    assert_eq!(
        harness.plan().action,
        Action::Wait,
        "same generation: keep waiting"
    );
    harness.generation = Some(2);
    assert_eq!(run_action(&harness.plan()), (id.clone(), Step::Stage));
    let outcome = harness.success_for(Step::Stage);
    harness.report(&id, Step::Stage, outcome);
    assert_eq!(status(&harness, STALLED).0, ConditionStatus::False);
}

#[test]
fn stale_and_duplicate_outcomes_are_ignored() {
    let mut harness = Harness::new(interval_policy(720 * HOUR), at("2024-06-01T00:00:00Z"));
    let (id, _) = run_action(&harness.plan());
    let outcome = harness.success_for(Step::Stage);
    harness.report(&id, Step::Stage, outcome.clone());
    let before = harness.state.clone();

    // Duplicate Stage (a retry after a crash), a foreign rotation id, a future step.
    for (rotation, step) in [
        (id.as_str(), Step::Stage),
        ("kt-other", Step::Apply),
        (id.as_str(), Step::Publish),
    ] {
        let plan = harness.report(rotation, step, outcome.clone());
        assert_eq!(actions(&plan), vec![AuditAction::StaleOutcomeIgnored]);
        assert_eq!(run_action(&plan), (id.clone(), Step::Apply));
        assert_eq!(harness.state, before);
    }
    let plan = harness.report(&id, Step::Verify, failed("x", true));
    assert_eq!(
        harness.state.failed_attempts, 0,
        "a stale failure counts nothing"
    );
    assert_eq!(actions(&plan), vec![AuditAction::StaleOutcomeIgnored]);

    // After completion a duplicate RetirePrevious must not bump the revision again.
    let plan = harness.plan();
    harness.complete_rotation(plan, Duration::from_secs(1));
    assert_eq!(harness.state.revision, 1);
    let after = harness.state.clone();
    let plan = harness.report(
        &id,
        Step::RetirePrevious,
        StepOutcome::Succeeded { credential: None },
    );
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(harness.state, after);
}

#[test]
fn credential_refs_are_truncated_and_refreshed() {
    let mut harness = Harness::new(interval_policy(720 * HOUR), at("2024-06-01T00:00:00Z"));
    let (id, _) = run_action(&harness.plan());
    let staged = credential("cred-9", at("2024-06-01T00:00:00.999Z"), None);
    harness.report(
        &id,
        Step::Stage,
        StepOutcome::Succeeded {
            credential: Some(staged),
        },
    );
    let stored = harness
        .state
        .in_flight
        .as_ref()
        .unwrap()
        .staged
        .clone()
        .unwrap();
    assert_eq!(stored.issued_at, at("2024-06-01T00:00:00Z"));
    // Apply learns the backend's real expiry (VALID UNTIL).
    let refreshed = credential(
        "cred-9",
        at("2024-06-01T00:00:00Z"),
        Some(at("2024-09-01T00:00:00Z")),
    );
    harness.report(
        &id,
        Step::Apply,
        StepOutcome::Succeeded {
            credential: Some(refreshed),
        },
    );
    harness.report(
        &id,
        Step::Verify,
        StepOutcome::Succeeded { credential: None },
    );
    harness.report(
        &id,
        Step::Publish,
        StepOutcome::Succeeded { credential: None },
    );
    assert_eq!(harness.state.expires_at, Some(at("2024-09-01T00:00:00Z")));
}

#[test]
fn backoff_tightens_near_expiry() {
    let mut policy = interval_policy(720 * HOUR);
    policy.rotate_before = Some(RotateBefore::Duration(HOUR));
    let mut harness = Harness::new(policy, at("2024-06-01T00:00:00Z"));
    // Expires in 8 minutes: waits are capped at 1/8 of what remains.
    harness.state.current = Some(credential(
        "old",
        at("2024-05-25T00:00:00Z"),
        Some(at("2024-06-01T00:08:00Z")),
    ));
    let (id, _) = run_action(&harness.plan());
    assert_eq!(
        harness.state.in_flight.as_ref().unwrap().reason,
        DueReason::ExpiryApproaching
    );
    let mut delays = Vec::new();
    for _ in 0..6 {
        let plan = harness.report(&id, Step::Stage, failed("unreachable", true));
        let retry_at = plan.requeue_at.unwrap();
        delays.push((retry_at - harness.now).num_seconds());
        harness.advance_to(retry_at);
        harness.plan();
    }
    assert_eq!(delays, vec![10, 20, 40, 51, 44, 39]);
}

#[test]
fn a_backend_lifetime_shorter_than_rotate_before_does_not_loop() {
    // Vault caps the lifetime at 2h while the spec asks to rotate 72h before expiry.
    let mut policy = interval_policy(720 * HOUR);
    policy.rotate_before = Some(RotateBefore::Duration(72 * HOUR));
    let mut harness = Harness::new(policy, at("2024-06-01T00:00:00Z"));
    harness.issued_lifetime = Some(2 * HOUR);
    let plan = harness.plan();
    let plan = harness.complete_rotation(plan, Duration::from_secs(1));
    assert_eq!(plan.action, Action::Wait);
    // Issued at 00:00:01, expires 02:00:01: rotate at two thirds, not immediately.
    assert_eq!(plan.requeue_at, Some(at("2024-06-01T01:20:25Z")));
}
