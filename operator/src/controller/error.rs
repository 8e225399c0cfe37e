//! Errors that end a reconcile early. Step failures are not among them: those go into status
//! through the lifecycle core, with its backoff. These are failures to talk to the API itself.

use super::object::{ManagedSecretObject, ObjectError, RefetchError};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("failed to patch status of {object}: {source}")]
    Status {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Refetch(#[from] RefetchError),
    #[error("failed to clean up {object}: {message}")]
    Cleanup { object: String, message: String },
    #[error("finalizer of {object}: {message}")]
    Finalizer { object: String, message: String },
}

impl ReconcileError {
    pub fn status(object: &ManagedSecretObject, source: kube::Error) -> ReconcileError {
        ReconcileError::Status {
            object: object.key(),
            source,
        }
    }

    /// Low-cardinality class for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Status {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409 => "Conflict",
            ReconcileError::Status { .. } => "StatusWriteFailed",
            ReconcileError::Object(_) => "InvalidObject",
            ReconcileError::Refetch(_) => "ReadFailed",
            ReconcileError::Cleanup { .. } => "CleanupFailed",
            ReconcileError::Finalizer { .. } => "FinalizerFailed",
        }
    }
}
