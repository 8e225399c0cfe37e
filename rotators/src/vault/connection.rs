//! The connection to Vault: one HTTP client (rustls with ring, the configured CA or the
//! platform's roots, a per-request timeout), and a token per call: the configured one, or one
//! from an AppRole / Kubernetes login, cached until 80 % of its lease has passed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls_platform_verifier::BuilderVerifierExt;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettings};

use super::error::{CallKind, map_error};
use super::{VaultAuth, VaultConfig};
use crate::credential::SecretValue;
use crate::error::{ErrorCategory, RotatorError};

/// A client carrying a token, and whether that token came from the cache (so a 403 may mean
/// it was revoked since and a fresh login is worth one retry).
pub(crate) struct Session {
    pub(crate) client: VaultClient,
    pub(crate) cached: bool,
}

struct CachedToken {
    token: SecretValue,
    /// `None`: the token does not expire (lease_duration 0).
    refresh_at: Option<Instant>,
}

pub(crate) struct Connection {
    http: reqwest::Client,
    address: url::Url,
    namespace: Option<String>,
    auth: VaultAuth,
    timeout: Duration,
    cache: Mutex<Option<CachedToken>>,
}

impl Connection {
    pub(crate) fn new(config: &VaultConfig) -> Result<Connection, RotatorError> {
        let operation = format!("configure the Vault client for {}", config.address);
        let misconfigured =
            |detail: &str| RotatorError::new(ErrorCategory::Misconfigured, &operation, detail);
        let address = url::Url::parse(&config.address)
            .map_err(|_| misconfigured("the address is not a URL"))?;
        if !matches!(address.scheme(), "http" | "https") {
            return Err(misconfigured(
                "the address must start with http:// or https://",
            ));
        }
        if let Some(namespace) = &config.namespace {
            check_header_value(namespace)
                .map_err(|()| misconfigured("the namespace is not a valid header value"))?;
        }
        if let VaultAuth::Token(token) = &config.auth {
            check_header_value(token.expose().trim()).map_err(|()| {
                misconfigured("the token is empty or holds characters a token cannot have")
            })?;
        }
        let tls = tls_config(config.ca_pem.as_deref()).map_err(|detail| misconfigured(&detail))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            // Vault's redirects (standby → active) keep the token header only on the same host;
            // reqwest drops sensitive headers across hosts, which is what we want.
            .build()
            .map_err(|_| misconfigured("cannot build the HTTP client"))?;
        Ok(Connection {
            http,
            address,
            namespace: config.namespace.clone(),
            auth: config.auth.clone(),
            timeout: config.request_timeout,
            cache: Mutex::new(None),
        })
    }

    /// Maps a failed operation's error, scrubbing this connection's secrets and `extra`.
    pub(crate) fn error(
        &self,
        error: &vaultrs::error::ClientError,
        operation: &str,
        extra: &[&str],
    ) -> RotatorError {
        let own = self.own_secrets();
        let mut secrets: Vec<&str> = own.iter().map(String::as_str).collect();
        secrets.extend_from_slice(extra);
        map_error(
            error,
            CallKind::Operation,
            operation,
            self.timeout,
            &secrets,
        )
    }

    /// The secrets this connection knows, to scrub from error text.
    fn own_secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        match &self.auth {
            VaultAuth::Token(token) => secrets.push(token.expose().to_owned()),
            VaultAuth::AppRole { secret_id, .. } => secrets.push(secret_id.expose().to_owned()),
            VaultAuth::Kubernetes { .. } => {}
        }
        if let Ok(cache) = self.cache.lock()
            && let Some(cached) = cache.as_ref()
        {
            secrets.push(cached.token.expose().to_owned());
        }
        secrets
    }

    fn client_with_token(&self, token: &str) -> VaultClient {
        let settings = VaultClientSettings {
            address: self.address.clone(),
            ca_certs: Vec::new(),
            identity: None,
            timeout: Some(self.timeout),
            token: token.to_owned(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: self.namespace.clone(),
            proxy: None,
        };
        // Built by hand rather than with `VaultClient::new`: that one reads VAULT_* variables,
        // takes the CA only as a file path, and asks rustls for a process-wide crypto provider.
        VaultClient {
            http: rustify::clients::reqwest::Client::new(
                self.address.as_str().trim_end_matches('/'),
                self.http.clone(),
            ),
            middle: EndpointMiddleware {
                token: token.to_owned(),
                version: "v1".to_owned(),
                wrap: None,
                namespace: self.namespace.clone(),
            },
            settings,
        }
    }

    /// A client with a usable token: the configured token, a cached login, or a new login.
    pub(crate) async fn session(&self) -> Result<Session, RotatorError> {
        if let VaultAuth::Token(token) = &self.auth {
            return Ok(Session {
                client: self.client_with_token(token.expose().trim()),
                cached: false,
            });
        }
        if let Some(token) = self.cached_token() {
            return Ok(Session {
                client: self.client_with_token(token.expose()),
                cached: true,
            });
        }
        let (token, lease) = self.login().await?;
        let refresh_at = (lease > Duration::ZERO).then(|| Instant::now() + lease.mul_f64(0.8));
        let client = self.client_with_token(token.expose());
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some(CachedToken { token, refresh_at });
        }
        Ok(Session {
            client,
            cached: false,
        })
    }

    fn cached_token(&self) -> Option<SecretValue> {
        let cache = self.cache.lock().ok()?;
        let cached = cache.as_ref()?;
        match cached.refresh_at {
            Some(refresh_at) if Instant::now() >= refresh_at => None,
            _ => Some(cached.token.clone()),
        }
    }

    /// Drops the cached token (after Vault refused it).
    pub(crate) fn forget_token(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            *cache = None;
        }
    }

    async fn login(&self) -> Result<(SecretValue, Duration), RotatorError> {
        let anonymous = self.client_with_token("");
        let (operation, result, secret) = match &self.auth {
            VaultAuth::Token(_) => {
                return Err(RotatorError::new(
                    ErrorCategory::Misconfigured,
                    "Vault login",
                    "token auth does not log in",
                ));
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let operation = format!("AppRole login at auth/{mount} in Vault {}", self.address);
                let result =
                    vaultrs::auth::approle::login(&anonymous, mount, role_id, secret_id.expose())
                        .await;
                (operation, result, secret_id.expose().to_owned())
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_path,
            } => {
                let operation = format!(
                    "Kubernetes login as role {role} at auth/{mount} in Vault {}",
                    self.address
                );
                // Read at every login: projected service account tokens are rotated by the kubelet.
                let jwt = std::fs::read_to_string(jwt_path).map_err(|error| {
                    RotatorError::new(
                        ErrorCategory::Misconfigured,
                        &operation,
                        format!(
                            "cannot read the service account token {}: {}",
                            jwt_path.display(),
                            error.kind()
                        ),
                    )
                })?;
                let jwt = jwt.trim().to_owned();
                let result = vaultrs::auth::kubernetes::login(&anonymous, mount, role, &jwt).await;
                (operation, result, jwt)
            }
        };
        let auth = result.map_err(|error| {
            map_error(
                &error,
                CallKind::Login,
                &operation,
                self.timeout,
                &[&secret],
            )
        })?;
        if check_header_value(&auth.client_token).is_err() {
            return Err(RotatorError::new(
                ErrorCategory::Backend,
                operation,
                "the login returned an unusable token",
            ));
        }
        Ok((
            SecretValue::new(auth.client_token),
            Duration::from_secs(auth.lease_duration),
        ))
    }

    /// After a 403 with the configured token: tells a refused token (expired, revoked, wrong)
    /// from a token that lacks the policy, with `lookup-self` (allowed by Vault's default policy).
    pub(crate) async fn token_is_refused(&self, session: &Session) -> bool {
        if !matches!(self.auth, VaultAuth::Token(_)) {
            return false;
        }
        matches!(
            vaultrs::token::lookup_self(&session.client).await,
            Err(vaultrs::error::ClientError::APIError {
                code: 403 | 401,
                ..
            })
        )
    }
}

/// Vault tokens, namespaces and JWTs go into HTTP headers; vaultrs unwraps the header
/// conversion, so a stray newline from a Secret would panic there. Refuse it up front.
fn check_header_value(value: &str) -> Result<(), ()> {
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(())
    }
}

fn tls_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| "no TLS protocol version available".to_owned())?;
    let config = match ca_pem {
        // A configured CA replaces the system roots, as VAULT_CACERT does.
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let certificate =
                    certificate.map_err(|_| "the CA bundle is not valid PEM".to_owned())?;
                roots
                    .add(certificate)
                    .map_err(|_| "the CA bundle holds an invalid certificate".to_owned())?;
            }
            if roots.is_empty() {
                return Err("the CA bundle holds no certificate".to_owned());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .with_platform_verifier()
            .map_err(|_| "cannot load the platform's CA certificates".to_owned())?
            .with_no_client_auth(),
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_with_control_characters_are_refused() {
        assert!(check_header_value("hvs.abc").is_ok());
        assert!(check_header_value("hvs.abc\n").is_err());
        assert!(check_header_value("").is_err());
        assert!(check_header_value("a b").is_err());
    }

    #[test]
    fn ca_bundles_must_hold_certificates() {
        assert!(tls_config(Some("not pem")).is_err());
        assert!(tls_config(None).is_ok());
    }
}
