//! What happens when a ManagedSecret is deleted: with `deletionPolicy: Revoke` the current,
//! previous and staged credentials are retired at the backend; the owned Secrets are deleted
//! either way. Deletion is never blocked for good: an invalid spec or a backend that stays
//! unreachable past a grace period ends in a Warning and an audit record instead.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keyturn_audit::AuditEntry;
use keyturn_crds::DeletionPolicy;
use keyturn_rotators::{CredentialId, RotationContext};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::context::Context;
use super::error::ReconcileError;
use super::events;
use super::object::ManagedSecretObject;
use super::secrets::OwnedSecrets;
use super::steps::StepRunner;

/// How long an unreachable backend may hold up deletion before keyturn gives up revoking.
pub const REVOKE_GRACE: Duration = Duration::from_secs(600);

pub async fn cleanup(
    object: &ManagedSecretObject,
    context: &Arc<Context>,
    deleting_since: Option<chrono::DateTime<Utc>>,
) -> Result<Action, ReconcileError> {
    let revoke = match &object.spec {
        Ok((spec, _)) => spec.deletion_policy == DeletionPolicy::Revoke,
        Err(_) => false,
    };
    let mut outcome = if revoke { "revoked" } else { "retained" };
    let mut details = String::new();
    if revoke && let Err(message) = revoke_all(object, context).await {
        let waited = deleting_since
            .and_then(|since| (Utc::now() - since).to_std().ok())
            .unwrap_or_default();
        if waited < REVOKE_GRACE {
            events::publish(
                context,
                object,
                EventType::Warning,
                "RevokeFailed",
                "Cleanup",
                &message,
            )
            .await;
            return Err(ReconcileError::Cleanup {
                object: object.key(),
                message,
            });
        }
        outcome = "revoke-abandoned";
        details = format!(
            "gave up revoking after {}s: {message}",
            REVOKE_GRACE.as_secs()
        );
        events::publish(
            context,
            object,
            EventType::Warning,
            "RevokeAbandoned",
            "Cleanup",
            &details,
        )
        .await;
    }
    if let Err(problems) = &object.spec {
        details = format!(
            "spec invalid ({}); credentials left as they are",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let secrets = OwnedSecrets::new(context.client.clone(), object);
    secrets
        .delete_staging()
        .await
        .map_err(|error| ReconcileError::Cleanup {
            object: object.key(),
            message: error.to_string(),
        })?;
    let entry = AuditEntry {
        time: Utc::now(),
        actor: context.actor.clone(),
        action: "ManagedSecretDeleted".into(),
        namespace: object.namespace.clone(),
        managed_secret: object.name.clone(),
        rotation_id: None,
        step: None,
        fingerprint: object
            .status
            .rotation
            .current
            .as_ref()
            .map(|current| current.fingerprint.clone()),
        outcome: outcome.into(),
        details: if details.is_empty() {
            format!(
                "deleted with deletionPolicy {}",
                if revoke { "Revoke" } else { "Retain" }
            )
        } else {
            details
        },
    };
    // Fail closed here too: the finalizer stays until the deletion is on record.
    context
        .audit
        .append(std::slice::from_ref(&entry))
        .await
        .map_err(|error| ReconcileError::Cleanup {
            object: object.key(),
            message: error.to_string(),
        })?;
    context.metrics.forget(&object.namespace, &object.name);
    tracing::info!(managed_secret = %object.key(), outcome, "cleaned up");
    Ok(Action::await_change())
}

/// Retires every credential the status knows (current, previous, staged). Each retire is
/// idempotent, so a retry after a partial failure is safe.
async fn revoke_all(object: &ManagedSecretObject, context: &Arc<Context>) -> Result<(), String> {
    let Ok((spec, validated)) = &object.spec else {
        return Ok(());
    };
    let state = &object.status.rotation;
    let mut targets: Vec<String> = Vec::new();
    for reference in [state.current.as_ref(), state.previous.as_ref()]
        .into_iter()
        .flatten()
        .chain(
            state
                .in_flight
                .as_ref()
                .and_then(|in_flight| in_flight.staged.as_ref()),
        )
    {
        if !targets.contains(&reference.id) {
            targets.push(reference.id.clone());
        }
    }
    if targets.is_empty() {
        return Ok(());
    }
    let mut runner = StepRunner::new(context, object, spec, validated);
    let rotator = runner.rotator().await.map_err(|error| error.to_string())?;
    let rotation = RotationContext {
        rotation_id: format!("revoke-{}", object.uid),
        started_at: Utc::now(),
        valid_until: None,
        current: None,
    };
    for id in targets {
        rotator
            .revoke(&rotation, &CredentialId(id))
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}
