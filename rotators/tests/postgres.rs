//! The PostgreSQL rotator against a real server: the contract cases for both strategies, then
//! what is specific to PostgreSQL (SCRAM verifiers, VALID UNTIL, quoting, equal alternating
//! roles, ownership). Every test makes its own uniquely named roles and objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use keyturn_crds::{PostgresSslMode, PostgresStrategy};
use keyturn_rotators::postgres::{PostgresConfig, PostgresRotator, scram, sql};
use keyturn_rotators::{
    Credential, CredentialId, ErrorCategory, RotationContext, Rotator, SecretValue,
};
use keyturn_testenv::PostgresEnv;
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use contract::{Backend, CANARY, context, rotate};

// ---------------------------------------------------------------------------------------------
// Helpers

fn suffix() -> String {
    format!("{:010x}", rand::rng().random::<u64>() & 0xff_ffff_ffff)
}

async fn admin(pg: &PostgresEnv) -> PgConnection {
    PgConnection::connect(&pg.url)
        .await
        .expect("connect as the test superuser")
}

async fn exec(connection: &mut PgConnection, statement: impl Into<String>) {
    let statement = statement.into();
    sqlx::raw_sql(AssertSqlSafe(statement.clone()))
        .execute(connection)
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
}

async fn query_bool(connection: &mut PgConnection, statement: &str) -> bool {
    let row: (bool,) = sqlx::query_as(AssertSqlSafe(statement.to_owned()))
        .fetch_one(connection)
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
    row.0
}

fn config(pg: &PostgresEnv, strategy: PostgresStrategy, role: &str) -> PostgresConfig {
    PostgresConfig {
        ssl_mode: PostgresSslMode::Prefer,
        strategy,
        connect_timeout: Duration::from_secs(3),
        statement_timeout: Duration::from_secs(10),
        ..PostgresConfig::new(
            &pg.host,
            pg.port,
            &pg.database,
            &pg.user,
            SecretValue::new(&pg.password),
            role,
        )
    }
}

/// A fresh login as the credential's user: what consumers do.
async fn can_log_in(pg: &PostgresEnv, username: &str, password: &str) -> bool {
    let options = PgConnectOptions::new_without_pgpass()
        .host(&pg.host)
        .port(pg.port)
        .database(&pg.database)
        .username(username)
        .password(password)
        .ssl_mode(PgSslMode::Prefer);
    match tokio::time::timeout(
        Duration::from_secs(10),
        PgConnection::connect_with(&options),
    )
    .await
    {
        Ok(Ok(mut connection)) => {
            let ok = sqlx::query("SELECT 1")
                .execute(&mut connection)
                .await
                .is_ok();
            let _ = connection.close().await;
            ok
        }
        _ => false,
    }
}

/// Creates the primary role the way a DBA would before handing it to keyturn: a login role with
/// some privileges on objects it does not own.
async fn create_primary(pg: &PostgresEnv, role: &str) {
    let mut connection = admin(pg).await;
    exec(&mut connection, format!("CREATE ROLE {role} LOGIN")).await;
    exec(
        &mut connection,
        format!("CREATE TABLE public.{role}_t (id int)"),
    )
    .await;
    exec(
        &mut connection,
        format!("GRANT SELECT, INSERT ON public.{role}_t TO {role}"),
    )
    .await;
    connection.close().await.ok();
}

// ---------------------------------------------------------------------------------------------
// The contract, for both strategies

struct Postgres {
    pg: PostgresEnv,
    strategy: PostgresStrategy,
}

struct Target {
    role: String,
}

fn backend(strategy: PostgresStrategy) -> Option<Postgres> {
    keyturn_testenv::postgres().map(|pg| Postgres { pg, strategy })
}

impl Backend for Postgres {
    type Target = Target;
    type Rotator = PostgresRotator;

    async fn fresh_target(&self) -> Target {
        let role = format!("kt_{}", suffix());
        create_primary(&self.pg, &role).await;
        Target { role }
    }

    fn rotator(&self, target: &Target) -> PostgresRotator {
        PostgresRotator::new(config(&self.pg, self.strategy, &target.role)).unwrap()
    }

    fn rotator_at(&self, target: &Target, address: SocketAddr) -> PostgresRotator {
        let config = PostgresConfig {
            host: address.ip().to_string(),
            port: address.port(),
            ..config(&self.pg, self.strategy, &target.role)
        };
        PostgresRotator::new(config).unwrap()
    }

    fn rotator_with_wrong_admin(&self, target: &Target) -> PostgresRotator {
        let config = PostgresConfig {
            admin_password: SecretValue::new("not-the-admin-password"),
            ..config(&self.pg, self.strategy, &target.role)
        };
        PostgresRotator::new(config).unwrap()
    }

    async fn accepts(&self, _target: &Target, credential: &Credential) -> bool {
        let username = credential
            .username
            .as_deref()
            .expect("postgres credentials have a username");
        can_log_in(&self.pg, username, credential.password.expose()).await
    }

    fn retire_revokes(&self) -> bool {
        true
    }

    async fn assert_consistent(&self, target: &Target) {
        let rotator = self.rotator(target);
        let mut connection = admin(&self.pg).await;
        let scram_and_valid = |role: &str| {
            format!(
                "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AND rolvaliduntil > now() FROM pg_authid WHERE rolname = '{role}'"
            )
        };
        match rotator.alternate_role() {
            None => assert!(
                query_bool(&mut connection, &scram_and_valid(&target.role)).await,
                "the role must have a SCRAM verifier valid in the future"
            ),
            Some(alternate) => {
                let differences = rotator.privilege_differences().await.unwrap();
                assert!(
                    differences.is_empty(),
                    "the two login roles differ: {differences:#?}"
                );
                let primary_valid =
                    query_bool(&mut connection, &scram_and_valid(&target.role)).await;
                let alternate_valid =
                    query_bool(&mut connection, &scram_and_valid(alternate)).await;
                assert!(
                    primary_valid != alternate_valid,
                    "exactly one login role must be usable after retire (primary {primary_valid}, alternate {alternate_valid})"
                );
                let retired = if primary_valid {
                    alternate
                } else {
                    target.role.as_str()
                };
                assert!(
                    !query_bool(
                        &mut connection,
                        &format!("SELECT rolcanlogin FROM pg_authid WHERE rolname = '{retired}'")
                    )
                    .await,
                    "the retired role {retired} must be NOLOGIN"
                );
            }
        }
        connection.close().await.ok();
    }
}

macro_rules! contract_cases {
    ($($name:ident: $strategy:expr => $case:path;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(backend) = backend($strategy) else { return };
            $case(&backend).await;
        }
    )*};
}

contract_cases! {
    single_user_happy_path: PostgresStrategy::SingleUser => contract::happy_path;
    single_user_each_step_twice: PostgresStrategy::SingleUser => contract::each_step_twice;
    single_user_crash_after_each_step: PostgresStrategy::SingleUser => contract::crash_after_each_step;
    single_user_backend_down: PostgresStrategy::SingleUser => contract::backend_down;
    single_user_backend_hangs: PostgresStrategy::SingleUser => contract::backend_hangs;
    single_user_wrong_admin_credentials: PostgresStrategy::SingleUser => contract::wrong_admin_credentials;
    alternating_users_happy_path: PostgresStrategy::AlternatingUsers => contract::happy_path;
    alternating_users_each_step_twice: PostgresStrategy::AlternatingUsers => contract::each_step_twice;
    alternating_users_crash_after_each_step: PostgresStrategy::AlternatingUsers => contract::crash_after_each_step;
    alternating_users_backend_down: PostgresStrategy::AlternatingUsers => contract::backend_down;
    alternating_users_backend_hangs: PostgresStrategy::AlternatingUsers => contract::backend_hangs;
    alternating_users_wrong_admin_credentials: PostgresStrategy::AlternatingUsers => contract::wrong_admin_credentials;
}

// ---------------------------------------------------------------------------------------------
// Error categories, beyond the contract's retryable / permanent

#[tokio::test]
async fn errors_have_precise_categories_and_never_carry_the_password() {
    let Some(backend) = backend(PostgresStrategy::SingleUser) else {
        return;
    };
    let target = backend.fresh_target().await;
    let context = context("rot-categories", None);
    let pending = contract::staged_canary(&backend.rotator(&target), &context).await;

    let started = Instant::now();
    let down = backend
        .rotator_at(&target, contract::closed_port())
        .set(&context, &pending)
        .await
        .unwrap_err();
    assert_eq!(down.category, ErrorCategory::Unreachable, "{down}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a closed port fails at once"
    );

    let started = Instant::now();
    let hangs = backend
        .rotator_at(&target, contract::black_hole().await)
        .set(&context, &pending)
        .await
        .unwrap_err();
    assert_eq!(hangs.category, ErrorCategory::Unreachable, "{hangs}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the 3 s connect timeout"
    );

    let wrong = backend
        .rotator_with_wrong_admin(&target)
        .set(&context, &pending)
        .await
        .unwrap_err();
    assert_eq!(
        wrong.category,
        ErrorCategory::AuthenticationFailed,
        "{wrong}"
    );
    assert!(
        wrong
            .operation
            .starts_with(&format!("ALTER ROLE \"{}\" on ", target.role)),
        "{}",
        wrong.operation
    );

    // A role that does not exist: NotFound, naming the role.
    let missing_role = format!("kt_missing_{}", suffix());
    let missing = PostgresRotator::new(config(
        &backend.pg,
        PostgresStrategy::SingleUser,
        &missing_role,
    ))
    .unwrap();
    let credential = Credential {
        id: CredentialId(missing_role.clone()),
        username: Some(missing_role.clone()),
        ..pending.clone()
    };
    let not_found = missing.set(&context, &credential).await.unwrap_err();
    assert_eq!(not_found.category, ErrorCategory::NotFound, "{not_found}");

    // An admin without CREATEROLE: PermissionDenied.
    let weak_admin = format!("kt_weak_{}", suffix());
    let mut connection = admin(&backend.pg).await;
    exec(
        &mut connection,
        format!("CREATE ROLE {weak_admin} LOGIN PASSWORD 'weak-admin-pw'"),
    )
    .await;
    let weak = PostgresRotator::new(PostgresConfig {
        admin_username: weak_admin.clone(),
        admin_password: SecretValue::new("weak-admin-pw"),
        ..config(&backend.pg, PostgresStrategy::SingleUser, &target.role)
    })
    .unwrap();
    let denied = weak.set(&context, &pending).await.unwrap_err();
    assert_eq!(denied.category, ErrorCategory::PermissionDenied, "{denied}");

    // The test step with a password the server does not know: the new credential is at fault.
    let unverified = backend
        .rotator(&target)
        .test(&context, &pending)
        .await
        .unwrap_err();
    assert_eq!(
        unverified.category,
        ErrorCategory::VerificationFailed,
        "{unverified}"
    );

    for error in [&down, &hangs, &wrong, &not_found, &denied, &unverified] {
        contract::assert_no_canary(error);
        assert!(!error.to_string().contains("SCRAM-SHA-256$"), "{error}");
    }
    connection.close().await.ok();
}

// ---------------------------------------------------------------------------------------------
// SCRAM, VALID UNTIL, SQL text

#[tokio::test]
async fn scram_verifier_matches_postgresqls_own() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let role = format!("kt_scram_{}", suffix());
    let mut connection = admin(&pg).await;
    exec(&mut connection, "SET password_encryption = 'scram-sha-256'").await;
    // Test-only: the server hashes a known password itself.
    exec(
        &mut connection,
        format!("CREATE ROLE {role} PASSWORD 'pencil-Known-1'"),
    )
    .await;
    let (stored,): (String,) =
        sqlx::query_as("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
            .bind(&role)
            .fetch_one(&mut connection)
            .await
            .unwrap();
    let parsed = scram::parse(&stored).expect("PostgreSQL stores a SCRAM verifier");
    assert_eq!(
        scram::verifier_with("pencil-Known-1", &parsed.salt, parsed.iterations).unwrap(),
        stored
    );
    assert_ne!(
        scram::verifier_with("pencil-Known-2", &parsed.salt, parsed.iterations).unwrap(),
        stored
    );
    exec(&mut connection, format!("DROP ROLE {role}")).await;
    connection.close().await.ok();
}

#[tokio::test]
async fn set_stores_our_verifier_with_valid_until() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let role = format!("kt_valid_{}", suffix());
    create_primary(&pg, &role).await;
    let rotator = PostgresRotator::new(config(&pg, PostgresStrategy::SingleUser, &role)).unwrap();
    let valid_until = Utc::now() + chrono::Duration::hours(2);
    let first_context = RotationContext {
        valid_until: Some(valid_until),
        ..context("rot-valid", None)
    };
    let credential = rotate(&rotator, &first_context).await;
    assert_eq!(credential.expires_at, Some(valid_until));

    let mut connection = admin(&pg).await;
    let (stored, until): (String, i64) = sqlx::query_as(
        "SELECT rolpassword, extract(epoch FROM rolvaliduntil)::bigint FROM pg_authid WHERE rolname = $1",
    )
    .bind(&role)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert!(
        stored.starts_with("SCRAM-SHA-256$4096:"),
        "the server stored a verifier"
    );
    assert!(!stored.contains(credential.password.expose()));
    // The stored verifier is the one we computed from the password, not a hash of a verifier.
    let parsed = scram::parse(&stored).unwrap();
    assert_eq!(
        scram::verifier_with(credential.password.expose(), &parsed.salt, 4096).unwrap(),
        stored
    );
    assert_eq!(until, valid_until.timestamp());

    // No expiry from the controller and no valid_for: 'infinity'.
    let infinity_context = RotationContext {
        valid_until: None,
        ..context("rot-infinity", Some(credential.id.clone()))
    };
    let credential = rotate(&rotator, &infinity_context).await;
    assert_eq!(credential.expires_at, None);
    assert!(
        query_bool(
            &mut connection,
            &format!("SELECT rolvaliduntil = 'infinity' FROM pg_roles WHERE rolname = '{role}'")
        )
        .await
    );

    // valid_for when the controller gives no expiry.
    let rotator = PostgresRotator::new(PostgresConfig {
        valid_for: Some(Duration::from_secs(3600)),
        ..config(&pg, PostgresStrategy::SingleUser, &role)
    })
    .unwrap();
    let credential = rotate(
        &rotator,
        &RotationContext {
            valid_until: None,
            ..context("rot-valid-for", None)
        },
    )
    .await;
    let expires_at = credential.expires_at.expect("valid_for gives an expiry");
    let (until,): (i64,) = sqlx::query_as(
        "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = $1",
    )
    .bind(&role)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(until, expires_at.timestamp());
    assert!(
        (expires_at - Utc::now() - chrono::Duration::hours(1))
            .num_seconds()
            .abs()
            < 60
    );
    connection.close().await.ok();
}

#[tokio::test]
async fn expired_credentials_refuse_login() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let role = format!("kt_expired_{}", suffix());
    create_primary(&pg, &role).await;
    let rotator = PostgresRotator::new(config(&pg, PostgresStrategy::SingleUser, &role)).unwrap();
    let context = RotationContext {
        valid_until: Some(Utc::now() - chrono::Duration::minutes(5)),
        ..context("rot-expired", None)
    };
    let pending = rotator.create(&context).await.unwrap();
    rotator.set(&context, &pending).await.unwrap();
    assert!(
        !can_log_in(&pg, &role, pending.password.expose()).await,
        "an expired password must be refused"
    );
    let error = rotator.test(&context, &pending).await.unwrap_err();
    assert_eq!(error.category, ErrorCategory::VerificationFailed, "{error}");
}

#[test]
fn statements_never_contain_the_password() {
    let password = SecretValue::new(CANARY);
    let valid_until = Some(Utc::now());
    let statement = sql::set_password_statement("orders_app", &password, valid_until).unwrap();
    assert!(!statement.contains(CANARY), "{statement}");
    assert!(
        statement.starts_with("ALTER ROLE \"orders_app\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:"),
        "{statement}"
    );
    assert!(statement.contains(" VALID UNTIL '20"), "{statement}");
    let retire = sql::retire_statement("orders_app").unwrap();
    assert!(
        retire.starts_with("ALTER ROLE \"orders_app\" WITH NOLOGIN PASSWORD 'SCRAM-SHA-256$"),
        "{retire}"
    );
    assert!(
        retire.ends_with("VALID UNTIL '1970-01-01T00:00:00Z'"),
        "{retire}"
    );
    // Even a hand-built statement refuses a verifier that is not one.
    assert!(sql::set_verifier_statement("orders_app", CANARY, None).is_err());
    assert!(
        sql::set_verifier_statement("orders_app", "SCRAM-SHA-256$4096:YQ==$YQ==:YQ=='--", None)
            .is_err()
    );
}

#[test]
fn debug_output_never_shows_the_admin_password() {
    let config = PostgresConfig::new(
        "db",
        5432,
        "app",
        "admin",
        SecretValue::new(CANARY),
        "orders_app",
    );
    let rotator = PostgresRotator::new(config.clone()).unwrap();
    for text in [
        format!("{config:?}"),
        format!("{rotator:?}"),
        format!("{rotator:#?}"),
    ] {
        assert!(!text.contains(CANARY), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Injection and configuration

#[test]
fn injection_attempts_in_role_names_are_refused() {
    let attempts = [
        "orders\"; DROP ROLE postgres; --",
        "x' OR '1'='1",
        "Robert'); DROP TABLE students;--",
        "orders_app\0",
        "Orders",
        "",
        &"a".repeat(64),
    ];
    for attempt in attempts {
        let primary =
            PostgresConfig::new("db", 5432, "app", "admin", SecretValue::new("pw"), attempt);
        let error = PostgresRotator::new(primary).unwrap_err();
        assert_eq!(
            error.category,
            ErrorCategory::Misconfigured,
            "{attempt:?}: {error}"
        );
        let alternate = PostgresConfig {
            alternate_role: Some(attempt.to_owned()),
            ..PostgresConfig::new(
                "db",
                5432,
                "app",
                "admin",
                SecretValue::new("pw"),
                "orders_app",
            )
        };
        let error = PostgresRotator::new(alternate).unwrap_err();
        assert_eq!(
            error.category,
            ErrorCategory::Misconfigured,
            "{attempt:?}: {error}"
        );
    }
    // A 59-byte role still has room for the default `_alt` suffix; a 60-byte one does not.
    assert!(
        PostgresRotator::new(PostgresConfig::new(
            "db",
            5432,
            "app",
            "admin",
            SecretValue::new("pw"),
            "a".repeat(59)
        ))
        .is_ok()
    );
    assert!(
        PostgresRotator::new(PostgresConfig::new(
            "db",
            5432,
            "app",
            "admin",
            SecretValue::new("pw"),
            "a".repeat(60)
        ))
        .is_err()
    );
    let single = PostgresConfig {
        strategy: PostgresStrategy::SingleUser,
        ..PostgresConfig::new(
            "db",
            5432,
            "app",
            "admin",
            SecretValue::new("pw"),
            "a".repeat(60),
        )
    };
    assert!(PostgresRotator::new(single).is_ok());
}

#[test]
fn quoted_identifiers_double_quotes() {
    assert_eq!(sql::quote_identifier("orders_app"), "\"orders_app\"");
    assert_eq!(
        sql::quote_identifier("orders\"; DROP ROLE postgres; --"),
        "\"orders\"\"; DROP ROLE postgres; --\""
    );
}

#[test]
fn the_admin_role_is_never_rotated_and_the_roles_differ() {
    let same_as_admin = PostgresConfig::new(
        "db",
        5432,
        "app",
        "orders_app",
        SecretValue::new("pw"),
        "orders_app",
    );
    assert_eq!(
        PostgresRotator::new(same_as_admin).unwrap_err().category,
        ErrorCategory::Misconfigured
    );
    let same_roles = PostgresConfig {
        alternate_role: Some("orders_app".to_owned()),
        ..PostgresConfig::new(
            "db",
            5432,
            "app",
            "admin",
            SecretValue::new("pw"),
            "orders_app",
        )
    };
    assert_eq!(
        PostgresRotator::new(same_roles).unwrap_err().category,
        ErrorCategory::Misconfigured
    );
}

#[tokio::test]
async fn credentials_for_other_roles_are_refused() {
    let rotator = PostgresRotator::new(PostgresConfig::new(
        "db",
        5432,
        "app",
        "admin",
        SecretValue::new("pw"),
        "orders_app",
    ))
    .unwrap();
    let context = context("rot-other", None);
    let foreign = Credential {
        id: CredentialId("postgres".to_owned()),
        username: Some("postgres".to_owned()),
        password: SecretValue::new(CANARY),
        expires_at: None,
    };
    assert_eq!(
        rotator.set(&context, &foreign).await.unwrap_err().category,
        ErrorCategory::Misconfigured
    );
    let error = rotator
        .retire(&context, &CredentialId("postgres".to_owned()))
        .await
        .unwrap_err();
    assert_eq!(error.category, ErrorCategory::Misconfigured);
}

// ---------------------------------------------------------------------------------------------
// Strategies

#[tokio::test]
async fn single_user_retire_is_a_no_op() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let role = format!("kt_single_{}", suffix());
    create_primary(&pg, &role).await;
    let rotator = PostgresRotator::new(config(&pg, PostgresStrategy::SingleUser, &role)).unwrap();
    let first = rotate(&rotator, &context("rot-single-1", None)).await;
    assert_eq!(first.id.0, role);
    let second_context = context("rot-single-2", Some(first.id.clone()));
    let second = rotate(&rotator, &second_context).await;
    assert_eq!(second.id.0, role, "SingleUser always rotates the same role");
    assert!(
        !can_log_in(&pg, &role, first.password.expose()).await,
        "set replaced the old password"
    );
    rotator.retire(&second_context, &first.id).await.unwrap();
    assert!(
        can_log_in(&pg, &role, second.password.expose()).await,
        "retire must not lock out the role"
    );
}

#[tokio::test]
async fn alternating_users_alternate() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let role = format!("kt_alt_{}", suffix());
    create_primary(&pg, &role).await;
    let rotator =
        PostgresRotator::new(config(&pg, PostgresStrategy::AlternatingUsers, &role)).unwrap();
    let alternate = format!("{role}_alt");
    assert_eq!(rotator.alternate_role(), Some(alternate.as_str()));
    let first = rotate(&rotator, &context("rot-a1", None)).await;
    assert_eq!(first.id.0, role);
    assert!(
        rotator.privilege_differences().await.unwrap().is_empty(),
        "no alternate yet: nothing to compare"
    );
    let second_context = context("rot-a2", Some(first.id.clone()));
    let second = rotate(&rotator, &second_context).await;
    assert_eq!(
        (second.id.0.as_str(), second.username.as_deref()),
        (alternate.as_str(), Some(alternate.as_str()))
    );
    assert!(
        can_log_in(&pg, &role, first.password.expose()).await,
        "the previous stays valid until retired"
    );
    rotator.retire(&second_context, &first.id).await.unwrap();
    assert!(!can_log_in(&pg, &role, first.password.expose()).await);
    let third = rotate(&rotator, &context("rot-a3", Some(second.id.clone()))).await;
    assert_eq!(third.id.0, role, "back to the primary");
    assert!(can_log_in(&pg, &role, third.password.expose()).await);
    assert!(can_log_in(&pg, &alternate, second.password.expose()).await);
    // Retiring a role that is gone is success.
    let mut connection = admin(&pg).await;
    exec(
        &mut connection,
        format!("DROP OWNED BY {alternate}; DROP ROLE {alternate}"),
    )
    .await;
    rotator
        .retire(&context("rot-a3", None), &second.id)
        .await
        .unwrap();
    connection.close().await.ok();
}

#[tokio::test]
async fn alternating_users_equalise_grants_memberships_and_default_privileges() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let id = suffix();
    let role = format!("kt_eq_{id}");
    let alternate = format!("kt_eq_{id}_other");
    let (schema, group, owner) = (format!("s_{id}"), format!("g_{id}"), format!("o_{id}"));
    let mut connection = admin(&pg).await;
    for statement in [
        format!("CREATE ROLE {role} LOGIN CREATEDB NOINHERIT CONNECTION LIMIT 7"),
        format!("CREATE ROLE {group} NOLOGIN"),
        format!("CREATE ROLE {owner} NOLOGIN"),
        format!("GRANT {group} TO {role} WITH ADMIN OPTION"),
        format!("CREATE SCHEMA {schema} AUTHORIZATION {owner}"),
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!("CREATE TABLE {schema}.orders (id serial PRIMARY KEY, note text, secret text)"),
        format!("GRANT SELECT, INSERT ON {schema}.orders TO {role}"),
        format!("GRANT UPDATE (note) ON {schema}.orders TO {role}"),
        format!("GRANT USAGE ON SEQUENCE {schema}.orders_id_seq TO {role}"),
        format!("CREATE SEQUENCE {schema}.tickets"),
        format!("GRANT USAGE, SELECT ON SEQUENCE {schema}.tickets TO {role} WITH GRANT OPTION"),
        format!(
            "CREATE FUNCTION {schema}.answer(x int) RETURNS int LANGUAGE sql AS 'SELECT 42 + x'"
        ),
        format!("REVOKE EXECUTE ON FUNCTION {schema}.answer(int) FROM PUBLIC"),
        format!("GRANT EXECUTE ON FUNCTION {schema}.answer(int) TO {role}"),
        format!("GRANT TEMPORARY ON DATABASE {} TO {role}", pg.database),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}",
            pg.user
        ),
        format!("ALTER TABLE {schema}.orders OWNER TO {owner}"),
        format!("ALTER SEQUENCE {schema}.tickets OWNER TO {owner}"),
        format!("ALTER FUNCTION {schema}.answer(int) OWNER TO {owner}"),
    ] {
        exec(&mut connection, statement).await;
    }
    let rotator = PostgresRotator::new(PostgresConfig {
        alternate_role: Some(alternate.clone()),
        ..config(&pg, PostgresStrategy::AlternatingUsers, &role)
    })
    .unwrap();
    let first = rotate(&rotator, &context("rot-eq-1", None)).await;
    let second = rotate(&rotator, &context("rot-eq-2", Some(first.id.clone()))).await;
    assert_eq!(second.id.0, alternate);
    let differences = rotator.privilege_differences().await.unwrap();
    assert!(differences.is_empty(), "{differences:#?}");

    // What the catalogs say, and what the alternate can actually do.
    let attributes: (bool, bool, i32, bool, bool) = sqlx::query_as(
        "SELECT rolcreatedb, rolinherit, rolconnlimit, rolsuper, \
                EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                         WHERE m.member = r.oid AND g.rolname = $2 AND m.admin_option) \
           FROM pg_roles r WHERE rolname = $1",
    )
    .bind(&alternate)
    .bind(&group)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(
        attributes,
        (true, false, 7, false, true),
        "CREATEDB NOINHERIT CONNECTION LIMIT 7, member with admin option"
    );
    exec(
        &mut connection,
        format!("CREATE TABLE {schema}.later (id int)"),
    )
    .await; // default privileges
    let mut as_alternate =
        PgConnection::connect(&pg.url_for_user(&alternate, second.password.expose()))
            .await
            .unwrap();
    for statement in [
        format!("SELECT count(*) FROM {schema}.orders"),
        format!("INSERT INTO {schema}.orders (note) VALUES ('x')"),
        format!("UPDATE {schema}.orders SET note = 'y'"),
        format!("SELECT nextval('{schema}.tickets')"),
        format!("SELECT {schema}.answer(1)"),
        format!("SELECT count(*) FROM {schema}.later"),
        "CREATE TEMPORARY TABLE scratch (id int)".to_owned(),
    ] {
        exec(&mut as_alternate, statement).await;
    }
    let denied = sqlx::raw_sql(AssertSqlSafe(format!(
        "UPDATE {schema}.orders SET secret = 'z'"
    )))
    .execute(&mut as_alternate)
    .await;
    assert!(
        denied.is_err(),
        "column privileges are copied as column privileges, not widened"
    );
    as_alternate.close().await.ok();

    // A privilege only the alternate has is reported, and switching back to the primary, which
    // would lose it, is refused.
    exec(
        &mut connection,
        format!("CREATE TABLE {schema}.extra (id int)"),
    )
    .await;
    exec(
        &mut connection,
        format!("REVOKE ALL ON {schema}.extra FROM {role}, {alternate}"),
    )
    .await;
    exec(
        &mut connection,
        format!("GRANT DELETE ON {schema}.extra TO {alternate}"),
    )
    .await;
    let differences = rotator.privilege_differences().await.unwrap();
    assert_eq!(
        differences,
        vec![format!(
            "\"{role}\" lacks DELETE on table {schema}.extra that \"{alternate}\" has"
        )],
        "{differences:#?}"
    );
    let back = context("rot-eq-3", Some(second.id.clone()));
    let pending = rotator.create(&back).await.unwrap();
    assert_eq!(pending.id.0, role);
    let error = rotator.set(&back, &pending).await.unwrap_err();
    assert_eq!(error.category, ErrorCategory::Misconfigured, "{error}");
    assert!(
        error
            .detail
            .contains(&format!("DELETE on table {schema}.extra")),
        "{error}"
    );
    assert!(
        can_log_in(&pg, &role, first.password.expose()).await,
        "a refused set changes nothing"
    );
    exec(
        &mut connection,
        format!("GRANT DELETE ON {schema}.extra TO {role}"),
    )
    .await;
    rotator.set(&back, &pending).await.unwrap();
    rotator.test(&back, &pending).await.unwrap();
    connection.close().await.ok();
}

#[tokio::test]
async fn alternating_users_refuse_to_copy_dangerous_attributes() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let role = format!("kt_bypass_{}", suffix());
    let mut connection = admin(&pg).await;
    exec(
        &mut connection,
        format!("CREATE ROLE {role} LOGIN BYPASSRLS"),
    )
    .await;
    let rotator =
        PostgresRotator::new(config(&pg, PostgresStrategy::AlternatingUsers, &role)).unwrap();
    let first = rotate(&rotator, &context("rot-bypass-1", None)).await;
    let second_context = context("rot-bypass-2", Some(first.id.clone()));
    let pending = rotator.create(&second_context).await.unwrap();
    let error = rotator.set(&second_context, &pending).await.unwrap_err();
    assert_eq!(error.category, ErrorCategory::Misconfigured, "{error}");
    assert!(error.detail.contains("BYPASSRLS"), "{error}");
    assert!(
        !query_bool(
            &mut connection,
            &format!("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}_alt')")
        )
        .await,
        "nothing created"
    );
    connection.close().await.ok();
}

#[tokio::test]
async fn objects_owned_by_the_primary_survive_retire() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let role = format!("kt_own_{}", suffix());
    let table = format!("public.{role}_owned");
    let mut connection = admin(&pg).await;
    exec(&mut connection, format!("CREATE ROLE {role} LOGIN")).await;
    exec(&mut connection, format!("CREATE TABLE {table} (id int)")).await;
    exec(
        &mut connection,
        format!("INSERT INTO {table} VALUES (1), (2)"),
    )
    .await;
    exec(
        &mut connection,
        format!("ALTER TABLE {table} OWNER TO {role}"),
    )
    .await;
    let rotator =
        PostgresRotator::new(config(&pg, PostgresStrategy::AlternatingUsers, &role)).unwrap();
    let first = rotate(&rotator, &context("rot-own-1", None)).await;
    let second_context = context("rot-own-2", Some(first.id.clone()));
    let second = rotate(&rotator, &second_context).await;
    rotator.retire(&second_context, &first.id).await.unwrap();

    let owner_and_rows: (String, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT pg_get_userbyid(c.relowner)::text, (SELECT count(*) FROM {table}) FROM pg_class c WHERE c.oid = '{table}'::regclass"
    )))
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(
        owner_and_rows,
        (role.clone(), 2),
        "the retired primary keeps its objects"
    );
    let mut as_alternate =
        PgConnection::connect(&pg.url_for_user(&second.id.0, second.password.expose()))
            .await
            .unwrap();
    exec(&mut as_alternate, format!("INSERT INTO {table} VALUES (3)")).await;
    exec(&mut as_alternate, format!("SELECT count(*) FROM {table}")).await;
    as_alternate.close().await.ok();
    let differences = rotator.privilege_differences().await.unwrap();
    assert_eq!(
        differences,
        vec![format!(
            "\"{role}\" owns table {table}; \"{role}_alt\" gets its privileges by GRANT but not ownership (ALTER, DROP)"
        )]
    );
    // And back to the primary: it still owns and can use everything.
    let third_context = context("rot-own-3", Some(second.id.clone()));
    let third = rotate(&rotator, &third_context).await;
    rotator.retire(&third_context, &second.id).await.unwrap();
    let mut as_primary = PgConnection::connect(&pg.url_for_user(&role, third.password.expose()))
        .await
        .unwrap();
    exec(&mut as_primary, format!("SELECT count(*) FROM {table}")).await;
    as_primary.close().await.ok();
    connection.close().await.ok();
}

// ---------------------------------------------------------------------------------------------
// TLS: scripts/test.sh starts PostgreSQL with ssl=on and exports its CA as KEYTURN_TEST_POSTGRES_CA_FILE

#[tokio::test]
async fn verify_full_with_the_configured_ca() {
    let Some(pg) = keyturn_testenv::postgres() else {
        return;
    };
    let Some(ca_file) = keyturn_testenv::postgres_ca_file() else {
        return;
    };
    let role = format!("kt_tls_{}", suffix());
    create_primary(&pg, &role).await;
    let verified = PostgresRotator::new(PostgresConfig {
        ssl_mode: PostgresSslMode::VerifyFull,
        ca_pem: Some(std::fs::read(ca_file).unwrap()),
        ..config(&pg, PostgresStrategy::SingleUser, &role)
    })
    .unwrap();
    rotate(&verified, &context("rot-tls", None)).await;
    let unverified = PostgresRotator::new(PostgresConfig {
        ssl_mode: PostgresSslMode::VerifyFull,
        ..config(&pg, PostgresStrategy::SingleUser, &role)
    })
    .unwrap();
    let pending = unverified
        .create(&context("rot-tls-2", None))
        .await
        .unwrap();
    let error = unverified
        .set(&context("rot-tls-2", None), &pending)
        .await
        .unwrap_err();
    assert_eq!(
        error.category,
        ErrorCategory::Misconfigured,
        "an unknown CA is refused: {error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Timings (informational)

#[tokio::test]
async fn rotation_timings() {
    for strategy in [
        PostgresStrategy::SingleUser,
        PostgresStrategy::AlternatingUsers,
    ] {
        let Some(backend) = backend(strategy) else {
            return;
        };
        let target = backend.fresh_target().await;
        let rotator = backend.rotator(&target);
        let mut current = None;
        for round in 0..3 {
            let context = context(&format!("rot-time-{round}"), current.clone());
            let started = Instant::now();
            let pending = rotator.create(&context).await.unwrap();
            rotator.set(&context, &pending).await.unwrap();
            let set_done = started.elapsed();
            rotator.test(&context, &pending).await.unwrap();
            rotator.finish(&context, &pending).await.unwrap();
            let total = started.elapsed();
            if let Some(previous) = &current {
                rotator.retire(&context, previous).await.unwrap();
            }
            eprintln!(
                "{strategy:?} rotation {round}: set {set_done:?}, create..finish {total:?}, with retire {:?}",
                started.elapsed()
            );
            current = Some(pending.id);
        }
    }
}
