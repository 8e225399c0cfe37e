//! Smoke tests: each backend started by `scripts/test.sh` is the real thing and reachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

/// A plain-HTTP client for the loopback servers. In a workspace build, reqwest's features unify
/// with other crates' (keyturn-rotators enables `rustls-no-provider`), and building a client then
/// panics unless a rustls crypto provider is installed: install ring's (an error only means one
/// is installed already). Built alone, reqwest has no TLS at all and this is a no-op.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A name no other test run against the same servers uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn postgres_is_real_and_uses_scram_password_auth() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let mut conn = PgConnection::connect(&pg.url)
        .await
        .unwrap_or_else(|e| panic!("connect to {pg:?}: {e}"));

    let version: String = sqlx::query_scalar("select version()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(version.starts_with("PostgreSQL "), "{version}");

    let db: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(db, pg.database);

    let encryption: String = sqlx::query_scalar("show password_encryption")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(encryption, "scram-sha-256");

    // The password we logged in with is stored as a SCRAM verifier...
    let stored: String =
        sqlx::query_scalar("select rolpassword from pg_authid where rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$"), "not a SCRAM verifier");

    // ...and host logins really check it: pg_hba says scram-sha-256, not trust.
    let methods: Vec<String> = sqlx::query_scalar(
        "select distinct auth_method from pg_hba_file_rules where type like 'host%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(methods, vec!["scram-sha-256".to_owned()]);
    conn.close().await.unwrap();

    let wrong = pg.url_for_user(&pg.user, "definitely-not-the-password");
    let err = PgConnection::connect(&wrong)
        .await
        .expect_err("a wrong password must be refused");
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    // 28P01 = invalid_password
    assert_eq!(code.as_deref(), Some("28P01"), "{err}");
}

#[tokio::test]
async fn openbao_is_unsealed_and_has_the_database_engine() {
    let Some(bao) = keyturn_testenv::openbao() else {
        return;
    };
    let http = http();

    let health: Value = http
        .get(format!("{}/v1/sys/health", bao.addr))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["initialized"], true, "{health}");
    assert_eq!(health["sealed"], false, "{health}");
    assert!(health["version"].is_string(), "{health}");

    // The token is enforced, and ours works.
    let anonymous = http
        .get(format!("{}/v1/sys/mounts", bao.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
    let mounts: Value = http
        .get(format!("{}/v1/sys/mounts", bao.addr))
        .header("X-Vault-Token", &bao.token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(mounts["sys/"].is_object(), "{mounts}");

    // The database secrets engine (what the PostgreSQL rotation through OpenBao uses) mounts.
    let path = unique("db-smoke");
    let mounted = http
        .post(format!("{}/v1/sys/mounts/{path}", bao.addr))
        .header("X-Vault-Token", &bao.token)
        .json(&json!({ "type": "database" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        mounted.status(),
        StatusCode::NO_CONTENT,
        "mount database engine"
    );
    let mount: Value = http
        .get(format!("{}/v1/sys/mounts/{path}", bao.addr))
        .header("X-Vault-Token", &bao.token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mount["type"], "database", "{mount}");
    let unmounted = http
        .delete(format!("{}/v1/sys/mounts/{path}", bao.addr))
        .header("X-Vault-Token", &bao.token)
        .send()
        .await
        .unwrap();
    assert_eq!(unmounted.status(), StatusCode::NO_CONTENT);
}

/// One Secrets Manager JSON-protocol call to moto. moto picks the service from the credential
/// scope of the Authorization header (without it the request is taken for S3), but does not check
/// the signature.
async fn secretsmanager(
    http: &reqwest::Client,
    aws: &keyturn_testenv::AwsEnv,
    action: &str,
    body: Value,
) -> (StatusCode, Value) {
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/secretsmanager/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
        aws.region,
        "0".repeat(64)
    );
    let response = http
        .post(format!("{}/", aws.endpoint))
        .header("X-Amz-Target", format!("secretsmanager.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Date", "20260101T000000Z")
        .header("Authorization", authorization)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{action}: not JSON ({e}), status {status}: {text}"));
    (status, value)
}

#[tokio::test]
async fn moto_serves_secrets_manager_versions() {
    let Some(aws) = keyturn_testenv::aws() else {
        return;
    };
    let http = http();
    let name = unique("keyturn/smoke");

    let (status, created) = secretsmanager(
        &http,
        &aws,
        "CreateSecret",
        json!({ "Name": name, "SecretString": "first" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert!(
        created["ARN"]
            .as_str()
            .unwrap()
            .contains(&format!(":{}:", aws.region)),
        "{created}"
    );

    let current = json!({ "SecretId": name, "VersionStage": "AWSCURRENT" });
    let (status, got) = secretsmanager(&http, &aws, "GetSecretValue", current.clone()).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["SecretString"], "first");
    assert_eq!(got["VersionId"], created["VersionId"]);

    // A new version takes AWSCURRENT.
    let (status, put) = secretsmanager(
        &http,
        &aws,
        "PutSecretValue",
        json!({ "SecretId": name, "SecretString": "second" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    let (_, got) = secretsmanager(&http, &aws, "GetSecretValue", current).await;
    assert_eq!(got["SecretString"], "second");
    assert_eq!(got["VersionId"], put["VersionId"]);

    let (_, previous) = secretsmanager(
        &http,
        &aws,
        "GetSecretValue",
        json!({ "SecretId": name, "VersionStage": "AWSPREVIOUS" }),
    )
    .await;
    assert_eq!(previous["SecretString"], "first", "{previous}");

    let (status, missing) = secretsmanager(
        &http,
        &aws,
        "GetSecretValue",
        json!({ "SecretId": unique("keyturn/absent") }),
    )
    .await;
    // Real AWS answers 400 for every client error; moto answers 404 here. Code that talks to
    // Secrets Manager must go by `__type`, never by the status code.
    assert!(status.is_client_error(), "{status} {missing}");
    assert_eq!(missing["__type"], "ResourceNotFoundException", "{missing}");

    let (status, deleted) = secretsmanager(
        &http,
        &aws,
        "DeleteSecret",
        json!({ "SecretId": name, "ForceDeleteWithoutRecovery": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
}
