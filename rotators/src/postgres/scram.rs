//! SCRAM-SHA-256 verifiers (RFC 5802 / RFC 7677) in PostgreSQL's storage format, computed here so
//! the server only ever receives `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
//! never the password. Same parameters as PostgreSQL's own `scram_build_secret`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::credential::SecretValue;

/// PostgreSQL's default `scram_iterations`.
pub const ITERATIONS: u32 = 4096;
/// PostgreSQL's `SCRAM_DEFAULT_SALT_LEN`.
pub const SALT_LENGTH: usize = 16;

const PREFIX: &str = "SCRAM-SHA-256$";

/// Why no verifier could be computed. Never carries the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// PostgreSQL would SASLprep-normalise anything else; keyturn's generated passwords are
    /// alphanumeric, so refusing is simpler than reimplementing SASLprep.
    #[error("the password must be non-empty printable ASCII for a client-side SCRAM verifier")]
    UnsupportedPassword,
    #[error("the SCRAM iteration count must be positive")]
    NoIterations,
}

/// A parsed verifier: what PostgreSQL stores in `pg_authid.rolpassword`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// The verifier for `password` with a fresh random 16-byte salt and 4096 iterations.
pub fn verifier(password: &SecretValue) -> Result<String, ScramError> {
    let mut salt = [0u8; SALT_LENGTH];
    rand::rng().fill_bytes(&mut salt);
    verifier_with(password.expose(), &salt, ITERATIONS)
}

/// The verifier for `password` with the given salt and iteration count (deterministic: for
/// comparing with a verifier PostgreSQL computed itself).
pub fn verifier_with(password: &str, salt: &[u8], iterations: u32) -> Result<String, ScramError> {
    if password.is_empty() || !password.bytes().all(|byte| (0x20..=0x7e).contains(&byte)) {
        return Err(ScramError::UnsupportedPassword);
    }
    if iterations == 0 {
        return Err(ScramError::NoIterations);
    }
    let mut salted_password = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted_password);
    let client_key = hmac_sha256(&salted_password, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac_sha256(&salted_password, b"Server Key");
    Ok(format!(
        "{PREFIX}{iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    ))
}

/// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`; `None` if malformed.
pub fn parse(verifier: &str) -> Option<ScramVerifier> {
    let rest = verifier.strip_prefix(PREFIX)?;
    let (parameters, keys) = rest.split_once('$')?;
    let (iterations, salt) = parameters.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    Some(ScramVerifier {
        iterations: iterations.parse().ok()?,
        salt: STANDARD.decode(salt).ok()?,
        stored_key: STANDARD.decode(stored_key).ok()?,
        server_key: STANDARD.decode(server_key).ok()?,
    })
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it. The fallback keeps
    // the function total without a panic path.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0u8; 32],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    // RFC 7677 section 3 example: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
    // 4096 iterations; the server signature there is HMAC(ServerKey, AuthMessage), so check the
    // keys through the ClientProof/ServerSignature the RFC exchange implies.
    #[test]
    fn matches_the_rfc_7677_exchange() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let parsed = parse(&verifier_with("pencil", &salt, 4096).unwrap()).unwrap();
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = hmac_sha256(&parsed.server_key, auth_message.as_bytes());
        assert_eq!(
            STANDARD.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let client_signature = hmac_sha256(&parsed.stored_key, auth_message.as_bytes());
        let proof = STANDARD
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(
            Sha256::digest(&client_key).as_slice(),
            parsed.stored_key.as_slice()
        );
    }

    #[test]
    fn format_and_parameters() {
        let password = SecretValue::new("CanaryPw0rd7f3a9cDoNotLeak");
        let first = verifier(&password).unwrap();
        let second = verifier(&password).unwrap();
        assert_ne!(first, second, "a fresh salt each time");
        assert!(!first.contains(password.expose()));
        let parsed = parse(&first).unwrap();
        assert_eq!(parsed.iterations, 4096);
        assert_eq!(parsed.salt.len(), 16);
        assert_eq!(parsed.stored_key.len(), 32);
        assert_eq!(parsed.server_key.len(), 32);
        assert_eq!(
            verifier_with(password.expose(), &parsed.salt, 4096).unwrap(),
            first
        );
    }

    #[test]
    fn refuses_what_postgresql_would_normalise() {
        assert_eq!(
            verifier_with("", b"salt", 4096),
            Err(ScramError::UnsupportedPassword)
        );
        assert_eq!(
            verifier_with("pässword", b"salt", 4096),
            Err(ScramError::UnsupportedPassword)
        );
        assert_eq!(
            verifier_with("tab\tbed", b"salt", 4096),
            Err(ScramError::UnsupportedPassword)
        );
        assert_eq!(
            verifier_with("ok", b"salt", 0),
            Err(ScramError::NoIterations)
        );
    }
}
