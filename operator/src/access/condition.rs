//! The `AccessDrift` condition: True naming the bindings that grant broader read of the
//! Secret, False when there are none, and a failure reason when keyturn could not check or
//! could not write its own bindings. Pure, so its wording and timestamps are unit-tested.

use chrono::{DateTime, Utc};
use keyturn_core::state::{Condition, ConditionStatus, whole_seconds};
use keyturn_crds::AccessDrift;

pub const ACCESS_DRIFT: &str = "AccessDrift";
/// keyturn's own Role or RoleBinding could not be written (or its audit record could not).
pub const BINDING_FAILED: &str = "AccessBindingFailed";
/// The RBAC objects could not be listed, so drift is unknown.
pub const CHECK_FAILED: &str = "AccessCheckFailed";

/// Something that went wrong while reconciling access; rotations carry on regardless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFailure {
    pub reason: &'static str,
    pub message: String,
}

/// The condition for this reconcile. `drift` is `None` when it could not be determined. The
/// transition time moves only when the status does, so an unchanged verdict writes nothing.
pub fn access_condition(
    previous: Option<&Condition>,
    drift: Option<&[AccessDrift]>,
    failure: Option<&AccessFailure>,
    now: DateTime<Utc>,
    generation: Option<i64>,
) -> Condition {
    let status = match drift {
        Some([]) => ConditionStatus::False,
        Some(_) => ConditionStatus::True,
        None => ConditionStatus::Unknown,
    };
    let drift_message = match drift {
        Some([]) => "no binding grants broader read of the Secret".to_owned(),
        Some(found) => format!(
            "bindings granting read of the Secret beyond spec.access: {}",
            found
                .iter()
                .map(|drift| format!(
                    "{} ({} to {}: {})",
                    drift.binding,
                    drift.role,
                    drift.subjects.join(", "),
                    drift.verbs.join(", ")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        None => String::new(),
    };
    let (reason, message) = match (failure, status) {
        (Some(failure), _) if drift_message.is_empty() => {
            (failure.reason.to_owned(), failure.message.clone())
        }
        (Some(failure), _) => (
            failure.reason.to_owned(),
            format!("{}; {drift_message}", failure.message),
        ),
        (None, ConditionStatus::True) => ("BroaderSecretAccess".to_owned(), drift_message),
        (None, _) => ("NoBroaderAccess".to_owned(), drift_message),
    };
    let last_transition_time = previous
        .filter(|previous| previous.status == status)
        .map_or_else(
            || whole_seconds(now),
            |previous| previous.last_transition_time,
        );
    Condition {
        type_: ACCESS_DRIFT.to_owned(),
        status,
        reason,
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift() -> Vec<AccessDrift> {
        vec![AccessDrift {
            binding: "RoleBinding/readers".into(),
            role: "Role/secret-reader".into(),
            subjects: vec!["User/bob".into()],
            verbs: vec!["get".into()],
        }]
    }

    #[test]
    fn drift_is_named_and_its_absence_said() {
        let now = Utc::now();
        let found = access_condition(None, Some(&drift()), None, now, Some(3));
        assert_eq!(found.status, ConditionStatus::True);
        assert_eq!(found.reason, "BroaderSecretAccess");
        assert!(
            found.message.contains("RoleBinding/readers"),
            "{}",
            found.message
        );
        let clean = access_condition(None, Some(&[]), None, now, Some(3));
        assert_eq!(
            (clean.status, clean.reason.as_str()),
            (ConditionStatus::False, "NoBroaderAccess")
        );
    }

    #[test]
    fn the_transition_time_stays_while_the_status_does() {
        let earlier = whole_seconds(Utc::now() - chrono::Duration::hours(1));
        let previous = access_condition(None, Some(&[]), None, earlier, None);
        let again = access_condition(Some(&previous), Some(&[]), None, Utc::now(), None);
        assert_eq!(again, previous);
        let changed = access_condition(Some(&previous), Some(&drift()), None, Utc::now(), None);
        assert!(changed.last_transition_time > earlier);
    }

    #[test]
    fn a_failure_gives_the_reason_and_keeps_the_drift() {
        let failure = AccessFailure {
            reason: BINDING_FAILED,
            message: "failed to apply RoleBinding payments/orders-keyturn-read: forbidden".into(),
        };
        let condition = access_condition(None, Some(&drift()), Some(&failure), Utc::now(), None);
        assert_eq!(condition.reason, "AccessBindingFailed");
        assert_eq!(condition.status, ConditionStatus::True);
        assert!(
            condition.message.contains("forbidden")
                && condition.message.contains("RoleBinding/readers")
        );
        let unknown = access_condition(None, None, Some(&failure), Utc::now(), None);
        assert_eq!(unknown.status, ConditionStatus::Unknown);
    }
}
