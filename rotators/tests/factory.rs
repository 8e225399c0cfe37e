//! The factory builds each kind of rotator from a spec, resolving referenced Secrets through a
//! `SecretSource`, without contacting any backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use async_trait::async_trait;
use keyturn_crds::RotatorSpec;
use keyturn_rotators::{ErrorCategory, RotatorError, SecretSource, SecretValue, build_rotator};

/// Secrets as `(name, key) -> value`, recording which were asked for.
#[derive(Default)]
struct MapSecrets(BTreeMap<(String, String), String>);

impl MapSecrets {
    fn with(mut self, name: &str, key: &str, value: &str) -> MapSecrets {
        self.0
            .insert((name.to_owned(), key.to_owned()), value.to_owned());
        self
    }
}

#[async_trait]
impl SecretSource for MapSecrets {
    async fn secret_value(&self, name: &str, key: &str) -> Result<SecretValue, RotatorError> {
        self.0
            .get(&(name.to_owned(), key.to_owned()))
            .map(SecretValue::new)
            .ok_or_else(|| {
                RotatorError::new(
                    ErrorCategory::NotFound,
                    format!("read key {key} of Secret {name}"),
                    "not found",
                )
            })
    }
}

fn rotator_spec(yaml: &str) -> RotatorSpec {
    serde_yaml::from_str(yaml).expect("a rotator spec")
}

#[tokio::test]
async fn builds_a_postgres_rotator_from_the_admin_secret() {
    let spec = rotator_spec(
        "postgres: {host: db.example, database: orders, sslMode: disable, adminSecretRef: {name: pg-admin}, role: orders_app}",
    );
    let secrets = MapSecrets::default()
        .with("pg-admin", "username", "admin")
        .with("pg-admin", "password", "pw");
    let rotator = build_rotator(&spec, &secrets).await.unwrap();
    assert_eq!(rotator.kind(), "postgres");
}

#[tokio::test]
async fn builds_a_vault_rotator_with_a_token_secret() {
    let spec = rotator_spec(
        "vault: {address: 'https://vault.example:8200', auth: {token: {secretRef: {name: vault-token, key: token}}}, kv: {path: app/db}}",
    );
    let secrets = MapSecrets::default().with("vault-token", "token", "s.abc");
    let rotator = build_rotator(&spec, &secrets).await.unwrap();
    assert_eq!(rotator.kind(), "vault");
}

#[tokio::test]
async fn builds_an_aws_rotator_without_any_secret() {
    let spec = rotator_spec("awsSecretsManager: {region: eu-central-1, secretId: prod/app/key}");
    let rotator = build_rotator(&spec, &MapSecrets::default()).await.unwrap();
    assert_eq!(rotator.kind(), "aws-secrets-manager");
}

#[tokio::test]
async fn a_missing_admin_secret_is_named_in_the_error() {
    let spec = rotator_spec(
        "postgres: {host: db.example, adminSecretRef: {name: pg-admin, passwordKey: pass}, role: orders_app}",
    );
    let secrets = MapSecrets::default().with("pg-admin", "username", "admin");
    let error = build_rotator(&spec, &secrets)
        .await
        .err()
        .expect("the password key is missing");
    assert_eq!(error.category(), ErrorCategory::NotFound);
    assert!(
        error.to_string().contains("pass") && error.to_string().contains("pg-admin"),
        "{error}"
    );
}

#[tokio::test]
async fn two_rotators_are_refused() {
    let spec = rotator_spec(
        "postgres: {host: db.example, adminSecretRef: {name: pg-admin}, role: orders_app}\nawsSecretsManager: {region: eu-central-1, secretId: x}",
    );
    let error = build_rotator(&spec, &MapSecrets::default())
        .await
        .err()
        .expect("two rotators");
    assert_eq!(error.category(), ErrorCategory::Misconfigured);
}

// A third-party rotator, written outside the crate the way an integrator would: an in-house
// token service (here a map) behind the `Rotator` trait, registered as a driver.
mod third_party {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use keyturn_rotators::{
        Credential, CredentialId, ErrorCategory, RotationContext, Rotator, RotatorDriver,
        RotatorError, SecretValue, generate_password,
    };

    /// The token service: token id -> (value, current?).
    pub type TokenStore = Arc<Mutex<BTreeMap<String, (String, bool)>>>;

    pub struct TokenServiceDriver {
        pub store: TokenStore,
    }

    #[async_trait]
    impl RotatorDriver for TokenServiceDriver {
        fn name(&self) -> &str {
            "example.com/token-service"
        }

        async fn build(
            &self,
            parameters: &BTreeMap<String, String>,
            secrets: &BTreeMap<String, SecretValue>,
        ) -> Result<Box<dyn Rotator>, RotatorError> {
            let audience = parameters.get("audience").cloned().ok_or_else(|| {
                RotatorError::new(
                    ErrorCategory::Misconfigured,
                    "configure token-service",
                    "parameters.audience is required",
                )
            })?;
            if !secrets.contains_key("apiKey") {
                return Err(RotatorError::new(
                    ErrorCategory::Misconfigured,
                    "configure token-service",
                    "secretRefs.apiKey is required",
                ));
            }
            Ok(Box::new(TokenServiceRotator {
                audience,
                store: self.store.clone(),
            }))
        }
    }

    struct TokenServiceRotator {
        audience: String,
        store: TokenStore,
    }

    #[async_trait]
    impl Rotator for TokenServiceRotator {
        fn kind(&self) -> &'static str {
            "example.com/token-service"
        }

        async fn create(&self, context: &RotationContext) -> Result<Credential, RotatorError> {
            Ok(Credential {
                id: CredentialId(context.rotation_id.clone()),
                username: Some(self.audience.clone()),
                password: generate_password(40),
                expires_at: context.valid_until,
            })
        }

        async fn set(
            &self,
            _context: &RotationContext,
            pending: &Credential,
        ) -> Result<(), RotatorError> {
            let mut store = self.store.lock().unwrap();
            let value = pending.password.expose().to_owned();
            match store.get(&pending.id.0) {
                // Idempotent: the same token again changes nothing.
                Some((existing, _)) if *existing == value => Ok(()),
                Some(_) => Err(RotatorError::new(
                    ErrorCategory::Misconfigured,
                    "issue token",
                    "another value exists for this rotation",
                )),
                None => {
                    store.insert(pending.id.0.clone(), (value, false));
                    Ok(())
                }
            }
        }

        async fn test(
            &self,
            _context: &RotationContext,
            pending: &Credential,
        ) -> Result<(), RotatorError> {
            let store = self.store.lock().unwrap();
            match store.get(&pending.id.0) {
                Some((value, _)) if value == pending.password.expose() => Ok(()),
                _ => Err(RotatorError::new(
                    ErrorCategory::VerificationFailed,
                    "verify token",
                    "token not accepted",
                )),
            }
        }

        async fn finish(
            &self,
            _context: &RotationContext,
            pending: &Credential,
        ) -> Result<(), RotatorError> {
            let mut store = self.store.lock().unwrap();
            for (id, (_, current)) in store.iter_mut() {
                *current = *id == pending.id.0;
            }
            Ok(())
        }

        async fn retire(
            &self,
            _context: &RotationContext,
            previous: &CredentialId,
        ) -> Result<(), RotatorError> {
            // Already gone is success.
            self.store.lock().unwrap().remove(&previous.0);
            Ok(())
        }
    }
}

mod contract;

#[tokio::test]
async fn a_third_party_driver_is_selected_by_spec_and_rotates() {
    let store = third_party::TokenStore::default();
    let registry = keyturn_rotators::RotatorRegistry::new().with_driver(std::sync::Arc::new(
        third_party::TokenServiceDriver {
            store: store.clone(),
        },
    ));
    let spec = rotator_spec(
        "custom: {driver: example.com/token-service, parameters: {audience: billing}, secretRefs: {apiKey: {name: token-service-admin, key: api-key}}}",
    );
    let secrets = MapSecrets::default().with("token-service-admin", "api-key", "admin-key");
    let rotator = registry.build(&spec, &secrets).await.unwrap();
    assert_eq!(rotator.kind(), "example.com/token-service");

    let first = contract::rotate(rotator.as_ref(), &contract::context("kt-first", None)).await;
    let second_context = contract::context("kt-second", Some(first.id.clone()));
    let second = contract::rotate(rotator.as_ref(), &second_context).await;
    rotator.retire(&second_context, &first.id).await.unwrap();
    let store = store.lock().unwrap();
    assert_eq!(store.len(), 1, "only the new token remains after retire");
    assert_eq!(
        store
            .get("kt-second")
            .map(|(value, current)| (value.as_str(), *current)),
        Some((second.password.expose(), true))
    );
}

#[tokio::test]
async fn an_unregistered_driver_is_a_clear_permanent_error() {
    let spec = rotator_spec("custom: {driver: example.com/not-installed}");
    let error = build_rotator(&spec, &MapSecrets::default())
        .await
        .err()
        .expect("no such driver");
    assert_eq!(error.category(), ErrorCategory::Misconfigured);
    assert!(!error.is_retryable());
    assert!(
        error.to_string().contains("example.com/not-installed"),
        "{error}"
    );
}
