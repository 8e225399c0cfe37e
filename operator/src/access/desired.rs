//! The Role and RoleBinding a ManagedSecret should have, and whether what exists differs.
//! Pure: no client, so the exact grant (`get` on one Secret by name, never list or watch) is
//! checked by unit tests.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::AccessTarget;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "keyturn";
pub const MANAGED_SECRET_LABEL: &str = "keyturn.dev/managed-secret";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The Role and RoleBinding to apply, or `None` when no service account is listed (then none
/// should exist).
pub fn desired_bindings(target: &AccessTarget) -> Option<(Role, RoleBinding)> {
    if target.service_accounts.is_empty() {
        return None;
    }
    let role = Role {
        metadata: metadata(target),
        rules: Some(vec![read_rule(&target.secret_name)]),
    };
    let binding = RoleBinding {
        metadata: metadata(target),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.to_owned(),
            kind: "Role".to_owned(),
            name: target.binding_name(),
        },
        subjects: Some(
            target
                .service_accounts
                .iter()
                .map(|account| Subject {
                    api_group: None,
                    kind: "ServiceAccount".to_owned(),
                    name: account.clone(),
                    namespace: Some(target.namespace.clone()),
                })
                .collect(),
        ),
    };
    Some((role, binding))
}

/// `get` on exactly one Secret. Never `list` or `watch`: RBAC ignores `resourceNames` for
/// them, so they would grant every Secret in the namespace.
pub fn read_rule(secret_name: &str) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".to_owned()]),
        resource_names: Some(vec![secret_name.to_owned()]),
        verbs: vec!["get".to_owned()],
        non_resource_urls: None,
    }
}

fn metadata(target: &AccessTarget) -> ObjectMeta {
    ObjectMeta {
        name: Some(target.binding_name()),
        namespace: Some(target.namespace.clone()),
        labels: Some(BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (MANAGED_SECRET_LABEL.to_owned(), label_value(&target.name)),
        ])),
        owner_references: Some(vec![owner_reference(target)]),
        ..ObjectMeta::default()
    }
}

pub fn owner_reference(target: &AccessTarget) -> OwnerReference {
    OwnerReference {
        api_version: target.api_version.clone(),
        kind: target.kind.clone(),
        name: target.name.clone(),
        uid: target.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Label values are at most 63 characters; the owner reference, not the label, ties objects
/// to their ManagedSecret.
fn label_value(name: &str) -> String {
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.', '_']).to_owned()
}

/// Whether an object carries this ManagedSecret's owner reference; keyturn changes and deletes
/// only objects it created.
pub fn owned_by(metadata: &ObjectMeta, target: &AccessTarget) -> bool {
    metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == target.uid)
}

/// Fields keyturn sets are present with its values; other fields (added by people or other
/// controllers) do not count, so they cause no write.
fn metadata_matches(existing: &ObjectMeta, desired: &ObjectMeta) -> bool {
    let labels_match = desired.labels.iter().flatten().all(|(key, value)| {
        existing.labels.as_ref().and_then(|labels| labels.get(key)) == Some(value)
    });
    let owners_match = desired.owner_references.iter().flatten().all(|wanted| {
        existing
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner == wanted)
    });
    labels_match && owners_match
}

pub fn role_matches(existing: &Role, desired: &Role) -> bool {
    metadata_matches(&existing.metadata, &desired.metadata) && existing.rules == desired.rules
}

pub fn role_binding_matches(existing: &RoleBinding, desired: &RoleBinding) -> bool {
    metadata_matches(&existing.metadata, &desired.metadata)
        && existing.role_ref == desired.role_ref
        && existing.subjects.clone().unwrap_or_default()
            == desired.subjects.clone().unwrap_or_default()
}

/// One write keyturn makes to its own bindings.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingChange {
    ApplyRole(Role),
    ApplyRoleBinding(RoleBinding),
    DeleteRole(String),
    DeleteRoleBinding(String),
}

impl BindingChange {
    /// For the audit record and logs: what changes, never more than names.
    pub fn describe(&self, existed: bool) -> (&'static str, String) {
        let verb = if existed { "updated" } else { "created" };
        match self {
            BindingChange::ApplyRole(role) => (
                verb,
                format!(
                    "Role {}: get on Secret {}",
                    role.metadata.name.clone().unwrap_or_default(),
                    role.rules
                        .iter()
                        .flatten()
                        .flat_map(|rule| rule.resource_names.iter().flatten())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            BindingChange::ApplyRoleBinding(binding) => (
                verb,
                format!(
                    "RoleBinding {}: service accounts {}",
                    binding.metadata.name.clone().unwrap_or_default(),
                    binding
                        .subjects
                        .iter()
                        .flatten()
                        .map(|subject| subject.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            BindingChange::DeleteRole(name) => ("deleted", format!("Role {name}")),
            BindingChange::DeleteRoleBinding(name) => ("deleted", format!("RoleBinding {name}")),
        }
    }
}

/// Why keyturn will not touch an object with its binding name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} {namespace}/{name} exists and is not owned by ManagedSecret {namespace}/{owner}; keyturn leaves it alone (rename or delete it)"
)]
pub struct NotOwned {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub owner: String,
}

/// The writes that turn what exists into what is desired, in a safe order (the Role before a
/// binding refers to it; the binding removed before its Role). Empty in the steady state.
pub fn plan_changes(
    target: &AccessTarget,
    existing_role: Option<&Role>,
    existing_binding: Option<&RoleBinding>,
) -> Result<Vec<BindingChange>, NotOwned> {
    let not_owned = |kind| NotOwned {
        kind,
        namespace: target.namespace.clone(),
        name: target.binding_name(),
        owner: target.name.clone(),
    };
    if existing_role.is_some_and(|role| !owned_by(&role.metadata, target)) {
        return Err(not_owned("Role"));
    }
    if existing_binding.is_some_and(|binding| !owned_by(&binding.metadata, target)) {
        return Err(not_owned("RoleBinding"));
    }
    let mut changes = Vec::new();
    match desired_bindings(target) {
        None => {
            if existing_binding.is_some() {
                changes.push(BindingChange::DeleteRoleBinding(target.binding_name()));
            }
            if existing_role.is_some() {
                changes.push(BindingChange::DeleteRole(target.binding_name()));
            }
        }
        Some((role, binding)) => {
            if !existing_role.is_some_and(|existing| role_matches(existing, &role)) {
                changes.push(BindingChange::ApplyRole(role));
            }
            if let Some(existing) = existing_binding {
                // roleRef cannot be changed in place; the API server rejects the update.
                if existing.role_ref != binding.role_ref {
                    changes.push(BindingChange::DeleteRoleBinding(target.binding_name()));
                    changes.push(BindingChange::ApplyRoleBinding(binding));
                } else if !role_binding_matches(existing, &binding) {
                    changes.push(BindingChange::ApplyRoleBinding(binding));
                }
            } else {
                changes.push(BindingChange::ApplyRoleBinding(binding));
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::fixtures::target;

    #[test]
    fn the_role_grants_get_on_exactly_the_published_secret() {
        let (role, _) = desired_bindings(&target(&["api"])).unwrap();
        assert_eq!(role.metadata.name.as_deref(), Some("orders-keyturn-read"));
        assert_eq!(role.metadata.namespace.as_deref(), Some("payments"));
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].api_groups, Some(vec![String::new()]));
        assert_eq!(rules[0].resources, Some(vec!["secrets".to_owned()]));
        assert_eq!(
            rules[0].resource_names,
            Some(vec!["orders-credentials".to_owned()])
        );
        assert_eq!(rules[0].verbs, vec!["get".to_owned()]);
    }

    #[test]
    fn the_binding_names_each_listed_account_and_both_are_owned() {
        let (role, binding) = desired_bindings(&target(&["api", "worker"])).unwrap();
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(binding.role_ref.name, "orders-keyturn-read");
        assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
        let subjects = binding.subjects.clone().unwrap();
        let names: Vec<_> = subjects
            .iter()
            .map(|subject| subject.name.as_str())
            .collect();
        assert_eq!(names, ["api", "worker"]);
        assert!(
            subjects
                .iter()
                .all(|subject| subject.kind == "ServiceAccount"
                    && subject.namespace.as_deref() == Some("payments"))
        );
        for metadata in [&role.metadata, &binding.metadata] {
            let owner = &metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.uid.as_str(), owner.controller),
                ("uid-1", Some(true))
            );
            let labels = metadata.labels.as_ref().unwrap();
            assert_eq!(labels["app.kubernetes.io/managed-by"], "keyturn");
            assert_eq!(labels["keyturn.dev/managed-secret"], "orders");
        }
    }

    #[test]
    fn no_listed_account_means_no_bindings() {
        assert!(desired_bindings(&target(&[])).is_none());
    }

    #[test]
    fn extra_labels_do_not_count_as_a_difference_but_subjects_do() {
        let (role, binding) = desired_bindings(&target(&["api", "worker"])).unwrap();
        let mut existing = binding.clone();
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "payments".into());
        existing.metadata.resource_version = Some("7".into());
        assert!(role_binding_matches(&existing, &binding));
        let (_, fewer) = desired_bindings(&target(&["api"])).unwrap();
        assert!(!role_binding_matches(&existing, &fewer));
        let mut widened = role.clone();
        widened.rules.as_mut().unwrap()[0].verbs.push("list".into());
        assert!(!role_matches(&widened, &role));
        assert!(role_matches(&role, &role));
        assert!(owned_by(&role.metadata, &target(&["api"])));
    }

    #[test]
    fn changes_are_planned_only_where_something_differs() {
        let wanted = target(&["api", "worker"]);
        let (role, binding) = desired_bindings(&wanted).unwrap();
        assert_eq!(
            plan_changes(&wanted, None, None).unwrap(),
            vec![
                BindingChange::ApplyRole(role.clone()),
                BindingChange::ApplyRoleBinding(binding.clone())
            ]
        );
        assert!(
            plan_changes(&wanted, Some(&role), Some(&binding))
                .unwrap()
                .is_empty()
        );
        let fewer = target(&["api"]);
        let (_, fewer_binding) = desired_bindings(&fewer).unwrap();
        assert_eq!(
            plan_changes(&fewer, Some(&role), Some(&binding)).unwrap(),
            vec![BindingChange::ApplyRoleBinding(fewer_binding)]
        );
        assert_eq!(
            plan_changes(&target(&[]), Some(&role), Some(&binding)).unwrap(),
            vec![
                BindingChange::DeleteRoleBinding("orders-keyturn-read".into()),
                BindingChange::DeleteRole("orders-keyturn-read".into())
            ]
        );
        assert!(plan_changes(&target(&[]), None, None).unwrap().is_empty());
    }

    #[test]
    fn an_object_keyturn_did_not_create_is_left_alone() {
        let wanted = target(&["api"]);
        let (mut role, _) = desired_bindings(&wanted).unwrap();
        role.metadata.owner_references = None;
        let error = plan_changes(&wanted, Some(&role), None).unwrap_err();
        assert_eq!(error.kind, "Role");
        assert!(error.to_string().contains("not owned"), "{error}");
        assert!(plan_changes(&target(&[]), Some(&role), None).is_err());
    }
}
