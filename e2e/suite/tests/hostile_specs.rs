//! Hostile ManagedSecrets through the real binary: every fixture of `crds/fixtures/invalid/`, and
//! specs that only the running operator can find wrong (a missing admin Secret or key, a Secret
//! keyturn did not create, backends that do not answer or refuse the admin, an AWS secret or a
//! driver that does not exist, specs that are not even objects). Each must end with a condition
//! whose reason and message name the problem, cost a bounded number of API writes (no hot loop,
//! backoff for what is retried), and leave the operator healthy and able to rotate a valid
//! ManagedSecret applied after all of them.
//!
//! The stand-in evaluates neither the CRD schema nor its CEL rules, so there every fixture reaches
//! the operator, whose own validation must name the field. A few fixtures the operator cannot see
//! as invalid at all, because a real API server prunes or rejects them before any controller
//! could (an unknown field serde ignores, a rule on metadata.name, ...): they are found by running
//! the operator's own parse (`ManagedSecretSpec` + `validate_spec`) and listed as skipped by
//! design. On a real cluster (`E2E_KUBECONFIG`) every manifest is applied with strict field
//! validation, as kubectl does; what the schema or CEL rejects must be rejected with the field
//! named in the API error, the rest must reach the operator as on the stand-in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keyturn_e2e::aws::Moto;
use keyturn_e2e::openbao::OpenBao;
use keyturn_e2e::postgres::{Postgres, Strategy};
use keyturn_e2e::{
    Cluster, FIELD_MANAGER, OperatorProcess, RecordedRequest, assert_no_canary, random_suffix,
    wait_for, workspace_root,
};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

const API_VERSION: &str = "keyturn.dev/v1alpha1";
const KIND: &str = "ManagedSecret";

/// How long the hostile ManagedSecrets get to come to an outcome (see [`settled`]). The slowest
/// is a retried one's second failure, 10 s after the first; the rest is room for a loaded 2-core
/// machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(240);
/// Writes (finalizer, status, owned Secrets) an invalid or permanently failing ManagedSecret may
/// cost in all: a handful; a hot loop costs hundreds.
const MAX_WRITES_SETTLED: usize = 6;
/// Events about one invalid or permanently failing ManagedSecret, counting series repeats.
const MAX_EVENTS_SETTLED: u64 = 6;
/// After settling, no write at all for those during this window.
const QUIET_WINDOW: Duration = Duration::from_secs(5);
/// The window over which retried ManagedSecrets are watched backing off.
const RETRY_WINDOW: Duration = Duration::from_secs(20);
/// With retries at least 10 s apart (doubling), at most two attempts fall in the window, each a
/// status write and perhaps the staging Secret and the status before Apply.
const MAX_WRITES_RETRY_WINDOW: usize = 6;
/// ... and `failedAttempts` grows by two at most.
const MAX_ATTEMPTS_RETRY_WINDOW: u64 = 2;
/// The first retry delay of the lifecycle core (10 s, doubling per failure).
const FIRST_RETRY_SECONDS: i64 = 10;
/// A status that carried a 200 KB field back (or repeated itself) would be far bigger.
const MAX_STATUS_BYTES: usize = 16 * 1024;

/// What a hostile ManagedSecret must end with.
#[derive(Debug, Clone)]
enum Expect {
    /// `Stalled=True`, reason `InvalidSpec`, the message naming `field` (or, when `inside_ok`, a
    /// field inside it: a more precise location of the same problem).
    InvalidSpec { field: String, inside_ok: bool },
    /// A permanent step failure: `Stalled=True` with `reason`, the message containing each needle.
    Permanent {
        reason: &'static str,
        needles: Vec<String>,
    },
    /// A retried step failure: `Degraded=True` with `reason`, not Stalled, retried with backoff.
    Retrying {
        reason: &'static str,
        needles: Vec<String>,
    },
}

impl Expect {
    /// Invalid or permanently failing: nothing should happen to it once it has its condition.
    fn settles(&self) -> bool {
        !matches!(self, Expect::Retrying { .. })
    }
}

/// One hostile ManagedSecret.
#[derive(Debug, Clone)]
struct Case {
    /// Where it comes from: a fixture file, or what it is about.
    origin: String,
    name: String,
    manifest: Value,
    expect: Expect,
    /// On a real cluster the API server must refuse the apply with this field named in the
    /// error (the schema or a CEL rule catches it); `None`: it reaches the operator.
    rejected_by_api_server: Option<String>,
}

impl Case {
    /// The Secrets keyturn would write for it: the staging Secret and the published one.
    fn owned_secret_names(&self) -> Vec<String> {
        let published = self.manifest["spec"]["secretName"]
            .as_str()
            .unwrap_or(&self.name)
            .to_owned();
        vec![format!("{}-keyturn-staging", self.name), published]
    }
}

// ---------------------------------------------------------------------------------------------
// Source A: the invalid fixtures of the CRD crate.

struct Fixture {
    file: String,
    field: String,
    layer: String,
    object: Value,
}

fn load_invalid_fixtures() -> Vec<Fixture> {
    let dir: PathBuf = workspace_root().join("crds/fixtures/invalid");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("read {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable fixture");
            let header = |key: &str| {
                text.lines()
                    .take_while(|line| line.starts_with('#'))
                    .find_map(|line| {
                        line.strip_prefix('#')?
                            .trim()
                            .strip_prefix(key)?
                            .strip_prefix(':')
                            .map(|value| value.trim().to_owned())
                    })
                    .unwrap_or_else(|| panic!("{} has no `# {key}:` header", path.display()))
            };
            Fixture {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                field: header("expect-field"),
                layer: header("expect-layer"),
                object: serde_yaml::from_str(&text)
                    .unwrap_or_else(|error| panic!("{}: {error}", path.display())),
            }
        })
        .collect()
}

/// What the operator's own parse says about a spec: the problems it reports, or `None` when it
/// finds nothing wrong (the same two calls the operator makes on every watched object).
fn operator_verdict(spec: &Value) -> Option<String> {
    match serde_json::from_value::<keyturn_crds::ManagedSecretSpec>(spec.clone()) {
        Err(error) => Some(format!("does not deserialise: {error}")),
        Ok(spec) => keyturn_crds::validate::validate_spec(&spec)
            .err()
            .map(|errors| errors.to_string()),
    }
}

/// The fixtures as cases (renamed into the test namespace), and those the operator cannot see
/// as invalid with why, for the skipped-by-design list.
fn fixture_cases(on_real_cluster: bool) -> (Vec<Case>, Vec<String>) {
    let fixtures = load_invalid_fixtures();
    assert!(
        fixtures.len() >= 30,
        "crds/fixtures/invalid holds {} fixtures",
        fixtures.len()
    );
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    for fixture in fixtures {
        let stem = fixture.file.trim_end_matches(".yaml");
        let mut manifest = fixture.object.clone();
        // A unique name per fixture, except where the name is what the fixture is about.
        let name = if fixture.field == "metadata.name" {
            manifest["metadata"]["name"].as_str().unwrap().to_owned()
        } else {
            let name = format!("fx-{stem}");
            manifest["metadata"]["name"] = Value::from(name.clone());
            name
        };
        let verdict = operator_verdict(&manifest["spec"]);
        if verdict.is_none() && !on_real_cluster {
            skipped.push(format!(
                "{} (expect {} @ {}): the operator's parse accepts it; the API server's {} layer is \
                 what refuses it",
                fixture.file, fixture.layer, fixture.field, fixture.layer
            ));
            continue;
        }
        cases.push(Case {
            origin: fixture.file.clone(),
            name,
            manifest,
            expect: Expect::InvalidSpec {
                field: fixture.field.clone(),
                inside_ok: true,
            },
            rejected_by_api_server: (fixture.layer != "operator").then(|| fixture.field.clone()),
        });
    }
    (cases, skipped)
}

// ---------------------------------------------------------------------------------------------
// Source B: what only the running operator can see.

/// A port on 127.0.0.1 that nothing listens on (free a moment ago).
fn closed_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a local address").port()
}

/// A Secret manifest (data base64-encoded: the stand-in does not fold stringData).
fn secret(name: &str, entries: &[(&str, &str)]) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), Value::from(engine.encode(value))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"owner": "someone-else"}},
        "type": "Opaque",
        "data": data,
    })
}

fn invalid(origin: &str, name: &str, manifest: Value, field: &str) -> Case {
    Case {
        origin: origin.to_owned(),
        name: name.to_owned(),
        manifest,
        expect: Expect::InvalidSpec {
            field: field.to_owned(),
            // A spec that is not an object is a problem of `spec` itself: a message about
            // `spec.[0]` or a field of it would send the reader to the wrong place.
            inside_ok: field != "spec",
        },
        rejected_by_api_server: Some(field.to_owned()),
    }
}

fn runtime(origin: &str, name: &str, manifest: Value, expect: Expect) -> Case {
    Case {
        origin: origin.to_owned(),
        name: name.to_owned(),
        manifest,
        expect,
        rejected_by_api_server: None,
    }
}

fn permanent(reason: &'static str, needles: &[&str]) -> Expect {
    Expect::Permanent {
        reason,
        needles: needles.iter().map(|needle| (*needle).to_owned()).collect(),
    }
}

fn retrying(reason: &'static str, needles: &[&str]) -> Expect {
    Expect::Retrying {
        reason,
        needles: needles.iter().map(|needle| (*needle).to_owned()).collect(),
    }
}

/// `manifest` with the field at `pointer` (which must exist) replaced by `value`.
fn with(mut manifest: Value, pointer: &str, value: Value) -> Value {
    *manifest
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} exists in the manifest")) = value;
    manifest
}

/// Names of the backend objects the runtime cases use.
struct Backends<'a> {
    postgres: &'a Postgres,
    openbao: &'a OpenBao,
    moto: &'a Moto,
    /// A login role only the cases that never reach PostgreSQL's ALTER ROLE refer to.
    role: &'a str,
    /// The role of the case whose Secret keyturn does not own (its Apply may run).
    foreign_role: &'a str,
    missing_aws_secret: &'a str,
    /// A password-like value pasted where a Secret's name belongs.
    pasted_password: &'a str,
}

fn runtime_cases(backends: &Backends<'_>) -> Vec<Case> {
    let postgres = backends.postgres;
    let pg = |name: &str| {
        postgres
            .managed_secret(name, backends.role)
            .strategy(Strategy::SingleUser)
            .to_json()
    };
    // No expiry: the backoff is then plain 10 s doubling, without the 1/8-of-lifetime cap.
    let pg_without_expiry = |name: &str| {
        postgres
            .managed_secret(name, backends.role)
            .strategy(Strategy::SingleUser)
            .ttl(None)
            .to_json()
    };
    let unresolvable = with(
        pg_without_expiry("pg-host-does-not-resolve"),
        "/spec/rotator/postgres/host",
        json!("keyturn-e2e-nowhere.invalid"),
    );
    let closed_pg_port = closed_port();
    let closed = with(
        with(
            pg_without_expiry("pg-port-closed"),
            "/spec/rotator/postgres/host",
            json!("127.0.0.1"),
        ),
        "/spec/rotator/postgres/port",
        json!(closed_pg_port),
    );
    let closed_pg_address = format!("127.0.0.1:{closed_pg_port}");
    let vault = with(
        backends
            .openbao
            .managed_secret("vault-port-closed", &backends.openbao.unique_path())
            .to_json(),
        "/spec/rotator/vault/address",
        json!(format!("http://127.0.0.1:{}", closed_port())),
    );
    let pasted_password = with(
        pg("pg-admin-secret-name-is-a-password"),
        "/spec/rotator/postgres/adminSecretRef/name",
        json!(backends.pasted_password),
    );
    let mut service_account_token = pg("secret-type-sa-token");
    service_account_token["spec"]["secretType"] = json!("kubernetes.io/service-account-token");
    let mut spec_array = pg("spec-is-an-array");
    spec_array["spec"] = json!([{"rotator": {}}, "rotation"]);
    // serde reads a struct from an array by field order (secretName, secretType, rotator,
    // rotation, ...), so this array is a complete spec to a derived Deserialize: a real API
    // server refuses it (spec is an object), and the operator must not act on it either. The
    // port is closed, so if it does act, nothing at the backend changes.
    let mut spec_positional = with(
        pg("spec-is-a-positional-array"),
        "/spec/rotator/postgres/port",
        json!(closed_port()),
    );
    let positional = json!([
        null,
        "Opaque",
        spec_positional["spec"]["rotator"].take(),
        spec_positional["spec"]["rotation"].take(),
    ]);
    spec_positional["spec"] = positional;
    let mut spec_string = pg("spec-is-a-string");
    spec_string["spec"] = json!("please rotate my password");
    let mut no_spec = pg("spec-is-missing");
    no_spec.as_object_mut().unwrap().remove("spec");
    let custom = with(
        pg("custom-driver-unregistered"),
        "/spec/rotator",
        json!({"custom": {"driver": "example.com/not-registered", "parameters": {"audience": "orders"}}}),
    );
    vec![
        runtime(
            "adminSecretRef names a Secret that does not exist",
            "pg-admin-secret-missing",
            with(
                pg("pg-admin-secret-missing"),
                "/spec/rotator/postgres/adminSecretRef/name",
                json!("pg-admin-missing"),
            ),
            permanent("NotFound", &["Secret pg-admin-missing does not exist"]),
        ),
        runtime(
            "the admin Secret has no password key",
            "pg-admin-secret-without-password",
            with(
                pg("pg-admin-secret-without-password"),
                "/spec/rotator/postgres/adminSecretRef/name",
                json!("pg-admin-nopass"),
            ),
            permanent("NotFound", &["Secret pg-admin-nopass has no key password"]),
        ),
        runtime(
            "spec.secretName names a Secret keyturn did not create",
            "pg-foreign-secret",
            postgres
                .managed_secret("pg-foreign-secret", backends.foreign_role)
                .strategy(Strategy::SingleUser)
                .secret_name("foreign-credentials")
                .to_json(),
            permanent(
                "Misconfigured",
                &["Secret foreign-credentials already exists and keyturn did not create it"],
            ),
        ),
        runtime(
            "the PostgreSQL host does not resolve",
            "pg-host-does-not-resolve",
            unresolvable,
            retrying("Unreachable", &["keyturn-e2e-nowhere.invalid"]),
        ),
        runtime(
            "nothing listens on the PostgreSQL port",
            "pg-port-closed",
            closed,
            retrying("Unreachable", &[&closed_pg_address]),
        ),
        runtime(
            "the admin password is wrong",
            "pg-admin-password-wrong",
            with(
                pg("pg-admin-password-wrong"),
                "/spec/rotator/postgres/adminSecretRef/name",
                json!("pg-admin-wrong"),
            ),
            permanent("AuthenticationFailed", &["password authentication failed"]),
        ),
        runtime(
            "nothing listens on the Vault address",
            "vault-port-closed",
            vault,
            retrying("Unreachable", &["cannot connect to Vault"]),
        ),
        runtime(
            "the AWS secretId does not exist",
            "aws-secret-missing",
            backends
                .moto
                .managed_secret("aws-secret-missing", backends.missing_aws_secret)
                .to_json(),
            permanent("NotFound", &[backends.missing_aws_secret]),
        ),
        runtime(
            "a custom driver this build does not register",
            "custom-driver-unregistered",
            custom,
            permanent(
                "Misconfigured",
                &[
                    "example.com/not-registered",
                    "no driver of that name is registered",
                ],
            ),
        ),
        // The fixture admin-secret-name-is-a-password.yaml, with a password of this run: the
        // operator must refuse it as invalid, naming the field and never the value (which the
        // test checks as a canary); a lookup of a Secret by that name would echo it.
        invalid(
            "adminSecretRef.name is a pasted password",
            "pg-admin-secret-name-is-a-password",
            pasted_password,
            "spec.rotator.postgres.adminSecretRef.name",
        ),
        invalid(
            "secretType kubernetes.io/service-account-token",
            "secret-type-sa-token",
            service_account_token,
            "spec.secretType",
        ),
        invalid(
            "spec is a JSON array",
            "spec-is-an-array",
            spec_array,
            "spec",
        ),
        invalid(
            "spec is an array in field order",
            "spec-is-a-positional-array",
            spec_positional,
            "spec",
        ),
        invalid("spec is a string", "spec-is-a-string", spec_string, "spec"),
        invalid("no spec at all", "spec-is-missing", no_spec, "spec"),
        invalid(
            "the port is a string",
            "pg-port-is-a-string",
            with(
                pg("pg-port-is-a-string"),
                "/spec/rotator/postgres/port",
                json!("5432"),
            ),
            "spec.rotator.postgres.port",
        ),
        invalid(
            "a 200 KB role name",
            "pg-role-200kb",
            with(
                pg("pg-role-200kb"),
                "/spec/rotator/postgres/role",
                json!("a".repeat(200 * 1024)),
            ),
            "spec.rotator.postgres.role",
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Observing.

/// Server-side apply with strict field validation, as kubectl applies: a real API server then
/// refuses unknown fields instead of pruning them silently (the stand-in ignores the directive).
async fn apply_strict(
    cluster: &Cluster,
    namespace: &str,
    object: &Value,
) -> Result<(), kube::Error> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().expect("a name");
    let (api, _) = cluster.dynamic_api(namespace, api_version, kind).await?;
    let mut object = object.clone();
    object["metadata"]["namespace"] = Value::from(namespace);
    let parameters = PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict();
    api.patch(name, &parameters, &Patch::Apply(&object)).await?;
    Ok(())
}

/// Every ManagedSecret of the namespace by name (one LIST: a poll costs one request).
async fn managed_secrets(cluster: &Cluster, namespace: &str) -> BTreeMap<String, Value> {
    cluster
        .list(namespace, API_VERSION, KIND)
        .await
        .into_iter()
        .map(|object| {
            (
                object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                object,
            )
        })
        .collect()
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == type_)
}

fn is_true(object: &Value, type_: &str) -> bool {
    condition(object, type_).is_some_and(|condition| condition["status"] == "True")
}

fn failed_attempts(object: &Value) -> u64 {
    object["status"]["failedAttempts"].as_u64().unwrap_or(0)
}

/// `text` cut to `chars` characters, for tables.
fn cut(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(chars).collect::<String>())
    }
}

/// The conditions that are True, and the failure count: what a reader of the table needs.
fn outcome(object: &Value) -> String {
    let conditions: Vec<String> = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|condition| condition["status"] == "True")
        .map(|condition| {
            format!(
                "{}={}: {}",
                condition["type"].as_str().unwrap_or("?"),
                condition["reason"].as_str().unwrap_or("?"),
                cut(condition["message"].as_str().unwrap_or(""), 220)
            )
        })
        .collect();
    format!(
        "[failedAttempts {}] {}",
        failed_attempts(object),
        conditions.join(" | ")
    )
}

/// Whether `text` names `field` as a whole path (not `spec.rotation.everyday` for
/// `spec.rotation.every`, nor `x.spec.rotation` for `spec.rotation`, as in
/// crds/tests/bad_input.rs), or, when `inside_ok`, a field inside it:
/// `spec.rotation.rotateBeforePercent` locates a problem of `spec.rotation` more precisely. A leading `.` (`.spec.rotation.timezone: field not
/// declared in schema`, as a real API server words it) still counts.
fn names_field(text: &str, field: &str, inside_ok: bool) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(field).any(|(start, _)| {
        let mut before = text[..start].chars().rev();
        let before_ok = match before.next() {
            None => true,
            Some('.') => before.next().is_none_or(|c| !is_word(c)),
            Some(c) => !is_word(c),
        };
        let mut after = text[start + field.len()..].chars();
        let after_ok = match after.next() {
            None => true,
            Some(c) if is_word(c) => false,
            // `field.` or `field[`: a field inside it, or the end of a sentence.
            Some('.') => inside_ok || after.next().is_none_or(char::is_whitespace),
            Some('[') => inside_ok,
            Some(_) => true,
        };
        before_ok && after_ok
    })
}

/// Whether the object has come to an outcome, right or wrong, so that waiting longer would not
/// change the verdict: stalled (invalid or a permanent failure), failing again after a retry, or
/// issued. Which one it should be is [`check`]'s business; a spec wrongly taken as valid is thus
/// reported after its second failure instead of after the whole timeout.
fn settled(object: &Value) -> bool {
    is_true(object, "Stalled")
        || (is_true(object, "Degraded") && failed_attempts(object) >= 2)
        || is_true(object, "Ready")
}

fn seconds_of(value: &Value) -> Option<i64> {
    serde_json::from_value::<Time>(value.clone())
        .ok()
        .map(|time| time.0.as_second())
}

/// What is wrong with how the case ended, if anything.
fn check(case: &Case, object: &Value) -> Result<(), String> {
    let status_bytes = object["status"].to_string().len();
    if status_bytes > MAX_STATUS_BYTES {
        return Err(format!("its status is {status_bytes} bytes"));
    }
    let message_of = |type_: &str| {
        condition(object, type_)
            .and_then(|condition| condition["message"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    let reason_of = |type_: &str| {
        condition(object, type_)
            .and_then(|condition| condition["reason"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    let (type_, reason, needles) = match &case.expect {
        Expect::InvalidSpec { field, inside_ok } => {
            let message = message_of("Stalled");
            if !is_true(object, "Stalled") || reason_of("Stalled") != "InvalidSpec" {
                return Err("expected Stalled=True with reason InvalidSpec".to_owned());
            }
            if !names_field(&message, field, *inside_ok) {
                return Err(format!("the Stalled message does not name {field}"));
            }
            return Ok(());
        }
        Expect::Permanent { reason, needles } => ("Stalled", *reason, needles),
        Expect::Retrying { reason, needles } => ("Degraded", *reason, needles),
    };
    if !is_true(object, type_) || reason_of(type_) != reason {
        return Err(format!("expected {type_}=True with reason {reason}"));
    }
    let message = message_of(type_);
    if let Some(needle) = needles
        .iter()
        .find(|needle| !message.contains(needle.as_str()))
    {
        return Err(format!("the {type_} message does not say {needle:?}"));
    }
    if type_ == "Degraded" {
        if is_true(object, "Stalled") {
            return Err("a retryable failure is marked Stalled".to_owned());
        }
        // The backoff as status records it: the n-th failure waits 10 s * 2^(n-1) (no expiry
        // cap: these specs have no ttl). Whole seconds on both sides, hence the 1 s slack.
        let attempts = failed_attempts(object);
        let delay = seconds_of(&object["status"]["retryAt"])
            .zip(seconds_of(&object["status"]["lastFailure"]["time"]))
            .map(|(retry_at, failed_at)| retry_at - failed_at);
        let doublings = u32::try_from(attempts.saturating_sub(1).min(8)).unwrap_or(8);
        let expected = FIRST_RETRY_SECONDS * (1 << doublings);
        if delay.is_none_or(|delay| delay < expected - 1) {
            return Err(format!(
                "after {attempts} failures the retry is {delay:?} s after the last one; the \
                 backoff says {expected} s"
            ));
        }
    }
    Ok(())
}

/// Whether a logged request is a write by someone other than this test (whose writes all carry
/// `fieldManager=e2e`).
fn is_operator_write(request: &RecordedRequest) -> bool {
    !matches!(request.method.as_str(), "GET" | "HEAD")
        && !request
            .query
            .split('&')
            .any(|pair| pair == format!("fieldManager={FIELD_MANAGER}"))
}

/// The operator's writes to the case's ManagedSecret (object and status) and owned Secrets.
fn writes_for(requests: &[RecordedRequest], namespace: &str, case: &Case) -> usize {
    let object = format!(
        "/apis/keyturn.dev/v1alpha1/namespaces/{namespace}/managedsecrets/{}",
        case.name
    );
    let status = format!("{object}/status");
    let secrets: Vec<String> = case
        .owned_secret_names()
        .iter()
        .map(|name| format!("/api/v1/namespaces/{namespace}/secrets/{name}"))
        .collect();
    requests
        .iter()
        .filter(|request| is_operator_write(request))
        .filter(|request| {
            request.path == object || request.path == status || secrets.contains(&request.path)
        })
        .count()
}

/// Events about each object (events.k8s.io/v1, which a real server also serves core Events
/// through), counting the repeats of a series.
async fn events_per_object(cluster: &Cluster, namespace: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for event in cluster.list(namespace, "events.k8s.io/v1", "Event").await {
        let name = event["regarding"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *counts.entry(name).or_insert(0) += event["series"]["count"].as_u64().unwrap_or(1);
    }
    counts
}

/// Where `canary` (as is, or base64-encoded as in Secret data) can be read: the operator's log
/// and metrics, the namespace's Events, any ManagedSecret.
async fn leaks(
    cluster: &Cluster,
    namespace: &str,
    operator: &OperatorProcess,
    canary: &str,
) -> Vec<String> {
    let forms = [
        canary.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(canary),
    ];
    let found = |text: &str| forms.iter().any(|form| text.contains(form.as_str()));
    let mut places = Vec::new();
    if found(&operator.logs()) {
        places.push("the operator's log".to_owned());
    }
    if let Ok((_, metrics)) = operator.http_get("/metrics").await
        && found(&metrics)
    {
        places.push("/metrics".to_owned());
    }
    for event in cluster.events(namespace).await {
        if found(&event.to_string()) {
            places.push(format!(
                "Event {} about {}",
                event["metadata"]["name"].as_str().unwrap_or("?"),
                event["regarding"]["name"]
                    .as_str()
                    .or(event["involvedObject"]["name"].as_str())
                    .unwrap_or("?")
            ));
        }
    }
    for (name, object) in managed_secrets(cluster, namespace).await {
        if found(&object["status"].to_string()) {
            places.push(format!("the status of ManagedSecret {name}"));
        }
    }
    places
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_managed_secrets_end_with_a_named_condition_and_no_hot_loop() {
    let (Some(postgres), Some(openbao), Some(moto)) =
        (Postgres::from_env(), OpenBao::from_env(), Moto::from_env())
    else {
        return;
    };
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("hostile").await;
    let ns = namespace.name();
    let on_real_cluster = !cluster.is_standin();

    // What the runtime cases refer to: the real admin Secret, one without a password, one with a
    // wrong password (a canary: it must not show up anywhere), and a Secret someone else owns.
    let role = postgres.create_login_role().await;
    let foreign_role = postgres.create_login_role().await;
    postgres.install_admin_secret(&cluster, ns).await;
    openbao.install_token_secret(&cluster, ns).await;
    let admin_user = postgres.env().user.clone();
    let wrong_password = format!("keyturn-canary-{}", random_suffix(20));
    cluster
        .apply(ns, &secret("pg-admin-nopass", &[("username", &admin_user)]))
        .await;
    cluster
        .apply(
            ns,
            &secret(
                "pg-admin-wrong",
                &[("username", &admin_user), ("password", &wrong_password)],
            ),
        )
        .await;
    let foreign_password = format!("not-keyturns-{}", random_suffix(12));
    cluster
        .apply(
            ns,
            &secret(
                "foreign-credentials",
                &[
                    ("username", "someone-else"),
                    ("password", &foreign_password),
                ],
            ),
        )
        .await;
    let foreign_before = cluster
        .read_secret(ns, "foreign-credentials")
        .await
        .unwrap();
    let missing_aws_secret = format!("keyturn-e2e-missing-{}", random_suffix(8));
    let pasted_password = format!("Tr0ub4dor&3-{}", random_suffix(12));

    let (mut cases, skipped) = fixture_cases(on_real_cluster);
    let fixture_count = cases.len();
    let from_runtime = runtime_cases(&Backends {
        postgres: &postgres,
        openbao: &openbao,
        moto: &moto,
        role: &role.name,
        foreign_role: &foreign_role.name,
        missing_aws_secret: &missing_aws_secret,
        pasted_password: &pasted_password,
    });
    let runtime_count = from_runtime.len();
    cases.extend(from_runtime);
    let mut names: Vec<&str> = cases.iter().map(|case| case.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "every case has a name of its own");

    let operator = OperatorProcess::builder(&cluster, &namespace)
        .identity("hostile")
        .spawn();
    operator.wait_ready().await;

    let mut failures: Vec<String> = Vec::new();
    let mut table: Vec<String> = Vec::new();
    let mut applied: Vec<Case> = Vec::new();
    for case in cases {
        let must_reject = if on_real_cluster {
            case.rejected_by_api_server.clone()
        } else {
            None
        };
        match (
            apply_strict(&cluster, ns, &case.manifest).await,
            must_reject,
        ) {
            (Ok(()), None) => applied.push(case),
            (Ok(()), Some(field)) => {
                failures.push(format!(
                    "{} ({}): the API server accepted it; its schema or CEL rules should reject {field}",
                    case.origin, case.name
                ));
                applied.push(case);
            }
            (Err(kube::Error::Api(status)), Some(field)) => {
                let line = format!(
                    "{:<48} rejected by the API server: {}",
                    cut(&case.origin, 48),
                    cut(&status.message, 200)
                );
                if !names_field(&status.message, &field, true) {
                    failures.push(format!(
                        "{} ({}): the API error does not name {field}: {}",
                        case.origin, case.name, status.message
                    ));
                }
                table.push(line);
            }
            (Err(error), _) => failures.push(format!(
                "{} ({}): apply failed: {error}",
                case.origin, case.name
            )),
        }
    }

    // Every applied case reaches the condition it should end with (or the deadline passes and
    // the ones that did not are reported with what they show).
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let objects = loop {
        let objects = managed_secrets(&cluster, ns).await;
        let pending = applied
            .iter()
            .filter(|case| !objects.get(&case.name).is_some_and(settled))
            .count();
        if pending == 0 || Instant::now() >= deadline {
            break objects;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for case in &applied {
        let Some(object) = objects.get(&case.name) else {
            failures.push(format!("{} ({}): gone", case.origin, case.name));
            continue;
        };
        table.push(format!("{:<48} {}", cut(&case.origin, 48), outcome(object)));
        if !settled(object) {
            failures.push(format!(
                "{} ({}): came to no outcome ({:?} expected) within {SETTLE_TIMEOUT:?}: {}",
                case.origin,
                case.name,
                case.expect,
                outcome(object)
            ));
        } else if let Err(problem) = check(case, object) {
            failures.push(format!(
                "{} ({}): {problem}; expected {:?}; got {}",
                case.origin,
                case.name,
                case.expect,
                outcome(object)
            ));
        }
    }

    // No hot loop: what has settled stays quiet, what is retried backs off.
    if let Some(standin) = cluster.standin_or_skip("counting each ManagedSecret's API writes") {
        let window_start = standin.requests().len();
        tokio::time::sleep(QUIET_WINDOW).await;
        let quiet_end = standin.requests().len();
        tokio::time::sleep(RETRY_WINDOW.saturating_sub(QUIET_WINDOW)).await;
        let requests = standin.requests();
        let after = managed_secrets(&cluster, ns).await;
        for case in &applied {
            let total = writes_for(&requests, ns, case);
            let quiet = writes_for(&requests[window_start..quiet_end], ns, case);
            let window = writes_for(&requests[window_start..], ns, case);
            let attempts_before = objects.get(&case.name).map_or(0, failed_attempts);
            let attempts_after = after.get(&case.name).map_or(0, failed_attempts);
            if case.expect.settles() {
                if total > MAX_WRITES_SETTLED {
                    failures.push(format!(
                        "{} ({}): {total} API writes in all (at most {MAX_WRITES_SETTLED})",
                        case.origin, case.name
                    ));
                }
                if quiet > 0 {
                    failures.push(format!(
                        "{} ({}): {quiet} API writes after it had settled",
                        case.origin, case.name
                    ));
                }
            } else {
                if window > MAX_WRITES_RETRY_WINDOW {
                    failures.push(format!(
                        "{} ({}): {window} API writes in {RETRY_WINDOW:?} while backing off (at \
                         most {MAX_WRITES_RETRY_WINDOW})",
                        case.origin, case.name
                    ));
                }
                if attempts_after.saturating_sub(attempts_before) > MAX_ATTEMPTS_RETRY_WINDOW {
                    failures.push(format!(
                        "{} ({}): failedAttempts went from {attempts_before} to {attempts_after} \
                         in {RETRY_WINDOW:?}",
                        case.origin, case.name
                    ));
                }
            }
            table.push(format!(
                "{:<48} writes: {total} in all, {quiet} in the quiet {QUIET_WINDOW:?}, {window} \
                 in {RETRY_WINDOW:?}; failedAttempts {attempts_before} -> {attempts_after}",
                cut(&case.name, 48)
            ));
        }
        let foreign_writes = requests
            .iter()
            .filter(|request| {
                is_operator_write(request)
                    && request.path
                        == format!("/api/v1/namespaces/{ns}/secrets/foreign-credentials")
            })
            .count();
        if foreign_writes > 0 {
            failures.push(format!(
                "the operator wrote {foreign_writes} times to Secret foreign-credentials, which it \
                 did not create"
            ));
        }
    }
    let events = events_per_object(&cluster, ns).await;
    for case in applied.iter().filter(|case| case.expect.settles()) {
        let count = events.get(&case.name).copied().unwrap_or(0);
        if count > MAX_EVENTS_SETTLED {
            failures.push(format!(
                "{} ({}): {count} Events (at most {MAX_EVENTS_SETTLED})",
                case.origin, case.name
            ));
        }
    }

    // The Secret keyturn did not create is exactly as its owner left it.
    let foreign_after = cluster.read_secret(ns, "foreign-credentials").await;
    if foreign_after.as_ref() != Some(&foreign_before) {
        failures.push("Secret foreign-credentials was changed".to_owned());
    }
    let foreign_object = cluster
        .get(ns, "v1", "Secret", "foreign-credentials")
        .await
        .unwrap_or(Value::Null);
    if !foreign_object["metadata"]["ownerReferences"].is_null()
        || !foreign_object["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null()
    {
        failures.push(format!(
            "Secret foreign-credentials was taken over: {}",
            foreign_object["metadata"]
        ));
    }
    // Not asserted (the brief is the Secret), but worth knowing: the refusal comes at Publish,
    // after Apply may already have changed the role's password at the backend.
    let bootstrap_still_works = postgres
        .pg_login(&foreign_role.name, &foreign_role.bootstrap_password)
        .await
        .is_ok();
    println!(
        "observation: after the refused publish to foreign-credentials, the role's password from \
         before {}",
        if bootstrap_still_works {
            "still logs in"
        } else {
            "no longer logs in (Apply changed it before Publish refused)"
        }
    );

    // Still healthy, and not blocked: a valid ManagedSecret applied now rotates.
    if let Some(status) = operator.exit_status() {
        failures.push(format!("the operator exited: {status}"));
    }
    match operator.http_get("/healthz").await {
        Ok((200, _)) => {}
        other => failures.push(format!("/healthz answered {other:?}")),
    }
    let after_role = postgres.create_login_role().await;
    let valid = postgres
        .managed_secret("after-the-storm", &after_role.name)
        .strategy(Strategy::SingleUser);
    cluster.apply_yaml(ns, &valid.to_yaml()).await;
    let issued = wait_for(
        "the valid ManagedSecret applied after the hostile ones to be issued",
        Duration::from_secs(120),
        async || {
            let object = cluster
                .get(ns, API_VERSION, KIND, "after-the-storm")
                .await
                .unwrap_or(Value::Null);
            if object["status"]["revision"].as_u64() >= Some(1) && is_true(&object, "Ready") {
                Ok(object)
            } else {
                Err(object["status"].clone())
            }
        },
    )
    .await;
    let published = cluster
        .read_secret(ns, valid.published_secret_name())
        .await
        .expect("the valid ManagedSecret's Secret is published");
    if let Err(error) = postgres
        .pg_select(
            &published["username"],
            &published["password"],
            &after_role.table,
        )
        .await
    {
        failures.push(format!(
            "the credential published after the hostile ones does not work: {error}; {}",
            outcome(&issued)
        ));
    }
    // Neither the wrong admin password nor the one pasted as a Secret name shows up anywhere a
    // reader of the cluster or the operator could see it. Scanned here so that a leak is listed
    // with the other problems; the harness's full check runs once those are clear.
    for (what, canary) in [
        ("the wrong admin password", &wrong_password),
        (
            "the password pasted as adminSecretRef.name",
            &pasted_password,
        ),
    ] {
        for place in leaks(&cluster, ns, &operator, canary).await {
            failures.push(format!("{what} leaked into {place}"));
        }
    }

    let mut report = String::new();
    writeln!(
        report,
        "{fixture_count} fixtures and {runtime_count} runtime cases; {} fixtures skipped by design:",
        skipped.len()
    )
    .unwrap();
    for line in &skipped {
        writeln!(report, "  SKIPPED-BY-DESIGN: {line}").unwrap();
    }
    for line in &table {
        writeln!(report, "  {line}").unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} problems with hostile ManagedSecrets:\n  {}\n\n{report}",
        failures.len(),
        failures.join("\n  ")
    );
    println!("{report}");
    assert_no_canary(&cluster, ns, &[&operator], &wrong_password).await;
    assert_no_canary(&cluster, ns, &[&operator], &pasted_password).await;
}

#[test]
fn fields_are_matched_as_whole_paths() {
    let named = |text: &str, field: &str| names_field(text, field, false);
    assert!(named(
        "spec.rotation.every: must be at least 1m",
        "spec.rotation.every"
    ));
    assert!(named(
        ".spec.rotation.timezone: field not declared in schema",
        "spec.rotation.timezone"
    ));
    assert!(named("set spec.rotation.every.", "spec.rotation.every"));
    assert!(!named("spec.rotation.everyday: x", "spec.rotation.every"));
    assert!(!named("x.spec.rotation: x", "spec.rotation"));
    assert!(!named("spec.[0]: invalid type", "spec"));
    assert!(!named(
        "spec.rotator.postgres: missing field `role`",
        "spec.rotator.postgres.role"
    ));
    assert!(names_field(
        "spec.rotation.rotateBeforePercent: x",
        "spec.rotation",
        true
    ));
    assert!(names_field(
        "spec.access.serviceAccounts[3]: x",
        "spec.access.serviceAccounts",
        true
    ));
    assert!(!names_field(
        "spec.rotation.rotateBeforePercent: x",
        "spec.rotation",
        false
    ));
}
