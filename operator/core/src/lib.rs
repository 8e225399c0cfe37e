//! Keyturn's rotation lifecycle as pure decisions: given the policy, the persisted state, an
//! injected clock and the outcome of the last step, it says whether a rotation is due, which step
//! runs next, what the status becomes, which audit records to write and when to look again.
//! No Kubernetes client, no async runtime, no I/O, no clock reads.
//!
//! The operator's loop, per reconcile:
//!
//! ```
//! use std::time::Duration;
//! use chrono::{DateTime, Utc};
//! use keyturn_core::{Action, Observation, RotationPolicy, RotationState, StepOutcome, Trigger};
//!
//! let policy = RotationPolicy {
//!     trigger: Trigger::Interval { every: keyturn_core::parse_duration("720h")? },
//!     rotate_before: None,
//!     ttl: Some(Duration::from_secs(2160 * 3600)),
//!     paused: false,
//! };
//! let state = RotationState::default(); // from status
//! let now: DateTime<Utc> = "2024-06-01T00:00:00Z".parse()?; // the injected clock
//! let observation = Observation {
//!     uid: "0f5e2c1a", generation: Some(1), policy: &policy, state: &state, now,
//!     manual_request: None,
//! };
//! let plan = keyturn_core::plan(&observation);
//! // 1. append plan.audit, 2. persist plan.state, 3. act:
//! if let Action::Run { rotation_id, step } = &plan.action {
//!     let outcome = StepOutcome::Pending { retry_after: Duration::from_secs(5) }; // run the step
//!     let observation = Observation { state: &plan.state, ..observation };
//!     let next = keyturn_core::record_outcome(&observation, rotation_id, *step, outcome);
//!     assert!(next.requeue_at.is_some_and(|at| at > now));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod backoff;
pub mod conditions;
pub mod due;
pub mod duration;
pub mod machine;
pub mod plan;
pub mod policy;
pub mod reads;
pub mod schedule;
pub mod state;

pub use audit::{AuditAction, AuditEvent, AuditOutcome};
pub use backoff::retry_delay;
pub use conditions::{compute_conditions, stalled_for_invalid_spec};
pub use due::{Due, DueReason, next_due};
pub use duration::{DurationError, format_duration, parse_duration};
pub use machine::{Step, rotation_id};
pub use plan::{Action, Observation, Plan, StepOutcome, plan, record_outcome};
pub use policy::{PolicyError, RotateBefore, RotationPolicy};
pub use schedule::{CronTrigger, ScheduleError, Trigger};
pub use state::{
    Condition, ConditionStatus, CredentialRef, Failure, InFlight, RotationState, whole_seconds,
};
