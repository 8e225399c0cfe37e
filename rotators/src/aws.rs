//! The AWS Secrets Manager rotator. Managed mode drives AWS's own four-step protocol
//! (AWSPENDING → AWSCURRENT → AWSPREVIOUS) with keyturn's rotation id as ClientRequestToken;
//! native mode calls `RotateSecret` (the secret's rotation Lambda does the work) and mirrors it.
//!
//! Every call names its staging label or VersionId explicitly: a `GetSecretValue` without one
//! returns the "default" version, which some implementations (moto) do not move with the label.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::future::ProvideCredentials as CredentialsFuture;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::{Credentials, Region, SharedHttpClient};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use keyturn_crds::AwsRotationMode;
use sha2::{Digest, Sha256};

use crate::credential::{Credential, CredentialId, SecretValue, generate_password};
use crate::error::{ErrorCategory, RotatorError};
use crate::rotator::{RotationContext, Rotator};

/// The staging label of the version consumers use.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The staging label of a version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";
/// The staging label AWS moves to the version AWSCURRENT left.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// Static keys, for tests and for setups without IRSA / Pod Identity.
#[derive(Debug, Clone)]
pub struct AwsStaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretValue,
    pub session_token: Option<SecretValue>,
}

/// Everything the rotator needs, resolved by the factory from the ManagedSecret spec.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    /// The secret's name or ARN.
    pub secret_id: String,
    /// A custom endpoint (VPC endpoint, test server); `None` uses the regional AWS endpoint.
    pub endpoint: Option<String>,
    pub mode: AwsRotationMode,
    /// `None` uses the SDK's default chain (IRSA web identity, EKS Pod Identity, instance
    /// profile, environment).
    pub credentials: Option<AwsStaticCredentials>,
    /// Bound on one API call including its retries.
    pub operation_timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts per call, first one included (SDK standard retry mode: throttling, 5xx and
    /// transient network errors are retried with exponential backoff and jitter).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Native mode: how long `create` waits for the rotation Lambda before answering with a
    /// retryable "still in progress" error (the controller calls `create` again later).
    pub native_wait: Duration,
    pub native_poll_interval: Duration,
    /// Managed mode: length of the generated alphanumeric value.
    pub password_length: usize,
}

impl AwsConfig {
    /// A validated configuration with the default timeouts and retries.
    pub fn new(
        region: impl Into<String>,
        secret_id: impl Into<String>,
    ) -> Result<AwsConfig, RotatorError> {
        let config = AwsConfig {
            region: region.into(),
            secret_id: secret_id.into(),
            endpoint: None,
            mode: AwsRotationMode::Managed,
            credentials: None,
            operation_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            native_wait: Duration::from_secs(30),
            native_poll_interval: Duration::from_secs(2),
            password_length: 32,
        };
        config.validate()?;
        Ok(config)
    }

    /// The configuration a ManagedSecret's `spec.rotator.awsSecretsManager` describes.
    pub fn from_spec(
        spec: &keyturn_crds::AwsSecretsManagerRotatorSpec,
    ) -> Result<AwsConfig, RotatorError> {
        let mut config = AwsConfig::new(&spec.region, &spec.secret_id)?;
        config.endpoint = spec.endpoint.clone();
        config.mode = spec.mode;
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields the CRD schema also checks (defence in depth: the spec may come from an
    /// older CRD or another caller) and the numbers only code sets.
    pub fn validate(&self) -> Result<(), RotatorError> {
        let invalid = |detail: String| {
            Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                "validate AWS rotator configuration",
                detail,
            ))
        };
        if !valid_secret_id(&self.secret_id) {
            return invalid(format!(
                "secret id {:?} is not a secret name or ARN \
                 (1-2048 characters of A-Z a-z 0-9 / _ + = . @ : -)",
                self.secret_id
            ));
        }
        if !valid_region(&self.region) {
            return invalid(format!(
                "region {:?} is not an AWS region name such as us-east-1",
                self.region
            ));
        }
        if let Some(endpoint) = &self.endpoint
            && !valid_endpoint(endpoint)
        {
            return invalid(format!("endpoint {endpoint:?} is not an http(s) URL"));
        }
        if let Some(credentials) = &self.credentials
            && (credentials.access_key_id.is_empty()
                || credentials.secret_access_key.expose().is_empty())
        {
            return invalid(
                "static credentials need a non-empty access key id and secret access key"
                    .to_owned(),
            );
        }
        if self.operation_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.max_attempts == 0
        {
            return invalid("timeouts and max_attempts must be positive".to_owned());
        }
        if !(16..=4096).contains(&self.password_length) {
            return invalid(format!(
                "password length {} is outside 16-4096",
                self.password_length
            ));
        }
        Ok(())
    }
}

fn valid_secret_id(secret_id: &str) -> bool {
    (1..=2048).contains(&secret_id.len())
        && secret_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@:-".contains(&b))
}

/// `^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$`, as in the CRD.
fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let lower = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase());
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let country = |part: &str| part.len() == 2 && lower(part);
    let partition = |part: &str| part == "gov" || (part.starts_with("iso") && lower(part));
    region.len() <= 32
        && match parts.as_slice() {
            [c, area, number] => country(c) && lower(area) && digits(number),
            [c, p, area, number] => country(c) && partition(p) && lower(area) && digits(number),
            _ => false,
        }
}

fn valid_endpoint(endpoint: &str) -> bool {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"));
    endpoint.len() <= 2048
        && rest.is_some_and(|rest| {
            !rest.is_empty()
                && !rest.starts_with(['/', '.', '?', '#', '$'])
                && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
        })
}

/// The ClientRequestToken (and so the VersionId) of a rotation.
///
/// AWS wants 32-64 characters. A rotation id from `keyturn_core::machine::rotation_id`
/// (`kt-` + 40 hex digits) already is one and is used as is, so the VersionId in AWS equals the
/// rotation id in status. Any other id (shorter, longer, or with characters outside
/// `[A-Za-z0-9-]`) is mapped deterministically to `kt-` + the first 40 hex digits of
/// SHA-256("keyturn-aws-token-v1" ‖ 0 ‖ id): every replica and retry derives the same token.
pub fn client_request_token(rotation_id: &str) -> String {
    let usable = (32..=64).contains(&rotation_id.len())
        && rotation_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if usable {
        return rotation_id.to_owned();
    }
    let mut hasher = Sha256::new();
    hasher.update(b"keyturn-aws-token-v1\0");
    hasher.update(rotation_id.as_bytes());
    format!("kt-{}", hex::encode(&hasher.finalize()[..20]))
}

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

    fn conflict(&self, token: &str) -> RotatorError {
        RotatorError::new(
            ErrorCategory::Misconfigured,
            self.operation("PutSecretValue", Some(token)),
            "a version with this rotation's ClientRequestToken already holds a different value; \
             AWS versions are immutable, so the staged credential cannot be applied \
             (was the staging Secret regenerated, or does another writer reuse this rotation id?)",
        )
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

    async fn managed_set(&self, token: &str, pending: &Credential) -> Result<(), RotatorError> {
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

    async fn managed_test(&self, token: &str, pending: &Credential) -> Result<(), RotatorError> {
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

    async fn managed_finish(&self, token: &str, pending: &Credential) -> Result<(), RotatorError> {
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

    async fn managed_retire(
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

    async fn native_create(&self, context: &RotationContext) -> Result<Credential, RotatorError> {
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

    async fn native_test(&self, pending: &Credential) -> Result<(), RotatorError> {
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

/// Maps an SDK error to a rotator error. The detail is the service's error code and message (or
/// the transport error chain); `known` is removed from it should a backend ever echo it.
fn sdk_error<E>(
    operation: String,
    error: &SdkError<E, HttpResponse>,
    known: Option<&SecretValue>,
) -> RotatorError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error
        .raw_response()
        .map(|response| response.status().as_u16());
    let retry_after = error
        .raw_response()
        .and_then(|response| response.headers().get("retry-after"))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let (category, detail) = match error {
        SdkError::TimeoutError(_) => (ErrorCategory::Unreachable, error_chain(error)),
        SdkError::DispatchFailure(failure) => {
            let category = match credentials_error(error) {
                // No provider in the chain had credentials, or its configuration is invalid:
                // retrying without a configuration change cannot help.
                Some(
                    CredentialsError::CredentialsNotLoaded(_)
                    | CredentialsError::InvalidConfiguration(_),
                ) => ErrorCategory::AuthenticationFailed,
                _ if failure.is_user() => ErrorCategory::Misconfigured,
                _ => ErrorCategory::Unreachable,
            };
            (category, error_chain(error))
        }
        SdkError::ConstructionFailure(_) => (ErrorCategory::Misconfigured, error_chain(error)),
        _ => {
            let code = error.code().unwrap_or("");
            let message = error.message().unwrap_or("");
            let category = classify(code, message, status);
            let detail = match (code.is_empty(), status) {
                (false, Some(status)) => format!("{code} (HTTP {status}): {message}"),
                (false, None) => format!("{code}: {message}"),
                (true, Some(status)) => format!("HTTP {status}: {}", error_chain(error)),
                (true, None) => error_chain(error),
            };
            (category, detail)
        }
    };
    let detail = match known {
        Some(value) if !value.expose().is_empty() => detail.replace(value.expose(), "[redacted]"),
        _ => detail,
    };
    RotatorError {
        category,
        operation,
        detail: detail.trim_end_matches(['.', ' ']).to_owned(),
        retry_after,
    }
}

/// The Display of an error and its sources, joined with ": " (never Debug, which for SDK errors
/// includes raw responses).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let part = next.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = next.source();
    }
    text
}

/// The credential provider's error behind a dispatch failure, if that is what it was.
fn credentials_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a CredentialsError> {
    let mut source = Some(error);
    while let Some(next) = source {
        if let Some(found) = next.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        source = next.source();
    }
    None
}

/// The category of a service error, by AWS error code first and HTTP status second.
pub fn classify(code: &str, message: &str, status: Option<u16>) -> ErrorCategory {
    match code {
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled" => ErrorCategory::Throttled,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException"
        | "ExpiredToken" => ErrorCategory::AuthenticationFailed,
        "AccessDeniedException" | "AccessDenied" => {
            // Some front ends answer AccessDenied for keys they do not know at all.
            let lowered = message.to_ascii_lowercase();
            if lowered.contains("security token") || lowered.contains("access key id") {
                ErrorCategory::AuthenticationFailed
            } else {
                ErrorCategory::PermissionDenied
            }
        }
        // Cannot use the KMS key the secret is encrypted with.
        "DecryptionFailure" => ErrorCategory::PermissionDenied,
        "ResourceNotFoundException" => ErrorCategory::NotFound,
        "InvalidRequestException"
        | "InvalidParameterException"
        | "ValidationException"
        | "ResourceExistsException"
        | "PreconditionNotMetException"
        | "EncryptionFailure"
        | "LimitExceededException"
        | "MalformedPolicyDocumentException" => ErrorCategory::Misconfigured,
        "InternalServiceError" | "InternalFailure" | "ServiceUnavailable" => ErrorCategory::Backend,
        _ => match status {
            Some(429) => ErrorCategory::Throttled,
            Some(401) => ErrorCategory::AuthenticationFailed,
            Some(403) => ErrorCategory::PermissionDenied,
            Some(404) => ErrorCategory::NotFound,
            _ => ErrorCategory::Backend,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_rotation_ids_are_used_as_tokens() {
        let id = format!("kt-{}", "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(client_request_token(&id), id);
    }

    #[test]
    fn other_ids_map_to_stable_valid_tokens() {
        for id in [
            "rot-1",
            "",
            "x".repeat(65).as_str(),
            "has space and quote \" in it 0123456789",
        ] {
            let token = client_request_token(id);
            assert_eq!(token, client_request_token(id));
            assert!((32..=64).contains(&token.len()), "{token}");
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            );
        }
        assert_ne!(client_request_token("rot-1"), client_request_token("rot-2"));
    }

    #[test]
    fn regions_follow_the_crd_pattern() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "us-isob-east-1",
            "cn-north-1",
        ] {
            assert!(valid_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us-east",
            "US-east-1",
            "us-east-1 ",
            "us-east-1;x",
            "useast1",
            "u-east-1",
        ] {
            assert!(!valid_region(bad), "{bad}");
        }
    }

    #[test]
    fn secret_ids_and_endpoints_are_checked() {
        assert!(valid_secret_id("prod/orders-db_1+=.@:x"));
        assert!(valid_secret_id(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"
        ));
        for bad in ["", "prod/x\"; rm -rf /", "with space", "a\nb", "ü"] {
            assert!(!valid_secret_id(bad), "{bad:?}");
        }
        assert!(valid_endpoint("http://127.0.0.1:5000"));
        assert!(valid_endpoint(
            "https://vpce-1.secretsmanager.us-east-1.vpce.amazonaws.com"
        ));
        for bad in [
            "127.0.0.1:5000",
            "ftp://x",
            "http://",
            "http://a b",
            "https:///x",
        ] {
            assert!(!valid_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn error_codes_map_to_categories() {
        assert_eq!(
            classify("ThrottlingException", "Rate exceeded", Some(400)),
            ErrorCategory::Throttled
        );
        assert_eq!(classify("", "", Some(429)), ErrorCategory::Throttled);
        assert_eq!(
            classify("UnrecognizedClientException", "", Some(400)),
            ErrorCategory::AuthenticationFailed
        );
        assert_eq!(
            classify(
                "AccessDeniedException",
                "not authorized to perform",
                Some(400)
            ),
            ErrorCategory::PermissionDenied
        );
        assert_eq!(
            classify(
                "AccessDeniedException",
                "The security token included in the request is invalid",
                Some(400)
            ),
            ErrorCategory::AuthenticationFailed
        );
        assert_eq!(
            classify("ResourceNotFoundException", "", Some(400)),
            ErrorCategory::NotFound
        );
        assert_eq!(
            classify("InvalidRequestException", "", Some(400)),
            ErrorCategory::Misconfigured
        );
        assert_eq!(
            classify("InternalServiceError", "", Some(500)),
            ErrorCategory::Backend
        );
        assert_eq!(classify("", "", Some(503)), ErrorCategory::Backend);
    }
}
