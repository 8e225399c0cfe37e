//! "Is a rotation due, and when?": the earlier of the schedule (interval or cron window) and the
//! rotate-before-expiry rule, plus manual requests and first issuance. Pure functions of policy,
//! persisted state and an injected `now`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{DEFAULT_ROTATE_BEFORE, RotateBefore, RotationPolicy};
use crate::schedule::Trigger;
use crate::state::{RotationState, whole_seconds};

/// Why a rotation is (or was) due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DueReason {
    /// There is no current credential yet.
    Initial,
    Interval,
    Schedule,
    /// The rotate-before-expiry rule came first.
    ExpiryApproaching,
    /// The current credential has already expired.
    Expired,
    /// The rotate-request annotation changed.
    Manual,
}

impl DueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DueReason::Initial => "Initial",
            DueReason::Interval => "Interval",
            DueReason::Schedule => "Schedule",
            DueReason::ExpiryApproaching => "ExpiryApproaching",
            DueReason::Expired => "Expired",
            DueReason::Manual => "Manual",
        }
    }
}

impl std::fmt::Display for DueReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The next time a rotation should start; always whole seconds, so it survives a round trip
/// through status and the rotation id derived from it is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub at: DateTime<Utc>,
    pub reason: DueReason,
}

impl Due {
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.at <= now
    }
}

/// When the current credential stops working: the expiry the rotator reported, otherwise
/// issuance plus the policy's ttl, otherwise never.
pub fn credential_expiry(policy: &RotationPolicy, state: &RotationState) -> Option<DateTime<Utc>> {
    let current = state.current.as_ref()?;
    current
        .expires_at
        .or_else(|| policy.ttl.and_then(|ttl| add(current.issued_at, ttl)))
        .map(whole_seconds)
}

/// The rotate-request annotation value when it asks for a rotation not yet started.
pub fn pending_manual_request<'a>(
    state: &RotationState,
    manual_request: Option<&'a str>,
) -> Option<&'a str> {
    manual_request
        .filter(|request| !request.is_empty())
        .filter(|request| state.handled_rotate_request.as_deref() != Some(*request))
}

/// The next rotation to start, or `None` when paused or nothing will ever be due.
///
/// Ignores any in-flight rotation: the planner finishes that first.
pub fn next_due(
    policy: &RotationPolicy,
    state: &RotationState,
    now: DateTime<Utc>,
    manual_request: Option<&str>,
) -> Option<Due> {
    if policy.paused {
        return None;
    }
    due_ignoring_pause(policy, state, now, manual_request)
}

/// What [`next_due`] would return if the policy were not paused; used to say what a pause holds.
pub fn due_ignoring_pause(
    policy: &RotationPolicy,
    state: &RotationState,
    now: DateTime<Utc>,
    manual_request: Option<&str>,
) -> Option<Due> {
    let now = whole_seconds(now);
    let Some(current) = state.current.as_ref() else {
        return Some(Due {
            at: now,
            reason: DueReason::Initial,
        });
    };
    let base = state.last_rotation_time.unwrap_or(current.issued_at);
    let scheduled = match &policy.trigger {
        Trigger::Interval { every } => add(base, *every).map(|at| Due {
            at,
            reason: DueReason::Interval,
        }),
        // Fires whose window closed before `now` are not caught up: starting from
        // `now - window` skips them, and a fire still open is found again on every call.
        Trigger::Cron(cron) => {
            let window_start = subtract(now, cron.window).unwrap_or(base);
            cron.next_fire_after(base.max(window_start)).map(|at| Due {
                at,
                reason: DueReason::Schedule,
            })
        }
    };
    let expiry = credential_expiry(policy, state);
    let expiry_driven = expiry.and_then(|expires_at| {
        rotate_at(
            current.issued_at,
            expires_at,
            policy.effective_rotate_before(),
        )
        .map(|at| Due {
            at,
            reason: DueReason::ExpiryApproaching,
        })
    });
    let manual = pending_manual_request(state, manual_request).map(|_| Due {
        at: now,
        reason: DueReason::Manual,
    });
    // Earliest wins; on a tie the order below decides, keeping due times that do not depend
    // on `now` (and so give a stable rotation id) ahead of the manual request.
    let mut due = [scheduled, expiry_driven, manual]
        .into_iter()
        .flatten()
        .map(|due| Due {
            at: whole_seconds(due.at),
            reason: due.reason,
        })
        .min_by_key(|due| due.at)?;
    if due.is_due(now) && expiry.is_some_and(|expires_at| expires_at <= now) {
        due.reason = DueReason::Expired;
    }
    Some(due)
}

/// The instant the rotate-before rule asks for, never before issuance.
///
/// When the backend granted a lifetime no longer than a fixed `rotateBefore` (a Vault `max_ttl`
/// cap, say), honouring it would rotate again the moment each rotation completes; the default
/// share of the lifetime applies instead.
pub fn rotate_at(
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    rotate_before: RotateBefore,
) -> Option<DateTime<Utc>> {
    let lifetime = (expires_at - issued_at).to_std().unwrap_or(Duration::ZERO);
    let rotate_before = match rotate_before {
        RotateBefore::Duration(before) if before >= lifetime => DEFAULT_ROTATE_BEFORE,
        other => other,
    };
    let at = match rotate_before {
        RotateBefore::Duration(before) => subtract(expires_at, before)?,
        RotateBefore::Percent(percent) => {
            let lifetime = i128::from((expires_at - issued_at).num_seconds().max(0));
            let elapsed = lifetime * i128::from(100 - percent.min(100)) / 100;
            issued_at + chrono::Duration::seconds(i64::try_from(elapsed).ok()?)
        }
    };
    Some(at.max(issued_at))
}

pub(crate) fn add(time: DateTime<Utc>, duration: Duration) -> Option<DateTime<Utc>> {
    time.checked_add_signed(chrono::Duration::from_std(duration).ok()?)
}

pub(crate) fn subtract(time: DateTime<Utc>, duration: Duration) -> Option<DateTime<Utc>> {
    time.checked_sub_signed(chrono::Duration::from_std(duration).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::CredentialRef;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn rotate_at_follows_the_rule_and_never_precedes_issuance() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            rotate_at(at(0), at(100 * 3600), RotateBefore::Duration(hour)),
            Some(at(99 * 3600))
        );
        assert_eq!(
            rotate_at(at(0), at(100 * 3600), RotateBefore::Percent(25)),
            Some(at(75 * 3600))
        );
        // A lifetime shorter than rotateBefore falls back to two thirds of the lifetime.
        assert_eq!(
            rotate_at(at(1000), at(2000), RotateBefore::Duration(hour)),
            Some(at(1670))
        );
        assert_eq!(
            rotate_at(at(1000), at(500), RotateBefore::Percent(50)),
            Some(at(1000))
        );
    }

    #[test]
    fn empty_or_handled_requests_are_not_pending() {
        let state = RotationState {
            handled_rotate_request: Some("a".into()),
            ..RotationState::default()
        };
        assert_eq!(pending_manual_request(&state, Some("a")), None);
        assert_eq!(pending_manual_request(&state, Some("")), None);
        assert_eq!(pending_manual_request(&state, None), None);
        assert_eq!(pending_manual_request(&state, Some("b")), Some("b"));
    }

    #[test]
    fn no_credential_is_due_now_unless_paused() {
        let mut policy = RotationPolicy {
            trigger: Trigger::Interval {
                every: Duration::from_secs(60),
            },
            rotate_before: None,
            ttl: None,
            paused: false,
        };
        let state = RotationState::default();
        let now = DateTime::from_timestamp(50, 700).unwrap();
        assert_eq!(
            next_due(&policy, &state, now, None),
            Some(Due {
                at: at(50),
                reason: DueReason::Initial
            })
        );
        policy.paused = true;
        assert_eq!(next_due(&policy, &state, now, None), None);
        assert!(due_ignoring_pause(&policy, &state, now, None).is_some());
    }

    #[test]
    fn ttl_fills_in_a_missing_expiry() {
        let policy = RotationPolicy {
            trigger: Trigger::Interval {
                every: Duration::from_secs(60),
            },
            rotate_before: None,
            ttl: Some(Duration::from_secs(100)),
            paused: false,
        };
        let mut state = RotationState {
            current: Some(CredentialRef {
                id: "c".into(),
                fingerprint: "f".into(),
                issued_at: at(10),
                expires_at: None,
            }),
            ..RotationState::default()
        };
        assert_eq!(credential_expiry(&policy, &state), Some(at(110)));
        if let Some(current) = state.current.as_mut() {
            current.expires_at = Some(at(50));
        }
        assert_eq!(
            credential_expiry(&policy, &state),
            Some(at(50)),
            "the backend's word wins"
        );
    }
}
