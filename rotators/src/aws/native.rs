//! Native mode: the secret's own rotation Lambda produces the value; keyturn starts it with
//! `RotateSecret` (keyed by the rotation's ClientRequestToken), waits for the new AWSCURRENT and
//! mirrors it, so it only ever reads what AWS rotated.

use super::errors::sdk_error;
use super::{
    AWSCURRENT, AWSPENDING, AwsSecretsManagerRotator, client_request_token, has_stage, holders,
};
use crate::credential::{Credential, CredentialId};
use crate::error::{ErrorCategory, RotatorError};
use crate::rotator::RotationContext;

impl AwsSecretsManagerRotator {
    pub(super) async fn native_create(
        &self,
        context: &RotationContext,
    ) -> Result<Credential, RotatorError> {
        let token = client_request_token(&context.rotation_id);
        if !self.describe().await?.contains_key(&token) {
            let result = self
                .client
                .rotate_secret()
                .secret_id(&self.config.secret_id)
                .client_request_token(&token)
                .send()
                .await;
            if let Err(error) = result {
                let error = sdk_error(self.operation("RotateSecret", Some(&token)), &error, None);
                // A crash between RotateSecret and the Lambda's createSecret step leaves no
                // version to see; AWS then refuses a second RotateSecret while the first runs.
                let in_progress = error.category == ErrorCategory::Misconfigured
                    && error
                        .detail
                        .to_ascii_lowercase()
                        .contains("previous rotation");
                if !in_progress {
                    return Err(error);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.native_wait;
        loop {
            let versions = self.describe().await?;
            let current = holders(&versions, AWSCURRENT).next().map(str::to_owned);
            let pending_anywhere = holders(&versions, AWSPENDING).next().is_some();
            let readable = if has_stage(&versions, &token, AWSCURRENT) {
                Some(token.clone())
            } else if versions.contains_key(&token) && !pending_anywhere {
                // Finished and superseded by a later rotation: mirror what is current now.
                current.clone()
            } else {
                None
            };
            if let Some(version_id) = readable {
                match self.read(&version_id, Some(AWSCURRENT), None).await {
                    Ok(value) => {
                        return Ok(Credential {
                            id: CredentialId(version_id),
                            username: None,
                            password: value,
                            expires_at: None,
                        });
                    }
                    // Labelled but not readable yet; keep waiting.
                    Err(error) if error.category == ErrorCategory::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let pending: Vec<&str> = holders(&versions, AWSPENDING).collect();
                return Err(RotatorError::new(
                    ErrorCategory::Backend,
                    self.operation("RotateSecret", Some(&token)),
                    format!(
                        "rotation still in progress after {:?}: AWSCURRENT on {}, AWSPENDING on {}",
                        self.config.native_wait,
                        current.as_deref().unwrap_or("no version"),
                        if pending.is_empty() {
                            "no version".to_owned()
                        } else {
                            pending.join(", ")
                        }
                    ),
                ));
            }
            tokio::time::sleep(self.config.native_poll_interval).await;
        }
    }

    pub(super) async fn native_test(&self, pending: &Credential) -> Result<(), RotatorError> {
        let stored = self
            .read(&pending.id.0, None, Some(&pending.password))
            .await?;
        if stored != pending.password {
            return Err(RotatorError::new(
                ErrorCategory::VerificationFailed,
                self.operation("test", Some(&pending.id.0)),
                "the version's value differs from the mirrored credential",
            ));
        }
        Ok(())
    }
}
