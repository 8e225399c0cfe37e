//! The Kubernetes side of access: read keyturn's Role and RoleBinding, write only what
//! differs (server-side apply under `keyturn/access`, audit record first), and list the RBAC
//! objects drift detection judges. Everything it decides comes from the pure modules.

use chrono::Utc;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use keyturn_audit::AuditEntry;
use keyturn_crds::{AccessDrift, AccessStatus};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

use super::condition::{AccessFailure, BINDING_FAILED, CHECK_FAILED};
use super::desired::{BindingChange, NotOwned, plan_changes};
use super::drift::{RbacSnapshot, find_drift};
use super::{ACCESS_FIELD_MANAGER, AccessTarget};
use crate::controller::audit_sink::AuditSink;

/// Audit action of every change to keyturn's own Role or RoleBinding.
pub const BINDING_CHANGED_ACTION: &str = "AccessBindingChanged";

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("failed to read {kind} {object}: {source}")]
    Read {
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply {kind} {object}: {source}")]
    Apply {
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete {kind} {object}: {source}")]
    Delete {
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to list {what}: {source}")]
    List {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    NotOwned(#[from] NotOwned),
    #[error(
        "failed to append the audit record of access binding changes for ManagedSecret {object}, so they wait: {message}"
    )]
    Audit { object: String, message: String },
}

/// The outcome of one access reconcile; failures are carried, not returned, because they must
/// not stop rotations.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessOutcome {
    pub status: AccessStatus,
    /// `None` when the RBAC objects could not be listed.
    pub drift: Option<Vec<AccessDrift>>,
    pub failure: Option<AccessFailure>,
    /// How many writes were made to keyturn's own bindings.
    pub changes: usize,
}

/// Makes keyturn's Role and RoleBinding match `target`, then looks for drift.
pub async fn reconcile_access(
    client: &Client,
    audit: &AuditSink,
    actor: &str,
    target: &AccessTarget,
) -> AccessOutcome {
    let mut failure = None;
    let changes = match ensure_bindings(client, audit, actor, target).await {
        Ok(changes) => changes,
        Err(error) => {
            tracing::warn!(managed_secret = %format!("{}/{}", target.namespace, target.name), %error, "access bindings not reconciled");
            failure = Some(AccessFailure {
                reason: BINDING_FAILED,
                message: error.to_string(),
            });
            0
        }
    };
    let mut cluster_bindings_unchecked = false;
    let drift = match snapshot(client, &target.namespace).await {
        Ok(snapshot) => {
            cluster_bindings_unchecked = snapshot.cluster_scope_unchecked;
            Some(find_drift(target, &snapshot))
        }
        Err(error) => {
            tracing::warn!(managed_secret = %format!("{}/{}", target.namespace, target.name), %error, "access drift not checked");
            if failure.is_none() {
                failure = Some(AccessFailure {
                    reason: CHECK_FAILED,
                    message: error.to_string(),
                });
            }
            None
        }
    };
    let bound = !target.service_accounts.is_empty();
    AccessOutcome {
        status: AccessStatus {
            role: bound.then(|| target.binding_name()),
            role_binding: bound.then(|| target.binding_name()),
            service_accounts: target.service_accounts.clone(),
            drift: drift.clone().unwrap_or_default(),
            cluster_bindings_unchecked,
        },
        drift,
        failure,
        changes,
    }
}

/// Removes keyturn's bindings after `spec.access` went away. Returns how many writes it made.
pub async fn remove_bindings(
    client: &Client,
    audit: &AuditSink,
    actor: &str,
    target: &AccessTarget,
) -> Result<usize, AccessError> {
    let mut emptied = target.clone();
    emptied.service_accounts.clear();
    ensure_bindings(client, audit, actor, &emptied).await
}

async fn ensure_bindings(
    client: &Client,
    audit: &AuditSink,
    actor: &str,
    target: &AccessTarget,
) -> Result<usize, AccessError> {
    let roles: Api<Role> = Api::namespaced(client.clone(), &target.namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &target.namespace);
    let name = target.binding_name();
    let object = format!("{}/{name}", target.namespace);
    let existing_role = roles
        .get_opt(&name)
        .await
        .map_err(|source| AccessError::Read {
            kind: "Role",
            object: object.clone(),
            source,
        })?;
    let existing_binding = bindings
        .get_opt(&name)
        .await
        .map_err(|source| AccessError::Read {
            kind: "RoleBinding",
            object: object.clone(),
            source,
        })?;
    let changes = plan_changes(target, existing_role.as_ref(), existing_binding.as_ref())?;
    if changes.is_empty() {
        return Ok(0);
    }
    // Fail closed: no binding changes without their audit record.
    let entries: Vec<AuditEntry> = changes
        .iter()
        .map(|change| {
            let existed = match change {
                BindingChange::ApplyRole(_) => existing_role.is_some(),
                _ => existing_binding.is_some(),
            };
            let (outcome, details) = change.describe(existed);
            AuditEntry {
                time: Utc::now(),
                actor: actor.to_owned(),
                action: BINDING_CHANGED_ACTION.to_owned(),
                namespace: target.namespace.clone(),
                managed_secret: target.name.clone(),
                rotation_id: None,
                step: None,
                fingerprint: None,
                outcome: outcome.to_owned(),
                details,
            }
        })
        .collect();
    audit
        .append(&entries)
        .await
        .map_err(|error| AccessError::Audit {
            object: format!("{}/{}", target.namespace, target.name),
            message: error.to_string(),
        })?;
    let apply = PatchParams::apply(ACCESS_FIELD_MANAGER).force();
    for change in &changes {
        match change {
            BindingChange::ApplyRole(role) => {
                roles
                    .patch(&name, &apply, &Patch::Apply(role))
                    .await
                    .map_err(|source| AccessError::Apply {
                        kind: "Role",
                        object: object.clone(),
                        source,
                    })?;
            }
            BindingChange::ApplyRoleBinding(binding) => {
                bindings
                    .patch(&name, &apply, &Patch::Apply(binding))
                    .await
                    .map_err(|source| AccessError::Apply {
                        kind: "RoleBinding",
                        object: object.clone(),
                        source,
                    })?;
            }
            BindingChange::DeleteRole(_) => delete(&roles, "Role", &name, &object).await?,
            BindingChange::DeleteRoleBinding(_) => {
                delete(&bindings, "RoleBinding", &name, &object).await?;
            }
        }
        tracing::info!(managed_secret = %format!("{}/{}", target.namespace, target.name), change = %change.describe(true).1, "access binding changed");
    }
    Ok(changes.len())
}

async fn delete<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    object: &str,
) -> Result<(), AccessError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        // Already gone is what was wanted.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(AccessError::Delete {
            kind,
            object: object.to_owned(),
            source,
        }),
    }
}

/// The RoleBindings and Roles of `namespace` and every ClusterRoleBinding and ClusterRole. A
/// namespace-scoped install has no right to list the cluster-wide ones: a 403 there leaves them
/// out and marks the snapshot, so drift through ClusterRoleBindings is said to be unchecked
/// instead of failing the whole check.
async fn snapshot(client: &Client, namespace: &str) -> Result<RbacSnapshot, AccessError> {
    let params = ListParams::default();
    let list_error = |what: &str| {
        let what = what.to_owned();
        move |source| AccessError::List { what, source }
    };
    let role_bindings = Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(list_error(&format!("RoleBindings in {namespace}")))?
        .items;
    let roles = Api::<Role>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(list_error(&format!("Roles in {namespace}")))?
        .items;
    let cluster_role_bindings = Api::<ClusterRoleBinding>::all(client.clone())
        .list(&params)
        .await;
    let cluster_roles = Api::<ClusterRole>::all(client.clone()).list(&params).await;
    if forbidden(cluster_role_bindings.as_ref().err()) || forbidden(cluster_roles.as_ref().err()) {
        return Ok(RbacSnapshot {
            role_bindings,
            roles,
            cluster_scope_unchecked: true,
            ..RbacSnapshot::default()
        });
    }
    Ok(RbacSnapshot {
        role_bindings,
        roles,
        cluster_role_bindings: cluster_role_bindings
            .map_err(list_error("ClusterRoleBindings"))?
            .items,
        cluster_roles: cluster_roles.map_err(list_error("ClusterRoles"))?.items,
        cluster_scope_unchecked: false,
    })
}

fn forbidden(error: Option<&kube::Error>) -> bool {
    matches!(error, Some(kube::Error::Api(status)) if status.code == 403)
}

/// Who RBAC lets read `target`'s Secret: the library call behind `kubectl keyturn who-can-read`.
/// The second value is true when the cluster-wide bindings could not be listed (403).
pub async fn who_can_read(
    client: &Client,
    target: &AccessTarget,
) -> Result<(Vec<super::readers::ReadGrant>, bool), AccessError> {
    let snapshot = snapshot(client, &target.namespace).await?;
    Ok((
        super::readers::who_can_read(target, &snapshot),
        snapshot.cluster_scope_unchecked,
    ))
}
