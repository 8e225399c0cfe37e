//! Kubernetes Events for a ManagedSecret: one per lifecycle audit record (reason = the
//! record's action, action = the step) plus the controller's own warnings. Best effort: an
//! Event that cannot be written is logged, never a reason to stop a rotation.

use keyturn_core::audit::{AuditEvent, AuditOutcome};
use kube::runtime::events::{Event, EventType};

use super::context::Context;
use super::object::ManagedSecretObject;

/// Longest note; the API server rejects Events whose note exceeds 1 kB.
const MAX_NOTE_BYTES: usize = 1000;

pub async fn publish_audit_events(
    context: &Context,
    object: &ManagedSecretObject,
    events: &[AuditEvent],
) {
    for event in events {
        let event_type = if event.outcome == AuditOutcome::Failure {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let action = event.step.map_or("Rotate", |step| step.as_str());
        publish(
            context,
            object,
            event_type,
            &format!("{:?}", event.action),
            action,
            &event.details,
        )
        .await;
    }
}

pub async fn publish(
    context: &Context,
    object: &ManagedSecretObject,
    event_type: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_: event_type,
        reason: reason.to_owned(),
        note: Some(truncate(note)),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = context
        .recorder
        .publish(&event, &object.object_reference())
        .await
    {
        tracing::warn!(namespace = %object.namespace, managed_secret = %object.name, reason, %error, "could not publish Event");
    }
}

fn truncate(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_owned();
    }
    let mut end = MAX_NOTE_BYTES - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}
