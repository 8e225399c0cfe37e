//! Checks of the e2e harness itself, without the controller: cluster and namespaces, objects by
//! apiVersion and kind, waits and their failure messages, process plumbing (with a stand-in script
//! and the real binary's one-shot commands), backend helpers, stand-in faults and the canary check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keyturn_e2e::aws::Moto;
use keyturn_e2e::openbao::OpenBao;
use keyturn_e2e::postgres::{ADMIN_SECRET, Postgres, Strategy};
use keyturn_e2e::{
    Cluster, Fault, OperatorProcess, TestNamespace, assert_no_canary, parse_yaml_documents,
    random_suffix, spawn_raw, wait_for, wait_until, workspace_root,
};
use keyturn_testenv::{AwsEnv, OpenBaoEnv, PostgresEnv};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CANARY: &str = "E2eCanaryPw0rd4d1bDoNotLeak";

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The panic message of a future that is expected to panic. A local task, because the harness's
/// waits are not `Send`.
async fn panic_message<F>(future: F) -> String
where
    F: Future<Output = ()> + 'static,
{
    let error = tokio::task::LocalSet::new()
        .run_until(async { tokio::task::spawn_local(future).await })
        .await
        .expect_err("the future was expected to panic");
    let payload = error.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
        })
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Cluster, namespaces and objects

#[tokio::test]
async fn cluster_and_fresh_namespaces() {
    let cluster = Cluster::start().await;
    assert_eq!(
        cluster.is_standin(),
        std::env::var("E2E_KUBECONFIG").map_or(true, |value| value.trim().is_empty())
    );
    assert_eq!(cluster.standin().is_some(), cluster.is_standin());
    assert!(cluster.kubeconfig_path().is_file());

    let first = cluster.namespace("harness-Check_1").await;
    let second = cluster.namespace("harness-Check_1").await;
    for namespace in [&first, &second] {
        assert!(is_dns_label(namespace.name()), "{namespace}");
        assert!(
            namespace.name().starts_with("harness-check-1-"),
            "{namespace}"
        );
        assert!(namespace.work_dir().is_dir());
        let object = cluster
            .get("", "v1", "Namespace", namespace.name())
            .await
            .expect("the namespace exists");
        assert_eq!(object["metadata"]["labels"]["keyturn.dev/e2e"], "true");
    }
    assert_ne!(first.name(), second.name());
}

#[tokio::test]
async fn apply_get_list_patch_delete() {
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("objects").await;
    let namespace_name = namespace.name();
    let example = std::fs::read_to_string(workspace_root().join("examples/postgres-orders.yaml"))
        .expect("read examples/postgres-orders.yaml");
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n---\n{example}"
    );

    let applied = cluster.apply_yaml(namespace_name, &yaml).await;
    assert_eq!(applied.len(), 2);
    // The example says `namespace: payments`; the harness puts it in the test's namespace.
    assert_eq!(applied[1]["metadata"]["namespace"], namespace_name);
    assert!(
        applied[1]["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|fields| fields.iter().any(|entry| entry["manager"] == "e2e")),
        "{}",
        applied[1]["metadata"]
    );

    let config_map = cluster
        .get(namespace_name, "v1", "ConfigMap", "settings")
        .await
        .unwrap();
    assert_eq!(config_map["data"]["mode"], "fast");
    assert_eq!(config_map["kind"], "ConfigMap");
    let managed_secret = cluster
        .get(
            namespace_name,
            "keyturn.dev/v1alpha1",
            "ManagedSecret",
            "orders-db",
        )
        .await
        .unwrap();
    assert_eq!(
        managed_secret["spec"]["rotator"]["postgres"]["role"],
        "orders_app"
    );
    assert!(
        cluster
            .get(
                namespace_name,
                "keyturn.dev/v1alpha1",
                "ManagedSecret",
                "absent"
            )
            .await
            .is_none()
    );

    let listed = cluster
        .list(namespace_name, "keyturn.dev/v1alpha1", "ManagedSecret")
        .await;
    let names: Vec<&str> = listed
        .iter()
        .filter_map(|object| object["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["orders-db"]);
    assert_eq!(listed[0]["apiVersion"], "keyturn.dev/v1alpha1");

    let patched = cluster
        .merge_patch(
            namespace_name,
            "keyturn.dev/v1alpha1",
            "ManagedSecret",
            "orders-db",
            &json!({"metadata": {"labels": {"team": "payments"}}, "spec": {"rotation": {"paused": true}}}),
        )
        .await;
    assert_eq!(patched["metadata"]["labels"]["team"], "payments");
    assert_eq!(patched["spec"]["rotation"]["paused"], true);
    assert_eq!(patched["spec"]["rotation"]["every"], "720h");

    // Re-applying changes what the test declares (conflicts are forced).
    let changed = example.replace("every: 720h", "every: 360h");
    cluster.apply_yaml(namespace_name, &changed).await;
    let managed_secret = cluster
        .get(
            namespace_name,
            "keyturn.dev/v1alpha1",
            "ManagedSecret",
            "orders-db",
        )
        .await
        .unwrap();
    assert_eq!(managed_secret["spec"]["rotation"]["every"], "360h");

    assert!(
        cluster
            .delete(namespace_name, "v1", "ConfigMap", "settings")
            .await
    );
    assert!(
        cluster
            .delete(
                namespace_name,
                "keyturn.dev/v1alpha1",
                "ManagedSecret",
                "orders-db"
            )
            .await
    );
    // Deletion may take a moment on a real cluster.
    wait_for(
        "both objects to be gone",
        Duration::from_secs(30),
        async || {
            let config_map = cluster
                .get(namespace_name, "v1", "ConfigMap", "settings")
                .await;
            let managed_secret = cluster
                .get(
                    namespace_name,
                    "keyturn.dev/v1alpha1",
                    "ManagedSecret",
                    "orders-db",
                )
                .await;
            (config_map.is_none() && managed_secret.is_none()).then_some(())
        },
    )
    .await;
    assert!(
        !cluster
            .delete(namespace_name, "v1", "ConfigMap", "settings")
            .await
    );
}

#[tokio::test]
async fn secrets_are_decoded_and_events_of_both_apis_are_listed() {
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("secrets-events").await;
    let namespace_name = namespace.name();
    cluster
        .apply_yaml(
            namespace_name,
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: login\ntype: Opaque\ndata:\n  username: YXBw\n  password: czNjcjN0\n",
        )
        .await;
    assert_eq!(
        cluster.read_secret(namespace_name, "login").await,
        Some(BTreeMap::from([
            ("password".to_owned(), "s3cr3t".to_owned()),
            ("username".to_owned(), "app".to_owned()),
        ]))
    );
    assert_eq!(cluster.read_secret(namespace_name, "absent").await, None);

    let message = format!("harness event {}", random_suffix(6));
    cluster
        .apply(
            namespace_name,
            &json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "harness.1"},
                "involvedObject": {"apiVersion": "v1", "kind": "Secret", "name": "login", "namespace": namespace_name},
                "reason": "Checked",
                "message": message,
                "type": "Normal",
                "source": {"component": "e2e"},
                "firstTimestamp": "2026-01-01T00:00:00Z",
                "lastTimestamp": "2026-01-01T00:00:00Z",
                "count": 1,
            }),
        )
        .await;
    let events = wait_for(
        "the event to be listed",
        Duration::from_secs(30),
        async || {
            let events = cluster.events(namespace_name).await;
            events
                .iter()
                .any(|event| event.to_string().contains(&message))
                .then_some(events)
        },
    )
    .await;
    assert!(
        events
            .iter()
            .all(|event| event["apiVersion"] == "v1" || event["apiVersion"] == "events.k8s.io/v1")
    );
}

// ---------------------------------------------------------------------------------------------
// Waiting

#[tokio::test]
async fn wait_for_returns_the_first_value_and_wait_until_the_accepted_observation() {
    let started = Instant::now();
    let mut calls = 0;
    let value = wait_for("the third call", Duration::from_secs(10), async || {
        calls += 1;
        (calls == 3).then_some(calls * 10)
    })
    .await;
    assert_eq!(value, 30);
    // Two pauses of 100-200 ms between the three calls.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );

    let mut counter = 0u32;
    let observed = wait_until(
        "the counter to reach 2",
        Duration::from_secs(10),
        async || {
            counter += 1;
            counter
        },
        |value| *value >= 2,
    )
    .await;
    assert_eq!(observed, 2);
}

#[tokio::test]
#[should_panic(expected = "waiting for: the impossible")]
async fn wait_for_panics_on_timeout() {
    wait_for("the impossible", Duration::from_millis(300), async || {
        None::<()>
    })
    .await;
}

#[tokio::test]
async fn a_timeout_shows_the_last_observation_and_the_operators_logs() {
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("wait-timeout").await;
    let fake = OperatorProcess::builder(&cluster, &namespace)
        .identity("talkative")
        .binary(fake_operator(&namespace))
        .env("FAKE_SAY", "hello from the fake operator")
        .spawn();
    fake.wait_for_log("hello from the fake operator", Duration::from_secs(10))
        .await;

    let message = panic_message(async {
        wait_for(
            "the status to turn Ready",
            Duration::from_millis(400),
            async || Err::<(), _>(json!({"status": {"phase": "Rotating-observed"}})),
        )
        .await;
    })
    .await;
    assert!(
        message.contains("waiting for: the status to turn Ready"),
        "{message}"
    );
    assert!(message.contains("Rotating-observed"), "{message}");
    assert!(message.contains("operator talkative"), "{message}");
    assert!(
        message.contains("hello from the fake operator"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Processes

const FAKE_OPERATOR: &str = "#!/bin/sh
echo \"args: $*\"
echo \"KUBECONFIG=$KUBECONFIG\"
echo \"CRASH=${KEYTURN_TEST_CRASH_POINT:-none}\"
echo \"${FAKE_SAY:-}\"
echo \"a line on stderr\" >&2
if [ -n \"${FAKE_EXIT:-}\" ]; then exit \"$FAKE_EXIT\"; fi
exec sleep 120
";

/// A stand-in for the operator binary: prints what it got, optionally exits, else sleeps. Kept
/// beside the namespaces' work directories (`target/e2e-runs/`) and written only when missing or
/// different, through a rename: executing a file that some process still has open for writing
/// fails with ETXTBSY, and a forking sibling thread can hold such a descriptor for a moment.
fn fake_operator(namespace: &TestNamespace) -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let directory = namespace.work_dir().parent().expect("the runs directory");
        let path = directory.join("fake-operator.sh");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(FAKE_OPERATOR) {
            let staging = directory.join(format!("fake-operator.sh.{}", std::process::id()));
            std::fs::write(&staging, FAKE_OPERATOR).expect("write the fake operator");
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))
                .expect("make the fake operator executable");
            std::fs::rename(&staging, &path).expect("move the fake operator in place");
        }
        path
    })
    .clone()
}

/// Serves `/metrics` and `/readyz` on `address` the way the operator will, for the plumbing test.
async fn serve_fake_endpoints(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => request.extend_from_slice(&buffer[..read]),
                }
            }
            let request = String::from_utf8_lossy(&request);
            let (status, body) = if request.starts_with("GET /metrics ") {
                (
                    "200 OK",
                    "# TYPE keyturn_rotations_total counter\nkeyturn_rotations_total 0\n",
                )
            } else if request.starts_with("GET /readyz ") {
                ("200 OK", "ok")
            } else {
                ("404 Not Found", "not found")
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[tokio::test]
async fn process_plumbing_with_a_fake_operator() {
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("plumbing").await;
    let namespace_name = namespace.name();

    let first = OperatorProcess::builder(&cluster, &namespace)
        .identity("a")
        .binary(fake_operator(&namespace))
        .crash_at("after:Apply")
        .flag("--lease-duration", "5s")
        .arg("--extra")
        .spawn();
    let args = first.args().join(" ");
    let audit_db = namespace.work_dir().join("audit.db");
    for expected in [
        format!(
            "run --watch-namespace {namespace_name} --http-addr {} ",
            first.http_address()
        ),
        format!("--audit-store sqlite:{} ", audit_db.display()),
        format!("--lease-namespace {namespace_name} --lease-duration 5s --lease-renew-interval 1s"),
        "--identity a --log-format json --shutdown-grace 10s --extra".to_owned(),
    ] {
        assert!(args.contains(&expected), "{expected:?} not in {args:?}");
    }
    first
        .wait_for_log("a line on stderr", Duration::from_secs(10))
        .await;
    let logs = first.logs();
    assert!(logs.contains(&format!("args: {args}")), "{logs}");
    assert!(
        logs.contains(&format!(
            "KUBECONFIG={}",
            cluster.kubeconfig_path().display()
        )),
        "{logs}"
    );
    assert!(logs.contains("CRASH=after:Apply"), "{logs}");

    // The HTTP side, against endpoints served where the operator was told to listen.
    let listener = tokio::net::TcpListener::bind(first.http_address())
        .await
        .expect("bind the address the fake operator was given");
    let server = tokio::spawn(serve_fake_endpoints(listener));
    first.wait_ready().await;
    assert!(first.metrics().await.contains("keyturn_rotations_total 0"));
    assert_eq!(
        first.http_get("/nothing").await.map(|(status, _)| status),
        Ok(404)
    );
    server.abort();

    // SIGTERM.
    assert_eq!(first.exit_status(), None);
    first.terminate();
    let status = first
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exited after SIGTERM");
    assert_eq!(status.signal(), Some(15));
    first.terminate(); // a no-op once it has exited

    // A restart keeps identity and flags, drops the crash point and gets a new port.
    let second = first.respawn_builder().spawn();
    assert_eq!(second.identity(), "a");
    assert_ne!(second.http_address(), first.http_address());
    second
        .wait_for_log("CRASH=none", Duration::from_secs(10))
        .await;
    assert!(second.args().join(" ").contains("--lease-duration 5s"));
    assert_eq!(second.kill().signal(), Some(9));

    // Exit codes, and a log file per process.
    let third = OperatorProcess::builder(&cluster, &namespace)
        .binary(fake_operator(&namespace))
        .env("FAKE_EXIT", "3")
        .spawn();
    let status = third
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exited by itself");
    assert_eq!(status.code(), Some(3));
    assert!(third.identity().starts_with("operator-"));
    assert_ne!(third.log_path(), second.log_path());
    assert!(third.log_path().starts_with(namespace.work_dir()));
}

#[tokio::test]
async fn wait_ready_fails_fast_when_the_process_exits() {
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("not-ready").await;
    let process = OperatorProcess::builder(&cluster, &namespace)
        .identity("quitter")
        .binary(fake_operator(&namespace))
        .env("FAKE_EXIT", "7")
        .env("FAKE_SAY", "giving up at once")
        .spawn();
    let message = panic_message(async move { process.wait_ready().await }).await;
    assert!(
        message.contains("exited (exit code 7) before it was ready"),
        "{message}"
    );
    assert!(message.contains("giving up at once"), "{message}");
}

#[tokio::test]
async fn spawn_raw_runs_the_real_binarys_one_shot_commands() {
    let crd = spawn_raw(["crd"]).await;
    assert!(crd.success(), "{crd:?}");
    let committed =
        std::fs::read_to_string(workspace_root().join("crds/keyturn.dev_managedsecrets.yaml"))
            .expect("read the committed CRD");
    assert_eq!(
        crd.stdout.trim_end(),
        committed.trim_end(),
        "`crd` differs from crds/: rebuild the binary or regenerate the CRD"
    );

    let explain = spawn_raw(["explain", "examples/postgres-orders.yaml"]).await;
    assert!(explain.success(), "{explain:?}");
    assert!(
        explain.stdout.contains("payments/orders-db: valid"),
        "{}",
        explain.stdout
    );

    let missing = spawn_raw(["explain", "examples/does-not-exist.yaml"]).await;
    assert!(!missing.success());
    assert!(
        missing.stderr.contains("does-not-exist.yaml"),
        "{}",
        missing.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Backends

/// The manifests the helpers build pass the operator's own validation (`explain`), which applies
/// the same floors as the CRD's CEL rules; no backend is contacted for this.
#[tokio::test]
async fn generated_manifests_pass_the_operators_validation() {
    let postgres = Postgres::new(
        PostgresEnv {
            url: "postgres://postgres:pw@127.0.0.1:5432/keyturn".to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 5432,
            user: "postgres".to_owned(),
            password: "pw".to_owned(),
            database: "keyturn".to_owned(),
        },
        Some("-----BEGIN CERTIFICATE-----".to_owned()),
    );
    let openbao = OpenBao::new(OpenBaoEnv {
        addr: "http://127.0.0.1:8200".to_owned(),
        token: "root".to_owned(),
    });
    let moto = Moto::new(AwsEnv {
        endpoint: "http://127.0.0.1:5000".to_owned(),
        region: "us-east-1".to_owned(),
    });
    let manifests = [
        postgres
            .managed_secret("single", "e2e_role")
            .strategy(Strategy::SingleUser)
            .to_yaml(),
        postgres
            .managed_secret("alternating", "e2e_role")
            .strategy(Strategy::AlternatingUsers)
            .rotate_before("30s")
            .deletion_policy("Revoke")
            .to_yaml(),
        openbao
            .managed_secret("kv", "e2e/abc")
            .password_length(24)
            .to_yaml(),
        moto.managed_secret("aws", "keyturn-e2e/x-1").to_yaml(),
    ];
    let directory = tempfile::tempdir().expect("a temporary directory");
    let file = directory.path().join("manifests.yaml");
    std::fs::write(&file, manifests.join("---\n")).expect("write the manifests");
    let explained = spawn_raw(["explain".as_ref(), file.as_os_str()]).await;
    assert!(explained.success(), "{explained:#?}");
    assert_eq!(
        explained.stdout.matches(": valid").count(),
        4,
        "{}",
        explained.stdout
    );

    // Below the floors, the operator refuses (the stand-in alone would accept it).
    let too_short = postgres
        .managed_secret("fast", "e2e_role")
        .every("20s")
        .to_yaml();
    std::fs::write(&file, too_short).expect("write the manifest");
    let explained = spawn_raw(["explain".as_ref(), file.as_os_str()]).await;
    assert!(!explained.success(), "{explained:#?}");
    assert!(
        explained.stdout.contains("spec.rotation.every"),
        "{}",
        explained.stdout
    );
}

#[tokio::test]
async fn postgres_roles_logins_and_manifests() {
    let Some(postgres) = Postgres::from_env() else {
        return;
    };
    let role = postgres.create_login_role().await;
    assert!(role.name.starts_with("e2e_"));
    postgres
        .pg_login(&role.name, &role.bootstrap_password)
        .await
        .expect("login with the bootstrap password");
    let error = postgres
        .pg_login(&role.name, "not-the-password")
        .await
        .expect_err("login with a wrong password");
    assert!(error.contains(&role.name), "{error}");
    assert_eq!(
        postgres
            .pg_select(&role.name, &role.bootstrap_password, &role.table)
            .await,
        Ok(1)
    );
    assert!(!format!("{role:?}").contains(&role.bootstrap_password));

    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("postgres").await;
    let namespace_name = namespace.name();
    postgres
        .install_admin_secret(&cluster, namespace_name)
        .await;
    let admin = cluster
        .read_secret(namespace_name, ADMIN_SECRET)
        .await
        .expect("the admin Secret");
    assert_eq!(admin["username"], postgres.env().user);
    assert_eq!(admin["password"], postgres.env().password);

    let manifest = postgres
        .managed_secret("orders", &role.name)
        .strategy(Strategy::SingleUser)
        .secret_name("orders-credentials");
    assert_eq!(manifest.published_secret_name(), "orders-credentials");
    cluster
        .apply_yaml(namespace_name, &manifest.to_yaml())
        .await;
    let stored = cluster
        .get(
            namespace_name,
            "keyturn.dev/v1alpha1",
            "ManagedSecret",
            "orders",
        )
        .await
        .unwrap();
    assert_eq!(
        stored["spec"]["rotator"]["postgres"]["role"],
        role.name.as_str()
    );
    assert_eq!(
        stored["spec"]["rotator"]["postgres"]["strategy"],
        "SingleUser"
    );
    assert_eq!(
        stored["spec"]["rotator"]["postgres"]["port"],
        postgres.env().port
    );
}

#[tokio::test]
async fn openbao_kv_and_manifests() {
    let Some(openbao) = OpenBao::from_env() else {
        return;
    };
    let path = openbao.unique_path();
    assert_eq!(openbao.read_kv("secret", &path).await, None);
    openbao
        .write_kv("secret", &path, &json!({"password": "seed"}))
        .await;
    assert_eq!(
        openbao.read_kv("secret", &path).await,
        Some(json!({"password": "seed"}))
    );

    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("openbao").await;
    let namespace_name = namespace.name();
    openbao.install_token_secret(&cluster, namespace_name).await;
    assert_eq!(
        cluster
            .read_secret(namespace_name, "openbao-token")
            .await
            .unwrap()["token"],
        openbao.env().token
    );
    cluster
        .apply_yaml(
            namespace_name,
            &openbao.managed_secret("reporting", &path).to_yaml(),
        )
        .await;
    let stored = cluster
        .get(
            namespace_name,
            "keyturn.dev/v1alpha1",
            "ManagedSecret",
            "reporting",
        )
        .await
        .unwrap();
    assert_eq!(
        stored["spec"]["rotator"]["vault"]["kv"]["path"],
        path.as_str()
    );
}

#[tokio::test]
async fn moto_secrets_and_manifests() {
    let Some(moto) = Moto::from_env() else {
        return;
    };
    let secret_id = moto.create_secret("harness", "first-value").await;
    assert_eq!(
        moto.secret_value(&secret_id, "AWSCURRENT").await.as_deref(),
        Some("first-value")
    );
    assert_eq!(moto.secret_value(&secret_id, "AWSPENDING").await, None);
    let stages = moto.version_stages(&secret_id).await;
    assert_eq!(stages.len(), 1, "{stages:?}");
    assert!(
        stages
            .values()
            .all(|stages| stages.contains(&"AWSCURRENT".to_owned()))
    );

    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("moto").await;
    let namespace_name = namespace.name();
    cluster
        .apply_yaml(
            namespace_name,
            &moto.managed_secret("signing-key", &secret_id).to_yaml(),
        )
        .await;
    let stored = cluster
        .get(
            namespace_name,
            "keyturn.dev/v1alpha1",
            "ManagedSecret",
            "signing-key",
        )
        .await
        .unwrap();
    assert_eq!(
        stored["spec"]["rotator"]["awsSecretsManager"]["secretId"],
        secret_id.as_str()
    );
}

// ---------------------------------------------------------------------------------------------
// Stand-in controls and the canary check

#[tokio::test]
async fn standin_faults_and_request_log_are_visible_through_the_harness() {
    let cluster = Cluster::start().await;
    let Some(standin) = cluster.standin_or_skip("fault injection") else {
        return;
    };
    let namespace = cluster.namespace("faults").await;
    let namespace_name = namespace.name();
    // Discovery first, so the requests below are only the ones under test.
    assert_eq!(
        cluster
            .get(namespace_name, "v1", "ConfigMap", "target")
            .await,
        None
    );
    standin.clear_requests();

    let path = format!("/api/v1/namespaces/{namespace_name}/configmaps/target$");
    standin.add_fault(Fault::new(&path).method("get").status(409).times(1));
    let error = cluster
        .try_get(namespace_name, "v1", "ConfigMap", "target")
        .await
        .expect_err("the injected 409");
    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 409),
        "{error:?}"
    );
    // The rule was for one request only.
    assert_eq!(
        cluster
            .try_get(namespace_name, "v1", "ConfigMap", "target")
            .await
            .unwrap(),
        None
    );

    let requests = standin.requests();
    let statuses: Vec<u16> = requests
        .iter()
        .filter(|request| request.method == "GET" && request.path.ends_with("/configmaps/target"))
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, [409, 404], "{requests:?}");
    assert!(requests.iter().all(|request| !request.is_watch()));
    standin.clear_requests();
    assert!(standin.requests().is_empty());

    standin.add_fault(Fault::new(&path).latency(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(
        cluster
            .get(namespace_name, "v1", "ConfigMap", "target")
            .await,
        None
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    standin.clear_faults();
    let started = Instant::now();
    assert_eq!(
        cluster
            .get(namespace_name, "v1", "ConfigMap", "target")
            .await,
        None
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // Nothing watches here; these only have to work.
    assert_eq!(standin.drop_watches(), 0);
    standin.compact();
    assert!(standin.url().starts_with("http://127.0.0.1:"));
}

#[tokio::test]
async fn assert_no_canary_finds_a_leak_in_a_managed_secret_and_an_event() {
    let cluster = Cluster::start().await;
    let clean = cluster.namespace("canary-clean").await;
    let example = std::fs::read_to_string(workspace_root().join("examples/postgres-orders.yaml"))
        .expect("read examples/postgres-orders.yaml");
    cluster.apply_yaml(clean.name(), &example).await;
    assert_no_canary(&cluster, clean.name(), &[], CANARY).await;

    let leaky = cluster.namespace("canary-leaky").await;
    let namespace_name = leaky.name().to_owned();
    let mut object: Value = parse_yaml_documents(&example).remove(0);
    object["metadata"]["annotations"] = json!({"note": format!("password is {CANARY}")});
    cluster.apply(&namespace_name, &object).await;
    let cluster_for_check = cluster.clone();
    let message = panic_message(async move {
        assert_no_canary(&cluster_for_check, &namespace_name, &[], CANARY).await;
    })
    .await;
    assert!(message.contains("ManagedSecret orders-db"), "{message}");
    assert!(
        message.contains("password is <CANARY>"),
        "the context is shown, the value masked: {message}"
    );
    assert!(!message.contains(CANARY), "{message}");
}
