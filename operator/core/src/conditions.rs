//! The status conditions Keyturn owns (Ready, Rotating, Degraded, Stalled, Expired, Paused),
//! computed from the rotation state with stable transition times. Conditions of other types
//! (e.g. `AccessEnforced`, set by another controller) are carried over untouched.
//!
//! Paused is its own condition rather than a note in Ready's message, so `kubectl wait` and
//! alerts can select on it, and so "a rotation is due but held" has a reason of its own.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::due::Due;
use crate::state::{Condition, ConditionStatus, RotationState, whole_seconds};

pub const READY: &str = "Ready";
pub const ROTATING: &str = "Rotating";
pub const DEGRADED: &str = "Degraded";
pub const STALLED: &str = "Stalled";
pub const EXPIRED: &str = "Expired";
pub const PAUSED: &str = "Paused";

/// Paused reason when a rotation is due (or requested) but held by the pause.
pub const REASON_ROTATION_HELD: &str = "RotationHeld";
/// Stalled reason set by [`stalled_for_invalid_spec`].
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// The API server accepts up to 32 KiB; status stays readable well below that.
const MAX_MESSAGE_CHARS: usize = 1024;

/// Everything the condition set depends on besides the state itself.
#[derive(Debug, Clone, Copy)]
pub struct ConditionContext<'a> {
    pub now: DateTime<Utc>,
    pub observed_generation: Option<i64>,
    pub paused: bool,
    /// The rotation a pause is holding back, if one would be due by now.
    pub held: Option<Due>,
    pub pending_manual_request: Option<&'a str>,
}

/// Recomputes the owned conditions of `state`, keeping `lastTransitionTime` of every condition
/// whose status did not change.
pub fn compute_conditions(state: &RotationState, context: &ConditionContext<'_>) -> Vec<Condition> {
    let now = context.now;
    let expired = state.expires_at.is_some_and(|expires_at| expires_at <= now);
    let failing = state.failed_attempts > 0;
    let failure = state.last_failure.as_ref().filter(|_| failing);
    let retry_note = state
        .retry_at
        .filter(|retry_at| *retry_at > now)
        .map(|retry_at| format!("; retrying at {}", timestamp(retry_at)))
        .unwrap_or_default();

    let ready = match (&state.current, state.expires_at) {
        (None, _) => draft(
            false,
            "NoCredential",
            "no credential has been issued yet".into(),
        ),
        (Some(current), Some(expires_at)) if expired => draft(
            false,
            "CredentialExpired",
            format!(
                "credential {} expired at {}",
                current.id,
                timestamp(expires_at)
            ),
        ),
        (Some(current), expires_at) => draft(
            true,
            "CredentialValid",
            format!(
                "credential {} (fingerprint {}) is valid{}",
                current.id,
                current.fingerprint,
                expires_at
                    .map(|at| format!(" until {}", timestamp(at)))
                    .unwrap_or_default()
            ),
        ),
    };
    let rotating = match &state.in_flight {
        Some(in_flight) => draft(
            true,
            in_flight.step.as_str(),
            format!(
                "rotation {} ({}) is at step {}{retry_note}",
                in_flight.rotation_id, in_flight.reason, in_flight.step
            ),
        ),
        None => draft(
            false,
            "Idle",
            match state.next_rotation_time {
                Some(next) => format!("next rotation at {}", timestamp(next)),
                None => "no rotation is scheduled".into(),
            },
        ),
    };
    let degraded = match failure {
        Some(failure) => draft(
            true,
            &reason_from_category(&failure.category),
            format!(
                "{} failed {} time(s): {}{retry_note}",
                failure.step.map_or("rotation", |step| step.as_str()),
                state.failed_attempts,
                failure.message
            ),
        ),
        None => draft(false, "NoFailure", "the last attempt succeeded".into()),
    };
    let stalled = match failure.filter(|failure| !failure.retryable) {
        Some(failure) => draft(
            true,
            &reason_from_category(&failure.category),
            format!(
                "permanent failure at {}: {}; retried when the spec changes{retry_note}",
                failure.step.map_or("rotation", |step| step.as_str()),
                failure.message
            ),
        ),
        None => draft(false, "NotStalled", "no permanent failure".into()),
    };
    let expired_condition = match (&state.current, state.expires_at) {
        (Some(current), Some(expires_at)) if expired => draft(
            true,
            "CredentialExpired",
            format!(
                "credential {} expired at {}",
                current.id,
                timestamp(expires_at)
            ),
        ),
        (Some(_), Some(expires_at)) => draft(
            false,
            "NotExpired",
            format!("credential expires at {}", timestamp(expires_at)),
        ),
        (Some(_), None) => draft(false, "NoExpiry", "credential does not expire".into()),
        (None, _) => draft(
            false,
            "NoCredential",
            "no credential has been issued yet".into(),
        ),
    };
    let paused = paused_condition(state, context);

    let owned = [
        (READY, ready),
        (ROTATING, rotating),
        (DEGRADED, degraded),
        (STALLED, stalled),
        (EXPIRED, expired_condition),
        (PAUSED, paused),
    ];
    let mut conditions: Vec<Condition> = owned
        .into_iter()
        .map(|(type_, draft)| finish(&state.conditions, type_, draft, context))
        .collect();
    conditions.extend(
        state
            .conditions
            .iter()
            .filter(|condition| !owned_type(&condition.type_))
            .cloned(),
    );
    conditions
}

fn paused_condition(state: &RotationState, context: &ConditionContext<'_>) -> Draft {
    if !context.paused {
        return draft(false, "NotPaused", "rotation is not paused".into());
    }
    let mut notes = Vec::new();
    if let Some(in_flight) = &state.in_flight {
        notes.push(format!(
            "rotation {} is finishing before the pause takes effect",
            in_flight.rotation_id
        ));
    }
    if let Some(request) = context.pending_manual_request {
        notes.push(format!(
            "rotate request {request:?} is pending until resumed"
        ));
    }
    let held = context.held.filter(|due| due.is_due(context.now));
    if let Some(due) = held {
        notes.push(format!(
            "a {} rotation due at {} is held",
            due.reason,
            timestamp(due.at)
        ));
    }
    let reason = if held.is_some() || context.pending_manual_request.is_some() {
        REASON_ROTATION_HELD
    } else {
        "PausedBySpec"
    };
    let message = if notes.is_empty() {
        "rotation is paused by spec.rotation.paused".to_owned()
    } else {
        format!("rotation is paused: {}", notes.join("; "))
    };
    draft(true, reason, message)
}

/// Marks the resource Stalled because its spec cannot be acted on; the operator calls this
/// instead of planning, and the next successful plan clears it.
pub fn stalled_for_invalid_spec(
    previous: &[Condition],
    message: &str,
    now: DateTime<Utc>,
    observed_generation: Option<i64>,
) -> Vec<Condition> {
    let context = ConditionContext {
        now,
        observed_generation,
        paused: false,
        held: None,
        pending_manual_request: None,
    };
    let stalled = finish(
        previous,
        STALLED,
        draft(true, REASON_INVALID_SPEC, message.to_owned()),
        &context,
    );
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|condition| condition.type_ != STALLED)
        .cloned()
        .collect();
    conditions.push(stalled);
    conditions
}

/// Condition type set from the reads the audit webhook recorded (`crate::reads`).
pub const UNEXPECTED_READER: &str = "UnexpectedReader";

/// The `UnexpectedReader` condition to store in place of the previous one: True (reason
/// `UnexpectedReader`) while service accounts not allowed by `spec.access` read the Secret in the
/// last 24 hours, naming them; False (`OnlyExpectedReaders`) otherwise. `None` removes it: the
/// ManagedSecret has no `spec.access`, so no reader can be unexpected.
pub fn unexpected_reader_condition(
    previous: &[Condition],
    access_declared: bool,
    unexpected: &[String],
    now: DateTime<Utc>,
    observed_generation: Option<i64>,
) -> Option<Condition> {
    if !access_declared {
        return None;
    }
    let context = ConditionContext {
        now,
        observed_generation,
        paused: false,
        held: None,
        pending_manual_request: None,
    };
    let draft = if unexpected.is_empty() {
        draft(
            false,
            "OnlyExpectedReaders",
            format!(
                "no service account outside spec.access read the Secret in the last {} hours",
                crate::reads::WINDOW_HOURS
            ),
        )
    } else {
        draft(
            true,
            "UnexpectedReader",
            format!(
                "service accounts not in spec.access read the Secret in the last {} hours: {}",
                crate::reads::WINDOW_HOURS,
                unexpected.join(", ")
            ),
        )
    };
    Some(finish(previous, UNEXPECTED_READER, draft, &context))
}

/// Turns a failure category such as `permission_denied` or `rate limited` into a valid
/// PascalCase condition reason (`PermissionDenied`, `RateLimited`).
pub fn reason_from_category(category: &str) -> String {
    let mut reason = String::new();
    for word in category.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            reason.push(first.to_ascii_uppercase());
            reason.extend(chars);
        }
    }
    match reason.chars().next() {
        None => "Failed".to_owned(),
        Some(first) if !first.is_ascii_alphabetic() => format!("Error{reason}"),
        Some(_) => reason,
    }
}

/// Second-precision RFC 3339, as status shows times.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn owned_type(type_: &str) -> bool {
    [READY, ROTATING, DEGRADED, STALLED, EXPIRED, PAUSED].contains(&type_)
}

struct Draft {
    status: ConditionStatus,
    reason: String,
    message: String,
}

fn draft(status: bool, reason: &str, message: String) -> Draft {
    Draft {
        status: if status {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.to_owned(),
        message,
    }
}

fn finish(
    previous: &[Condition],
    type_: &str,
    draft: Draft,
    context: &ConditionContext<'_>,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|condition| condition.type_ == type_ && condition.status == draft.status)
        .map_or(whole_seconds(context.now), |condition| {
            condition.last_transition_time
        });
    Condition {
        type_: type_.to_owned(),
        status: draft.status,
        reason: draft.reason,
        message: truncate(draft.message),
        last_transition_time,
        observed_generation: context.observed_generation,
    }
}

fn truncate(mut message: String) -> String {
    if let Some((index, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(index);
        message.push_str("...");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_pascal_case() {
        assert_eq!(
            reason_from_category("permission_denied"),
            "PermissionDenied"
        );
        assert_eq!(reason_from_category("rate limited"), "RateLimited");
        assert_eq!(reason_from_category("Unreachable"), "Unreachable");
        assert_eq!(reason_from_category("5xx"), "Error5xx");
        assert_eq!(reason_from_category(""), "Failed");
        assert_eq!(reason_from_category("--"), "Failed");
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let message = truncate("é".repeat(2000));
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn invalid_spec_sets_stalled_and_keeps_others() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let previous = vec![Condition {
            type_: "AccessEnforced".into(),
            status: ConditionStatus::True,
            reason: "RoleBound".into(),
            message: String::new(),
            last_transition_time: now,
            observed_generation: Some(1),
        }];
        let conditions = stalled_for_invalid_spec(
            &previous,
            "spec.rotation.every must be longer than zero",
            now,
            Some(2),
        );
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0], previous[0]);
        assert_eq!(conditions[1].type_, STALLED);
        assert_eq!(conditions[1].reason, REASON_INVALID_SPEC);
        assert_eq!(conditions[1].observed_generation, Some(2));
    }

    #[test]
    fn unexpected_reader_keeps_its_transition_time_while_unchanged() {
        let first: DateTime<Utc> = "2026-11-22T08:00:00Z".parse().unwrap();
        let later: DateTime<Utc> = "2026-11-22T09:00:00Z".parse().unwrap();
        assert_eq!(
            unexpected_reader_condition(&[], false, &[], first, Some(1)),
            None
        );
        let debug = vec!["system:serviceaccount:payments:debug".to_owned()];
        let set = unexpected_reader_condition(&[], true, &debug, first, Some(1)).unwrap();
        assert_eq!(
            (set.status, set.reason.as_str()),
            (ConditionStatus::True, "UnexpectedReader")
        );
        assert!(
            set.message
                .ends_with("system:serviceaccount:payments:debug")
        );
        let again =
            unexpected_reader_condition(std::slice::from_ref(&set), true, &debug, later, Some(2))
                .unwrap();
        assert_eq!(again.last_transition_time, first);
        let cleared = unexpected_reader_condition(&[again], true, &[], later, Some(2)).unwrap();
        assert_eq!(
            (
                cleared.status,
                cleared.reason.as_str(),
                cleared.last_transition_time
            ),
            (ConditionStatus::False, "OnlyExpectedReaders", later)
        );
    }
}
