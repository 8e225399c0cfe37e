//! Verification of a hash chain of [`AuditRecord`]s.
//!
//! The verifier recomputes every record's hash and every link, in order, and stops at the first
//! bad record, naming it. On its own, a chain can only prove that it is *internally* consistent:
//! someone who can write the store can delete the newest records, or edit a record and re-hash
//! everything after it. [`Checkpoint`]s — `(sequence, hash)` of the chain head, kept outside the
//! store (a cluster object's status, the operator's log) — close that gap: every checkpoint must
//! match the record with its sequence, and a checkpoint newer than the last record means the
//! tail was truncated.
//!
//! After a prune, the chain starts at an [`Anchor`] (the last pruned record's sequence and
//! hash) instead of the genesis hash: [`Verifier::after_anchors`]. Checkpoints before the anchor
//! are "before the retained range"; one at the anchor must name the anchor's hash; and the
//! newest anchor must be named by the prune's own record in the retained chain, so an anchor
//! moved forward over deleted records is caught by the chain itself.
//!
//! The hot path allocates nothing per record: [`Verifier::push`] hashes the record's fields
//! straight into SHA-256.

use std::fmt;

use crate::record::{AuditRecord, GENESIS_HASH};
use crate::retention::{Anchor, PRUNE_ACTION, anchor_named_by};

/// The head of the chain at some moment, kept outside the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    pub sequence: u64,
    pub hash: [u8; 32],
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Checkpoint({}, {})",
            self.sequence,
            hex::encode(self.hash)
        )
    }
}

impl Checkpoint {
    /// The checkpoint of a record.
    pub fn of(record: &AuditRecord) -> Checkpoint {
        Checkpoint {
            sequence: record.sequence,
            hash: record.hash,
        }
    }
}

/// The first problem found; `sequence` names the first bad record (by its position in the
/// chain where the record itself is not trustworthy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The record's stored hash is not the hash of its contents: a field was edited.
    #[error("audit record {sequence}: stored hash does not match its contents (edited record)")]
    HashMismatch { sequence: u64 },
    /// The record's `previous_hash` is not the hash of the record before it.
    #[error(
        "audit record {sequence}: previous_hash does not match record {} (deleted, replaced or reordered record)",
        sequence.saturating_sub(1)
    )]
    BrokenLink { sequence: u64 },
    /// Records are missing before this one.
    #[error(
        "audit record {found}: expected sequence {expected} (records {expected}..{found} are missing: deleted)"
    )]
    SequenceGap { expected: u64, found: u64 },
    /// A record appears again or too early.
    #[error("audit record {found}: expected sequence {expected} (duplicated or reordered record)")]
    OutOfOrder { expected: u64, found: u64 },
    /// A checkpoint names another hash for this sequence: the chain was rewritten (re-hashed).
    #[error(
        "audit record {sequence}: hash differs from the checkpoint kept outside the store (chain rewritten)"
    )]
    CheckpointMismatch { sequence: u64 },
    /// A checkpoint is newer than the last record: the newest records were deleted.
    #[error(
        "audit chain ends at record {last} but a checkpoint names record {checkpoint} (truncated tail)"
    )]
    Truncated { last: u64, checkpoint: u64 },
    /// The prune anchor at `sequence` disagrees with a checkpoint or with the prune record
    /// that names it, or a prune record names an anchor the store does not hold.
    #[error(
        "prune anchor at record {sequence}: differs from a checkpoint or from the prune record naming it (anchor edited, replaced or deleted)"
    )]
    AnchorMismatch { sequence: u64 },
    /// A record at or before the newest anchor is still stored: the anchor is not immediately
    /// before the first retained record.
    #[error(
        "audit record {found}: at or before the prune anchor (record {anchor}); the anchor does not precede the retained records"
    )]
    BeforeAnchor { anchor: u64, found: u64 },
    /// No record of the retained chain names the newest anchor: it was not written by a prune
    /// (or was moved forward over deleted records).
    #[error(
        "prune anchor at record {sequence}: no AuditPruned record in the retained chain names it (anchor forged or moved)"
    )]
    AnchorUnconfirmed { sequence: u64 },
}

impl VerifyError {
    /// Sequence of the first bad record (for `Truncated`, the first missing one).
    pub fn first_bad_sequence(&self) -> u64 {
        match *self {
            VerifyError::HashMismatch { sequence }
            | VerifyError::BrokenLink { sequence }
            | VerifyError::CheckpointMismatch { sequence } => sequence,
            VerifyError::SequenceGap { expected, .. }
            | VerifyError::OutOfOrder { expected, .. } => expected,
            VerifyError::Truncated { last, .. } => last + 1,
            VerifyError::AnchorMismatch { sequence }
            | VerifyError::AnchorUnconfirmed { sequence } => sequence,
            VerifyError::BeforeAnchor { found, .. } => found,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifySummary {
    /// Records verified.
    pub records: u64,
    /// The last record verified (the head), or the start when there were none.
    pub head: Option<Checkpoint>,
    /// Checkpoints matched (including one at the anchor).
    pub checkpoints_matched: usize,
    /// The newest prune anchor the chain started from; `None`: from the genesis hash.
    pub anchor: Option<Anchor>,
    /// Checkpoints naming pruned records (before the anchor): not checkable, not failures.
    pub checkpoints_before_retained: usize,
}

/// Streaming verifier: [`push`](Verifier::push) each record in order, then
/// [`finish`](Verifier::finish).
#[derive(Debug, Clone)]
pub struct Verifier {
    next_sequence: u64,
    previous_hash: [u8; 32],
    /// Sorted by sequence, deduplicated.
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    records: u64,
    head: Option<Checkpoint>,
    /// Every anchor in the store, sorted by sequence; the last is the newest.
    anchors: Vec<(u64, [u8; 32])>,
    anchor: Option<Anchor>,
    anchor_confirmed: bool,
    /// Checkpoints up to the anchor, and of those the ones naming the newest anchor itself.
    checkpoints_skipped: usize,
    checkpoints_at_anchor: usize,
}

impl Verifier {
    /// A verifier of a whole chain (from sequence 1) against `checkpoints` (any order).
    pub fn new(checkpoints: &[Checkpoint]) -> Verifier {
        Verifier::resume(None, checkpoints)
    }

    /// A verifier that continues after `trusted` (a record already verified, or a checkpoint),
    /// for verifying a chain in pieces; checkpoints at or before `trusted` are ignored.
    pub fn resume(trusted: Option<Checkpoint>, checkpoints: &[Checkpoint]) -> Verifier {
        let mut sorted = checkpoints.to_vec();
        sorted.sort_unstable_by_key(|c| (c.sequence, c.hash));
        sorted.dedup();
        let after = trusted.map_or(0, |t| t.sequence);
        let next_checkpoint = sorted.partition_point(|c| c.sequence <= after);
        Verifier {
            next_sequence: after + 1,
            previous_hash: trusted.map_or(GENESIS_HASH, |t| t.hash),
            checkpoints: sorted,
            next_checkpoint,
            records: 0,
            head: trusted,
            anchors: Vec::new(),
            anchor: None,
            anchor_confirmed: true,
            checkpoints_skipped: 0,
            checkpoints_at_anchor: 0,
        }
    }

    /// A verifier of a pruned chain: starts after the newest of `anchors` (all anchors of the
    /// store, any order), or from the genesis hash when there are none. Fails at once when a
    /// checkpoint names an anchor's sequence with another hash.
    pub fn after_anchors(
        anchors: &[Anchor],
        checkpoints: &[Checkpoint],
    ) -> Result<Verifier, VerifyError> {
        let Some(newest) = anchors.iter().max_by_key(|a| a.sequence).copied() else {
            return Ok(Verifier::new(checkpoints));
        };
        let mut known: Vec<(u64, [u8; 32])> =
            anchors.iter().map(|a| (a.sequence, a.hash)).collect();
        known.sort_unstable();
        let mut verifier = Verifier::resume(
            Some(Checkpoint {
                sequence: newest.sequence,
                hash: newest.hash,
            }),
            checkpoints,
        );
        // Checkpoints up to the anchor (sorted, deduplicated) name pruned records: only those
        // at an anchor's sequence can still be checked, against the anchor's hash.
        let skipped = verifier.next_checkpoint;
        let mut at_anchor = 0;
        for checkpoint in &verifier.checkpoints[..skipped] {
            match known
                .iter()
                .find(|(sequence, _)| *sequence == checkpoint.sequence)
            {
                Some((sequence, hash)) if *hash != checkpoint.hash => {
                    return Err(VerifyError::AnchorMismatch {
                        sequence: *sequence,
                    });
                }
                Some(_) if checkpoint.sequence == newest.sequence => at_anchor += 1,
                _ => {}
            }
        }
        // The anchor is where verification starts, not a verified record.
        verifier.head = None;
        verifier.anchors = known;
        verifier.anchor = Some(newest);
        verifier.anchor_confirmed = false;
        verifier.checkpoints_skipped = skipped;
        verifier.checkpoints_at_anchor = at_anchor;
        Ok(verifier)
    }

    /// Checks the next record.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), VerifyError> {
        let expected = self.next_sequence;
        if record.sequence != expected {
            if let Some(anchor) = self.anchor
                && record.sequence <= anchor.sequence
            {
                return Err(VerifyError::BeforeAnchor {
                    anchor: anchor.sequence,
                    found: record.sequence,
                });
            }
            return Err(if record.sequence > expected {
                VerifyError::SequenceGap {
                    expected,
                    found: record.sequence,
                }
            } else {
                VerifyError::OutOfOrder {
                    expected,
                    found: record.sequence,
                }
            });
        }
        if record.compute_hash() != record.hash {
            return Err(VerifyError::HashMismatch { sequence: expected });
        }
        if record.previous_hash != self.previous_hash {
            return Err(VerifyError::BrokenLink { sequence: expected });
        }
        while let Some(cp) = self.checkpoints.get(self.next_checkpoint) {
            if cp.sequence != expected {
                break;
            }
            if cp.hash != record.hash {
                return Err(VerifyError::CheckpointMismatch { sequence: expected });
            }
            self.next_checkpoint += 1;
        }
        if record.action == PRUNE_ACTION {
            self.check_prune_record(record)?;
        }
        self.previous_hash = record.hash;
        self.next_sequence = expected + 1;
        self.records += 1;
        self.head = Some(Checkpoint::of(record));
        Ok(())
    }

    /// A prune record must name an anchor the store holds, with its hash.
    fn check_prune_record(&mut self, record: &AuditRecord) -> Result<(), VerifyError> {
        let Some((sequence, hash)) = anchor_named_by(&record.details) else {
            return Ok(());
        };
        match self.anchors.iter().find(|(s, _)| *s == sequence) {
            Some((_, stored)) if *stored == hash => {
                if self.anchor.is_some_and(|a| a.sequence == sequence) {
                    self.anchor_confirmed = true;
                }
                Ok(())
            }
            _ => Err(VerifyError::AnchorMismatch { sequence }),
        }
    }

    /// Ends the verification: fails when a checkpoint is newer than the last record, or when
    /// no prune record named the newest anchor.
    pub fn finish(self) -> Result<VerifySummary, VerifyError> {
        if let Some(anchor) = self.anchor
            && !self.anchor_confirmed
        {
            return Err(VerifyError::AnchorUnconfirmed {
                sequence: anchor.sequence,
            });
        }
        if let Some(cp) = self.checkpoints.get(self.next_checkpoint) {
            return Err(VerifyError::Truncated {
                last: self.next_sequence - 1,
                checkpoint: cp.sequence,
            });
        }
        Ok(VerifySummary {
            records: self.records,
            head: self.head,
            checkpoints_matched: self.next_checkpoint - self.checkpoints_skipped
                + self.checkpoints_at_anchor,
            anchor: self.anchor,
            checkpoints_before_retained: self.checkpoints_skipped - self.checkpoints_at_anchor,
        })
    }
}

/// Verifies a whole chain (from sequence 1) against `checkpoints`.
pub fn verify<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    checkpoints: &[Checkpoint],
) -> Result<VerifySummary, VerifyError> {
    let mut verifier = Verifier::new(checkpoints);
    for record in records {
        verifier.push(record)?;
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::record::AuditEntry;
    use crate::retention::{Anchor, PRUNE_ACTION};
    use chrono::DateTime;
    use proptest::prelude::*;

    fn entry(n: u64) -> AuditEntry {
        AuditEntry {
            time: DateTime::from_timestamp(1_700_000_000 + n as i64, 0).unwrap(),
            actor: "keyturn-operator".into(),
            action: "StepCompleted".into(),
            namespace: "ns".into(),
            managed_secret: "ms".into(),
            rotation_id: Some(format!("kt-{n}")),
            step: None,
            fingerprint: Some("sha256:00".into()),
            outcome: "Success".into(),
            details: String::new(),
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        build(entries_of(n))
    }

    fn entries_of(n: u64) -> Vec<AuditEntry> {
        (0..n).map(entry).collect()
    }

    fn build(entries: Vec<AuditEntry>) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for e in entries {
            let prev = out.last().map(|r| (r.sequence, r.hash));
            out.push(AuditRecord::chain(prev, e));
        }
        out
    }

    /// Recomputes every hash and link from the (edited) contents, as an attacker would.
    fn rehash(records: &mut [AuditRecord]) {
        let mut prev = GENESIS_HASH;
        for (i, r) in records.iter_mut().enumerate() {
            r.sequence = i as u64 + 1;
            r.previous_hash = prev;
            r.hash = r.compute_hash();
            prev = r.hash;
        }
    }

    #[test]
    fn valid_chain_verifies() {
        let records = chain(10);
        let head = Checkpoint::of(&records[9]);
        let mid = Checkpoint::of(&records[4]);
        let summary = verify(&records, &[head, mid]).unwrap();
        assert_eq!(summary.records, 10);
        assert_eq!(summary.head, Some(head));
        assert_eq!(summary.checkpoints_matched, 2);
        assert_eq!(verify(&[], &[]).unwrap().records, 0);
    }

    #[test]
    fn edited_field_is_named() {
        let mut records = chain(5);
        records[2].details = "edited".into();
        let err = verify(&records, &[]).unwrap_err();
        assert_eq!(err, VerifyError::HashMismatch { sequence: 3 });
        assert_eq!(err.first_bad_sequence(), 3);
        assert!(err.to_string().contains("audit record 3"));
    }

    #[test]
    fn deleted_record_is_a_gap() {
        let mut records = chain(5);
        records.remove(1);
        assert_eq!(
            verify(&records, &[]).unwrap_err(),
            VerifyError::SequenceGap {
                expected: 2,
                found: 3
            }
        );
    }

    #[test]
    fn deleted_and_renumbered_is_a_broken_link() {
        let mut records = chain(5);
        records.remove(1);
        for (i, r) in records.iter_mut().enumerate() {
            r.sequence = i as u64 + 1;
            r.hash = r.compute_hash();
        }
        assert_eq!(
            verify(&records, &[]).unwrap_err(),
            VerifyError::BrokenLink { sequence: 2 }
        );
    }

    #[test]
    fn reordered_records_are_detected() {
        let mut records = chain(5);
        records.swap(1, 3);
        assert_eq!(
            verify(&records, &[]).unwrap_err(),
            VerifyError::SequenceGap {
                expected: 2,
                found: 4
            }
        );
    }

    #[test]
    fn truncated_tail_needs_a_checkpoint() {
        let records = chain(5);
        let head = Checkpoint::of(&records[4]);
        assert!(verify(&records[..3], &[]).is_ok());
        assert_eq!(
            verify(&records[..3], &[head]).unwrap_err(),
            VerifyError::Truncated {
                last: 3,
                checkpoint: 5
            }
        );
        assert_eq!(verify(&[], &[head]).unwrap_err().first_bad_sequence(), 1);
    }

    #[test]
    fn rehashed_chain_disagrees_with_checkpoint() {
        let mut records = chain(5);
        let head = Checkpoint::of(&records[4]);
        records[1].details = "rewritten".into();
        rehash(&mut records);
        assert!(verify(&records, &[]).is_ok());
        assert_eq!(
            verify(&records, &[head]).unwrap_err(),
            VerifyError::CheckpointMismatch { sequence: 5 }
        );
    }

    #[test]
    fn resume_continues_after_a_trusted_record() {
        let records = chain(10);
        let trusted = Checkpoint::of(&records[3]);
        let mut v = Verifier::resume(Some(trusted), &[Checkpoint::of(&records[1])]);
        for r in &records[4..] {
            v.push(r).unwrap();
        }
        assert_eq!(v.finish().unwrap().records, 6);
    }

    // ---- pruned chains: verification from an anchor ----

    /// Records 1..=10, pruned through `through`: the retained records and a prune record (11)
    /// naming the anchor, as `AuditStore::prune` leaves them.
    fn pruned(through: u64) -> (Anchor, Vec<AuditRecord>) {
        let mut records = chain(10);
        let last = &records[through as usize - 1];
        let anchor = Anchor {
            sequence: last.sequence,
            hash: last.hash,
            time: last.time,
            pruned_at: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
            cutoff: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            pruned_count: through,
        };
        let mut prune = entry(100);
        prune.action = PRUNE_ACTION.into();
        prune.details = anchor.prune_record_details();
        let head = records.last().map(|r| (r.sequence, r.hash));
        records.push(AuditRecord::chain(head, prune));
        records.drain(..through as usize);
        (anchor, records)
    }

    fn verify_pruned(
        anchors: &[Anchor],
        records: &[AuditRecord],
        checkpoints: &[Checkpoint],
    ) -> Result<VerifySummary, VerifyError> {
        let mut verifier = Verifier::after_anchors(anchors, checkpoints)?;
        for record in records {
            verifier.push(record)?;
        }
        verifier.finish()
    }

    #[test]
    fn pruned_chain_verifies_from_its_anchor() {
        let full = chain(10);
        let (anchor, records) = pruned(4);
        let before = Checkpoint::of(&full[1]);
        let at_anchor = Checkpoint::of(&full[3]);
        let head = Checkpoint::of(records.last().unwrap());
        let summary = verify_pruned(&[anchor], &records, &[before, at_anchor, head]).unwrap();
        assert_eq!(summary.records, 7); // 5..=10 and the prune record
        assert_eq!(summary.anchor, Some(anchor));
        assert_eq!(summary.head, Some(head));
        assert_eq!(summary.checkpoints_matched, 2);
        assert_eq!(summary.checkpoints_before_retained, 1);
        // Without anchors, the same records are a gap after record 0.
        assert_eq!(
            verify(&records, &[]).unwrap_err(),
            VerifyError::SequenceGap {
                expected: 1,
                found: 5
            }
        );
    }

    #[test]
    fn pruned_chain_still_names_edits_deletions_and_truncation() {
        let (anchor, records) = pruned(4);
        let head = Checkpoint::of(records.last().unwrap());

        let mut edited = records.clone();
        edited[1].details = "edited".into();
        assert_eq!(
            verify_pruned(&[anchor], &edited, &[]).unwrap_err(),
            VerifyError::HashMismatch { sequence: 6 }
        );

        // The first retained record deleted: a gap right after the anchor.
        assert_eq!(
            verify_pruned(&[anchor], &records[1..], &[]).unwrap_err(),
            VerifyError::SequenceGap {
                expected: 5,
                found: 6
            }
        );

        let mut swapped = records.clone();
        swapped.swap(1, 2);
        assert!(verify_pruned(&[anchor], &swapped, &[]).is_err());

        assert_eq!(
            verify_pruned(&[anchor], &records[..3], &[head]).unwrap_err(),
            VerifyError::AnchorUnconfirmed { sequence: 4 }
        );
    }

    #[test]
    fn edited_anchor_is_detected() {
        let full = chain(10);
        let (anchor, records) = pruned(4);
        // Another hash: the first retained record no longer links to it.
        let mut edited = anchor;
        edited.hash[0] ^= 1;
        assert_eq!(
            verify_pruned(&[edited], &records, &[]).unwrap_err(),
            VerifyError::BrokenLink { sequence: 5 }
        );
        // ... and a checkpoint kept at the anchor's record says so before any record is read.
        assert_eq!(
            verify_pruned(&[edited], &records, &[Checkpoint::of(&full[3])]).unwrap_err(),
            VerifyError::AnchorMismatch { sequence: 4 }
        );
    }

    #[test]
    fn anchor_moved_forward_over_deleted_records_is_detected() {
        let full = chain(10);
        let (anchor, records) = pruned(4);
        // Records 5 and 6 deleted too, and the anchor rewritten to name record 6.
        let moved = Anchor {
            sequence: 6,
            hash: full[5].hash,
            ..anchor
        };
        assert_eq!(
            verify_pruned(&[moved], &records[2..], &[]).unwrap_err(),
            VerifyError::AnchorMismatch { sequence: 4 }
        );
        // A second anchor added beside the real one: nothing names it.
        assert_eq!(
            verify_pruned(&[anchor, moved], &records[2..], &[]).unwrap_err(),
            VerifyError::AnchorUnconfirmed { sequence: 6 }
        );
    }

    #[test]
    fn record_left_before_the_anchor_is_detected() {
        let full = chain(10);
        let (anchor, records) = pruned(4);
        let mut with_stray = vec![full[2].clone()];
        with_stray.extend(records);
        assert_eq!(
            verify_pruned(&[anchor], &with_stray, &[]).unwrap_err(),
            VerifyError::BeforeAnchor {
                anchor: 4,
                found: 3
            }
        );
    }

    #[test]
    fn prune_record_naming_an_unknown_anchor_is_detected() {
        let (_, records) = pruned(4);
        // The anchor table emptied: the chain starts after a gap anyway, and a chain that
        // starts at 1 but carries a prune record names an anchor that is not there.
        let mut forged = chain(3);
        let mut prune = entry(50);
        prune.action = PRUNE_ACTION.into();
        prune.details = records.last().unwrap().details.clone();
        let head = forged.last().map(|r| (r.sequence, r.hash));
        forged.push(AuditRecord::chain(head, prune));
        assert_eq!(
            verify(&forged, &[]).unwrap_err(),
            VerifyError::AnchorMismatch { sequence: 4 }
        );
    }

    // ---- property tests: adversarial chains ----

    fn arb_opt() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-z0-9:-]{0,8}")
    }

    fn arb_entry() -> impl Strategy<Value = AuditEntry> {
        (
            0i64..4_000_000_000,
            "[a-z-]{0,6}",
            "[A-Za-z]{0,6}",
            "[a-z]{0,4}",
            "[a-z]{0,4}",
            arb_opt(),
            arb_opt(),
            arb_opt(),
            "[A-Za-z]{0,4}",
            ".{0,12}",
        )
            .prop_map(
                |(t, actor, action, ns, ms, rot, step, fp, outcome, details)| AuditEntry {
                    time: DateTime::from_timestamp(t, 0).unwrap(),
                    actor,
                    action,
                    namespace: ns,
                    managed_secret: ms,
                    rotation_id: rot,
                    step,
                    fingerprint: fp,
                    outcome,
                    details,
                },
            )
    }

    /// One change an attacker with write access to the store could make.
    #[derive(Debug, Clone)]
    enum Mutation {
        /// Edit one field of record `i` (field index, and a seed for the edit).
        Edit {
            i: usize,
            field: u8,
            seed: u8,
        },
        /// Flip a bit of the stored hash or previous_hash.
        FlipHash {
            i: usize,
            previous: bool,
            bit: u8,
        },
        /// Change the sequence number.
        Renumber {
            i: usize,
            delta: u64,
        },
        Delete {
            i: usize,
        },
        Swap {
            i: usize,
            j: usize,
        },
        Duplicate {
            i: usize,
        },
        /// Drop the newest `n` records.
        Truncate {
            n: usize,
        },
        /// Any edit, then every hash and link recomputed (consistent chain, wrong head).
        EditAndRehash {
            i: usize,
            field: u8,
            seed: u8,
        },
        DeleteAndRehash {
            i: usize,
        },
    }

    impl Mutation {
        /// Whether a chain-only verification (no checkpoint) must detect it.
        /// (`len`: length of the chain before the mutation; deleting the newest record is a
        /// truncation.)
        fn detectable_without_checkpoint(&self, len: usize) -> bool {
            match *self {
                Mutation::Delete { i } => i % len != len - 1,
                Mutation::Truncate { .. }
                | Mutation::EditAndRehash { .. }
                | Mutation::DeleteAndRehash { .. } => false,
                _ => true,
            }
        }
    }

    fn arb_mutation() -> impl Strategy<Value = Mutation> {
        let ix = any::<prop::sample::Index>();
        prop_oneof![
            (any::<usize>(), 0u8..13, any::<u8>()).prop_map(|(i, field, seed)| Mutation::Edit {
                i,
                field,
                seed
            }),
            (any::<usize>(), any::<bool>(), any::<u8>())
                .prop_map(|(i, previous, bit)| Mutation::FlipHash { i, previous, bit }),
            (any::<usize>(), 1u64..5).prop_map(|(i, delta)| Mutation::Renumber { i, delta }),
            any::<usize>().prop_map(|i| Mutation::Delete { i }),
            (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::Swap { i, j }),
            any::<usize>().prop_map(|i| Mutation::Duplicate { i }),
            ix.prop_map(|n| Mutation::Truncate {
                n: n.index(usize::MAX)
            }),
            (any::<usize>(), 0u8..13, any::<u8>())
                .prop_map(|(i, field, seed)| Mutation::EditAndRehash { i, field, seed }),
            any::<usize>().prop_map(|i| Mutation::DeleteAndRehash { i }),
        ]
    }

    /// Changes one field of `r` so that it surely differs. Returns false if nothing changed.
    fn edit(r: &mut AuditRecord, field: u8, seed: u8) {
        let ch = char::from(b'a' + seed % 26);
        let toggle = |o: &mut Option<String>| {
            *o = match o.take() {
                None => Some(String::new()),
                Some(s) if s.is_empty() => None,
                Some(mut s) => {
                    s.push(ch);
                    Some(s)
                }
            }
        };
        match field {
            0 => r.time += chrono::Duration::seconds(1 + i64::from(seed)),
            1 => r.actor.push(ch),
            2 => r.action.push(ch),
            3 => r.namespace.push(ch),
            4 => r.managed_secret.push(ch),
            5 => toggle(&mut r.rotation_id),
            6 => toggle(&mut r.step),
            7 => toggle(&mut r.fingerprint),
            8 => r.outcome.push(ch),
            9 => r.details.push(ch),
            10 => {
                // Move one character from namespace to managed_secret (boundary shift).
                if let Some(c) = r.namespace.pop() {
                    r.managed_secret.insert(0, c);
                } else {
                    r.namespace.push(ch);
                }
            }
            11 => {
                let bit = usize::from(seed) % 256;
                r.previous_hash[bit / 8] ^= 1 << (bit % 8);
            }
            _ => r.sequence += 1 + u64::from(seed % 3),
        }
    }

    /// Applies the mutation; returns false when it is a no-op on this chain (e.g. swapping a
    /// record with itself), which the property then skips.
    fn apply(records: &mut Vec<AuditRecord>, m: &Mutation) -> bool {
        let len = records.len();
        let before = records.clone();
        match *m {
            Mutation::Edit { i, field, seed } => edit(&mut records[i % len], field, seed),
            Mutation::FlipHash { i, previous, bit } => {
                let r = &mut records[i % len];
                let h = if previous {
                    &mut r.previous_hash
                } else {
                    &mut r.hash
                };
                h[usize::from(bit) / 8] ^= 1 << (bit % 8);
            }
            Mutation::Renumber { i, delta } => {
                let r = &mut records[i % len];
                r.sequence = r.sequence.wrapping_add(delta);
            }
            Mutation::Delete { i } => {
                records.remove(i % len);
            }
            Mutation::Swap { i, j } => records.swap(i % len, j % len),
            Mutation::Duplicate { i } => {
                let r = records[i % len].clone();
                records.insert(i % len, r);
            }
            Mutation::Truncate { n } => records.truncate(len - 1 - n % len),
            Mutation::EditAndRehash { i, field, seed } => {
                edit(&mut records[i % len], field, seed);
                rehash(records);
            }
            Mutation::DeleteAndRehash { i } => {
                records.remove(i % len);
                rehash(records);
            }
        }
        *records != before
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn valid_chains_always_verify(entries in proptest::collection::vec(arb_entry(), 0..40)) {
            let records = build(entries);
            let checkpoints: Vec<Checkpoint> = records.iter().step_by(3).map(Checkpoint::of).collect();
            let summary = verify(&records, &checkpoints).unwrap();
            prop_assert_eq!(summary.records, records.len() as u64);
            prop_assert_eq!(summary.checkpoints_matched, checkpoints.len());
        }

        #[test]
        fn any_single_mutation_is_detected(
            entries in proptest::collection::vec(arb_entry(), 1..30),
            mutation in arb_mutation(),
        ) {
            let original = build(entries);
            let head = Checkpoint::of(original.last().unwrap());
            let mut records = original.clone();
            prop_assume!(apply(&mut records, &mutation));
            // With the head checkpoint kept outside the store, every mutation is detected.
            prop_assert!(verify(&records, &[head]).is_err(), "undetected: {:?}", mutation);
            if mutation.detectable_without_checkpoint(original.len()) {
                prop_assert!(verify(&records, &[]).is_err(), "undetected without checkpoint: {:?}", mutation);
            }
        }

        #[test]
        fn any_single_mutation_of_a_pruned_chain_is_detected(
            entries in proptest::collection::vec(arb_entry(), 2..30),
            prune in any::<prop::sample::Index>(),
            mutation in arb_mutation(),
        ) {
            // Prune records 1..=k, append the prune record naming the anchor.
            let mut full = build(entries);
            let k = 1 + prune.index(full.len() - 1);
            let last = &full[k - 1];
            let anchor = Anchor {
                sequence: last.sequence,
                hash: last.hash,
                time: last.time,
                pruned_at: last.time,
                cutoff: last.time,
                pruned_count: k as u64,
            };
            let mut prune_entry = entry(0);
            prune_entry.action = PRUNE_ACTION.into();
            prune_entry.details = anchor.prune_record_details();
            let head = full.last().map(|r| (r.sequence, r.hash));
            full.push(AuditRecord::chain(head, prune_entry));
            let original: Vec<AuditRecord> = full[k..].to_vec();
            let head = Checkpoint::of(original.last().unwrap());
            let summary = verify_pruned(&[anchor], &original, &[head]).unwrap();
            prop_assert_eq!(summary.records, original.len() as u64);

            let mut records = original.clone();
            // The attacker's re-hash continues from the anchor, not from the genesis hash.
            let changed = match mutation {
                Mutation::EditAndRehash { i, field, seed } => {
                    let i = i % records.len();
                    edit(&mut records[i], field, seed);
                    true
                }
                Mutation::DeleteAndRehash { i } => {
                    let i = i % records.len();
                    records.remove(i);
                    true
                }
                _ => apply(&mut records, &mutation),
            };
            prop_assume!(changed);
            if matches!(mutation, Mutation::EditAndRehash { .. } | Mutation::DeleteAndRehash { .. }) {
                let mut previous = anchor.hash;
                for (i, r) in records.iter_mut().enumerate() {
                    r.sequence = anchor.sequence + 1 + i as u64;
                    r.previous_hash = previous;
                    r.hash = r.compute_hash();
                    previous = r.hash;
                }
                prop_assume!(records != original);
            }
            prop_assert!(
                verify_pruned(&[anchor], &records, &[head]).is_err(),
                "undetected: {:?}", mutation
            );
        }
    }
}
