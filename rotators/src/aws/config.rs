//! The AWS rotator's configuration: what the factory resolves from the ManagedSecret spec, its
//! validation (the CRD's checks again, as defence in depth), and the rotation id →
//! ClientRequestToken mapping that makes every replica and retry address the same version.

use std::time::Duration;

use keyturn_crds::AwsRotationMode;
use sha2::{Digest, Sha256};

use crate::credential::SecretValue;
use crate::error::{ErrorCategory, RotatorError};

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

/// Exactly what the CRD admits: `keyturn_crds::AWS_REGION_PATTERN`
/// (`^[a-z]{2,4}(-[a-z]+){1,3}-[0-9]+$`) within its 32-character limit. Written out by hand (this
/// crate has no regex engine); splitting on `-` is exact because no part of the pattern matches
/// one. A stricter check would refuse specs the API server already accepted, such as sovereign
/// partitions (`eusc-de-east-1`); `region_check_is_pinned_to_the_crd_pattern` flags drift.
fn valid_region(region: &str) -> bool {
    let lower = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase());
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = region.split('-').collect();
    region.len() <= 32
        && match parts.as_slice() {
            [prefix, words @ .., number] => {
                (2..=4).contains(&prefix.len())
                    && lower(prefix)
                    && (1..=3).contains(&words.len())
                    && words.iter().all(|word| lower(word))
                    && digits(number)
            }
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
            "us-iso-east-1",
            "cn-north-1",
            "eusc-de-east-1",
            "ap-southeast-5",
            "abcd-a-b-c-10",
        ] {
            assert!(valid_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us-east",
            "US-east-1",
            "us-East-1",
            "us-east-1 ",
            " us-east-1",
            "us-east-1\n",
            "us-east-1;x",
            "us-east-1a",
            "us-east-1-",
            "-us-east-1",
            "us--east-1",
            "us_east-1",
            "us-east-x",
            "us-1",
            "useast1",
            "u-east-1",
            "abcde-east-1",
            "us-a-b-c-d-1",
            "us-east-\u{0661}",
            "us-\u{e9}ast-1",
            // 33 characters: over the CRD's length limit.
            "us-aaaaaaaaaaaaaaaaaaaaaaaaaaaa-1",
        ] {
            assert!(!valid_region(bad), "{bad:?}");
        }
    }

    /// `valid_region` is a hand translation of this pattern: change both together.
    #[test]
    fn region_check_is_pinned_to_the_crd_pattern() {
        assert_eq!(
            keyturn_crds::AWS_REGION_PATTERN,
            r"^[a-z]{2,4}(-[a-z]+){1,3}-[0-9]+$"
        );
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
}
