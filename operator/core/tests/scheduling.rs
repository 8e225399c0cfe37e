//! When rotations become due: interval, cron windows, expiry, manual requests, pause; and what
//! the conditions and requeue times say meanwhile. Fixed clock throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use keyturn_core::conditions::{EXPIRED, PAUSED, READY, ROTATING};
use keyturn_core::{
    Action, AuditAction, ConditionStatus, CronTrigger, DueReason, RotateBefore, RotationPolicy,
    Step, Trigger, next_due, stalled_for_invalid_spec,
};

fn cron_policy(expression: &str, time_zone: &str, window: Duration) -> RotationPolicy {
    RotationPolicy {
        trigger: Trigger::Cron(
            CronTrigger::parse(expression, Some(time_zone), Some(window)).unwrap(),
        ),
        rotate_before: None,
        ttl: None,
        paused: false,
    }
}

fn reason_started(harness: &Harness) -> DueReason {
    harness.state.in_flight.as_ref().unwrap().reason
}

fn actions(plan: &keyturn_core::Plan) -> Vec<AuditAction> {
    plan.audit.iter().map(|event| event.action).collect()
}

/// A harness with a current credential rotated at `last` and the previous rotation done.
fn rotated_at(policy: RotationPolicy, last: &str, now: &str) -> Harness {
    let mut harness = Harness::new(policy, at(now));
    harness.state.current = Some(credential("cred-0", at(last), None));
    harness.state.last_rotation_time = Some(at(last));
    harness.state.revision = 3;
    harness
}

#[test]
fn interval_is_due_exactly_one_interval_after_the_last_rotation() {
    let mut harness = rotated_at(
        interval_policy(720 * HOUR),
        "2024-06-01T10:00:00Z",
        "2024-06-15T00:00:00Z",
    );
    let plan = harness.plan();
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(plan.requeue_at, Some(at("2024-07-01T10:00:00Z")));
    assert_eq!(
        harness.state.next_rotation_time,
        Some(at("2024-07-01T10:00:00Z"))
    );
    // Waking a second early (clock skew) asks for the same instant again, never a poll interval.
    harness.advance_to(at("2024-07-01T09:59:59.500Z"));
    assert_eq!(harness.plan().requeue_at, Some(at("2024-07-01T10:00:00Z")));
    harness.advance_to(at("2024-07-01T10:00:00Z"));
    let plan = harness.plan();
    let (id, step) = run_action(&plan);
    assert_eq!(step, Step::Stage);
    assert_eq!(
        id,
        keyturn_core::rotation_id(UID, 3, at("2024-07-01T10:00:00Z"))
    );
    assert_eq!(reason_started(&harness), DueReason::Interval);
}

#[test]
fn interval_without_history_counts_from_issuance() {
    let mut harness = Harness::new(interval_policy(24 * HOUR), at("2024-06-01T12:00:00Z"));
    harness.state.current = Some(credential("adopted", at("2024-06-01T06:00:00Z"), None));
    assert_eq!(harness.plan().requeue_at, Some(at("2024-06-02T06:00:00Z")));
}

#[test]
fn cron_starts_inside_the_window_with_a_stable_id() {
    // Sunday 03:00 Berlin (01:00 UTC in summer), window 2h.
    let policy = cron_policy("0 3 * * SUN", "Europe/Berlin", 2 * HOUR);
    let mut harness = rotated_at(
        policy.clone(),
        "2024-06-02T01:10:00Z",
        "2024-06-05T00:00:00Z",
    );
    let plan = harness.plan();
    assert_eq!(plan.requeue_at, Some(at("2024-06-09T01:00:00Z")));
    // Two replicas observing at different moments inside one window compute the same id.
    let mut other = rotated_at(policy, "2024-06-02T01:10:00Z", "2024-06-09T02:30:00Z");
    harness.advance_to(at("2024-06-09T01:00:00Z"));
    let (id, _) = run_action(&harness.plan());
    let (other_id, _) = run_action(&other.plan());
    assert_eq!(id, other_id);
    assert_eq!(reason_started(&harness), DueReason::Schedule);
    assert_eq!(
        harness.state.in_flight.as_ref().unwrap().due_at,
        at("2024-06-09T01:00:00Z")
    );
}

#[test]
fn a_missed_cron_window_is_not_caught_up() {
    let policy = cron_policy("0 3 * * SUN", "Europe/Berlin", 2 * HOUR);
    // The window of 2024-06-09 01:00-03:00 UTC passed while the operator was down.
    let mut harness = rotated_at(policy, "2024-06-02T01:10:00Z", "2024-06-09T03:00:00Z");
    let plan = harness.plan();
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(plan.requeue_at, Some(at("2024-06-16T01:00:00Z")));
    assert_eq!(
        harness.state.next_rotation_time,
        Some(at("2024-06-16T01:00:00Z"))
    );
}

#[test]
fn expiry_driven_rotation_comes_first_and_ignores_the_window() {
    let mut policy = cron_policy("0 3 * * SUN", "UTC", HOUR);
    policy.rotate_before = Some(RotateBefore::Duration(72 * HOUR));
    let mut harness = rotated_at(policy, "2024-06-02T03:00:00Z", "2024-06-03T00:00:00Z");
    // Expires Thursday 17:00: rotate Monday 17:00, far outside any Sunday 03:00 window.
    harness.state.current.as_mut().unwrap().expires_at = Some(at("2024-06-06T17:00:00Z"));
    assert_eq!(harness.plan().requeue_at, Some(at("2024-06-03T17:00:00Z")));
    harness.advance_to(at("2024-06-03T17:00:00Z"));
    run_action(&harness.plan());
    assert_eq!(reason_started(&harness), DueReason::ExpiryApproaching);
}

#[test]
fn schedule_wins_when_it_is_earlier_than_expiry() {
    let mut policy = interval_policy(24 * HOUR);
    policy.rotate_before = Some(RotateBefore::Duration(HOUR));
    let mut harness = rotated_at(policy, "2024-06-01T00:00:00Z", "2024-06-01T01:00:00Z");
    harness.state.current.as_mut().unwrap().expires_at = Some(at("2024-06-10T00:00:00Z"));
    assert_eq!(harness.plan().requeue_at, Some(at("2024-06-02T00:00:00Z")));
}

#[test]
fn rotate_before_percent_uses_the_credential_lifetime() {
    let mut policy = interval_policy(10_000 * HOUR);
    policy.rotate_before = Some(RotateBefore::Percent(20));
    let mut harness = Harness::new(policy, at("2024-06-01T00:00:00Z"));
    // 100h lifetime: rotate when 20% (20h) remain.
    harness.state.current = Some(credential(
        "c",
        at("2024-06-01T00:00:00Z"),
        Some(at("2024-06-05T04:00:00Z")),
    ));
    assert_eq!(harness.plan().requeue_at, Some(at("2024-06-04T08:00:00Z")));
}

#[test]
fn ttl_supplies_the_expiry_when_the_backend_reports_none() {
    let mut policy = interval_policy(10_000 * HOUR);
    policy.ttl = Some(90 * HOUR);
    let mut harness = Harness::new(policy, at("2024-06-01T00:00:00Z"));
    harness.state.current = Some(credential("c", at("2024-06-01T00:00:00Z"), None));
    harness.plan();
    assert_eq!(harness.state.expires_at, Some(at("2024-06-04T18:00:00Z")));
    // Default rotate-before: a third of the lifetime left, i.e. 67% of 90h = 60.3h.
    assert_eq!(
        harness.state.next_rotation_time,
        Some(at("2024-06-03T12:18:00Z"))
    );
}

#[test]
fn expired_credential_flips_conditions_on_time_and_audits_once() {
    let mut harness = rotated_at(
        interval_policy(720 * HOUR),
        "2024-06-01T00:00:00Z",
        "2024-06-01T00:00:00Z",
    );
    harness.policy.paused = true;
    harness.state.current.as_mut().unwrap().expires_at = Some(at("2024-06-02T00:00:00Z"));
    let plan = harness.plan();
    // Paused: wake when the default rotate-before (a third of the lifetime left) would have
    // rotated, to report the held rotation, then at the expiry itself.
    assert_eq!(plan.requeue_at, Some(at("2024-06-01T16:04:48Z")));
    harness.advance_to(at("2024-06-01T16:04:48Z"));
    let plan = harness.plan();
    assert_eq!(actions(&plan), vec![AuditAction::RotationSkippedPaused]);
    assert_eq!(plan.requeue_at, Some(at("2024-06-02T00:00:00Z")));
    assert_eq!(
        harness.state.condition(EXPIRED).unwrap().status,
        ConditionStatus::False
    );
    assert_eq!(
        harness.state.condition(READY).unwrap().status,
        ConditionStatus::True
    );
    harness.advance_to(at("2024-06-02T00:00:00Z"));
    let plan = harness.plan();
    assert!(actions(&plan).contains(&AuditAction::CredentialExpired));
    let ready = harness.state.condition(READY).unwrap();
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "CredentialExpired")
    );
    assert_eq!(ready.last_transition_time, at("2024-06-02T00:00:00Z"));
    assert_eq!(
        harness.state.condition(EXPIRED).unwrap().status,
        ConditionStatus::True
    );
    harness.advance(HOUR);
    let plan = harness.plan();
    assert!(
        !actions(&plan).contains(&AuditAction::CredentialExpired),
        "audited once"
    );
    assert_eq!(
        plan.requeue_at, None,
        "nothing left to wait for while paused"
    );
}

#[test]
fn expired_credential_rotates_with_reason_expired() {
    let mut harness = rotated_at(
        interval_policy(720 * HOUR),
        "2024-06-01T00:00:00Z",
        "2024-06-03T00:00:00Z",
    );
    harness.state.current.as_mut().unwrap().expires_at = Some(at("2024-06-02T00:00:00Z"));
    run_action(&harness.plan());
    assert_eq!(reason_started(&harness), DueReason::Expired);
}

#[test]
fn manual_request_rotates_once_per_value() {
    let mut harness = rotated_at(
        interval_policy(720 * HOUR),
        "2024-06-01T00:00:00Z",
        "2024-06-02T00:00:00Z",
    );
    harness.manual_request = Some("2024-06-02T00:00:00Z".into());
    let plan = harness.plan();
    assert!(actions(&plan).contains(&AuditAction::ManualRequestAccepted));
    assert_eq!(reason_started(&harness), DueReason::Manual);
    assert_eq!(
        harness.state.handled_rotate_request.as_deref(),
        Some("2024-06-02T00:00:00Z")
    );
    let plan = harness.complete_rotation(plan, Duration::from_secs(2));
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(harness.state.revision, 4);
    // The same value again (annotation still set) does nothing.
    harness.advance(HOUR);
    assert_eq!(harness.plan().action, Action::Wait);
    // A new value does.
    harness.manual_request = Some("again".into());
    run_action(&harness.plan());
    assert_eq!(reason_started(&harness), DueReason::Manual);
}

#[test]
fn manual_request_during_a_rotation_runs_after_it() {
    let mut harness = rotated_at(
        interval_policy(HOUR),
        "2024-06-01T00:00:00Z",
        "2024-06-01T01:00:00Z",
    );
    let plan = harness.plan();
    assert_eq!(reason_started(&harness), DueReason::Interval);
    harness.manual_request = Some("r1".into());
    let plan = harness.complete_rotation(plan, Duration::from_secs(1));
    // The request arrived after the rotation began, so a fresh one starts right away.
    run_action(&plan);
    assert_eq!(reason_started(&harness), DueReason::Manual);
    assert_eq!(harness.state.revision, 4);
}

#[test]
fn pause_holds_rotations_and_manual_requests() {
    let mut harness = rotated_at(
        interval_policy(24 * HOUR),
        "2024-06-01T00:00:00Z",
        "2024-06-01T12:00:00Z",
    );
    harness.policy.paused = true;
    let plan = harness.plan();
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(harness.state.next_rotation_time, None);
    // Wakes when the held rotation would be due, to say so.
    assert_eq!(plan.requeue_at, Some(at("2024-06-02T00:00:00Z")));
    assert_eq!(
        harness.state.condition(PAUSED).unwrap().reason,
        "PausedBySpec"
    );
    assert_eq!(
        next_due(&harness.policy, &harness.state, harness.now, None),
        None
    );

    harness.manual_request = Some("now-please".into());
    let plan = harness.plan();
    assert_eq!(plan.action, Action::Wait);
    assert_eq!(actions(&plan), vec![AuditAction::RotationSkippedPaused]);
    let paused = harness.state.condition(PAUSED).unwrap().clone();
    assert_eq!(paused.reason, "RotationHeld");
    assert!(paused.message.contains("now-please"), "{}", paused.message);
    assert_eq!(
        harness.state.handled_rotate_request, None,
        "request stays pending"
    );
    assert!(harness.plan().audit.is_empty(), "skip audited once");

    // Resume: the pending request runs.
    harness.policy.paused = false;
    run_action(&harness.plan());
    assert_eq!(reason_started(&harness), DueReason::Manual);
    assert_eq!(
        harness.state.condition(PAUSED).unwrap().status,
        ConditionStatus::False
    );
}

#[test]
fn pausing_mid_rotation_finishes_the_rotation() {
    let mut harness = rotated_at(
        interval_policy(HOUR),
        "2024-06-01T00:00:00Z",
        "2024-06-01T01:00:00Z",
    );
    let (id, _) = run_action(&harness.plan());
    for step in [Step::Stage, Step::Apply] {
        let outcome = harness.success_for(step);
        harness.report(&id, step, outcome);
    }
    harness.policy.paused = true;
    let plan = harness.plan();
    assert_eq!(run_action(&plan), (id.clone(), Step::Verify));
    assert!(
        harness
            .state
            .condition(PAUSED)
            .unwrap()
            .message
            .contains("finishing")
    );
    let plan = harness.complete_rotation(plan, Duration::from_secs(1));
    assert_eq!(plan.action, Action::Wait);
    assert!(harness.state.in_flight.is_none());
    harness.advance(10 * HOUR);
    assert_eq!(
        harness.plan().action,
        Action::Wait,
        "nothing new starts while paused"
    );
}

#[test]
fn conditions_keep_their_transition_time_while_unchanged() {
    let mut harness = rotated_at(
        interval_policy(720 * HOUR),
        "2024-06-01T00:00:00Z",
        "2024-06-01T00:00:00Z",
    );
    harness.plan();
    let first = harness.state.conditions.clone();
    harness.advance(HOUR);
    harness.generation = Some(7);
    harness.plan();
    for (before, after) in first.iter().zip(&harness.state.conditions) {
        assert_eq!(
            before.last_transition_time, after.last_transition_time,
            "{}",
            before.type_
        );
        assert_eq!(after.observed_generation, Some(7));
    }
    harness.manual_request = Some("go".into());
    harness.plan();
    let rotating = harness.state.condition(ROTATING).unwrap();
    assert_eq!(rotating.status, ConditionStatus::True);
    assert_eq!(rotating.last_transition_time, at("2024-06-01T01:00:00Z"));
}

#[test]
fn foreign_conditions_survive_and_invalid_spec_stall_clears() {
    let mut harness = rotated_at(
        interval_policy(720 * HOUR),
        "2024-06-01T00:00:00Z",
        "2024-06-01T00:00:00Z",
    );
    harness.plan();
    let mut conditions = harness.state.conditions.clone();
    conditions.push(keyturn_core::Condition {
        type_: "AccessEnforced".into(),
        status: ConditionStatus::True,
        reason: "RoleBound".into(),
        message: "role and binding in place".into(),
        last_transition_time: at("2024-05-01T00:00:00Z"),
        observed_generation: Some(1),
    });
    harness.state.conditions = stalled_for_invalid_spec(
        &conditions,
        "spec.rotation.every must be longer than zero",
        harness.now,
        Some(2),
    );
    assert_eq!(
        harness.state.condition("Stalled").unwrap().reason,
        "InvalidSpec"
    );
    harness.plan();
    assert_eq!(
        harness.state.condition("Stalled").unwrap().status,
        ConditionStatus::False
    );
    assert_eq!(
        harness.state.condition("AccessEnforced").unwrap().reason,
        "RoleBound"
    );
}

#[test]
fn requeue_is_the_earliest_pending_instant() {
    let mut policy = interval_policy(720 * HOUR);
    policy.rotate_before = Some(RotateBefore::Duration(HOUR));
    let mut harness = rotated_at(policy, "2024-06-01T00:00:00Z", "2024-06-01T00:00:00Z");
    harness.state.current.as_mut().unwrap().expires_at = Some(at("2024-06-03T00:00:00Z"));
    // Expiry-driven due (2024-06-02T23:00) is before the interval and the expiry instant.
    let plan = harness.plan();
    assert_eq!(plan.requeue_at, Some(at("2024-06-02T23:00:00Z")));
    assert_eq!(
        plan.requeue_after(harness.now),
        Some(Duration::from_secs(47 * 3600))
    );
}
