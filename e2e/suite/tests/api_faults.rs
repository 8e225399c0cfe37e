//! Kubernetes API trouble the operator must ride out: 409 Conflict on its status writes, 500 on
//! its Secret writes, 429 with Retry-After, added latency, dropped watches, and a compacted
//! history that answers a re-watch with 410 Gone. After each, a requested rotation completes
//! exactly once (revision + 1, never skipped, one "rotation completed"), the published password
//! logs in and the previous one is refused, the operator is still running and healthy, and
//! `/metrics` counts the API failures it saw.
//!
//! Only the in-process stand-in can inject faults and drop or compact watches: against a real
//! cluster (`E2E_KUBECONFIG`) both tests print `SKIPPED:` and pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use keyturn_e2e::postgres::{ADMIN_SECRET, LoginRole, Postgres, PostgresManagedSecret, Strategy};
use keyturn_e2e::{
    Cluster, Fault, OperatorProcess, RecordedRequest, StandIn, TestNamespace, wait_for,
};
use serde_json::{Value, json};

const API_VERSION: &str = "keyturn.dev/v1alpha1";
const KIND: &str = "ManagedSecret";
const NAME: &str = "orders";
/// A rotation held up by injected failures waits out the step backoff (10 s, then 20 s) and the
/// reconcile backoff; the rest is room for a loaded 2-core machine.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(180);
/// After a rotation completed: long enough for a second, unwanted one to show up (the operator
/// runs a whole rotation in well under a second) without slowing the suite much.
const AFTERWARDS: Duration = Duration::from_secs(5);

/// One operator and one PostgreSQL ManagedSecret at revision 1, on the stand-in.
struct Setup {
    cluster: Cluster,
    namespace: TestNamespace,
    postgres: Postgres,
    role: LoginRole,
    manifest: PostgresManagedSecret,
    operator: OperatorProcess,
    /// Every `status.revision` observed so far, to show that none was skipped.
    revisions: BTreeSet<u64>,
}

impl Setup {
    /// `None` (after a `SKIPPED:` notice) without PostgreSQL or on a real cluster.
    async fn start(prefix: &str, strategy: Strategy) -> Option<Setup> {
        let postgres = Postgres::from_env()?;
        let cluster = Cluster::start().await;
        cluster.standin_or_skip("injecting API faults and dropping or compacting watches")?;
        let namespace = cluster.namespace(prefix).await;
        let ns = namespace.name().to_owned();
        let role = postgres.create_login_role().await;
        postgres.install_admin_secret(&cluster, &ns).await;
        // Hourly with a day's lifetime: no scheduled rotation can mix with the requested ones.
        let manifest = postgres
            .managed_secret(NAME, &role.name)
            .strategy(strategy)
            .every("1h")
            .ttl(Some("24h"));
        let operator = OperatorProcess::builder(&cluster, &namespace)
            .identity("faulted")
            .spawn();
        operator.wait_ready().await;
        cluster.apply_yaml(&ns, &manifest.to_yaml()).await;
        let mut setup = Setup {
            cluster,
            namespace,
            postgres,
            role,
            manifest,
            operator,
            revisions: BTreeSet::new(),
        };
        setup.settled_at(1, None).await;
        Some(setup)
    }

    fn ns(&self) -> &str {
        self.namespace.name()
    }

    fn standin(&self) -> &StandIn {
        self.cluster.standin().expect("checked in start")
    }

    async fn status(&self) -> Value {
        self.cluster
            .get(self.ns(), API_VERSION, KIND, NAME)
            .await
            .map(|object| object["status"].clone())
            .unwrap_or(Value::Null)
    }

    /// Waits until the rotation for `request` (or the first issuance) has completed, noting every
    /// revision seen on the way, and returns the status.
    async fn settled_at(&mut self, revision: u64, request: Option<&str>) -> Value {
        let description = format!("{NAME} at revision {revision} after request {request:?}");
        let status = wait_for(&description, ROTATION_TIMEOUT, async || {
            let status = self.status().await;
            if let Some(seen) = status["revision"].as_u64() {
                self.revisions.insert(seen);
            }
            let handled = request.is_none_or(|request| status["handledRotateRequest"] == request);
            if handled
                && status["revision"].as_u64() >= Some(revision)
                && status["inFlight"].is_null()
            {
                Ok(status)
            } else {
                Err(status)
            }
        })
        .await;
        assert_eq!(
            status["revision"].as_u64(),
            Some(revision),
            "exactly one rotation per request: {status:#}"
        );
        status
    }

    /// Sets `keyturn.dev/rotate-requested-at` to `value`: one rotation now.
    async fn request_rotation(&self, value: &str) {
        let patch =
            json!({"metadata": {"annotations": {"keyturn.dev/rotate-requested-at": value}}});
        self.cluster
            .merge_patch(self.ns(), API_VERSION, KIND, NAME, &patch)
            .await;
    }

    async fn published(&self) -> std::collections::BTreeMap<String, String> {
        self.cluster
            .read_secret(self.ns(), self.manifest.published_secret_name())
            .await
            .expect("the published Secret exists")
    }

    /// How many rotations of the ManagedSecret the operator logged as completed.
    fn completed_rotations(&self) -> usize {
        let object = format!("\"managed_secret\":\"{}/{NAME}\"", self.ns());
        self.operator
            .logs()
            .lines()
            .filter(|line| line.contains("\"rotation completed\"") && line.contains(&object))
            .count()
    }

    /// The published credential works and `previous` no longer does.
    async fn assert_rotated_away_from(
        &self,
        previous: &std::collections::BTreeMap<String, String>,
    ) {
        let current = self.published().await;
        assert_ne!(
            current["password"], previous["password"],
            "a new password is published"
        );
        self.postgres
            .pg_select(&current["username"], &current["password"], &self.role.table)
            .await
            .unwrap_or_else(|error| panic!("the published credential must work: {error}"));
        assert!(
            self.postgres
                .pg_login(&previous["username"], &previous["password"])
                .await
                .is_err(),
            "the previous credential ({}) is refused once the rotation completed",
            previous["username"]
        );
    }

    /// Nothing more happens to the revision once a rotation is done, and the operator is fine.
    async fn assert_quiet_and_healthy(&mut self, revision: u64, rotations: usize) {
        tokio::time::sleep(AFTERWARDS).await;
        let status = self.status().await;
        if let Some(seen) = status["revision"].as_u64() {
            self.revisions.insert(seen);
        }
        assert_eq!(
            status["revision"].as_u64(),
            Some(revision),
            "no further rotation: {status:#}"
        );
        // Revision 0 shows while the first credential is being issued; from 1 on, every value
        // must have been seen on the way up: a skipped one would be a double rotation.
        assert_eq!(
            self.revisions
                .range(1..)
                .copied()
                .collect::<BTreeSet<u64>>(),
            (1..=revision).collect::<BTreeSet<u64>>(),
            "status.revision went up one at a time"
        );
        assert_eq!(
            self.completed_rotations(),
            rotations,
            "one completed rotation per revision in the operator's log"
        );
        assert!(
            self.operator.exit_status().is_none(),
            "the operator is still running\n{}",
            self.operator.log_tail(40)
        );
        assert!(
            matches!(self.operator.http_get("/healthz").await, Ok((200, _))),
            "/healthz answers 200"
        );
    }
}

/// The value of the counter sample `name{labels}` in Prometheus text, 0 when absent.
fn counter(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many `method` requests to exactly `path` were answered with `status`.
fn answered(requests: &[RecordedRequest], method: &str, path: &str, status: u16) -> usize {
    requests
        .iter()
        .filter(|request| {
            request.method == method && request.path == path && request.status == status
        })
        .count()
}

#[tokio::test]
async fn a_rotation_completes_once_through_conflicts_errors_throttling_and_latency() {
    let Some(mut setup) = Setup::start("api-faults", Strategy::SingleUser).await else {
        return;
    };
    let ns = setup.ns().to_owned();
    let before = setup.published().await;
    let standin = setup.standin();
    standin.clear_requests();

    let status_path =
        format!("/apis/keyturn.dev/v1alpha1/namespaces/{ns}/managedsecrets/{NAME}/status");
    let secrets = format!("/api/v1/namespaces/{ns}/secrets");
    let staging_path = format!("{secrets}/{NAME}-keyturn-staging");
    let published_path = format!("{secrets}/{}", setup.manifest.published_secret_name());
    let admin_path = format!("{secrets}/{ADMIN_SECRET}");
    // Rules match `path?query` in the order added, the first match wins, and a counted rule goes
    // once used up: the 409s and 500s come first, latency after them.
    standin.add_fault(
        Fault::new(format!("^{}(\\?|$)", regex_escape(&status_path)))
            .method("PATCH")
            .status(409)
            .times(2),
    );
    standin.add_fault(
        Fault::new(format!(
            "^({}|{})(\\?|$)",
            regex_escape(&staging_path),
            regex_escape(&published_path)
        ))
        .method("PATCH")
        .status(500)
        .times(2),
    );
    // kube's client retries 429 itself, honouring Retry-After: the operator sees a slow read.
    standin.add_fault(
        Fault::new(format!("^{}(\\?|$)", regex_escape(&admin_path)))
            .method("GET")
            .status(429)
            .retry_after(1)
            .times(3),
    );
    standin.add_fault(
        Fault::new(format!("^{}/", regex_escape(&secrets)))
            .method("GET")
            .latency(Duration::from_millis(300))
            .times(8),
    );
    standin.add_fault(
        Fault::new(format!("^{}(\\?|$)", regex_escape(&status_path)))
            .method("PATCH")
            .latency(Duration::from_millis(300))
            .times(3),
    );

    setup.request_rotation("through-faults").await;
    let status = setup.settled_at(2, Some("through-faults")).await;
    assert_eq!(
        status["failedAttempts"].as_u64().unwrap_or(0),
        0,
        "{status:#}"
    );

    // Every injected failure was met (so the rotation really went through them).
    let requests = setup.standin().requests();
    assert_eq!(
        answered(&requests, "PATCH", &status_path, 409),
        2,
        "both 409s on the status were served: {requests:#?}"
    );
    assert_eq!(
        answered(&requests, "PATCH", &staging_path, 500)
            + answered(&requests, "PATCH", &published_path, 500),
        2,
        "both 500s on the Secrets were served: {requests:#?}"
    );
    assert!(
        answered(&requests, "GET", &admin_path, 429) >= 1,
        "the admin Secret read was throttled: {requests:#?}"
    );

    setup.assert_rotated_away_from(&before).await;
    let after = setup.published().await;
    assert_eq!(
        after["username"], before["username"],
        "SingleUser keeps the role and changes its password"
    );
    setup.assert_quiet_and_healthy(2, 2).await;

    let metrics = setup.operator.metrics().await;
    let conflicts = counter(
        &metrics,
        "keyturn_reconcile_errors_total",
        "category=\"Conflict\"",
    );
    assert!(
        conflicts >= 2.0,
        "each 409 on the status write ended a reconcile with a Conflict: {conflicts}\n{metrics}"
    );
    // The 500s on the Secret writes are step failures, not reconcile errors: the lifecycle
    // retries them with its own backoff and counts them by category.
    let unreachable = counter(
        &metrics,
        "keyturn_rotation_failures_total",
        "category=\"Unreachable\"",
    );
    assert!(
        unreachable >= 2.0,
        "each 500 on a Secret write failed a step: {unreachable}\n{metrics}"
    );
    assert!(
        counter(&metrics, "keyturn_rotations_total", "outcome=\"completed\"") >= 2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn rotations_complete_after_dropped_watches_and_a_compacted_history() {
    let Some(mut setup) = Setup::start("watch-faults", Strategy::AlternatingUsers).await else {
        return;
    };
    let ns = setup.ns().to_owned();
    let collection = format!("/apis/keyturn.dev/v1alpha1/namespaces/{ns}/managedsecrets");

    // Dropped watches: the operator watches again from where it was and sees the request.
    let first = setup.published().await;
    let dropped = setup.standin().drop_watches();
    assert!(dropped > 0, "the operator had watches open");
    setup.request_rotation("after-dropped-watches").await;
    setup.settled_at(2, Some("after-dropped-watches")).await;
    setup.assert_rotated_away_from(&first).await;

    // A compacted history: a re-watch from a resourceVersion older than the compaction gets 410
    // Gone, and the watcher must list again. A write just before compacting makes the operator's
    // last-seen resourceVersion older than the compaction point, unless a bookmark slipped in
    // between (then it is tried again).
    let second = setup.published().await;
    let mut expired = None;
    for attempt in 0..5 {
        let marker = setup
            .cluster
            .apply(
                &ns,
                &json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "compaction-marker"},
                    "data": {"attempt": attempt.to_string()},
                }),
            )
            .await;
        let written: u64 = marker["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|text| text.parse().ok())
            .expect("a numeric resourceVersion");
        let standin = setup.standin();
        let mark = standin.requests().len();
        standin.compact();
        standin.drop_watches();
        let rewatch = wait_for(
            "the operator to watch ManagedSecrets again",
            Duration::from_secs(60),
            async || {
                setup.standin().requests()[mark..]
                    .iter()
                    .find(|request| request.path == collection && request.is_watch())
                    .cloned()
            },
        )
        .await;
        if resource_version(&rewatch).is_some_and(|from| from < written) {
            println!(
                "compaction attempt {attempt}: the operator re-watched from {:?}, older than the \
                 compaction (the marker was written at {written}): 410 Gone",
                resource_version(&rewatch)
            );
            expired = Some(mark);
            break;
        }
    }
    let mark = expired.expect("a re-watch from before the compaction (410 Gone) in five tries");
    // After the 410 the watcher lists the collection again (a GET that is not a watch).
    wait_for(
        "the operator to list ManagedSecrets again after 410 Gone",
        Duration::from_secs(60),
        async || {
            setup.standin().requests()[mark..]
                .iter()
                .any(|request| {
                    request.path == collection && request.method == "GET" && !request.is_watch()
                })
                .then_some(())
        },
    )
    .await;
    setup.request_rotation("after-compaction").await;
    setup.settled_at(3, Some("after-compaction")).await;
    setup.assert_rotated_away_from(&second).await;
    setup.assert_quiet_and_healthy(3, 3).await;
}

/// The `resourceVersion` a (watch) request asked for.
fn resource_version(request: &RecordedRequest) -> Option<u64> {
    request
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("resourceVersion="))
        .and_then(|value| value.parse().ok())
}

/// `text` with the regex metacharacters escaped, to match a path literally (`keyturn.dev`).
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
