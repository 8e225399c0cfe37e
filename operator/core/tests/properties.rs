//! Property tests over long simulated runs: the operator loop is played with a fixed, advancing
//! clock, waking exactly at each requeue_at. Case counts are modest because tests run unoptimised;
//! raise them with PROPTEST_CASES for a soak run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use common::*;
use keyturn_core::{
    Action, AuditAction, CronTrigger, Observation, RotateBefore, RotationPolicy, RotationState,
    Step, StepOutcome, Trigger, plan,
};
use proptest::prelude::*;

const START: &str = "2024-01-01T00:00:00Z";

/// `cases` unless PROPTEST_CASES asks for a different number (e.g. a soak run).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn policy_strategy() -> impl Strategy<Value = (RotationPolicy, u64)> {
    // (trigger, ttl hours, rotate_before seconds, step latency seconds)
    (
        prop_oneof![
            (1u64..2_000).prop_map(|hours| Trigger::Interval {
                every: HOUR * hours as u32
            }),
            (
                0u32..24,
                prop::sample::select(vec![
                    "UTC",
                    "Europe/Berlin",
                    "America/New_York",
                    "Australia/Sydney"
                ])
            )
                .prop_map(|(hour, zone)| Trigger::Cron(
                    CronTrigger::parse(&format!("0 {hour} * * *"), Some(zone), Some(HOUR)).unwrap()
                )),
        ],
        2u64..3_000,
        1u64..=60,
        prop::bool::ANY,
    )
        .prop_flat_map(|(trigger, ttl_hours, latency, percent)| {
            let ttl = ttl_hours * 3600;
            // Rotating must leave time for a whole rotation (7 steps) before expiry.
            let minimum = 7 * latency + 1;
            let before = if percent {
                // Percent of the lifetime that is at least `minimum` seconds.
                let low = ((minimum * 100).div_ceil(ttl)).max(1) as u8;
                (low.min(99)..=99u8).prop_map(RotateBefore::Percent).boxed()
            } else {
                (minimum..ttl)
                    .prop_map(|seconds| RotateBefore::Duration(Duration::from_secs(seconds)))
                    .boxed()
            };
            (Just(trigger), Just(ttl), before, Just(latency))
        })
        .prop_map(|(trigger, ttl, before, latency)| {
            let policy = RotationPolicy {
                trigger,
                rotate_before: Some(before),
                ttl: Some(Duration::from_secs(ttl)),
                paused: false,
            };
            (policy, latency)
        })
}

proptest! {
    #![proptest_config(config(64))]

    /// (a) + (b): with every step succeeding `latency` after it is asked, no credential is ever
    /// used past its expiry, and every wake-up and next-rotation time lies in the future.
    #[test]
    fn rotations_always_beat_expiry((policy, latency) in policy_strategy(), backend_reports_expiry: bool) {
        policy.validate().unwrap();
        let ttl = policy.ttl.unwrap();
        let mut harness = Harness::new(policy, at(START));
        harness.issued_lifetime = backend_reports_expiry.then_some(ttl);
        let end = at("2025-01-01T00:00:00Z");
        let mut completed = 0u64;
        while harness.now < end && completed < 40 {
            let plan = harness.plan();
            if let Some(expires_at) = harness.state.expires_at {
                prop_assert!(expires_at > harness.now, "credential expired at {expires_at}, now {}", harness.now);
            }
            match plan.action {
                Action::Run { .. } => {
                    let plan = harness.complete_rotation(plan, Duration::from_secs(latency));
                    prop_assert_eq!(plan.action, Action::Wait);
                    completed += 1;
                }
                Action::Wait => {
                    prop_assert!(harness.state.in_flight.is_none());
                    let next = harness.state.next_rotation_time.unwrap();
                    prop_assert!(next > harness.now);
                    let requeue_at = plan.requeue_at.unwrap();
                    prop_assert!(requeue_at <= next);
                    harness.advance_to(requeue_at);
                }
            }
        }
        prop_assert_eq!(harness.state.revision, completed);
    }

    /// (b) From arbitrary persisted states, the plan never asks to wake in the past.
    #[test]
    fn requeue_is_never_in_the_past(
        (policy, _) in policy_strategy(),
        paused: bool,
        issued_offset in -5_000i64..5_000,
        lifetime in proptest::option::of(1i64..10_000),
        last_offset in proptest::option::of(-5_000i64..0),
        retry_offset in proptest::option::of(-100i64..100),
        in_flight_step in proptest::option::of(0usize..7),
        now_nanos in 0u32..1_000_000_000,
        manual in proptest::option::of("[a-c]"),
    ) {
        let mut policy = policy;
        policy.paused = paused;
        let now = at(START) + chrono::Duration::nanoseconds(i64::from(now_nanos));
        let hours = |h: i64| at(START) + chrono::Duration::hours(h);
        let mut state = RotationState {
            current: Some(credential("c", hours(issued_offset.min(0)), lifetime.map(|l| hours(issued_offset.min(0) + l)))),
            last_rotation_time: last_offset.map(hours),
            ..RotationState::default()
        };
        if let Some(index) = in_flight_step {
            state.in_flight = Some(keyturn_core::InFlight {
                rotation_id: "kt-x".into(),
                step: Step::ALL[index],
                reason: keyturn_core::DueReason::Schedule,
                due_at: hours(-1),
                started_at: hours(-1),
                staged: None,
            });
            state.retry_at = retry_offset.map(|seconds| at(START) + chrono::Duration::seconds(seconds));
        }
        let observation = Observation {
            uid: UID,
            generation: Some(1),
            policy: &policy,
            state: &state,
            now,
            manual_request: manual.as_deref(),
        };
        let plan = plan(&observation);
        if let Some(requeue_at) = plan.requeue_at {
            prop_assert!(requeue_at > now);
            prop_assert_eq!(requeue_at, keyturn_core::whole_seconds(requeue_at));
        }
        if let (Action::Wait, false, None, Some(next)) =
            (&plan.action, paused, &plan.state.in_flight, plan.state.next_rotation_time)
        {
            prop_assert!(next > now);
        }
    }
}

/// Local calendar dates of consecutive fire times in `zone` must be consecutive days.
fn assert_daily(dates: &[NaiveDate]) -> Result<(), TestCaseError> {
    for pair in dates.windows(2) {
        prop_assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::days(1),
            "after {}",
            pair[0]
        );
    }
    Ok(())
}

fn zone_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
    ])
}

fn start_strategy() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..(10 * 365)).prop_map(|days| at("2020-01-01T00:00:00Z") + chrono::Duration::days(days))
}

proptest! {
    #![proptest_config(config(256))]

    /// (c) at the schedule level: a daily cron fires exactly once per local calendar day across
    /// a year, whatever DST does to its hour.
    #[test]
    fn daily_cron_fires_once_per_day_across_dst(
        zone in zone_strategy(),
        hour in 0u32..24,
        minute in prop::sample::select(vec![0u32, 15, 30, 45]),
        start in start_strategy(),
    ) {
        let trigger = CronTrigger::parse(&format!("{minute} {hour} * * *"), Some(zone), None).unwrap();
        let tz: Tz = zone.parse().unwrap();
        let mut at = start;
        let mut dates = Vec::new();
        for _ in 0..400 {
            at = trigger.next_fire_after(at).unwrap();
            dates.push(at.with_timezone(&tz).date_naive());
        }
        assert_daily(&dates)?;
    }
}

proptest! {
    #![proptest_config(config(12))]

    /// (c) through the whole lifecycle: daily rotations over ~8 months (always crossing a DST
    /// change) start on every local day exactly once, inside their window.
    #[test]
    fn daily_rotation_neither_skips_nor_doubles_across_dst(
        zone in zone_strategy(),
        hour in 0u32..24,
        start in start_strategy(),
        latency in 1u64..120,
    ) {
        let trigger = CronTrigger::parse(&format!("30 {hour} * * *"), Some(zone), Some(HOUR)).unwrap();
        let tz: Tz = zone.parse().unwrap();
        let policy = RotationPolicy { trigger: Trigger::Cron(trigger), rotate_before: None, ttl: None, paused: false };
        let mut harness = Harness::new(policy, start);
        let end = start + chrono::Duration::days(240);
        let mut dates = Vec::new();
        while harness.now < end {
            let plan = harness.plan();
            match plan.action {
                Action::Run { .. } => {
                    let in_flight = harness.state.in_flight.clone().unwrap();
                    if in_flight.reason == keyturn_core::DueReason::Schedule {
                        prop_assert!(harness.now >= in_flight.due_at);
                        prop_assert!(harness.now < in_flight.due_at + chrono::Duration::hours(1));
                        dates.push(in_flight.due_at.with_timezone(&tz).date_naive());
                    }
                    harness.complete_rotation(plan, Duration::from_secs(latency));
                }
                Action::Wait => harness.advance_to(plan.requeue_at.unwrap()),
            }
        }
        prop_assert!(dates.len() > 200);
        assert_daily(&dates)?;
    }
}

#[derive(Debug, Clone)]
enum Noise {
    /// Replay an outcome reported earlier (a retry after a crash, a second replica).
    Replay(usize),
    /// Report an outcome for a rotation id that is not in flight.
    Foreign(usize, bool),
    /// The correct step fails transiently.
    Fail,
    /// The correct step says "not yet".
    Pending,
    /// The operator restarts and plans from status without reporting.
    Replan,
    /// Succeed normally.
    Succeed,
}

fn noise_strategy() -> impl Strategy<Value = Noise> {
    prop_oneof![
        2 => (0usize..1_000).prop_map(Noise::Replay),
        1 => (0usize..7, prop::bool::ANY).prop_map(|(step, success)| Noise::Foreign(step, success)),
        1 => Just(Noise::Fail),
        1 => Just(Noise::Pending),
        1 => Just(Noise::Replan),
        4 => Just(Noise::Succeed),
    ]
}

proptest! {
    #![proptest_config(config(96))]

    /// (d) Stale, duplicate and foreign outcomes in any order never rotate twice for one due
    /// time: each started rotation id is unique, completes at most once, and the revision grows
    /// by exactly one per completion.
    #[test]
    fn noise_never_double_rotates(noise in prop::collection::vec(noise_strategy(), 50..400), every_hours in 1u64..48) {
        let mut harness = Harness::new(interval_policy(HOUR * every_hours as u32), at(START));
        let mut reported: Vec<(String, Step, StepOutcome)> = Vec::new();
        let mut started = HashSet::new();
        let mut completed = HashSet::new();
        let mut due_times = BTreeSet::new();
        let mut plan = harness.plan();
        for item in noise {
            for event in &plan.audit {
                let id = event.rotation_id.clone().unwrap_or_default();
                match event.action {
                    AuditAction::RotationStarted => {
                        prop_assert!(started.insert(id), "rotation started twice");
                        let due_at = harness.state.in_flight.as_ref().unwrap().due_at;
                        prop_assert!(due_times.insert(due_at), "two rotations for due time {due_at}");
                    }
                    AuditAction::RotationCompleted => {
                        prop_assert!(started.contains(&id));
                        prop_assert!(completed.insert(id), "rotation completed twice");
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(harness.state.revision, completed.len() as u64);
            let Action::Run { rotation_id, step } = plan.action.clone() else {
                harness.advance_to(plan.requeue_at.unwrap());
                plan = harness.plan();
                continue;
            };
            harness.advance(Duration::from_secs(3));
            plan = match item {
                Noise::Replay(index) if !reported.is_empty() => {
                    let (id, step, outcome) = reported[index % reported.len()].clone();
                    harness.report(&id, step, outcome)
                }
                Noise::Foreign(index, success) => {
                    let outcome = if success {
                        StepOutcome::Succeeded { credential: Some(credential("foreign", harness.now, None)) }
                    } else {
                        StepOutcome::Failed { category: "x".into(), message: "y".into(), retryable: true }
                    };
                    harness.report("kt-foreign", Step::ALL[index], outcome)
                }
                Noise::Fail => {
                    let outcome = StepOutcome::Failed { category: "unreachable".into(), message: "timeout".into(), retryable: true };
                    reported.push((rotation_id.clone(), step, outcome.clone()));
                    harness.report(&rotation_id, step, outcome)
                }
                Noise::Pending => {
                    let outcome = StepOutcome::Pending { retry_after: Duration::from_secs(5) };
                    reported.push((rotation_id.clone(), step, outcome.clone()));
                    harness.report(&rotation_id, step, outcome)
                }
                Noise::Replan => harness.plan(),
                Noise::Succeed | Noise::Replay(_) => {
                    let outcome = harness.success_for(step);
                    reported.push((rotation_id.clone(), step, outcome.clone()));
                    harness.report(&rotation_id, step, outcome)
                }
            };
        }
    }
}
