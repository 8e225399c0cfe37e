//! The PostgreSQL rotator: sets a login role's password as a SCRAM verifier computed here (the
//! server never sees the password), with `VALID UNTIL` as the expiry, either in place
//! (SingleUser) or alternating between two equal login roles (AlternatingUsers).
//!
//! Connections are opened per call and closed after it: rotations are rare, and an idle pool per
//! ManagedSecret would hold server connections for nothing. Every connect is bounded by
//! `connect_timeout`, every statement by `statement_timeout` (server side) and every step by
//! `connect_timeout + 2 × statement_timeout` (client side), so no step can hang.
//!
//! AlternatingUsers keeps the two roles equal by copying from the primary (`role`, the one DBAs
//! grant to) to the alternate: attributes, memberships, direct privileges on every object kind
//! with an ACL (the owner's implicit privileges included) and default privileges. Ownership and
//! per-role settings cannot be shared by GRANT: [`PostgresRotator::privilege_differences`]
//! reports them. `set` refuses (Misconfigured) when the role about to become current would lack
//! a privilege the other one has, so consumers never lose access by switching. Objects are never
//! dropped or reassigned; `retire` locks the previous role out (unknown password, expired) but
//! keeps it and everything it owns.

mod privileges;
pub mod scram;
pub mod sql;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyturn_crds::{PostgresRotatorSpec, PostgresSslMode, PostgresStrategy};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::credential::{Credential, CredentialId, SecretValue, generate_password};
use crate::error::{ErrorCategory, RotatorError};
use crate::rotator::{RotationContext, Rotator};

use self::sql::quote_identifier;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Length of generated passwords (alphanumeric, ~190 bits).
pub const PASSWORD_LENGTH: usize = 32;

/// Everything the rotator needs, filled by the factory from the spec and the resolved Secrets.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub ssl_mode: PostgresSslMode,
    /// PEM bundle for `verify-ca` / `verify-full`; without it the webpki roots are used.
    pub ca_pem: Option<Vec<u8>>,
    /// A role allowed to ALTER the target roles (and, for AlternatingUsers, to create the
    /// alternate and grant it what the primary has).
    pub admin_username: String,
    pub admin_password: SecretValue,
    pub role: String,
    pub strategy: PostgresStrategy,
    /// AlternatingUsers' second role; `<role>_alt` when `None`.
    pub alternate_role: Option<String>,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    /// Expiry of new credentials when the controller gives none (`RotationContext::valid_until`
    /// wins); `None` for both means `VALID UNTIL 'infinity'`.
    pub valid_for: Option<Duration>,
}

impl PostgresConfig {
    /// A config with the CRD's defaults: sslmode `require`, AlternatingUsers, 10 s connect and
    /// 30 s statement timeouts, no `valid_for`.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        database: impl Into<String>,
        admin_username: impl Into<String>,
        admin_password: SecretValue,
        role: impl Into<String>,
    ) -> PostgresConfig {
        PostgresConfig {
            host: host.into(),
            port,
            database: database.into(),
            ssl_mode: PostgresSslMode::default(),
            ca_pem: None,
            admin_username: admin_username.into(),
            admin_password,
            role: role.into(),
            strategy: PostgresStrategy::default(),
            alternate_role: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            valid_for: None,
        }
    }

    /// The config for a `spec.rotator.postgres`, given the admin Secret's values and the CA PEM.
    pub fn from_spec(
        spec: &PostgresRotatorSpec,
        admin_username: impl Into<String>,
        admin_password: SecretValue,
        ca_pem: Option<Vec<u8>>,
    ) -> PostgresConfig {
        PostgresConfig {
            ssl_mode: spec.ssl_mode,
            ca_pem,
            strategy: spec.strategy,
            alternate_role: spec.alternate_role.clone(),
            ..PostgresConfig::new(
                &spec.host,
                spec.port,
                &spec.database,
                admin_username,
                admin_password,
                &spec.role,
            )
        }
    }
}

/// Rotates one PostgreSQL login role (or pair of roles). Cheap to build; holds no connection.
#[derive(Debug, Clone)]
pub struct PostgresRotator {
    config: PostgresConfig,
    /// AlternatingUsers' second role, resolved; `None` for SingleUser.
    alternate: Option<String>,
    /// `host:port/database`, for error messages.
    endpoint: String,
}

impl PostgresRotator {
    /// Validates the config: role names must match `^[a-z_][a-z0-9_]*$` and fit 63 bytes (the
    /// CRD's rule, enforced again because these names end up in SQL), the two roles must differ
    /// and neither may be the admin role itself.
    pub fn new(config: PostgresConfig) -> Result<PostgresRotator, RotatorError> {
        let endpoint = format!("{}:{}/{}", config.host, config.port, config.database);
        let misconfigured = |detail: String| {
            RotatorError::new(
                ErrorCategory::Misconfigured,
                format!("configure PostgreSQL rotator for {endpoint}"),
                detail,
            )
        };
        sql::validate_role_name(&config.role).map_err(misconfigured)?;
        let alternate = match config.strategy {
            PostgresStrategy::SingleUser => None,
            PostgresStrategy::AlternatingUsers => {
                let alternate = config
                    .alternate_role
                    .clone()
                    .unwrap_or_else(|| format!("{}_alt", config.role));
                sql::validate_role_name(&alternate).map_err(misconfigured)?;
                if alternate == config.role {
                    return Err(misconfigured(
                        "the alternate role must differ from the role".to_owned(),
                    ));
                }
                Some(alternate)
            }
        };
        if config.admin_username.is_empty() {
            return Err(misconfigured("the admin username is empty".to_owned()));
        }
        if config.admin_username == config.role
            || alternate.as_deref() == Some(config.admin_username.as_str())
        {
            return Err(misconfigured(
                "the admin role must not be a rotated role: keyturn would lock itself out"
                    .to_owned(),
            ));
        }
        if config.host.is_empty() || config.host.starts_with('/') {
            return Err(misconfigured(
                "the host must be a TCP host name or address".to_owned(),
            ));
        }
        if config.connect_timeout.is_zero() || config.statement_timeout.is_zero() {
            return Err(misconfigured("timeouts must be positive".to_owned()));
        }
        Ok(PostgresRotator {
            config,
            alternate,
            endpoint,
        })
    }

    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// The primary login role.
    pub fn role(&self) -> &str {
        &self.config.role
    }

    /// AlternatingUsers' second role; `None` for SingleUser.
    pub fn alternate_role(&self) -> Option<&str> {
        self.alternate.as_deref()
    }

    /// How the two login roles of AlternatingUsers differ, one line each: privileges one has and
    /// the other lacks, attributes, ownership (never shared) and per-role settings. Empty for
    /// SingleUser and while the alternate role does not exist yet.
    pub async fn privilege_differences(&self) -> Result<Vec<String>, RotatorError> {
        let Some(alternate) = self.alternate.as_deref() else {
            return Ok(Vec::new());
        };
        let operation = format!(
            "compare privileges of {} and {} on {}",
            quote_identifier(&self.config.role),
            quote_identifier(alternate),
            self.endpoint
        );
        self.guarded(&operation, async {
            let mut connection = self.admin_connection(&operation).await?;
            let comparison = privileges::compare(&mut connection, &self.config.role, alternate)
                .await
                .map_err(|error| self.error(&operation, error, &[]))?;
            close(connection).await;
            Ok(comparison
                .map(|comparison| comparison.describe(&self.config.role, alternate))
                .unwrap_or_default())
        })
        .await
    }

    /// The role a credential names, if it is one this rotator manages.
    fn managed_role<'a>(
        &'a self,
        id: &CredentialId,
        operation: &str,
    ) -> Result<&'a str, RotatorError> {
        if id.0 == self.config.role {
            return Ok(&self.config.role);
        }
        if let Some(alternate) = self
            .alternate
            .as_deref()
            .filter(|alternate| *alternate == id.0)
        {
            return Ok(alternate);
        }
        Err(RotatorError::new(
            ErrorCategory::Misconfigured,
            operation,
            format!(
                "credential {} names a role this rotator does not manage",
                quote_identifier(&id.0)
            ),
        ))
    }

    fn connect_options(&self, username: &str, password: &SecretValue) -> PgConnectOptions {
        let ssl_mode = match self.config.ssl_mode {
            PostgresSslMode::Disable => PgSslMode::Disable,
            PostgresSslMode::Prefer => PgSslMode::Prefer,
            PostgresSslMode::Require => PgSslMode::Require,
            PostgresSslMode::VerifyCa => PgSslMode::VerifyCa,
            PostgresSslMode::VerifyFull => PgSslMode::VerifyFull,
        };
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&self.config.host)
            .port(self.config.port)
            .database(&self.config.database)
            .username(username)
            .password(password.expose())
            .ssl_mode(ssl_mode)
            .application_name("keyturn")
            .statement_cache_capacity(0)
            .options([(
                "statement_timeout",
                format!("{}ms", self.config.statement_timeout.as_millis()),
            )]);
        if let Some(pem) = &self.config.ca_pem {
            options = options.ssl_root_cert_from_pem(pem.clone());
        }
        options
    }

    /// A new connection as `username`, bounded by `connect_timeout`.
    async fn connect(
        &self,
        username: &str,
        password: &SecretValue,
        operation: &str,
    ) -> Result<PgConnection, RotatorError> {
        let options = self.connect_options(username, password);
        match tokio::time::timeout(
            self.config.connect_timeout,
            PgConnection::connect_with(&options),
        )
        .await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(self.error(
                &format!("{operation} (connecting as {})", quote_identifier(username)),
                error,
                &[password.expose()],
            )),
            Err(_) => Err(RotatorError::new(
                ErrorCategory::Unreachable,
                format!("{operation} (connecting as {})", quote_identifier(username)),
                format!("no answer within {:?}", self.config.connect_timeout),
            )),
        }
    }

    async fn admin_connection(&self, operation: &str) -> Result<PgConnection, RotatorError> {
        self.connect(
            &self.config.admin_username,
            &self.config.admin_password,
            operation,
        )
        .await
    }

    /// Bounds a whole step, whatever the server does after accepting the connection.
    async fn guarded<T>(
        &self,
        operation: &str,
        step: impl Future<Output = Result<T, RotatorError>>,
    ) -> Result<T, RotatorError> {
        let deadline = self.config.connect_timeout + 2 * self.config.statement_timeout;
        match tokio::time::timeout(deadline, step).await {
            Ok(result) => result,
            Err(_) => Err(RotatorError::new(
                ErrorCategory::Unreachable,
                operation,
                format!("not finished within {deadline:?}"),
            )),
        }
    }

    /// Maps a sqlx error to a category; the detail is the server's message with `secrets` and any
    /// SCRAM verifier removed.
    fn error(&self, operation: &str, error: sqlx::Error, secrets: &[&str]) -> RotatorError {
        let (category, detail) = classify(&error);
        RotatorError::new(category, operation, redact(&detail, secrets))
    }

    /// Makes the alternate role exist and hold what the primary holds, and checks that `target`
    /// (about to become current) lacks nothing the other role has. In the caller's transaction.
    async fn equalise(
        &self,
        connection: &mut PgConnection,
        alternate: &str,
        target: &str,
        operation: &str,
    ) -> Result<(), RotatorError> {
        let primary = self.config.role.as_str();
        let sql_error = |error| self.error(operation, error, &[]);
        let Some(primary_attributes) = privileges::attributes(connection, primary)
            .await
            .map_err(sql_error)?
        else {
            return Err(RotatorError::new(
                ErrorCategory::NotFound,
                operation,
                format!("role {} does not exist", quote_identifier(primary)),
            ));
        };
        let alternate_attributes = privileges::attributes(connection, alternate)
            .await
            .map_err(sql_error)?;
        if alternate_attributes.is_none() && target != alternate {
            // The alternate appears the first time it is about to be used.
            return Ok(());
        }
        let forbidden = primary_attributes.forbidden();
        if !forbidden.is_empty() {
            return Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                operation,
                format!(
                    "role {} has {}; keyturn does not give these to a second login role",
                    quote_identifier(primary),
                    forbidden.join(", ")
                ),
            ));
        }
        let clause = sql::attribute_clause(
            primary_attributes.inherit,
            primary_attributes.create_database,
            primary_attributes.create_role,
            primary_attributes.connection_limit,
        );
        match alternate_attributes {
            None => {
                let statement = format!(
                    "CREATE ROLE {} WITH LOGIN {clause}",
                    quote_identifier(alternate)
                );
                execute(connection, statement).await.map_err(sql_error)?;
            }
            Some(alternate_attributes) => {
                if alternate_attributes.copyable() != primary_attributes.copyable() {
                    let statement =
                        format!("ALTER ROLE {} WITH {clause}", quote_identifier(alternate));
                    execute(connection, statement).await.map_err(sql_error)?;
                }
            }
        }
        let primary_grants = privileges::grants(connection, primary, alternate)
            .await
            .map_err(sql_error)?;
        let alternate_grants = privileges::grants(connection, alternate, primary)
            .await
            .map_err(sql_error)?;
        for grant in primary_grants
            .iter()
            .filter(|grant| !grant.covered_by(&alternate_grants))
        {
            // Built by the server with format('%I'): identifiers are quoted there.
            let statement = grant.grant_statement();
            execute(connection, statement.clone())
                .await
                .map_err(|error| {
                    self.error(&format!("{statement} on {}", self.endpoint), error, &[])
                })?;
        }
        // A GRANT the admin may not give only warns: compare again rather than trust it.
        let Some(comparison) = privileges::compare(connection, primary, alternate)
            .await
            .map_err(sql_error)?
        else {
            return Ok(());
        };
        let (lacking, missing) = if target == alternate {
            (alternate, &comparison.primary_only)
        } else {
            (primary, &comparison.alternate_only)
        };
        if missing.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = missing.iter().map(privileges::Grant::describe).collect();
        Err(RotatorError::new(
            ErrorCategory::Misconfigured,
            operation,
            format!(
                "{} would become current without privileges the other login role has (grant them, or let the admin role grant them): {}",
                quote_identifier(lacking),
                list.join("; ")
            ),
        ))
    }
}

#[async_trait]
impl Rotator for PostgresRotator {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    /// Generates the password for the role that is not current: `role` for SingleUser and at the
    /// first issuance, otherwise the other one of the pair. Touches nothing.
    async fn create(&self, context: &RotationContext) -> Result<Credential, RotatorError> {
        let role = match (&self.alternate, &context.current) {
            (Some(alternate), Some(current)) if current.0 == self.config.role => alternate.clone(),
            _ => self.config.role.clone(),
        };
        let expires_at = context.valid_until.or_else(|| {
            let valid_for = chrono::Duration::from_std(self.config.valid_for?).ok()?;
            Utc::now().checked_add_signed(valid_for)
        });
        Ok(Credential {
            id: CredentialId(role.clone()),
            username: Some(role),
            password: generate_password(PASSWORD_LENGTH),
            expires_at,
        })
    }

    /// `ALTER ROLE … WITH LOGIN PASSWORD '<SCRAM verifier>' VALID UNTIL …`, after (for
    /// AlternatingUsers) creating and equalising the alternate role, in one transaction.
    /// Repeating it sets the same password again (with a new salt).
    async fn set(
        &self,
        context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        let probe = format!(
            "ALTER ROLE {} on {}",
            quote_identifier(&pending.id.0),
            self.endpoint
        );
        let role = self.managed_role(&pending.id, &probe)?;
        let operation = format!("ALTER ROLE {} on {}", quote_identifier(role), self.endpoint);
        let valid_until: Option<DateTime<Utc>> = context.valid_until.or(pending.expires_at);
        let statement = sql::set_password_statement(role, &pending.password, valid_until).map_err(
            |detail| RotatorError::new(ErrorCategory::Misconfigured, &operation, detail),
        )?;
        let secrets = [pending.password.expose(), statement.as_str()];
        self.guarded(&operation, async {
            let mut connection = self.admin_connection(&operation).await?;
            quiet_statement_logging(&mut connection).await;
            let mut transaction = connection
                .begin()
                .await
                .map_err(|error| self.error(&operation, error, &secrets))?;
            if let Some(alternate) = self.alternate.as_deref() {
                self.equalise(&mut transaction, alternate, role, &operation)
                    .await?;
            }
            execute(&mut transaction, statement.clone())
                .await
                .map_err(|error| self.error(&operation, error, &secrets))?;
            transaction
                .commit()
                .await
                .map_err(|error| self.error(&operation, error, &secrets))?;
            close(connection).await;
            Ok(())
        })
        .await
    }

    /// A fresh login as the role with the new password (not the admin connection), with the
    /// configured sslmode, then `SELECT current_user`.
    async fn test(
        &self,
        _context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError> {
        let probe = format!(
            "log in as {} on {}",
            quote_identifier(&pending.id.0),
            self.endpoint
        );
        let role = self.managed_role(&pending.id, &probe)?;
        let operation = format!("log in as {} on {}", quote_identifier(role), self.endpoint);
        self.guarded(&operation, async {
            let mut connection = self
                .connect(role, &pending.password, &operation)
                .await
                .map_err(|error| {
                    // The admin's credentials are not involved: a refused login means the new
                    // credential does not work.
                    if error.category == ErrorCategory::AuthenticationFailed {
                        RotatorError {
                            category: ErrorCategory::VerificationFailed,
                            ..error
                        }
                    } else {
                        error
                    }
                })?;
            let user: (String,) = sqlx::query_as("SELECT current_user::text")
                .fetch_one(&mut connection)
                .await
                .map_err(|error| self.error(&operation, error, &[pending.password.expose()]))?;
            close(connection).await;
            if user.0 != role {
                return Err(RotatorError::new(
                    ErrorCategory::VerificationFailed,
                    &operation,
                    format!("logged in as {} instead", quote_identifier(&user.0)),
                ));
            }
            Ok(())
        })
        .await
    }

    /// Nothing to publish at the server: the role accepts the password since `set`.
    async fn finish(
        &self,
        _context: &RotationContext,
        _pending: &Credential,
    ) -> Result<(), RotatorError> {
        Ok(())
    }

    /// AlternatingUsers: gives the previous role a verifier of a random password nobody knows and
    /// `VALID UNTIL 1970`; never DROP (its objects and grants survive for the next switch). A
    /// role that does not exist is success. SingleUser: nothing to do, `set` replaced the
    /// password already (and the previous credential names the same, now current, role).
    async fn retire(
        &self,
        _context: &RotationContext,
        previous: &CredentialId,
    ) -> Result<(), RotatorError> {
        // SingleUser: the previous password was replaced in place; the role is the current one.
        if self.alternate.is_none() {
            return Ok(());
        }
        self.disable_login(previous).await
    }

    async fn revoke(
        &self,
        _context: &RotationContext,
        credential: &CredentialId,
    ) -> Result<(), RotatorError> {
        self.disable_login(credential).await
    }
}

impl PostgresRotator {
    /// NOLOGIN, an unknown password and an expiry in the past; the role and its grants stay.
    async fn disable_login(&self, previous: &CredentialId) -> Result<(), RotatorError> {
        let probe = format!(
            "retire role {} on {}",
            quote_identifier(&previous.0),
            self.endpoint
        );
        let role = self.managed_role(previous, &probe)?;
        let operation = format!(
            "retire role {} on {}",
            quote_identifier(role),
            self.endpoint
        );
        let statement = sql::retire_statement(role).map_err(|detail| {
            RotatorError::new(ErrorCategory::Misconfigured, &operation, detail)
        })?;
        self.guarded(&operation, async {
            let mut connection = self.admin_connection(&operation).await?;
            quiet_statement_logging(&mut connection).await;
            let result = execute(&mut connection, statement.clone()).await;
            close(connection).await;
            match result {
                Ok(()) => Ok(()),
                Err(error) if sqlstate(&error).as_deref() == Some("42704") => Ok(()),
                Err(error) => Err(self.error(&operation, error, &[statement.as_str()])),
            }
        })
        .await
    }
}

/// Runs one statement with the simple protocol (DDL takes no bind parameters). Callers pass only
/// text built in `sql` or by the server's `format('%I')`.
async fn execute(connection: &mut PgConnection, statement: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(connection)
        .await
        .map(|_| ())
}

/// Keeps verifiers out of the server log where the admin may change that (superusers, or
/// `GRANT SET ON PARAMETER`); otherwise a harmless permission error, ignored.
async fn quiet_statement_logging(connection: &mut PgConnection) {
    for statement in [
        "SET log_statement = 'none'",
        "SET log_min_duration_statement = -1",
    ] {
        let _ = sqlx::raw_sql(statement).execute(&mut *connection).await;
    }
}

async fn close(connection: PgConnection) {
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.close()).await;
}

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(database_error) => {
            database_error.code().map(|code| code.into_owned())
        }
        _ => None,
    }
}

/// The category of a sqlx error, and a detail to redact.
fn classify(error: &sqlx::Error) -> (ErrorCategory, String) {
    match error {
        sqlx::Error::Database(database_error) => {
            let code = database_error
                .code()
                .map(|code| code.into_owned())
                .unwrap_or_default();
            let category = match code.as_str() {
                "28P01" | "28000" => ErrorCategory::AuthenticationFailed,
                "42501" => ErrorCategory::PermissionDenied,
                "42704" | "3D000" => ErrorCategory::NotFound,
                // Connection exceptions, too many connections, shutting down / starting up,
                // statement timeout.
                code if code.starts_with("08")
                    || code.starts_with("57P")
                    || code == "53300"
                    || code == "57014" =>
                {
                    ErrorCategory::Unreachable
                }
                _ => ErrorCategory::Backend,
            };
            (
                category,
                format!("{} (SQLSTATE {code})", database_error.message()),
            )
        }
        // rustls reports a refused certificate as InvalidData; network trouble has other kinds.
        sqlx::Error::Io(io_error) if io_error.kind() == std::io::ErrorKind::InvalidData => {
            (ErrorCategory::Misconfigured, error.to_string())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => (ErrorCategory::Unreachable, error.to_string()),
        // A server without TLS under `require`, or a certificate the CA does not vouch for:
        // retrying does not help until the configuration changes.
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) | sqlx::Error::InvalidArgument(_) => {
            (ErrorCategory::Misconfigured, error.to_string())
        }
        _ => (ErrorCategory::Backend, error.to_string()),
    }
}

/// `text` without any of `secrets` and without anything that looks like a SCRAM verifier.
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut redacted = text.to_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        redacted = redacted.replace(secret, "[redacted]");
    }
    while let Some(start) = redacted.find("SCRAM-SHA-256$") {
        let end = redacted[start..]
            .find(|character: char| {
                character.is_whitespace() || character == '\'' || character == '"'
            })
            .map_or(redacted.len(), |offset| start + offset);
        redacted.replace_range(start..end, "[redacted verifier]");
    }
    redacted
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn redaction_removes_secrets_and_verifiers() {
        let text = "syntax error at or near 'SCRAM-SHA-256$4096:abc$def:ghi' for hunter2pw";
        let redacted = redact(text, &["hunter2pw"]);
        assert!(!redacted.contains("hunter2pw"));
        assert!(!redacted.contains("SCRAM-SHA-256$"));
        assert!(!redacted.contains("def:ghi"));
        assert_eq!(redact("SCRAM-SHA-256$x", &[""]), "[redacted verifier]");
    }
}
