//! End-to-end tests of the stand-in with the real `kube` client: CRUD, selectors, conflicts,
//! finalizers, merge and server-side apply, the status subresource, watches and fault rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use keyturn_apiserver::faults::FaultRule;
use keyturn_apiserver::{Config, Handle, start};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::discovery::{ApiResource, Discovery};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

async fn setup(history_limit: usize) -> (Handle, Client) {
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crds/keyturn.dev_managedsecrets.yaml"
    ))
    .unwrap();
    let h = start(Config {
        crds: vec![crd],
        history_limit,
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await
    .unwrap();
    let client = Client::try_from(kube::Config::new(h.url().parse().unwrap())).unwrap();
    (h, client)
}

fn secret(name: &str, labels: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect::<BTreeMap<_, _>>(),
    );
    s.string_data = None;
    s.data = Some(BTreeMap::from([(
        "k".into(),
        k8s_openapi::ByteString(b"v".to_vec()),
    )]));
    s
}

fn api_code(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("not an API error: {other:?}"),
    }
}

async fn names(api: &Api<Secret>, lp: &ListParams) -> Vec<String> {
    api.list(lp)
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect()
}

#[tokio::test]
async fn secret_crud_selectors_and_conflicts() {
    let (_h, client) = setup(1000).await;
    // Objects live in existing namespaces only.
    let in_missing: Api<Secret> = Api::namespaced(client.clone(), "ns1");
    assert_eq!(
        api_code(
            &in_missing
                .create(&PostParams::default(), &secret("a", &[]))
                .await
                .unwrap_err()
        ),
        (404, "NotFound".into())
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("ns1".into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let api: Api<Secret> = Api::namespaced(client, "ns1");
    let pp = PostParams::default();
    let a = api
        .create(&pp, &secret("a", &[("app", "x"), ("tier", "db")]))
        .await
        .unwrap();
    api.create(&pp, &secret("b", &[("app", "y")]))
        .await
        .unwrap();
    api.create(&pp, &secret("c", &[])).await.unwrap();
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    assert_eq!(
        a.metadata.generation, None,
        "Secrets have no generation on a real server"
    );
    assert_eq!(
        api_code(&api.create(&pp, &secret("a", &[])).await.unwrap_err()),
        (409, "AlreadyExists".into())
    );

    let got = api.get("a").await.unwrap();
    assert_eq!(got.metadata.resource_version, a.metadata.resource_version);
    assert_eq!(
        api_code(&api.get("zz").await.unwrap_err()),
        (404, "NotFound".into())
    );

    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(&api, &ListParams::default()).await, ["a", "b", "c"]);
    assert_eq!(names(&api, &sel("app=x")).await, ["a"]);
    assert_eq!(names(&api, &sel("app!=x")).await, ["b", "c"]);
    assert_eq!(names(&api, &sel("app")).await, ["a", "b"]);
    assert_eq!(names(&api, &sel("!app")).await, ["c"]);
    assert_eq!(names(&api, &sel("app in (x,y),tier")).await, ["a"]);
    assert_eq!(
        names(&api, &ListParams::default().fields("metadata.name=b")).await,
        ["b"]
    );
    assert_eq!(
        names(&api, &ListParams::default().limit(2)).await,
        ["a", "b"]
    );
    let other: Api<Secret> = Api::namespaced(api.clone().into_client(), "ns2");
    assert!(names(&other, &ListParams::default()).await.is_empty());
    let all: Api<Secret> = Api::all(api.clone().into_client());
    assert_eq!(names(&all, &ListParams::default()).await.len(), 3);
    let ns_names: Vec<_> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        ns_names,
        [
            "default",
            "kube-node-lease",
            "kube-public",
            "kube-system",
            "ns1"
        ]
    );

    // Replace with the current resourceVersion works once; the stale one then conflicts.
    let mut upd = got.clone();
    upd.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("v".into(), "2".into());
    let replaced = api.replace("a", &pp, &upd).await.unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        got.metadata.resource_version
    );
    assert_eq!(
        api_code(&api.replace("a", &pp, &upd).await.unwrap_err()),
        (409, "Conflict".into())
    );

    // Merge patch, including a resourceVersion precondition.
    let p = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": null}}})),
        )
        .await
        .unwrap();
    assert!(!p.labels().contains_key("tier"));
    let stale = Patch::Merge(
        json!({"metadata": {"resourceVersion": got.metadata.resource_version, "labels": {"x": "1"}}}),
    );
    assert_eq!(
        api_code(
            &api.patch("a", &PatchParams::default(), &stale)
                .await
                .unwrap_err()
        )
        .0,
        409
    );

    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(&api.get("b").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn namespace_deletion_removes_contents() {
    let (_h, client) = setup(1000).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("gone".into());
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
    let api: Api<Secret> = Api::namespaced(client, "gone");
    api.create(&PostParams::default(), &secret("plain", &[]))
        .await
        .unwrap();
    let mut held = secret("held", &[]);
    held.metadata.finalizers = Some(vec!["keyturn.dev/cleanup".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    namespaces
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = namespaces.get("gone").await.unwrap();
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    assert_eq!(api_code(&api.get("plain").await.unwrap_err()).0, 404);
    assert!(
        api.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert_eq!(
        api_code(
            &api.create(&PostParams::default(), &secret("new", &[]))
                .await
                .unwrap_err()
        )
        .0,
        403
    );
    let clear = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    api.patch("held", &PatchParams::default(), &clear)
        .await
        .unwrap();
    assert_eq!(api_code(&namespaces.get("gone").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn delete_waits_for_finalizers() {
    let (_h, client) = setup(1000).await;
    let api: Api<Secret> = Api::namespaced(client, "default");
    let mut s = secret("f", &[]);
    s.metadata.finalizers = Some(vec!["keyturn.dev/cleanup".into()]);
    api.create(&PostParams::default(), &s).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let kept = api.get("f").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_some());
    // No new finalizers on an object being deleted (422, as on a real server).
    let add = Patch::Merge(json!({"metadata": {"finalizers": ["keyturn.dev/cleanup", "new"]}}));
    assert_eq!(
        api_code(
            &api.patch("f", &PatchParams::default(), &add)
                .await
                .unwrap_err()
        )
        .0,
        422
    );
    // dryRun leaves the object alone.
    let drop_finalizers = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    api.patch("f", &PatchParams::default().dry_run(), &drop_finalizers)
        .await
        .unwrap();
    assert!(api.get("f").await.is_ok());
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_code(&api.get("f").await.unwrap_err()).0, 404);
}

async fn managed_secrets(client: &Client) -> Api<DynamicObject> {
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.group == "keyturn.dev" && ar.plural == "managedsecrets")
        .expect("managedsecrets discovered");
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "managedsecrets/status" || s.plural == "status")
    );
    let secrets = discovery.groups().find(|g| g.name().is_empty()).unwrap();
    assert!(
        secrets
            .recommended_resources()
            .iter()
            .any(|(r, _)| r.plural == "secrets")
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn ms(ar: &ApiResource, name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn crd_apply_status_and_generation() {
    let (_h, client) = setup(1000).await;
    let api = managed_secrets(&client).await;
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "keyturn.dev",
        "v1alpha1",
        "ManagedSecret",
    ));
    let ssa = |m: &str| PatchParams::apply(m);
    let o = api
        .patch(
            "m",
            &ssa("keyturn/test"),
            &Patch::Apply(ms(&ar, "m", json!({"interval": "1h", "a": 1}))),
        )
        .await
        .unwrap();
    assert_eq!(o.metadata.generation, Some(1));
    assert_eq!(
        o.metadata.managed_fields.as_ref().unwrap()[0]
            .manager
            .as_deref(),
        Some("keyturn/test")
    );

    // Re-applying without `a` removes it (owned only by this manager) and bumps generation.
    let o = api
        .patch(
            "m",
            &ssa("keyturn/test"),
            &Patch::Apply(ms(&ar, "m", json!({"interval": "2h"}))),
        )
        .await
        .unwrap();
    assert_eq!(o.data["spec"], json!({"interval": "2h"}));
    assert_eq!(o.metadata.generation, Some(2));

    // Status through the subresource: no generation bump; status on the main resource is ignored.
    let status =
        json!({"apiVersion": ar.api_version, "kind": ar.kind, "status": {"phase": "Ready"}});
    let o = api
        .patch_status("m", &ssa("keyturn/status"), &Patch::Apply(status))
        .await
        .unwrap();
    assert_eq!(o.data["status"], json!({"phase": "Ready"}));
    assert_eq!(o.metadata.generation, Some(2));
    let o = api
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Hacked"}, "metadata": {"labels": {"l": "1"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(o.data["status"]["phase"], "Ready");
    assert_eq!(
        o.metadata.generation,
        Some(2),
        "metadata changes do not bump generation"
    );
    let o = api
        .patch_status(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Done"}, "spec": {"interval": "9h"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            o.data["status"]["phase"].as_str(),
            o.data["spec"]["interval"].as_str()
        ),
        (Some("Done"), Some("2h"))
    );
    assert_eq!(
        api.get_status("m").await.unwrap().data["status"]["phase"],
        "Done"
    );

    // Another manager changing an owned field conflicts unless forced.
    let other = Patch::Apply(ms(&ar, "m", json!({"interval": "5m"})));
    assert_eq!(
        api_code(&api.patch("m", &ssa("other"), &other).await.unwrap_err()),
        (409, "Conflict".into())
    );
    let o = api.patch("m", &ssa("other").force(), &other).await.unwrap();
    assert_eq!(o.data["spec"]["interval"], "5m");
    let managers: Vec<_> = o
        .metadata
        .managed_fields
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"other".to_string()) && !managers.contains(&"keyturn/test".to_string()),
        "{managers:?}"
    );

    // A PUT on a CRD needs a fresh resourceVersion.
    let mut stale = o.clone();
    api.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    stale.data["spec"]["interval"] = json!("1m");
    assert_eq!(
        api_code(
            &api.replace("m", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        )
        .0,
        409
    );
}

#[tokio::test]
async fn apply_treats_finalizers_as_a_set() {
    let (_h, client) = setup(1000).await;
    let api = managed_secrets(&client).await;
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "keyturn.dev",
        "v1alpha1",
        "ManagedSecret",
    ));
    let mut obj = ms(&ar, "f", json!({"interval": "1h"}));
    obj["metadata"]["finalizers"] = json!(["keyturn.dev/cleanup"]);
    let pp = PatchParams::apply("keyturn/controller");
    api.patch("f", &pp, &Patch::Apply(&obj)).await.unwrap();
    // Another client adds its own finalizer.
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["keyturn.dev/cleanup", "other/x"]}})),
    )
    .await
    .unwrap();
    // Applying without ours removes only ours.
    let o = api
        .patch(
            "f",
            &pp,
            &Patch::Apply(ms(&ar, "f", json!({"interval": "1h"}))),
        )
        .await
        .unwrap();
    assert_eq!(o.finalizers(), ["other/x"]);
}

#[tokio::test]
async fn watch_events_selectors_bookmarks_and_gone() {
    let (h, client) = setup(5).await;
    let api: Api<Secret> = Api::namespaced(client, "default");
    let rv0 = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams::default().labels("app=x").timeout(10);
    let mut stream = api.watch(&wp, &rv0).await.unwrap().boxed();
    api.create(&PostParams::default(), &secret("no", &[("app", "y")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &secret("yes", &[("app", "x")]))
        .await
        .unwrap();
    api.patch(
        "no",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "yes",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}})),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(s) => seen.push(format!("ADDED {}", s.name_any())),
            WatchEvent::Modified(s) => seen.push(format!("MODIFIED {}", s.name_any())),
            WatchEvent::Deleted(s) => seen.push(format!("DELETED {}", s.name_any())),
            WatchEvent::Bookmark(b) => {
                seen.push("BOOKMARK".into());
                assert!(b.metadata.resource_version.parse::<u64>().unwrap() >= 4);
            }
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    // "no" enters the selector (ADDED), "yes" leaves it (DELETED), then a bookmark.
    assert_eq!(seen, ["ADDED yes", "ADDED no", "DELETED yes", "BOOKMARK"]);

    // After more than 5 changes the first resourceVersion is gone: 410 as an ERROR event.
    for i in 0..6 {
        api.create(&PostParams::default(), &secret(&format!("s{i}"), &[]))
            .await
            .unwrap();
    }
    let mut old = api
        .watch(&WatchParams::default(), &rv0)
        .await
        .unwrap()
        .boxed();
    match old.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    drop(h);
}

#[tokio::test]
async fn runtime_watcher_survives_dropped_watches() {
    let (h, client) = setup(1000).await;
    let api: Api<Secret> = Api::namespaced(client, "default");
    api.create(
        &PostParams::default(),
        &secret("first", &[("owned", "true")]),
    )
    .await
    .unwrap();
    let cfg = watcher::Config::default().labels("owned=true");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut objs = watcher::watcher(api.clone(), cfg).boxed();
    tokio::spawn(async move {
        while let Some(ev) = objs.try_next().await.unwrap() {
            if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = ev {
                let _ = tx.send(ResourceExt::name_any(&s));
            }
        }
    });
    let mut names = Vec::new();
    let wait_for = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
                          names: &mut Vec<String>,
                          name: &str| {
        while !names.iter().any(|n| n == name) {
            names.push(
                tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
    };
    api.create(
        &PostParams::default(),
        &secret("ignored", &[("owned", "false")]),
    )
    .await
    .unwrap();
    wait_for(&mut rx, &mut names, "first").await;
    // Let the watch open, drop it, and make a change: the watcher re-watches and sees it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.state.store.drop_watches() >= 1);
    api.create(
        &PostParams::default(),
        &secret("second", &[("owned", "true")]),
    )
    .await
    .unwrap();
    wait_for(&mut rx, &mut names, "second").await;
    assert!(!names.contains(&"ignored".to_string()));
}

fn patch_b() -> Patch<serde_json::Value> {
    Patch::Merge(json!({"metadata": {"labels": {"b": "c"}}}))
}

#[tokio::test]
async fn fault_rules_and_request_log() {
    let (h, client) = setup(1000).await;
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &secret("s", &[]))
        .await
        .unwrap();

    // Rules through the admin HTTP API.
    let post = |body: serde_json::Value| {
        hyper::Request::post("/_standin/faults")
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .unwrap()
    };
    client.request_text(post(json!({"method": "GET", "path": "/secrets/s$", "status": 429, "retryAfter": 1, "count": 1}))).await.unwrap();
    // kube's client honours 429 + Retry-After by retrying: the log shows the 429, then the 200.
    let t = std::time::Instant::now();
    api.get("s").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "Retry-After was honoured"
    );
    let statuses: Vec<_> = h
        .state
        .faults
        .requests()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 429, 200]);
    client
        .request_text(post(
            json!({"method": "PATCH", "path": "/secrets/s", "status": 500, "count": 1}),
        ))
        .await
        .unwrap();
    let patch = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
    assert_eq!(
        api_code(
            &api.patch("s", &PatchParams::default(), &patch)
                .await
                .unwrap_err()
        )
        .0,
        500
    );
    api.patch("s", &PatchParams::default(), &patch)
        .await
        .unwrap();
    h.state
        .faults
        .add(FaultRule::from_json(&json!({"method": "PUT", "status": 409, "count": 1})).unwrap());
    let cur = api.get("s").await.unwrap();
    assert_eq!(
        api_code(
            &api.replace("s", &PostParams::default(), &cur)
                .await
                .unwrap_err()
        )
        .0,
        409
    );
    h.state.faults.add(
        FaultRule::from_json(&json!({"path": "secrets/s$", "latencyMs": 300, "count": 1})).unwrap(),
    );
    let t = std::time::Instant::now();
    api.get("s").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Unlimited rules stay until DELETE /_standin/faults. (500, because kube's client retries
    // 429/503/504 itself.)
    client
        .request_text(post(
            json!({"method": "GET", "path": "/secrets/s$", "status": 500}),
        ))
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(api_code(&api.get("s").await.unwrap_err()).0, 500);
    }
    let admin = |method: &str, path: &str| {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .body(Vec::new())
            .unwrap()
    };
    client
        .request_text(admin("DELETE", "/_standin/faults"))
        .await
        .unwrap();
    api.get("s").await.unwrap();

    // Dropping watches and compacting the history over HTTP (for out-of-process tests).
    let rv = api
        .get("s")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let dropped = client
        .request_text(admin("POST", "/_standin/drop-watches"))
        .await
        .unwrap();
    assert_eq!(dropped, r#"{"dropped":1}"#);
    assert!(
        w.try_next().await.unwrap().is_none(),
        "the watch stream ended"
    );
    api.patch("s", &PatchParams::default(), &patch_b())
        .await
        .unwrap();
    client
        .request_text(admin("POST", "/_standin/compact"))
        .await
        .unwrap();
    let mut old = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match old.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }

    // The request log counts API requests (admin calls excluded).
    client
        .request_text(
            hyper::Request::delete("/_standin/requests")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    api.get("s").await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    let log: serde_json::Value = serde_json::from_str(
        &client
            .request_text(
                hyper::Request::get("/_standin/requests")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        (log[0]["method"].as_str(), log[0]["path"].as_str()),
        (Some("GET"), Some("/api/v1/namespaces/default/secrets/s"))
    );
}

#[tokio::test]
async fn field_ownership_across_managers() {
    let (_h, client) = setup(1000).await;
    let api = managed_secrets(&client).await;
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "keyturn.dev",
        "v1alpha1",
        "ManagedSecret",
    ));
    let a = PatchParams::apply("a");
    let b = PatchParams::apply("b");
    api.patch(
        "o",
        &a,
        &Patch::Apply(ms(&ar, "o", json!({"x": 1, "y": 1}))),
    )
    .await
    .unwrap();
    // Same value from another applier: shared ownership, no conflict; when `a` drops the field,
    // it stays because `b` still owns it.
    api.patch("o", &b, &Patch::Apply(ms(&ar, "o", json!({"x": 1}))))
        .await
        .unwrap();
    let o = api
        .patch("o", &a, &Patch::Apply(ms(&ar, "o", json!({"y": 1}))))
        .await
        .unwrap();
    assert_eq!(o.data["spec"], json!({"x": 1, "y": 1}));

    // A merge patch under another field manager takes the field: re-applying the old value
    // conflicts with it.
    let editor = PatchParams {
        field_manager: Some("editor".into()),
        ..PatchParams::default()
    };
    let o = api
        .patch("o", &editor, &Patch::Merge(json!({"spec": {"y": 2}})))
        .await
        .unwrap();
    let entry = o
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("editor"))
        .unwrap();
    assert_eq!(entry.operation.as_deref(), Some("Update"));
    let err = api
        .patch("o", &a, &Patch::Apply(ms(&ar, "o", json!({"y": 1}))))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));
}
