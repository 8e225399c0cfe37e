//! The workloads keyturn restarts: one enum over apps/v1 Deployment, StatefulSet and DaemonSet,
//! and the restart annotation on their pod template (its key and its token-list format), so the
//! other consumer modules never match on kinds or parse annotation values themselves.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use keyturn_crds::WorkloadKind;

/// Pod-template annotation whose value lists the rotation ids (restart tokens) of the restart
/// batch that last changed the template. Changing it is what makes the workload controller
/// replace the pods, as `kubectl rollout restart` does with its own annotation.
pub const RESTARTED_FOR_ANNOTATION: &str = "keyturn.dev/restarted-for";

/// A workload that can consume a Secret through its pod template.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
}

impl From<Deployment> for Workload {
    fn from(deployment: Deployment) -> Self {
        Workload::Deployment(deployment)
    }
}

impl From<StatefulSet> for Workload {
    fn from(stateful_set: StatefulSet) -> Self {
        Workload::StatefulSet(stateful_set)
    }
}

impl From<DaemonSet> for Workload {
    fn from(daemon_set: DaemonSet) -> Self {
        Workload::DaemonSet(daemon_set)
    }
}

impl Workload {
    pub fn kind(&self) -> WorkloadKind {
        match self {
            Workload::Deployment(_) => WorkloadKind::Deployment,
            Workload::StatefulSet(_) => WorkloadKind::StatefulSet,
            Workload::DaemonSet(_) => WorkloadKind::DaemonSet,
        }
    }

    /// The object's name; empty only for an object that was never stored.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.metadata().resource_version.as_deref()
    }

    fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Workload::Deployment(deployment) => &deployment.metadata,
            Workload::StatefulSet(stateful_set) => &stateful_set.metadata,
            Workload::DaemonSet(daemon_set) => &daemon_set.metadata,
        }
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Workload::Deployment(deployment) => deployment.spec.as_ref().map(|spec| &spec.template),
            Workload::StatefulSet(stateful_set) => {
                stateful_set.spec.as_ref().map(|spec| &spec.template)
            }
            Workload::DaemonSet(daemon_set) => daemon_set.spec.as_ref().map(|spec| &spec.template),
        }
    }

    pub fn pod_spec(&self) -> Option<&PodSpec> {
        self.template().and_then(|template| template.spec.as_ref())
    }

    /// The replica count the workload asks for: `spec.replicas`, which the API server defaults
    /// to 1 when absent. None for a DaemonSet, whose pod count follows the nodes.
    pub fn desired_replicas(&self) -> Option<i32> {
        match self {
            Workload::Deployment(deployment) => Some(
                deployment
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.replicas)
                    .unwrap_or(1),
            ),
            Workload::StatefulSet(stateful_set) => Some(
                stateful_set
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.replicas)
                    .unwrap_or(1),
            ),
            Workload::DaemonSet(_) => None,
        }
    }

    /// No pods run, so none can hold the previous credential: nothing to restart or wait for.
    pub fn is_scaled_to_zero(&self) -> bool {
        self.desired_replicas() == Some(0)
    }

    /// The restart tokens the pod template currently carries (empty when it has none).
    pub fn restart_tokens(&self) -> BTreeSet<String> {
        self.template()
            .and_then(|template| template.metadata.as_ref())
            .and_then(|metadata| metadata.annotations.as_ref())
            .and_then(|annotations| annotations.get(RESTARTED_FOR_ANNOTATION))
            .map(|value| parse_restart_tokens(value))
            .unwrap_or_default()
    }
}

/// The kind as Kubernetes spells it, for messages and apply bodies.
pub fn kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::DaemonSet => "DaemonSet",
    }
}

/// Splits an annotation value into its tokens. Tolerates spaces and empty items, which a
/// person editing the annotation by hand may leave behind.
pub fn parse_restart_tokens(value: &str) -> BTreeSet<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The annotation value for a set of tokens: sorted and comma-separated, so the same batch
/// always produces the same value and a repeated apply is a no-op.
pub fn format_restart_tokens(tokens: &BTreeSet<String>) -> String {
    tokens
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a token can be stored in the annotation and parsed back unchanged.
pub fn is_valid_restart_token(token: &str) -> bool {
    !token.is_empty() && !token.contains(',') && !token.chars().any(char::is_whitespace)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tokens(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn tokens_round_trip_sorted_and_deduplicated() {
        let merged = tokens(&["kt-b", "kt-a", "kt-b"]);
        assert_eq!(format_restart_tokens(&merged), "kt-a,kt-b");
        assert_eq!(parse_restart_tokens("kt-a,kt-b"), merged);
        assert_eq!(parse_restart_tokens(" kt-b , ,kt-a,"), merged);
        assert!(parse_restart_tokens("").is_empty());
        assert_eq!(format_restart_tokens(&BTreeSet::new()), "");
    }

    #[test]
    fn tokens_with_separators_are_invalid() {
        assert!(is_valid_restart_token("kt-0123abcd"));
        assert!(!is_valid_restart_token(""));
        assert!(!is_valid_restart_token("kt-a,kt-b"));
        assert!(!is_valid_restart_token("kt a"));
    }

    #[test]
    fn replicas_default_to_one_and_daemon_sets_have_none() {
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api"},
            "spec": {"selector": {}, "template": {}}
        }))
        .unwrap();
        let workload = Workload::from(deployment);
        assert_eq!(workload.desired_replicas(), Some(1));
        assert!(!workload.is_scaled_to_zero());
        assert_eq!(
            Workload::from(DaemonSet::default()).desired_replicas(),
            None
        );
    }
}
