//! The demo (README's first command, through `scripts/demo.sh`): the real `keyturn-operator`
//! binary rotates three credentials for real, inside a Kubernetes API, and the demo proves each
//! rotation from the outside, the way a user could check it.
//!
//! It starts the in-memory Kubernetes API stand-in (or uses `E2E_KUBECONFIG`'s cluster), declares
//! a PostgreSQL login (AlternatingUsers, consumed by a Deployment), an OpenBao KV secret and an
//! AWS Secrets Manager secret (moto) as ManagedSecrets rotating every minute, runs the operator,
//! and while it runs prints a status table and, for each new revision, the proof: the published
//! Secret changed (by fingerprint), the new login works and the old one is refused, the backend
//! holds what was published. It requests one rotation by hand, then prints the Events and one
//! rotation's audit records with the verification of the whole hash chain, stops the operator
//! with SIGTERM and checks that it released its Lease and exited 0.
//!
//! Credential values are compared and used to log in, never printed: every value shown is a
//! fingerprint, computed the way the operator computes the ones in status and audit records.
//!
//! ```sh
//! ./scripts/demo.sh                      # builds, starts the backends, runs this
//! cargo run -p keyturn-e2e --example demo -- --duration 150   # with target/test-env.sh sourced
//! ```
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use keyturn_audit::{AuditRecord, AuditStore};
use keyturn_e2e::aws::Moto;
use keyturn_e2e::openbao::{DEV_KV_MOUNT, OpenBao};
use keyturn_e2e::postgres::{LoginRole, Postgres, Strategy};
use keyturn_e2e::{Cluster, OPERATOR_BIN, OperatorProcess, random_suffix};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const MANAGED_SECRETS: &str = "keyturn.dev/v1alpha1";
const MANAGED_SECRET: &str = "ManagedSecret";
/// The annotation people set to ask for a rotation now (docs/controller.md, "People's controls").
const ROTATE_REQUEST_ANNOTATION: &str = "keyturn.dev/rotate-requested-at";
/// What the operator writes on a consumer's pod template to restart it.
const RESTARTED_FOR_ANNOTATION: &str = "keyturn.dev/restarted-for";
/// The annotation on the published Secret naming its credential's fingerprint.
const FINGERPRINT_ANNOTATION: &str = "keyturn.dev/fingerprint";
/// The operator's default Lease name.
const LEASE_NAME: &str = "keyturn-operator";

const POSTGRES_NAME: &str = "orders-db";
const POSTGRES_SECRET: &str = "orders-db-credentials";
const CONSUMER: &str = "orders-api";
const VAULT_NAME: &str = "reporting";
const AWS_NAME: &str = "webhook-signing-key";

/// The shortest interval and lifetime the API accepts (the CRD's CEL rules and the operator's
/// own validation): a credential is rotated once a minute and would expire after five.
const EVERY: &str = "1m";
const TTL: &str = "5m";
const DEFAULT_DURATION: Duration = Duration::from_secs(150);
/// When the demo asks for a rotation of the AWS secret by hand: after its first issuance, well
/// before its first scheduled rotation.
const MANUAL_REQUEST_AFTER: Duration = Duration::from_secs(20);
/// How long the stand-in's Deployment "takes" to roll out.
const ROLLOUT_TIME: Duration = Duration::from_secs(3);
/// How often the demo looks at the cluster.
const POLL: Duration = Duration::from_secs(1);
/// After `--duration`, how long to wait for rotations still due or in flight to finish.
const SETTLE: Duration = Duration::from_secs(60);
/// How long a retired password may keep working after the revision changed: none is expected
/// (RetirePrevious runs before the revision is counted), the slack covers a slow backend.
const RETIRE_GRACE: Duration = Duration::from_secs(20);
/// After how long without a first status, and without any change at all, the demo shows the
/// tail of the operator's log (rotations come every minute; their steps take seconds).
const STALL_HINT_FIRST: Duration = Duration::from_secs(30);
const STALL_HINT: Duration = Duration::from_secs(90);
/// Events shown at the end.
const EVENTS_SHOWN: usize = 14;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo: {error:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("\ndemo: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: demo [--duration SECONDS] [--logs DIR]

  --duration SECONDS  how long to watch the rotations (default 150: the first issuance and two
                      scheduled rotations of each ManagedSecret; they rotate every 1m, the
                      shortest interval the API accepts)
  --logs DIR          where to keep the operator's log and audit database at the end
                      (default: <target>/demo-logs)

Needs the backends of scripts/test.sh in the environment (scripts/demo.sh starts its own) and
the keyturn-operator binary (KEYTURN_OPERATOR_BIN, else the one next to this example's profile).";

/// The command line.
struct Options {
    duration: Duration,
    logs: PathBuf,
}

impl Options {
    /// `None` when only the help was asked for.
    fn parse(mut arguments: impl Iterator<Item = String>) -> anyhow::Result<Option<Options>> {
        let mut options = Options {
            duration: DEFAULT_DURATION,
            logs: target_dir().join("demo-logs"),
        };
        while let Some(argument) = arguments.next() {
            let (flag, inline) = match argument.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (argument, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| arguments.next())
                    .with_context(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--duration" => {
                    let text = value()?;
                    let seconds: u64 = text.trim_end_matches('s').parse().with_context(|| {
                        format!("--duration {text}: expected a number of seconds")
                    })?;
                    if seconds < 10 {
                        bail!("--duration {seconds}: at least 10 seconds, to see a first issuance");
                    }
                    options.duration = Duration::from_secs(seconds);
                }
                "--logs" => options.logs = PathBuf::from(value()?),
                "--every" => bail!(
                    "--every cannot be changed: every ManagedSecret rotates every {EVERY}, the \
                     shortest interval the API accepts"
                ),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    return Ok(None);
                }
                other => bail!("unknown argument {other:?}"),
            }
        }
        Ok(Some(options))
    }
}

/// The cargo target directory this example was built in (`<target>/debug/examples/demo`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|executable| executable.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| keyturn_e2e::workspace_root().join("target"))
}

/// The operator binary: `$KEYTURN_OPERATOR_BIN`, else `keyturn-operator` in this example's
/// profile directory. (The harness looks next to a test binary, in `<profile>/deps/`'s parent;
/// an example lives one level further down, in `<profile>/examples/`.)
fn operator_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os(OPERATOR_BIN) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => std::env::current_exe()
            .context("find this example's path")?
            .ancestors()
            .nth(2)
            .context("find this example's profile directory")?
            .join("keyturn-operator"),
    };
    if !path.is_file() {
        bail!(
            "the operator binary {} does not exist: run `cargo build -p keyturn-operator` \
             (scripts/demo.sh does) or set {OPERATOR_BIN}",
            path.display()
        );
    }
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// Output

/// Headings in bold on a terminal; plain text in a log file.
fn section(title: &str) {
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m== {title}\x1b[0m");
    } else {
        println!("\n== {title}");
    }
}

/// The checks the demo makes, counted for the summary.
#[derive(Default)]
struct Checks {
    passed: u32,
    failed: Vec<String>,
}

impl Checks {
    /// Records and prints one check; returns whether it held.
    fn check(&mut self, holds: bool, what: impl fmt::Display) -> bool {
        if holds {
            self.passed += 1;
            println!("      [ok] {what}");
        } else {
            println!("      [FAILED] {what}");
            self.failed.push(what.to_string());
        }
        holds
    }
}

/// A credential value read from a Secret or a backend. It is compared and used to log in, never
/// shown: `Debug` prints a placeholder, so a stray `{:?}` cannot leak it.
#[derive(Clone, PartialEq, Eq)]
struct Hidden(String);

impl fmt::Debug for Hidden {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[hidden]")
    }
}

/// The operator's fingerprint of a credential (keyturn-rotators' `Credential::fingerprint`):
/// the first 16 hex digits of SHA-256("keyturn-fingerprint-v1" ‖ 0 ‖ username ‖ 0 ‖ password).
/// Computed here, independently, so that it can be compared with status and audit records.
fn fingerprint(username: &str, password: &Hidden) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"keyturn-fingerprint-v1\0");
    hasher.update(username.as_bytes());
    hasher.update(b"\0");
    hasher.update(password.0.as_bytes());
    hex::encode(&hasher.finalize()[..8])
}

/// A credential as a consumer sees it in a Secret.
#[derive(Clone, Debug)]
struct Login {
    username: Option<String>,
    password: Hidden,
}

impl Login {
    fn from_secret(data: &BTreeMap<String, String>) -> Option<Login> {
        Some(Login {
            username: data.get("username").cloned(),
            password: Hidden(data.get("password")?.clone()),
        })
    }

    fn fingerprint(&self) -> String {
        fingerprint(self.username.as_deref().unwrap_or(""), &self.password)
    }

    fn username(&self) -> &str {
        self.username.as_deref().unwrap_or("(none)")
    }
}

/// `2026-11-22T09:00:05Z` -> `09:00:05`; `-` when absent.
fn clock(value: &Value) -> String {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map_or_else(
            || "-".to_owned(),
            |time| time.with_timezone(&Utc).format("%H:%M:%S").to_string(),
        )
}

fn text_or<'a>(value: &'a Value, default: &'a str) -> &'a str {
    value.as_str().unwrap_or(default)
}

/// The first `limit` characters of `text`, with `…` when cut.
fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == kind)
}

/// Prints rows as aligned columns.
fn print_table(rows: &[Vec<String>], indent: &str) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{indent}{}", line.join("   ").trim_end());
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// Which backend a ManagedSecret uses, and what the demo needs to check it.
enum Backend {
    Postgres { role: LoginRole },
    Vault { path: String },
    Aws { secret_id: String },
}

/// What the demo has seen of one ManagedSecret.
struct Tracked {
    name: &'static str,
    published_secret: &'static str,
    backend: Backend,
    /// Revisions proven so far (the first is the first issuance).
    revisions: Vec<u64>,
    last_revision: u64,
    /// The credential published at `last_revision` (before the first issuance, for PostgreSQL,
    /// the bootstrap login the role was created with).
    last_login: Option<Login>,
    /// Fingerprints seen in the published Secret, by revision.
    fingerprints: BTreeMap<u64, String>,
    /// The last failure shown, so that each is shown once.
    last_failure: Option<String>,
}

struct Demo {
    cluster: Cluster,
    namespace: String,
    postgres: Postgres,
    openbao: OpenBao,
    moto: Moto,
    tracked: Vec<Tracked>,
    checks: Checks,
    started: Instant,
    /// Every credential value seen, for the leak check at the end.
    seen_values: Vec<Hidden>,
    /// The value of the rotate-request annotation the demo set, once set.
    manual_request: Option<String>,
    /// The revision that honoured it.
    manual_revision: Option<u64>,
}

async fn run(options: &Options) -> anyhow::Result<bool> {
    let (Some(postgres), Some(openbao), Some(moto)) =
        (Postgres::from_env(), OpenBao::from_env(), Moto::from_env())
    else {
        bail!(
            "the demo needs PostgreSQL, OpenBao and moto: run ./scripts/demo.sh (it starts \
             them), or ./scripts/test.sh --serve and `source target/test-env.sh` first"
        );
    };
    let operator_binary = operator_binary()?;

    section("A Kubernetes API");
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("demo").await;
    let namespace_name = namespace.name().to_owned();
    if cluster.is_standin() {
        println!(
            "The in-memory Kubernetes API stand-in (e2e/apiserver) is serving; it lives as long \
             as this demo."
        );
    } else {
        println!("The cluster of E2E_KUBECONFIG.");
    }
    println!("  kubeconfig: {}", cluster.kubeconfig_path().display());
    println!("  namespace:  {namespace_name}");
    println!(
        "  look around while the demo runs:\n    {} --kubeconfig {} -n {namespace_name} get \
         managedsecrets -o wide",
        kubectl().display(),
        cluster.kubeconfig_path().display()
    );

    let mut demo = Demo {
        cluster: cluster.clone(),
        namespace: namespace_name.clone(),
        postgres,
        openbao,
        moto,
        tracked: Vec::new(),
        checks: Checks::default(),
        started: Instant::now(),
        seen_values: Vec::new(),
        manual_request: None,
        manual_revision: None,
    };
    let manifests = demo.declare().await?;

    section("The operator");
    let operator = OperatorProcess::builder(&cluster, &namespace)
        .identity("keyturn-demo")
        .binary(&operator_binary)
        .flag("--log-format", "text")
        .spawn();
    println!(
        "keyturn-operator run (pid {}), watching namespace {namespace_name}, leader Lease \
         {LEASE_NAME}",
        operator.pid()
    );
    println!("  binary:  {}", operator_binary.display());
    println!("  log:     {}", operator.log_path().display());
    println!("  metrics: http://{}/metrics", operator.http_address());
    operator.wait_ready().await;
    println!("  /readyz answers 200");

    for manifest in &manifests {
        cluster.apply(&namespace_name, manifest).await;
    }
    println!(
        "applied ManagedSecrets {POSTGRES_NAME}, {VAULT_NAME} and {AWS_NAME} (rotation every \
         {EVERY}, credentials expire after {TTL})"
    );

    let deployment_controller = if cluster.is_standin() {
        println!(
            "The stand-in runs no Deployment controller: when keyturn restarts {CONSUMER}, this \
             demo marks it rolled out ~{}s later, as the Deployment controller would.",
            ROLLOUT_TIME.as_secs()
        );
        Some(tokio::spawn(play_deployment_controller(
            cluster.clone(),
            namespace_name.clone(),
        )))
    } else {
        None
    };

    section(&format!(
        "Rotations ({}s; times in UTC; a table whenever a row changes)",
        options.duration.as_secs()
    ));
    demo.started = Instant::now();
    let watched = demo.watch(options.duration, &operator).await;
    if let Some(task) = deployment_controller {
        task.abort();
    }
    if let Err(error) = watched {
        // The namespace's working directory goes when the demo ends: keep the evidence.
        keep_files(
            &options.logs,
            operator.log_path(),
            &namespace.work_dir().join("audit.db"),
        );
        return Err(error);
    }

    section("What kubectl shows (the CRD's printer columns, served by the same API)");
    demo.show_kubectl().await;

    section("kubectl keyturn (the plugin, found by kubectl on PATH)");
    demo.show_plugin(&operator_binary).await;

    section("What /metrics says");
    show_metrics(&operator).await;

    section("Events of the namespace (the newest)");
    demo.show_events().await;

    section("No credential leaked");
    demo.check_no_leak(&operator).await;

    section("Stopping the operator (SIGTERM)");
    demo.stop(&operator).await;

    section("The audit trail");
    let audit_path = namespace.work_dir().join("audit.db");
    if let Err(error) = demo.show_audit(&audit_path).await {
        demo.checks.check(
            false,
            format!("the audit store can be read and verified: {error:#}"),
        );
    }

    section("An evidence bundle for auditors (kubectl keyturn evidence)");
    demo.show_evidence(&operator_binary, &audit_path, &options.logs)
        .await;

    keep_files(&options.logs, operator.log_path(), &audit_path);
    Ok(demo.summary(options.duration))
}

impl Demo {
    fn elapsed(&self) -> String {
        format!("t+{}s", self.started.elapsed().as_secs())
    }

    /// Creates the backends' objects, the Secrets and the consumer, and returns the three
    /// ManagedSecret manifests (applied once the operator is ready).
    async fn declare(&mut self) -> anyhow::Result<Vec<Value>> {
        section("What keyturn will manage");
        let namespace = self.namespace.clone();

        let role = self.postgres.create_login_role().await;
        self.postgres
            .install_admin_secret(&self.cluster, &namespace)
            .await;
        println!(
            "PostgreSQL {}:{}: login role {} with a bootstrap password, SELECT on {}; \
             admin Secret pg-admin (and its CA, so the operator connects with verify-full)",
            self.postgres.env().host,
            self.postgres.env().port,
            role.name,
            role.table
        );
        self.seen_values
            .push(Hidden(role.bootstrap_password.clone()));
        self.seen_values
            .push(Hidden(self.postgres.env().password.clone()));

        let consumer = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": CONSUMER, "labels": {"app": CONSUMER}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": CONSUMER}},
                "template": {
                    "metadata": {"labels": {"app": CONSUMER}},
                    "spec": {"containers": [{
                        "name": "api",
                        "image": "registry.example/orders-api:1.4",
                        "envFrom": [{"secretRef": {"name": POSTGRES_SECRET}}],
                    }]},
                },
            },
        });
        self.cluster.apply(&namespace, &consumer).await;
        mark_rolled_out(&self.cluster, &namespace).await?;
        println!(
            "Deployment {CONSUMER} (2 replicas) reads Secret {POSTGRES_SECRET} through envFrom: \
             it needs a restart to see a new password"
        );

        let mut postgres_manifest = self
            .postgres
            .managed_secret(POSTGRES_NAME, &role.name)
            .strategy(Strategy::AlternatingUsers)
            .secret_name(POSTGRES_SECRET)
            .every(EVERY)
            .ttl(Some(TTL))
            .to_json();
        postgres_manifest["spec"]["consumers"] = json!({
            "restart": [{"kind": "Deployment", "name": CONSUMER}],
            "rolloutTimeout": "2m",
        });
        // Only the consumer's service account may read the Secret: keyturn makes the Role and
        // RoleBinding (and the admission policy, on a real cluster, keeps other accounts' Pods
        // from mounting it).
        postgres_manifest["spec"]["access"] = json!({"serviceAccounts": [CONSUMER]});

        self.openbao
            .install_token_secret(&self.cluster, &namespace)
            .await;
        let path = self.openbao.unique_path();
        let seed = Hidden(random_suffix(24));
        self.openbao
            .write_kv(
                DEV_KV_MOUNT,
                &path,
                &json!({"username": "reporting_svc", "password": seed.0}),
            )
            .await;
        self.seen_values.push(seed);
        self.seen_values
            .push(Hidden(self.openbao.env().token.clone()));
        println!(
            "OpenBao {}: KV v2 secret {DEV_KV_MOUNT}/{path} (version 1 written by hand, username \
             reporting_svc); token Secret openbao-token",
            self.openbao.env().addr
        );
        let mut vault_manifest = self.openbao.managed_secret(VAULT_NAME, &path).to_json();
        vault_manifest["spec"]["expiry"] = json!({"ttl": TTL});

        let seed = Hidden(random_suffix(32));
        let secret_id = self
            .moto
            .create_secret("webhook-signing-key", &seed.0)
            .await;
        self.seen_values.push(seed);
        println!(
            "AWS Secrets Manager (moto, {}): secret {secret_id}, created by hand; keyturn \
             manages its versions itself (Managed mode)",
            self.moto.env().endpoint
        );
        let mut aws_manifest = self.moto.managed_secret(AWS_NAME, &secret_id).to_json();
        aws_manifest["spec"]["expiry"] = json!({"ttl": TTL});

        println!("\nThe PostgreSQL one, as applied:");
        let yaml =
            serde_yaml::to_string(&postgres_manifest).context("write the manifest as YAML")?;
        for line in yaml.lines() {
            println!("    {line}");
        }

        self.tracked = vec![
            Tracked::new(
                POSTGRES_NAME,
                POSTGRES_SECRET,
                Some(Login {
                    username: Some(role.name.clone()),
                    password: Hidden(role.bootstrap_password.clone()),
                }),
                Backend::Postgres { role },
            ),
            Tracked::new(VAULT_NAME, VAULT_NAME, None, Backend::Vault { path }),
            Tracked::new(AWS_NAME, AWS_NAME, None, Backend::Aws { secret_id }),
        ];
        Ok(vec![postgres_manifest, vault_manifest, aws_manifest])
    }

    /// Watches for `duration` (and up to [`SETTLE`] more for rotations still due), printing the
    /// table and proving every new revision; asks for the manual rotation on the way.
    async fn watch(
        &mut self,
        duration: Duration,
        operator: &OperatorProcess,
    ) -> anyhow::Result<()> {
        let expected = expected_revisions(duration);
        let mut last_table: Vec<Vec<String>> = Vec::new();
        let mut settling_announced = false;
        // When the table last changed, and whether the operator's log was shown since.
        let mut last_change = Instant::now();
        let mut stall_reported = false;
        loop {
            if let Some(status) = operator.exit_status() {
                bail!(
                    "the operator exited ({status}) while rotating; the end of its log:\n{}",
                    operator.log_tail(40)
                );
            }
            let objects = self
                .cluster
                .list(&self.namespace, MANAGED_SECRETS, MANAGED_SECRET)
                .await;
            let by_name: BTreeMap<String, Value> = objects
                .into_iter()
                .filter_map(|object| {
                    let name = object["metadata"]["name"].as_str()?.to_owned();
                    Some((name, object))
                })
                .collect();

            let table = status_table(&self.tracked, &by_name);
            if table != last_table {
                println!("\n  {}", self.elapsed());
                print_table(&table, "  ");
                last_table = table;
                last_change = Instant::now();
                stall_reported = false;
            }
            let unreconciled: Vec<&str> = self
                .tracked
                .iter()
                .filter(|tracked| {
                    by_name
                        .get(tracked.name)
                        .is_none_or(|object| object["status"]["revision"].is_null())
                })
                .map(|tracked| tracked.name)
                .collect();
            let stalled_for = last_change.elapsed();
            // Nothing written for a while although a first issuance is pending, or nothing at all
            // for longer than a rotation interval: the operator's log says why.
            if !stall_reported
                && ((!unreconciled.is_empty() && stalled_for >= STALL_HINT_FIRST)
                    || stalled_for >= STALL_HINT)
            {
                stall_reported = true;
                println!(
                    "\n  {}: nothing has changed for {}s{}; the operator's log says why ({}):\n{}",
                    self.elapsed(),
                    stalled_for.as_secs(),
                    if unreconciled.is_empty() {
                        String::new()
                    } else {
                        format!(" and {} still has no status", unreconciled.join(", "))
                    },
                    operator.log_path().display(),
                    operator.log_tail(15)
                );
            }
            for index in 0..self.tracked.len() {
                let Some(object) = by_name.get(self.tracked[index].name) else {
                    continue;
                };
                self.show_failure(index, &object["status"]);
                let revision = object["status"]["revision"].as_u64().unwrap_or(0);
                if revision > self.tracked[index].last_revision {
                    self.prove(index, revision, &object["status"], operator)
                        .await?;
                }
            }

            let elapsed = self.started.elapsed();
            if self.manual_request.is_none()
                && elapsed >= MANUAL_REQUEST_AFTER
                && duration > MANUAL_REQUEST_AFTER
            {
                self.request_rotation().await;
            }
            if elapsed >= duration {
                let settled = self.tracked.iter().all(|tracked| {
                    let object = by_name.get(tracked.name);
                    let in_flight =
                        object.is_some_and(|object| !object["status"]["inFlight"].is_null());
                    tracked.last_revision >= expected.get(tracked) && !in_flight
                });
                if settled {
                    return Ok(());
                }
                if elapsed >= duration + SETTLE {
                    println!(
                        "\n  {}: stopped waiting; the summary says which rotations did not happen \
                         (operator log: {})",
                        self.elapsed(),
                        operator.log_path().display()
                    );
                    return Ok(());
                }
                if !settling_announced {
                    settling_announced = true;
                    println!(
                        "\n  {}: time is up, waiting up to {}s more for rotations that are due or \
                         in flight",
                        self.elapsed(),
                        SETTLE.as_secs()
                    );
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Prints a step failure once: it is retried by the operator, so it is news, not a verdict.
    fn show_failure(&mut self, index: usize, status: &Value) {
        let failure = &status["lastFailure"];
        let description = if failure.is_null() {
            None
        } else {
            Some(format!(
                "{} step failed ({}): {}; retry at {}",
                text_or(&failure["step"], "a"),
                text_or(&failure["category"], "?"),
                shorten(text_or(&failure["message"], ""), 160),
                clock(&status["retryAt"])
            ))
        };
        let elapsed = self.elapsed();
        let tracked = &mut self.tracked[index];
        if description != tracked.last_failure {
            if let Some(description) = &description {
                println!("\n  {elapsed}: {}: {description}", tracked.name);
            }
            tracked.last_failure = description;
        }
    }

    /// Asks for a rotation of the AWS secret through the annotation, as a person would.
    async fn request_rotation(&mut self) {
        let value = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        println!(
            "\n  {}: asking for a rotation of {AWS_NAME} now, as a person would:\n    kubectl \
             annotate managedsecret {AWS_NAME} {ROTATE_REQUEST_ANNOTATION}={value} --overwrite",
            self.elapsed()
        );
        self.cluster
            .merge_patch(
                &self.namespace,
                MANAGED_SECRETS,
                MANAGED_SECRET,
                AWS_NAME,
                &json!({"metadata": {"annotations": {ROTATE_REQUEST_ANNOTATION: value}}}),
            )
            .await;
        self.manual_request = Some(value);
    }

    /// Shows that the new revision of `tracked[index]` is real.
    async fn prove(
        &mut self,
        index: usize,
        revision: u64,
        status: &Value,
        operator: &OperatorProcess,
    ) -> anyhow::Result<()> {
        let name = self.tracked[index].name;
        let secret_name = self.tracked[index].published_secret;
        let first = self.tracked[index].revisions.is_empty();
        let why = if first {
            "first issuance".to_owned()
        } else if name == AWS_NAME
            && self.manual_revision.is_none()
            && self.manual_request.is_some()
            && status["handledRotateRequest"].as_str() == self.manual_request.as_deref()
        {
            self.manual_revision = Some(revision);
            "requested by hand".to_owned()
        } else {
            "scheduled".to_owned()
        };
        println!(
            "\n  {}: {name} is at revision {revision} ({why}); proof:",
            self.elapsed()
        );
        let Some(data) = self.cluster.read_secret(&self.namespace, secret_name).await else {
            self.checks.check(
                false,
                format!(
                    "Secret {secret_name} exists (see the operator log: {})",
                    operator.log_path().display()
                ),
            );
            self.tracked[index].advance(revision, None);
            return Ok(());
        };
        let Some(login) = Login::from_secret(&data) else {
            self.checks
                .check(false, format!("Secret {secret_name} has a password key"));
            self.tracked[index].advance(revision, None);
            return Ok(());
        };
        self.seen_values.push(login.password.clone());
        let new_fingerprint = login.fingerprint();
        let previous_fingerprint = self.tracked[index].fingerprints.values().last().cloned();
        let annotation = self
            .cluster
            .get(&self.namespace, "v1", "Secret", secret_name)
            .await
            .and_then(|secret| {
                secret["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
                    .as_str()
                    .map(str::to_owned)
            });
        let in_status = status["current"]["fingerprint"].as_str();
        match &previous_fingerprint {
            Some(previous) => self.checks.check(
                *previous != new_fingerprint,
                format!(
                    "Secret {secret_name} changed: fingerprint {previous} -> {new_fingerprint} \
                     (SHA-256 of username and password, computed here)"
                ),
            ),
            None => self.checks.check(
                true,
                format!("Secret {secret_name} published: fingerprint {new_fingerprint}"),
            ),
        };
        self.checks.check(
            in_status == Some(new_fingerprint.as_str())
                && annotation.as_deref() == Some(new_fingerprint.as_str()),
            format!(
                "it is the credential status.current names (fingerprint {}, the Secret's \
                 {FINGERPRINT_ANNOTATION} annotation: {})",
                in_status.unwrap_or("none"),
                annotation.as_deref().unwrap_or("none")
            ),
        );

        match &self.tracked[index].backend {
            Backend::Postgres { role } => {
                let role = role.clone();
                let previous = self.tracked[index].last_login.clone();
                self.prove_postgres(&role, &login, previous.as_ref(), status)
                    .await;
            }
            Backend::Vault { path } => {
                let path = path.clone();
                self.prove_vault(&path, &login, &new_fingerprint, status)
                    .await;
            }
            Backend::Aws { secret_id } => {
                let secret_id = secret_id.clone();
                self.prove_aws(&secret_id, &new_fingerprint, status).await;
            }
        }
        self.tracked[index]
            .fingerprints
            .insert(revision, new_fingerprint);
        self.tracked[index].advance(revision, Some(login));
        if why == "requested by hand" {
            println!(
                "      (status.handledRotateRequest = {}: this value is honoured once; the \
                 schedule now counts from this rotation)",
                self.manual_request.as_deref().unwrap_or("")
            );
        }
        Ok(())
    }

    async fn prove_postgres(
        &mut self,
        role: &LoginRole,
        login: &Login,
        previous: Option<&Login>,
        status: &Value,
    ) {
        let username = login.username().to_owned();
        let selected = self
            .postgres
            .pg_select(&username, &login.password.0, &role.table)
            .await;
        self.checks.check(
            selected.is_ok(),
            match &selected {
                Ok(rows) => format!(
                    "a fresh login as {username} with the new password works (SELECT on {}: {rows} \
                     row)",
                    role.table
                ),
                Err(error) => format!("a fresh login as {username} with the new password: {error}"),
            },
        );
        let alternate = format!("{}_alt", role.name);
        let other = if username == role.name {
            &alternate
        } else {
            &role.name
        };
        self.checks.check(
            username == role.name || username == alternate,
            format!(
                "AlternatingUsers: consumers now log in as {username}; {other} waits for the next \
                 rotation"
            ),
        );
        if let Some(previous) = previous {
            let previous_username = previous.username().to_owned();
            let what = if previous.password.0 == role.bootstrap_password
                && previous_username == role.name
            {
                format!("the bootstrap password of {previous_username}")
            } else {
                format!("the previous password (of {previous_username})")
            };
            let deadline = Instant::now() + RETIRE_GRACE;
            let refused = loop {
                match self
                    .postgres
                    .pg_login(&previous_username, &previous.password.0)
                    .await
                {
                    Err(error) => break Some(error),
                    Ok(()) if Instant::now() >= deadline => break None,
                    Ok(()) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            };
            self.checks.check(
                refused.is_some(),
                match &refused {
                    Some(error) => format!(
                        "{what} is refused now that it is retired ({})",
                        refusal_reason(error)
                    ),
                    None => format!(
                        "{what} is refused once retired (it still worked {}s after the revision \
                         changed)",
                        RETIRE_GRACE.as_secs()
                    ),
                },
            );
        }
        let consumer = status["consumers"].as_array().and_then(|consumers| {
            consumers
                .iter()
                .find(|consumer| consumer["name"] == CONSUMER)
        });
        let state = consumer.map_or("not listed", |consumer| text_or(&consumer["state"], "?"));
        self.checks.check(
            state == "RolledOut",
            format!("Deployment {CONSUMER} was restarted and has rolled out (status: {state})"),
        );
    }

    async fn prove_vault(&mut self, path: &str, login: &Login, published: &str, status: &Value) {
        let (code, metadata) = self
            .openbao
            .call(
                reqwest::Method::GET,
                &format!("{DEV_KV_MOUNT}/metadata/{path}"),
                None,
            )
            .await;
        let version = metadata["data"]["current_version"].as_u64();
        let kv = self.openbao.read_kv(DEV_KV_MOUNT, path).await;
        let kv_login = kv.as_ref().and_then(|data| {
            Some(Login {
                username: data["username"].as_str().map(str::to_owned),
                password: Hidden(data["password"].as_str()?.to_owned()),
            })
        });
        let kv_fingerprint = kv_login.as_ref().map(Login::fingerprint);
        let status_id = status["current"]["id"].as_str();
        let version_text =
            version.map_or_else(|| format!("unknown (HTTP {code})"), |v| v.to_string());
        self.checks.check(
            version.map(|version| version.to_string()).as_deref() == status_id,
            format!(
                "KV {DEV_KV_MOUNT}/{path} is at version {version_text}, the version status.current \
                 names ({})",
                status_id.unwrap_or("none")
            ),
        );
        self.checks.check(
            kv_fingerprint.as_deref() == Some(published),
            format!(
                "the latest KV version is what was published: fingerprint {} = {published} \
                 (username {} kept)",
                kv_fingerprint.as_deref().unwrap_or("none"),
                login.username()
            ),
        );
    }

    async fn prove_aws(&mut self, secret_id: &str, published: &str, status: &Value) {
        let current = self
            .moto
            .secret_value(secret_id, "AWSCURRENT")
            .await
            .map(Hidden);
        let current_fingerprint = current.as_ref().map(|value| fingerprint("", value));
        let stages = self.moto.version_stages(secret_id).await;
        let holder = |stage: &str| {
            stages
                .iter()
                .find(|(_, stages)| stages.iter().any(|held| held == stage))
                .map(|(id, _)| id.clone())
        };
        let current_version = holder("AWSCURRENT");
        let status_id = status["current"]["id"].as_str();
        self.checks.check(
            current_fingerprint.as_deref() == Some(published),
            format!(
                "AWSCURRENT is what was published: fingerprint {} = {published}",
                current_fingerprint.as_deref().unwrap_or("none")
            ),
        );
        self.checks.check(
            current_version.is_some() && current_version.as_deref() == status_id,
            format!(
                "AWSCURRENT is version {} (status.current.id {}); AWSPREVIOUS: {}; AWSPENDING: {}",
                current_version.as_deref().unwrap_or("none"),
                status_id.unwrap_or("none"),
                holder("AWSPREVIOUS").as_deref().unwrap_or("none"),
                holder("AWSPENDING")
                    .as_deref()
                    .unwrap_or("none (nothing left half-done)"),
            ),
        );
    }

    /// Runs the real kubectl against the cluster, as a user would. Informational: kubectl is
    /// the test tools' (scripts/lib/backends.sh installs it), not part of what is proven.
    async fn show_kubectl(&self) {
        let kubectl = kubectl();
        let run = tokio::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path())
            .args(["-n", &self.namespace, "get", "managedsecrets", "-o", "wide"])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        println!("$ kubectl -n {} get managedsecrets -o wide", self.namespace);
        match tokio::time::timeout(Duration::from_secs(30), run).await {
            Ok(Ok(output)) if output.status.success() => {
                for line in String::from_utf8_lossy(&output.stdout).lines() {
                    println!("  {line}");
                }
            }
            Ok(Ok(output)) => println!(
                "  (kubectl failed, {}: {})",
                output.status,
                shorten(String::from_utf8_lossy(&output.stderr).trim(), 300)
            ),
            Ok(Err(error)) => println!("  (cannot run {}: {error})", kubectl.display()),
            Err(_) => println!("  (kubectl did not answer within 30s)"),
        }
    }

    /// `kubectl keyturn status` and `who-can-read`, through kubectl's plugin discovery.
    async fn show_plugin(&mut self, operator_binary: &Path) {
        let plugin_dir = operator_binary.parent().unwrap_or(Path::new("."));
        if !plugin_dir.join("kubectl-keyturn").is_file() {
            self.checks.check(
                false,
                format!(
                    "kubectl-keyturn is built next to the operator in {} (cargo build -p kubectl-keyturn)",
                    plugin_dir.display()
                ),
            );
            return;
        }
        let path = std::env::join_paths(std::iter::once(plugin_dir.to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap_or_default();
        let namespace = self.namespace.clone();
        for args in [
            vec!["keyturn", "status"],
            vec!["keyturn", "who-can-read", POSTGRES_NAME],
        ] {
            println!("$ kubectl {}", args.join(" "));
            let run = tokio::process::Command::new(kubectl())
                .env("PATH", &path)
                .env("KUBECONFIG", self.cluster.kubeconfig_path())
                .env("NO_COLOR", "1")
                .args(&args)
                .args(["-n", &namespace])
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let output = match tokio::time::timeout(Duration::from_secs(30), run).await {
                Ok(Ok(output)) => output,
                Ok(Err(error)) => {
                    self.checks
                        .check(false, format!("run kubectl {}: {error}", args.join(" ")));
                    continue;
                }
                Err(_) => {
                    self.checks.check(
                        false,
                        format!("kubectl {} answers within 30s", args.join(" ")),
                    );
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            for line in text.lines() {
                println!("  {line}");
            }
            if !output.status.success() {
                self.checks.check(
                    false,
                    format!(
                        "kubectl {} succeeds: {}",
                        args.join(" "),
                        shorten(String::from_utf8_lossy(&output.stderr).trim(), 300)
                    ),
                );
                continue;
            }
            if args[1] == "status" {
                let ready = text
                    .lines()
                    .skip(1)
                    .filter(|line| line.split_whitespace().nth(2) == Some("True"))
                    .count();
                self.checks.check(
                    ready == self.tracked.len(),
                    format!(
                        "kubectl keyturn status shows all {} ManagedSecrets Ready",
                        self.tracked.len()
                    ),
                );
            } else {
                let account = format!("ServiceAccount/{namespace}/{CONSUMER}");
                self.checks.check(
                    text.lines().any(|line| {
                        line.starts_with(&account)
                            && line.contains(&format!("RoleBinding/{POSTGRES_NAME}-keyturn-read"))
                            && line.contains("managed")
                    }),
                    format!(
                        "only {account} reads {POSTGRES_SECRET}, through keyturn's RoleBinding"
                    ),
                );
            }
        }
    }

    /// Writes an evidence bundle for the namespace and checks it: the chain verifies, every
    /// file matches its manifest digest, and the PostgreSQL rotations are all there.
    async fn show_evidence(&mut self, operator_binary: &Path, audit_path: &Path, logs: &Path) {
        let plugin = operator_binary.with_file_name("kubectl-keyturn");
        let out = logs.join("evidence");
        let _ = std::fs::remove_dir_all(&out);
        let store = format!("sqlite:{}", audit_path.display());
        println!(
            "$ kubectl keyturn evidence -n {} --since 1d --store {store} --out {}",
            self.namespace,
            out.display()
        );
        let run = tokio::process::Command::new(&plugin)
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path())
            .args([
                "evidence",
                "-n",
                &self.namespace,
                "--since",
                "1d",
                "--store",
                &store,
                "--out",
            ])
            .arg(&out)
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(Duration::from_secs(60), run).await {
            Ok(Ok(output)) => output,
            other => {
                self.checks
                    .check(false, format!("kubectl keyturn evidence runs: {other:?}"));
                return;
            }
        };
        println!("  {}", String::from_utf8_lossy(&output.stdout).trim());
        let errors = String::from_utf8_lossy(&output.stderr);
        if !errors.trim().is_empty() {
            println!("  {}", shorten(errors.trim(), 600));
        }
        self.checks.check(
            output.status.success(),
            "the evidence bundle is written and its audit chain verifies",
        );
        let manifest = std::process::Command::new("sha256sum")
            .args(["-c", "--quiet", "MANIFEST.sha256"])
            .current_dir(&out)
            .output();
        self.checks.check(
            manifest.is_ok_and(|manifest| manifest.status.success()),
            "sha256sum -c MANIFEST.sha256: every file of the bundle matches its digest",
        );
        let rotations = std::fs::read_to_string(
            out.join(&self.namespace)
                .join(POSTGRES_NAME)
                .join("rotations.csv"),
        )
        .unwrap_or_default();
        let completed = rotations
            .lines()
            .filter(|line| line.contains(",Completed,"))
            .count();
        let revision = self
            .cluster
            .managed_secret_status(&self.namespace, POSTGRES_NAME)
            .await["revision"]
            .as_u64()
            .unwrap_or(0);
        for line in rotations.lines().take(4) {
            println!("  {line}");
        }
        self.checks.check(
            completed as u64 == revision && revision > 0,
            format!(
                "{POSTGRES_NAME}/rotations.csv lists {completed} completed rotations with due and actual times; status.revision is {revision}"
            ),
        );
        println!("  bundle kept in {}", out.display());
    }

    async fn show_events(&self) {
        let mut events = self.cluster.events(&self.namespace).await;
        // A real API server serves each event through both APIs, under the same name.
        let mut names = BTreeSet::new();
        events.retain(|event| names.insert(text_or(&event["metadata"]["name"], "").to_owned()));
        events.sort_by_key(event_time);
        let total = events.len();
        let shown = &events[total.saturating_sub(EVENTS_SHOWN)..];
        println!("{total} Events; the last {}:", shown.len());
        let mut rows = vec![vec![
            "TIME".to_owned(),
            "OBJECT".to_owned(),
            "TYPE".to_owned(),
            "REASON".to_owned(),
            "NOTE".to_owned(),
        ]];
        for event in shown {
            let object = if event["regarding"].is_object() {
                &event["regarding"]
            } else {
                &event["involvedObject"]
            };
            let note = if event["note"].is_string() {
                &event["note"]
            } else {
                &event["message"]
            };
            let count = event["series"]["count"]
                .as_u64()
                .or_else(|| event["count"].as_u64())
                .filter(|count| *count > 1)
                .map(|count| format!(" (x{count})"))
                .unwrap_or_default();
            rows.push(vec![
                clock(&Value::from(event_time(event))),
                text_or(&object["name"], "-").to_owned(),
                text_or(&event["type"], "-").to_owned(),
                format!("{}{count}", text_or(&event["reason"], "-")),
                shorten(text_or(note, ""), 90),
            ]);
        }
        print_table(&rows, "  ");
    }

    /// No credential value the demo saw (published passwords, the bootstrap and seed values, the
    /// PostgreSQL admin password, the OpenBao token) appears, plain or base64-encoded, in the
    /// operator's log, the Events, the ManagedSecrets or /metrics. Says where, never what.
    async fn check_no_leak(&mut self, operator: &OperatorProcess) {
        let mut places: Vec<(String, String)> =
            vec![("the operator log".to_owned(), operator.logs())];
        match operator.http_get("/metrics").await {
            Ok((_, body)) => places.push(("/metrics".to_owned(), body)),
            Err(error) => {
                self.checks.check(
                    false,
                    format!("/metrics can be read for the leak check: {error}"),
                );
            }
        }
        for event in self.cluster.events(&self.namespace).await {
            places.push((
                format!("Event {}", text_or(&event["metadata"]["name"], "?")),
                event.to_string(),
            ));
        }
        for object in self
            .cluster
            .list(&self.namespace, MANAGED_SECRETS, MANAGED_SECRET)
            .await
        {
            places.push((
                format!(
                    "ManagedSecret {}",
                    text_or(&object["metadata"]["name"], "?")
                ),
                object.to_string(),
            ));
        }
        let mut values = self.seen_values.clone();
        values.sort_by(|left, right| left.0.cmp(&right.0));
        values.dedup();
        let engine = base64::engine::general_purpose::STANDARD;
        let mut found = BTreeSet::new();
        for value in values.iter().filter(|value| value.0.len() >= 8) {
            let forms = [value.0.clone(), engine.encode(&value.0)];
            for (place, text) in &places {
                if forms.iter().any(|form| text.contains(form.as_str())) {
                    found.insert(place.clone());
                }
            }
        }
        self.checks.check(
            found.is_empty(),
            if found.is_empty() {
                format!(
                    "none of the {} credential values seen appears in the operator log, {} \
                     Events, the ManagedSecrets or /metrics",
                    values.len(),
                    places
                        .iter()
                        .filter(|(place, _)| place.starts_with("Event "))
                        .count()
                )
            } else {
                format!(
                    "a credential value appears in: {}",
                    found.into_iter().collect::<Vec<_>>().join(", ")
                )
            },
        );
    }

    async fn stop(&mut self, operator: &OperatorProcess) {
        let started = Instant::now();
        operator.terminate();
        let status = operator.wait_exit(Duration::from_secs(45)).await;
        let exited = match status {
            Some(status) => format!(
                "exited with {} after {:.1}s",
                status
                    .code()
                    .map_or_else(|| status.to_string(), |code| format!("exit code {code}")),
                started.elapsed().as_secs_f64()
            ),
            None => "did not exit within 45s".to_owned(),
        };
        let released_line = operator
            .logs()
            .lines()
            .rev()
            .find(|line| line.contains("released the leader lease"))
            .map(str::to_owned);
        if let Some(line) = &released_line {
            println!("  operator log: {}", line.trim());
        }
        let lease = self
            .cluster
            .get(
                &self.namespace,
                "coordination.k8s.io/v1",
                "Lease",
                LEASE_NAME,
            )
            .await;
        let holder = lease.as_ref().map(|lease| {
            lease["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        });
        self.checks.check(
            released_line.is_some() && holder.as_deref().is_some_and(str::is_empty),
            format!(
                "it released Lease {LEASE_NAME} (holderIdentity now {}), so a standby could take \
                 over at once",
                match holder.as_deref() {
                    Some("") => "empty".to_owned(),
                    Some(holder) => holder.to_owned(),
                    None => "(no Lease)".to_owned(),
                }
            ),
        );
        if status.is_none() {
            operator.kill();
        }
        self.checks.check(
            status.is_some_and(|status| status.success()),
            format!("it {exited}"),
        );
    }

    /// Prints the records of one rotation of the PostgreSQL ManagedSecret and verifies the whole
    /// chain. Opened after the operator exited: nothing writes while the chain is read.
    async fn show_audit(&mut self, path: &Path) -> anyhow::Result<()> {
        println!(
            "SQLite audit store {} (the operator's --audit-store)",
            path.display()
        );
        // open_sqlite also applies the schema, which is already there: nothing is written.
        let store = AuditStore::open_sqlite(path)
            .await
            .context("open the audit store")?;
        let records = store
            .read_range(1, 1_000_000)
            .await
            .context("read the audit records")?;
        let ours: Vec<&AuditRecord> = records
            .iter()
            .filter(|record| {
                record.namespace == self.namespace && record.managed_secret == POSTGRES_NAME
            })
            .collect();
        // The last rotation that completed, a scheduled one when there was one.
        let completed: Vec<&str> = ours
            .iter()
            .filter(|record| record.action == "RotationCompleted")
            .filter_map(|record| record.rotation_id.as_deref())
            .collect();
        let Some(rotation_id) = completed.last().copied() else {
            store.close().await;
            bail!("no completed rotation of {POSTGRES_NAME} in the audit store");
        };
        println!(
            "{} records in all, {} of them about {POSTGRES_NAME}; those of its rotation \
             {rotation_id} ({} of {} completed):",
            records.len(),
            ours.len(),
            completed.len(),
            completed.len()
        );
        let mut rows = vec![vec![
            "SEQ".to_owned(),
            "TIME".to_owned(),
            "ACTION".to_owned(),
            "STEP".to_owned(),
            "OUTCOME".to_owned(),
            "FINGERPRINT".to_owned(),
            "DETAILS".to_owned(),
        ]];
        let mut published = None;
        for record in ours
            .iter()
            .filter(|record| record.rotation_id.as_deref() == Some(rotation_id))
        {
            if record.action == "CredentialPublished" {
                published = record.fingerprint.clone();
            }
            rows.push(vec![
                record.sequence.to_string(),
                record.time.format("%H:%M:%S").to_string(),
                record.action.clone(),
                record.step.clone().unwrap_or_else(|| "-".to_owned()),
                record.outcome.clone(),
                record.fingerprint.clone().unwrap_or_else(|| "-".to_owned()),
                shorten(&record.details, 100),
            ]);
        }
        print_table(&rows, "  ");
        let seen: BTreeSet<&String> = self
            .tracked
            .iter()
            .filter(|tracked| tracked.name == POSTGRES_NAME)
            .flat_map(|tracked| tracked.fingerprints.values())
            .collect();
        self.checks.check(
            published
                .as_ref()
                .is_some_and(|fingerprint| seen.contains(fingerprint)),
            format!(
                "the published fingerprint it records ({}) is one this demo computed from Secret \
                 {POSTGRES_SECRET}",
                published.as_deref().unwrap_or("none")
            ),
        );
        // Each rotation should complete once; say so when the log records one twice (a step run
        // again is harmless, every step is idempotent, but the trail then tells it twice).
        let mut completions: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        for record in records
            .iter()
            .filter(|record| record.action == "RotationCompleted")
        {
            if let Some(rotation_id) = record.rotation_id.as_deref() {
                *completions
                    .entry((record.managed_secret.as_str(), rotation_id))
                    .or_default() += 1;
            }
        }
        let repeated: Vec<String> = completions
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|((name, rotation_id), count)| format!("{name} {rotation_id} ({count}x)"))
            .collect();
        if !repeated.is_empty() {
            println!(
                "  note: {} of {} rotations are recorded as completed more than once: {}",
                repeated.len(),
                completions.len(),
                repeated.join(", ")
            );
        }
        let verification = store
            .verify(&[])
            .await
            .context("read the chain to verify it")?;
        store.close().await;
        match verification {
            Ok(summary) => {
                let head = summary.head.map_or_else(
                    || "none".to_owned(),
                    |head| format!("#{} {}…", head.sequence, &hex::encode(head.hash)[..16]),
                );
                self.checks.check(
                    summary.records == records.len() as u64,
                    format!(
                        "hash chain verified: {} records, every hash and link recomputed; head \
                         {head}",
                        summary.records
                    ),
                );
            }
            Err(error) => {
                self.checks
                    .check(false, format!("hash chain verification: {error}"));
            }
        }
        Ok(())
    }

    fn summary(&self, duration: Duration) -> bool {
        section("Summary");
        let expected = expected_revisions(duration);
        let mut rows = vec![vec![
            "MANAGEDSECRET".to_owned(),
            "REVISIONS SEEN".to_owned(),
            "ROTATIONS".to_owned(),
            "EXPECTED".to_owned(),
        ]];
        let mut enough = true;
        for tracked in &self.tracked {
            let wanted = expected.get(tracked);
            enough &= tracked.last_revision >= wanted;
            rows.push(vec![
                tracked.name.to_owned(),
                format!("{:?}", tracked.revisions),
                format!(
                    "{} (first issuance + {})",
                    tracked.revisions.len(),
                    tracked.revisions.len().saturating_sub(1)
                ),
                format!("revision >= {wanted}"),
            ]);
        }
        print_table(&rows, "  ");
        let mut failed = self.checks.failed.clone();
        if !enough {
            failed.push("fewer rotations than expected (see the table above)".to_owned());
        }
        if self.manual_request.is_some() && self.manual_revision.is_none() {
            failed.push(format!(
                "the rotation of {AWS_NAME} requested through {ROTATE_REQUEST_ANNOTATION} did not \
                 happen"
            ));
        }
        println!(
            "\n  checks passed: {}, failed: {}",
            self.checks.passed,
            failed.len()
        );
        for failure in &failed {
            println!("    FAILED: {failure}");
        }
        failed.is_empty()
    }
}

impl Tracked {
    fn new(
        name: &'static str,
        published_secret: &'static str,
        initial_login: Option<Login>,
        backend: Backend,
    ) -> Tracked {
        Tracked {
            name,
            published_secret,
            backend,
            revisions: Vec::new(),
            last_revision: 0,
            last_login: initial_login,
            fingerprints: BTreeMap::new(),
            last_failure: None,
        }
    }

    fn advance(&mut self, revision: u64, login: Option<Login>) {
        self.revisions.push(revision);
        self.last_revision = revision;
        if login.is_some() {
            self.last_login = login;
        }
    }
}

/// The revision each ManagedSecret should reach in `duration`: the first issuance, one scheduled
/// rotation per minute after it (allowing half a minute for start-up and the rollouts), and the
/// manual one for the AWS secret.
struct Expected {
    scheduled: u64,
    manual: bool,
}

fn expected_revisions(duration: Duration) -> Expected {
    Expected {
        scheduled: duration.as_secs().saturating_sub(30) / 60,
        manual: duration > MANUAL_REQUEST_AFTER,
    }
}

impl Expected {
    fn get(&self, tracked: &Tracked) -> u64 {
        let manual = u64::from(self.manual && tracked.name == AWS_NAME);
        1 + self.scheduled + manual
    }
}

/// The rows of the status table, like `kubectl get managedsecrets -o wide` with the revision and
/// the step in flight.
fn status_table(tracked: &[Tracked], objects: &BTreeMap<String, Value>) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "NAME",
            "ROTATOR",
            "READY",
            "REVISION",
            "STEP",
            "LAST ROTATED",
            "NEXT ROTATION",
            "EXPIRES",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for tracked in tracked {
        let status = objects
            .get(tracked.name)
            .map_or(&Value::Null, |object| &object["status"]);
        let ready =
            condition(status, "Ready").map_or("-", |condition| text_or(&condition["status"], "-"));
        let mut step = text_or(&status["inFlight"]["step"], "-").to_owned();
        if condition(status, "Degraded").is_some_and(|condition| condition["status"] == "True") {
            step.push_str(" (retrying)");
        }
        rows.push(vec![
            tracked.name.to_owned(),
            text_or(&status["rotator"], "-").to_owned(),
            ready.to_owned(),
            status["revision"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |revision| revision.to_string()),
            step,
            clock(&status["lastRotationTime"]),
            clock(&status["nextRotationTime"]),
            clock(&status["expiresAt"]),
        ]);
    }
    rows
}

/// An Event's time, for sorting and showing: the series' last time, else its own.
fn event_time(event: &Value) -> String {
    [
        &event["series"]["lastObservedTime"],
        &event["eventTime"],
        &event["lastTimestamp"],
        &event["deprecatedLastTimestamp"],
        &event["metadata"]["creationTimestamp"],
    ]
    .into_iter()
    .find_map(|time| time.as_str())
    .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
    .map(|time| {
        time.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    })
    .unwrap_or_default()
}

/// kubectl: `$KEYTURN_KUBECTL` (scripts/lib/backends.sh sets it to the test venv's), else the
/// one on PATH.
fn kubectl() -> PathBuf {
    std::env::var_os("KEYTURN_KUBECTL")
        .filter(|path| !path.is_empty())
        .map_or_else(|| PathBuf::from("kubectl"), PathBuf::from)
}

/// The operator's own account of what it did: the counters a dashboard would show.
async fn show_metrics(operator: &OperatorProcess) {
    match operator.http_get("/metrics").await {
        Ok((200, body)) => {
            let shown: Vec<&str> = body
                .lines()
                .filter(|line| {
                    [
                        "keyturn_rotations_total{",
                        "keyturn_consumer_restarts_total{",
                        "keyturn_audit_records_total",
                        "keyturn_leader",
                    ]
                    .iter()
                    .any(|prefix| line.starts_with(prefix))
                })
                .collect();
            println!("GET http://{}/metrics (excerpt):", operator.http_address());
            for line in shown {
                println!("  {line}");
            }
        }
        Ok((status, _)) => println!("/metrics answered {status}"),
        Err(error) => println!("/metrics: {error}"),
    }
}

/// Why PostgreSQL refused a login, without the connection details.
fn refusal_reason(error: &str) -> &'static str {
    if error.contains("password authentication failed") {
        "password authentication failed"
    } else if error.contains("not permitted to log in") {
        "role is not permitted to log in"
    } else if error.contains("timed out") {
        "timed out"
    } else {
        "login failed"
    }
}

// ---------------------------------------------------------------------------------------------
// The consumer's rollout

/// The Deployment controller's part, which the stand-in does not play: when the pod template
/// changes (keyturn's restart annotation), report the new generation rolled out a moment later.
async fn play_deployment_controller(cluster: Cluster, namespace: String) {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), &namespace);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(Some(deployment)) = deployments.get_opt(CONSUMER).await else {
            continue;
        };
        let generation = deployment.metadata.generation.unwrap_or(1);
        let observed = deployment
            .status
            .as_ref()
            .and_then(|status| status.observed_generation)
            .unwrap_or(0);
        if observed >= generation {
            continue;
        }
        let tokens = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.template.metadata.as_ref())
            .and_then(|metadata| metadata.annotations.as_ref())
            .and_then(|annotations| annotations.get(RESTARTED_FOR_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        tokio::time::sleep(ROLLOUT_TIME).await;
        match mark_rolled_out(&cluster, &namespace).await {
            Ok(generation) => println!(
                "      (Deployment {CONSUMER}: pods replaced for {RESTARTED_FOR_ANNOTATION}={}; \
                 generation {generation} rolled out)",
                shorten(&tokens, 60)
            ),
            Err(error) => {
                println!("      (Deployment {CONSUMER}: could not write its status: {error:#})")
            }
        }
    }
}

/// Writes a rolled-out status for the consumer's current generation, through /status as the
/// Deployment controller does; returns that generation.
async fn mark_rolled_out(cluster: &Cluster, namespace: &str) -> anyhow::Result<i64> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), namespace);
    let deployment = deployments
        .get(CONSUMER)
        .await
        .with_context(|| format!("get Deployment {CONSUMER}"))?;
    let generation = deployment.metadata.generation.unwrap_or(1);
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let status = json!({"status": {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "lastUpdateTime": now, "lastTransitionTime": now},
        ],
    }});
    deployments
        .patch_status(CONSUMER, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("write the status of Deployment {CONSUMER}"))?;
    Ok(generation)
}

/// Copies the operator's log and audit database where they outlive the run (the namespace's
/// working directory is removed when the demo ends).
fn keep_files(directory: &Path, log: &Path, audit: &Path) {
    if let Err(error) = std::fs::create_dir_all(directory) {
        println!("\n  could not create {}: {error}", directory.display());
        return;
    }
    let mut kept = Vec::new();
    let audit_name = audit
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    let mut sources = vec![(log.to_path_buf(), "operator.log".to_owned())];
    if let Some(audit_name) = audit_name {
        for suffix in ["", "-wal", "-shm"] {
            let source = audit.with_file_name(format!("{audit_name}{suffix}"));
            if source.exists() {
                sources.push((source, format!("audit.db{suffix}")));
            } else {
                // A stale file from an earlier run would not match this database.
                let _ = std::fs::remove_file(directory.join(format!("audit.db{suffix}")));
            }
        }
    }
    for (source, name) in sources {
        let destination = directory.join(&name);
        match std::fs::copy(&source, &destination) {
            Ok(_) => kept.push(name),
            Err(error) => println!("\n  could not keep {}: {error}", source.display()),
        }
    }
    println!("\n  kept in {}: {}", directory.display(), kept.join(", "));
}
