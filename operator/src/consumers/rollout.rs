//! Whether a restarted workload has rolled out: the checks `kubectl rollout status` makes per
//! kind, read from the object's spec and status, plus keyturn's own question of whether the pod
//! template carries a rotation's restart token yet. Pure: no API calls.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use keyturn_crds::WorkloadKind;

use super::workload::{Workload, kind_name};

/// Where a workload's rollout stands for one rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutStatus {
    /// Every pod runs the current template, so every pod has read the new Secret.
    Complete,
    /// Pods are still being replaced (or the controller has not seen the change yet).
    Progressing { message: String },
    /// The rollout cannot finish without someone acting (e.g. a progress deadline passed).
    Failed { message: String },
    /// The workload runs no pods, so none holds the previous credential.
    ScaledToZero,
    /// The pod template does not carry the rotation's restart token: the restart has not been
    /// applied, or a later restart batch replaced the annotation after this one's rollout
    /// finished. Asking for the restart again is safe.
    NotRestarted,
}

/// The rollout status of `workload` for the rotation whose restart token is `restart_token`.
pub fn rollout_status(workload: &Workload, restart_token: &str) -> RolloutStatus {
    if workload.is_scaled_to_zero() {
        return RolloutStatus::ScaledToZero;
    }
    if !workload.restart_tokens().contains(restart_token) {
        return RolloutStatus::NotRestarted;
    }
    template_rollout_status(workload)
}

/// Whether the workload's current pod template has rolled out, whatever restart (if any)
/// produced it.
pub fn template_rollout_status(workload: &Workload) -> RolloutStatus {
    if workload.is_scaled_to_zero() {
        return RolloutStatus::ScaledToZero;
    }
    match workload {
        Workload::Deployment(deployment) => deployment_rollout(deployment),
        Workload::StatefulSet(stateful_set) => stateful_set_rollout(stateful_set),
        Workload::DaemonSet(daemon_set) => daemon_set_rollout(daemon_set),
    }
}

fn progressing(message: String) -> RolloutStatus {
    RolloutStatus::Progressing { message }
}

// Counts and revisions in a status describe the generation the controller last observed: until
// it catches up with the spec, they say nothing about the restarted template.
fn generation_not_observed(
    kind: &str,
    generation: Option<i64>,
    observed_generation: Option<i64>,
) -> Option<RolloutStatus> {
    let generation = generation.unwrap_or(0);
    match observed_generation {
        Some(observed) if observed >= generation => None,
        Some(observed) => Some(progressing(format!(
            "waiting for the {kind} controller to observe generation {generation} (it has seen {observed})"
        ))),
        None => Some(progressing(format!(
            "waiting for the {kind} controller to observe generation {generation}"
        ))),
    }
}

fn deployment_rollout(deployment: &Deployment) -> RolloutStatus {
    let kind = kind_name(WorkloadKind::Deployment);
    let Some(status) = &deployment.status else {
        return progressing(format!(
            "waiting for the {kind} controller to report status"
        ));
    };
    if let Some(waiting) = generation_not_observed(
        kind,
        deployment.metadata.generation,
        status.observed_generation,
    ) {
        return waiting;
    }
    let deadline_exceeded = status.conditions.iter().flatten().find(|condition| {
        condition.type_ == "Progressing"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(condition) = deadline_exceeded {
        let message = match condition.message.as_deref() {
            Some(detail) if !detail.is_empty() => {
                format!("the {kind} exceeded its progress deadline: {detail}")
            }
            _ => format!("the {kind} exceeded its progress deadline"),
        };
        return RolloutStatus::Failed { message };
    }
    let spec = deployment.spec.as_ref();
    let desired = spec.and_then(|spec| spec.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let waiting_for = if updated < desired {
        Some(format!("{updated} of {desired} replicas updated"))
    } else if total > updated {
        Some(format!(
            "{} old replicas pending termination",
            total - updated
        ))
    } else if available < updated {
        Some(format!(
            "{available} of {updated} updated replicas available"
        ))
    } else {
        None
    };
    match waiting_for {
        None => RolloutStatus::Complete,
        // A paused Deployment never replaces its pods: say so, since the user must act.
        Some(message) if spec.and_then(|spec| spec.paused) == Some(true) => {
            progressing(format!("{message}; the {kind} is paused"))
        }
        Some(message) => progressing(message),
    }
}

/// `OnDelete` workloads only replace a pod when someone deletes it: a template change alone
/// never reaches the pods, so waiting cannot help.
fn on_delete_failure(kind: &str) -> RolloutStatus {
    RolloutStatus::Failed {
        message: format!(
            "the {kind} uses the OnDelete update strategy: its pods read the new Secret only when they are deleted"
        ),
    }
}

fn stateful_set_rollout(stateful_set: &StatefulSet) -> RolloutStatus {
    let kind = kind_name(WorkloadKind::StatefulSet);
    let spec = stateful_set.spec.as_ref();
    let strategy = spec.and_then(|spec| spec.update_strategy.as_ref());
    if strategy.and_then(|strategy| strategy.type_.as_deref()) == Some("OnDelete") {
        return on_delete_failure(kind);
    }
    let Some(status) = &stateful_set.status else {
        return progressing(format!(
            "waiting for the {kind} controller to report status"
        ));
    };
    if let Some(waiting) = generation_not_observed(
        kind,
        stateful_set.metadata.generation,
        status.observed_generation,
    ) {
        return waiting;
    }
    let desired = spec.and_then(|spec| spec.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    if updated < desired {
        // Pods below a partition keep the old template, and env-based consumers the previous
        // credential, until the user lowers the partition: keep waiting, and say why.
        let partition = strategy
            .and_then(|strategy| strategy.rolling_update.as_ref())
            .and_then(|rolling_update| rolling_update.partition)
            .unwrap_or(0);
        let message = format!("{updated} of {desired} replicas updated");
        return progressing(if partition > 0 {
            format!(
                "{message}; pods below partition {partition} are only updated when the partition is lowered"
            )
        } else {
            message
        });
    }
    if ready < desired {
        return progressing(format!("{ready} of {desired} replicas ready"));
    }
    if let (Some(current), Some(update)) = (&status.current_revision, &status.update_revision)
        && current != update
    {
        return progressing(format!(
            "waiting for current revision {current} to become update revision {update}"
        ));
    }
    RolloutStatus::Complete
}

fn daemon_set_rollout(daemon_set: &DaemonSet) -> RolloutStatus {
    let kind = kind_name(WorkloadKind::DaemonSet);
    let strategy = daemon_set
        .spec
        .as_ref()
        .and_then(|spec| spec.update_strategy.as_ref());
    if strategy.and_then(|strategy| strategy.type_.as_deref()) == Some("OnDelete") {
        return on_delete_failure(kind);
    }
    let Some(status) = &daemon_set.status else {
        return progressing(format!(
            "waiting for the {kind} controller to report status"
        ));
    };
    if let Some(waiting) = generation_not_observed(
        kind,
        daemon_set.metadata.generation,
        status.observed_generation,
    ) {
        return waiting;
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    if updated < desired {
        return progressing(format!("{updated} of {desired} pods updated"));
    }
    if available < desired {
        return progressing(format!("{available} of {desired} updated pods available"));
    }
    RolloutStatus::Complete
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::consumers::workload::RESTARTED_FOR_ANNOTATION;

    const TOKEN: &str = "kt-1111";

    fn template(tokens: &str) -> Value {
        json!({"metadata": {"annotations": {RESTARTED_FOR_ANNOTATION: tokens}},
               "spec": {"containers": [{"name": "app"}]}})
    }

    fn deployment(replicas: Option<i32>, status: Value) -> Workload {
        deployment_with(replicas, TOKEN, false, status)
    }

    fn deployment_with(
        replicas: Option<i32>,
        tokens: &str,
        paused: bool,
        status: Value,
    ) -> Workload {
        let mut spec = json!({"selector": {}, "template": template(tokens), "paused": paused});
        if let Some(replicas) = replicas {
            spec["replicas"] = json!(replicas);
        }
        let mut object = json!({"metadata": {"name": "orders-api", "generation": 4}, "spec": spec});
        if !status.is_null() {
            object["status"] = status;
        }
        Workload::from(serde_json::from_value::<Deployment>(object).unwrap())
    }

    fn complete_deployment_status() -> Value {
        json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3,
               "readyReplicas": 3, "availableReplicas": 3})
    }

    fn with(mut status: Value, field: &str, value: Value) -> Value {
        status[field] = value;
        status
    }

    fn is_progressing(status: &RolloutStatus, expected: &str) -> bool {
        matches!(status, RolloutStatus::Progressing { message } if message.contains(expected))
    }

    #[test]
    fn deployment_complete() {
        let workload = deployment(Some(3), complete_deployment_status());
        assert_eq!(rollout_status(&workload, TOKEN), RolloutStatus::Complete);
        // A later generation observed is fine too.
        let ahead = with(complete_deployment_status(), "observedGeneration", json!(5));
        assert_eq!(
            rollout_status(&deployment(Some(3), ahead), TOKEN),
            RolloutStatus::Complete
        );
    }

    #[test]
    fn deployment_progressing_for_each_unmet_condition() {
        let cases = [
            (Value::Null, "report status"),
            (
                with(complete_deployment_status(), "observedGeneration", json!(3)),
                "observe generation 4",
            ),
            (
                json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
                "observe generation 4",
            ),
            (
                with(complete_deployment_status(), "updatedReplicas", json!(2)),
                "2 of 3 replicas updated",
            ),
            (
                with(complete_deployment_status(), "replicas", json!(4)),
                "1 old replicas pending termination",
            ),
            (
                with(complete_deployment_status(), "availableReplicas", json!(1)),
                "1 of 3 updated replicas available",
            ),
        ];
        for (status, expected) in cases {
            let result = rollout_status(&deployment(Some(3), status.clone()), TOKEN);
            assert!(is_progressing(&result, expected), "{status}: {result:?}");
        }
    }

    #[test]
    fn deployment_replicas_default_to_one() {
        let status = json!({"observedGeneration": 4, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
        assert_eq!(
            rollout_status(&deployment(None, status), TOKEN),
            RolloutStatus::Complete
        );
        let status = json!({"observedGeneration": 4});
        assert!(is_progressing(
            &rollout_status(&deployment(None, status), TOKEN),
            "0 of 1 replicas updated"
        ));
    }

    #[test]
    fn paused_deployment_says_so() {
        let status = with(complete_deployment_status(), "updatedReplicas", json!(0));
        let result = rollout_status(&deployment_with(Some(3), TOKEN, true, status), TOKEN);
        assert!(is_progressing(&result, "is paused"), "{result:?}");
    }

    #[test]
    fn deployment_failed_when_progress_deadline_exceeded() {
        let status = with(
            complete_deployment_status(),
            "conditions",
            json!([{"type": "Available", "status": "True"},
                   {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet \"orders-api-5d4\" has timed out progressing."}]),
        );
        let result = rollout_status(&deployment(Some(3), status), TOKEN);
        assert_eq!(
            result,
            RolloutStatus::Failed {
                message: "the Deployment exceeded its progress deadline: ReplicaSet \"orders-api-5d4\" has timed out progressing.".to_owned()
            }
        );
        // Progressing=True with another reason is not a failure.
        let status = with(
            complete_deployment_status(),
            "conditions",
            json!([{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]),
        );
        assert_eq!(
            rollout_status(&deployment(Some(3), status), TOKEN),
            RolloutStatus::Complete
        );
    }

    #[test]
    fn scaled_to_zero_and_not_restarted() {
        assert_eq!(
            rollout_status(&deployment(Some(0), Value::Null), TOKEN),
            RolloutStatus::ScaledToZero
        );
        let other = deployment_with(
            Some(3),
            "kt-2222,kt-3333",
            false,
            complete_deployment_status(),
        );
        assert_eq!(rollout_status(&other, TOKEN), RolloutStatus::NotRestarted);
        assert_eq!(template_rollout_status(&other), RolloutStatus::Complete);
        let batch = deployment_with(
            Some(3),
            "kt-0000,kt-1111",
            false,
            complete_deployment_status(),
        );
        assert_eq!(rollout_status(&batch, TOKEN), RolloutStatus::Complete);
        let unannotated: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "orders-api"},
            "spec": {"selector": {}, "template": {}}
        }))
        .unwrap();
        assert_eq!(
            rollout_status(&Workload::from(unannotated), TOKEN),
            RolloutStatus::NotRestarted
        );
    }

    fn stateful_set(replicas: Option<i32>, strategy: Value, status: Value) -> Workload {
        let mut spec =
            json!({"selector": {}, "template": template(TOKEN), "serviceName": "orders"});
        if let Some(replicas) = replicas {
            spec["replicas"] = json!(replicas);
        }
        if !strategy.is_null() {
            spec["updateStrategy"] = strategy;
        }
        let mut object =
            json!({"metadata": {"name": "orders-worker", "generation": 2}, "spec": spec});
        if !status.is_null() {
            object["status"] = status;
        }
        Workload::from(serde_json::from_value::<StatefulSet>(object).unwrap())
    }

    fn complete_stateful_set_status() -> Value {
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
               "currentRevision": "orders-worker-7f", "updateRevision": "orders-worker-7f"})
    }

    #[test]
    fn stateful_set_complete() {
        let workload = stateful_set(Some(3), Value::Null, complete_stateful_set_status());
        assert_eq!(rollout_status(&workload, TOKEN), RolloutStatus::Complete);
        let rolling = json!({"type": "RollingUpdate"});
        let without_revisions = json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1});
        assert_eq!(
            rollout_status(&stateful_set(None, rolling, without_revisions), TOKEN),
            RolloutStatus::Complete
        );
    }

    #[test]
    fn stateful_set_progressing_for_each_unmet_condition() {
        let cases = [
            (Value::Null, "report status"),
            (
                with(
                    complete_stateful_set_status(),
                    "observedGeneration",
                    json!(1),
                ),
                "observe generation 2",
            ),
            (
                with(complete_stateful_set_status(), "updatedReplicas", json!(1)),
                "1 of 3 replicas updated",
            ),
            (
                with(complete_stateful_set_status(), "readyReplicas", json!(2)),
                "2 of 3 replicas ready",
            ),
            (
                with(
                    complete_stateful_set_status(),
                    "currentRevision",
                    json!("orders-worker-6c"),
                ),
                "current revision orders-worker-6c to become update revision orders-worker-7f",
            ),
        ];
        for (status, expected) in cases {
            let result = rollout_status(&stateful_set(Some(3), Value::Null, status.clone()), TOKEN);
            assert!(is_progressing(&result, expected), "{status}: {result:?}");
        }
    }

    #[test]
    fn stateful_set_partition_and_on_delete() {
        let partitioned = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
        let status = with(complete_stateful_set_status(), "updatedReplicas", json!(1));
        let result = rollout_status(&stateful_set(Some(3), partitioned, status), TOKEN);
        assert!(is_progressing(&result, "below partition 2"), "{result:?}");

        let on_delete = json!({"type": "OnDelete"});
        let result = rollout_status(
            &stateful_set(Some(3), on_delete, complete_stateful_set_status()),
            TOKEN,
        );
        assert!(
            matches!(result, RolloutStatus::Failed { message } if message.contains("OnDelete"))
        );
    }

    #[test]
    fn stateful_set_scaled_to_zero_and_not_restarted() {
        assert_eq!(
            rollout_status(&stateful_set(Some(0), Value::Null, Value::Null), TOKEN),
            RolloutStatus::ScaledToZero
        );
        let workload = stateful_set(Some(3), Value::Null, complete_stateful_set_status());
        assert_eq!(
            rollout_status(&workload, "kt-9999"),
            RolloutStatus::NotRestarted
        );
    }

    fn daemon_set(strategy: Value, status: Value) -> Workload {
        let mut spec = json!({"selector": {}, "template": template(TOKEN)});
        if !strategy.is_null() {
            spec["updateStrategy"] = strategy;
        }
        let mut object =
            json!({"metadata": {"name": "orders-agent", "generation": 7}, "spec": spec});
        if !status.is_null() {
            object["status"] = status;
        }
        Workload::from(serde_json::from_value::<DaemonSet>(object).unwrap())
    }

    fn complete_daemon_set_status() -> Value {
        json!({"observedGeneration": 7, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
               "numberMisscheduled": 0, "numberReady": 4, "updatedNumberScheduled": 4,
               "numberAvailable": 4})
    }

    #[test]
    fn daemon_set_complete() {
        let workload = daemon_set(Value::Null, complete_daemon_set_status());
        assert_eq!(rollout_status(&workload, TOKEN), RolloutStatus::Complete);
        // No matching nodes: nothing to roll out, and not "scaled to zero" either.
        let empty = json!({"observedGeneration": 7, "desiredNumberScheduled": 0, "currentNumberScheduled": 0,
                           "numberMisscheduled": 0, "numberReady": 0});
        assert_eq!(
            rollout_status(&daemon_set(Value::Null, empty), TOKEN),
            RolloutStatus::Complete
        );
    }

    #[test]
    fn daemon_set_progressing_for_each_unmet_condition() {
        let cases = [
            (Value::Null, "report status"),
            (
                with(complete_daemon_set_status(), "observedGeneration", json!(6)),
                "observe generation 7",
            ),
            (
                with(
                    complete_daemon_set_status(),
                    "updatedNumberScheduled",
                    json!(3),
                ),
                "3 of 4 pods updated",
            ),
            (
                with(complete_daemon_set_status(), "numberAvailable", json!(2)),
                "2 of 4 updated pods available",
            ),
        ];
        for (status, expected) in cases {
            let result = rollout_status(&daemon_set(Value::Null, status.clone()), TOKEN);
            assert!(is_progressing(&result, expected), "{status}: {result:?}");
        }
    }

    #[test]
    fn daemon_set_on_delete_and_not_restarted() {
        let result = rollout_status(
            &daemon_set(json!({"type": "OnDelete"}), complete_daemon_set_status()),
            TOKEN,
        );
        assert!(
            matches!(result, RolloutStatus::Failed { message } if message.contains("OnDelete"))
        );
        let workload = daemon_set(Value::Null, complete_daemon_set_status());
        assert_eq!(
            rollout_status(&workload, "kt-9999"),
            RolloutStatus::NotRestarted
        );
    }
}
