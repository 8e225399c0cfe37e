//! More stand-in tests with the real `kube` client: JSON patch (as kube-runtime's finalizer
//! helper sends it), streaming-list watches, relisting after 410, Events, Leases, the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event as EventV1;
use keyturn_apiserver::{Config, Handle, start};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

async fn setup(history_limit: usize) -> (Handle, Client) {
    let h = start(Config {
        history_limit,
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await
    .unwrap();
    let client = Client::try_from(kube::Config::new(h.url().parse().unwrap())).unwrap();
    (h, client)
}

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect::<BTreeMap<_, _>>(),
    );
    c
}

#[tokio::test]
async fn json_patch_finalizers_like_kube_runtime() {
    let (_h, client) = setup(100).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut c = cm("c", &[]);
    c.metadata.finalizers = Some(vec!["a".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    // What kube_runtime::finalizer sends to remove its finalizer: a test, then a remove.
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "a"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ]))
    .unwrap();
    let out = api
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Json::<()>(ops.clone()),
        )
        .await
        .unwrap();
    assert_eq!(out.finalizers(), &[] as &[String]);
    match api
        .patch("c", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!(s.code, 422),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn streaming_list_watcher_and_relist_after_gone() {
    let (h, client) = setup(3).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("one", &[("k", "v")]))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for cfg in [
        watcher::Config::default().streaming_lists(),
        watcher::Config::default(),
    ] {
        let tx = tx.clone();
        let mut s = Box::pin(watcher::watcher(api.clone(), cfg.labels("k=v")));
        tokio::spawn(async move {
            // Errors (the 410) are yielded and the watcher then relists, as on a real cluster.
            while let Some(ev) = futures_util::StreamExt::next(&mut s).await {
                match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        tx.send(o.name_any()).unwrap()
                    }
                    Ok(watcher::Event::InitDone) => tx.send("InitDone".into()).unwrap(),
                    Ok(_) => {}
                    Err(e) => tx.send(format!("error: {e}")).unwrap(),
                }
            }
        });
    }
    let mut seen = Vec::new();
    async fn wait_for(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
        seen: &mut Vec<String>,
        name: &str,
        count: usize,
    ) {
        while seen.iter().filter(|n| *n == name).count() < count {
            seen.push(
                tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
    }
    wait_for(&mut rx, &mut seen, "InitDone", 2).await;
    assert_eq!(seen.iter().filter(|n| *n == "one").count(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Make the watchers' resourceVersion too old, then cut their watches: both must relist.
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("other{i}"), &[]))
            .await
            .unwrap();
    }
    h.state.store.compact();
    h.state.store.drop_watches();
    api.create(&PostParams::default(), &cm("two", &[("k", "v")]))
        .await
        .unwrap();
    wait_for(&mut rx, &mut seen, "two", 2).await;
    assert_eq!(
        seen.iter().filter(|n| n.contains("Expired")).count(),
        2,
        "{seen:?}"
    );
    let watches = h
        .state
        .faults
        .requests()
        .iter()
        .filter(|r| r["query"].as_str().unwrap().contains("watch=true"))
        .count();
    assert!(
        watches >= 4,
        "each watcher watched again after the drop: {watches}"
    );
}

#[tokio::test]
async fn events_recorder_and_leases() {
    let (_h, client) = setup(100).await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "keyturn".into(),
            instance: None,
        },
    );
    let reference = ObjectReference {
        api_version: Some("keyturn.dev/v1alpha1".into()),
        kind: Some("ManagedSecret".into()),
        name: Some("m".into()),
        namespace: Some("default".into()),
        uid: Some("u".into()),
        ..ObjectReference::default()
    };
    let ev = Event {
        type_: EventType::Normal,
        reason: "RotationStarted".into(),
        note: Some("staged".into()),
        action: "Rotate".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap(); // the second one becomes a series (merge patch)
    let events: Api<EventV1> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].reason.as_deref(), Some("RotationStarted"));

    let leases: Api<Lease> = Api::namespaced(client, "default");
    let mut l = Lease::default();
    l.metadata.name = Some("keyturn-leader".into());
    l.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
        holder_identity: Some("a".into()),
        lease_duration_seconds: Some(15),
        ..Default::default()
    });
    let created = leases.create(&PostParams::default(), &l).await.unwrap();
    let mut b = created.clone();
    b.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("keyturn-leader", &PostParams::default(), &b)
        .await
        .unwrap();
    let mut a_again = created;
    a_again.spec.as_mut().unwrap().holder_identity = Some("a".into());
    // Two replicas racing for the lease: the stale one loses with 409.
    match leases
        .replace("keyturn-leader", &PostParams::default(), &a_again)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!(s.code, 409),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn binary_prints_url_and_writes_kubeconfig() {
    let dir = std::env::temp_dir().join(format!("keyturn-apiserver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let crd = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crds/keyturn.dev_managedsecrets.yaml"
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyturn-apiserver"))
        .args(["--port", "0", "--crd", crd, "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut url)
        .await
        .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    assert_eq!(
        api.get("x").await.unwrap().namespace().as_deref(),
        Some("default")
    );
    child.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn delete_collection_by_label() {
    let (_h, client) = setup(100).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        api.create(&PostParams::default(), &cm(n, &[("k", l)]))
            .await
            .unwrap();
    }
    api.delete_collection(
        &kube::api::DeleteParams::default(),
        &ListParams::default().labels("k=x"),
    )
    .await
    .unwrap();
    let left: Vec<_> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn server_side_apply_by_kubectl_takes_over_client_side_apply() {
    let (_h, client) = setup(100).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    // As `kubectl apply` (client-side) creates it: the last applied configuration in an
    // annotation, the fields owned by an Update entry.
    let last = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}});
    let mut c = cm("c", &[]);
    c.metadata.annotations = Some(BTreeMap::from([(
        "kubectl.kubernetes.io/last-applied-configuration".to_string(),
        last.to_string(),
    )]));
    c.data = Some(BTreeMap::from([("a".to_string(), "1".to_string())]));
    let pp = PostParams {
        field_manager: Some("kubectl-client-side-apply".into()),
        ..PostParams::default()
    };
    api.create(&pp, &c).await.unwrap();
    let changed = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "c"}, "data": {"a": "2"}});
    // Another manager conflicts on the field; `kubectl` itself takes it over.
    match api
        .patch("c", &PatchParams::apply("other"), &Patch::Apply(&changed))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!(s.code, 409),
        other => panic!("{other:?}"),
    }
    let out = api
        .patch("c", &PatchParams::apply("kubectl"), &Patch::Apply(&changed))
        .await
        .unwrap();
    assert_eq!(out.data.unwrap()["a"], "2");
}
