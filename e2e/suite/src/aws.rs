//! moto for e2e tests (the AWS Secrets Manager stand-in of `keyturn_testenv::aws()`): secrets
//! created ahead of keyturn, reads of their staged versions, and managed-mode ManagedSecret
//! manifests. Plain JSON-protocol calls: moto checks no signatures, so the SDK is not needed.

use std::collections::BTreeMap;

use keyturn_testenv::AwsEnv;
use serde_json::{Value, json};

use crate::names::random_suffix;

/// The AWS JSON protocol's content type.
const AMZ_JSON: &str = "application/x-amz-json-1.1";

/// The moto server.
#[derive(Debug, Clone)]
pub struct Moto {
    env: AwsEnv,
    access_key_id: String,
    http: reqwest::Client,
}

impl Moto {
    /// The server of `keyturn_testenv::aws()`: `None` (after a `SKIPPED:` notice) when it is not
    /// configured outside CI; panics under CI. The operator process inherits the test's
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, which scripts/test.sh sets to dummies.
    pub fn from_env() -> Option<Moto> {
        keyturn_testenv::aws().map(Moto::new)
    }

    /// A server given explicitly (requests carry `$AWS_ACCESS_KEY_ID`, else `testing`).
    pub fn new(env: AwsEnv) -> Moto {
        Moto {
            env,
            access_key_id: std::env::var("AWS_ACCESS_KEY_ID")
                .unwrap_or_else(|_| "testing".to_owned()),
            http: crate::http::client(),
        }
    }

    /// Endpoint and region.
    pub fn env(&self) -> &AwsEnv {
        &self.env
    }

    /// Calls a Secrets Manager action: `Ok(response)` or `Err((status, error body))`.
    pub async fn call(&self, action: &str, input: &Value) -> Result<Value, (u16, Value)> {
        // moto takes the region (and, from the key, the account) from the credential scope of
        // the Authorization header and verifies nothing else; an unsigned request would land in
        // moto's default region, which need not be the one the operator uses.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/{}/secretsmanager/aws4_request, \
             SignedHeaders=content-type;host;x-amz-target, Signature={}",
            self.access_key_id,
            self.env.region,
            "0".repeat(64)
        );
        let response = self
            .http
            .post(format!("{}/", self.env.endpoint))
            .header("Content-Type", AMZ_JSON)
            .header("X-Amz-Target", format!("secretsmanager.{action}"))
            .header("Authorization", authorization)
            .body(input.to_string())
            .send()
            .await
            .unwrap_or_else(|error| panic!("moto {action}: {error}"));
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .unwrap_or_else(|error| panic!("moto {action}: reading the body: {error}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err((status, body))
        }
    }

    /// Creates a secret `keyturn-e2e/<prefix>-<random10>` holding `initial_value`; its name.
    pub async fn create_secret(&self, prefix: &str, initial_value: &str) -> String {
        let name = format!("keyturn-e2e/{prefix}-{}", random_suffix(10));
        self.call(
            "CreateSecret",
            &json!({"Name": name, "SecretString": initial_value}),
        )
        .await
        .unwrap_or_else(|(status, body)| panic!("CreateSecret {name}: HTTP {status}: {body}"));
        name
    }

    /// The secret's value at `stage` (`AWSCURRENT`, `AWSPENDING`, `AWSPREVIOUS`), or `None` when
    /// no version has that stage (or the secret does not exist).
    pub async fn secret_value(&self, secret_id: &str, stage: &str) -> Option<String> {
        match self
            .call(
                "GetSecretValue",
                &json!({"SecretId": secret_id, "VersionStage": stage}),
            )
            .await
        {
            Ok(body) => body["SecretString"].as_str().map(str::to_owned),
            // AWS answers 400 and moto 404; the error type is the same.
            Err((_, body))
                if body["__type"]
                    .as_str()
                    .is_some_and(|kind| kind.contains("ResourceNotFound")) =>
            {
                None
            }
            Err((status, body)) => {
                panic!("GetSecretValue {secret_id} {stage}: HTTP {status}: {body}")
            }
        }
    }

    /// Version id -> its stages, from DescribeSecret.
    pub async fn version_stages(&self, secret_id: &str) -> BTreeMap<String, Vec<String>> {
        let body = self
            .call("DescribeSecret", &json!({"SecretId": secret_id}))
            .await
            .unwrap_or_else(|(status, body)| {
                panic!("DescribeSecret {secret_id}: HTTP {status}: {body}")
            });
        body["VersionIdsToStages"]
            .as_object()
            .map(|versions| {
                versions
                    .iter()
                    .map(|(id, stages)| {
                        let stages = stages
                            .as_array()
                            .map(|stages| {
                                stages
                                    .iter()
                                    .filter_map(|stage| stage.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (id.clone(), stages)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A managed-mode ManagedSecret named `name` for `secret_id`, pointed at moto.
    /// `rotation.every` defaults to `1m`, the shortest the CRD and the operator accept.
    pub fn managed_secret(&self, name: &str, secret_id: &str) -> AwsManagedSecret {
        AwsManagedSecret {
            name: name.to_owned(),
            region: self.env.region.clone(),
            endpoint: self.env.endpoint.clone(),
            secret_id: secret_id.to_owned(),
            every: "1m".to_owned(),
            secret_name: None,
        }
    }
}

/// An AWS Secrets Manager ManagedSecret manifest in `Managed` mode.
#[derive(Debug, Clone)]
pub struct AwsManagedSecret {
    name: String,
    region: String,
    endpoint: String,
    secret_id: String,
    every: String,
    secret_name: Option<String>,
}

impl AwsManagedSecret {
    /// `spec.rotation.every`.
    pub fn every(mut self, every: &str) -> AwsManagedSecret {
        self.every = every.to_owned();
        self
    }

    /// `spec.secretName` (default: the ManagedSecret's name).
    pub fn secret_name(mut self, secret_name: &str) -> AwsManagedSecret {
        self.secret_name = Some(secret_name.to_owned());
        self
    }

    /// The published Secret's name.
    pub fn published_secret_name(&self) -> &str {
        self.secret_name.as_deref().unwrap_or(&self.name)
    }

    /// The manifest as JSON.
    pub fn to_json(&self) -> Value {
        let mut spec = json!({
            "rotator": {"awsSecretsManager": {
                "region": self.region,
                "secretId": self.secret_id,
                "endpoint": self.endpoint,
                "mode": "Managed",
            }},
            "rotation": {"every": self.every},
        });
        if let Some(secret_name) = &self.secret_name {
            spec["secretName"] = Value::from(secret_name.clone());
        }
        json!({
            "apiVersion": "keyturn.dev/v1alpha1",
            "kind": "ManagedSecret",
            "metadata": {"name": self.name},
            "spec": spec,
        })
    }

    /// The manifest as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.to_json()).expect("a JSON value serializes to YAML")
    }
}
