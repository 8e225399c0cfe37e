//! Reads of managed Secrets (DESIGN.md, property 6): the Kubernetes audit webhook that records
//! them in the audit log, the index of which Secrets are managed, and the leader's summary that
//! feeds `status.reads` and the `UnexpectedReader` condition. See docs/audit.md, "Reads".

pub mod auth;
pub mod event;
pub mod index;
pub mod record;
pub mod summary;
pub mod webhook;

use base64::Engine as _;

/// Where the kubelet mounts the pod's service account token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// keyturn's own username, `system:serviceaccount:NS:NAME`, from the `sub` claim of the token
/// in `token` (the pod's own, read without verifying: it only names who we are). `None` out of
/// a cluster or when the token is not a JWT.
pub fn own_identity(token: &str) -> Option<String> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let subject = claims.get("sub")?.as_str()?;
    subject
        .starts_with("system:serviceaccount:")
        .then(|| subject.to_owned())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn own_identity_is_the_token_subject() {
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let token = format!(
            "{}.{}.signature",
            encode(r#"{"alg":"RS256"}"#),
            encode(
                r#"{"sub":"system:serviceaccount:keyturn-system:keyturn-operator","aud":["x"]}"#
            )
        );
        assert_eq!(
            own_identity(&format!("{token}\n")).as_deref(),
            Some("system:serviceaccount:keyturn-system:keyturn-operator")
        );
        assert_eq!(own_identity("not a token"), None);
        let user = format!("a.{}.c", encode(r#"{"sub":"alice"}"#));
        assert_eq!(own_identity(&user), None);
    }
}
