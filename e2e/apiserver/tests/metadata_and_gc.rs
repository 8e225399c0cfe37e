//! Metadata-only lists and watches (PartialObjectMetadata, so Secret data never reaches the
//! client) and garbage collection of owned objects through `ownerReferences`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keyturn_apiserver::{Config, Handle, start};
use kube::api::{Api, DeleteParams, ListParams, PartialObjectMeta, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use kube::{Client, ResourceExt};

async fn setup() -> (Handle, Client) {
    let h = start(Config::default()).await.unwrap();
    let client = Client::try_from(kube::Config::new(h.url().parse().unwrap())).unwrap();
    (h, client)
}

fn secret(name: &str, owner: Option<&ConfigMap>) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".into(),
        "keyturn".into(),
    )]));
    s.data = Some(BTreeMap::from([(
        "password".into(),
        k8s_openapi::ByteString(b"canary-123".to_vec()),
    )]));
    s.metadata.owner_references = owner.map(|o| {
        vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: o.name_any(),
            uid: o.uid().unwrap(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    s
}

#[tokio::test]
async fn metadata_only_list_and_watch() {
    let (_h, client) = setup().await;
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &secret("a", None))
        .await
        .unwrap();
    let list = api
        .list_metadata(&ListParams::default().labels("app.kubernetes.io/managed-by=keyturn"))
        .await
        .unwrap();
    assert_eq!(
        list.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        ["a"]
    );

    // On the wire: no data (key names do appear in managedFields, as on a real server).
    let req = hyper::Request::get("/api/v1/namespaces/default/secrets")
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .unwrap();
    let raw = client.request_text(req).await.unwrap();
    assert!(
        raw.contains("PartialObjectMetadataList") && !raw.contains("Y2FuYXJ5LTEyMw"),
        "{raw}"
    );

    let mut stream = watcher(
        Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), "default"),
        watcher::Config::default(),
    )
    .applied_objects()
    .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.name_any(), "a");
    api.create(&PostParams::default(), &secret("b", None))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.name_any(), "b");
}

#[tokio::test]
async fn owned_objects_are_collected_unless_orphaned() {
    let (_h, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let mut owner = ConfigMap::default();
    owner.metadata.name = Some("owner".into());
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
    secrets
        .create(&PostParams::default(), &secret("owned", Some(&owner)))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &secret("free", None))
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    let names: Vec<_> = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["free"]);

    let mut owner2 = ConfigMap::default();
    owner2.metadata.name = Some("owner2".into());
    let owner2 = cms.create(&PostParams::default(), &owner2).await.unwrap();
    secrets
        .create(&PostParams::default(), &secret("kept", Some(&owner2)))
        .await
        .unwrap();
    cms.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    let kept = secrets.get("kept").await.unwrap();
    assert!(kept.owner_references().is_empty());
}
