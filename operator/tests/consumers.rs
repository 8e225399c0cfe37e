//! The consumers API against the in-memory Kubernetes API stand-in: restarts are server-side
//! applies owned by `keyturn/restarter`, idempotent and batched; discovery lists the namespace;
//! rollout progress follows the status the test writes (the stand-in runs no controllers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use keyturn_apiserver::faults::FaultRule;
use keyturn_apiserver::{Config, Handle, start};
use keyturn_crds::{ConsumersSpec, WorkloadKind, WorkloadRef};
use keyturn_operator::consumers::{
    self, ConsumerState, ConsumerTarget, RESTARTED_FOR_ANNOTATION, RestartBatcher, RestartOutcome,
    TargetOrigin,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const NAMESPACE: &str = "default";
const SECRET: &str = "orders-db";
const TOKEN_A: &str = "kt-aaaa";
const TOKEN_B: &str = "kt-bbbb";

async fn setup() -> (Handle, Client) {
    let handle = start(Config::default()).await.unwrap();
    let client = Client::try_from(kube::Config::new(handle.url().parse().unwrap())).unwrap();
    (handle, client)
}

/// A short window keeps the tests fast; batching only needs requests to arrive within it.
fn batcher() -> RestartBatcher {
    RestartBatcher::new(Duration::from_millis(200))
}

fn pod_template(pod_spec: Value) -> Value {
    json!({"metadata": {"labels": {"app": "orders"}}, "spec": pod_spec})
}

fn app_container() -> Value {
    json!({"name": "app", "image": "orders:1"})
}

fn env_from_pod(secret: &str) -> Value {
    json!({"containers": [{"name": "app", "image": "orders:1", "envFrom": [{"secretRef": {"name": secret}}]}]})
}

async fn create_deployment(
    client: &Client,
    name: &str,
    replicas: i32,
    pod_spec: Value,
) -> Deployment {
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "orders"}},
                 "template": pod_template(pod_spec)}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap()
}

async fn create_stateful_set(client: &Client, name: &str, pod_spec: Value) -> StatefulSet {
    let stateful_set: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": 2, "serviceName": name, "selector": {"matchLabels": {"app": "orders"}},
                 "template": pod_template(pod_spec)}
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &stateful_set)
        .await
        .unwrap()
}

async fn create_daemon_set(client: &Client, name: &str, pod_spec: Value) -> DaemonSet {
    let daemon_set: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"app": "orders"}}, "template": pod_template(pod_spec)}
    }))
    .unwrap();
    Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &daemon_set)
        .await
        .unwrap()
}

async fn get_deployment(client: &Client, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get(name)
        .await
        .unwrap()
}

fn restart_annotation(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(RESTARTED_FOR_ANNOTATION)
        .cloned()
}

fn listed(kind: WorkloadKind, name: &str) -> ConsumerTarget {
    ConsumerTarget {
        kind,
        name: name.to_owned(),
        how: TargetOrigin::Listed,
    }
}

fn requests(handle: &Handle, method: &str) -> Vec<Value> {
    handle
        .state
        .faults
        .requests()
        .into_iter()
        .filter(|request| request["method"] == method)
        .collect()
}

#[tokio::test]
async fn restart_applies_the_annotation_under_the_restarter_manager() {
    let (handle, client) = setup().await;
    create_deployment(
        &client,
        "orders-api",
        2,
        json!({"containers": [app_container()]}),
    )
    .await;
    let target = listed(WorkloadKind::Deployment, "orders-api");

    let outcome = batcher()
        .restart(&client, NAMESPACE, &target, TOKEN_A)
        .await
        .unwrap();
    assert_eq!(outcome, RestartOutcome::Restarted);

    let deployment = get_deployment(&client, "orders-api").await;
    assert_eq!(restart_annotation(&deployment).as_deref(), Some(TOKEN_A));
    // The rest of the template is untouched.
    let template = &deployment.spec.as_ref().unwrap().template;
    assert_eq!(
        template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("orders:1")
    );
    assert_eq!(deployment.metadata.generation, Some(2));

    let managed_fields = deployment.managed_fields();
    let restarter = managed_fields
        .iter()
        .find(|entry| entry.manager.as_deref() == Some("keyturn/restarter"))
        .expect("an entry for keyturn/restarter");
    assert_eq!(restarter.operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&restarter.fields_v1).unwrap();
    assert_eq!(
        fields,
        json!({"f:spec": {"f:template": {"f:metadata": {"f:annotations": {
            "f:keyturn.dev/restarted-for": {}
        }}}}}),
        "keyturn/restarter owns only its annotation"
    );
    let patches = requests(&handle, "PATCH");
    assert_eq!(patches.len(), 1);
    assert!(
        patches[0]["query"]
            .as_str()
            .unwrap()
            .contains("fieldManager=keyturn/restarter"),
        "{patches:?}"
    );
}

#[tokio::test]
async fn a_second_restart_with_the_same_token_writes_nothing() {
    let (handle, client) = setup().await;
    create_deployment(
        &client,
        "orders-api",
        2,
        json!({"containers": [app_container()]}),
    )
    .await;
    let target = listed(WorkloadKind::Deployment, "orders-api");
    let batcher = batcher();
    batcher
        .restart(&client, NAMESPACE, &target, TOKEN_A)
        .await
        .unwrap();
    let before = get_deployment(&client, "orders-api").await;
    handle.state.faults.clear_requests();

    // As after an operator restart: a fresh batcher, the same rotation.
    let outcome = RestartBatcher::new(Duration::from_millis(50))
        .restart(&client, NAMESPACE, &target, TOKEN_A)
        .await
        .unwrap();
    assert_eq!(outcome, RestartOutcome::AlreadyRestarted);

    let after = get_deployment(&client, "orders-api").await;
    assert_eq!(after.resource_version(), before.resource_version());
    assert!(requests(&handle, "PATCH").is_empty());
    assert!(!requests(&handle, "GET").is_empty());
}

#[tokio::test]
async fn two_rotations_in_one_window_make_one_patch_with_both_tokens() {
    let (handle, client) = setup().await;
    create_deployment(
        &client,
        "orders-api",
        2,
        json!({"containers": [app_container()]}),
    )
    .await;
    let target = listed(WorkloadKind::Deployment, "orders-api");
    let batcher = batcher();
    let other_reconcile = batcher.clone();

    // Two ManagedSecrets' reconciles, each with its own rotation, sharing one batcher.
    let (first, second) = tokio::join!(
        batcher.restart(&client, NAMESPACE, &target, TOKEN_B),
        other_reconcile.restart(&client, NAMESPACE, &target, TOKEN_A),
    );
    assert_eq!(first.unwrap(), RestartOutcome::Restarted);
    assert_eq!(second.unwrap(), RestartOutcome::Restarted);

    assert_eq!(requests(&handle, "PATCH").len(), 1);
    let deployment = get_deployment(&client, "orders-api").await;
    assert_eq!(
        restart_annotation(&deployment).as_deref(),
        Some("kt-aaaa,kt-bbbb")
    );
    // Each rotation now sees its own token on the template.
    let progress_a =
        consumers::rollout_progress(&client, NAMESPACE, std::slice::from_ref(&target), TOKEN_A)
            .await
            .unwrap();
    let progress_b = consumers::rollout_progress(&client, NAMESPACE, &[target], TOKEN_B)
        .await
        .unwrap();
    assert_eq!(progress_a[0].state, ConsumerState::Progressing);
    assert_eq!(progress_b[0].state, ConsumerState::Progressing);
}

#[tokio::test]
async fn scaled_to_zero_and_missing_workloads_are_reported_not_written() {
    let (handle, client) = setup().await;
    create_deployment(&client, "idle", 0, json!({"containers": [app_container()]})).await;
    let targets = [
        listed(WorkloadKind::Deployment, "idle"),
        listed(WorkloadKind::StatefulSet, "does-not-exist"),
    ];

    let statuses = consumers::restart_all(&batcher(), &client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    let states: Vec<_> = statuses.iter().map(|status| status.state).collect();
    assert_eq!(
        states,
        [ConsumerState::ScaledToZero, ConsumerState::NotFound]
    );
    assert!(requests(&handle, "PATCH").is_empty());
    assert_eq!(
        restart_annotation(&get_deployment(&client, "idle").await),
        None
    );
    // A restart never creates the workload it was asked to restart.
    let missing = Api::<StatefulSet>::namespaced(client.clone(), NAMESPACE)
        .get_opt("does-not-exist")
        .await
        .unwrap();
    assert!(missing.is_none());

    let progress = consumers::rollout_progress(&client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    let summary = consumers::summarise(&progress);
    assert!(summary.all_done, "{summary:?}");
    assert_eq!(summary.missing.len(), 1);
}

#[tokio::test]
async fn restart_all_restarts_every_kind() {
    let (handle, client) = setup().await;
    create_deployment(
        &client,
        "orders-api",
        2,
        json!({"containers": [app_container()]}),
    )
    .await;
    create_stateful_set(
        &client,
        "orders-worker",
        json!({"containers": [app_container()]}),
    )
    .await;
    create_daemon_set(
        &client,
        "orders-agent",
        json!({"containers": [app_container()]}),
    )
    .await;
    let targets = [
        listed(WorkloadKind::Deployment, "orders-api"),
        listed(WorkloadKind::StatefulSet, "orders-worker"),
        listed(WorkloadKind::DaemonSet, "orders-agent"),
    ];

    let window = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let statuses = consumers::restart_all(
        &RestartBatcher::new(window),
        &client,
        NAMESPACE,
        &targets,
        TOKEN_A,
    )
    .await
    .unwrap();
    // The three batches wait out their windows together, not one after another (that would
    // take at least three windows).
    let elapsed = started.elapsed();
    assert!(
        elapsed >= window && elapsed < window * 14 / 5,
        "{elapsed:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|status| status.state == ConsumerState::Restarted),
        "{statuses:?}"
    );
    assert_eq!(requests(&handle, "PATCH").len(), 3);

    let stateful_set = Api::<StatefulSet>::namespaced(client.clone(), NAMESPACE)
        .get("orders-worker")
        .await
        .unwrap();
    let annotations = stateful_set
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(annotations[RESTARTED_FOR_ANNOTATION], TOKEN_A);
    let daemon_set = Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
        .get("orders-agent")
        .await
        .unwrap();
    let annotations = daemon_set
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(annotations[RESTARTED_FOR_ANNOTATION], TOKEN_A);

    // Again, for the same rotation: nothing written, all reported as already restarted.
    handle.state.faults.clear_requests();
    let statuses = consumers::restart_all(&batcher(), &client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    assert!(
        statuses
            .iter()
            .all(|status| status.state == ConsumerState::Restarted
                && status.message.as_deref() == Some("already restarted for this rotation"))
    );
    assert!(requests(&handle, "PATCH").is_empty());
}

#[tokio::test]
async fn a_concurrent_write_makes_the_restart_read_and_apply_again() {
    let (handle, client) = setup().await;
    create_deployment(
        &client,
        "orders-api",
        2,
        json!({"containers": [app_container()]}),
    )
    .await;
    // The first apply meets a conflict, as when a controller wrote status in between.
    handle.state.faults.add(
        FaultRule::from_json(&json!({"method": "PATCH", "path": "/deployments/orders-api", "status": 409, "count": 1}))
            .unwrap(),
    );
    let target = listed(WorkloadKind::Deployment, "orders-api");

    let outcome = batcher()
        .restart(&client, NAMESPACE, &target, TOKEN_A)
        .await
        .unwrap();
    assert_eq!(outcome, RestartOutcome::Restarted);
    let statuses: Vec<_> = requests(&handle, "PATCH")
        .iter()
        .map(|request| request["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [409, 200]);
    assert_eq!(
        restart_annotation(&get_deployment(&client, "orders-api").await).as_deref(),
        Some(TOKEN_A)
    );
}

#[tokio::test]
async fn a_stale_resource_version_is_refused_by_the_apply() {
    // The precondition the restart relies on: an apply carrying an old resourceVersion fails
    // instead of writing over a change it did not see.
    let (_handle, client) = setup().await;
    let created = create_deployment(
        &client,
        "orders-api",
        2,
        json!({"containers": [app_container()]}),
    )
    .await;
    let api = Api::<Deployment>::namespaced(client.clone(), NAMESPACE);
    api.patch(
        "orders-api",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "payments"}}})),
    )
    .await
    .unwrap();
    let body = consumers::restart::restart_patch(
        WorkloadKind::Deployment,
        "orders-api",
        created.resource_version().as_deref(),
        TOKEN_A,
    );
    let error = api
        .patch(
            "orders-api",
            &PatchParams::apply(consumers::FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, kube::Error::Api(status) if status.code == 409));
}

#[tokio::test]
async fn targets_discover_consumers_in_the_namespace_only_when_asked() {
    let (handle, client) = setup().await;
    create_deployment(&client, "orders-api", 2, env_from_pod(SECRET)).await;
    create_deployment(&client, "billing", 2, env_from_pod("billing-db")).await;
    create_stateful_set(
        &client,
        "orders-worker",
        json!({"containers": [app_container()],
               "volumes": [{"name": "credentials", "secret": {"secretName": SECRET}}]}),
    )
    .await;
    create_daemon_set(
        &client,
        "log-agent",
        json!({"containers": [app_container()]}),
    )
    .await;

    let mut spec = ConsumersSpec {
        restart: vec![
            WorkloadRef {
                kind: WorkloadKind::DaemonSet,
                name: "log-agent".to_owned(),
            },
            WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "orders-api".to_owned(),
            },
        ],
        auto_discover: true,
        rollout_timeout: None,
    };
    let targets = consumers::targets(&client, NAMESPACE, Some(&spec), SECRET)
        .await
        .unwrap();
    assert_eq!(
        targets,
        vec![
            listed(WorkloadKind::DaemonSet, "log-agent"),
            listed(WorkloadKind::Deployment, "orders-api"),
            ConsumerTarget {
                kind: WorkloadKind::StatefulSet,
                name: "orders-worker".to_owned(),
                how: TargetOrigin::Discovered,
            },
        ]
    );

    spec.restart.clear();
    let discovered = consumers::targets(&client, NAMESPACE, Some(&spec), SECRET)
        .await
        .unwrap();
    let names: Vec<_> = discovered
        .iter()
        .map(|target| target.name.as_str())
        .collect();
    assert_eq!(names, ["orders-api", "orders-worker"]);
    assert!(
        discovered
            .iter()
            .all(|target| target.how == TargetOrigin::Discovered)
    );

    // Without autoDiscover nothing is listed.
    handle.state.faults.clear_requests();
    spec.auto_discover = false;
    let none = consumers::targets(&client, NAMESPACE, Some(&spec), SECRET)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(
        consumers::targets(&client, NAMESPACE, None, SECRET)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(handle.state.faults.requests().is_empty());
}

#[tokio::test]
async fn rollout_progress_follows_the_status_the_controller_would_write() {
    let (_handle, client) = setup().await;
    create_deployment(&client, "orders-api", 2, env_from_pod(SECRET)).await;
    let targets = [listed(WorkloadKind::Deployment, "orders-api")];

    let before = consumers::rollout_progress(&client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    assert_eq!(before[0].state, ConsumerState::NotRestarted);

    consumers::restart_all(&batcher(), &client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    let progress = consumers::rollout_progress(&client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    assert_eq!(progress[0].state, ConsumerState::Progressing);
    assert!(!consumers::summarise(&progress).all_done);

    // What the Deployment controller would write as the rollout goes on: first the old pods
    // still running next to the new ones, then only new ones.
    let api = Api::<Deployment>::namespaced(client.clone(), NAMESPACE);
    let generation = api
        .get("orders-api")
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    let midway = json!({"status": {"observedGeneration": generation, "replicas": 3,
                                   "updatedReplicas": 2, "availableReplicas": 2}});
    api.patch_status("orders-api", &PatchParams::default(), &Patch::Merge(midway))
        .await
        .unwrap();
    let progress = consumers::rollout_progress(&client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    assert_eq!(progress[0].state, ConsumerState::Progressing);
    assert_eq!(
        progress[0].message.as_deref(),
        Some("1 old replicas pending termination")
    );

    let complete = json!({"status": {"observedGeneration": generation, "replicas": 2,
                                     "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}});
    api.patch_status(
        "orders-api",
        &PatchParams::default(),
        &Patch::Merge(complete),
    )
    .await
    .unwrap();
    let progress = consumers::rollout_progress(&client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    assert_eq!(progress[0].state, ConsumerState::RolledOut);
    assert!(consumers::summarise(&progress).all_done);

    // A later rotation's restart while this one is complete drops this token: that rotation
    // is done with, and the annotation stays short.
    consumers::restart_all(&batcher(), &client, NAMESPACE, &targets, TOKEN_B)
        .await
        .unwrap();
    let deployment = get_deployment(&client, "orders-api").await;
    assert_eq!(restart_annotation(&deployment).as_deref(), Some(TOKEN_B));
}

#[tokio::test]
async fn a_restart_during_an_unfinished_rollout_keeps_its_token() {
    let (_handle, client) = setup().await;
    create_deployment(&client, "orders-api", 2, env_from_pod(SECRET)).await;
    let targets = [listed(WorkloadKind::Deployment, "orders-api")];
    consumers::restart_all(&batcher(), &client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    // Rotation A's rollout has not finished when rotation B restarts the same workload: the
    // new template serves A too, so A must still find its token.
    consumers::restart_all(&batcher(), &client, NAMESPACE, &targets, TOKEN_B)
        .await
        .unwrap();
    let deployment = get_deployment(&client, "orders-api").await;
    assert_eq!(
        restart_annotation(&deployment).as_deref(),
        Some("kt-aaaa,kt-bbbb")
    );
    let progress = consumers::rollout_progress(&client, NAMESPACE, &targets, TOKEN_A)
        .await
        .unwrap();
    assert_eq!(progress[0].state, ConsumerState::Progressing);
}
