//! How long to wait before retrying a failed step: exponential, capped, and tightening as the
//! current credential's expiry approaches so several retries always happen before it runs out
//! (unlike cert-manager's 1h to 32h backoff). Deterministic: no jitter.

use std::time::Duration;

/// First retry delay; also the floor while the credential is still valid.
pub const INITIAL_DELAY: Duration = Duration::from_secs(10);
/// The longest any retry waits.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// While valid, never wait more than this fraction (1/8) of the remaining lifetime: each wait
/// leaves 7/8 of what remained, so retries keep happening until the last minutes.
pub const EXPIRY_FRACTION: u32 = 8;
/// Once the credential has expired, consumers are failing: retry at least this often.
pub const EXPIRED_CAP: Duration = Duration::from_secs(30);
/// Permanent errors still retry (classifications are sometimes wrong and admins fix things),
/// but never more often than this, to avoid a hot loop of identical failures.
pub const PERMANENT_FLOOR: Duration = Duration::from_secs(300);

/// The delay after the `failed_attempts`-th consecutive failure (1 for the first).
///
/// Retryable: 10s, 20s, 40s, ... capped at 1h and at 1/8 of `time_to_expiry` (not below 10s);
/// after expiry at most 30s. Non-retryable: the cap (1h, tightened the same way near expiry, not
/// below 5 min). The operator additionally retries a permanent failure immediately when the
/// spec generation changes (see [`crate::plan`]), since a changed spec may have fixed it.
pub fn retry_delay(
    failed_attempts: u32,
    time_to_expiry: Option<chrono::Duration>,
    retryable: bool,
) -> Duration {
    let cap = expiry_cap(time_to_expiry);
    if !retryable {
        return cap.max(PERMANENT_FLOOR).min(MAX_DELAY);
    }
    let doublings = failed_attempts.saturating_sub(1).min(20);
    let exponential = INITIAL_DELAY.saturating_mul(1u32 << doublings);
    exponential.min(cap)
}

fn expiry_cap(time_to_expiry: Option<chrono::Duration>) -> Duration {
    match time_to_expiry {
        None => MAX_DELAY,
        Some(remaining) => match remaining.to_std() {
            // Whole seconds, because retry times are stored with second precision.
            Ok(remaining) if !remaining.is_zero() => {
                Duration::from_secs((remaining / EXPIRY_FRACTION).as_secs())
                    .max(INITIAL_DELAY)
                    .min(MAX_DELAY)
            }
            // Negative or zero: already expired.
            _ => EXPIRED_CAP,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seconds(value: u64) -> Duration {
        Duration::from_secs(value)
    }

    #[test]
    fn doubles_from_ten_seconds_to_one_hour() {
        let delays: Vec<u64> = (1..=12)
            .map(|n| retry_delay(n, None, true).as_secs())
            .collect();
        assert_eq!(
            delays,
            vec![10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
        );
        assert_eq!(retry_delay(0, None, true), seconds(10));
        assert_eq!(retry_delay(u32::MAX, None, true), MAX_DELAY);
    }

    #[test]
    fn tightens_as_expiry_nears() {
        let day = Some(chrono::Duration::hours(24));
        assert_eq!(retry_delay(20, day, true), MAX_DELAY);
        let four_hours = Some(chrono::Duration::hours(4));
        assert_eq!(retry_delay(20, four_hours, true), seconds(1800));
        let eight_minutes = Some(chrono::Duration::minutes(8));
        assert_eq!(retry_delay(20, eight_minutes, true), seconds(60));
        assert_eq!(retry_delay(1, eight_minutes, true), seconds(10));
        let one_minute = Some(chrono::Duration::minutes(1));
        assert_eq!(retry_delay(20, one_minute, true), seconds(10));
    }

    #[test]
    fn after_expiry_retries_every_thirty_seconds_at_most() {
        let expired = Some(chrono::Duration::minutes(-5));
        assert_eq!(retry_delay(1, expired, true), seconds(10));
        assert_eq!(retry_delay(2, expired, true), seconds(20));
        assert_eq!(retry_delay(9, expired, true), seconds(30));
        assert_eq!(
            retry_delay(9, Some(chrono::Duration::zero()), true),
            seconds(30)
        );
    }

    #[test]
    fn permanent_errors_wait_the_cap() {
        assert_eq!(retry_delay(1, None, false), MAX_DELAY);
        assert_eq!(
            retry_delay(1, Some(chrono::Duration::hours(4)), false),
            seconds(1800)
        );
        assert_eq!(
            retry_delay(1, Some(chrono::Duration::minutes(-1)), false),
            PERMANENT_FLOOR
        );
    }

    proptest! {
        #[test]
        fn never_exceeds_the_cap(attempts in 0u32..200, remaining in proptest::option::of(-1_000_000i64..10_000_000), retryable: bool) {
            let delay = retry_delay(attempts, remaining.map(chrono::Duration::seconds), retryable);
            prop_assert!(delay <= MAX_DELAY);
            prop_assert!(delay >= INITIAL_DELAY);
            prop_assert_eq!(delay.subsec_nanos(), 0, "retry times are stored in whole seconds");
        }

        /// Retrying never sleeps past expiry while at least 80s (8 x the floor) remain, and a
        /// credential with 10 minutes or more left always gets several retries before it expires.
        #[test]
        fn retries_fit_before_expiry(remaining_seconds in 80i64..10_000_000, attempts in 1u32..400) {
            let mut remaining = chrono::Duration::seconds(remaining_seconds);
            let mut before_expiry = 0u32;
            for attempt in 1..=attempts {
                let delay = chrono::Duration::from_std(retry_delay(attempt, Some(remaining), true)).unwrap();
                if remaining >= chrono::Duration::seconds(80) {
                    prop_assert!(delay < remaining, "{delay} with {remaining} left");
                }
                remaining -= delay;
                if remaining > chrono::Duration::zero() {
                    before_expiry += 1;
                }
            }
            if remaining_seconds >= 600 {
                prop_assert!(before_expiry >= attempts.min(8), "{before_expiry} of {attempts}");
            }
        }
    }
}
