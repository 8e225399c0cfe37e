//! The AWS Secrets Manager rotator against moto (started by scripts/test.sh): the rotator
//! contract in managed mode, the AWS-specific cases (dangling AWSPENDING, token conflicts,
//! throttling through a local stub, configuration checks) and what moto can show of native mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use contract::{Backend, CANARY, assert_no_canary, context};
use keyturn_crds::AwsRotationMode;
use keyturn_rotators::aws::{
    AWSCURRENT, AWSPENDING, AWSPREVIOUS, AwsConfig, AwsSecretsManagerRotator, AwsStaticCredentials,
    client_request_token,
};
use keyturn_rotators::{
    Credential, CredentialId, ErrorCategory, Rotator, SecretValue, generate_password,
};
use keyturn_testenv::AwsEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Setup

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "keyturn-test/{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn test_credentials() -> AwsStaticCredentials {
    AwsStaticCredentials {
        access_key_id: std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "testing".to_owned()),
        secret_access_key: SecretValue::new(
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "testing".to_owned()),
        ),
        session_token: None,
    }
}

/// A plain SDK client for setting up and inspecting secrets behind the rotator's back.
fn admin_client(env: &AwsEnv) -> Client {
    let credentials = test_credentials();
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(env.region.clone()))
        .endpoint_url(env.endpoint.clone())
        .credentials_provider(Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key.expose().to_owned(),
            None,
            None,
            "keyturn-test",
        ))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .build();
    Client::from_conf(config)
}

struct Moto {
    env: AwsEnv,
    admin: Client,
}

struct Target {
    secret_id: String,
}

impl Moto {
    fn new() -> Option<Moto> {
        let env = keyturn_testenv::aws()?;
        let admin = admin_client(&env);
        Some(Moto { env, admin })
    }

    /// The configuration the factory would build, pointed at `endpoint`.
    fn config_at(&self, secret_id: &str, endpoint: &str) -> AwsConfig {
        let mut config = AwsConfig::new(&self.env.region, secret_id).unwrap();
        config.endpoint = Some(endpoint.to_owned());
        config.credentials = Some(test_credentials());
        config
    }

    fn config(&self, secret_id: &str) -> AwsConfig {
        self.config_at(secret_id, &self.env.endpoint)
    }

    async fn create_secret(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.admin
            .create_secret()
            .name(&name)
            .secret_string(generate_password(24).expose())
            .send()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "CreateSecret {name}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(error)
                )
            });
        name
    }

    async fn stages(&self, secret_id: &str) -> BTreeMap<String, Vec<String>> {
        let output = self
            .admin
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .unwrap();
        output
            .version_ids_to_stages()
            .map(|map| {
                map.iter()
                    .map(|(id, stages)| (id.clone(), stages.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn current_value(&self, secret_id: &str) -> Option<String> {
        let output = self
            .admin
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(AWSCURRENT)
            .send()
            .await
            .ok()?;
        output.secret_string().map(str::to_owned)
    }

    async fn value_of(&self, secret_id: &str, version_id: &str) -> String {
        let output = self
            .admin
            .get_secret_value()
            .secret_id(secret_id)
            .version_id(version_id)
            .send()
            .await
            .unwrap();
        output.secret_string().unwrap().to_owned()
    }

    /// Access keys of a user in another moto account (moto maps a request to an account by
    /// its access key). moto does not validate credentials: unknown keys land in the default
    /// account, so "wrong keys" are modelled as keys that cannot see the secret.
    fn other_account_keys(&self) -> AwsStaticCredentials {
        let user = unique("user").replace('/', "-");
        let address = self.env.endpoint.trim_start_matches("http://").to_owned();
        iam_call(
            &address,
            &format!("Action=CreateUser&UserName={user}&Version=2010-05-08"),
        );
        let body = iam_call(
            &address,
            &format!("Action=CreateAccessKey&UserName={user}&Version=2010-05-08"),
        );
        let field = |tag: &str| {
            let start = body
                .find(&format!("<{tag}>"))
                .unwrap_or_else(|| panic!("no {tag} in {body}"))
                + tag.len()
                + 2;
            let end = body[start..].find('<').unwrap() + start;
            body[start..end].to_owned()
        };
        AwsStaticCredentials {
            access_key_id: field("AccessKeyId"),
            secret_access_key: SecretValue::new(field("SecretAccessKey")),
            session_token: None,
        }
    }
}

/// One IAM query-protocol call to moto in account 111111111111 (unsigned: moto does not check).
fn iam_call(address: &str, form: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 \
         Credential=testing/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00\r\n\
         x-moto-account-id: 111111111111\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "IAM call failed: {response}"
    );
    response
}

impl Backend for Moto {
    type Target = Target;
    type Rotator = AwsSecretsManagerRotator;

    async fn fresh_target(&self) -> Target {
        Target {
            secret_id: self.create_secret("contract").await,
        }
    }

    fn rotator(&self, target: &Target) -> AwsSecretsManagerRotator {
        AwsSecretsManagerRotator::new(self.config(&target.secret_id)).unwrap()
    }

    fn rotator_at(&self, target: &Target, address: SocketAddr) -> AwsSecretsManagerRotator {
        AwsSecretsManagerRotator::new(
            self.config_at(&target.secret_id, &format!("http://{address}")),
        )
        .unwrap()
    }

    fn rotator_with_wrong_admin(&self, target: &Target) -> AwsSecretsManagerRotator {
        let mut config = self.config(&target.secret_id);
        config.credentials = Some(self.other_account_keys());
        AwsSecretsManagerRotator::new(config).unwrap()
    }

    async fn accepts(&self, target: &Target, credential: &Credential) -> bool {
        self.current_value(&target.secret_id).await.as_deref() == Some(credential.password.expose())
    }

    fn retire_revokes(&self) -> bool {
        false
    }

    async fn assert_consistent(&self, target: &Target) {
        let stages = self.stages(&target.secret_id).await;
        let holders = |stage: &str| -> Vec<String> {
            stages
                .iter()
                .filter(|(_, s)| s.iter().any(|x| x == stage))
                .map(|(id, _)| id.clone())
                .collect()
        };
        for (id, labels) in &stages {
            let mut unique_labels = labels.clone();
            unique_labels.sort();
            unique_labels.dedup();
            assert_eq!(
                unique_labels.len(),
                labels.len(),
                "version {id} carries a label twice: {stages:?}"
            );
        }
        let current = holders(AWSCURRENT);
        assert_eq!(
            current.len(),
            1,
            "exactly one version must be AWSCURRENT: {stages:?}"
        );
        for pending in holders(AWSPENDING) {
            assert_eq!(
                pending, current[0],
                "AWSPENDING must be on no version other than AWSCURRENT: {stages:?}"
            );
        }
        let previous = holders(AWSPREVIOUS);
        assert_eq!(
            previous.len(),
            1,
            "after a rotation exactly one version is AWSPREVIOUS: {stages:?}"
        );
        assert_ne!(
            previous[0], current[0],
            "AWSPREVIOUS must not be the current version: {stages:?}"
        );
        assert_ne!(
            self.value_of(&target.secret_id, &previous[0]).await,
            self.value_of(&target.secret_id, &current[0]).await,
            "AWSPREVIOUS must hold the previous value"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The contract, managed mode

#[tokio::test(flavor = "multi_thread")]
async fn contract_happy_path() {
    let Some(moto) = Moto::new() else { return };
    contract::happy_path(&moto).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_each_step_twice() {
    let Some(moto) = Moto::new() else { return };
    contract::each_step_twice(&moto).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_crash_after_each_step() {
    let Some(moto) = Moto::new() else { return };
    contract::crash_after_each_step(&moto).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_backend_down() {
    let Some(moto) = Moto::new() else { return };
    contract::backend_down(&moto).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_backend_hangs() {
    let Some(moto) = Moto::new() else { return };
    contract::backend_hangs(&moto).await;
}

/// moto accepts any keys, so the contract's "wrong admin credentials" runs with valid keys of
/// another account: they cannot see the secret, which is NotFound and permanent. What real AWS
/// answers for unknown keys (UnrecognizedClientException) is checked through the stub below.
#[tokio::test(flavor = "multi_thread")]
async fn contract_wrong_admin_credentials() {
    let Some(moto) = Moto::new() else { return };
    contract::wrong_admin_credentials(&moto).await;
    let target = moto.fresh_target().await;
    let rotator = moto.rotator_with_wrong_admin(&target);
    let context = context("rot-wrong-admin-category", None);
    let pending = rotator.create(&context).await.unwrap();
    let error = rotator.set(&context, &pending).await.unwrap_err();
    assert_eq!(error.category, ErrorCategory::NotFound, "{error}");
    assert!(
        error.operation.contains("DescribeSecret") && error.operation.contains(&target.secret_id),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Managed mode, AWS specifics

#[tokio::test(flavor = "multi_thread")]
async fn the_version_id_is_the_rotation_id_or_a_token_derived_from_it() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = moto.create_secret("token").await;
    let rotator = AwsSecretsManagerRotator::new(moto.config(&secret_id)).unwrap();
    let core_id = "kt-0123456789abcdef0123456789abcdef01234567";
    let first = contract::rotate(&rotator, &context(core_id, None)).await;
    assert_eq!(
        first.id.0, core_id,
        "a keyturn-core rotation id is a valid ClientRequestToken and used as is"
    );
    let short = context("rot-short", Some(first.id.clone()));
    let second = contract::rotate(&rotator, &short).await;
    assert_eq!(second.id.0, client_request_token("rot-short"));
    let stages = moto.stages(&secret_id).await;
    assert_eq!(stages[core_id], vec![AWSPREVIOUS.to_owned()]);
    assert_eq!(stages[&second.id.0], vec![AWSCURRENT.to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_cleans_up_a_dangling_pending_from_an_earlier_failed_rotation() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = moto.create_secret("dangling").await;
    let stale_token = client_request_token("an-earlier-rotation-that-crashed");
    moto.admin
        .put_secret_value()
        .secret_id(&secret_id)
        .client_request_token(&stale_token)
        .secret_string("stale-value")
        .version_stages(AWSPENDING)
        .send()
        .await
        .unwrap();
    assert_eq!(
        moto.stages(&secret_id).await[&stale_token],
        vec![AWSPENDING.to_owned()]
    );

    let rotator = AwsSecretsManagerRotator::new(moto.config(&secret_id)).unwrap();
    let context = context("rot-after-dangling", None);
    let pending = rotator.create(&context).await.unwrap();
    rotator.set(&context, &pending).await.unwrap();
    let stages = moto.stages(&secret_id).await;
    assert!(
        stages
            .get(&stale_token)
            .is_none_or(|labels| labels.is_empty()),
        "the stale version must lose AWSPENDING: {stages:?}"
    );
    assert_eq!(stages[&pending.id.0], vec![AWSPENDING.to_owned()]);
    rotator.test(&context, &pending).await.unwrap();
    rotator.finish(&context, &pending).await.unwrap();
    assert_eq!(
        moto.current_value(&secret_id).await.as_deref(),
        Some(pending.password.expose())
    );
    moto.assert_consistent(&Target { secret_id }).await;
}

/// AWS refuses a second value for one ClientRequestToken; moto silently overwrites a version
/// still labelled AWSPENDING. The rotator checks first, so neither ever happens.
#[tokio::test(flavor = "multi_thread")]
async fn a_different_value_for_the_same_rotation_is_a_permanent_conflict() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = moto.create_secret("conflict").await;
    let rotator = AwsSecretsManagerRotator::new(moto.config(&secret_id)).unwrap();
    let context = context("rot-conflict", None);
    let pending = rotator.create(&context).await.unwrap();
    rotator.set(&context, &pending).await.unwrap();
    let other = Credential {
        password: SecretValue::new(CANARY),
        ..pending.clone()
    };
    for step in ["set", "finish"] {
        let error = match step {
            "set" => rotator.set(&context, &other).await,
            _ => rotator.finish(&context, &other).await,
        }
        .unwrap_err();
        assert_eq!(
            error.category,
            ErrorCategory::Misconfigured,
            "{step}: {error}"
        );
        assert!(!error.is_retryable());
        assert!(error.detail.contains("different value"), "{error}");
        assert_no_canary(&error);
    }
    let error = rotator.test(&context, &other).await.unwrap_err();
    assert_eq!(error.category, ErrorCategory::VerificationFailed, "{error}");
    assert_no_canary(&error);
    assert_eq!(
        moto.value_of(&secret_id, &pending.id.0).await,
        pending.password.expose(),
        "the version must be unchanged"
    );
    // After finish, set with the same value still succeeds and a different one still conflicts.
    rotator.test(&context, &pending).await.unwrap();
    rotator.finish(&context, &pending).await.unwrap();
    rotator.set(&context, &pending).await.unwrap();
    assert_eq!(
        rotator.set(&context, &other).await.unwrap_err().category,
        ErrorCategory::Misconfigured
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_of_another_rotation_is_refused() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = moto.create_secret("wrong-id").await;
    let rotator = AwsSecretsManagerRotator::new(moto.config(&secret_id)).unwrap();
    let pending = rotator.create(&context("rot-one", None)).await.unwrap();
    let error = rotator
        .set(&context("rot-two", None), &pending)
        .await
        .unwrap_err();
    assert_eq!(error.category, ErrorCategory::Misconfigured, "{error}");
}

/// A secret created without a value (CreateSecret with a name only): the first PutSecretValue
/// becomes AWSCURRENT at once (AWS and moto both); finish then only clears AWSPENDING.
#[tokio::test(flavor = "multi_thread")]
async fn first_issuance_into_a_secret_without_a_value() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = unique("empty");
    moto.admin
        .create_secret()
        .name(&secret_id)
        .send()
        .await
        .unwrap();
    let rotator = AwsSecretsManagerRotator::new(moto.config(&secret_id)).unwrap();
    let first = contract::rotate(&rotator, &context("rot-empty-1", None)).await;
    assert_eq!(
        moto.current_value(&secret_id).await.as_deref(),
        Some(first.password.expose())
    );
    assert_eq!(
        moto.stages(&secret_id).await[&first.id.0],
        vec![AWSCURRENT.to_owned()]
    );
    let second_context = context("rot-empty-2", Some(first.id.clone()));
    let second = contract::rotate(&rotator, &second_context).await;
    rotator.retire(&second_context, &first.id).await.unwrap();
    assert_eq!(
        moto.current_value(&secret_id).await.as_deref(),
        Some(second.password.expose())
    );
    moto.assert_consistent(&Target { secret_id }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_is_not_found_and_never_created() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = unique("missing");
    let rotator = AwsSecretsManagerRotator::new(moto.config(&secret_id)).unwrap();
    let context = context("rot-missing", None);
    let pending = rotator.create(&context).await.unwrap();
    let error = rotator.set(&context, &pending).await.unwrap_err();
    assert_eq!(error.category, ErrorCategory::NotFound, "{error}");
    assert!(!error.is_retryable());
    assert!(
        error.to_string().contains(&secret_id) && error.detail.contains("does not create"),
        "{error}"
    );
    assert!(
        moto.admin
            .describe_secret()
            .secret_id(&secret_id)
            .send()
            .await
            .is_err(),
        "the secret must not be created"
    );
}

// ---------------------------------------------------------------------------------------------
// Throttling and error mapping through a local stub

/// A canned answer in AWS JSON protocol error shape.
#[derive(Clone)]
struct Canned {
    status: u16,
    code: &'static str,
    retry_after: Option<u64>,
}

/// A loopback HTTP/1.1 server that answers from a script of canned errors, then forwards each
/// further request to `upstream` (moto). Records the X-Amz-Target of every request.
struct Stub {
    address: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    async fn start(upstream: Option<String>, script: Vec<Canned>) -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let recorded = targets.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (upstream, script, recorded) =
                    (upstream.clone(), script.clone(), recorded.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, upstream, script, recorded).await;
                });
            }
        });
        Stub { address, targets }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }

    fn count(&self, operation: &str) -> usize {
        self.targets()
            .iter()
            .filter(|t| t.ends_with(&format!(".{operation}")))
            .count()
    }
}

/// Reads one HTTP message (head and Content-Length body) from `stream`, starting with `buffer`.
async fn read_message(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let mut chunk = [0u8; 8192];
                let read = stream.read(&mut chunk).await?;
                if read == 0 {
                    return Ok(None);
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            let message: Vec<u8> = buffer.drain(..end + 4 + length).collect();
            return Ok(Some((head, message)));
        }
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    upstream: Option<String>,
    script: Arc<Mutex<VecDeque<Canned>>>,
    recorded: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    while let Some((head, request)) = read_message(&mut socket, &mut buffer).await? {
        let target = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("x-amz-target")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        recorded.lock().unwrap().push(target);
        let canned = script.lock().unwrap().pop_front();
        let response = match (canned, &upstream) {
            (Some(canned), _) => {
                let body = format!(
                    r#"{{"__type":"{}","message":"canned by the test stub"}}"#,
                    canned.code
                );
                let retry_after = canned
                    .retry_after
                    .map(|s| format!("Retry-After: {s}\r\n"))
                    .unwrap_or_default();
                format!(
                    "HTTP/1.1 {} Canned\r\nContent-Type: application/x-amz-json-1.1\r\n\
                     {retry_after}Content-Length: {}\r\n\r\n{body}",
                    canned.status,
                    body.len()
                )
                .into_bytes()
            }
            (None, Some(upstream)) => {
                let mut upstream = tokio::net::TcpStream::connect(upstream).await?;
                upstream.write_all(&request).await?;
                let mut upstream_buffer = Vec::new();
                match read_message(&mut upstream, &mut upstream_buffer).await? {
                    Some((_, response)) => response,
                    None => return Ok(()),
                }
            }
            (None, None) => return Ok(()),
        };
        socket.write_all(&response).await?;
    }
    Ok(())
}

fn throttle(retry_after: Option<u64>) -> Canned {
    Canned {
        status: 400,
        code: "ThrottlingException",
        retry_after,
    }
}

impl Moto {
    /// A rotator through `stub`, with short backoffs so retries do not slow the suite.
    fn rotator_via(
        &self,
        stub: &Stub,
        secret_id: &str,
        max_attempts: u32,
    ) -> AwsSecretsManagerRotator {
        let mut config = self.config_at(secret_id, &stub.endpoint());
        config.max_attempts = max_attempts;
        config.initial_backoff = Duration::from_millis(10);
        config.max_backoff = Duration::from_millis(50);
        AwsSecretsManagerRotator::new(config).unwrap()
    }

    fn upstream(&self) -> String {
        self.env.endpoint.trim_start_matches("http://").to_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_by_the_sdk_and_the_rotation_succeeds() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = moto.create_secret("throttled").await;
    let stub = Stub::start(Some(moto.upstream()), vec![throttle(None), throttle(None)]).await;
    let rotator = moto.rotator_via(&stub, &secret_id, 5);
    let pending = contract::rotate(&rotator, &context("rot-throttled", None)).await;
    assert_eq!(
        moto.current_value(&secret_id).await.as_deref(),
        Some(pending.password.expose())
    );
    let targets = stub.targets();
    assert!(
        targets.len() >= 3 && targets[..3].iter().all(|t| t.ends_with(".DescribeSecret")),
        "{targets:?}"
    );
    assert!(stub.count("PutSecretValue") == 1, "{targets:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_beyond_the_retries_is_a_retryable_throttled_error() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = moto.create_secret("throttled-out").await;
    let stub = Stub::start(Some(moto.upstream()), vec![throttle(Some(7)); 10]).await;
    let rotator = moto.rotator_via(&stub, &secret_id, 3);
    let context = context("rot-throttled-out", None);
    let pending = Credential {
        password: SecretValue::new(CANARY),
        ..rotator.create(&context).await.unwrap()
    };
    let error = rotator.set(&context, &pending).await.unwrap_err();
    assert_eq!(error.category, ErrorCategory::Throttled, "{error}");
    assert!(error.is_retryable());
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
    assert!(
        error.operation.contains("DescribeSecret") && error.operation.contains(&secret_id),
        "{error}"
    );
    assert_eq!(
        stub.count("DescribeSecret"),
        3,
        "three attempts: {:?}",
        stub.targets()
    );
    assert_no_canary(&error);
}

#[tokio::test(flavor = "multi_thread")]
async fn service_errors_map_to_categories() {
    let Some(moto) = Moto::new() else { return };
    let cases = [
        (
            Canned {
                status: 400,
                code: "UnrecognizedClientException",
                retry_after: None,
            },
            ErrorCategory::AuthenticationFailed,
        ),
        (
            Canned {
                status: 400,
                code: "InvalidSignatureException",
                retry_after: None,
            },
            ErrorCategory::AuthenticationFailed,
        ),
        (
            Canned {
                status: 400,
                code: "AccessDeniedException",
                retry_after: None,
            },
            ErrorCategory::PermissionDenied,
        ),
        (
            Canned {
                status: 400,
                code: "InvalidRequestException",
                retry_after: None,
            },
            ErrorCategory::Misconfigured,
        ),
        (
            Canned {
                status: 500,
                code: "InternalServiceError",
                retry_after: None,
            },
            ErrorCategory::Backend,
        ),
        (
            Canned {
                status: 429,
                code: "SomethingNew",
                retry_after: None,
            },
            ErrorCategory::Throttled,
        ),
    ];
    for (canned, expected) in cases {
        let code = canned.code;
        // Enough canned answers for every attempt: the error must surface, not pass to moto.
        let stub = Stub::start(Some(moto.upstream()), vec![canned; 4]).await;
        let rotator = moto.rotator_via(&stub, "keyturn-test/unused", 2);
        let context = context("rot-mapping", None);
        let pending = Credential {
            password: SecretValue::new(CANARY),
            ..rotator.create(&context).await.unwrap()
        };
        let error = rotator.set(&context, &pending).await.unwrap_err();
        assert_eq!(error.category, expected, "{code}: {error}");
        assert_eq!(error.is_retryable(), expected.is_retryable(), "{code}");
        assert!(error.detail.contains(code), "{error}");
        assert_no_canary(&error);
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration and secrecy

#[test]
fn injection_attempts_in_the_configuration_are_refused() {
    for secret_id in [
        "prod/x\"; rm -rf /",
        "prod db",
        "prod/db\n",
        "",
        "prod/db'--",
        "a$(id)",
        &"x".repeat(2049),
    ] {
        let error = AwsConfig::new("us-east-1", secret_id).unwrap_err();
        assert_eq!(
            error.category,
            ErrorCategory::Misconfigured,
            "{secret_id:?}"
        );
        assert!(!error.is_retryable());
    }
    for region in ["us-east-1; curl x", "US-EAST-1", "", "us-east-1\n"] {
        assert_eq!(
            AwsConfig::new(region, "prod/db").unwrap_err().category,
            ErrorCategory::Misconfigured,
            "{region:?}"
        );
    }
    // Fields are public: the rotator checks again.
    let mut config = AwsConfig::new("us-east-1", "prod/db").unwrap();
    config.secret_id = "prod/x\"; rm -rf /".to_owned();
    assert_eq!(
        AwsSecretsManagerRotator::new(config).unwrap_err().category,
        ErrorCategory::Misconfigured
    );
    let mut config = AwsConfig::new("us-east-1", "prod/db").unwrap();
    config.endpoint = Some("http://evil host/".to_owned());
    assert_eq!(
        AwsSecretsManagerRotator::new(config).unwrap_err().category,
        ErrorCategory::Misconfigured
    );
    let spec = keyturn_crds::AwsSecretsManagerRotatorSpec {
        region: "eu-west-1".to_owned(),
        secret_id: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/orders-AbCdEf"
            .to_owned(),
        endpoint: Some("https://vpce-0a.secretsmanager.eu-west-1.vpce.amazonaws.com".to_owned()),
        mode: AwsRotationMode::Native,
    };
    let config = AwsConfig::from_spec(&spec).unwrap();
    assert_eq!(config.mode, AwsRotationMode::Native);
    assert_eq!(config.endpoint, spec.endpoint);
}

#[test]
fn the_canary_never_appears_in_debug_output() {
    let mut config = AwsConfig::new("us-east-1", "prod/db").unwrap();
    config.credentials = Some(AwsStaticCredentials {
        access_key_id: "AKIAEXAMPLE".to_owned(),
        secret_access_key: SecretValue::new(CANARY),
        session_token: Some(SecretValue::new(CANARY)),
    });
    let rotator = AwsSecretsManagerRotator::new(config.clone()).unwrap();
    // The SDK marks SecretString sensitive: its request Debug output redacts it too.
    let input = aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueInput::builder()
        .secret_id("prod/db")
        .secret_string(CANARY)
        .build()
        .unwrap();
    let credential = Credential {
        id: CredentialId("v".to_owned()),
        username: None,
        password: SecretValue::new(CANARY),
        expires_at: None,
    };
    for text in [
        format!("{config:?}"),
        format!("{rotator:?}"),
        format!("{input:?}"),
        format!("{credential:?}"),
    ] {
        assert!(!text.contains(CANARY), "leaked: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Native mode. moto cannot run a rotation Lambda: RotateSecret without one labels a new,
// value-less version AWSCURRENT at once. So these cases show that keyturn calls RotateSecret
// once with the rotation's token, waits, and mirrors what a Lambda left behind.

impl Moto {
    fn native_rotator_via(&self, stub: &Stub, secret_id: &str) -> AwsSecretsManagerRotator {
        let mut config = self.config_at(secret_id, &stub.endpoint());
        config.mode = AwsRotationMode::Native;
        config.native_wait = Duration::from_millis(600);
        config.native_poll_interval = Duration::from_millis(100);
        AwsSecretsManagerRotator::new(config).unwrap()
    }

    /// What a rotation Lambda does for `token`: createSecret (AWSPENDING), then, if `finish`,
    /// finishSecret (AWSCURRENT moved, AWSPENDING removed).
    async fn lambda(&self, secret_id: &str, token: &str, value: &str, finish: bool) {
        self.admin
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(value)
            .version_stages(AWSPENDING)
            .send()
            .await
            .unwrap();
        if finish {
            let stages = self.stages(secret_id).await;
            let current = stages
                .iter()
                .find(|(_, s)| s.iter().any(|x| x == AWSCURRENT))
                .map(|(id, _)| id.clone())
                .unwrap();
            let stage = |label: &str| {
                self.admin
                    .update_secret_version_stage()
                    .secret_id(secret_id)
                    .version_stage(label)
            };
            stage(AWSCURRENT)
                .move_to_version_id(token)
                .remove_from_version_id(current)
                .send()
                .await
                .unwrap();
            stage(AWSPENDING)
                .remove_from_version_id(token)
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn native_create_calls_rotate_secret_once_with_the_token() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = moto.create_secret("native-call").await;
    let stub = Stub::start(Some(moto.upstream()), vec![]).await;
    let rotator = moto.native_rotator_via(&stub, &secret_id);
    let context = context("rot-native-call", None);
    let token = client_request_token(&context.rotation_id);
    // moto labels a value-less version AWSCURRENT: never readable, so create keeps waiting and
    // then reports a retryable "still in progress".
    let error = rotator.create(&context).await.unwrap_err();
    assert_eq!(error.category, ErrorCategory::Backend, "{error}");
    assert!(
        error.is_retryable() && error.detail.contains("still in progress"),
        "{error}"
    );
    assert!(
        moto.stages(&secret_id).await.contains_key(&token),
        "RotateSecret must use the rotation's token"
    );
    let _ = rotator.create(&context).await;
    assert_eq!(
        stub.count("RotateSecret"),
        1,
        "the token's version exists: no second RotateSecret: {:?}",
        stub.targets()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn native_create_waits_for_the_lambda_and_mirrors_its_result() {
    let Some(moto) = Moto::new() else { return };
    let secret_id = moto.create_secret("native-mirror").await;
    let stub = Stub::start(Some(moto.upstream()), vec![]).await;
    let rotator = moto.native_rotator_via(&stub, &secret_id);
    let context = context("rot-native-mirror", None);
    let token = client_request_token(&context.rotation_id);
    let value = generate_password(32);

    // The Lambda has run createSecret only: still in progress.
    moto.lambda(&secret_id, &token, value.expose(), false).await;
    let error = rotator.create(&context).await.unwrap_err();
    assert!(
        error.is_retryable() && error.detail.contains(&format!("AWSPENDING on {token}")),
        "{error}"
    );

    // The Lambda finished: create mirrors the new AWSCURRENT.
    let stage = |label: &str| {
        moto.admin
            .update_secret_version_stage()
            .secret_id(&secret_id)
            .version_stage(label)
    };
    let old = moto
        .stages(&secret_id)
        .await
        .into_iter()
        .find(|(_, s)| s.iter().any(|x| x == AWSCURRENT))
        .map(|(id, _)| id)
        .unwrap();
    stage(AWSCURRENT)
        .move_to_version_id(&token)
        .remove_from_version_id(&old)
        .send()
        .await
        .unwrap();
    stage(AWSPENDING)
        .remove_from_version_id(&token)
        .send()
        .await
        .unwrap();
    let credential = rotator.create(&context).await.unwrap();
    assert_eq!(credential.id.0, token);
    assert_eq!(credential.password, value);
    rotator.set(&context, &credential).await.unwrap();
    rotator.test(&context, &credential).await.unwrap();
    rotator.finish(&context, &credential).await.unwrap();
    rotator.retire(&context, &CredentialId(old)).await.unwrap();
    assert_eq!(
        stub.count("RotateSecret"),
        0,
        "the token's version existed: {:?}",
        stub.targets()
    );
    let wrong = Credential {
        password: SecretValue::new(CANARY),
        ..credential.clone()
    };
    let error = rotator.test(&context, &wrong).await.unwrap_err();
    assert_eq!(error.category, ErrorCategory::VerificationFailed);
    assert_no_canary(&error);

    // A later rotation superseded this one: create mirrors what is current now.
    let later = client_request_token("a-later-rotation");
    moto.lambda(&secret_id, &later, "later-value", true).await;
    let mirrored = rotator.create(&context).await.unwrap();
    assert_eq!(mirrored.id.0, later);
    assert_eq!(mirrored.password.expose(), "later-value");
}
