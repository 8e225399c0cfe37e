//! Who can read a ManagedSecret's published Secret through RBAC, and through which binding: the
//! library behind `kubectl keyturn who-can-read`. Pure, over the same listed RBAC objects as drift.
//!
//! RBAC is not the whole answer, and the report says so: members of `system:masters` bypass
//! authorization, the Node authorizer lets a kubelet read the Secrets of Pods bound to its node,
//! and anyone who can create a Pod under a listed ServiceAccount reads as that account.

use std::collections::BTreeSet;

use serde::Serialize;

use super::AccessTarget;
use super::drift::{RbacSnapshot, listed, read_bindings, subject_label};

/// One subject's read access, through one binding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadGrant {
    /// `ServiceAccount/NAMESPACE/NAME`, `User/NAME` or `Group/NAME`.
    pub subject: String,
    /// The read verbs granted on the Secret: `get`, `list`, `watch` or `*`.
    pub verbs: Vec<String>,
    /// `RoleBinding/NAME` (in the Secret's namespace) or `ClusterRoleBinding/NAME`.
    pub binding: String,
    /// `Role/NAME` or `ClusterRole/NAME`.
    pub role: String,
    /// How the grant stands against `spec.access`.
    pub standing: Standing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Standing {
    /// keyturn's own RoleBinding for a ServiceAccount the spec lists.
    Managed,
    /// Another binding, for a ServiceAccount the spec lists: allowed, but not keyturn's doing.
    Listed,
    /// A subject the spec does not list: reported as drift.
    Unlisted,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Managed => "managed",
            Standing::Listed => "listed",
            Standing::Unlisted => "unlisted",
        }
    }
}

/// Every subject that RBAC lets read the Secret, one row per subject and binding, sorted by
/// subject.
pub fn who_can_read(target: &AccessTarget, snapshot: &RbacSnapshot) -> Vec<ReadGrant> {
    let own_binding = format!("RoleBinding/{}", target.binding_name());
    let mut grants = BTreeSet::new();
    for binding in read_bindings(target, snapshot) {
        for subject in binding.subjects {
            let standing = match listed(target, subject, binding.namespaced) {
                false => Standing::Unlisted,
                true if binding.binding == own_binding => Standing::Managed,
                true => Standing::Listed,
            };
            grants.insert(ReadGrant {
                subject: subject_label(target, subject, binding.namespaced),
                verbs: binding.verbs.iter().cloned().collect(),
                binding: binding.binding.clone(),
                role: binding.role.clone(),
                standing,
            });
        }
    }
    grants.into_iter().collect()
}

/// What RBAC bindings cannot show, printed under every report.
pub const BEYOND_RBAC: &str = "Not shown, because RBAC bindings do not express them: members of \
     system:masters (they bypass authorization), kubelets (the Node authorizer lets a node read \
     the Secrets of its Pods), and anyone who can create a Pod under a listed ServiceAccount.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::fixtures::meta;
    use k8s_openapi::api::rbac::v1::{
        ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
    };

    fn target() -> AccessTarget {
        crate::access::fixtures::target(&["api"])
    }

    fn rule(verbs: &[&str], names: Option<&[&str]>) -> PolicyRule {
        PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: verbs.iter().map(|verb| (*verb).to_string()).collect(),
            resource_names: names.map(|names| names.iter().map(|name| (*name).into()).collect()),
            ..PolicyRule::default()
        }
    }

    fn service_account(name: &str) -> Subject {
        Subject {
            kind: "ServiceAccount".into(),
            name: name.into(),
            namespace: None,
            ..Subject::default()
        }
    }

    fn role_binding(name: &str, role: (&str, &str), subjects: Vec<Subject>) -> RoleBinding {
        RoleBinding {
            metadata: meta(name, Some("payments")),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: role.0.into(),
                name: role.1.into(),
            },
            subjects: Some(subjects),
        }
    }

    fn snapshot() -> RbacSnapshot {
        RbacSnapshot {
            role_bindings: vec![
                // keyturn's own binding, for the listed account.
                role_binding(
                    "orders-keyturn-read",
                    ("Role", "orders-keyturn-read"),
                    vec![service_account("api")],
                ),
                // A team's binding that also names the listed account, and one that does not.
                role_binding(
                    "team-readers",
                    ("Role", "secret-reader"),
                    vec![service_account("api"), service_account("batch")],
                ),
                // A binding to a role that reads only other Secrets: nobody reads ours through it.
                role_binding(
                    "other",
                    ("Role", "other-secret"),
                    vec![service_account("batch")],
                ),
            ],
            roles: vec![
                Role {
                    metadata: meta("orders-keyturn-read", Some("payments")),
                    rules: Some(vec![rule(&["get"], Some(&["orders-credentials"]))]),
                },
                Role {
                    metadata: meta("secret-reader", Some("payments")),
                    rules: Some(vec![rule(&["get", "list"], None)]),
                },
                Role {
                    metadata: meta("other-secret", Some("payments")),
                    rules: Some(vec![rule(&["get"], Some(&["unrelated"]))]),
                },
            ],
            cluster_role_bindings: vec![ClusterRoleBinding {
                metadata: meta("ops", None),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: "everything".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "Group".into(),
                    name: "ops".into(),
                    ..Subject::default()
                }]),
            }],
            cluster_roles: vec![ClusterRole {
                metadata: meta("everything", None),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["*".into()]),
                    resources: Some(vec!["*".into()]),
                    verbs: vec!["*".into()],
                    ..PolicyRule::default()
                }]),
                ..ClusterRole::default()
            }],
            cluster_scope_unchecked: false,
        }
    }

    #[test]
    fn every_reader_is_listed_with_its_binding_role_verbs_and_standing() {
        let rows: Vec<(String, String, String, Vec<String>, Standing)> =
            who_can_read(&target(), &snapshot())
                .into_iter()
                .map(|grant| {
                    (
                        grant.subject,
                        grant.binding,
                        grant.role,
                        grant.verbs,
                        grant.standing,
                    )
                })
                .collect();
        let row = |subject: &str, binding: &str, role: &str, verbs: &[&str], standing| {
            (
                subject.to_owned(),
                binding.to_owned(),
                role.to_owned(),
                verbs
                    .iter()
                    .map(|verb| (*verb).to_owned())
                    .collect::<Vec<_>>(),
                standing,
            )
        };
        assert_eq!(
            rows,
            vec![
                row(
                    "Group/ops",
                    "ClusterRoleBinding/ops",
                    "ClusterRole/everything",
                    &["*"],
                    Standing::Unlisted
                ),
                row(
                    "ServiceAccount/payments/api",
                    "RoleBinding/orders-keyturn-read",
                    "Role/orders-keyturn-read",
                    &["get"],
                    Standing::Managed
                ),
                row(
                    "ServiceAccount/payments/api",
                    "RoleBinding/team-readers",
                    "Role/secret-reader",
                    &["get", "list"],
                    Standing::Listed
                ),
                row(
                    "ServiceAccount/payments/batch",
                    "RoleBinding/team-readers",
                    "Role/secret-reader",
                    &["get", "list"],
                    Standing::Unlisted
                ),
            ]
        );
    }

    #[test]
    fn the_unlisted_rows_are_exactly_what_drift_reports() {
        let unlisted: BTreeSet<(String, String)> = who_can_read(&target(), &snapshot())
            .into_iter()
            .filter(|grant| grant.standing == Standing::Unlisted)
            .map(|grant| (grant.binding, grant.subject))
            .collect();
        let drift: BTreeSet<(String, String)> =
            super::super::drift::find_drift(&target(), &snapshot())
                .into_iter()
                .flat_map(|drift| {
                    drift
                        .subjects
                        .into_iter()
                        .map(move |subject| (drift.binding.clone(), subject))
                })
                .collect();
        assert_eq!(unlisted, drift);
    }

    #[test]
    fn a_secret_nobody_is_bound_to_has_no_readers() {
        let mut lonely = target();
        lonely.secret_name = "nobody-reads-this".into();
        let mut snapshot = snapshot();
        snapshot.cluster_role_bindings.clear();
        snapshot
            .role_bindings
            .retain(|binding| binding.metadata.name.as_deref() != Some("team-readers"));
        assert_eq!(who_can_read(&lonely, &snapshot), vec![]);
    }
}
