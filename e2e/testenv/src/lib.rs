//! Addresses of the real backends that `./scripts/test.sh` starts for the tests.
//!
//! The script starts a throwaway PostgreSQL, an OpenBao dev server and a moto
//! (AWS Secrets Manager) server on free loopback ports and exports their
//! addresses in `KEYTURN_TEST_*` variables (also written to `target/test-env.sh`).
//! A backend test asks for the backend it needs and returns early when it is
//! not available:
//!
//! ```no_run
//! # fn test_body() {
//! let Some(pg) = keyturn_testenv::postgres() else { return };
//! // ... connect to pg.url ...
//! # let _ = pg;
//! # }
//! ```
//!
//! The rule for a missing variable:
//! - under CI (`CI=true`), or when `KEYTURN_TEST_REQUIRE_BACKENDS=1` (which
//!   `scripts/test.sh` sets), the call **panics** with a message naming the
//!   variable and how to get it, so a misconfigured run never passes by skipping;
//! - otherwise it prints `SKIPPED: ...` to stderr and returns `None`.
//!
//! A variable that is set but malformed always panics.

use std::fmt;

/// Connection URL of the throwaway PostgreSQL (`postgres://postgres:PASS@127.0.0.1:PORT/keyturn`).
pub const POSTGRES_URL: &str = "KEYTURN_TEST_POSTGRES_URL";
/// Base address of the OpenBao dev server (`http://127.0.0.1:PORT`).
pub const OPENBAO_ADDR: &str = "KEYTURN_TEST_OPENBAO_ADDR";
/// Root token of the OpenBao dev server.
pub const OPENBAO_TOKEN: &str = "KEYTURN_TEST_OPENBAO_TOKEN";
/// Endpoint of the moto server standing in for AWS (`http://127.0.0.1:PORT`).
pub const AWS_ENDPOINT: &str = "KEYTURN_TEST_AWS_ENDPOINT";
/// AWS region to sign requests for (`us-east-1`).
pub const AWS_REGION: &str = "KEYTURN_TEST_AWS_REGION";
/// Set to `1` to make a missing backend a failure outside CI too.
pub const REQUIRE_BACKENDS: &str = "KEYTURN_TEST_REQUIRE_BACKENDS";
/// CA certificate (PEM file) of the test PostgreSQL's TLS listener.
pub const POSTGRES_CA_FILE: &str = "KEYTURN_TEST_POSTGRES_CA_FILE";

fn fix(backend: &str) -> String {
    format!(
        "run ./scripts/test.sh, which starts {backend} (or, to run single tests by hand, \
         `./scripts/test.sh --serve` in another terminal, then `source target/test-env.sh`)"
    )
}

/// Decodes `%XX` escapes (as in the user and password of a URL); invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = (hex(h), hex(l))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The throwaway PostgreSQL server.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresEnv {
    /// Full connection URL, including the superuser password.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// A superuser.
    pub user: String,
    pub password: String,
    /// The database created for the tests (`keyturn`).
    pub database: String,
}

impl PostgresEnv {
    /// The same server and credentials, another database.
    pub fn url_for_database(&self, database: &str) -> String {
        let mut url = url::Url::parse(&self.url).unwrap_or_else(|e| {
            panic!("{POSTGRES_URL} was parsed before but is no longer valid: {e}")
        });
        url.set_path(database);
        url.to_string()
    }

    /// The same server and database, as another user.
    pub fn url_for_user(&self, user: &str, password: &str) -> String {
        let mut url = url::Url::parse(&self.url).unwrap_or_else(|e| {
            panic!("{POSTGRES_URL} was parsed before but is no longer valid: {e}")
        });
        if url.set_username(user).is_err() || url.set_password(Some(password)).is_err() {
            panic!("cannot set credentials on {POSTGRES_URL}");
        }
        url.to_string()
    }
}

impl fmt::Debug for PostgresEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresEnv")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .finish()
    }
}

/// The OpenBao dev server (Vault API, in-memory, unsealed).
#[derive(Clone, PartialEq, Eq)]
pub struct OpenBaoEnv {
    /// Base address without a trailing slash, e.g. `http://127.0.0.1:8200`.
    pub addr: String,
    /// Root token.
    pub token: String,
}

impl fmt::Debug for OpenBaoEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoEnv")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The moto server standing in for AWS Secrets Manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsEnv {
    /// Endpoint URL without a trailing slash, e.g. `http://127.0.0.1:5000`.
    pub endpoint: String,
    pub region: String,
}

/// What to do about a backend, given the values of the variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<T> {
    /// All variables are set and valid.
    Ready(T),
    /// Not available; the test should return early after printing this notice.
    Skip(String),
    /// Not available where it must be (CI), or misconfigured: the test must fail.
    Fail(String),
}

/// Whether a missing backend must fail the test rather than skip it.
///
/// True when `CI` is `true`/`1`/`yes` or `KEYTURN_TEST_REQUIRE_BACKENDS` is set to one of those.
pub fn backends_required(get: &dyn Fn(&str) -> Option<String>) -> bool {
    let truthy = |name: &str| {
        get(name)
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
    };
    truthy("CI") || truthy(REQUIRE_BACKENDS)
}

/// Looks up `vars` through `get` (empty counts as missing) and applies the CI rule.
/// Pure: all environment access goes through `get`.
fn lookup(
    backend: &str,
    vars: &[&str],
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Resolution<std::convert::Infallible>> {
    let mut values = Vec::with_capacity(vars.len());
    let mut missing = Vec::new();
    for var in vars {
        match get(var).filter(|v| !v.trim().is_empty()) {
            Some(v) => values.push(v),
            None => missing.push(*var),
        }
    }
    if missing.is_empty() {
        return Ok(values);
    }
    let what = format!(
        "{} {} not set: {}",
        missing.join(" and "),
        if missing.len() == 1 { "is" } else { "are" },
        fix(backend),
    );
    if backends_required(get) {
        Err(Resolution::Fail(format!(
            "{what}. Backend tests must not be skipped under CI."
        )))
    } else {
        Err(Resolution::Skip(format!(
            "SKIPPED: {what}. This test did not run against {backend}."
        )))
    }
}

fn convert<T>(r: Resolution<std::convert::Infallible>) -> Resolution<T> {
    match r {
        Resolution::Skip(m) => Resolution::Skip(m),
        Resolution::Fail(m) => Resolution::Fail(m),
        Resolution::Ready(never) => match never {},
    }
}

fn trim_slash(s: &str) -> String {
    s.trim().trim_end_matches('/').to_owned()
}

fn http_base(var: &str, value: &str) -> Result<String, String> {
    let parsed =
        url::Url::parse(value.trim()).map_err(|e| format!("{var}={value:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!("{var}={value:?} is not an http(s) URL"));
    }
    Ok(trim_slash(value))
}

/// Resolves the PostgreSQL backend from the looked-up values.
pub fn resolve_postgres(get: &dyn Fn(&str) -> Option<String>) -> Resolution<PostgresEnv> {
    let values = match lookup("PostgreSQL", &[POSTGRES_URL], get) {
        Ok(v) => v,
        Err(r) => return convert(r),
    };
    let raw = values[0].trim().to_owned();
    let url = match url::Url::parse(&raw) {
        Ok(u) => u,
        Err(e) => return Resolution::Fail(format!("{POSTGRES_URL} is not a URL: {e}")),
    };
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Resolution::Fail(format!(
            "{POSTGRES_URL} must start with postgres://, got scheme {:?}",
            url.scheme()
        ));
    }
    let decode = percent_decode;
    let Some(host) = url.host_str().map(str::to_owned) else {
        return Resolution::Fail(format!("{POSTGRES_URL} has no host"));
    };
    let database = url.path().trim_start_matches('/').to_owned();
    Resolution::Ready(PostgresEnv {
        host,
        port: url.port().unwrap_or(5432),
        user: decode(url.username()),
        password: url.password().map(decode).unwrap_or_default(),
        database: if database.is_empty() {
            "postgres".to_owned()
        } else {
            decode(&database)
        },
        url: raw,
    })
}

/// Resolves the OpenBao backend from the looked-up values.
pub fn resolve_openbao(get: &dyn Fn(&str) -> Option<String>) -> Resolution<OpenBaoEnv> {
    let values = match lookup("OpenBao", &[OPENBAO_ADDR, OPENBAO_TOKEN], get) {
        Ok(v) => v,
        Err(r) => return convert(r),
    };
    match http_base(OPENBAO_ADDR, &values[0]) {
        Ok(addr) => Resolution::Ready(OpenBaoEnv {
            addr,
            token: values[1].trim().to_owned(),
        }),
        Err(e) => Resolution::Fail(e),
    }
}

/// Resolves the AWS (moto) backend from the looked-up values.
pub fn resolve_aws(get: &dyn Fn(&str) -> Option<String>) -> Resolution<AwsEnv> {
    let values = match lookup(
        "AWS Secrets Manager (moto)",
        &[AWS_ENDPOINT, AWS_REGION],
        get,
    ) {
        Ok(v) => v,
        Err(r) => return convert(r),
    };
    match http_base(AWS_ENDPOINT, &values[0]) {
        Ok(endpoint) => Resolution::Ready(AwsEnv {
            endpoint,
            region: values[1].trim().to_owned(),
        }),
        Err(e) => Resolution::Fail(e),
    }
}

/// Turns a resolution into what a test uses: the value, or `None` after a notice, or a panic.
pub fn settle<T>(resolution: Resolution<T>) -> Option<T> {
    match resolution {
        Resolution::Ready(v) => Some(v),
        Resolution::Skip(notice) => {
            eprintln!("{notice}");
            None
        }
        Resolution::Fail(message) => panic!("{message}"),
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The throwaway PostgreSQL, or `None` (after a `SKIPPED:` notice) outside CI when it is not configured.
///
/// # Panics
/// Under CI when `KEYTURN_TEST_POSTGRES_URL` is missing, and whenever it is malformed.
pub fn postgres() -> Option<PostgresEnv> {
    settle(resolve_postgres(&process_env))
}

/// The CA certificate (PEM file) of the throwaway PostgreSQL's TLS listener, for `verify-full`
/// tests; `None` (after a `SKIPPED:` notice) outside CI when it is not configured.
///
/// # Panics
/// Under CI when `KEYTURN_TEST_POSTGRES_CA_FILE` is missing.
pub fn postgres_ca_file() -> Option<std::path::PathBuf> {
    settle(resolve_postgres_ca_file(&process_env))
}

/// Resolves the PostgreSQL TLS CA file from the looked-up values.
pub fn resolve_postgres_ca_file(
    get: &dyn Fn(&str) -> Option<String>,
) -> Resolution<std::path::PathBuf> {
    match lookup("PostgreSQL TLS", &[POSTGRES_CA_FILE], get) {
        Ok(values) => Resolution::Ready(std::path::PathBuf::from(values[0].trim())),
        Err(r) => convert(r),
    }
}

/// The OpenBao dev server, or `None` (after a `SKIPPED:` notice) outside CI when it is not configured.
///
/// # Panics
/// Under CI when `KEYTURN_TEST_OPENBAO_ADDR`/`_TOKEN` are missing, and whenever they are malformed.
pub fn openbao() -> Option<OpenBaoEnv> {
    settle(resolve_openbao(&process_env))
}

/// The moto server for AWS Secrets Manager, or `None` (after a `SKIPPED:` notice) outside CI when it
/// is not configured. Requests to it need `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, which
/// `scripts/test.sh` sets to dummies.
///
/// # Panics
/// Under CI when `KEYTURN_TEST_AWS_ENDPOINT`/`_REGION` are missing, and whenever they are malformed.
pub fn aws() -> Option<AwsEnv> {
    settle(resolve_aws(&process_env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn missing_outside_ci_skips_with_a_notice() {
        let r = resolve_postgres(&env(&[]));
        let Resolution::Skip(notice) = r else {
            panic!("expected Skip, got {r:?}")
        };
        assert!(notice.starts_with("SKIPPED: "), "{notice}");
        assert!(
            notice.contains("KEYTURN_TEST_POSTGRES_URL is not set"),
            "{notice}"
        );
        assert!(notice.contains("./scripts/test.sh"), "{notice}");
        assert!(notice.contains("starts PostgreSQL"), "{notice}");
        assert_eq!(settle(resolve_postgres(&env(&[("CI", "false")]))), None);
    }

    #[test]
    fn missing_under_ci_fails_naming_the_variable_and_the_fix() {
        for ci in ["true", "TRUE", "1", "yes"] {
            let r = resolve_openbao(&env(&[("CI", ci), (OPENBAO_ADDR, "http://127.0.0.1:1")]));
            let Resolution::Fail(msg) = r else {
                panic!("CI={ci}: expected Fail, got {r:?}")
            };
            assert!(
                msg.contains("KEYTURN_TEST_OPENBAO_TOKEN is not set"),
                "{msg}"
            );
            assert!(!msg.contains("KEYTURN_TEST_OPENBAO_ADDR"), "{msg}");
            assert!(
                msg.contains("run ./scripts/test.sh, which starts OpenBao"),
                "{msg}"
            );
        }
    }

    #[test]
    fn require_backends_acts_like_ci() {
        let r = resolve_aws(&env(&[(REQUIRE_BACKENDS, "1")]));
        let Resolution::Fail(msg) = r else {
            panic!("expected Fail, got {r:?}")
        };
        assert!(
            msg.contains("KEYTURN_TEST_AWS_ENDPOINT and KEYTURN_TEST_AWS_REGION are not set"),
            "{msg}"
        );
    }

    #[test]
    #[should_panic(expected = "KEYTURN_TEST_POSTGRES_URL is not set: run ./scripts/test.sh")]
    fn settle_panics_under_ci() {
        let _ = settle(resolve_postgres(&env(&[("CI", "true")])));
    }

    #[test]
    fn empty_counts_as_missing() {
        assert!(matches!(
            resolve_postgres(&env(&[(POSTGRES_URL, "  ")])),
            Resolution::Skip(_)
        ));
    }

    #[test]
    fn parses_a_postgres_url() {
        let url = "postgres://postgres:s3cr%2Ft@127.0.0.1:54321/keyturn";
        let r = resolve_postgres(&env(&[(POSTGRES_URL, url), ("CI", "true")]));
        assert_eq!(
            r,
            Resolution::Ready(PostgresEnv {
                url: url.to_owned(),
                host: "127.0.0.1".to_owned(),
                port: 54321,
                user: "postgres".to_owned(),
                password: "s3cr/t".to_owned(),
                database: "keyturn".to_owned(),
            })
        );
        let Resolution::Ready(pg) = r else { return };
        assert_eq!(
            pg.url_for_database("other"),
            "postgres://postgres:s3cr%2Ft@127.0.0.1:54321/other"
        );
        assert_eq!(
            pg.url_for_user("app", "pw"),
            "postgres://app:pw@127.0.0.1:54321/keyturn"
        );
        assert!(!format!("{pg:?}").contains("s3cr"));
    }

    #[test]
    fn malformed_values_fail_even_outside_ci() {
        assert!(matches!(
            resolve_postgres(&env(&[(POSTGRES_URL, "mysql://x@h/db")])),
            Resolution::Fail(_)
        ));
        assert!(matches!(
            resolve_aws(&env(&[
                (AWS_ENDPOINT, "not a url"),
                (AWS_REGION, "us-east-1")
            ])),
            Resolution::Fail(_)
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%40c+d"), "a/b@c+d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn trailing_slashes_are_trimmed() {
        let r = resolve_openbao(&env(&[
            (OPENBAO_ADDR, "http://127.0.0.1:8200/"),
            (OPENBAO_TOKEN, "t"),
        ]));
        assert_eq!(
            r,
            Resolution::Ready(OpenBaoEnv {
                addr: "http://127.0.0.1:8200".to_owned(),
                token: "t".to_owned()
            })
        );
    }
}
