//! Who may post audit events: the webhook's TLS configuration (always TLS; with a client CA,
//! rustls refuses any client without a certificate it signed, during the handshake) and the
//! optional bearer token, compared in constant time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the audit webhook needs caller authentication: set --audit-webhook-client-ca (mTLS) and/or --audit-webhook-token-file (bearer token)"
    )]
    NoAuthentication,
    #[error(
        "the audit webhook needs --audit-webhook-tls-cert and --audit-webhook-tls-key (it only serves TLS)"
    )]
    NoServingCertificate,
    #[error("read {what} {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("audit webhook TLS configuration: {0}")]
    Tls(String),
}

/// The bearer token callers must present. `Debug` never shows it.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("BearerToken([redacted])")
    }
}

impl BearerToken {
    /// The token in `text`, surrounding whitespace (a trailing newline) removed.
    pub fn new(text: &str) -> Option<BearerToken> {
        let token = text.trim();
        (!token.is_empty()).then(|| BearerToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Reads the token from a file (e.g. a mounted Secret).
    pub fn from_file(path: &Path) -> Result<BearerToken, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|error| AuthError::File {
            what: "--audit-webhook-token-file",
            path: path.to_owned(),
            reason: error.kind().to_string(),
        })?;
        BearerToken::new(&text).ok_or_else(|| AuthError::File {
            what: "--audit-webhook-token-file",
            path: path.to_owned(),
            reason: "the file is empty".to_owned(),
        })
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`. Both sides are hashed
    /// first, so the comparison takes the same time whatever the length or content presented.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(presented) = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
        else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.trim_ascii()).into();
        bool::from(presented.ct_eq(&self.digest))
    }
}

/// The webhook's TLS settings.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require client certificates signed by this CA.
    pub client_ca: Option<PathBuf>,
}

fn file_error(
    what: &'static str,
    path: &Path,
) -> impl Fn(rustls_pki_types::pem::Error) -> AuthError {
    let path = path.to_owned();
    move |error| AuthError::File {
        what,
        path: path.clone(),
        reason: error.to_string(),
    }
}

/// Builds the server configuration: HTTP/1.1 only, ring, TLS 1.2 and 1.3, and with a client
/// CA, a verifier that refuses clients without a certificate it signed.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, AuthError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(file_error("--audit-webhook-tls-cert", &files.cert))?
        .collect::<Result<_, _>>()
        .map_err(file_error("--audit-webhook-tls-cert", &files.cert))?;
    if certs.is_empty() {
        return Err(AuthError::File {
            what: "--audit-webhook-tls-cert",
            path: files.cert.clone(),
            reason: "no certificate in the file".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(file_error("--audit-webhook-tls-key", &files.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| AuthError::Tls(error.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(file_error("--audit-webhook-client-ca", path))?
            {
                let cert = cert.map_err(file_error("--audit-webhook-client-ca", path))?;
                roots
                    .add(cert)
                    .map_err(|error| AuthError::Tls(format!("client CA: {error}")))?;
            }
            if roots.is_empty() {
                return Err(AuthError::File {
                    what: "--audit-webhook-client-ca",
                    path: path.clone(),
                    reason: "no certificate in the file".to_owned(),
                });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| AuthError::Tls(format!("client CA: {error}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|error| AuthError::Tls(format!("serving certificate and key: {error}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        let token = BearerToken::new("s3cret-token\n").unwrap();
        assert!(token.accepts(Some(b"Bearer s3cret-token")));
        assert!(token.accepts(Some(b"bearer s3cret-token ")));
        for wrong in [
            &b"Bearer s3cret-toke"[..],
            b"Bearer s3cret-token2",
            b"Bearer ",
            b"s3cret-token",
            b"Basic s3cret-token",
            b"",
        ] {
            assert!(
                !token.accepts(Some(wrong)),
                "{}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert!(!token.accepts(None));
        assert!(BearerToken::new(" \n").is_none());
        assert_eq!(format!("{token:?}"), "BearerToken([redacted])");
    }

    #[test]
    fn missing_files_are_named() {
        let error = BearerToken::from_file(Path::new("/nonexistent/token")).unwrap_err();
        assert!(
            error.to_string().contains("--audit-webhook-token-file"),
            "{error}"
        );
        let error = server_config(&TlsFiles {
            cert: "/nonexistent/tls.crt".into(),
            key: "/nonexistent/tls.key".into(),
            client_ca: None,
        })
        .unwrap_err();
        assert!(
            error.to_string().contains("--audit-webhook-tls-cert"),
            "{error}"
        );
    }
}
