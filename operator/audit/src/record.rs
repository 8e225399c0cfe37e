//! Audit records and their canonical encoding.
//!
//! An [`AuditRecord`] is one link of the hash chain. Its `hash` is
//! `SHA-256(canonical(record))`, where `canonical` covers every field except `hash` itself —
//! including `sequence` and `previous_hash`, so a record cannot be moved, renumbered or
//! re-linked without changing its hash. The first record has `sequence = 1` and a
//! `previous_hash` of 32 zero bytes ([`GENESIS_HASH`]).
//!
//! # Canonical encoding, version 1
//!
//! The bytes hashed are, in this order, with no separators:
//!
//! | # | field            | encoding                                                    |
//! |---|------------------|-------------------------------------------------------------|
//! | 0 | version tag      | the 8 ASCII bytes `KTAUDIT1`                                 |
//! | 1 | `sequence`       | u64, big-endian (8 bytes)                                    |
//! | 2 | `previous_hash`  | 32 raw bytes                                                 |
//! | 3 | `time`           | string: RFC 3339 UTC with whole seconds, `YYYY-MM-DDThh:mm:ssZ` |
//! | 4 | `actor`          | string                                                      |
//! | 5 | `action`         | string                                                      |
//! | 6 | `namespace`      | string                                                      |
//! | 7 | `managed_secret` | string                                                      |
//! | 8 | `rotation_id`    | optional string                                             |
//! | 9 | `step`           | optional string                                             |
//! | 10| `fingerprint`    | optional string                                             |
//! | 11| `outcome`        | string                                                      |
//! | 12| `details`        | string                                                      |
//!
//! A *string* is its length in bytes as a u32, big-endian, followed by its UTF-8 bytes. An
//! *optional string* is a string when present and the 4 bytes `FF FF FF FF` when absent, so
//! an absent value and an empty one differ. Strings are at most `u32::MAX - 1` bytes (records
//! are much smaller in practice; [`AuditEntry::validate`] caps every field at [`MAX_FIELD_LEN`]).
//! Times are truncated to whole seconds when a record is made and must lie in years 1..=9999.
//!
//! Records carry credential *fingerprints* only, never credential values: there is no field a
//! value could go into except free text (`details`), and callers must not put values there.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use sha2::{Digest, Sha256};

/// The version tag that starts the canonical encoding.
pub const VERSION_TAG: &[u8; 8] = b"KTAUDIT1";
/// `previous_hash` of the first record.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Largest accepted length, in bytes, of one text field of an entry.
pub const MAX_FIELD_LEN: usize = 64 * 1024;
/// Marker of an absent optional string.
const ABSENT: [u8; 4] = [0xFF; 4];

/// What a caller asks to record: a record without its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Whole seconds; sub-second parts are dropped when the record is made.
    pub time: DateTime<Utc>,
    /// Who acted: `keyturn-operator`, a service account, a user.
    pub actor: String,
    /// What happened, e.g. `RotationStarted`, `SecretRead`.
    pub action: String,
    pub namespace: String,
    /// Name of the ManagedSecret concerned.
    pub managed_secret: String,
    pub rotation_id: Option<String>,
    pub step: Option<String>,
    /// Fingerprint of the credential concerned (never the credential itself).
    pub fingerprint: Option<String>,
    /// `Success`, `Failure`, `Pending`, `Skipped`, `Allowed`, `Denied`, ...
    pub outcome: String,
    /// Free text for humans. Never a credential value.
    pub details: String,
}

/// Why an entry cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("audit entry: field `{field}` is {len} bytes, more than {MAX_FIELD_LEN}")]
    FieldTooLong { field: &'static str, len: usize },
    #[error("audit entry: time is outside years 1..=9999")]
    TimeOutOfRange,
}

impl AuditEntry {
    /// An entry for one event of the rotation lifecycle (`keyturn_core::audit::AuditEvent`),
    /// recorded by `actor` for the ManagedSecret `namespace/managed_secret`.
    pub fn from_event(
        actor: &str,
        namespace: &str,
        managed_secret: &str,
        event: &keyturn_core::audit::AuditEvent,
    ) -> AuditEntry {
        AuditEntry {
            time: event.time,
            actor: actor.to_owned(),
            action: format!("{:?}", event.action),
            namespace: namespace.to_owned(),
            managed_secret: managed_secret.to_owned(),
            rotation_id: event.rotation_id.clone(),
            step: event.step.map(|s| format!("{s:?}")),
            fingerprint: event.fingerprint.clone(),
            outcome: format!("{:?}", event.outcome),
            details: event.details.clone(),
        }
    }

    /// Checks the limits of the canonical encoding.
    pub fn validate(&self) -> Result<(), EntryError> {
        let fields: [(&'static str, Option<&str>); 9] = [
            ("actor", Some(&self.actor)),
            ("action", Some(&self.action)),
            ("namespace", Some(&self.namespace)),
            ("managed_secret", Some(&self.managed_secret)),
            ("rotation_id", self.rotation_id.as_deref()),
            ("step", self.step.as_deref()),
            ("fingerprint", self.fingerprint.as_deref()),
            ("outcome", Some(&self.outcome)),
            ("details", Some(&self.details)),
        ];
        for (field, value) in fields {
            let len = value.map_or(0, str::len);
            if len > MAX_FIELD_LEN {
                return Err(EntryError::FieldTooLong { field, len });
            }
        }
        if !(1..=9999).contains(&self.time.year()) {
            return Err(EntryError::TimeOutOfRange);
        }
        Ok(())
    }
}

/// One link of the chain.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// 1 for the first record, then +1 per record, without gaps.
    pub sequence: u64,
    /// Whole seconds, UTC.
    pub time: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub namespace: String,
    pub managed_secret: String,
    pub rotation_id: Option<String>,
    pub step: Option<String>,
    pub fingerprint: Option<String>,
    pub outcome: String,
    pub details: String,
    /// `hash` of the record before, or [`GENESIS_HASH`] for the first.
    pub previous_hash: [u8; 32],
    /// [`AuditRecord::compute_hash`] of this record.
    pub hash: [u8; 32],
}

impl fmt::Debug for AuditRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditRecord")
            .field("sequence", &self.sequence)
            .field("time", &self.time)
            .field("actor", &self.actor)
            .field("action", &self.action)
            .field("namespace", &self.namespace)
            .field("managed_secret", &self.managed_secret)
            .field("rotation_id", &self.rotation_id)
            .field("step", &self.step)
            .field("fingerprint", &self.fingerprint)
            .field("outcome", &self.outcome)
            .field("details", &self.details)
            .field("previous_hash", &hex::encode(self.previous_hash))
            .field("hash", &hex::encode(self.hash))
            .finish()
    }
}

impl AuditRecord {
    /// The record that follows `previous` (`None`: the first record), with its hash computed.
    /// The time is truncated to whole seconds.
    pub fn chain(previous: Option<(u64, [u8; 32])>, entry: AuditEntry) -> AuditRecord {
        let (sequence, previous_hash) = match previous {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH),
        };
        let time = DateTime::from_timestamp(entry.time.timestamp(), 0).unwrap_or(entry.time);
        let mut record = AuditRecord {
            sequence,
            time,
            actor: entry.actor,
            action: entry.action,
            namespace: entry.namespace,
            managed_secret: entry.managed_secret,
            rotation_id: entry.rotation_id,
            step: entry.step,
            fingerprint: entry.fingerprint,
            outcome: entry.outcome,
            details: entry.details,
            previous_hash,
            hash: [0; 32],
        };
        record.hash = record.compute_hash();
        record
    }

    /// SHA-256 of the canonical encoding (see the module documentation). Allocates nothing.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        self.encode_into(&mut |bytes| hasher.update(bytes));
        hasher.finalize().into()
    }

    /// The canonical encoding as bytes (for documentation, test vectors and external tools).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut |bytes| out.extend_from_slice(bytes));
        out
    }

    /// Feeds the canonical encoding, piece by piece, to `sink`.
    fn encode_into(&self, sink: &mut dyn FnMut(&[u8])) {
        sink(VERSION_TAG);
        sink(&self.sequence.to_be_bytes());
        sink(&self.previous_hash);
        let time = rfc3339_seconds(&self.time);
        put_str(sink, &time);
        put_str(sink, self.actor.as_bytes());
        put_str(sink, self.action.as_bytes());
        put_str(sink, self.namespace.as_bytes());
        put_str(sink, self.managed_secret.as_bytes());
        put_opt(sink, self.rotation_id.as_deref());
        put_opt(sink, self.step.as_deref());
        put_opt(sink, self.fingerprint.as_deref());
        put_str(sink, self.outcome.as_bytes());
        put_str(sink, self.details.as_bytes());
    }

    /// The time as it is encoded: `YYYY-MM-DDThh:mm:ssZ`.
    pub fn time_rfc3339(&self) -> String {
        String::from_utf8_lossy(&rfc3339_seconds(&self.time)).into_owned()
    }
}

fn put_str(sink: &mut dyn FnMut(&[u8]), bytes: &[u8]) {
    // Lengths above u32::MAX - 1 cannot occur for validated entries; saturate rather than wrap
    // so that such a value can never collide with the ABSENT marker by wrapping.
    let len = u32::try_from(bytes.len())
        .unwrap_or(u32::MAX - 1)
        .min(u32::MAX - 1);
    sink(&len.to_be_bytes());
    sink(bytes);
}

fn put_opt(sink: &mut dyn FnMut(&[u8]), value: Option<&str>) {
    match value {
        Some(s) => put_str(sink, s.as_bytes()),
        None => sink(&ABSENT),
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` on the stack. Years outside 0..=9999 are written modulo 10000
/// (entries outside 1..=9999 are rejected before they become records).
fn rfc3339_seconds(time: &DateTime<Utc>) -> [u8; 20] {
    let mut out = *b"0000-00-00T00:00:00Z";
    let year = time.year().rem_euclid(10_000) as u32;
    digits(&mut out[0..4], year);
    digits(&mut out[5..7], time.month());
    digits(&mut out[8..10], time.day());
    digits(&mut out[11..13], time.hour());
    digits(&mut out[14..16], time.minute());
    // A leap second (nanosecond >= 1e9) is still second 59 here.
    digits(&mut out[17..19], time.second());
    out
}

fn digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    pub(crate) fn entry(n: u32) -> AuditEntry {
        AuditEntry {
            time: DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0).unwrap(),
            actor: "keyturn-operator".into(),
            action: "StepCompleted".into(),
            namespace: "payments".into(),
            managed_secret: "db-password".into(),
            rotation_id: Some("kt-1".into()),
            step: Some("Verify".into()),
            fingerprint: Some("sha256:ab12".into()),
            outcome: "Success".into(),
            details: format!("record {n}"),
        }
    }

    #[test]
    fn canonical_bytes_follow_the_documented_layout() {
        let record = AuditRecord::chain(None, entry(0));
        let mut expected = Vec::new();
        expected.extend_from_slice(b"KTAUDIT1");
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&[0; 32]);
        for s in [
            "2023-11-14T22:13:20Z",
            "keyturn-operator",
            "StepCompleted",
            "payments",
            "db-password",
            "kt-1",
            "Verify",
            "sha256:ab12",
            "Success",
            "record 0",
        ] {
            expected.extend_from_slice(&(s.len() as u32).to_be_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        assert_eq!(record.canonical_bytes(), expected);
        let digest: [u8; 32] = Sha256::digest(&expected).into();
        assert_eq!(record.hash, digest);
        assert_eq!(record.compute_hash(), digest);
    }

    /// Fixed test vector: changing it breaks every stored chain. Also in docs/audit.md.
    #[test]
    fn fixed_test_vector() {
        let first = AuditRecord::chain(None, entry(0));
        assert_eq!(
            hex::encode(first.hash),
            "04eb5824ca7bba2c8f11e4c9007a44861120455a7594e4c4d8b74435ad835901"
        );
        let mut e = entry(1);
        e.rotation_id = None;
        e.step = None;
        e.fingerprint = Some(String::new());
        let second = AuditRecord::chain(Some((first.sequence, first.hash)), e);
        assert_eq!(second.sequence, 2);
        assert_eq!(second.previous_hash, first.hash);
        assert_eq!(
            hex::encode(second.hash),
            "88341db33000265d9753edb387847d4249277498093e39fc6bae4da85a3acc9f"
        );
    }

    #[test]
    fn absent_and_empty_differ() {
        let mut a = entry(0);
        a.fingerprint = None;
        let mut b = entry(0);
        b.fingerprint = Some(String::new());
        assert_ne!(
            AuditRecord::chain(None, a).hash,
            AuditRecord::chain(None, b).hash
        );
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = entry(0);
        a.namespace = "ab".into();
        a.managed_secret = "c".into();
        let mut b = entry(0);
        b.namespace = "a".into();
        b.managed_secret = "bc".into();
        assert_ne!(
            AuditRecord::chain(None, a).hash,
            AuditRecord::chain(None, b).hash
        );
    }

    #[test]
    fn time_is_truncated_to_whole_seconds() {
        let mut e = entry(0);
        e.time = DateTime::from_timestamp(1_700_000_000, 999_000_000).unwrap();
        let record = AuditRecord::chain(None, e);
        assert_eq!(record.time.timestamp_subsec_nanos(), 0);
        assert_eq!(record.time_rfc3339(), "2023-11-14T22:13:20Z");
        assert_eq!(record.hash, AuditRecord::chain(None, entry(0)).hash);
    }

    #[test]
    fn rfc3339_matches_chrono() {
        for ts in [
            0i64,
            951_782_400,
            1_700_000_000,
            4_102_444_799,
            -62_135_596_800,
        ] {
            let t = DateTime::from_timestamp(ts, 0).unwrap();
            assert_eq!(
                String::from_utf8(rfc3339_seconds(&t).to_vec()).unwrap(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
    }

    #[test]
    fn validate_rejects_oversized_fields() {
        let mut e = entry(0);
        e.details = "x".repeat(MAX_FIELD_LEN + 1);
        assert!(matches!(
            e.validate(),
            Err(EntryError::FieldTooLong {
                field: "details",
                ..
            })
        ));
        assert_eq!(entry(0).validate(), Ok(()));
    }

    #[test]
    fn from_event_uses_the_enum_names() {
        use keyturn_core::audit::{AuditAction, AuditEvent, AuditOutcome};
        let event = AuditEvent::new(
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            AuditAction::CredentialPublished,
            AuditOutcome::Success,
            "published",
        )
        .rotation("kt-9")
        .step(keyturn_core::machine::Step::Publish)
        .fingerprint(Some("sha256:cd34"));
        let e = AuditEntry::from_event("keyturn-operator", "ns", "ms", &event);
        assert_eq!(e.action, "CredentialPublished");
        assert_eq!(e.step.as_deref(), Some("Publish"));
        assert_eq!(e.outcome, "Success");
        assert_eq!(e.fingerprint.as_deref(), Some("sha256:cd34"));
    }

    #[test]
    fn debug_shows_hashes_in_hex() {
        let record = AuditRecord::chain(None, entry(0));
        let debug = format!("{record:?}");
        assert!(debug.contains(&hex::encode(record.hash)));
    }
}
