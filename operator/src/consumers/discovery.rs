//! Which workloads consume a Secret: every way a pod template can reference it (environment
//! variables, envFrom, secret and projected volumes, in every container list), and the merge of
//! discovered workloads with the ones a ManagedSecret lists explicitly. Pure: no API calls.

use std::collections::HashSet;
use std::fmt;

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, PodSpec};
use keyturn_crds::{WorkloadKind, WorkloadRef};
use serde::{Deserialize, Serialize};

use super::workload::{Workload, kind_name};

/// The pod-spec list a container belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerList {
    Containers,
    InitContainers,
    EphemeralContainers,
}

impl ContainerList {
    fn describe(self) -> &'static str {
        match self {
            ContainerList::Containers => "container",
            ContainerList::InitContainers => "init container",
            ContainerList::EphemeralContainers => "ephemeral container",
        }
    }
}

/// A container, named by its list and its name (names are unique across all lists of a pod,
/// but the list tells a reader where to look).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerName {
    pub list: ContainerList,
    pub name: String,
}

/// One place in a pod spec that reads the Secret. `optional` references count too: when the
/// Secret exists the pod reads it, so the pod holds the credential like any other consumer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecretReference {
    /// `env[].valueFrom.secretKeyRef`: one key, read into `variable` when the container starts.
    EnvVariable {
        container: ContainerName,
        variable: String,
        key: String,
        optional: bool,
    },
    /// `envFrom[].secretRef`: every key, read when the container starts.
    EnvFrom {
        container: ContainerName,
        optional: bool,
    },
    /// `volumes[].secret.secretName`.
    SecretVolume { volume: String, optional: bool },
    /// `volumes[].projected.sources[].secret.name`.
    ProjectedVolume { volume: String, optional: bool },
}

impl fmt::Display for SecretReference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretReference::EnvVariable {
                container,
                variable,
                key,
                ..
            } => write!(
                formatter,
                "{} {:?}: env {variable} from key {key:?}",
                container.list.describe(),
                container.name
            ),
            SecretReference::EnvFrom { container, .. } => write!(
                formatter,
                "{} {:?}: envFrom",
                container.list.describe(),
                container.name
            ),
            SecretReference::SecretVolume { volume, .. } => {
                write!(formatter, "volume {volume:?}: secret volume")
            }
            SecretReference::ProjectedVolume { volume, .. } => {
                write!(formatter, "volume {volume:?}: projected volume")
            }
        }
    }
}

/// Every reference to the Secret `secret_name` in `pod_spec`, in pod-spec order (containers,
/// init containers, ephemeral containers, then volumes); empty when there is none.
pub fn secret_references(pod_spec: &PodSpec, secret_name: &str) -> Vec<SecretReference> {
    let mut references = Vec::new();
    for container in &pod_spec.containers {
        container_references(
            ContainerName {
                list: ContainerList::Containers,
                name: container.name.clone(),
            },
            container.env.as_deref(),
            container.env_from.as_deref(),
            secret_name,
            &mut references,
        );
    }
    for container in pod_spec.init_containers.iter().flatten() {
        container_references(
            ContainerName {
                list: ContainerList::InitContainers,
                name: container.name.clone(),
            },
            container.env.as_deref(),
            container.env_from.as_deref(),
            secret_name,
            &mut references,
        );
    }
    for container in pod_spec.ephemeral_containers.iter().flatten() {
        container_references(
            ContainerName {
                list: ContainerList::EphemeralContainers,
                name: container.name.clone(),
            },
            container.env.as_deref(),
            container.env_from.as_deref(),
            secret_name,
            &mut references,
        );
    }
    for volume in pod_spec.volumes.iter().flatten() {
        if let Some(secret) = &volume.secret
            && secret.secret_name.as_deref() == Some(secret_name)
        {
            references.push(SecretReference::SecretVolume {
                volume: volume.name.clone(),
                optional: secret.optional.unwrap_or(false),
            });
        }
        let projected_sources = volume
            .projected
            .iter()
            .flat_map(|projected| projected.sources.iter().flatten());
        for source in projected_sources {
            if let Some(secret) = &source.secret
                && secret.name == secret_name
            {
                references.push(SecretReference::ProjectedVolume {
                    volume: volume.name.clone(),
                    optional: secret.optional.unwrap_or(false),
                });
            }
        }
    }
    references
}

// Containers and ephemeral containers are different types with the same env fields, hence the
// fields rather than the container.
fn container_references(
    container: ContainerName,
    env: Option<&[EnvVar]>,
    env_from: Option<&[EnvFromSource]>,
    secret_name: &str,
    references: &mut Vec<SecretReference>,
) {
    for variable in env.unwrap_or_default() {
        if let Some(selector) = variable
            .value_from
            .as_ref()
            .and_then(|source| source.secret_key_ref.as_ref())
            && selector.name == secret_name
        {
            references.push(SecretReference::EnvVariable {
                container: container.clone(),
                variable: variable.name.clone(),
                key: selector.key.clone(),
                optional: selector.optional.unwrap_or(false),
            });
        }
    }
    for source in env_from.unwrap_or_default() {
        if let Some(secret) = &source.secret_ref
            && secret.name == secret_name
        {
            references.push(SecretReference::EnvFrom {
                container: container.clone(),
                optional: secret.optional.unwrap_or(false),
            });
        }
    }
}

/// Why a workload is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetOrigin {
    /// Named in `spec.consumers.restart`.
    Listed,
    /// Found by `spec.consumers.autoDiscover`: its pod template references the Secret.
    Discovered,
}

/// A workload to restart after a rotation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerTarget {
    pub kind: WorkloadKind,
    pub name: String,
    pub how: TargetOrigin,
}

impl fmt::Display for ConsumerTarget {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", kind_name(self.kind), self.name)
    }
}

/// The workloads among `workloads` whose pod template references the Secret, once each, in the
/// order given.
pub fn discover(workloads: &[Workload], secret_name: &str) -> Vec<ConsumerTarget> {
    let mut seen: HashSet<(WorkloadKind, &str)> = HashSet::new();
    workloads
        .iter()
        .filter(|workload| {
            workload
                .pod_spec()
                .is_some_and(|pod_spec| !secret_references(pod_spec, secret_name).is_empty())
        })
        .filter(|workload| seen.insert((workload.kind(), workload.name())))
        .map(|workload| ConsumerTarget {
            kind: workload.kind(),
            name: workload.name().to_owned(),
            how: TargetOrigin::Discovered,
        })
        .collect()
}

/// The listed workloads first, in spec order, then the discovered ones not already listed;
/// each workload once. A workload both listed and discovered counts as listed.
pub fn merge_targets(
    listed: &[WorkloadRef],
    discovered: Vec<ConsumerTarget>,
) -> Vec<ConsumerTarget> {
    let listed_targets = listed.iter().map(|reference| ConsumerTarget {
        kind: reference.kind,
        name: reference.name.clone(),
        how: TargetOrigin::Listed,
    });
    let mut seen: HashSet<(WorkloadKind, String)> = HashSet::new();
    listed_targets
        .chain(discovered)
        .filter(|target| seen.insert((target.kind, target.name.clone())))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    use serde_json::{Value, json};

    use super::*;

    const SECRET: &str = "orders-db";

    fn pod_spec(value: Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    fn container(list: ContainerList, name: &str) -> ContainerName {
        ContainerName {
            list,
            name: name.to_owned(),
        }
    }

    fn env_container(name: &str, secret: &str) -> Value {
        json!({"name": name, "env": [
            {"name": "PLAIN", "value": "x"},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}
        ]})
    }

    fn env_from_container(name: &str, secret: &str) -> Value {
        json!({"name": name, "envFrom": [
            {"configMapRef": {"name": secret}},
            {"secretRef": {"name": secret}}
        ]})
    }

    #[test]
    fn env_variables_in_every_container_list() {
        let spec = pod_spec(json!({
            "containers": [env_container("app", SECRET)],
            "initContainers": [env_container("migrate", SECRET)],
            "ephemeralContainers": [env_container("debug", SECRET)]
        }));
        let expected = [
            (ContainerList::Containers, "app"),
            (ContainerList::InitContainers, "migrate"),
            (ContainerList::EphemeralContainers, "debug"),
        ]
        .map(|(list, name)| SecretReference::EnvVariable {
            container: container(list, name),
            variable: "DB_PASSWORD".to_owned(),
            key: "password".to_owned(),
            optional: false,
        });
        assert_eq!(secret_references(&spec, SECRET), expected.to_vec());
    }

    #[test]
    fn env_from_in_every_container_list() {
        let spec = pod_spec(json!({
            "containers": [env_from_container("app", SECRET)],
            "initContainers": [env_from_container("migrate", SECRET)],
            "ephemeralContainers": [env_from_container("debug", SECRET)]
        }));
        let expected = [
            (ContainerList::Containers, "app"),
            (ContainerList::InitContainers, "migrate"),
            (ContainerList::EphemeralContainers, "debug"),
        ]
        .map(|(list, name)| SecretReference::EnvFrom {
            container: container(list, name),
            optional: false,
        });
        assert_eq!(secret_references(&spec, SECRET), expected.to_vec());
    }

    #[test]
    fn secret_and_projected_volumes() {
        let spec = pod_spec(json!({
            "containers": [{"name": "app"}],
            "volumes": [
                {"name": "config", "configMap": {"name": SECRET}},
                {"name": "credentials", "secret": {"secretName": SECRET}},
                {"name": "bundle", "projected": {"sources": [
                    {"configMap": {"name": "settings"}},
                    {"serviceAccountToken": {"path": "token"}},
                    {"secret": {"name": "other"}},
                    {"secret": {"name": SECRET}}
                ]}}
            ]
        }));
        assert_eq!(
            secret_references(&spec, SECRET),
            vec![
                SecretReference::SecretVolume {
                    volume: "credentials".to_owned(),
                    optional: false
                },
                SecretReference::ProjectedVolume {
                    volume: "bundle".to_owned(),
                    optional: false
                },
            ]
        );
    }

    #[test]
    fn references_to_another_secret_do_not_count() {
        let spec = pod_spec(json!({
            "containers": [env_container("app", "other"), env_from_container("worker", "other")],
            "initContainers": [env_container("migrate", "orders-db-admin")],
            "volumes": [
                {"name": "credentials", "secret": {"secretName": "other"}},
                {"name": "unnamed", "secret": {}},
                {"name": "bundle", "projected": {"sources": [{"secret": {"name": "other"}}]}}
            ]
        }));
        assert!(secret_references(&spec, SECRET).is_empty());
        assert!(secret_references(&pod_spec(json!({"containers": []})), SECRET).is_empty());
    }

    #[test]
    fn optional_references_still_count() {
        let spec = pod_spec(json!({
            "containers": [{"name": "app",
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "token", "optional": true}}}],
                "envFrom": [{"secretRef": {"name": SECRET, "optional": true}}]
            }],
            "volumes": [
                {"name": "credentials", "secret": {"secretName": SECRET, "optional": true}},
                {"name": "bundle", "projected": {"sources": [{"secret": {"name": SECRET, "optional": true}}]}}
            ]
        }));
        let references = secret_references(&spec, SECRET);
        assert_eq!(references.len(), 4);
        assert!(references.iter().all(|reference| match reference {
            SecretReference::EnvVariable { optional, .. }
            | SecretReference::EnvFrom { optional, .. }
            | SecretReference::SecretVolume { optional, .. }
            | SecretReference::ProjectedVolume { optional, .. } => *optional,
        }));
    }

    #[test]
    fn references_describe_themselves() {
        let spec = pod_spec(json!({
            "containers": [env_container("app", SECRET)],
            "volumes": [{"name": "credentials", "secret": {"secretName": SECRET}}]
        }));
        let described: Vec<String> = secret_references(&spec, SECRET)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            described,
            [
                r#"container "app": env DB_PASSWORD from key "password""#,
                r#"volume "credentials": secret volume"#
            ]
        );
    }

    fn workload(kind: WorkloadKind, name: &str, pod: Value) -> Workload {
        let object = json!({
            "metadata": {"name": name, "namespace": "payments"},
            "spec": {"selector": {}, "template": {"spec": pod}}
        });
        match kind {
            WorkloadKind::Deployment => {
                Workload::from(serde_json::from_value::<Deployment>(object).unwrap())
            }
            WorkloadKind::StatefulSet => {
                Workload::from(serde_json::from_value::<StatefulSet>(object).unwrap())
            }
            WorkloadKind::DaemonSet => {
                Workload::from(serde_json::from_value::<DaemonSet>(object).unwrap())
            }
        }
    }

    fn target(kind: WorkloadKind, name: &str, how: TargetOrigin) -> ConsumerTarget {
        ConsumerTarget {
            kind,
            name: name.to_owned(),
            how,
        }
    }

    #[test]
    fn discover_finds_each_consuming_workload_once() {
        // Several references in one workload, and the same workload given twice, still make
        // one target.
        let consuming = json!({
            "containers": [env_container("app", SECRET), env_from_container("sidecar", SECRET)],
            "volumes": [{"name": "credentials", "secret": {"secretName": SECRET}}]
        });
        let workloads = [
            workload(WorkloadKind::Deployment, "orders-api", consuming.clone()),
            workload(
                WorkloadKind::Deployment,
                "billing",
                json!({"containers": [env_container("app", "other")]}),
            ),
            workload(
                WorkloadKind::StatefulSet,
                "orders-worker",
                consuming.clone(),
            ),
            workload(WorkloadKind::DaemonSet, "orders-agent", consuming.clone()),
            workload(WorkloadKind::Deployment, "orders-api", consuming.clone()),
            // Same name, different kind: a different workload.
            workload(WorkloadKind::StatefulSet, "orders-api", consuming),
        ];
        assert_eq!(
            discover(&workloads, SECRET),
            vec![
                target(
                    WorkloadKind::Deployment,
                    "orders-api",
                    TargetOrigin::Discovered
                ),
                target(
                    WorkloadKind::StatefulSet,
                    "orders-worker",
                    TargetOrigin::Discovered
                ),
                target(
                    WorkloadKind::DaemonSet,
                    "orders-agent",
                    TargetOrigin::Discovered
                ),
                target(
                    WorkloadKind::StatefulSet,
                    "orders-api",
                    TargetOrigin::Discovered
                ),
            ]
        );
        assert!(discover(&workloads, "unused").is_empty());
        assert!(discover(&[], SECRET).is_empty());
    }

    #[test]
    fn merge_puts_listed_first_without_duplicates() {
        let listed = [
            WorkloadRef {
                kind: WorkloadKind::StatefulSet,
                name: "orders-worker".to_owned(),
            },
            WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "reports".to_owned(),
            },
            WorkloadRef {
                kind: WorkloadKind::StatefulSet,
                name: "orders-worker".to_owned(),
            },
        ];
        let discovered = vec![
            target(
                WorkloadKind::Deployment,
                "orders-api",
                TargetOrigin::Discovered,
            ),
            target(
                WorkloadKind::StatefulSet,
                "orders-worker",
                TargetOrigin::Discovered,
            ),
            target(WorkloadKind::DaemonSet, "reports", TargetOrigin::Discovered),
        ];
        assert_eq!(
            merge_targets(&listed, discovered),
            vec![
                target(
                    WorkloadKind::StatefulSet,
                    "orders-worker",
                    TargetOrigin::Listed
                ),
                target(WorkloadKind::Deployment, "reports", TargetOrigin::Listed),
                target(
                    WorkloadKind::Deployment,
                    "orders-api",
                    TargetOrigin::Discovered
                ),
                target(WorkloadKind::DaemonSet, "reports", TargetOrigin::Discovered),
            ]
        );
    }
}
