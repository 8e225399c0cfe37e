//! The Vault / OpenBao rotator: database secrets engine static roles and KV v2 secrets, with
//! token, AppRole or Kubernetes auth. Owns the connection and login (`connection`), the error
//! mapping (`error`) and one module per target (`database`, `kv`).
//!
//! # Where the write-ahead copy lives
//! - **Database static role**: Vault chooses the password. `create` calls `rotate-role` only if
//!   `static-creds` shows no rotation since `RotationContext::started_at`, then returns what
//!   `static-creds` holds. Vault's own record is the write-ahead copy: after a crash, `create`
//!   runs again, sees `last_vault_rotation >= started_at` and returns the same credential
//!   without rotating twice. `set` and `test` check that Vault still holds the staged value
//!   (the rotator has no database driver: the controller's Verify for this target compares
//!   against Vault's current value; the contract tests log in to PostgreSQL to prove it works).
//!   `finish` and `retire` do nothing: Vault keeps one password per static role, and
//!   `rotate-role` already made the previous one unusable.
//! - **KV v2**: keyturn chooses the password. `create` only generates it and names the version
//!   it will become (`current_version + 1`); the controller persists it in the staging Secret
//!   before `set` writes it with check-and-set on the version seen at `create`, so a concurrent
//!   writer is detected instead of overwritten. `retire` soft-deletes the previous version
//!   (recoverable with `undelete`; never destroyed).
//!
//! Vault's clock and keyturn's are compared for static roles (`last_vault_rotation` against
//! `started_at`): a Vault clock running behind keyturn's by more than the time between `create`
//! and a crash-restart makes the restarted `create` rotate once more. Consumers never saw the
//! first value, so nothing is lost, but keep clocks in sync (NTP).

mod connection;
mod database;
mod error;
mod kv;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use keyturn_crds::spec::VaultRotatorSpec;

use self::connection::{Connection, Session};
use crate::credential::{Credential, CredentialId, SecretValue};
use crate::error::{ErrorCategory, RotatorError};
use crate::rotator::{RotationContext, Rotator};

/// Where Kubernetes mounts the pod's service account token.
pub const DEFAULT_KUBERNETES_JWT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Bound on each HTTP request to Vault, connect included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The KV v2 data key holding the password (and `username`, carried over when present).
pub const KV_PASSWORD_KEY: &str = "password";
pub const KV_USERNAME_KEY: &str = "username";

/// The Vault policy keyturn needs for a KV v2 target; `{mount}` and `{path}` are replaced by
/// [`required_policy`]. Nothing else: no list, no destroy, no metadata write.
pub const KV_POLICY_TEMPLATE: &str = r#"# keyturn: rotate the KV v2 secret {mount}/{path}
path "{mount}/metadata/{path}" {
  capabilities = ["read"]
}
path "{mount}/data/{path}" {
  capabilities = ["create", "update", "read"]
}
path "{mount}/delete/{path}" {
  capabilities = ["update"]
}
"#;

/// The Vault policy keyturn needs for a database static role; `{mount}` and `{role}` are
/// replaced by [`required_policy`].
pub const DATABASE_POLICY_TEMPLATE: &str = r#"# keyturn: rotate the database static role {mount}/{role}
path "{mount}/static-creds/{role}" {
  capabilities = ["read"]
}
path "{mount}/rotate-role/{role}" {
  capabilities = ["update"]
}
"#;

/// The least-privilege Vault policy (HCL) keyturn needs for `target`.
pub fn required_policy(target: &VaultTarget) -> String {
    match target {
        VaultTarget::Kv { mount, path, .. } => KV_POLICY_TEMPLATE
            .replace("{mount}", mount.trim_matches('/'))
            .replace("{path}", path.trim_matches('/')),
        VaultTarget::DatabaseStaticRole { mount, role } => DATABASE_POLICY_TEMPLATE
            .replace("{mount}", mount.trim_matches('/'))
            .replace("{role}", role),
    }
}

/// How keyturn authenticates to Vault.
#[derive(Clone, Debug)]
pub enum VaultAuth {
    /// A token read from a Secret. Renewal is the token owner's business.
    Token(SecretValue),
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretValue,
    },
    /// The pod's service account token, re-read at every login.
    Kubernetes {
        mount: String,
        role: String,
        jwt_path: PathBuf,
    },
}

impl VaultAuth {
    /// Kubernetes auth with the default service account token path.
    pub fn kubernetes(mount: impl Into<String>, role: impl Into<String>) -> VaultAuth {
        VaultAuth::Kubernetes {
            mount: mount.into(),
            role: role.into(),
            jwt_path: PathBuf::from(DEFAULT_KUBERNETES_JWT_PATH),
        }
    }
}

/// What keyturn rotates in Vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultTarget {
    DatabaseStaticRole {
        mount: String,
        role: String,
    },
    Kv {
        mount: String,
        path: String,
        password_length: usize,
    },
}

/// Everything the rotator needs, resolved by the factory (Secrets already read).
#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// `http(s)://host:port`, without `/v1`.
    pub address: String,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// PEM bundle of the CA(s) to trust instead of the system roots.
    pub ca_pem: Option<String>,
    pub auth: VaultAuth,
    pub target: VaultTarget,
    pub request_timeout: Duration,
}

impl VaultConfig {
    pub fn new(address: impl Into<String>, auth: VaultAuth, target: VaultTarget) -> VaultConfig {
        VaultConfig {
            address: address.into(),
            namespace: None,
            ca_pem: None,
            auth,
            target,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Builds the configuration from the spec. `auth_secret` is the value of the Secret the
    /// auth refers to (the token for `token`, the secret id for `appRole`; ignored for
    /// `kubernetes`); `ca_pem` the value of `caSecretRef` when set.
    pub fn from_spec(
        spec: &VaultRotatorSpec,
        auth_secret: Option<SecretValue>,
        ca_pem: Option<String>,
    ) -> Result<VaultConfig, RotatorError> {
        let operation = format!("configure the Vault rotator for {}", spec.address);
        let invalid =
            |detail: &str| RotatorError::new(ErrorCategory::Misconfigured, &operation, detail);
        let auth = if spec.auth.token.is_some() {
            VaultAuth::Token(
                auth_secret.ok_or_else(|| invalid("auth.token needs the token's Secret value"))?,
            )
        } else if let Some(app_role) = &spec.auth.app_role {
            VaultAuth::AppRole {
                mount: app_role.mount.clone(),
                role_id: app_role.role_id.clone(),
                secret_id: auth_secret
                    .ok_or_else(|| invalid("auth.appRole needs the secret id's Secret value"))?,
            }
        } else if let Some(kubernetes) = &spec.auth.kubernetes {
            VaultAuth::kubernetes(kubernetes.mount.clone(), kubernetes.role.clone())
        } else {
            return Err(invalid(
                "set exactly one of auth.token, auth.appRole or auth.kubernetes",
            ));
        };
        let target = match (&spec.database_static_role, &spec.kv) {
            (Some(role), None) => VaultTarget::DatabaseStaticRole {
                mount: role.mount.clone(),
                role: role.role.clone(),
            },
            (None, Some(kv)) => VaultTarget::Kv {
                mount: kv.mount.clone(),
                path: kv.path.clone(),
                password_length: usize::from(kv.password_length),
            },
            _ => return Err(invalid("set exactly one of databaseStaticRole or kv")),
        };
        Ok(VaultConfig {
            namespace: spec.namespace.clone(),
            ca_pem,
            ..VaultConfig::new(spec.address.clone(), auth, target)
        })
    }
}

/// The Vault / OpenBao rotator. Cheap to keep: holds one HTTP client and a cached login token.
pub struct VaultRotator {
    connection: Connection,
    target: VaultTarget,
}

impl std::fmt::Debug for VaultRotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultRotator")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl VaultRotator {
    /// Checks the configuration (address, CA, names) and builds the HTTP client; no request.
    pub fn new(config: VaultConfig) -> Result<VaultRotator, RotatorError> {
        check_target(&config.target)?;
        let connection = Connection::new(&config)?;
        Ok(VaultRotator {
            connection,
            target: config.target,
        })
    }

    pub fn target(&self) -> &VaultTarget {
        &self.target
    }
}

/// Mounts, paths and roles go into URLs; refuse what the CRD's pattern refuses.
fn check_target(target: &VaultTarget) -> Result<(), RotatorError> {
    let names: Vec<(&str, &str)> = match target {
        VaultTarget::DatabaseStaticRole { mount, role } => vec![("mount", mount), ("role", role)],
        VaultTarget::Kv { mount, path, .. } => vec![("mount", mount), ("path", path)],
    };
    for (what, value) in names {
        let value = value.trim_matches('/');
        let valid = !value.is_empty()
            && !value
                .split('/')
                .any(|segment| segment.is_empty() || segment == "." || segment == "..")
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'));
        if !valid {
            return Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                "configure the Vault rotator",
                format!(
                    "the {what} {value:?} must be slash-separated letters, digits, `_`, `.` or `-`"
                ),
            ));
        }
    }
    if let VaultTarget::Kv {
        password_length, ..
    } = target
        && !(16..=256).contains(password_length)
    {
        return Err(RotatorError::new(
            ErrorCategory::Misconfigured,
            "configure the Vault rotator",
            "the password length must be between 16 and 256",
        ));
    }
    Ok(())
}

/// Runs `$body` with a session; when Vault refuses a cached login token (revoked since), logs
/// in again once; when it refuses a configured token outright, says so.
macro_rules! with_session {
    ($self:ident, |$session:ident| $body:expr) => {{
        let $session: Session = $self.connection.session().await?;
        match $body {
            Err(error) if error.category == ErrorCategory::PermissionDenied && $session.cached => {
                $self.connection.forget_token();
                let $session: Session = $self.connection.session().await?;
                $body
            }
            Err(error)
                if error.category == ErrorCategory::PermissionDenied
                    && $self.connection.token_is_refused(&$session).await =>
            {
                Err(RotatorError::new(
                    ErrorCategory::AuthenticationFailed,
                    error.operation,
                    "Vault refused the token (expired, revoked or wrong)",
                ))
            }
            other => other,
        }
    }};
}

#[async_trait]
impl Rotator for VaultRotator {
    fn kind(&self) -> &'static str {
        "vault"
    }

    async fn create(&self, context: &RotationContext) -> Result<Credential, RotatorError> {
        match &self.target {
            VaultTarget::DatabaseStaticRole { mount, role } => {
                with_session!(self, |session| database::create(
                    &self.connection,
                    &session,
                    mount,
                    role,
                    context
                )
                .await)
            }
            VaultTarget::Kv {
                mount,
                path,
                password_length,
            } => {
                with_session!(self, |session| kv::create(
                    &self.connection,
                    &session,
                    mount,
                    path,
                    *password_length
                )
                .await)
            }
        }
    }

    async fn set(
        &self,
        _context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        match &self.target {
            VaultTarget::DatabaseStaticRole { mount, role } => {
                with_session!(self, |session| database::check_current(
                    &self.connection,
                    &session,
                    mount,
                    role,
                    pending,
                    database::Step::Set
                )
                .await)
            }
            VaultTarget::Kv { mount, path, .. } => {
                with_session!(self, |session| kv::set(
                    &self.connection,
                    &session,
                    mount,
                    path,
                    pending
                )
                .await)
            }
        }
    }

    async fn test(
        &self,
        _context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        match &self.target {
            VaultTarget::DatabaseStaticRole { mount, role } => {
                with_session!(self, |session| database::check_current(
                    &self.connection,
                    &session,
                    mount,
                    role,
                    pending,
                    database::Step::Test
                )
                .await)
            }
            VaultTarget::Kv { mount, path, .. } => {
                with_session!(self, |session| kv::test(
                    &self.connection,
                    &session,
                    mount,
                    path,
                    pending
                )
                .await)
            }
        }
    }

    async fn finish(
        &self,
        _context: &RotationContext,
        _pending: &Credential,
    ) -> Result<(), RotatorError> {
        // Vault has no "current" label to move: the static role's password and the latest KV
        // version are current as soon as `set` succeeded.
        Ok(())
    }

    async fn retire(
        &self,
        _context: &RotationContext,
        previous: &CredentialId,
    ) -> Result<(), RotatorError> {
        match &self.target {
            // rotate-role already replaced the previous password in the database.
            VaultTarget::DatabaseStaticRole { .. } => Ok(()),
            VaultTarget::Kv { mount, path, .. } => {
                with_session!(self, |session| kv::retire(
                    &self.connection,
                    &session,
                    mount,
                    path,
                    previous
                )
                .await)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn kv(path: &str) -> VaultTarget {
        VaultTarget::Kv {
            mount: "secret".into(),
            path: path.into(),
            password_length: 32,
        }
    }

    #[test]
    fn policies_name_exactly_the_target() {
        let policy = required_policy(&kv("apps/orders"));
        assert!(policy.contains(r#"path "secret/data/apps/orders""#));
        assert!(policy.contains(r#"path "secret/delete/apps/orders""#));
        assert!(!policy.contains("destroy") && !policy.contains('*'));
        let policy = required_policy(&VaultTarget::DatabaseStaticRole {
            mount: "database".into(),
            role: "orders".into(),
        });
        assert!(policy.contains(r#"path "database/rotate-role/orders""#));
    }

    #[test]
    fn traversal_and_odd_characters_are_refused() {
        for path in ["../sys/policy", "a/../b", "a b", "a//b", "a\"b", ""] {
            assert!(check_target(&kv(path)).is_err(), "{path:?} must be refused");
        }
        assert!(check_target(&kv("apps/orders-db_1.v2")).is_ok());
    }

    #[test]
    fn bad_tokens_and_addresses_are_misconfigured_not_panics() {
        let config = |address: &str, token: &str| {
            VaultConfig::new(
                address,
                VaultAuth::Token(SecretValue::new(token)),
                kv("app"),
            )
        };
        for (address, token) in [
            ("vault:8200", "t"),
            ("ftp://vault", "t"),
            ("http://vault", "line\nbreak"),
            ("http://vault", ""),
        ] {
            let error = VaultRotator::new(config(address, token)).expect_err("must be refused");
            assert_eq!(error.category, ErrorCategory::Misconfigured);
            assert!(!error.to_string().contains("line\nbreak"));
        }
        assert!(
            VaultRotator::new(config("https://vault.example:8200", "hvs.token\n")).is_ok(),
            "trailing newline is trimmed"
        );
    }
}
