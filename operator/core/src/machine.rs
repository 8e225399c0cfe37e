//! The steps of one rotation, their order, and the deterministic rotation id that makes every
//! step idempotent across crashes, re-lists and replicas.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One step of a rotation, run by the operator and then reported with
/// [`crate::plan::record_outcome`]. A failed step is retried as-is; the lifecycle never moves
/// backwards, because after Publish consumers may already use the new credential.
///
/// | Step | What it does | Durable after it succeeds | If it keeps failing |
/// |---|---|---|---|
/// | `Stage` | generates the new credential and writes it to the staging Secret, before the backend hears of it | the new credential (staging Secret) and its ref in `status.inFlight.staged` | old credential untouched and in use |
/// | `Apply` | tells the backend (ALTER ROLE, AWSPENDING, KV write) | the backend accepts the new credential | old credential still published; for SingleUser it may already be invalid at the backend, so the rotation must go on |
/// | `Verify` | logs in with the new credential | proof that the new credential works | old credential still published |
/// | `Publish` | writes the consumers' Secret and marks the new credential current at the backend (AWSCURRENT) | `status.current` is the new credential, `status.previous` the old one | consumers may use either; never roll back past this |
/// | `RestartConsumers` | restarts the listed and discovered workloads, once per rotation | restarts requested | consumers keep the old, still valid credential |
/// | `AwaitRollout` | waits until every consumer runs with the new Secret; may report "not yet" | all consumers use the new credential | previous credential kept valid, `Degraded` |
/// | `RetirePrevious` | revokes the previous credential ("not found" is success) | rotation complete: `revision` + 1, `previous` cleared | previous credential still valid (safe, not tidy) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Step {
    /// Generate the new credential and persist it in the staging Secret. Durable after: the
    /// new credential, before any backend knows it.
    Stage,
    /// Make the backend accept the staged credential. Durable after: the backend's acceptance.
    Apply,
    /// Log in with the staged credential. Durable after: proof it works.
    Verify,
    /// Write the consumers' Secret and mark the credential current at the backend. Durable
    /// after: `current` is the new credential, `previous` the old one.
    Publish,
    /// Restart consuming workloads once. Durable after: restarts requested.
    RestartConsumers,
    /// Wait until consumers run with the new Secret. Durable after: rollout observed complete.
    AwaitRollout,
    /// Revoke the previous credential. Durable after: the rotation is complete.
    RetirePrevious,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Stage,
        Step::Apply,
        Step::Verify,
        Step::Publish,
        Step::RestartConsumers,
        Step::AwaitRollout,
        Step::RetirePrevious,
    ];

    /// The step after this one; `None` after `RetirePrevious`, when the rotation is complete.
    pub fn next(self) -> Option<Step> {
        match self {
            Step::Stage => Some(Step::Apply),
            Step::Apply => Some(Step::Verify),
            Step::Verify => Some(Step::Publish),
            Step::Publish => Some(Step::RestartConsumers),
            Step::RestartConsumers => Some(Step::AwaitRollout),
            Step::AwaitRollout => Some(Step::RetirePrevious),
            Step::RetirePrevious => None,
        }
    }

    /// Whether consumers may already hold the new credential once this step has started.
    pub fn is_after_publish(self) -> bool {
        matches!(
            self,
            Step::RestartConsumers | Step::AwaitRollout | Step::RetirePrevious
        )
    }

    /// The PascalCase name, as serialised and used as condition reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Stage => "Stage",
            Step::Apply => "Apply",
            Step::Verify => "Verify",
            Step::Publish => "Publish",
            Step::RestartConsumers => "RestartConsumers",
            Step::AwaitRollout => "AwaitRollout",
            Step::RetirePrevious => "RetirePrevious",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A rotation id derived only from the resource uid, the revision being replaced and the due
/// time, so every replica and every retry computes the same id for one due rotation.
///
/// The result is `kt-` plus 40 hex digits (43 characters): a valid AWS ClientRequestToken
/// (32-64 characters), label value, and Postgres identifier suffix.
pub fn rotation_id(uid: &str, revision: u64, due_at: DateTime<Utc>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(uid.as_bytes());
    hasher.update([0]);
    hasher.update(revision.to_be_bytes());
    hasher.update(due_at.timestamp().to_be_bytes());
    let digest = hasher.finalize();
    format!("kt-{}", hex::encode(&digest[..20]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_order_and_end() {
        let mut step = Step::Stage;
        let mut seen = vec![step];
        while let Some(next) = step.next() {
            seen.push(next);
            step = next;
        }
        assert_eq!(seen, Step::ALL.to_vec());
    }

    #[test]
    fn steps_serialise_pascal_case() {
        for step in Step::ALL {
            assert_eq!(serde_json::to_string(&step).unwrap(), format!("\"{step}\""));
        }
    }

    #[test]
    fn rotation_id_is_deterministic_and_well_formed() {
        let due = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let id = rotation_id("4b1c-uid", 7, due);
        assert_eq!(id, rotation_id("4b1c-uid", 7, due));
        assert_ne!(id, rotation_id("4b1c-uid", 8, due));
        assert_ne!(
            id,
            rotation_id("4b1c-uid", 7, due + chrono::Duration::seconds(1))
        );
        assert_ne!(id, rotation_id("other", 7, due));
        assert!((32..=63).contains(&id.len()));
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert!(id.chars().last().unwrap().is_ascii_alphanumeric());
    }
}
