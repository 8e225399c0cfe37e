//! Managed mode: keyturn generates the value and drives AWS's staging labels itself
//! (AWSPENDING → AWSCURRENT → AWSPREVIOUS), with the rotation's ClientRequestToken as VersionId
//! so that every step can be repeated after a crash without creating a second version.

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;

use super::errors::sdk_error;
use super::{AWSCURRENT, AWSPENDING, AwsSecretsManagerRotator, has_stage, holders};
use crate::credential::{Credential, CredentialId};
use crate::error::{ErrorCategory, RotatorError};

impl AwsSecretsManagerRotator {
    fn conflict(&self, token: &str) -> RotatorError {
        RotatorError::new(
            ErrorCategory::Misconfigured,
            self.operation("PutSecretValue", Some(token)),
            "a version with this rotation's ClientRequestToken already holds a different value; \
             AWS versions are immutable, so the staged credential cannot be applied \
             (was the staging Secret regenerated, or does another writer reuse this rotation id?)",
        )
    }

    pub(super) async fn managed_set(
        &self,
        token: &str,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        let versions = self.describe().await?;
        if has_stage(&versions, token, AWSCURRENT) {
            // finish already ran (a crash before its completion was recorded).
            let stored = self
                .read(token, Some(AWSCURRENT), Some(&pending.password))
                .await?;
            return if stored == pending.password {
                Ok(())
            } else {
                Err(self.conflict(token))
            };
        }
        for dangling in holders(&versions, AWSPENDING).filter(|id| *id != token) {
            self.move_stage(AWSPENDING, None, Some(dangling)).await?;
        }
        if versions.contains_key(token) {
            let stored = self.read(token, None, Some(&pending.password)).await?;
            if stored != pending.password {
                return Err(self.conflict(token));
            }
            if !has_stage(&versions, token, AWSPENDING) {
                self.move_stage(AWSPENDING, Some(token), None).await?;
            }
            return Ok(());
        }
        self.client
            .put_secret_value()
            .secret_id(&self.config.secret_id)
            .client_request_token(token)
            .secret_string(pending.password.expose())
            .version_stages(AWSPENDING)
            .send()
            .await
            .map_err(|error| {
                if error.code() == Some("ResourceExistsException") {
                    self.conflict(token)
                } else {
                    sdk_error(
                        self.operation("PutSecretValue", Some(token)),
                        &error,
                        Some(&pending.password),
                    )
                }
            })?;
        Ok(())
    }

    pub(super) async fn managed_test(
        &self,
        token: &str,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        let versions = self.describe().await?;
        let stage = if has_stage(&versions, token, AWSCURRENT) {
            AWSCURRENT
        } else if has_stage(&versions, token, AWSPENDING) {
            AWSPENDING
        } else {
            return Err(RotatorError::new(
                ErrorCategory::VerificationFailed,
                self.operation("test", Some(token)),
                "the version carries neither AWSPENDING nor AWSCURRENT: set has not completed",
            ));
        };
        let stored = self
            .read(token, Some(stage), Some(&pending.password))
            .await?;
        if stored != pending.password {
            return Err(RotatorError::new(
                ErrorCategory::VerificationFailed,
                self.operation("test", Some(token)),
                format!("the {stage} value differs from the staged credential"),
            ));
        }
        Ok(())
    }

    pub(super) async fn managed_finish(
        &self,
        token: &str,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        let versions = self.describe().await?;
        if !versions.contains_key(token) {
            return Err(RotatorError::new(
                ErrorCategory::NotFound,
                self.operation("finish", Some(token)),
                "the version does not exist: set has not run for this rotation",
            ));
        }
        if !has_stage(&versions, token, AWSCURRENT) {
            // Never publish a value the controller does not hold.
            let stored = self.read(token, None, Some(&pending.password)).await?;
            if stored != pending.password {
                return Err(self.conflict(token));
            }
            let current: Vec<&str> = holders(&versions, AWSCURRENT).collect();
            match current.as_slice() {
                [] => self.move_stage(AWSCURRENT, Some(token), None).await?,
                [from] => self.move_stage(AWSCURRENT, Some(token), Some(from)).await?,
                many => {
                    return Err(RotatorError::new(
                        ErrorCategory::Backend,
                        self.operation("finish", Some(token)),
                        format!(
                            "AWSCURRENT is on {} versions ({}); refusing to move it",
                            many.len(),
                            many.join(", ")
                        ),
                    ));
                }
            }
        }
        // AWSPENDING ends on no version: AWS (and the next rotation) read a pending label on a
        // version other than AWSCURRENT as a rotation still in progress.
        for pending_holder in holders(&versions, AWSPENDING) {
            self.move_stage(AWSPENDING, None, Some(pending_holder))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn managed_retire(
        &self,
        token: &str,
        previous: &CredentialId,
    ) -> Result<(), RotatorError> {
        let versions = self.describe().await?;
        for version_id in [token, previous.0.as_str()] {
            if has_stage(&versions, version_id, AWSPENDING) {
                self.move_stage(AWSPENDING, None, Some(version_id)).await?;
            }
        }
        Ok(())
    }
}
