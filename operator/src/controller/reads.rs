//! Adds what the audit webhook learnt about reads to the status a reconcile writes:
//! `status.reads` and the `UnexpectedReader` condition (with its metric). Decisions are in
//! `keyturn_core::reads`; the summaries come from `crate::reads::summary`.

use chrono::Utc;
use keyturn_core::conditions::{UNEXPECTED_READER, unexpected_reader_condition};
use keyturn_crds::{ManagedSecretSpec, ManagedSecretStatus};

use super::context::Context;
use super::object::ManagedSecretObject;

/// Sets `status.reads` and the `UnexpectedReader` condition of `status`; does nothing while the
/// webhook is disabled (the stored values, if any, stay as they are).
pub fn add_to_status(
    context: &Context,
    object: &ManagedSecretObject,
    spec: &ManagedSecretSpec,
    status: &mut ManagedSecretStatus,
) {
    let Some(summaries) = &context.reads else {
        return;
    };
    let now = Utc::now();
    let access: Option<Vec<String>> = spec.access.as_ref().map(|access| {
        access
            .service_accounts
            .iter()
            .map(|account| account.0.clone())
            .collect()
    });
    let reads = summaries.status(
        &object.namespace,
        &object.name,
        object.status.reads.as_ref(),
        access.as_deref(),
        now,
    );
    context.metrics.set_unexpected_readers(
        &object.namespace,
        &object.name,
        reads.unexpected_readers.len(),
    );
    let condition = unexpected_reader_condition(
        &status.rotation.conditions,
        access.is_some(),
        &reads.unexpected_readers,
        now,
        object.generation,
    );
    status
        .rotation
        .conditions
        .retain(|condition| condition.type_ != UNEXPECTED_READER);
    status.rotation.conditions.extend(condition);
    status.reads = Some(reads);
}
