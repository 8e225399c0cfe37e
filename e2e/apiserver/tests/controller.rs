//! A small kube-runtime `Controller` over ManagedSecrets, run against the stand-in: it owns a
//! Secret and writes status by server-side apply; the loop converges and does not hot-loop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use keyturn_apiserver::{Config, start};
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

struct Ctx {
    client: Client,
    ar: ApiResource,
    reconciles: AtomicUsize,
}

async fn reconcile(ms: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = ms.namespace().unwrap();
    let name = ms.name_any();
    let owner = ms.controller_owner_ref(&ctx.ar).unwrap();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{name}-cred"), "ownerReferences": [owner],
                     "labels": {"app.kubernetes.io/managed-by": "keyturn"}},
        "stringData": {"interval": ms.data["spec"]["interval"]},
    });
    let pp = PatchParams::apply("keyturn/controller");
    secrets
        .patch(&format!("{name}-cred"), &pp, &Patch::Apply(&secret))
        .await?;
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ctx.ar);
    let status = json!({"apiVersion": ctx.ar.api_version, "kind": ctx.ar.kind,
                        "status": {"observedGeneration": ms.meta().generation}});
    api.patch_status(
        &name,
        &PatchParams::apply("keyturn/status"),
        &Patch::Apply(&status),
    )
    .await?;
    Ok(Action::await_change())
}

#[tokio::test]
async fn controller_converges_without_hot_loop() {
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crds/keyturn.dev_managedsecrets.yaml"
    ))
    .unwrap();
    let h = start(Config {
        crds: vec![crd],
        ..Config::default()
    })
    .await
    .unwrap();
    let client = Client::try_from(kube::Config::new(h.url().parse().unwrap())).unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keyturn.dev", "v1alpha1", "ManagedSecret"),
        "managedsecrets",
    );
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        ar: ar.clone(),
        reconciles: AtomicUsize::new(0),
    });
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let controller = Controller::new_with(api.clone(), watcher::Config::default(), ar.clone())
        .owns(
            secrets.clone(),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=keyturn"),
        )
        .run(
            reconcile,
            |_, _: &kube::Error, _| Action::requeue(Duration::from_secs(1)),
            ctx.clone(),
        );
    tokio::spawn(controller.for_each(|_| async {}));

    let ms = json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": "db"}, "spec": {"interval": "1h"}});
    api.patch("db", &PatchParams::apply("test"), &Patch::Apply(&ms))
        .await
        .unwrap();
    let observed = async |generation: i64| {
        for _ in 0..100 {
            let o = api.get("db").await.unwrap();
            if o.data["status"]["observedGeneration"] == generation {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("observedGeneration never reached {generation}");
    };
    observed(1).await;
    assert_eq!(
        secrets.get("db-cred").await.unwrap().owner_references()[0].name,
        "db"
    );

    let ms2 = json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": "db"}, "spec": {"interval": "2h"}});
    api.patch("db", &PatchParams::apply("test"), &Patch::Apply(&ms2))
        .await
        .unwrap();
    observed(2).await;

    // Quiet period: no more reconciles once converged (no-op applies do not bump resourceVersion).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = ctx.reconciles.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ctx.reconciles.load(Ordering::SeqCst), settled, "hot loop");
    assert!(settled <= 8, "{settled} reconciles");

    api.delete("db", &DeleteParams::default()).await.unwrap();
    assert!(
        secrets.get_opt("db-cred").await.unwrap().is_none(),
        "owned Secret collected"
    );
}
