//! PostgreSQL for e2e tests (the server of `keyturn_testenv::postgres()`): login roles with a
//! bootstrap password and a table to SELECT, the admin Secret the rotator connects with, logins
//! as consumers make them, and ManagedSecret manifests for a role.

use std::time::Duration;

use base64::Engine as _;
use keyturn_testenv::PostgresEnv;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::cluster::Cluster;
use crate::names::random_suffix;

/// Name of the admin Secret [`Postgres::install_admin_secret`] creates (keys `username`, `password`).
pub const ADMIN_SECRET: &str = "pg-admin";
/// Name of the CA Secret next to it (key `ca.crt`), when the server's CA is known.
pub const CA_SECRET: &str = "pg-admin-ca";

/// How long a login may take before it counts as failed.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A `data` map for a Secret: base64 values, since the stand-in (unlike a real API server) does
/// not fold `stringData` into `data`.
pub(crate) fn secret_data(entries: &[(&str, &str)]) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), Value::from(engine.encode(value))))
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

/// A Secret manifest with the given data.
pub(crate) fn secret_manifest(name: &str, entries: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": secret_data(entries),
    })
}

/// SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A login role made for one test.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginRole {
    /// `e2e_<random10>`: valid for the CRD's role pattern, with room for `_alt`.
    pub name: String,
    /// The password it was created with, before keyturn rotates it.
    pub bootstrap_password: String,
    /// `public.<name>_t`, one row, on which the role has SELECT.
    pub table: String,
}

impl std::fmt::Debug for LoginRole {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LoginRole")
            .field("name", &self.name)
            .field("bootstrap_password", &"<redacted>")
            .field("table", &self.table)
            .finish()
    }
}

/// The test PostgreSQL server.
#[derive(Debug, Clone)]
pub struct Postgres {
    env: PostgresEnv,
    /// PEM of the CA of the server's TLS listener, when scripts/test.sh made one.
    ca_pem: Option<String>,
}

impl Postgres {
    /// The server of `keyturn_testenv::postgres()`: `None` (after a `SKIPPED:` notice) when it is
    /// not configured outside CI; panics under CI.
    pub fn from_env() -> Option<Postgres> {
        let env = keyturn_testenv::postgres()?;
        // Read directly rather than through postgres_ca_file(): the CA is optional here, and a
        // missing one must not print a SKIPPED notice for a test that is not skipped.
        let ca_pem = std::env::var(keyturn_testenv::POSTGRES_CA_FILE)
            .ok()
            .filter(|path| !path.trim().is_empty())
            .map(|path| {
                std::fs::read_to_string(path.trim())
                    .unwrap_or_else(|error| panic!("read the PostgreSQL CA {path}: {error}"))
            });
        Some(Postgres::new(env, ca_pem))
    }

    /// A server given explicitly; `ca_pem` is the CA of its TLS listener, if it has one.
    pub fn new(env: PostgresEnv, ca_pem: Option<String>) -> Postgres {
        Postgres { env, ca_pem }
    }

    /// Connection details.
    pub fn env(&self) -> &PostgresEnv {
        &self.env
    }

    /// Runs SQL as the test superuser.
    pub async fn execute_as_admin(&self, statements: &str) {
        let mut connection = PgConnection::connect(&self.env.url)
            .await
            .unwrap_or_else(|error| panic!("connect to PostgreSQL as the test superuser: {error}"));
        sqlx::raw_sql(AssertSqlSafe(statements.to_owned()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{statements}: {error}"));
        let _ = connection.close().await;
    }

    /// Creates a login role `e2e_<random10>` with a random bootstrap password, and a one-row
    /// table it may SELECT, so that a test can check the rotated login keeps its grants.
    pub async fn create_login_role(&self) -> LoginRole {
        let name = format!("e2e_{}", random_suffix(10));
        let bootstrap_password = random_suffix(24);
        let table = format!("public.{name}_t");
        self.execute_as_admin(&format!(
            "CREATE ROLE {name} LOGIN PASSWORD {password};\n\
             CREATE TABLE {table} (id int);\n\
             INSERT INTO {table} VALUES (1);\n\
             GRANT SELECT ON {table} TO {name};",
            password = literal(&bootstrap_password),
        ))
        .await;
        LoginRole {
            name,
            bootstrap_password,
            table,
        }
    }

    fn login_options(&self, role: &str, password: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host(&self.env.host)
            .port(self.env.port)
            .database(&self.env.database)
            .username(role)
            .password(password)
            .ssl_mode(PgSslMode::Prefer)
    }

    async fn connect_as(&self, role: &str, password: &str) -> Result<PgConnection, String> {
        match tokio::time::timeout(
            LOGIN_TIMEOUT,
            PgConnection::connect_with(&self.login_options(role, password)),
        )
        .await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(format!("login as {role} failed: {error}")),
            Err(_) => Err(format!("login as {role} timed out after {LOGIN_TIMEOUT:?}")),
        }
    }

    /// A fresh login as `role` with `password`, as a consumer would make it, and `SELECT 1`.
    pub async fn pg_login(&self, role: &str, password: &str) -> Result<(), String> {
        let mut connection = self.connect_as(role, password).await?;
        let result = sqlx::query("SELECT 1")
            .execute(&mut connection)
            .await
            .map(|_| ())
            .map_err(|error| format!("SELECT 1 as {role} failed: {error}"));
        let _ = connection.close().await;
        result
    }

    /// A fresh login as `role`, then `SELECT count(*)` from `table`: the role can log in *and*
    /// kept its grants.
    pub async fn pg_select(&self, role: &str, password: &str, table: &str) -> Result<i64, String> {
        let mut connection = self.connect_as(role, password).await?;
        let statement = format!("SELECT count(*) FROM {table}");
        let result = sqlx::query_as::<_, (i64,)>(AssertSqlSafe(statement.clone()))
            .fetch_one(&mut connection)
            .await
            .map(|row| row.0)
            .map_err(|error| format!("{statement} as {role} failed: {error}"));
        let _ = connection.close().await;
        result
    }

    /// Creates (server-side apply) the Secret [`ADMIN_SECRET`] in `namespace` with the test
    /// superuser's `username` and `password`, and [`CA_SECRET`] (`ca.crt`) when the CA is known.
    pub async fn install_admin_secret(&self, cluster: &Cluster, namespace: &str) {
        let admin = secret_manifest(
            ADMIN_SECRET,
            &[
                ("username", &self.env.user),
                ("password", &self.env.password),
            ],
        );
        cluster.apply(namespace, &admin).await;
        if let Some(ca_pem) = &self.ca_pem {
            cluster
                .apply(
                    namespace,
                    &secret_manifest(CA_SECRET, &[("ca.crt", ca_pem)]),
                )
                .await;
        }
    }

    /// A ManagedSecret named `name` for `role` on this server, using the Secrets of
    /// [`Postgres::install_admin_secret`]: `verify-full` TLS when the CA is known, else `prefer`.
    pub fn managed_secret(&self, name: &str, role: &str) -> PostgresManagedSecret {
        PostgresManagedSecret {
            name: name.to_owned(),
            secret_name: None,
            host: self.env.host.clone(),
            port: self.env.port,
            database: self.env.database.clone(),
            verify_with_ca: self.ca_pem.is_some(),
            role: role.to_owned(),
            alternate_role: None,
            strategy: Strategy::AlternatingUsers,
            every: "1m".to_owned(),
            ttl: Some("5m".to_owned()),
            rotate_before: None,
            deletion_policy: None,
        }
    }
}

/// `spec.rotator.postgres.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    SingleUser,
    AlternatingUsers,
}

impl Strategy {
    /// The CRD's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::SingleUser => "SingleUser",
            Strategy::AlternatingUsers => "AlternatingUsers",
        }
    }
}

/// A PostgreSQL ManagedSecret manifest, written out field by field as a user would (not through
/// keyturn's own types, so that the CRD's field names are tested, too).
///
/// Defaults: strategy AlternatingUsers, `rotation.every: 1m`, `expiry.ttl: 5m`: the shortest the
/// CRD's CEL rules and the operator accept (shorter values work only on the stand-in, which does
/// not evaluate CEL, and the operator would still report them as invalid).
#[derive(Debug, Clone)]
pub struct PostgresManagedSecret {
    name: String,
    secret_name: Option<String>,
    host: String,
    port: u16,
    database: String,
    verify_with_ca: bool,
    role: String,
    alternate_role: Option<String>,
    strategy: Strategy,
    every: String,
    ttl: Option<String>,
    rotate_before: Option<String>,
    deletion_policy: Option<String>,
}

impl PostgresManagedSecret {
    /// `spec.rotator.postgres.strategy`.
    pub fn strategy(mut self, strategy: Strategy) -> PostgresManagedSecret {
        self.strategy = strategy;
        self
    }

    /// `spec.rotator.postgres.alternateRole` (AlternatingUsers only).
    pub fn alternate_role(mut self, role: &str) -> PostgresManagedSecret {
        self.alternate_role = Some(role.to_owned());
        self
    }

    /// `spec.secretName` (default: the ManagedSecret's name).
    pub fn secret_name(mut self, secret_name: &str) -> PostgresManagedSecret {
        self.secret_name = Some(secret_name.to_owned());
        self
    }

    /// `spec.rotation.every`.
    pub fn every(mut self, every: &str) -> PostgresManagedSecret {
        self.every = every.to_owned();
        self
    }

    /// `spec.expiry.ttl` (`None`: no expiry section).
    pub fn ttl(mut self, ttl: Option<&str>) -> PostgresManagedSecret {
        self.ttl = ttl.map(str::to_owned);
        self
    }

    /// `spec.rotation.rotateBefore`.
    pub fn rotate_before(mut self, rotate_before: &str) -> PostgresManagedSecret {
        self.rotate_before = Some(rotate_before.to_owned());
        self
    }

    /// `spec.deletionPolicy`: `Retain` or `Revoke`.
    pub fn deletion_policy(mut self, policy: &str) -> PostgresManagedSecret {
        self.deletion_policy = Some(policy.to_owned());
        self
    }

    /// The published Secret's name.
    pub fn published_secret_name(&self) -> &str {
        self.secret_name.as_deref().unwrap_or(&self.name)
    }

    /// The manifest as JSON, to adjust before applying (consumers, access, ...).
    pub fn to_json(&self) -> Value {
        let mut postgres = json!({
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "sslMode": if self.verify_with_ca { "verify-full" } else { "prefer" },
            "adminSecretRef": {"name": ADMIN_SECRET},
            "role": self.role,
            "strategy": self.strategy.as_str(),
        });
        if self.verify_with_ca {
            postgres["caSecretRef"] = json!({"name": CA_SECRET, "key": "ca.crt"});
        }
        if let Some(alternate_role) = &self.alternate_role {
            postgres["alternateRole"] = Value::from(alternate_role.clone());
        }
        let mut rotation = json!({"every": self.every});
        if let Some(rotate_before) = &self.rotate_before {
            rotation["rotateBefore"] = Value::from(rotate_before.clone());
        }
        let mut spec = json!({"rotator": {"postgres": postgres}, "rotation": rotation});
        if let Some(secret_name) = &self.secret_name {
            spec["secretName"] = Value::from(secret_name.clone());
        }
        if let Some(ttl) = &self.ttl {
            spec["expiry"] = json!({"ttl": ttl});
        }
        if let Some(policy) = &self.deletion_policy {
            spec["deletionPolicy"] = Value::from(policy.clone());
        }
        json!({
            "apiVersion": "keyturn.dev/v1alpha1",
            "kind": "ManagedSecret",
            "metadata": {"name": self.name},
            "spec": spec,
        })
    }

    /// The manifest as YAML, for [`Cluster::apply_yaml`].
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.to_json()).expect("a JSON value serializes to YAML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_has_the_crd_field_names() {
        let postgres = Postgres {
            env: PostgresEnv {
                url: "postgres://postgres:pw@127.0.0.1:5555/keyturn".to_owned(),
                host: "127.0.0.1".to_owned(),
                port: 5555,
                user: "postgres".to_owned(),
                password: "pw".to_owned(),
                database: "keyturn".to_owned(),
            },
            ca_pem: Some("PEM".to_owned()),
        };
        let manifest = postgres
            .managed_secret("orders", "e2e_abc")
            .strategy(Strategy::SingleUser)
            .secret_name("orders-credentials")
            .to_json();
        let spec = &manifest["spec"];
        assert_eq!(spec["rotator"]["postgres"]["strategy"], "SingleUser");
        assert_eq!(spec["rotator"]["postgres"]["sslMode"], "verify-full");
        assert_eq!(
            spec["rotator"]["postgres"]["caSecretRef"]["name"],
            CA_SECRET
        );
        assert_eq!(
            spec["rotator"]["postgres"]["adminSecretRef"]["name"],
            ADMIN_SECRET
        );
        assert_eq!(spec["rotation"]["every"], "1m");
        assert_eq!(spec["expiry"]["ttl"], "5m");
        assert_eq!(spec["secretName"], "orders-credentials");
        assert!(!format!("{:?}", postgres.env).contains("pw@"));
    }

    #[test]
    fn secret_data_is_base64() {
        assert_eq!(secret_data(&[("k", "v")]), json!({"k": "dg=="}));
        assert_eq!(literal("it's"), "'it''s'");
    }
}
