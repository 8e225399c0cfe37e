//! The audit webhook over real TLS on a loopback port, with certificates made here: callers
//! without the token or a client certificate are refused, malformed bodies get 4xx and write
//! nothing, an accepted batch is in the store (SQLite and the test PostgreSQL) before the 200,
//! a retried batch adds nothing, the chain verifies, and a canary placed in request/response
//! objects never reaches the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyturn_audit::AuditStore;
use keyturn_operator::metrics::Metrics;
use keyturn_operator::reads::auth::{BearerToken, TlsFiles, server_config};
use keyturn_operator::reads::index::{Owner, SecretIndex};
use keyturn_operator::reads::record::ReadDetails;
use keyturn_operator::reads::webhook::{self, WebhookState};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

/// A Secret value that must never be stored: sent base64-encoded and plain, in both objects.
const CANARY: &str = "canary-r3ad-9f8e7d6c5b4a";
const TOKEN: &str = "webhook-token-1f2e3d";

struct Identity {
    cert_pem: String,
    key_pem: String,
}

/// A CA, a server certificate for `localhost` and client certificates.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client: Identity,
    /// Signed by another CA the server does not trust.
    stranger: Identity,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

fn leaf(issuer: &Issuer<'_, KeyPair>, name: &str) -> Identity {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    Identity {
        cert_pem: params.signed_by(&key, issuer).unwrap().pem(),
        key_pem: key.serialize_pem(),
    }
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let (ca_params, ca_key, ca_pem) = ca("keyturn test CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let server = leaf(&issuer, "localhost");
    let client = leaf(&issuer, "kube-apiserver");
    let (other_params, other_key, _) = ca("someone else");
    let stranger = leaf(&Issuer::new(other_params, other_key), "kube-apiserver");
    std::fs::write(dir.path().join("ca.crt"), &ca_pem).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &server.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &server.key_pem).unwrap();
    Pki {
        dir,
        ca_pem,
        client,
        stranger,
    }
}

impl Pki {
    fn files(&self, mtls: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path("tls.crt"),
            key: self.path("tls.key"),
            client_ca: mtls.then(|| self.path("ca.crt")),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn client_config(&self, identity: Option<&Identity>) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some(identity) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(identity.cert_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        Arc::new(config)
    }
}

fn index() -> SecretIndex {
    let owner = |name: &str, role: &str| Owner {
        managed_secret: name.into(),
        role: role.into(),
    };
    SecretIndex::from_entries([
        (
            "payments".into(),
            "orders-db".into(),
            owner("orders-db", "published"),
        ),
        (
            "payments".into(),
            "orders-db-keyturn-staging".into(),
            owner("orders-db", "staging"),
        ),
        ("shop".into(), "cart".into(), owner("cart", "published")),
    ])
}

struct Server {
    address: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the webhook stops")
            .unwrap()
            .unwrap();
    }
}

async fn start(
    pki: &Pki,
    mtls: bool,
    token: Option<&str>,
    store: AuditStore,
    index: SecretIndex,
    max_body_bytes: usize,
) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = server_config(&pki.files(mtls)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new());
    let state = WebhookState {
        store,
        index,
        token: token.and_then(BearerToken::new),
        metrics: metrics.clone(),
        max_body_bytes,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(webhook::serve(listener, tls, state, async move {
        let _ = stopped.await;
    }));
    Server {
        address,
        metrics,
        stop: Some(stop),
        task,
    }
}

/// One request over a new TLS connection (`Connection: close`); the status code, or an error
/// when the TLS handshake or the connection failed before an HTTP answer.
async fn send(
    address: SocketAddr,
    client: Arc<ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect(address).await?;
    let connector = TlsConnector::from(client);
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await?;
    // A server that answers early (413) may close before the whole body is written.
    let _ = tls.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("no answer"))??;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {raw:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status: {head:?}")))?;
    Ok((status, body.to_owned()))
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// A Metadata-level read event, with the canary in request and response objects as a hostile
/// or misconfigured (RequestResponse) sender would include them.
fn event(audit_id: &str, stage: &str, verb: &str, user: &str, object_ref: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(CANARY);
    format!(
        r#"{{"level":"RequestResponse","auditID":"{audit_id}","stage":"{stage}",
        "requestURI":"/api/v1/namespaces/payments/secrets/orders-db","verb":"{verb}",
        "user":{{"username":"{user}","groups":["system:serviceaccounts","system:authenticated"]}},
        "sourceIPs":["10.0.0.7"],"userAgent":"orders-api/1.0","objectRef":{object_ref},
        "responseStatus":{{"metadata":{{}},"code":200}},
        "requestObject":{{"note":"{CANARY}"}},
        "responseObject":{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"orders-db"}},
          "data":{{"password":"{encoded}"}},"stringData":{{"password":"{CANARY}"}}}},
        "requestReceivedTimestamp":"2026-11-22T08:00:00.000001Z",
        "stageTimestamp":"2026-11-22T08:00:00.010000Z",
        "annotations":{{"authorization.k8s.io/decision":"allow",
          "authorization.k8s.io/reason":"RBAC: allowed by RoleBinding"}}}}"#
    )
}

fn event_list(items: &[String]) -> String {
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
}

const API: &str = "system:serviceaccount:payments:orders-api";
const GET_ORDERS: &str =
    r#"{"resource":"secrets","namespace":"payments","name":"orders-db","apiVersion":"v1"}"#;

/// A batch with: a get of a managed Secret, a list of a namespace with two managed Secrets, a
/// get of an unmanaged Secret, a configmap read, a RequestReceived stage, and the same watch at
/// ResponseStarted and ResponseComplete. Expected: 1 + 2 + 1 records.
fn mixed_batch() -> String {
    event_list(&[
        event("get-1", "ResponseComplete", "get", API, GET_ORDERS),
        event(
            "list-1",
            "ResponseComplete",
            "list",
            "alice@example.com",
            r#"{"resource":"secrets","namespace":"payments"}"#,
        ),
        event(
            "get-unmanaged",
            "ResponseComplete",
            "get",
            API,
            r#"{"resource":"secrets","namespace":"payments","name":"not-ours"}"#,
        ),
        event(
            "cm-1",
            "ResponseComplete",
            "get",
            API,
            r#"{"resource":"configmaps","namespace":"payments","name":"orders-db"}"#,
        ),
        event("received-1", "RequestReceived", "get", API, GET_ORDERS),
        event(
            "watch-1",
            "ResponseStarted",
            "watch",
            "system:node:worker-1",
            r#"{"resource":"secrets","namespace":"shop","name":"cart"}"#,
        ),
        event(
            "watch-1",
            "ResponseComplete",
            "watch",
            "system:node:worker-1",
            r#"{"resource":"secrets","namespace":"shop","name":"cart"}"#,
        ),
    ])
}

async fn sqlite_store() -> (tempfile::TempDir, PathBuf, AuditStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = AuditStore::open_sqlite(&path).await.unwrap();
    (dir, path, store)
}

/// Everything the SQLite files hold, as text: main file, WAL and shared memory.
fn sqlite_bytes(path: &std::path::Path) -> String {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        if let Ok(bytes) = std::fs::read(&file) {
            all.extend(bytes);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

fn assert_no_canary(text: &str) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(CANARY);
    assert!(!text.contains(CANARY), "the canary reached the store");
    assert!(
        !text.contains(&encoded),
        "the encoded canary reached the store"
    );
    assert!(
        !text.contains("canary"),
        "part of the canary reached the store"
    );
}

/// Posts the mixed batch, checks the records, posts it again and checks nothing was added.
async fn accepted_batches_are_stored_once(
    server: &Server,
    client: Arc<ClientConfig>,
    store: &AuditStore,
) {
    let token = bearer(TOKEN);
    let headers = [JSON, (token.0, token.1.as_str())];
    let batch = mixed_batch();
    let answer = send(
        server.address,
        client.clone(),
        "POST",
        "/audit/events",
        &headers,
        batch.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.0, 200, "{}", answer.1);
    // The 200 came after the commit: the records are there now.
    let records = store.read_range(1, 100).await.unwrap();
    let summary: Vec<(String, String, String, String)> = records
        .iter()
        .map(|record| {
            let details: ReadDetails = serde_json::from_str(&record.details).unwrap();
            (
                record.actor.clone(),
                format!("{}/{}", record.namespace, record.managed_secret),
                details.secret,
                format!("{} {} {}", details.verb, details.scope, details.stage),
            )
        })
        .collect();
    let row = |actor: &str, object: &str, secret: &str, how: &str| {
        (
            actor.to_owned(),
            object.to_owned(),
            secret.to_owned(),
            how.to_owned(),
        )
    };
    assert_eq!(
        summary,
        [
            row(
                API,
                "payments/orders-db",
                "orders-db",
                "get object ResponseComplete"
            ),
            row(
                "alice@example.com",
                "payments/orders-db",
                "orders-db",
                "list namespace ResponseComplete"
            ),
            row(
                "alice@example.com",
                "payments/orders-db",
                "orders-db-keyturn-staging",
                "list namespace ResponseComplete"
            ),
            row(
                "system:node:worker-1",
                "shop/cart",
                "cart",
                "watch object ResponseStarted"
            ),
        ]
    );
    assert!(
        records
            .iter()
            .all(|record| record.action == "SecretRead" && record.outcome == "Allowed")
    );
    let details: ReadDetails = serde_json::from_str(&records[0].details).unwrap();
    assert_eq!(details.source_ips, ["10.0.0.7"]);
    assert_eq!(details.audit_id, "get-1");
    assert_eq!(details.decision, "allow");
    assert_eq!(details.user_agent, "orders-api/1.0");

    // The API server retries a batch it got no 2xx for: nothing is added twice, whether the
    // whole batch or part of it comes again.
    let again = send(
        server.address,
        client.clone(),
        "POST",
        "/audit/events",
        &headers,
        batch.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(again.0, 200);
    let part = event_list(&[
        event("get-1", "ResponseComplete", "get", API, GET_ORDERS),
        event("get-2", "ResponseComplete", "get", API, GET_ORDERS),
    ]);
    let partly = send(
        server.address,
        client,
        "POST",
        "/audit/events",
        &headers,
        part.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(partly.0, 200);
    let after = store.read_range(1, 100).await.unwrap();
    assert_eq!(after.len(), 5);
    assert_eq!(after[..4], records[..]);
    assert!(after[4].details.contains(r#""auditID":"get-2""#));
    let verified = store
        .verify(&[store.head().await.unwrap().unwrap()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verified.records, 5);
    for record in &after {
        assert_no_canary(&format!("{record:?}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_webhook_refuses_bad_callers_and_bodies_and_stores_accepted_reads_once() {
    let pki = pki();
    let (_dir, path, store) = sqlite_store().await;
    let server = start(&pki, false, Some(TOKEN), store.clone(), index(), 64 * 1024).await;
    let client = pki.client_config(None);
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let client = client.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            send(
                server.address,
                client,
                "POST",
                "/audit/events",
                &headers,
                &body,
            )
            .await
            .unwrap()
            .0
        }
    };
    let json = || (JSON.0, JSON.1.to_owned());
    let valid = mixed_batch().into_bytes();

    assert_eq!(post(vec![json()], valid.clone()).await, 401, "no token");
    assert_eq!(
        post(vec![json(), bearer("wrong")], valid.clone()).await,
        401,
        "wrong token"
    );
    assert_eq!(
        post(
            vec![json(), ("Authorization", TOKEN.to_owned())],
            valid.clone()
        )
        .await,
        401,
        "token without the Bearer scheme"
    );
    assert_eq!(
        post(
            vec![("Content-Type", "text/plain".into()), bearer(TOKEN)],
            valid.clone()
        )
        .await,
        415
    );
    assert_eq!(
        post(vec![bearer(TOKEN)], valid.clone()).await,
        415,
        "no content type"
    );
    assert_eq!(
        post(vec![json(), bearer(TOKEN)], b"{\"kind\": ".to_vec()).await,
        400,
        "malformed"
    );
    assert_eq!(
        post(vec![json(), bearer(TOKEN)], b"not json".to_vec()).await,
        400
    );
    let wrong_kind = br#"{"kind":"PodList","apiVersion":"v1","items":[]}"#.to_vec();
    assert_eq!(
        post(vec![json(), bearer(TOKEN)], wrong_kind).await,
        400,
        "wrong kind"
    );
    let missing_audit_id = event_list(&[r#"{"stage":"ResponseComplete","verb":"get"}"#.to_owned()]);
    assert_eq!(
        post(vec![json(), bearer(TOKEN)], missing_audit_id.into_bytes()).await,
        400
    );
    let many: Vec<String> = (0..200)
        .map(|n| {
            event(
                &format!("big-{n}"),
                "ResponseComplete",
                "get",
                API,
                GET_ORDERS,
            )
        })
        .collect();
    let oversized = event_list(&many).into_bytes();
    assert!(oversized.len() > 64 * 1024);
    assert_eq!(
        post(vec![json(), bearer(TOKEN)], oversized).await,
        413,
        "oversized"
    );
    let get = send(
        server.address,
        client.clone(),
        "GET",
        "/audit/events",
        &[(bearer(TOKEN).0, &bearer(TOKEN).1)],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(get.0, 405);
    let elsewhere = send(
        server.address,
        client.clone(),
        "POST",
        "/metrics",
        &[JSON],
        b"{}",
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.0, 404);
    // Nothing refused wrote anything.
    assert!(store.head().await.unwrap().is_none());

    accepted_batches_are_stored_once(&server, client, &store).await;
    let metrics = server.metrics.encode();
    assert!(
        metrics.contains("keyturn_audit_webhook_requests_total{code=\"401\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyturn_audit_webhook_requests_total{code=\"200\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyturn_secret_reads_total{decision=\"allow\"} 5"),
        "{metrics}"
    );
    server.stop().await;
    store.close().await;
    assert_no_canary(&sqlite_bytes(&path));
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_webhook_refuses_clients_without_a_trusted_certificate() {
    let pki = pki();
    let (_dir, path, store) = sqlite_store().await;
    let server = start(
        &pki,
        true,
        None,
        store.clone(),
        index(),
        webhook::MAX_BODY_BYTES,
    )
    .await;
    let body = mixed_batch();
    for (name, client) in [
        ("no client certificate", pki.client_config(None)),
        (
            "a certificate of another CA",
            pki.client_config(Some(&pki.stranger)),
        ),
    ] {
        let answer = send(
            server.address,
            client,
            "POST",
            "/audit/events",
            &[JSON],
            body.as_bytes(),
        )
        .await;
        assert!(answer.is_err(), "{name}: {answer:?}");
    }
    assert!(store.head().await.unwrap().is_none());
    let trusted = pki.client_config(Some(&pki.client));
    let answer = send(
        server.address,
        trusted.clone(),
        "POST",
        "/audit/events",
        &[JSON],
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(store.read_range(1, 100).await.unwrap().len(), 4);
    assert!(
        server
            .metrics
            .encode()
            .contains("code=\"handshake_failed\"} 2")
    );
    server.stop().await;
    store.close().await;
    assert_no_canary(&sqlite_bytes(&path));
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_written_while_the_index_loads_or_the_store_is_down() {
    let pki = pki();
    let (_dir, _path, store) = sqlite_store().await;
    let loading = SecretIndex::default();
    let server = start(
        &pki,
        false,
        Some(TOKEN),
        store.clone(),
        loading,
        webhook::MAX_BODY_BYTES,
    )
    .await;
    let client = pki.client_config(None);
    let token = bearer(TOKEN);
    let headers = [JSON, (token.0, token.1.as_str())];
    let body = mixed_batch();
    let answer = send(
        server.address,
        client.clone(),
        "POST",
        "/audit/events",
        &headers,
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.0, 503, "{}", answer.1);
    server.stop().await;

    let server = start(
        &pki,
        false,
        Some(TOKEN),
        store.clone(),
        index(),
        webhook::MAX_BODY_BYTES,
    )
    .await;
    store.close().await;
    let answer = send(
        server.address,
        client,
        "POST",
        "/audit/events",
        &headers,
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.0, 503, "{}", answer.1);
    server.stop().await;
    let reopened = AuditStore::open_sqlite(_path).await.unwrap();
    assert!(reopened.head().await.unwrap().is_none());
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_store_holds_accepted_reads_once_and_never_the_canary() {
    use sqlx::Executor;
    let Some(env) = keyturn_testenv::postgres() else {
        return;
    };
    let schema = format!("reads_{}_{:08x}", std::process::id(), rand::random::<u32>());
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.url)
        .await
        .unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let separator = if env.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}options[search_path]={schema}", env.url);
    let store = AuditStore::connect_postgres(&url).await.unwrap();
    store.migrate().await.unwrap();

    let pki = pki();
    let server = start(
        &pki,
        true,
        Some(TOKEN),
        store.clone(),
        index(),
        webhook::MAX_BODY_BYTES,
    )
    .await;
    accepted_batches_are_stored_once(&server, pki.client_config(Some(&pki.client)), &store).await;
    server.stop().await;

    let text: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce(string_agg(t::text, ' '), '') FROM {schema}.audit_records t"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(text.contains("get-1"), "the table text holds the records");
    assert_no_canary(&text);
    let keys: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT string_agg(key, ',' ORDER BY key) FROM {schema}.audit_append_keys"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(
        keys,
        "k8s-audit:get-1,k8s-audit:get-2,k8s-audit:list-1,k8s-audit:watch-1"
    );
    store.close().await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
    admin.close().await;
}
