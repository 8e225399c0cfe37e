//! The Vault/OpenBao rotator against a real OpenBao dev server (and, for database static roles,
//! the real PostgreSQL behind it): every contract case for KV v2 and for static roles, with
//! token auth and with an AppRole limited to `required_policy`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyturn_rotators::vault::{VaultAuth, VaultConfig, VaultRotator, VaultTarget, required_policy};
use keyturn_rotators::{Credential, CredentialId, ErrorCategory, Rotator, SecretValue};
use keyturn_testenv::{OpenBaoEnv, PostgresEnv};
use rand::Rng;
use rand::distr::Alphanumeric;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

// ---------------------------------------------------------------------------------------------
// OpenBao set-up through its HTTP API, with the root token.

fn suffix() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(char::from)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// reqwest with rustls needs a crypto provider; give it ring without installing a process-wide
/// default (which would hide a rotator that forgot to bring its own).
fn http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Bao {
    env: OpenBaoEnv,
    http: reqwest::Client,
}

impl Bao {
    fn new() -> Option<Bao> {
        Some(Bao {
            env: keyturn_testenv::openbao()?,
            http: http_client(),
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.env.addr))
            .header("X-Vault-Token", &self.env.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("OpenBao {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status}: {value}"
        );
        value
    }

    async fn enable_kv(&self, mount: &str) {
        self.ok(
            Method::POST,
            &format!("sys/mounts/{mount}"),
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
        // A new KV v2 mount upgrades itself in the background; wait until it answers.
        for _ in 0..100 {
            if self
                .call(Method::GET, &format!("{mount}/config"), None)
                .await
                .0
                == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("KV v2 mount {mount} never became ready");
    }

    /// An AppRole whose only policy is keyturn's `required_policy(target)`.
    async fn approle_for(&self, target: &VaultTarget) -> AppRole {
        let id = suffix();
        let (mount, policy, role) = (format!("approle-{id}"), format!("keyturn-{id}"), "keyturn");
        self.ok(
            Method::POST,
            &format!("sys/auth/{mount}"),
            Some(json!({"type": "approle"})),
        )
        .await;
        self.ok(
            Method::PUT,
            &format!("sys/policies/acl/{policy}"),
            Some(json!({"policy": required_policy(target)})),
        )
        .await;
        self.ok(
            Method::POST,
            &format!("auth/{mount}/role/{role}"),
            Some(json!({"token_policies": [policy], "token_ttl": "10m", "secret_id_ttl": "1h"})),
        )
        .await;
        let role_id = self
            .ok(
                Method::GET,
                &format!("auth/{mount}/role/{role}/role-id"),
                None,
            )
            .await["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let secret_id = self
            .ok(
                Method::POST,
                &format!("auth/{mount}/role/{role}/secret-id"),
                None,
            )
            .await["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_owned();
        AppRole {
            mount,
            role_id,
            secret_id,
        }
    }
}

#[derive(Clone)]
struct AppRole {
    mount: String,
    role_id: String,
    secret_id: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AuthMode {
    Token,
    AppRole,
}

struct Target {
    vault: VaultTarget,
    auth: VaultAuth,
    approle: Option<AppRole>,
    /// The PostgreSQL login of a static role.
    username: Option<String>,
}

fn auth_for(bao: &Bao, approle: &Option<AppRole>) -> VaultAuth {
    match approle {
        None => VaultAuth::Token(SecretValue::new(bao.env.token.clone())),
        Some(approle) => VaultAuth::AppRole {
            mount: approle.mount.clone(),
            role_id: approle.role_id.clone(),
            secret_id: SecretValue::new(approle.secret_id.clone()),
        },
    }
}

fn rotator_for(address: &str, target: &Target, auth: VaultAuth, timeout: Duration) -> VaultRotator {
    let config = VaultConfig {
        request_timeout: timeout,
        ..VaultConfig::new(address, auth, target.vault.clone())
    };
    VaultRotator::new(config).expect("valid configuration")
}

fn wrong_auth(target: &Target) -> VaultAuth {
    match &target.approle {
        None => VaultAuth::Token(SecretValue::new("s.wrongwrongwrongwrong")),
        Some(approle) => VaultAuth::AppRole {
            mount: approle.mount.clone(),
            role_id: approle.role_id.clone(),
            secret_id: SecretValue::new("00000000-0000-0000-0000-000000000000"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// KV v2

struct Kv {
    bao: Bao,
    mode: AuthMode,
}

impl Kv {
    fn new(mode: AuthMode) -> Option<Kv> {
        Some(Kv {
            bao: Bao::new()?,
            mode,
        })
    }

    fn mount_path(target: &Target) -> (&str, &str) {
        match &target.vault {
            VaultTarget::Kv { mount, path, .. } => (mount, path),
            VaultTarget::DatabaseStaticRole { .. } => unreachable!(),
        }
    }
}

impl contract::Backend for Kv {
    type Target = Target;
    type Rotator = VaultRotator;

    async fn fresh_target(&self) -> Target {
        let mount = format!("kv-{}", suffix());
        self.bao.enable_kv(&mount).await;
        let vault = VaultTarget::Kv {
            mount,
            path: "apps/orders-db".to_owned(),
            password_length: 32,
        };
        let approle = match self.mode {
            AuthMode::Token => None,
            AuthMode::AppRole => Some(self.bao.approle_for(&vault).await),
        };
        let auth = auth_for(&self.bao, &approle);
        Target {
            vault,
            auth,
            approle,
            username: None,
        }
    }

    fn rotator(&self, target: &Target) -> VaultRotator {
        rotator_for(
            &self.bao.env.addr,
            target,
            target.auth.clone(),
            Duration::from_secs(15),
        )
    }

    fn rotator_at(&self, target: &Target, address: SocketAddr) -> VaultRotator {
        rotator_for(
            &format!("http://{address}"),
            target,
            target.auth.clone(),
            Duration::from_secs(2),
        )
    }

    fn rotator_with_wrong_admin(&self, target: &Target) -> VaultRotator {
        rotator_for(
            &self.bao.env.addr,
            target,
            wrong_auth(target),
            Duration::from_secs(15),
        )
    }

    async fn accepts(&self, target: &Target, credential: &Credential) -> bool {
        let (mount, path) = Kv::mount_path(target);
        let (status, body) = self
            .bao
            .call(Method::GET, &format!("{mount}/data/{path}"), None)
            .await;
        status == 200
            && body["data"]["data"]["password"].as_str() == Some(credential.password.expose())
            && body["data"]["metadata"]["version"]
                .as_u64()
                .map(|v| v.to_string())
                == Some(credential.id.0.clone())
    }

    fn retire_revokes(&self) -> bool {
        // The retired version is soft-deleted: no longer the latest, and not readable by version.
        true
    }

    async fn assert_consistent(&self, target: &Target) {
        let (mount, path) = Kv::mount_path(target);
        let metadata = self
            .bao
            .ok(Method::GET, &format!("{mount}/metadata/{path}"), None)
            .await;
        let current = metadata["data"]["current_version"].as_u64().unwrap();
        let live: Vec<u64> = metadata["data"]["versions"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| {
                v["deletion_time"].as_str() == Some("") && v["destroyed"] == json!(false)
            })
            .map(|(k, _)| k.parse().unwrap())
            .collect();
        assert_eq!(
            live,
            vec![current],
            "exactly the current version must stay readable, got {metadata}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Database secrets engine, static roles on the test PostgreSQL

struct Db {
    bao: Bao,
    pg: PostgresEnv,
    mode: AuthMode,
}

impl Db {
    fn new(mode: AuthMode) -> Option<Db> {
        Some(Db {
            bao: Bao::new()?,
            pg: keyturn_testenv::postgres()?,
            mode,
        })
    }

    async fn login(&self, username: &str, password: &str) -> bool {
        match sqlx::PgConnection::connect(&self.pg.url_for_user(username, password)).await {
            Ok(connection) => {
                let _ = connection.close().await;
                true
            }
            Err(_) => false,
        }
    }
}

impl contract::Backend for Db {
    type Target = Target;
    type Rotator = VaultRotator;

    async fn fresh_target(&self) -> Target {
        let id = suffix();
        let username = format!("kt_vault_{id}");
        let initial: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let mut admin = sqlx::PgConnection::connect(&self.pg.url)
            .await
            .expect("connect as superuser");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE \"{username}\" LOGIN PASSWORD '{initial}'"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();

        let mount = format!("db-{id}");
        self.bao
            .ok(
                Method::POST,
                &format!("sys/mounts/{mount}"),
                Some(json!({"type": "database"})),
            )
            .await;
        let connection_url = format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@{}:{}/{}?sslmode=disable",
            self.pg.host, self.pg.port, self.pg.database
        );
        self.bao
            .ok(
                Method::POST,
                &format!("{mount}/config/pg"),
                Some(json!({
                    "plugin_name": "postgresql-database-plugin",
                    "connection_url": connection_url,
                    "username": self.pg.user,
                    "password": self.pg.password,
                    "allowed_roles": "*",
                    "verify_connection": true,
                    "password_authentication": "scram-sha-256",
                })),
            )
            .await;
        let role = format!("orders-{id}");
        self.bao
            .ok(
                Method::POST,
                &format!("{mount}/static-roles/{role}"),
                // Long enough that OpenBao never rotates on its own during a test.
                Some(json!({"db_name": "pg", "username": username, "rotation_period": "24h"})),
            )
            .await;
        let vault = VaultTarget::DatabaseStaticRole { mount, role };
        let approle = match self.mode {
            AuthMode::Token => None,
            AuthMode::AppRole => Some(self.bao.approle_for(&vault).await),
        };
        let auth = auth_for(&self.bao, &approle);
        Target {
            vault,
            auth,
            approle,
            username: Some(username),
        }
    }

    fn rotator(&self, target: &Target) -> VaultRotator {
        rotator_for(
            &self.bao.env.addr,
            target,
            target.auth.clone(),
            Duration::from_secs(15),
        )
    }

    fn rotator_at(&self, target: &Target, address: SocketAddr) -> VaultRotator {
        rotator_for(
            &format!("http://{address}"),
            target,
            target.auth.clone(),
            Duration::from_secs(2),
        )
    }

    fn rotator_with_wrong_admin(&self, target: &Target) -> VaultRotator {
        rotator_for(
            &self.bao.env.addr,
            target,
            wrong_auth(target),
            Duration::from_secs(15),
        )
    }

    async fn accepts(&self, target: &Target, credential: &Credential) -> bool {
        let username = credential
            .username
            .as_deref()
            .or(target.username.as_deref())
            .unwrap();
        self.login(username, credential.password.expose()).await
    }

    fn retire_revokes(&self) -> bool {
        // `retire` is a no-op for static roles, yet the previous password is refused: the
        // rotate-role of the next rotation already replaced it in PostgreSQL.
        true
    }

    async fn assert_consistent(&self, target: &Target) {
        let VaultTarget::DatabaseStaticRole { mount, role } = &target.vault else {
            unreachable!()
        };
        let creds = self
            .bao
            .ok(Method::GET, &format!("{mount}/static-creds/{role}"), None)
            .await;
        let username = creds["data"]["username"].as_str().unwrap();
        assert_eq!(Some(username), target.username.as_deref());
        assert!(
            self.login(username, creds["data"]["password"].as_str().unwrap())
                .await,
            "Vault's static-creds must log in to PostgreSQL"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The contract, per target and auth method

macro_rules! contract_cases {
    ($module:ident, $backend:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    let Some(backend) = $backend else { return };
                    contract::$case(&backend).await;
                }
            )*
        }
    };
}

contract_cases!(
    kv_token,
    Kv::new(AuthMode::Token),
    [
        happy_path,
        each_step_twice,
        crash_after_each_step,
        backend_down,
        backend_hangs,
        wrong_admin_credentials,
    ]
);
// An AppRole holding only `required_policy`: proves the policy is enough, and a wrong secret id.
contract_cases!(
    kv_approle,
    Kv::new(AuthMode::AppRole),
    [happy_path, crash_after_each_step, wrong_admin_credentials]
);
contract_cases!(
    database_token,
    Db::new(AuthMode::Token),
    [
        happy_path,
        each_step_twice,
        crash_after_each_step,
        backend_down,
        backend_hangs,
        wrong_admin_credentials,
    ]
);
contract_cases!(
    database_approle,
    Db::new(AuthMode::AppRole),
    [happy_path, wrong_admin_credentials]
);

// ---------------------------------------------------------------------------------------------
// Vault-specific behaviour

#[tokio::test(flavor = "multi_thread")]
async fn static_role_create_rotates_once_per_rotation() {
    use contract::Backend;
    let Some(backend) = Db::new(AuthMode::Token) else {
        return;
    };
    let target = backend.fresh_target().await;
    let rotator = backend.rotator(&target);
    let context = contract::context("rot-once", None);
    let first = rotator.create(&context).await.unwrap();
    // A crash before the staging Secret was written: create runs again for the same rotation.
    let again = backend.rotator(&target).create(&context).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(
        first.password, again.password,
        "create must not rotate twice for one rotation"
    );
    assert!(backend.accepts(&target, &again).await);
    assert!(
        first.id.0.starts_with("orders-"),
        "id names the role and the rotation time: {}",
        first.id
    );
    assert!(
        first.expires_at.is_some(),
        "ttl of the static role becomes expires_at"
    );
    let next = rotator
        .create(&contract::context("rot-next", Some(first.id.clone())))
        .await
        .unwrap();
    assert_ne!(next.password, first.password, "a later rotation rotates");
}

#[tokio::test(flavor = "multi_thread")]
async fn static_role_rotated_behind_keyturns_back_is_reported() {
    use contract::Backend;
    let Some(backend) = Db::new(AuthMode::Token) else {
        return;
    };
    let target = backend.fresh_target().await;
    let rotator = backend.rotator(&target);
    let context = contract::context("rot-behind", None);
    let pending = rotator.create(&context).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let VaultTarget::DatabaseStaticRole { mount, role } = &target.vault else {
        unreachable!()
    };
    backend
        .bao
        .ok(Method::POST, &format!("{mount}/rotate-role/{role}"), None)
        .await;
    let error = rotator
        .set(&context, &pending)
        .await
        .expect_err("Vault moved on");
    assert_eq!(error.category, ErrorCategory::Misconfigured);
    assert!(
        error.to_string().contains("rotated the static role again"),
        "{error}"
    );
    assert!(!error.to_string().contains(pending.password.expose()));
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_concurrent_writer_is_reported_not_overwritten() {
    use contract::Backend;
    let Some(backend) = Kv::new(AuthMode::Token) else {
        return;
    };
    let target = backend.fresh_target().await;
    let rotator = backend.rotator(&target);
    let first = contract::rotate(&rotator, &contract::context("rot-kv-1", None)).await;
    let context = contract::context("rot-kv-2", Some(first.id.clone()));
    let pending = rotator.create(&context).await.unwrap();
    assert_eq!(pending.id, CredentialId("2".into()));
    let (mount, path) = Kv::mount_path(&target);
    backend
        .bao
        .ok(
            Method::POST,
            &format!("{mount}/data/{path}"),
            Some(json!({"data": {"password": "theirs"}})),
        )
        .await;
    let error = rotator
        .set(&context, &pending)
        .await
        .expect_err("someone else wrote version 2");
    assert_eq!(error.category, ErrorCategory::Misconfigured);
    assert!(error.to_string().contains("another writer"), "{error}");
    assert!(!format!("{error:?}").contains(pending.password.expose()));
    let latest = backend
        .bao
        .ok(Method::GET, &format!("{mount}/data/{path}"), None)
        .await;
    assert_eq!(
        latest["data"]["data"]["password"],
        json!("theirs"),
        "their value must not be overwritten"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_keeps_other_keys_and_username() {
    use contract::Backend;
    let Some(backend) = Kv::new(AuthMode::Token) else {
        return;
    };
    let target = backend.fresh_target().await;
    let (mount, path) = Kv::mount_path(&target);
    backend
        .bao
        .ok(
            Method::POST,
            &format!("{mount}/data/{path}"),
            Some(json!({"data": {"username": "orders_app", "host": "db.internal", "password": "initial"}})),
        )
        .await;
    let rotator = backend.rotator(&target);
    let credential = contract::rotate(&rotator, &contract::context("rot-keys", None)).await;
    assert_eq!(credential.username.as_deref(), Some("orders_app"));
    assert_eq!(credential.id, CredentialId("2".into()));
    let latest = backend
        .bao
        .ok(Method::GET, &format!("{mount}/data/{path}"), None)
        .await;
    assert_eq!(latest["data"]["data"]["host"], json!("db.internal"));
    assert_eq!(latest["data"]["data"]["username"], json!("orders_app"));
    // Retiring version 1 (the operator's initial value) soft-deletes it; the latest is refused.
    rotator
        .retire(
            &contract::context("rot-keys", None),
            &CredentialId("1".into()),
        )
        .await
        .unwrap();
    let error = rotator
        .retire(&contract::context("rot-keys", None), &credential.id)
        .await
        .expect_err("latest");
    assert_eq!(error.category, ErrorCategory::Misconfigured);
    backend.assert_consistent(&target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn approle_token_is_cached_between_calls() {
    use contract::Backend;
    let Some(backend) = Kv::new(AuthMode::AppRole) else {
        return;
    };
    let target = backend.fresh_target().await;
    let rotator = backend.rotator(&target);
    rotator
        .create(&contract::context("rot-cache", None))
        .await
        .unwrap();
    // Revoking the secret id does not revoke tokens already issued: a cached token keeps working.
    let approle = target.approle.clone().unwrap();
    backend
        .bao
        .ok(
            Method::POST,
            &format!("auth/{}/role/keyturn/secret-id/destroy", approle.mount),
            Some(json!({"secret_id": approle.secret_id})),
        )
        .await;
    rotator
        .create(&contract::context("rot-cache", None))
        .await
        .expect("the cached login token is reused");
    let error = backend
        .rotator(&target)
        .create(&contract::context("rot-cache", None))
        .await
        .expect_err("new login");
    assert_eq!(
        error.category,
        ErrorCategory::AuthenticationFailed,
        "{error}"
    );
    assert!(!error.to_string().contains(&approle.secret_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_the_policy_is_permission_denied_not_authentication() {
    use contract::Backend;
    let Some(backend) = Kv::new(AuthMode::Token) else {
        return;
    };
    let target = backend.fresh_target().await;
    let token = backend
        .bao
        .ok(
            Method::POST,
            "auth/token/create",
            Some(json!({"policies": ["default"], "ttl": "10m"})),
        )
        .await["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotator = rotator_for(
        &backend.bao.env.addr,
        &target,
        VaultAuth::Token(SecretValue::new(token.clone())),
        Duration::from_secs(15),
    );
    let error = rotator
        .create(&contract::context("rot-policy", None))
        .await
        .expect_err("no policy");
    assert_eq!(error.category, ErrorCategory::PermissionDenied, "{error}");
    assert!(!error.to_string().contains(&token));
}

// ---------------------------------------------------------------------------------------------
// Kubernetes auth: OpenBao's dev server has no TokenReview API to call, so the login is checked
// against a stand-in that records the requests and answers like Vault.

#[derive(Debug, Clone)]
struct Recorded {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

async fn fake_vault(answer: fn(&str) -> (u16, String)) -> (SocketAddr, Arc<Mutex<Vec<Recorded>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let log = recorded.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let header_end = loop {
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
                    let mut lines = head.lines();
                    let request_line = lines.next().unwrap_or_default().to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .map_or(0, |(_, v)| v.parse().unwrap());
                    while buffer.len() < header_end + 4 + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body =
                        String::from_utf8_lossy(&buffer[header_end + 4..header_end + 4 + length])
                            .to_string();
                    let (status, answer_body) = answer(&request_line);
                    log.lock().unwrap().push(Recorded {
                        request_line,
                        headers,
                        body,
                    });
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer_body}",
                        answer_body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, recorded)
}

#[tokio::test]
async fn kubernetes_login_sends_role_and_service_account_token_then_uses_the_issued_token() {
    let (address, recorded) = fake_vault(|request_line| {
        if request_line.starts_with("POST /v1/auth/k8s-login/login ") {
            let auth = json!({
                "request_id": "r", "lease_id": "", "lease_duration": 0, "renewable": false,
                "data": null, "warnings": null, "wrap_info": null,
                "auth": {"client_token": "s.issued-by-fake", "accessor": "a", "policies": ["keyturn"],
                         "token_policies": ["keyturn"], "metadata": null, "lease_duration": 3600,
                         "renewable": true, "entity_id": "e", "token_type": "service", "orphan": true}
            });
            (200, auth.to_string())
        } else {
            (404, json!({"errors": []}).to_string())
        }
    })
    .await;
    let jwt_file = std::env::temp_dir().join(format!("keyturn-sa-token-{}", suffix()));
    std::fs::write(
        &jwt_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2ln\n",
    )
    .unwrap();
    let config = VaultConfig {
        namespace: Some("team-a".into()),
        ..VaultConfig::new(
            format!("http://{address}"),
            VaultAuth::Kubernetes {
                mount: "k8s-login".into(),
                role: "keyturn".into(),
                jwt_path: jwt_file.clone(),
            },
            VaultTarget::Kv {
                mount: "secret".into(),
                path: "apps/orders".into(),
                password_length: 32,
            },
        )
    };
    let rotator = VaultRotator::new(config).unwrap();
    let created = rotator
        .create(&contract::context("rot-k8s", None))
        .await
        .unwrap();
    assert_eq!(
        created.id,
        CredentialId("1".into()),
        "a missing secret starts at version 1"
    );
    rotator
        .create(&contract::context("rot-k8s", None))
        .await
        .unwrap();
    let _ = std::fs::remove_file(&jwt_file);

    let requests = recorded.lock().unwrap().clone();
    let lines: Vec<&str> = requests.iter().map(|r| r.request_line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "POST /v1/auth/k8s-login/login HTTP/1.1",
            "GET /v1/secret/metadata/apps/orders HTTP/1.1",
            "GET /v1/secret/metadata/apps/orders HTTP/1.1",
        ],
        "one login, then the cached token"
    );
    let login: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(
        login,
        json!({"role": "keyturn", "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2ln"})
    );
    let header = |r: &Recorded, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header(&requests[0], "x-vault-token"),
        None,
        "the login carries no token"
    );
    assert_eq!(
        header(&requests[0], "x-vault-namespace").as_deref(),
        Some("team-a")
    );
    assert_eq!(
        header(&requests[1], "x-vault-token").as_deref(),
        Some("s.issued-by-fake")
    );
    assert_eq!(
        header(&requests[1], "x-vault-namespace").as_deref(),
        Some("team-a")
    );
}

#[tokio::test]
async fn kubernetes_login_without_a_service_account_token_is_misconfigured() {
    let config = VaultConfig::new(
        "http://127.0.0.1:1",
        VaultAuth::Kubernetes {
            mount: "kubernetes".into(),
            role: "keyturn".into(),
            jwt_path: "/nonexistent/token".into(),
        },
        VaultTarget::Kv {
            mount: "secret".into(),
            path: "apps/orders".into(),
            password_length: 32,
        },
    );
    let error = VaultRotator::new(config)
        .unwrap()
        .create(&contract::context("rot-no-sa", None))
        .await
        .unwrap_err();
    assert_eq!(error.category, ErrorCategory::Misconfigured, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_authentication_failed_and_named() {
    use contract::Backend;
    let Some(backend) = Kv::new(AuthMode::Token) else {
        return;
    };
    let target = backend.fresh_target().await;
    let error = backend
        .rotator_with_wrong_admin(&target)
        .create(&contract::context("rot-wrong-token", None))
        .await
        .expect_err("wrong token");
    assert_eq!(
        error.category,
        ErrorCategory::AuthenticationFailed,
        "{error}"
    );
    assert!(
        error.to_string().contains("/metadata/apps/orders-db"),
        "the error names the call: {error}"
    );
    assert!(!error.to_string().contains("wrongwrong"), "{error}");
    eprintln!("{error}");
}
