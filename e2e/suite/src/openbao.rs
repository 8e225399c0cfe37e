//! OpenBao for e2e tests (the dev server of `keyturn_testenv::openbao()`): the token Secret the
//! Vault rotator authenticates with, KV v2 ManagedSecret manifests, and reads of what keyturn
//! wrote to KV, to compare with the published Secret.

use keyturn_testenv::OpenBaoEnv;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::names::random_suffix;
use crate::postgres::secret_manifest;

/// Name of the token Secret [`OpenBao::install_token_secret`] creates (key `token`).
pub const TOKEN_SECRET: &str = "openbao-token";
/// The KV v2 mount every OpenBao dev server has.
pub const DEV_KV_MOUNT: &str = "secret";

/// The OpenBao dev server.
#[derive(Debug, Clone)]
pub struct OpenBao {
    env: OpenBaoEnv,
    http: reqwest::Client,
}

impl OpenBao {
    /// The server of `keyturn_testenv::openbao()`: `None` (after a `SKIPPED:` notice) when it is
    /// not configured outside CI; panics under CI.
    pub fn from_env() -> Option<OpenBao> {
        keyturn_testenv::openbao().map(OpenBao::new)
    }

    /// A server given explicitly.
    pub fn new(env: OpenBaoEnv) -> OpenBao {
        OpenBao {
            env,
            http: crate::http::client(),
        }
    }

    /// Address and root token.
    pub fn env(&self) -> &OpenBaoEnv {
        &self.env
    }

    /// A fresh KV path for one test: `e2e/<random10>`.
    pub fn unique_path(&self) -> String {
        format!("e2e/{}", random_suffix(10))
    }

    /// Calls the HTTP API with the root token: status and JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.env.addr);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header("X-Vault-Token", &self.env.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("OpenBao {method} {path}: {error}"));
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .unwrap_or_else(|error| panic!("OpenBao {method} {path}: reading the body: {error}"));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The latest version's data of a KV v2 secret, or `None` when there is none.
    pub async fn read_kv(&self, mount: &str, path: &str) -> Option<Value> {
        let (status, body) = self
            .call(reqwest::Method::GET, &format!("{mount}/data/{path}"), None)
            .await;
        match status {
            200 => Some(body["data"]["data"].clone()),
            404 => None,
            _ => panic!("OpenBao GET {mount}/data/{path}: HTTP {status}: {body}"),
        }
    }

    /// Writes a KV v2 version (to seed a secret before keyturn takes it over).
    pub async fn write_kv(&self, mount: &str, path: &str, data: &Value) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("{mount}/data/{path}"),
                Some(&json!({"data": data})),
            )
            .await;
        assert!(
            (200..300).contains(&status),
            "OpenBao POST {mount}/data/{path}: HTTP {status}: {body}"
        );
    }

    /// Creates (server-side apply) the Secret [`TOKEN_SECRET`] in `namespace` holding the dev
    /// server's root token under `token`: the test server is throwaway, and a narrower policy is
    /// the rotator tests' business.
    pub async fn install_token_secret(&self, cluster: &Cluster, namespace: &str) {
        cluster
            .apply(
                namespace,
                &secret_manifest(TOKEN_SECRET, &[("token", &self.env.token)]),
            )
            .await;
    }

    /// A KV v2 ManagedSecret named `name` for `path` in the dev server's `secret/` mount, using
    /// the Secret of [`OpenBao::install_token_secret`]. `rotation.every` defaults to `1m`, the
    /// shortest the CRD and the operator accept.
    pub fn managed_secret(&self, name: &str, path: &str) -> VaultKvManagedSecret {
        VaultKvManagedSecret {
            name: name.to_owned(),
            address: self.env.addr.clone(),
            mount: DEV_KV_MOUNT.to_owned(),
            path: path.to_owned(),
            password_length: None,
            every: "1m".to_owned(),
            secret_name: None,
        }
    }
}

/// A Vault/OpenBao KV v2 ManagedSecret manifest with token auth.
#[derive(Debug, Clone)]
pub struct VaultKvManagedSecret {
    name: String,
    address: String,
    mount: String,
    path: String,
    password_length: Option<u16>,
    every: String,
    secret_name: Option<String>,
}

impl VaultKvManagedSecret {
    /// `spec.rotator.vault.kv.mount`.
    pub fn mount(mut self, mount: &str) -> VaultKvManagedSecret {
        self.mount = mount.to_owned();
        self
    }

    /// `spec.rotator.vault.kv.passwordLength`.
    pub fn password_length(mut self, length: u16) -> VaultKvManagedSecret {
        self.password_length = Some(length);
        self
    }

    /// `spec.rotation.every`.
    pub fn every(mut self, every: &str) -> VaultKvManagedSecret {
        self.every = every.to_owned();
        self
    }

    /// `spec.secretName` (default: the ManagedSecret's name).
    pub fn secret_name(mut self, secret_name: &str) -> VaultKvManagedSecret {
        self.secret_name = Some(secret_name.to_owned());
        self
    }

    /// The published Secret's name.
    pub fn published_secret_name(&self) -> &str {
        self.secret_name.as_deref().unwrap_or(&self.name)
    }

    /// The manifest as JSON.
    pub fn to_json(&self) -> Value {
        let mut kv = json!({"mount": self.mount, "path": self.path});
        if let Some(length) = self.password_length {
            kv["passwordLength"] = Value::from(length);
        }
        let mut spec = json!({
            "rotator": {"vault": {
                "address": self.address,
                "auth": {"token": {"secretRef": {"name": TOKEN_SECRET, "key": "token"}}},
                "kv": kv,
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
