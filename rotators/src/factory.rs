//! Builds the rotator a ManagedSecret's `spec.rotator` describes. The Secrets the spec refers to
//! (admin credentials, tokens, CA bundles) are read through [`SecretSource`], which the
//! controller implements with the Kubernetes API and tests implement with a map, so this crate
//! never needs a Kubernetes client.

use async_trait::async_trait;
use keyturn_crds::{RotatorSpec, SecretKeyRef};

use crate::aws::{AwsConfig, AwsSecretsManagerRotator};
use crate::credential::SecretValue;
use crate::error::{ErrorCategory, RotatorError};
use crate::postgres::{PostgresConfig, PostgresRotator};
use crate::rotator::Rotator;
use crate::vault::{VaultConfig, VaultRotator};

/// Reads one key of a Secret in the ManagedSecret's namespace.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The value of `key` in Secret `name`. A missing Secret or key is a `NotFound` error that
    /// names both (never the value).
    async fn secret_value(&self, name: &str, key: &str) -> Result<SecretValue, RotatorError>;
}

/// The rotator for `spec`, with every referenced Secret resolved.
pub async fn build_rotator(
    spec: &RotatorSpec,
    secrets: &dyn SecretSource,
) -> Result<Box<dyn Rotator>, RotatorError> {
    match (&spec.postgres, &spec.vault, &spec.aws_secrets_manager) {
        (Some(postgres), None, None) => {
            let admin = &postgres.admin_secret_ref;
            let username = secrets
                .secret_value(&admin.name, &admin.username_key)
                .await?;
            let password = secrets
                .secret_value(&admin.name, &admin.password_key)
                .await?;
            let ca_pem = match &postgres.ca_secret_ref {
                Some(reference) => {
                    Some(read(secrets, reference).await?.expose().as_bytes().to_vec())
                }
                None => None,
            };
            let config = PostgresConfig::from_spec(postgres, username.expose(), password, ca_pem);
            Ok(Box::new(PostgresRotator::new(config)?))
        }
        (None, Some(vault), None) => {
            let auth_secret = match (&vault.auth.token, &vault.auth.app_role) {
                (Some(token), _) => Some(read(secrets, &token.secret_ref).await?),
                (None, Some(app_role)) => Some(read(secrets, &app_role.secret_id_ref).await?),
                (None, None) => None,
            };
            let ca_pem = match &vault.ca_secret_ref {
                Some(reference) => Some(read(secrets, reference).await?.expose().to_owned()),
                None => None,
            };
            let config = VaultConfig::from_spec(vault, auth_secret, ca_pem)?;
            Ok(Box::new(VaultRotator::new(config)?))
        }
        (None, None, Some(aws)) => {
            let config = AwsConfig::from_spec(aws)?;
            Ok(Box::new(AwsSecretsManagerRotator::new(config)?))
        }
        _ => Err(RotatorError::new(
            ErrorCategory::Misconfigured,
            "build the rotator for spec.rotator",
            "set exactly one of postgres, vault or awsSecretsManager",
        )),
    }
}

async fn read(
    secrets: &dyn SecretSource,
    reference: &SecretKeyRef,
) -> Result<SecretValue, RotatorError> {
    secrets.secret_value(&reference.name, &reference.key).await
}
