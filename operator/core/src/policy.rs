//! The rotation policy after parsing the spec: what triggers a rotation, how long before expiry
//! to rotate, the lifetime the backend enforces, and whether rotation is paused. Owns the
//! consistency checks that CEL cannot express.

use std::time::Duration;

use crate::duration::format_duration;
use crate::schedule::Trigger;

/// When no `rotateBefore` is given but the credential expires, rotate once two thirds of its
/// lifetime have passed (cert-manager's default), so a credential is never left to run out.
pub const DEFAULT_ROTATE_BEFORE: RotateBefore = RotateBefore::Percent(33);

#[derive(Debug, Clone, PartialEq)]
pub struct RotationPolicy {
    pub trigger: Trigger,
    pub rotate_before: Option<RotateBefore>,
    /// The lifetime enforced at the backend; used when the rotator reports no expiry itself.
    pub ttl: Option<Duration>,
    pub paused: bool,
}

/// How long before the credential's real expiry a rotation becomes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateBefore {
    Duration(Duration),
    /// Percent (1-99) of the credential's lifetime, issued to expiry, left when rotating.
    Percent(u8),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("spec.rotation.every must be longer than zero")]
    ZeroInterval,
    #[error("spec.rotation.rotateBefore must be longer than zero")]
    ZeroRotateBefore,
    #[error("spec.rotation.rotateBeforePercent ({percent}) must be between 1 and 99")]
    PercentOutOfRange { percent: u8 },
    #[error("spec.expiry.ttl must be longer than zero")]
    ZeroTtl,
    #[error(
        "spec.rotation.rotateBefore ({rotate_before}) must be shorter than spec.expiry.ttl ({ttl})"
    )]
    RotateBeforeNotShorterThanTtl { rotate_before: String, ttl: String },
    #[error("spec.rotation.window must be longer than zero")]
    ZeroWindow,
}

impl RotationPolicy {
    /// Rejects policies that would rotate never, constantly, or only after expiry.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match &self.trigger {
            Trigger::Interval { every } if every.is_zero() => {
                return Err(PolicyError::ZeroInterval);
            }
            Trigger::Cron(cron) if cron.window.is_zero() => return Err(PolicyError::ZeroWindow),
            _ => {}
        }
        if self.ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(PolicyError::ZeroTtl);
        }
        match self.rotate_before {
            Some(RotateBefore::Percent(percent)) if !(1..=99).contains(&percent) => {
                Err(PolicyError::PercentOutOfRange { percent })
            }
            Some(RotateBefore::Duration(before)) if before.is_zero() => {
                Err(PolicyError::ZeroRotateBefore)
            }
            Some(RotateBefore::Duration(before)) => match self.ttl {
                Some(ttl) if before >= ttl => Err(PolicyError::RotateBeforeNotShorterThanTtl {
                    rotate_before: format_duration(before),
                    ttl: format_duration(ttl),
                }),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// The rotate-before rule in force, falling back to [`DEFAULT_ROTATE_BEFORE`].
    pub fn effective_rotate_before(&self) -> RotateBefore {
        self.rotate_before.unwrap_or(DEFAULT_ROTATE_BEFORE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::CronTrigger;

    fn policy(rotate_before: Option<RotateBefore>, ttl: Option<Duration>) -> RotationPolicy {
        RotationPolicy {
            trigger: Trigger::Interval {
                every: Duration::from_secs(3600),
            },
            rotate_before,
            ttl,
            paused: false,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn accepts_consistent_policy() {
        assert_eq!(
            policy(Some(RotateBefore::Duration(72 * HOUR)), Some(2160 * HOUR)).validate(),
            Ok(())
        );
        assert_eq!(
            policy(Some(RotateBefore::Percent(20)), None).validate(),
            Ok(())
        );
        assert_eq!(policy(None, None).validate(), Ok(()));
    }

    #[test]
    fn rotate_before_must_be_shorter_than_ttl() {
        let error = policy(Some(RotateBefore::Duration(80 * HOUR)), Some(72 * HOUR))
            .validate()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.rotation.rotateBefore (80h) must be shorter than spec.expiry.ttl (72h)"
        );
        assert!(
            policy(Some(RotateBefore::Duration(72 * HOUR)), Some(72 * HOUR))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn rejects_out_of_range_and_zero_values() {
        for percent in [0, 100, 255] {
            assert_eq!(
                policy(Some(RotateBefore::Percent(percent)), None).validate(),
                Err(PolicyError::PercentOutOfRange { percent })
            );
        }
        assert_eq!(
            policy(Some(RotateBefore::Duration(Duration::ZERO)), None).validate(),
            Err(PolicyError::ZeroRotateBefore)
        );
        assert_eq!(
            policy(None, Some(Duration::ZERO)).validate(),
            Err(PolicyError::ZeroTtl)
        );
        let mut zero_interval = policy(None, None);
        zero_interval.trigger = Trigger::Interval {
            every: Duration::ZERO,
        };
        assert_eq!(zero_interval.validate(), Err(PolicyError::ZeroInterval));
        let mut cron = policy(None, None);
        let mut trigger = CronTrigger::parse("0 3 * * *", None, None).unwrap();
        trigger.window = Duration::ZERO;
        cron.trigger = Trigger::Cron(trigger);
        assert_eq!(cron.validate(), Err(PolicyError::ZeroWindow));
    }

    #[test]
    fn default_rotate_before_is_a_third_of_the_lifetime() {
        assert_eq!(
            policy(None, None).effective_rotate_before(),
            RotateBefore::Percent(33)
        );
    }
}
