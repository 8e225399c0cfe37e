//! Errors of the consumer restart and rollout API: each names the failing call and object, says
//! whether retrying can help (`is_retryable`) and which low-cardinality class it falls in
//! (`category`, a PascalCase condition reason and metric label).

use std::sync::Arc;

/// Stable classes of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The API server could not be reached or the connection broke.
    Unreachable,
    /// The API server answered 5xx or timed out.
    ApiUnavailable,
    /// The API server asked us to slow down (429).
    Throttled,
    /// Another writer changed the object between our read and our write (409).
    Conflict,
    /// Our credentials were refused (401).
    AuthenticationFailed,
    /// Authenticated, but RBAC does not allow this (403).
    PermissionDenied,
    /// The API server does not serve the resource (404 on a list).
    NotFound,
    /// The API server refused the request as invalid (other 4xx).
    Rejected,
    /// The answer could not be decoded.
    InvalidResponse,
    /// The Kubernetes client itself is misconfigured (TLS, proxy, kubeconfig).
    ClientMisconfigured,
    /// A restart token cannot be stored in the annotation.
    InvalidToken,
    /// A restart batch ended without producing an outcome for a caller.
    BatchAbandoned,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Unreachable => "Unreachable",
            ErrorCategory::ApiUnavailable => "ApiUnavailable",
            ErrorCategory::Throttled => "Throttled",
            ErrorCategory::Conflict => "Conflict",
            ErrorCategory::AuthenticationFailed => "AuthenticationFailed",
            ErrorCategory::PermissionDenied => "PermissionDenied",
            ErrorCategory::NotFound => "NotFound",
            ErrorCategory::Rejected => "Rejected",
            ErrorCategory::InvalidResponse => "InvalidResponse",
            ErrorCategory::ClientMisconfigured => "ClientMisconfigured",
            ErrorCategory::InvalidToken => "InvalidToken",
            ErrorCategory::BatchAbandoned => "BatchAbandoned",
        }
    }

    /// Whether the same call may succeed later without anyone changing configuration.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCategory::Unreachable
                | ErrorCategory::ApiUnavailable
                | ErrorCategory::Throttled
                | ErrorCategory::Conflict
                | ErrorCategory::BatchAbandoned
        )
    }

    fn of(error: &kube::Error) -> ErrorCategory {
        match error {
            kube::Error::Api(status) => match status.code {
                401 => ErrorCategory::AuthenticationFailed,
                403 => ErrorCategory::PermissionDenied,
                404 => ErrorCategory::NotFound,
                409 => ErrorCategory::Conflict,
                429 => ErrorCategory::Throttled,
                408 | 500..=599 => ErrorCategory::ApiUnavailable,
                _ => ErrorCategory::Rejected,
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                ErrorCategory::Unreachable
            }
            kube::Error::SerdeError(_)
            | kube::Error::FromUtf8(_)
            | kube::Error::LinesCodecMaxLineLengthExceeded => ErrorCategory::InvalidResponse,
            kube::Error::Auth(_) => ErrorCategory::AuthenticationFailed,
            _ => ErrorCategory::ClientMisconfigured,
        }
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A failed consumer operation. Cloneable (the Kubernetes error is shared) because one restart
/// batch reports the same failure to every caller that joined it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsumerError {
    /// A call on one workload failed, e.g. `failed to patch Deployment payments/orders-api`.
    #[error("failed to {call} {kind} {namespace}/{name}: {source}")]
    Workload {
        call: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Arc<kube::Error>,
    },
    /// Listing the workloads of a namespace (for auto-discovery) failed.
    #[error("failed to list {kind}s in namespace {namespace}: {source}")]
    List {
        kind: &'static str,
        namespace: String,
        #[source]
        source: Arc<kube::Error>,
    },
    /// The restart token cannot be stored in the comma-separated annotation.
    #[error(
        "failed to restart {kind} {namespace}/{name}: restart token {token:?} is empty or contains a comma or whitespace"
    )]
    InvalidToken {
        kind: &'static str,
        namespace: String,
        name: String,
        token: String,
    },
    /// The batch carrying this caller's restart ended without an outcome for it (its task
    /// panicked, or no Tokio runtime could run it).
    #[error(
        "failed to restart {kind} {namespace}/{name}: the restart batch ended without an outcome ({reason})"
    )]
    BatchAbandoned {
        kind: &'static str,
        namespace: String,
        name: String,
        reason: &'static str,
    },
}

impl ConsumerError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            ConsumerError::Workload { source, .. } | ConsumerError::List { source, .. } => {
                ErrorCategory::of(source)
            }
            ConsumerError::InvalidToken { .. } => ErrorCategory::InvalidToken,
            ConsumerError::BatchAbandoned { .. } => ErrorCategory::BatchAbandoned,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.category().is_retryable()
    }

    /// The Kubernetes API status code, when the API server answered with an error.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            ConsumerError::Workload { source, .. } | ConsumerError::List { source, .. } => {
                match source.as_ref() {
                    kube::Error::Api(status) => Some(status.code),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> ConsumerError {
        let status = kube::core::Status::failure("boom", "Reason").with_code(code);
        ConsumerError::Workload {
            call: "patch",
            kind: "Deployment",
            namespace: "payments".to_owned(),
            name: "orders-api".to_owned(),
            source: Arc::new(kube::Error::Api(Box::new(status))),
        }
    }

    #[test]
    fn messages_name_the_call_and_object() {
        let message = api_error(409).to_string();
        assert!(
            message.starts_with("failed to patch Deployment payments/orders-api: "),
            "{message}"
        );
        assert!(!message.ends_with('.'));
    }

    #[test]
    fn categories_and_retryability_follow_the_status_code() {
        let cases = [
            (403, ErrorCategory::PermissionDenied, false),
            (404, ErrorCategory::NotFound, false),
            (409, ErrorCategory::Conflict, true),
            (422, ErrorCategory::Rejected, false),
            (429, ErrorCategory::Throttled, true),
            (503, ErrorCategory::ApiUnavailable, true),
        ];
        for (code, category, retryable) in cases {
            let error = api_error(code);
            assert_eq!(error.category(), category, "{code}");
            assert_eq!(error.is_retryable(), retryable, "{code}");
            assert_eq!(error.status_code(), Some(code));
        }
        let invalid = ConsumerError::InvalidToken {
            kind: "Deployment",
            namespace: "payments".to_owned(),
            name: "orders-api".to_owned(),
            token: "a,b".to_owned(),
        };
        assert_eq!(invalid.category().as_str(), "InvalidToken");
        assert!(!invalid.is_retryable());
    }
}
