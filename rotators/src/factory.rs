//! Builds the rotator a ManagedSecret's `spec.rotator` describes. The Secrets the spec refers to
//! (admin credentials, tokens, CA bundles) are read through [`SecretSource`], which the
//! controller implements with the Kubernetes API and tests implement with a map, so this crate
//! never needs a Kubernetes client. Third-party rotators plug in as [`RotatorDriver`]s in a
//! [`RotatorRegistry`]: the controller only ever calls [`RotatorRegistry::build`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use keyturn_crds::{CustomRotatorSpec, RotatorSpec, SecretKeyRef};

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

/// A third-party rotator, selected by `spec.rotator.custom.driver`.
#[async_trait]
pub trait RotatorDriver: Send + Sync {
    /// `<DNS domain>/<name>`, e.g. `example.com/token-service`: what ManagedSecrets put in
    /// `spec.rotator.custom.driver`.
    fn name(&self) -> &str;

    /// The rotator for one ManagedSecret. `secrets` holds the resolved values of
    /// `spec.rotator.custom.secretRefs`, by the names the spec gave them.
    async fn build(
        &self,
        parameters: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, SecretValue>,
    ) -> Result<Box<dyn Rotator>, RotatorError>;
}

/// The built-in rotators plus whatever drivers this keyturn build registered.
#[derive(Clone, Default)]
pub struct RotatorRegistry {
    drivers: BTreeMap<String, Arc<dyn RotatorDriver>>,
}

impl fmt::Debug for RotatorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatorRegistry")
            .field("drivers", &self.drivers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RotatorRegistry {
    /// Only the built-in rotators (postgres, vault, awsSecretsManager).
    pub fn new() -> RotatorRegistry {
        RotatorRegistry::default()
    }

    /// Adds a third-party driver; a later driver with the same name replaces the earlier one.
    pub fn with_driver(mut self, driver: Arc<dyn RotatorDriver>) -> RotatorRegistry {
        self.drivers.insert(driver.name().to_owned(), driver);
        self
    }

    /// Names of the registered third-party drivers.
    pub fn driver_names(&self) -> impl Iterator<Item = &str> {
        self.drivers.keys().map(String::as_str)
    }

    /// The rotator for `spec`, with every referenced Secret resolved.
    pub async fn build(
        &self,
        spec: &RotatorSpec,
        secrets: &dyn SecretSource,
    ) -> Result<Box<dyn Rotator>, RotatorError> {
        match (
            &spec.postgres,
            &spec.vault,
            &spec.aws_secrets_manager,
            &spec.custom,
        ) {
            (Some(postgres), None, None, None) => {
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
                let config =
                    PostgresConfig::from_spec(postgres, username.expose(), password, ca_pem);
                Ok(Box::new(PostgresRotator::new(config)?))
            }
            (None, Some(vault), None, None) => {
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
            (None, None, Some(aws), None) => {
                let config = AwsConfig::from_spec(aws)?;
                Ok(Box::new(AwsSecretsManagerRotator::new(config)?))
            }
            (None, None, None, Some(custom)) => self.build_custom(custom, secrets).await,
            _ => Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                "build the rotator for spec.rotator",
                "set exactly one of postgres, vault, awsSecretsManager or custom",
            )),
        }
    }

    async fn build_custom(
        &self,
        custom: &CustomRotatorSpec,
        secrets: &dyn SecretSource,
    ) -> Result<Box<dyn Rotator>, RotatorError> {
        let Some(driver) = self.drivers.get(&custom.driver) else {
            let known: Vec<&str> = self.driver_names().collect();
            return Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                format!("build the rotator for driver {}", custom.driver),
                format!(
                    "no driver of that name is registered in this keyturn build (registered: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        let mut resolved = BTreeMap::new();
        for (name, reference) in &custom.secret_refs {
            resolved.insert(name.clone(), read(secrets, reference).await?);
        }
        driver.build(&custom.parameters, &resolved).await
    }
}

/// The rotator for `spec` using only the built-in rotators.
pub async fn build_rotator(
    spec: &RotatorSpec,
    secrets: &dyn SecretSource,
) -> Result<Box<dyn Rotator>, RotatorError> {
    RotatorRegistry::new().build(spec, secrets).await
}

async fn read(
    secrets: &dyn SecretSource,
    reference: &SecretKeyRef,
) -> Result<SecretValue, RotatorError> {
    secrets.secret_value(&reference.name, &reference.key).await
}
