//! Credential values and the only ways to look at them. A `SecretValue` never prints: `Debug`
//! and `Display` show `[redacted]`, and reading it requires an explicit `expose()` call that
//! review can grep for. What status, logs and audit records get is the fingerprint.

use std::fmt;

use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A secret string (password, token, key). Zeroised on drop.
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> SecretValue {
        SecretValue(SecretString::from(value.into()))
    }

    /// The value itself. Call only to hand it to a backend or a Secret, never to format it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &SecretValue) -> bool {
        // Not constant-time: used only in tests and idempotency checks on our own values.
        self.expose() == other.expose()
    }
}

impl Eq for SecretValue {}

/// Names a credential at its backend without revealing it: a role name, a KV version, an AWS
/// VersionId.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CredentialId(pub String);

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A credential as published to consumers: who to log in as and the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// What the backend calls this credential (role name, version id).
    pub id: CredentialId,
    /// The login name consumers use, when the backend has one.
    pub username: Option<String>,
    pub password: SecretValue,
    /// When the backend stops accepting it, if it enforces an expiry.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Credential {
    /// A one-way, stable identifier of the value: the first 16 hex digits of
    /// SHA-256("keyturn-fingerprint-v1" ‖ 0 ‖ username ‖ 0 ‖ password). Safe for status and audit:
    /// it matches a Secret against the backend, it does not reveal a random 32-character password.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"keyturn-fingerprint-v1\0");
        hasher.update(self.username.as_deref().unwrap_or("").as_bytes());
        hasher.update(b"\0");
        hasher.update(self.password.expose().as_bytes());
        let digest = hasher.finalize();
        hex::encode(&digest[..8])
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("fingerprint", &self.fingerprint())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A random password of `length` ASCII letters and digits (~5.95 bits each: 32 characters give
/// ~190 bits). Alphanumeric only, so it survives every connection-string and shell quoting.
pub fn generate_password(length: usize) -> SecretValue {
    let password: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect();
    SecretValue::new(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let credential = Credential {
            id: CredentialId("orders_app".into()),
            username: Some("orders_app".into()),
            password: SecretValue::new("canary-7f3a9c-do-not-print"),
            expires_at: None,
        };
        for text in [
            format!("{credential:?}"),
            format!("{credential:#?}"),
            format!("{}", credential.password),
            format!("{:?}", credential.password),
        ] {
            assert!(!text.contains("canary-7f3a9c"), "leaked: {text}");
        }
    }

    #[test]
    fn fingerprint_is_stable_and_distinguishes_values() {
        let make = |password: &str| Credential {
            id: CredentialId("r".into()),
            username: Some("r".into()),
            password: SecretValue::new(password),
            expires_at: None,
        };
        assert_eq!(make("a").fingerprint(), make("a").fingerprint());
        assert_ne!(make("a").fingerprint(), make("b").fingerprint());
        assert_eq!(make("a").fingerprint().len(), 16);
    }

    #[test]
    fn generated_passwords_are_long_random_and_alphanumeric() {
        let first = generate_password(32);
        let second = generate_password(32);
        assert_eq!(first.expose().len(), 32);
        assert!(first.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(first, second);
    }
}
