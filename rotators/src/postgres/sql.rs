//! The SQL text the PostgreSQL rotator sends, built by pure functions so tests can assert on it:
//! identifiers always quoted, role names checked against the CRD's pattern, and the only
//! literals (a SCRAM verifier and a timestamp) checked against their alphabets before being
//! interpolated. DDL takes no bind parameters, hence literals at all.

use chrono::{DateTime, SecondsFormat, Utc};

use super::scram;
use crate::credential::SecretValue;

/// PostgreSQL's NAMEDATALEN - 1.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Checks `name` against `^[a-z_][a-z0-9_]*$` and the 63-byte limit (the CRD's rule, checked again
/// here because the rotator must not trust its caller with SQL).
pub fn validate_role_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return Err("a role name must not be empty".to_owned());
    };
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "role name of {} bytes exceeds PostgreSQL's {MAX_IDENTIFIER_BYTES}",
            name.len()
        ));
    }
    let valid_first = first.is_ascii_lowercase() || first == b'_';
    if !valid_first
        || !bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
    {
        // Echoing the name is safe: it is configuration, not a secret; escape_debug keeps
        // control characters out of logs.
        return Err(format!(
            "role name \"{}\" must match ^[a-z_][a-z0-9_]*$",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// `"name"` with every `"` doubled, as PostgreSQL's `quote_ident` does (always quoting, so
/// reserved words and mixed case are safe too).
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SCRAM verifier as a string literal. Its alphabet (base64, digits, `$`, `:`, `-` of the
/// prefix) has no quote or backslash; anything else is refused rather than escaped.
pub fn verifier_literal(verifier: &str) -> Result<String, String> {
    let well_formed = verifier.starts_with("SCRAM-SHA-256$")
        && verifier
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"+/=$:-".contains(&byte))
        && scram::parse(verifier).is_some();
    if well_formed {
        Ok(format!("'{verifier}'"))
    } else {
        Err("the computed SCRAM verifier is malformed".to_owned())
    }
}

/// `VALID UNTIL` literal: RFC 3339 UTC to the second, or `'infinity'` when there is no expiry.
pub fn valid_until_literal(valid_until: Option<DateTime<Utc>>) -> String {
    match valid_until {
        Some(time) => format!("'{}'", time.to_rfc3339_opts(SecondsFormat::Secs, true)),
        None => "'infinity'".to_owned(),
    }
}

/// `ALTER ROLE "role" WITH LOGIN PASSWORD '<verifier>' VALID UNTIL '<time>'`.
pub fn set_verifier_statement(
    role: &str,
    verifier: &str,
    valid_until: Option<DateTime<Utc>>,
) -> Result<String, String> {
    validate_role_name(role)?;
    Ok(format!(
        "ALTER ROLE {} WITH LOGIN PASSWORD {} VALID UNTIL {}",
        quote_identifier(role),
        verifier_literal(verifier)?,
        valid_until_literal(valid_until)
    ))
}

/// The statement that gives `role` the password `password`: computes a fresh verifier, so the
/// result never contains the password.
pub fn set_password_statement(
    role: &str,
    password: &SecretValue,
    valid_until: Option<DateTime<Utc>>,
) -> Result<String, String> {
    let verifier = scram::verifier(password).map_err(|error| error.to_string())?;
    set_verifier_statement(role, &verifier, valid_until)
}

/// The statement that locks `role` out without dropping it (its objects and grants survive):
/// NOLOGIN, so `trust`/`cert`/`peer` rules in pg_hba.conf cannot let it in either, and a verifier
/// of a random password nobody knows, expired since 1970. `set` grants LOGIN again when the role
/// becomes current at the next switch.
pub fn retire_statement(role: &str) -> Result<String, String> {
    let unknown = crate::credential::generate_password(32);
    let verifier = scram::verifier(&unknown).map_err(|error| error.to_string())?;
    validate_role_name(role)?;
    Ok(format!(
        "ALTER ROLE {} WITH NOLOGIN PASSWORD {} VALID UNTIL '1970-01-01T00:00:00Z'",
        quote_identifier(role),
        verifier_literal(&verifier)?
    ))
}

/// Attribute clause shared by CREATE ROLE / ALTER ROLE for the alternate role. Only attributes
/// that are safe to copy; SUPERUSER, REPLICATION and BYPASSRLS are refused before this.
pub fn attribute_clause(
    inherit: bool,
    create_database: bool,
    create_role: bool,
    connection_limit: i32,
) -> String {
    format!(
        "{} {} {} CONNECTION LIMIT {connection_limit}",
        if inherit { "INHERIT" } else { "NOINHERIT" },
        if create_database {
            "CREATEDB"
        } else {
            "NOCREATEDB"
        },
        if create_role {
            "CREATEROLE"
        } else {
            "NOCREATEROLE"
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_identifier("orders_app"), "\"orders_app\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_identifier("orders\"; DROP ROLE postgres; --"),
            "\"orders\"\"; DROP ROLE postgres; --\""
        );
    }

    #[test]
    fn literals_refuse_anything_outside_their_alphabet() {
        assert!(verifier_literal("SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5").is_ok());
        assert!(
            verifier_literal("SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5'; DROP ROLE x; --").is_err()
        );
        assert!(verifier_literal("plaintext").is_err());
        let time = DateTime::parse_from_rfc3339("2030-01-02T03:04:05.678+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(valid_until_literal(Some(time)), "'2030-01-02T01:04:05Z'");
        assert_eq!(valid_until_literal(None), "'infinity'");
    }

    #[test]
    fn role_names() {
        for good in ["orders_app", "_x", "a1", &"a".repeat(63)] {
            assert!(validate_role_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Orders", "1abc", "a-b", "a b", "a\"b", &"a".repeat(64)] {
            assert!(validate_role_name(bad).is_err(), "{bad}");
        }
    }
}
