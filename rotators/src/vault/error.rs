//! Turns vaultrs errors into [`RotatorError`]s: a category from the HTTP status or transport
//! failure, and a detail built only from Vault's `errors` array with every known secret removed.
//! Response bodies (which may hold a password, e.g. an unparsable `static-creds` answer) are
//! never copied.

use std::time::Duration;

use vaultrs::error::ClientError;

use crate::error::{ErrorCategory, RotatorError};

/// Longest Vault message kept in an error detail.
const MAX_DETAIL: usize = 300;

/// What kind of call failed: a login maps refusals to `AuthenticationFailed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Login,
    Operation,
}

/// Maps `error` from the call described by `operation`. `secrets` are removed from any text
/// Vault sent back (defence in depth: Vault does not echo request bodies in errors today).
pub(crate) fn map_error(
    error: &ClientError,
    kind: CallKind,
    operation: &str,
    timeout: Duration,
    secrets: &[&str],
) -> RotatorError {
    let (category, detail) = classify(error, kind, timeout);
    RotatorError::new(category, operation, sanitize(&detail, secrets))
}

fn classify(error: &ClientError, kind: CallKind, timeout: Duration) -> (ErrorCategory, String) {
    match error {
        ClientError::APIError { code, errors } => {
            let message = if errors.is_empty() {
                "no message".to_owned()
            } else {
                errors.join("; ")
            };
            (
                category_for_status(*code, kind),
                format!("HTTP {code}: {}", one_line(&message)),
            )
        }
        ClientError::RestClientError { source } => classify_transport(source, kind, timeout),
        ClientError::RestClientBuildError { .. } => (
            ErrorCategory::Misconfigured,
            "cannot build the HTTP client".to_owned(),
        ),
        ClientError::ResponseEmptyError
        | ClientError::ResponseDataEmptyError
        | ClientError::JsonParseError { .. }
        | ClientError::ResponseWrapError
        | ClientError::WrapInvalidError => (
            ErrorCategory::Backend,
            format!(
                "unexpected response from Vault ({})",
                variant_message(error)
            ),
        ),
        other => (ErrorCategory::Backend, variant_message(other)),
    }
}

fn classify_transport(
    error: &rustify::errors::ClientError,
    kind: CallKind,
    timeout: Duration,
) -> (ErrorCategory, String) {
    use rustify::errors::ClientError as Rest;
    match error {
        Rest::RequestError { source, .. } => {
            let reqwest_error = source.downcast_ref::<reqwest::Error>();
            if reqwest_error.is_some_and(reqwest::Error::is_timeout) {
                (
                    ErrorCategory::Unreachable,
                    format!("no answer within {}s", timeout.as_secs_f32()),
                )
            } else if reqwest_error.is_some_and(reqwest::Error::is_connect) {
                (
                    ErrorCategory::Unreachable,
                    "cannot connect to Vault".to_owned(),
                )
            } else {
                (
                    ErrorCategory::Unreachable,
                    "the request to Vault failed in transport".to_owned(),
                )
            }
        }
        Rest::ResponseError { .. } => (
            ErrorCategory::Unreachable,
            "the response from Vault was cut off or timed out".to_owned(),
        ),
        // The body is not copied: it may be a response carrying a credential.
        Rest::ServerResponseError { code, .. } => {
            (category_for_status(*code, kind), format!("HTTP {code}"))
        }
        Rest::ResponseParseError { .. } | Rest::ResponseConversionError { .. } => (
            ErrorCategory::Backend,
            "unparsable response from Vault".to_owned(),
        ),
        Rest::UrlParseError { .. }
        | Rest::UrlBuildError { .. }
        | Rest::RequestBuildError { .. } => (
            ErrorCategory::Misconfigured,
            "cannot build the request URL from the address, mount or path".to_owned(),
        ),
        other => (ErrorCategory::Backend, other.to_string()),
    }
}

/// Vault answers a refused login with 400 ("invalid role or secret ID") or 403.
pub(crate) fn category_for_status(code: u16, kind: CallKind) -> ErrorCategory {
    match (code, kind) {
        (400 | 401 | 403, CallKind::Login) => ErrorCategory::AuthenticationFailed,
        (401, CallKind::Operation) => ErrorCategory::AuthenticationFailed,
        (403, CallKind::Operation) => ErrorCategory::PermissionDenied,
        (404, _) => ErrorCategory::NotFound,
        (429, _) => ErrorCategory::Throttled,
        // 412: a performance standby has not caught up yet; 503: sealed or standby.
        (412, _) | (500..=599, _) => ErrorCategory::Backend,
        (400..=499, _) => ErrorCategory::Misconfigured,
        _ => ErrorCategory::Backend,
    }
}

/// The variant's own message, without its source chain (which may carry URLs with bodies).
fn variant_message(error: &ClientError) -> String {
    error.to_string()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Removes every non-empty `secrets` value from `text` and bounds its length.
pub(crate) fn sanitize(text: &str, secrets: &[&str]) -> String {
    let mut clean = text.to_owned();
    for secret in secrets.iter().filter(|secret| secret.len() >= 4) {
        clean = clean.replace(secret, "[redacted]");
    }
    if clean.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
        clean.push('…');
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_categories() {
        use CallKind::*;
        assert_eq!(
            category_for_status(400, Login),
            ErrorCategory::AuthenticationFailed
        );
        assert_eq!(
            category_for_status(403, Login),
            ErrorCategory::AuthenticationFailed
        );
        assert_eq!(
            category_for_status(403, Operation),
            ErrorCategory::PermissionDenied
        );
        assert_eq!(category_for_status(404, Operation), ErrorCategory::NotFound);
        assert_eq!(
            category_for_status(429, Operation),
            ErrorCategory::Throttled
        );
        assert_eq!(category_for_status(503, Operation), ErrorCategory::Backend);
        assert_eq!(
            category_for_status(400, Operation),
            ErrorCategory::Misconfigured
        );
    }

    #[test]
    fn api_errors_keep_vaults_message_without_secrets() {
        let error = ClientError::APIError {
            code: 400,
            errors: vec!["bad value s3cretValue\n in request".to_owned()],
        };
        let mapped = map_error(
            &error,
            CallKind::Operation,
            "write kv/app",
            Duration::from_secs(1),
            &["s3cretValue"],
        );
        assert_eq!(mapped.category, ErrorCategory::Misconfigured);
        assert!(!mapped.to_string().contains("s3cretValue"), "{mapped}");
        assert!(
            mapped
                .to_string()
                .contains("HTTP 400: bad value [redacted] in request"),
            "{mapped}"
        );
    }

    #[test]
    fn unparsed_server_bodies_are_dropped() {
        let error = ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError {
                code: 500,
                content: Some(r#"{"password":"s3cretValue"}"#.to_owned()),
            },
        };
        let mapped = map_error(
            &error,
            CallKind::Operation,
            "read",
            Duration::from_secs(1),
            &[],
        );
        assert_eq!(mapped.category, ErrorCategory::Backend);
        assert!(!format!("{mapped:?}").contains("s3cretValue"));
    }

    #[test]
    fn long_details_are_truncated_on_a_char_boundary() {
        let text = "é".repeat(400);
        assert!(sanitize(&text, &[]).len() <= MAX_DETAIL + '…'.len_utf8());
    }
}
