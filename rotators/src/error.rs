//! Rotator errors: each names the failing call and object, never a credential value, and says
//! whether retrying can help (`is_retryable`) and which low-cardinality class it falls in
//! (`category`, used as metric label and condition reason).

use std::time::Duration;

/// Stable classes of failure. The PascalCase name is the condition reason and metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The backend could not be reached or did not answer in time.
    Unreachable,
    /// The backend asked us to slow down.
    Throttled,
    /// Our credentials for the backend were refused.
    AuthenticationFailed,
    /// Authenticated, but not allowed to do this.
    PermissionDenied,
    /// The configured object (role, secret, mount) does not exist.
    NotFound,
    /// The spec or the backend's setup cannot work (e.g. rotation not configured for the secret).
    Misconfigured,
    /// The new credential was set but does not work.
    VerificationFailed,
    /// Something else at the backend, usually transient.
    Backend,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Unreachable => "Unreachable",
            ErrorCategory::Throttled => "Throttled",
            ErrorCategory::AuthenticationFailed => "AuthenticationFailed",
            ErrorCategory::PermissionDenied => "PermissionDenied",
            ErrorCategory::NotFound => "NotFound",
            ErrorCategory::Misconfigured => "Misconfigured",
            ErrorCategory::VerificationFailed => "VerificationFailed",
            ErrorCategory::Backend => "Backend",
        }
    }

    /// Whether the same call may succeed later without anyone changing configuration.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCategory::Unreachable
                | ErrorCategory::Throttled
                | ErrorCategory::Backend
                | ErrorCategory::VerificationFailed
        )
    }
}

/// A failed rotator call. `operation` names the call and object, e.g.
/// `ALTER ROLE "orders_app" on orders-db:5432/orders`; `detail` is the backend's message with
/// any credential material removed by the implementation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed ({}): {detail}", category.as_str())]
pub struct RotatorError {
    pub category: ErrorCategory,
    pub operation: String,
    pub detail: String,
    /// A hint from the backend on when to retry (throttling), if it gave one.
    pub retry_after: Option<Duration>,
}

impl RotatorError {
    pub fn new(
        category: ErrorCategory,
        operation: impl Into<String>,
        detail: impl Into<String>,
    ) -> RotatorError {
        RotatorError {
            category,
            operation: operation.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.category.is_retryable()
    }

    pub fn category(&self) -> ErrorCategory {
        self.category
    }
}
