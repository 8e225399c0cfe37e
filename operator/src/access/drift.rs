//! Drift: bindings other than keyturn's own that let subjects not listed in `spec.access` read
//! the published Secret. Pure, over listed RBAC objects. Aggregated ClusterRoles are judged by
//! the rules the API server has already aggregated into them, not by their aggregationRule.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use keyturn_crds::AccessDrift;

use super::AccessTarget;

/// Verbs that disclose a Secret's data.
const READ_VERBS: [&str; 4] = ["get", "list", "watch", "*"];

/// Every RBAC object drift detection looks at: the RoleBindings and Roles of the namespace,
/// and the cluster-wide ones.
#[derive(Debug, Default, Clone)]
pub struct RbacSnapshot {
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    /// The cluster-wide objects could not be listed (a namespace-scoped install): drift through
    /// ClusterRoleBindings is not known.
    pub cluster_scope_unchecked: bool,
}

/// The bindings granting read of `target`'s Secret to subjects it does not list, sorted.
pub fn find_drift(target: &AccessTarget, snapshot: &RbacSnapshot) -> Vec<AccessDrift> {
    let own_binding = format!("RoleBinding/{}", target.binding_name());
    let mut drift: Vec<AccessDrift> = read_bindings(target, snapshot)
        .into_iter()
        .filter(|grant| grant.binding != own_binding)
        .filter_map(|grant| {
            let subjects: Vec<String> = grant
                .subjects
                .iter()
                .filter(|subject| !listed(target, subject, grant.namespaced))
                .map(|subject| subject_label(target, subject, grant.namespaced))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            (!subjects.is_empty()).then(|| AccessDrift {
                binding: grant.binding,
                role: grant.role,
                subjects,
                verbs: grant.verbs.into_iter().collect(),
            })
        })
        .collect();
    drift.sort();
    drift
}

/// One binding that lets its subjects read the Secret.
pub(super) struct ReadBinding<'a> {
    /// `RoleBinding/NAME` or `ClusterRoleBinding/NAME`.
    pub binding: String,
    /// `Role/NAME` or `ClusterRole/NAME`.
    pub role: String,
    pub verbs: BTreeSet<String>,
    pub subjects: &'a [Subject],
    /// A RoleBinding (its ServiceAccount subjects default to its namespace).
    pub namespaced: bool,
}

/// Every RoleBinding of the namespace and every ClusterRoleBinding whose role grants a read verb
/// on the Secret, in the order listed.
pub(super) fn read_bindings<'a>(
    target: &AccessTarget,
    snapshot: &'a RbacSnapshot,
) -> Vec<ReadBinding<'a>> {
    let role_bindings = snapshot
        .role_bindings
        .iter()
        .filter(|binding| binding.metadata.namespace.as_deref() == Some(target.namespace.as_str()))
        .map(|binding| {
            (
                "RoleBinding",
                &binding.metadata,
                &binding.role_ref,
                &binding.subjects,
                true,
            )
        });
    let cluster_role_bindings = snapshot.cluster_role_bindings.iter().map(|binding| {
        (
            "ClusterRoleBinding",
            &binding.metadata,
            &binding.role_ref,
            &binding.subjects,
            false,
        )
    });
    role_bindings
        .chain(cluster_role_bindings)
        .filter_map(|(kind, metadata, role_ref, subjects, namespaced)| {
            let rules = referenced_rules(target, snapshot, role_ref, namespaced)?;
            let verbs = read_verbs(rules, &target.secret_name);
            (!verbs.is_empty()).then(|| ReadBinding {
                binding: format!("{kind}/{}", metadata.name.as_deref().unwrap_or_default()),
                role: format!("{}/{}", role_ref.kind, role_ref.name),
                verbs,
                subjects: subjects.as_deref().unwrap_or_default(),
                namespaced,
            })
        })
        .collect()
}

/// The rules of the role a binding points at; a binding to a role that does not exist grants
/// nothing. A RoleBinding's Role is looked up in the ManagedSecret's namespace.
fn referenced_rules<'a>(
    target: &AccessTarget,
    snapshot: &'a RbacSnapshot,
    role_ref: &RoleRef,
    namespaced_binding: bool,
) -> Option<&'a [PolicyRule]> {
    match role_ref.kind.as_str() {
        "Role" if namespaced_binding => snapshot
            .roles
            .iter()
            .find(|role| {
                role.metadata.name.as_deref() == Some(role_ref.name.as_str())
                    && role.metadata.namespace.as_deref() == Some(target.namespace.as_str())
            })
            .map(|role| role.rules.as_deref().unwrap_or_default()),
        "ClusterRole" => snapshot
            .cluster_roles
            .iter()
            .find(|role| role.metadata.name.as_deref() == Some(role_ref.name.as_str()))
            .map(|role| role.rules.as_deref().unwrap_or_default()),
        _ => None,
    }
}

/// The read verbs these rules grant on the Secret `secret_name` in the core group.
pub fn read_verbs(rules: &[PolicyRule], secret_name: &str) -> BTreeSet<String> {
    let mut verbs = BTreeSet::new();
    for rule in rules {
        let core_group = rule
            .api_groups
            .iter()
            .flatten()
            .any(|group| group.is_empty() || group == "*");
        let secrets = rule
            .resources
            .iter()
            .flatten()
            .any(|resource| resource == "secrets" || resource == "*");
        // An empty resourceNames means every Secret; a list that omits ours spares it.
        let names_include = rule
            .resource_names
            .as_ref()
            .is_none_or(|names| names.is_empty() || names.iter().any(|name| name == secret_name));
        if core_group && secrets && names_include {
            verbs.extend(
                rule.verbs
                    .iter()
                    .filter(|verb| READ_VERBS.contains(&verb.as_str()))
                    .cloned(),
            );
        }
    }
    verbs
}

/// A ServiceAccount of the ManagedSecret's namespace that `spec.access` lists.
pub(super) fn listed(target: &AccessTarget, subject: &Subject, namespaced_binding: bool) -> bool {
    subject.kind == "ServiceAccount"
        && subject_namespace(target, subject, namespaced_binding) == Some(target.namespace.as_str())
        && target.service_accounts.contains(&subject.name)
}

fn subject_namespace<'a>(
    target: &'a AccessTarget,
    subject: &'a Subject,
    namespaced_binding: bool,
) -> Option<&'a str> {
    match subject.namespace.as_deref() {
        Some(namespace) if !namespace.is_empty() => Some(namespace),
        _ if namespaced_binding => Some(target.namespace.as_str()),
        _ => None,
    }
}

pub(super) fn subject_label(
    target: &AccessTarget,
    subject: &Subject,
    namespaced_binding: bool,
) -> String {
    match subject.kind.as_str() {
        "ServiceAccount" => format!(
            "ServiceAccount/{}/{}",
            subject_namespace(target, subject, namespaced_binding).unwrap_or_default(),
            subject.name
        ),
        kind => format!("{kind}/{}", subject.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::fixtures::meta;

    fn target() -> AccessTarget {
        crate::access::fixtures::target(&["api"])
    }

    fn rule(verbs: &[&str], resources: &[&str], names: Option<&[&str]>) -> PolicyRule {
        PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(resources.iter().map(|r| r.to_string()).collect()),
            resource_names: names.map(|names| names.iter().map(|n| n.to_string()).collect()),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            non_resource_urls: None,
        }
    }

    fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
        Subject {
            api_group: None,
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.map(Into::into),
        }
    }

    fn role_binding(
        name: &str,
        role_kind: &str,
        role: &str,
        subjects: Vec<Subject>,
    ) -> RoleBinding {
        RoleBinding {
            metadata: meta(name, Some("payments")),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: role_kind.into(),
                name: role.into(),
            },
            subjects: Some(subjects),
        }
    }

    fn role(name: &str, rules: Vec<PolicyRule>) -> Role {
        Role {
            metadata: meta(name, Some("payments")),
            rules: Some(rules),
        }
    }

    #[test]
    fn a_namespace_wide_secret_reader_is_drift() {
        let snapshot = RbacSnapshot {
            roles: vec![role(
                "secret-reader",
                vec![rule(&["get", "list", "create"], &["secrets"], None)],
            )],
            role_bindings: vec![role_binding(
                "readers",
                "Role",
                "secret-reader",
                vec![subject("ServiceAccount", "batch", Some("payments"))],
            )],
            ..RbacSnapshot::default()
        };
        assert_eq!(
            find_drift(&target(), &snapshot),
            vec![AccessDrift {
                binding: "RoleBinding/readers".into(),
                role: "Role/secret-reader".into(),
                subjects: vec!["ServiceAccount/payments/batch".into()],
                verbs: vec!["get".into(), "list".into()],
            }]
        );
    }

    #[test]
    fn a_cluster_role_binding_with_every_verb_on_secrets_is_drift() {
        let snapshot = RbacSnapshot {
            cluster_roles: vec![ClusterRole {
                metadata: meta("secret-admin", None),
                rules: Some(vec![rule(&["*"], &["*"], None)]),
                aggregation_rule: None,
            }],
            cluster_role_bindings: vec![ClusterRoleBinding {
                metadata: meta("ops", None),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: "secret-admin".into(),
                },
                subjects: Some(vec![
                    subject("Group", "ops", None),
                    subject("User", "alice", None),
                ]),
            }],
            ..RbacSnapshot::default()
        };
        let drift = find_drift(&target(), &snapshot);
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0].binding, "ClusterRoleBinding/ops");
        assert_eq!(drift[0].role, "ClusterRole/secret-admin");
        assert_eq!(drift[0].subjects, ["Group/ops", "User/alice"]);
        assert_eq!(drift[0].verbs, ["*"]);
    }

    #[test]
    fn a_grant_limited_to_other_secrets_is_not_drift_but_one_naming_ours_is() {
        let snapshot = RbacSnapshot {
            roles: vec![
                role(
                    "others",
                    vec![rule(&["get"], &["secrets"], Some(&["tls-cert", "other"]))],
                ),
                role(
                    "ours",
                    vec![rule(&["get"], &["secrets"], Some(&["orders-credentials"]))],
                ),
                role(
                    "configmaps",
                    vec![rule(&["get", "list"], &["configmaps"], None)],
                ),
            ],
            role_bindings: vec![
                role_binding(
                    "to-others",
                    "Role",
                    "others",
                    vec![subject("User", "bob", None)],
                ),
                role_binding(
                    "to-ours",
                    "Role",
                    "ours",
                    vec![subject("User", "bob", None)],
                ),
                role_binding(
                    "to-configmaps",
                    "Role",
                    "configmaps",
                    vec![subject("User", "bob", None)],
                ),
                role_binding(
                    "to-missing",
                    "Role",
                    "missing",
                    vec![subject("User", "bob", None)],
                ),
            ],
            ..RbacSnapshot::default()
        };
        let drift = find_drift(&target(), &snapshot);
        let bindings: Vec<_> = drift.iter().map(|found| found.binding.as_str()).collect();
        assert_eq!(bindings, ["RoleBinding/to-ours"]);
    }

    #[test]
    fn our_own_binding_and_listed_accounts_are_not_drift() {
        let (own_role, own_binding) = super::super::desired::desired_bindings(&target()).unwrap();
        let snapshot = RbacSnapshot {
            roles: vec![
                own_role,
                role("reader", vec![rule(&["get", "watch"], &["secrets"], None)]),
            ],
            role_bindings: vec![
                own_binding,
                // The listed account, named with and without its namespace.
                role_binding(
                    "api-reads",
                    "Role",
                    "reader",
                    vec![
                        subject("ServiceAccount", "api", Some("payments")),
                        subject("ServiceAccount", "api", None),
                    ],
                ),
                // Same name, other namespace: not the listed account.
                role_binding(
                    "foreign-api",
                    "Role",
                    "reader",
                    vec![subject("ServiceAccount", "api", Some("elsewhere"))],
                ),
            ],
            ..RbacSnapshot::default()
        };
        let drift = find_drift(&target(), &snapshot);
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0].binding, "RoleBinding/foreign-api");
        assert_eq!(drift[0].subjects, ["ServiceAccount/elsewhere/api"]);
        assert_eq!(drift[0].verbs, ["get", "watch"]);
    }

    #[test]
    fn bindings_of_other_namespaces_do_not_count() {
        let mut binding = role_binding(
            "readers",
            "ClusterRole",
            "view-secrets",
            vec![subject("User", "bob", None)],
        );
        binding.metadata.namespace = Some("elsewhere".into());
        let snapshot = RbacSnapshot {
            cluster_roles: vec![ClusterRole {
                metadata: meta("view-secrets", None),
                rules: Some(vec![rule(&["get"], &["secrets"], None)]),
                aggregation_rule: None,
            }],
            role_bindings: vec![binding],
            ..RbacSnapshot::default()
        };
        assert!(find_drift(&target(), &snapshot).is_empty());
    }
}
