//! A fixed-clock harness that plays the operator: it persists each plan's state and feeds step
//! outcomes back, so tests read as a sequence of events.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyturn_core::{
    Action, CredentialRef, Observation, Plan, RotateBefore, RotationPolicy, RotationState, Step,
    StepOutcome, Trigger, plan, record_outcome,
};

pub const HOUR: Duration = Duration::from_secs(3600);
pub const UID: &str = "0f5e2c1a-6b7d-4e8f-9a0b-1c2d3e4f5a6b";

pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub fn interval_policy(every: Duration) -> RotationPolicy {
    RotationPolicy {
        trigger: Trigger::Interval { every },
        rotate_before: None,
        ttl: None,
        paused: false,
    }
}

pub fn with_expiry(
    mut policy: RotationPolicy,
    before: RotateBefore,
    ttl: Duration,
) -> RotationPolicy {
    policy.rotate_before = Some(before);
    policy.ttl = Some(ttl);
    policy
}

pub fn credential(
    id: &str,
    issued_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> CredentialRef {
    CredentialRef {
        id: id.to_owned(),
        fingerprint: format!("sha256:{id}"),
        issued_at,
        expires_at,
    }
}

pub struct Harness {
    pub policy: RotationPolicy,
    pub state: RotationState,
    pub now: DateTime<Utc>,
    pub generation: Option<i64>,
    pub manual_request: Option<String>,
    pub last: Option<Plan>,
    /// Credentials the fake backend issues get this lifetime (none: they never expire).
    pub issued_lifetime: Option<Duration>,
    pub issued: u32,
}

impl Harness {
    pub fn new(policy: RotationPolicy, now: DateTime<Utc>) -> Harness {
        Harness {
            policy,
            state: RotationState::default(),
            now,
            generation: Some(1),
            manual_request: None,
            last: None,
            issued_lifetime: None,
            issued: 0,
        }
    }

    fn observation(&self) -> Observation<'_> {
        Observation {
            uid: UID,
            generation: self.generation,
            policy: &self.policy,
            state: &self.state,
            now: self.now,
            manual_request: self.manual_request.as_deref(),
        }
    }

    /// Plans and persists the result, as the operator does.
    pub fn plan(&mut self) -> Plan {
        let plan = plan(&self.observation());
        self.persist(plan)
    }

    pub fn report(&mut self, rotation_id: &str, step: Step, outcome: StepOutcome) -> Plan {
        let plan = record_outcome(&self.observation(), rotation_id, step, outcome);
        self.persist(plan)
    }

    fn persist(&mut self, plan: Plan) -> Plan {
        if let Some(requeue_at) = plan.requeue_at {
            assert!(
                requeue_at > self.now,
                "requeue_at {requeue_at} is not after now {}",
                self.now
            );
        }
        // A status round trip must not change anything.
        let json = serde_json::to_string(&plan.state).unwrap();
        let read_back: RotationState = serde_json::from_str(&json).unwrap();
        assert_eq!(read_back, plan.state);
        self.state = plan.state.clone();
        self.last = Some(plan.clone());
        plan
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += chrono::Duration::from_std(by).unwrap();
    }

    pub fn advance_to(&mut self, to: DateTime<Utc>) {
        assert!(to >= self.now);
        self.now = to;
    }

    /// The staged credential a fake backend would issue now.
    pub fn new_credential(&mut self) -> CredentialRef {
        self.issued += 1;
        let expires_at = self
            .issued_lifetime
            .map(|lifetime| self.now + chrono::Duration::from_std(lifetime).unwrap());
        credential(&format!("cred-{}", self.issued), self.now, expires_at)
    }

    pub fn success_for(&mut self, step: Step) -> StepOutcome {
        let credential = (step == Step::Stage).then(|| self.new_credential());
        StepOutcome::Succeeded { credential }
    }

    /// Runs every step of the rotation `plan` asks for, each succeeding after `latency`.
    pub fn complete_rotation(&mut self, mut plan: Plan, latency: Duration) -> Plan {
        loop {
            match plan.action.clone() {
                Action::Run { rotation_id, step } => {
                    self.advance(latency);
                    let outcome = self.success_for(step);
                    plan = self.report(&rotation_id, step, outcome);
                    if step == Step::RetirePrevious {
                        return plan;
                    }
                }
                Action::Wait => panic!("expected a running rotation, got {plan:?}"),
            }
        }
    }
}

pub fn run_action(plan: &Plan) -> (String, Step) {
    match &plan.action {
        Action::Run { rotation_id, step } => (rotation_id.clone(), *step),
        Action::Wait => panic!("expected Run, got Wait: {plan:#?}"),
    }
}
