//! SDK errors → [`RotatorError`]: the category the controller retries (or not) by, and a detail
//! built from the service's code and message or the transport chain, never from Debug output
//! (which includes raw responses) and with the known secret value redacted.

use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::credential::SecretValue;
use crate::error::{ErrorCategory, RotatorError};

/// Maps an SDK error to a rotator error. The detail is the service's error code and message (or
/// the transport error chain); `known` is removed from it should a backend ever echo it.
pub(super) fn sdk_error<E>(
    operation: String,
    error: &SdkError<E, HttpResponse>,
    known: Option<&SecretValue>,
) -> RotatorError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error
        .raw_response()
        .map(|response| response.status().as_u16());
    let retry_after = error
        .raw_response()
        .and_then(|response| response.headers().get("retry-after"))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let (category, detail) = match error {
        SdkError::TimeoutError(_) => (ErrorCategory::Unreachable, error_chain(error)),
        SdkError::DispatchFailure(failure) => {
            let category = match credentials_error(error) {
                // No provider in the chain had credentials, or its configuration is invalid:
                // retrying without a configuration change cannot help.
                Some(
                    CredentialsError::CredentialsNotLoaded(_)
                    | CredentialsError::InvalidConfiguration(_),
                ) => ErrorCategory::AuthenticationFailed,
                _ if failure.is_user() => ErrorCategory::Misconfigured,
                _ => ErrorCategory::Unreachable,
            };
            (category, error_chain(error))
        }
        SdkError::ConstructionFailure(_) => (ErrorCategory::Misconfigured, error_chain(error)),
        _ => {
            let code = error.code().unwrap_or("");
            let message = error.message().unwrap_or("");
            let category = classify(code, message, status);
            let detail = match (code.is_empty(), status) {
                (false, Some(status)) => format!("{code} (HTTP {status}): {message}"),
                (false, None) => format!("{code}: {message}"),
                (true, Some(status)) => format!("HTTP {status}: {}", error_chain(error)),
                (true, None) => error_chain(error),
            };
            (category, detail)
        }
    };
    let detail = match known {
        Some(value) if !value.expose().is_empty() => detail.replace(value.expose(), "[redacted]"),
        _ => detail,
    };
    RotatorError {
        category,
        operation,
        detail: detail.trim_end_matches(['.', ' ']).to_owned(),
        retry_after,
    }
}

/// The Display of an error and its sources, joined with ": " (never Debug, which for SDK errors
/// includes raw responses).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let part = next.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = next.source();
    }
    text
}

/// The credential provider's error behind a dispatch failure, if that is what it was.
fn credentials_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a CredentialsError> {
    let mut source = Some(error);
    while let Some(next) = source {
        if let Some(found) = next.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        source = next.source();
    }
    None
}

/// The category of a service error, by AWS error code first and HTTP status second.
pub fn classify(code: &str, message: &str, status: Option<u16>) -> ErrorCategory {
    match code {
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled" => ErrorCategory::Throttled,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException"
        | "ExpiredToken" => ErrorCategory::AuthenticationFailed,
        "AccessDeniedException" | "AccessDenied" => {
            // Some front ends answer AccessDenied for keys they do not know at all.
            let lowered = message.to_ascii_lowercase();
            if lowered.contains("security token") || lowered.contains("access key id") {
                ErrorCategory::AuthenticationFailed
            } else {
                ErrorCategory::PermissionDenied
            }
        }
        // Cannot use the KMS key the secret is encrypted with.
        "DecryptionFailure" => ErrorCategory::PermissionDenied,
        "ResourceNotFoundException" => ErrorCategory::NotFound,
        "InvalidRequestException"
        | "InvalidParameterException"
        | "ValidationException"
        | "ResourceExistsException"
        | "PreconditionNotMetException"
        | "EncryptionFailure"
        | "LimitExceededException"
        | "MalformedPolicyDocumentException" => ErrorCategory::Misconfigured,
        "InternalServiceError" | "InternalFailure" | "ServiceUnavailable" => ErrorCategory::Backend,
        _ => match status {
            Some(429) => ErrorCategory::Throttled,
            Some(401) => ErrorCategory::AuthenticationFailed,
            Some(403) => ErrorCategory::PermissionDenied,
            Some(404) => ErrorCategory::NotFound,
            _ => ErrorCategory::Backend,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_categories() {
        assert_eq!(
            classify("ThrottlingException", "Rate exceeded", Some(400)),
            ErrorCategory::Throttled
        );
        assert_eq!(classify("", "", Some(429)), ErrorCategory::Throttled);
        assert_eq!(
            classify("UnrecognizedClientException", "", Some(400)),
            ErrorCategory::AuthenticationFailed
        );
        assert_eq!(
            classify(
                "AccessDeniedException",
                "not authorized to perform",
                Some(400)
            ),
            ErrorCategory::PermissionDenied
        );
        assert_eq!(
            classify(
                "AccessDeniedException",
                "The security token included in the request is invalid",
                Some(400)
            ),
            ErrorCategory::AuthenticationFailed
        );
        assert_eq!(
            classify("ResourceNotFoundException", "", Some(400)),
            ErrorCategory::NotFound
        );
        assert_eq!(
            classify("InvalidRequestException", "", Some(400)),
            ErrorCategory::Misconfigured
        );
        assert_eq!(
            classify("InternalServiceError", "", Some(500)),
            ErrorCategory::Backend
        );
        assert_eq!(classify("", "", Some(503)), ErrorCategory::Backend);
    }
}
