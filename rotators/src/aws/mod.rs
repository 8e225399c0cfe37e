//! The AWS Secrets Manager rotator: the client, the `Rotator` impl that dispatches each step to
//! managed mode (`managed.rs`: AWS's four-step protocol with keyturn's rotation id as
//! ClientRequestToken) or native mode (`native.rs`: `RotateSecret` and the secret's own Lambda),
//! and the describe/read/move-stage calls both share.
//!
//! Every call names its staging label or VersionId explicitly: a `GetSecretValue` without one
//! returns the "default" version, which some implementations (moto) do not move with the label.

mod config;
mod errors;
mod managed;
mod native;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::future::ProvideCredentials as CredentialsFuture;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::{Credentials, Region, SharedHttpClient};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use keyturn_crds::AwsRotationMode;

use crate::credential::{Credential, CredentialId, SecretValue, generate_password};
use crate::error::{ErrorCategory, RotatorError};
use crate::rotator::{RotationContext, Rotator};

pub use config::{AwsConfig, AwsStaticCredentials, client_request_token};
pub use errors::classify;
use errors::sdk_error;

/// The staging label of the version consumers use.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The staging label of a version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";
/// The staging label AWS moves to the version AWSCURRENT left.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// The versions of a secret and their staging labels, as DescribeSecret reports them.
type Versions = BTreeMap<String, Vec<String>>;

fn has_stage(versions: &Versions, version_id: &str, stage: &str) -> bool {
    versions
        .get(version_id)
        .is_some_and(|stages| stages.iter().any(|s| s == stage))
}

fn holders<'a>(versions: &'a Versions, stage: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    versions
        .iter()
        .filter(move |(_, stages)| stages.iter().any(|s| s == stage))
        .map(|(id, _)| id.as_str())
}

/// The SDK's default credential chain (environment, IRSA web identity, EKS Pod Identity,
/// instance profile), built on first use so that constructing a rotator stays synchronous.
struct DefaultChain {
    region: Region,
    http_client: SharedHttpClient,
    loaded: tokio::sync::OnceCell<Option<SharedCredentialsProvider>>,
}

impl fmt::Debug for DefaultChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultChain")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl ProvideCredentials for DefaultChain {
    fn provide_credentials<'a>(&'a self) -> CredentialsFuture<'a>
    where
        Self: 'a,
    {
        CredentialsFuture::new(async move {
            let provider = self
                .loaded
                .get_or_init(|| async {
                    aws_config::defaults(BehaviorVersion::latest())
                        .region(self.region.clone())
                        .http_client(self.http_client.clone())
                        .load()
                        .await
                        .credentials_provider()
                })
                .await;
            match provider {
                Some(provider) => provider.provide_credentials().await,
                None => Err(CredentialsError::not_loaded(
                    "the default credential chain found no provider",
                )),
            }
        })
    }
}

/// Rotates one secret in AWS Secrets Manager.
///
/// Managed mode, per rotation (token = [`client_request_token`] of the rotation id):
/// - `create` generates the value locally (no API call; the controller persists it first);
/// - `set` removes a dangling AWSPENDING left on another version by an earlier failed rotation,
///   then `PutSecretValue(token, value, [AWSPENDING])`. Idempotent: an existing version for the
///   token with the same value is accepted (also once it is AWSCURRENT); a different value is a
///   permanent conflict, never an overwrite;
/// - `test` reads the token's version by VersionId and its label and compares;
/// - `finish` moves AWSCURRENT to the token's version (AWS moves AWSPREVIOUS to the old one),
///   then removes AWSPENDING from it;
/// - `retire` only removes a lingering AWSPENDING from the previous or new version. It deletes
///   nothing: AWS keeps the previous value readable as AWSPREVIOUS until the next rotation, and
///   deprecates unlabelled versions itself.
///
/// keyturn never creates AWS secrets: a missing secret is `NotFound` (create it with
/// Terraform/CloudFormation/IAM-controlled tooling, with an initial value).
pub struct AwsSecretsManagerRotator {
    client: Client,
    config: AwsConfig,
}

impl fmt::Debug for AwsSecretsManagerRotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSecretsManagerRotator")
            .field("region", &self.config.region)
            .field("secret_id", &self.config.secret_id)
            .field("endpoint", &self.config.endpoint)
            .field("mode", &self.config.mode)
            .finish_non_exhaustive()
    }
}

impl AwsSecretsManagerRotator {
    /// Builds the SDK client (rustls with ring, the SDK's standard retry mode, the configured
    /// timeouts). Makes no API call: with the default credential chain, the chain is built and
    /// asked on the first call (and its credentials cached by the SDK).
    pub fn new(config: AwsConfig) -> Result<AwsSecretsManagerRotator, RotatorError> {
        config.validate()?;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let region = Region::new(config.region.clone());
        let retry = RetryConfig::standard()
            .with_max_attempts(config.max_attempts)
            .with_initial_backoff(config.initial_backoff)
            .with_max_backoff(config.max_backoff);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .operation_timeout(config.operation_timeout)
            .build();
        let mut builder = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .http_client(http_client.clone())
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        builder = match &config.credentials {
            Some(credentials) => builder.credentials_provider(Credentials::new(
                credentials.access_key_id.clone(),
                credentials.secret_access_key.expose().to_owned(),
                credentials
                    .session_token
                    .as_ref()
                    .map(|token| token.expose().to_owned()),
                None,
                "keyturn-static",
            )),
            None => builder.credentials_provider(DefaultChain {
                region,
                http_client,
                loaded: tokio::sync::OnceCell::new(),
            }),
        };
        Ok(AwsSecretsManagerRotator {
            client: Client::from_conf(builder.build()),
            config,
        })
    }

    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    fn operation(&self, call: &str, version_id: Option<&str>) -> String {
        match version_id {
            Some(version_id) => format!(
                "{call} on AWS secret {} version {version_id}",
                self.config.secret_id
            ),
            None => format!("{call} on AWS secret {}", self.config.secret_id),
        }
    }

    async fn describe(&self) -> Result<Versions, RotatorError> {
        let output = self
            .client
            .describe_secret()
            .secret_id(&self.config.secret_id)
            .send()
            .await
            .map_err(|error| {
                let mut error = sdk_error(self.operation("DescribeSecret", None), &error, None);
                if error.category == ErrorCategory::NotFound {
                    error.detail.push_str(
                        " (keyturn does not create AWS secrets: create it with an initial value, \
                     e.g. with Terraform, and grant the operator's role access)",
                    );
                }
                error
            })?;
        Ok(output
            .version_ids_to_stages()
            .map(|map| {
                map.iter()
                    .map(|(id, stages)| (id.clone(), stages.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The value of `version_id`, read with its label when given.
    async fn read(
        &self,
        version_id: &str,
        stage: Option<&str>,
        known: Option<&SecretValue>,
    ) -> Result<SecretValue, RotatorError> {
        let operation = self.operation("GetSecretValue", Some(version_id));
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.config.secret_id)
            .version_id(version_id)
            .set_version_stage(stage.map(str::to_owned))
            .send()
            .await
            .map_err(|error| sdk_error(operation.clone(), &error, known))?;
        match output.secret_string() {
            Some(value) => Ok(SecretValue::new(value)),
            None => Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                operation,
                "the version holds SecretBinary, not SecretString; \
                 keyturn manages string secrets only",
            )),
        }
    }

    async fn move_stage(
        &self,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), RotatorError> {
        let call = match (move_to, remove_from) {
            (Some(to), Some(from)) => {
                format!("UpdateSecretVersionStage (move {stage} from {from} to {to})")
            }
            (Some(to), None) => format!("UpdateSecretVersionStage (add {stage} to {to})"),
            (None, Some(from)) => format!("UpdateSecretVersionStage (remove {stage} from {from})"),
            (None, None) => return Ok(()),
        };
        self.client
            .update_secret_version_stage()
            .secret_id(&self.config.secret_id)
            .version_stage(stage)
            .set_move_to_version_id(move_to.map(str::to_owned))
            .set_remove_from_version_id(remove_from.map(str::to_owned))
            .send()
            .await
            .map_err(|error| sdk_error(self.operation(&call, None), &error, None))?;
        Ok(())
    }

    /// The token of `context`, checked against the id `create` gave the credential.
    fn token_for(
        &self,
        context: &RotationContext,
        pending: &Credential,
    ) -> Result<String, RotatorError> {
        let token = client_request_token(&context.rotation_id);
        if self.config.mode == AwsRotationMode::Managed && pending.id.0 != token {
            return Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                self.operation("check staged credential", Some(&token)),
                format!(
                    "the staged credential's id {} is not this rotation's version id",
                    pending.id
                ),
            ));
        }
        Ok(token)
    }
}

#[async_trait]
impl Rotator for AwsSecretsManagerRotator {
    fn kind(&self) -> &'static str {
        "aws-secrets-manager"
    }

    async fn create(&self, context: &RotationContext) -> Result<Credential, RotatorError> {
        match self.config.mode {
            AwsRotationMode::Managed => Ok(Credential {
                id: CredentialId(client_request_token(&context.rotation_id)),
                username: None,
                password: generate_password(self.config.password_length),
                expires_at: None,
            }),
            AwsRotationMode::Native => self.native_create(context).await,
        }
    }

    async fn set(
        &self,
        context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        let token = self.token_for(context, pending)?;
        match self.config.mode {
            AwsRotationMode::Managed => self.managed_set(&token, pending).await,
            // The rotation Lambda set it; `create` returned only once it was AWSCURRENT.
            AwsRotationMode::Native => Ok(()),
        }
    }

    async fn test(
        &self,
        context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        let token = self.token_for(context, pending)?;
        match self.config.mode {
            AwsRotationMode::Managed => self.managed_test(&token, pending).await,
            AwsRotationMode::Native => self.native_test(pending).await,
        }
    }

    async fn finish(
        &self,
        context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        let token = self.token_for(context, pending)?;
        match self.config.mode {
            AwsRotationMode::Managed => self.managed_finish(&token, pending).await,
            AwsRotationMode::Native => Ok(()),
        }
    }

    async fn retire(
        &self,
        context: &RotationContext,
        previous: &CredentialId,
    ) -> Result<(), RotatorError> {
        match self.config.mode {
            AwsRotationMode::Managed => {
                self.managed_retire(&client_request_token(&context.rotation_id), previous)
                    .await
            }
            // AWS's rotation Lambda owns the version lifecycle.
            AwsRotationMode::Native => Ok(()),
        }
    }
}
