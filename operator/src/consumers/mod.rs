//! The controller's API for the workloads consuming a ManagedSecret's Secret: finding them,
//! restarting them after a rotation, and following their rollout. Kubernetes calls live only
//! here and in `restart.rs`; the decisions live in the pure `discovery`, `rollout` and `workload`.

pub mod discovery;
pub mod error;
pub mod restart;
pub mod rollout;
pub mod workload;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use keyturn_crds::{ConsumersSpec, WorkloadKind};
use kube::Client;
use kube::api::{Api, ListParams};

pub use discovery::{
    ConsumerTarget, ContainerList, ContainerName, SecretReference, TargetOrigin, discover,
    merge_targets, secret_references,
};
pub use error::{ConsumerError, ErrorCategory};
pub use restart::{DEFAULT_BATCH_WINDOW, FIELD_MANAGER, RestartBatcher, RestartOutcome};
pub use rollout::{RolloutStatus, rollout_status};
pub use workload::{RESTARTED_FOR_ANNOTATION, Workload, kind_name};

/// The status types live in keyturn-crds: they are part of the ManagedSecret's status schema.
pub use keyturn_crds::{ConsumerState, ConsumerStatus};

fn consumer_status(
    target: &ConsumerTarget,
    state: ConsumerState,
    message: Option<String>,
) -> ConsumerStatus {
    ConsumerStatus {
        kind: target.kind,
        name: target.name.clone(),
        state,
        message,
    }
}

/// What a set of consumer states means for the rotation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Nothing left to wait for: every consumer rolled out, is scaled to zero or does not
    /// exist (a workload that does not exist cannot be using the previous credential).
    pub all_done: bool,
    /// Consumers whose rollout failed.
    pub failed: Vec<ConsumerStatus>,
    /// Consumers restarted or still rolling out.
    pub waiting: Vec<ConsumerStatus>,
    /// Consumers whose template lacks the rotation's token: restart them again.
    pub not_restarted: Vec<ConsumerStatus>,
    /// Consumers that do not exist, worth a warning (a listed name may be misspelt).
    pub missing: Vec<ConsumerStatus>,
}

/// Sorts consumer states into what the controller acts on.
pub fn summarise(statuses: &[ConsumerStatus]) -> Summary {
    let mut summary = Summary::default();
    for status in statuses {
        match status.state {
            ConsumerState::RolledOut | ConsumerState::ScaledToZero => {}
            ConsumerState::NotFound => summary.missing.push(status.clone()),
            ConsumerState::Failed => summary.failed.push(status.clone()),
            ConsumerState::Restarted | ConsumerState::Progressing => {
                summary.waiting.push(status.clone());
            }
            ConsumerState::NotRestarted => summary.not_restarted.push(status.clone()),
        }
    }
    summary.all_done =
        summary.failed.is_empty() && summary.waiting.is_empty() && summary.not_restarted.is_empty();
    summary
}

/// The workloads to restart for the Secret `secret_name`: the listed ones, then (with
/// `autoDiscover`) the Deployments, StatefulSets and DaemonSets of the namespace whose pod
/// template references the Secret. Empty without a consumers spec.
pub async fn targets(
    client: &Client,
    namespace: &str,
    spec: Option<&ConsumersSpec>,
    secret_name: &str,
) -> Result<Vec<ConsumerTarget>, ConsumerError> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    let discovered = if spec.auto_discover {
        discover(&list_workloads(client, namespace).await?, secret_name)
    } else {
        Vec::new()
    };
    Ok(merge_targets(&spec.restart, discovered))
}

/// Restarts every target for the rotation `token` through the shared batcher and waits for all
/// their batches. Returns the first error when any batch failed; the others have been applied
/// then, and a retry finds them already restarted.
pub async fn restart_all(
    batcher: &RestartBatcher,
    client: &Client,
    namespace: &str,
    targets: &[ConsumerTarget],
    token: &str,
) -> Result<Vec<ConsumerStatus>, ConsumerError> {
    // Submit everything first so the batches' windows run concurrently, not one after another.
    let pending = targets
        .iter()
        .map(|target| batcher.submit(client, namespace, target.kind, &target.name, token))
        .collect::<Result<Vec<_>, _>>()?;
    let mut statuses = Vec::with_capacity(targets.len());
    let mut first_error = None;
    for (target, pending) in targets.iter().zip(pending) {
        match pending.outcome().await {
            Ok(outcome) => statuses.push(restart_status(target, outcome)),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(statuses),
    }
}

fn restart_status(target: &ConsumerTarget, outcome: RestartOutcome) -> ConsumerStatus {
    match outcome {
        RestartOutcome::Restarted => consumer_status(target, ConsumerState::Restarted, None),
        RestartOutcome::AlreadyRestarted => consumer_status(
            target,
            ConsumerState::Restarted,
            Some("already restarted for this rotation".to_owned()),
        ),
        RestartOutcome::ScaledToZero => scaled_to_zero(target),
        RestartOutcome::NotFound => not_found(target),
    }
}

fn scaled_to_zero(target: &ConsumerTarget) -> ConsumerStatus {
    consumer_status(
        target,
        ConsumerState::ScaledToZero,
        Some("scaled to zero: not restarted, pods started later read the new Secret".to_owned()),
    )
}

fn not_found(target: &ConsumerTarget) -> ConsumerStatus {
    consumer_status(
        target,
        ConsumerState::NotFound,
        Some(format!("{target} does not exist")),
    )
}

/// Where each target's rollout stands for the rotation `token`.
pub async fn rollout_progress(
    client: &Client,
    namespace: &str,
    targets: &[ConsumerTarget],
    token: &str,
) -> Result<Vec<ConsumerStatus>, ConsumerError> {
    let mut statuses = Vec::with_capacity(targets.len());
    for target in targets {
        let status = match get_workload(client, namespace, target.kind, &target.name).await? {
            None => not_found(target),
            Some(workload) => match rollout_status(&workload, token) {
                RolloutStatus::Complete => consumer_status(target, ConsumerState::RolledOut, None),
                RolloutStatus::Progressing { message } => {
                    consumer_status(target, ConsumerState::Progressing, Some(message))
                }
                RolloutStatus::Failed { message } => {
                    consumer_status(target, ConsumerState::Failed, Some(message))
                }
                RolloutStatus::ScaledToZero => scaled_to_zero(target),
                RolloutStatus::NotRestarted => consumer_status(
                    target,
                    ConsumerState::NotRestarted,
                    Some(format!(
                        "the pod template's {RESTARTED_FOR_ANNOTATION} annotation does not list this rotation"
                    )),
                ),
            },
        };
        statuses.push(status);
    }
    Ok(statuses)
}

/// Reads one workload; `None` when it does not exist.
pub(crate) async fn get_workload(
    client: &Client,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<Option<Workload>, ConsumerError> {
    let client = client.clone();
    let result = match kind {
        WorkloadKind::Deployment => Api::<Deployment>::namespaced(client, namespace)
            .get_opt(name)
            .await
            .map(|found| found.map(Workload::from)),
        WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client, namespace)
            .get_opt(name)
            .await
            .map(|found| found.map(Workload::from)),
        WorkloadKind::DaemonSet => Api::<DaemonSet>::namespaced(client, namespace)
            .get_opt(name)
            .await
            .map(|found| found.map(Workload::from)),
    };
    result.map_err(|source| ConsumerError::Workload {
        call: "get",
        kind: kind_name(kind),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Arc::new(source),
    })
}

/// Every Deployment, StatefulSet and DaemonSet of the namespace, in that order.
async fn list_workloads(client: &Client, namespace: &str) -> Result<Vec<Workload>, ConsumerError> {
    let list_error = |kind: WorkloadKind| {
        move |source| ConsumerError::List {
            kind: kind_name(kind),
            namespace: namespace.to_owned(),
            source: Arc::new(source),
        }
    };
    let parameters = ListParams::default();
    let mut workloads = Vec::new();
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&parameters)
        .await
        .map_err(list_error(WorkloadKind::Deployment))?;
    workloads.extend(deployments.items.into_iter().map(Workload::from));
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list(&parameters)
        .await
        .map_err(list_error(WorkloadKind::StatefulSet))?;
    workloads.extend(stateful_sets.items.into_iter().map(Workload::from));
    let daemon_sets = Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .list(&parameters)
        .await
        .map_err(list_error(WorkloadKind::DaemonSet))?;
    workloads.extend(daemon_sets.items.into_iter().map(Workload::from));
    Ok(workloads)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn status(name: &str, state: ConsumerState) -> ConsumerStatus {
        ConsumerStatus {
            kind: WorkloadKind::Deployment,
            name: name.to_owned(),
            state,
            message: None,
        }
    }

    #[test]
    fn summary_waits_for_every_consumer() {
        let statuses = [
            status("rolled-out", ConsumerState::RolledOut),
            status("idle", ConsumerState::ScaledToZero),
            status("gone", ConsumerState::NotFound),
        ];
        let summary = summarise(&statuses);
        assert!(summary.all_done);
        assert_eq!(summary.missing, vec![statuses[2].clone()]);
        assert!(summarise(&[]).all_done);

        let statuses = [
            status("rolled-out", ConsumerState::RolledOut),
            status("restarted", ConsumerState::Restarted),
            status("rolling", ConsumerState::Progressing),
            status("stuck", ConsumerState::Failed),
            status("superseded", ConsumerState::NotRestarted),
        ];
        let summary = summarise(&statuses);
        assert!(!summary.all_done);
        assert_eq!(summary.waiting, statuses[1..3].to_vec());
        assert_eq!(summary.failed, vec![statuses[3].clone()]);
        assert_eq!(summary.not_restarted, vec![statuses[4].clone()]);
    }

    #[test]
    fn status_serialises_camel_case() {
        let value = serde_json::to_value(ConsumerStatus {
            kind: WorkloadKind::StatefulSet,
            name: "orders-worker".to_owned(),
            state: ConsumerState::ScaledToZero,
            message: Some("idle".to_owned()),
        })
        .unwrap();
        assert_eq!(
            value,
            serde_json::json!({"kind": "StatefulSet", "name": "orders-worker",
                               "state": "ScaledToZero", "message": "idle"})
        );
        let without_message =
            serde_json::to_value(status("api", ConsumerState::RolledOut)).unwrap();
        assert_eq!(
            without_message,
            serde_json::json!({"kind": "Deployment", "name": "api", "state": "RolledOut"})
        );
    }
}
