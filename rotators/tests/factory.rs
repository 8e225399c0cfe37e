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
