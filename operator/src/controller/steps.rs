//! Runs one rotation step for one ManagedSecret: the rotator does the backend's part, the
//! owned Secrets the Kubernetes part, and the result goes back to the lifecycle core as a
//! `StepOutcome`. Every step may run again after a crash and then changes nothing new.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyturn_core::machine::Step;
use keyturn_core::plan::StepOutcome;
use keyturn_core::state::{CredentialRef, RotationState};
use keyturn_crds::validate::ValidatedSpec;
use keyturn_crds::{ConsumerStatus, ManagedSecretSpec};
use keyturn_rotators::{
    Credential, CredentialId, ErrorCategory, RotationContext, Rotator, RotatorError,
};

use super::consumers;
use super::context::Context;
use super::object::ManagedSecretObject;
use super::secrets::{KubeSecretSource, OwnedSecrets};

/// Runs the steps of one reconcile; builds the rotator once, on first use.
pub struct StepRunner<'a> {
    context: &'a Context,
    object: &'a ManagedSecretObject,
    spec: &'a ManagedSecretSpec,
    validated: &'a ValidatedSpec,
    rotator: Option<Box<dyn Rotator>>,
    /// Consumer states learnt by RestartConsumers or AwaitRollout, for status.
    pub consumers: Option<Vec<ConsumerStatus>>,
}

impl<'a> StepRunner<'a> {
    pub fn new(
        context: &'a Context,
        object: &'a ManagedSecretObject,
        spec: &'a ManagedSecretSpec,
        validated: &'a ValidatedSpec,
    ) -> StepRunner<'a> {
        StepRunner {
            context,
            object,
            spec,
            validated,
            rotator: None,
            consumers: None,
        }
    }

    pub async fn run(
        &mut self,
        state: &RotationState,
        rotation_id: &str,
        step: Step,
    ) -> StepOutcome {
        match self.run_inner(state, rotation_id, step).await {
            Ok(outcome) => outcome,
            Err(error) => failed(&error),
        }
    }

    async fn run_inner(
        &mut self,
        state: &RotationState,
        rotation_id: &str,
        step: Step,
    ) -> Result<StepOutcome, RotatorError> {
        let Some(in_flight) = &state.in_flight else {
            return Err(RotatorError::new(
                ErrorCategory::Backend,
                format!("run {step}"),
                "no rotation is in flight",
            ));
        };
        let rotation = RotationContext {
            rotation_id: rotation_id.to_owned(),
            started_at: in_flight.started_at,
            valid_until: self
                .validated
                .policy
                .ttl
                .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
                .map(|ttl| in_flight.started_at + ttl),
            current: state
                .current
                .as_ref()
                .map(|current| CredentialId(current.id.clone())),
        };
        let secrets = OwnedSecrets::new(self.context.client.clone(), self.object);
        let succeeded = |credential| Ok(StepOutcome::Succeeded { credential });
        match step {
            Step::Stage => {
                // A credential already staged for this rotation id is reused: Stage after a
                // crash must not mint a second one.
                if let Some(credential) = secrets.staged(rotation_id).await? {
                    return succeeded(Some(reference(&credential, in_flight.started_at)));
                }
                secrets.ensure_publishable().await?;
                let credential = self.rotator().await?.create(&rotation).await?;
                let reference = reference(&credential, in_flight.started_at);
                secrets.stage(rotation_id, &credential, &reference).await?;
                succeeded(Some(reference))
            }
            Step::Apply | Step::Verify | Step::Publish => {
                let credential = self.staged_credential(&secrets, rotation_id, step).await?;
                let rotator = self.rotator().await?;
                match step {
                    Step::Apply => rotator.set(&rotation, &credential).await?,
                    Step::Verify => rotator.test(&rotation, &credential).await?,
                    _ => {
                        rotator.finish(&rotation, &credential).await?;
                        let reference = in_flight
                            .staged
                            .clone()
                            .unwrap_or_else(|| reference(&credential, in_flight.started_at));
                        secrets
                            .publish(rotation_id, &credential, &reference, self.spec.secret_type)
                            .await?;
                    }
                }
                succeeded(None)
            }
            Step::RestartConsumers => {
                let statuses =
                    consumers::restart(self.context, self.object, self.spec, rotation_id).await?;
                self.consumers = Some(statuses);
                succeeded(None)
            }
            Step::AwaitRollout => {
                let progress =
                    consumers::progress(self.context, self.object, self.spec, rotation_id).await?;
                let outcome =
                    progress.outcome(in_flight.started_at, self.validated.rollout_timeout);
                self.consumers = Some(progress.statuses);
                Ok(outcome)
            }
            Step::RetirePrevious => {
                if let Some(previous) = &state.previous {
                    self.rotator()
                        .await?
                        .retire(&rotation, &CredentialId(previous.id.clone()))
                        .await?;
                }
                succeeded(None)
            }
        }
    }

    async fn staged_credential(
        &self,
        secrets: &OwnedSecrets<'_>,
        rotation_id: &str,
        step: Step,
    ) -> Result<Credential, RotatorError> {
        secrets.staged(rotation_id).await?.ok_or_else(|| {
            RotatorError::new(
                ErrorCategory::Misconfigured,
                format!("{step}: read the staged credential of rotation {rotation_id}"),
                format!(
                    "staging Secret {} no longer holds it (deleted or overwritten by hand); the \
                     credential cannot be recovered, so remove status.inFlight to start a new rotation",
                    self.object.staging_secret_name()
                ),
            )
        })
    }

    /// The rotator for this ManagedSecret, built on first use (cleanup reuses it).
    pub async fn rotator(&mut self) -> Result<&dyn Rotator, RotatorError> {
        if self.rotator.is_none() {
            let source = KubeSecretSource::new(self.context.client.clone(), &self.object.namespace);
            let built = self
                .context
                .registry
                .build(&self.spec.rotator, &source)
                .await?;
            self.rotator = Some(built);
        }
        match &self.rotator {
            Some(rotator) => Ok(rotator.as_ref()),
            None => Err(RotatorError::new(
                ErrorCategory::Backend,
                "build the rotator",
                "no rotator was built",
            )),
        }
    }
}

fn reference(credential: &Credential, issued_at: DateTime<Utc>) -> CredentialRef {
    CredentialRef {
        id: credential.id.0.clone(),
        fingerprint: credential.fingerprint(),
        issued_at,
        expires_at: credential.expires_at,
    }
    .normalized()
}

/// A rotator error as the lifecycle's failure; its text names the call and object and, by the
/// rotators' contract, never holds a credential value.
pub fn failed(error: &RotatorError) -> StepOutcome {
    StepOutcome::Failed {
        category: error.category.as_str().to_owned(),
        message: error.to_string(),
        retryable: error.is_retryable(),
    }
}

/// How often an unfinished rollout is checked again.
pub const ROLLOUT_POLL: Duration = Duration::from_secs(5);
