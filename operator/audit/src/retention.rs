//! Retention of the audit log: how long records are kept ([`Retention`]), the cut-off it gives
//! at a moment, and the [`Anchor`] a prune leaves behind so the remaining chain still verifies.
//!
//! Pure code with the clock passed in: the store's `prune` reads the database's clock and
//! calls these; tests pass fixed instants.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Months, TimeDelta, Utc};

/// The action of the record a prune appends to the chain, naming its anchor.
pub const PRUNE_ACTION: &str = "AuditPruned";

/// How long records are kept before an administrator may prune them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Calendar years (7 years from 2033-03-01 is 2026-03-01; from Feb 29 it is Feb 28).
    Years(u32),
    /// Days of 86,400 seconds (UTC has no daylight-saving days).
    Days(u32),
}

impl Retention {
    /// The default: seven years (SOX, and longer than HIPAA's six and PCI DSS's one).
    pub const DEFAULT: Retention = Retention::Years(7);
    /// Below this, `prune` refuses unless short retention is allowed explicitly.
    pub const MINIMUM: Retention = Retention::Years(1);

    /// The newest time a record may have to be pruned at `now`: whole seconds, rounded down,
    /// so a record is always kept at least the full retention. `None` when the subtraction
    /// leaves chrono's range (nothing is pruned then).
    pub fn cutoff(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cutoff = match self {
            Retention::Years(years) => now.checked_sub_months(Months::new(years.checked_mul(12)?)),
            Retention::Days(days) => now.checked_sub_signed(TimeDelta::days(i64::from(days))),
        }?;
        DateTime::from_timestamp(cutoff.timestamp(), 0)
    }

    /// Whether this retention is shorter than [`Retention::MINIMUM`] at `now`.
    pub fn is_short(self, now: DateTime<Utc>) -> bool {
        match (self.cutoff(now), Retention::MINIMUM.cutoff(now)) {
            (Some(this), Some(minimum)) => this > minimum,
            _ => false,
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::Years(n) => write!(f, "{n}y"),
            Retention::Days(n) => write!(f, "{n}d"),
        }
    }
}

/// A retention that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid retention {0:?}: expected a positive whole number of years or days, e.g. 7y or 400d"
)]
pub struct RetentionError(String);

impl FromStr for Retention {
    type Err = RetentionError;

    fn from_str(text: &str) -> Result<Retention, RetentionError> {
        let invalid = || RetentionError(text.chars().take(32).collect());
        let trimmed = text.trim();
        let (number, unit) = trimmed.split_at(trimmed.len().saturating_sub(1));
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let value: u32 = number.parse().map_err(|_| invalid())?;
        if value == 0 {
            return Err(invalid());
        }
        match unit {
            "y" => Ok(Retention::Years(value)),
            "d" => Ok(Retention::Days(value)),
            _ => Err(invalid()),
        }
    }
}

/// What a prune leaves in `audit_anchor`: the last pruned record's sequence, hash and time, so
/// the verifier starts from it instead of the genesis hash.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The last pruned record: records `1..=sequence` are gone.
    pub sequence: u64,
    /// Its hash, which the first retained record's `previous_hash` must name.
    pub hash: [u8; 32],
    /// Its time.
    pub time: DateTime<Utc>,
    /// When the prune ran (the database's clock).
    pub pruned_at: DateTime<Utc>,
    /// The cut-off of that prune: `pruned_at` minus the retention; no pruned record is newer.
    pub cutoff: DateTime<Utc>,
    /// Records deleted by that prune.
    pub pruned_count: u64,
}

impl fmt::Debug for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anchor")
            .field("sequence", &self.sequence)
            .field("hash", &hex::encode(self.hash))
            .field("time", &self.time)
            .field("pruned_at", &self.pruned_at)
            .field("cutoff", &self.cutoff)
            .field("pruned_count", &self.pruned_count)
            .finish()
    }
}

impl Anchor {
    /// The `details` of the [`PRUNE_ACTION`] record that names this anchor.
    pub fn prune_record_details(&self) -> String {
        format!(
            "anchor_sequence={} anchor_hash={} pruned_count={} cutoff={} pruned_at={}",
            self.sequence,
            hex::encode(self.hash),
            self.pruned_count,
            self.cutoff.format("%Y-%m-%dT%H:%M:%SZ"),
            self.pruned_at.format("%Y-%m-%dT%H:%M:%SZ"),
        )
    }
}

/// The `(sequence, hash)` named by the details of a [`PRUNE_ACTION`] record, or `None` when they
/// do not name one.
pub fn anchor_named_by(details: &str) -> Option<(u64, [u8; 32])> {
    let mut sequence = None;
    let mut hash = None;
    for token in details.split(' ') {
        if let Some(value) = token.strip_prefix("anchor_sequence=") {
            sequence = value.parse().ok();
        } else if let Some(value) = token.strip_prefix("anchor_hash=") {
            let mut bytes = [0u8; 32];
            hash = hex::decode_to_slice(value, &mut bytes).ok().map(|()| bytes);
        }
    }
    Some((sequence?, hash?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn parses_years_and_days() {
        assert_eq!("7y".parse(), Ok(Retention::Years(7)));
        assert_eq!("400d".parse(), Ok(Retention::Days(400)));
        assert_eq!(Retention::Days(400).to_string(), "400d");
        for bad in [
            "",
            "y",
            "0y",
            "7",
            "7w",
            "-1y",
            "1.5y",
            "7 y",
            "99999999999d",
        ] {
            assert!(bad.parse::<Retention>().is_err(), "{bad}");
        }
    }

    #[test]
    fn years_are_calendar_years_and_never_shorter() {
        let now = at("2033-03-01T12:00:00.750Z");
        assert_eq!(
            Retention::Years(7).cutoff(now),
            Some(at("2026-03-01T12:00:00Z"))
        );
        // 7 × 365 days would cut two leap days later, i.e. delete earlier.
        assert!(Retention::Days(7 * 365).cutoff(now) > Retention::Years(7).cutoff(now));
        // From a leap day, a year back is Feb 28: earlier, so kept longer.
        assert_eq!(
            Retention::Years(1).cutoff(at("2028-02-29T00:00:00Z")),
            Some(at("2027-02-28T00:00:00Z"))
        );
        assert_eq!(
            Retention::Days(400).cutoff(at("2030-01-01T00:00:00Z")),
            Some(at("2028-11-27T00:00:00Z"))
        );
    }

    #[test]
    fn short_retention_is_below_one_calendar_year() {
        let now = at("2028-03-01T00:00:00Z"); // the year before includes 2028-02-29
        assert!(Retention::Days(365).is_short(now));
        assert!(!Retention::Days(366).is_short(now));
        assert!(!Retention::Years(1).is_short(now));
        assert!(Retention::Days(30).is_short(now));
        assert!(!Retention::DEFAULT.is_short(now));
    }

    #[test]
    fn prune_record_details_round_trip() {
        let anchor = Anchor {
            sequence: 42,
            hash: [7; 32],
            time: at("2020-01-01T00:00:00Z"),
            pruned_at: at("2027-06-01T00:00:00Z"),
            cutoff: at("2020-06-01T00:00:00Z"),
            pruned_count: 40,
        };
        let details = anchor.prune_record_details();
        assert_eq!(anchor_named_by(&details), Some((42, [7; 32])));
        assert_eq!(anchor_named_by("anchor_sequence=42"), None);
        assert_eq!(anchor_named_by("anchor_sequence=x anchor_hash=00"), None);
    }
}
