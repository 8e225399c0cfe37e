//! Real rotations of a PostgreSQL login role, driven by the real lifecycle core and the real
//! `PostgresRotator`, on the local clock. Not the controller: there is no cluster, so the staged
//! credential stays in this process's memory (the controller writes it to a staging Secret) and
//! there are no consumers to restart. Everything else is real: `keyturn_core::plan` decides,
//! the rotator runs each step against the server, `record_outcome` folds the result in, and
//! after each rotation fresh logins check what changed.
//!
//! ```sh
//! cargo run -q --example demo_postgres -p keyturn-rotators -- --url "$KEYTURN_TEST_POSTGRES_URL"
//! ```
//!
//! The URL must name a superuser (or a role that may create roles and tables) on a throwaway
//! server: the demo creates roles `orders_app`, `orders_app_alt`, `orders_owner` and a table
//! `orders`, and refuses to start when they exist unless given `--reset`. `scripts/demo.sh`
//! starts such a server. Passwords are never printed, only fingerprints.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use keyturn_core::{
    Action, AuditEvent, CredentialRef, Observation, RotationPolicy, RotationState, Step,
    StepOutcome, Trigger, format_duration, parse_duration, plan, record_outcome,
};
use keyturn_crds::{PostgresSslMode, PostgresStrategy};
use keyturn_rotators::postgres::{PostgresConfig, PostgresRotator, sql};
use keyturn_rotators::{
    Credential, CredentialId, RotationContext, Rotator, RotatorError, SecretValue,
    generate_password,
};
use keyturn_testenv::{PostgresEnv, Resolution};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const ROLE: &str = "orders_app";
const ALTERNATE: &str = "orders_app_alt";
const OWNER: &str = "orders_owner";
/// Stands in for the ManagedSecret's `metadata.uid` (part of every rotation id).
const UID: &str = "demo/orders-db-credentials";
/// Longest single sleep; the loop plans again after it.
const MAX_SLEEP: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const NO_CLUSTER: &str = "skipped: no cluster: no consumers to restart";

const USAGE: &str = "\
Usage: demo_postgres --url postgres://ADMIN:PASSWORD@HOST:PORT/DATABASE [OPTIONS]

Rotates the PostgreSQL login role orders_app (AlternatingUsers with orders_app_alt,
sslmode disable) through keyturn's real lifecycle, on the local clock.

Options:
  --url URL          a superuser on a throwaway server [env KEYTURN_TEST_POSTGRES_URL]
  --rotations N      rotations to run, then stop        [default 3]
  --every DURATION   rotation interval                  [default 10s]
  --ttl DURATION     lifetime of each password (VALID UNTIL)  [default 2m]
  --reset            drop the demo's roles and table first if they exist
  -h, --help         this text";

struct Args {
    url: String,
    rotations: u32,
    every: Duration,
    ttl: Duration,
    reset: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut url = std::env::var("KEYTURN_TEST_POSTGRES_URL").ok();
    let mut rotations = 3u32;
    let mut every = Duration::from_secs(10);
    let mut ttl = Duration::from_secs(120);
    let mut reset = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--url" => url = Some(value()?),
            "--rotations" => {
                let text = value()?;
                rotations = text
                    .parse()
                    .ok()
                    .filter(|count| *count > 0)
                    .ok_or_else(|| format!("--rotations {text:?} is not a positive number"))?;
            }
            "--every" => every = duration_flag("--every", &value()?)?,
            "--ttl" => ttl = duration_flag("--ttl", &value()?)?,
            "--reset" => reset = true,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    let url = url.ok_or("--url is required (or set KEYTURN_TEST_POSTGRES_URL)")?;
    Ok(Some(Args {
        url,
        rotations,
        every,
        ttl,
        reset,
    }))
}

fn duration_flag(flag: &str, text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| format!("{flag} {text:?}: {error}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("error: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("error: {failed} check(s) failed (marked NO above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the rotations; returns the number of failed checks.
async fn run(args: &Args) -> Result<usize, String> {
    let server = match keyturn_testenv::resolve_postgres(&|_| Some(args.url.clone())) {
        Resolution::Ready(server) => server,
        Resolution::Skip(message) | Resolution::Fail(message) => {
            return Err(format!("--url: {message}"));
        }
    };
    let policy = RotationPolicy {
        trigger: Trigger::Interval { every: args.every },
        rotate_before: None,
        ttl: Some(args.ttl),
        paused: false,
    };
    policy.validate().map_err(|error| error.to_string())?;
    let rotator = PostgresRotator::new(PostgresConfig {
        ssl_mode: PostgresSslMode::Disable,
        strategy: PostgresStrategy::AlternatingUsers,
        alternate_role: Some(ALTERNATE.to_owned()),
        ..PostgresConfig::new(
            &server.host,
            server.port,
            &server.database,
            &server.user,
            SecretValue::new(&server.password),
            ROLE,
        )
    })
    .map_err(|error| error.to_string())?;

    println!(
        "PostgreSQL {} at {}:{}/{} (admin {}, sslmode disable)",
        server_version(&server).await?,
        server.host,
        server.port,
        server.database,
        server.user
    );
    let bootstrap = setup(&server, args.reset).await?;
    println!(
        "  created login role {ROLE} with a bootstrap password (fingerprint {}), as a DBA would",
        bootstrap.fingerprint()
    );
    println!(
        "  created table orders (owner {OWNER}, 3 rows) and granted SELECT on it to {ROLE} only"
    );
    println!(
        "Policy: rotate every {}, each password valid {} (VALID UNTIL); AlternatingUsers {ROLE} <-> {ALTERNATE}",
        format_duration(args.every),
        format_duration(args.ttl)
    );
    println!(
        "This is a local driver, not the controller: keyturn-core decides each step on the real clock,\n\
         PostgresRotator runs it against the server. Without a cluster the staged credential is kept in\n\
         this process's memory (the controller writes it to a staging Secret first), and there are no\n\
         consumers to restart."
    );

    let mut driver = Driver {
        rotator,
        policy,
        server,
        state: RotationState::default(),
        consumers_have: bootstrap,
        replaced: None,
        staged: None,
        audit: Vec::new(),
        failed_checks: 0,
    };
    driver.rotate(args.rotations).await?;
    Ok(driver.failed_checks)
}

struct Driver {
    rotator: PostgresRotator,
    policy: RotationPolicy,
    server: PostgresEnv,
    state: RotationState,
    /// The credential consumers would hold (the published Secret's content).
    consumers_have: Credential,
    /// What `consumers_have` was before the last Publish, to check that it no longer works.
    replaced: Option<Credential>,
    /// Stage's credential until Publish; the controller keeps it in the staging Secret.
    staged: Option<Credential>,
    /// Audit records of the rotation in progress, printed when it ends.
    audit: Vec<AuditEvent>,
    failed_checks: usize,
}

impl Driver {
    async fn rotate(&mut self, rotations: u32) -> Result<(), String> {
        let policy = self.policy.clone();
        let mut completed = 0;
        // Generous: every rotation is due `every` after the last one.
        let give_up =
            Instant::now() + (interval(&policy) + Duration::from_secs(120)) * (rotations + 1);
        while completed < rotations {
            if Instant::now() > give_up {
                return Err(
                    "no progress: the rotations took far longer than the policy allows".into(),
                );
            }
            let now = Utc::now();
            let observation = Observation {
                uid: UID,
                generation: Some(1),
                policy: &policy,
                state: &self.state,
                now,
                manual_request: None,
            };
            let decision = plan(&observation);
            self.audit.extend(decision.audit.iter().cloned());
            match decision.action {
                Action::Wait => {
                    let Some(at) = decision.requeue_at else {
                        return Err("the lifecycle core scheduled nothing further".into());
                    };
                    self.state = decision.state;
                    let sleep = (at - Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_SLEEP);
                    println!(
                        "\nnext rotation due at {} (keyturn-core's requeue time); sleeping {:.1}s",
                        clock(at),
                        sleep.as_secs_f64()
                    );
                    tokio::time::sleep(sleep).await;
                }
                Action::Run { rotation_id, step } => {
                    let started = decision.state;
                    if step == Step::Stage
                        && let Some(in_flight) = &started.in_flight
                    {
                        println!(
                            "\nRotation {} ({}, due {}), id {rotation_id}",
                            completed + 1,
                            in_flight.reason.as_str(),
                            clock(in_flight.due_at)
                        );
                    }
                    let (outcome, said) = self.run_step(&started, &rotation_id, step).await;
                    println!("  {:<17} {said}", step.as_str());
                    let observation = Observation {
                        uid: UID,
                        generation: Some(1),
                        policy: &policy,
                        state: &started,
                        now: Utc::now(),
                        manual_request: None,
                    };
                    let failed = matches!(outcome, StepOutcome::Failed { .. });
                    let after = record_outcome(&observation, &rotation_id, step, outcome);
                    self.audit.extend(after.audit.iter().cloned());
                    self.state = after.state;
                    if failed {
                        self.print_audit(&rotation_id);
                        return Err(format!(
                            "{step} failed; the controller would retry it at {}, the demo stops here",
                            self.state.retry_at.map_or_else(|| "-".to_owned(), clock)
                        ));
                    }
                    if self.state.revision > started.revision {
                        completed += 1;
                        self.print_audit(&rotation_id);
                        self.report(completed, &rotation_id).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs one step with the real rotator; returns the outcome for the core and a line saying
    /// what was done.
    async fn run_step(
        &mut self,
        state: &RotationState,
        rotation_id: &str,
        step: Step,
    ) -> (StepOutcome, String) {
        let Some(in_flight) = &state.in_flight else {
            return (
                failed("InvalidState", "no rotation in flight".into(), false),
                "no rotation in flight".into(),
            );
        };
        let valid_until = self
            .policy
            .ttl
            .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
            .map(|ttl| in_flight.started_at + ttl);
        let context = RotationContext {
            rotation_id: rotation_id.to_owned(),
            started_at: in_flight.started_at,
            valid_until,
            current: state
                .current
                .as_ref()
                .map(|current| CredentialId(current.id.clone())),
        };
        let result: Result<(Option<CredentialRef>, String), RotatorError> = match step {
            Step::Stage => match self.rotator.create(&context).await {
                Ok(credential) => {
                    let reference = CredentialRef {
                        id: credential.id.0.clone(),
                        fingerprint: credential.fingerprint(),
                        issued_at: Utc::now(),
                        expires_at: credential.expires_at,
                    };
                    let said = format!(
                        "create: new password for {}, fingerprint {} (kept in memory: no staging Secret without a cluster)",
                        credential.id, reference.fingerprint
                    );
                    self.staged = Some(credential);
                    Ok((Some(reference), said))
                }
                Err(error) => Err(error),
            },
            Step::Apply | Step::Verify | Step::Publish => {
                let Some(pending) = self.staged.clone() else {
                    return (
                        failed(
                            "InvalidState",
                            "the staged credential is gone".into(),
                            false,
                        ),
                        "the staged credential is gone (this process restarted?)".into(),
                    );
                };
                match step {
                    Step::Apply => self.rotator.set(&context, &pending).await.map(|()| {
                        (
                            None,
                            format!(
                                "set: ALTER ROLE {} with the new SCRAM verifier, VALID UNTIL {}",
                                pending.id,
                                valid_until.map_or_else(|| "infinity".to_owned(), timestamp)
                            ),
                        )
                    }),
                    Step::Verify => self.rotator.test(&context, &pending).await.map(|()| {
                        (
                            None,
                            format!(
                                "test: fresh login as {} with the new password: ok",
                                pending.id
                            ),
                        )
                    }),
                    _ => self.rotator.finish(&context, &pending).await.map(|()| {
                        let said = format!(
                            "finish: {} is current (the controller writes the consumers' Secret here)",
                            pending.id
                        );
                        self.replaced = Some(std::mem::replace(&mut self.consumers_have, pending));
                        self.staged = None;
                        (None, said)
                    }),
                }
            }
            Step::RestartConsumers | Step::AwaitRollout => Ok((None, NO_CLUSTER.to_owned())),
            Step::RetirePrevious => match &state.previous {
                Some(previous) => {
                    let id = CredentialId(previous.id.clone());
                    self.rotator.retire(&context, &id).await.map(|()| {
                        (
                            None,
                            format!(
                                "retire: {id} locked out (NOLOGIN, unknown password, VALID UNTIL 1970); role and grants kept"
                            ),
                        )
                    })
                }
                None => Ok((
                    None,
                    format!(
                        "nothing to retire: first issuance ({ROLE}'s bootstrap password was replaced in place by Apply)"
                    ),
                )),
            },
        };
        match result {
            Ok((credential, said)) => (StepOutcome::Succeeded { credential }, said),
            Err(error) => (
                failed(
                    error.category.as_str(),
                    error.to_string(),
                    error.category.is_retryable(),
                ),
                format!("FAILED: {error}"),
            ),
        }
    }

    /// Prints the audit records of `rotation_id` and those of no rotation; a record of the next
    /// rotation (started at once when already due) waits for that rotation's block.
    fn print_audit(&mut self, rotation_id: &str) {
        let (now, later): (Vec<AuditEvent>, Vec<AuditEvent>) =
            self.audit.drain(..).partition(|event| {
                event
                    .rotation_id
                    .as_deref()
                    .is_none_or(|id| id == rotation_id)
            });
        self.audit = later;
        println!("  audit records from keyturn-core (ids and fingerprints, no secrets):");
        for event in now {
            println!(
                "    {}  {:<19} {:<16} {:<8} {}",
                clock(event.time),
                format!("{:?}", event.action),
                event.step.map_or("-", Step::as_str),
                format!("{:?}", event.outcome),
                event.details
            );
        }
    }

    /// The compact line after a rotation, with checks on fresh connections.
    async fn report(&mut self, number: u32, rotation_id: &str) {
        let current = self.consumers_have.clone();
        let role = current.id.0.clone();
        let valid_until = match self.valid_until(&role).await {
            Ok(Some(valid_until)) => {
                let expected = current.expires_at.map(|at| at.timestamp());
                let note = if Some(valid_until.timestamp()) == expected {
                    format!(
                        "(pg_authid; rotation start + {})",
                        self.policy.ttl.map_or_else(String::new, format_duration)
                    )
                } else {
                    self.failed_checks += 1;
                    "(NO: not what was set)".to_owned()
                };
                format!("{} {note}", timestamp(valid_until))
            }
            Ok(None) => {
                self.failed_checks += 1;
                "none (NO: expected one)".to_owned()
            }
            Err(error) => {
                self.failed_checks += 1;
                format!("unreadable (NO: {error})")
            }
        };
        let logs_in = match self.login(&current).await {
            Ok(mut connection) => {
                let user: Result<(String,), _> = sqlx::query_as("SELECT current_user::text")
                    .fetch_one(&mut connection)
                    .await;
                let _ = connection.close().await;
                match user {
                    Ok((user,)) if user == role => "yes".to_owned(),
                    Ok((user,)) => self.no(format!("logged in as {user}")),
                    Err(error) => self.no(error.to_string()),
                }
            }
            Err(error) => self.no(error),
        };
        let refused = match self.replaced.clone() {
            Some(replaced) => {
                let what = if replaced.id == current.id {
                    format!("replaced credential ({}'s bootstrap password)", replaced.id)
                } else {
                    format!("retired credential ({}, the previous role)", replaced.id)
                };
                let answer = match self.login(&replaced).await {
                    Ok(connection) => {
                        let _ = connection.close().await;
                        self.no("it still logs in".to_owned())
                    }
                    // Invalid password, or (NOLOGIN) not permitted to log in.
                    Err(error) if error.contains("28P01") || error.contains("28000") => {
                        format!(
                            "yes ({})",
                            error.split(" (SQLSTATE").next().unwrap_or(&error)
                        )
                    }
                    Err(error) => self.no(format!("unexpected error: {error}")),
                };
                format!("{what} refused: {answer}")
            }
            None => "retired credential: none".to_owned(),
        };
        let readable = match self.login(&current).await {
            Ok(mut connection) => {
                let count: Result<(i64,), _> = sqlx::query_as("SELECT count(*) FROM orders")
                    .fetch_one(&mut connection)
                    .await;
                let _ = connection.close().await;
                match count {
                    // SELECT was granted to the primary only: the alternate reads through the
                    // grant the rotator copied at Apply.
                    Ok((rows,)) if role == ALTERNATE => {
                        format!("yes ({rows} rows, via the grant copied from {ROLE})")
                    }
                    Ok((rows,)) => format!("yes ({rows} rows)"),
                    Err(error) => self.no(error.to_string()),
                }
            }
            Err(error) => self.no(error),
        };
        println!(
            "#{number} done: {rotation_id}, current role {role}, fingerprint {}, VALID UNTIL {valid_until}",
            current.fingerprint()
        );
        println!("   new credential logs in: {logs_in}");
        println!("   {refused}");
        println!("   orders readable by the new role: {readable}");
    }

    fn no(&mut self, why: String) -> String {
        self.failed_checks += 1;
        format!("NO ({why})")
    }

    /// A fresh connection as the credential's user; the error text carries the SQLSTATE.
    async fn login(&self, credential: &Credential) -> Result<PgConnection, String> {
        let options = options(&self.server)
            .username(credential.username.as_deref().unwrap_or(&credential.id.0))
            .password(credential.password.expose());
        connect(&options).await
    }

    async fn valid_until(&self, role: &str) -> Result<Option<DateTime<Utc>>, String> {
        let mut connection = admin(&self.server).await?;
        let row: Result<(Option<f64>,), _> = sqlx::query_as(
            "SELECT extract(epoch FROM rolvaliduntil)::float8 FROM pg_authid WHERE rolname = $1",
        )
        .bind(role)
        .fetch_one(&mut connection)
        .await;
        let _ = connection.close().await;
        let (epoch,) = row.map_err(|error| error.to_string())?;
        Ok(epoch.and_then(|epoch| DateTime::from_timestamp(epoch.floor() as i64, 0)))
    }
}

fn failed(category: &str, message: String, retryable: bool) -> StepOutcome {
    StepOutcome::Failed {
        category: category.to_owned(),
        message,
        retryable,
    }
}

fn interval(policy: &RotationPolicy) -> Duration {
    match &policy.trigger {
        Trigger::Interval { every } => *every,
        Trigger::Cron(_) => Duration::from_secs(3600),
    }
}

fn options(server: &PostgresEnv) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .host(&server.host)
        .port(server.port)
        .database(&server.database)
        .ssl_mode(PgSslMode::Disable)
        .application_name("keyturn-demo")
}

async fn connect(options: &PgConnectOptions) -> Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(sqlx::Error::Database(error))) => Err(format!(
            "{} (SQLSTATE {})",
            error.message(),
            error.code().unwrap_or_default()
        )),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

async fn admin(server: &PostgresEnv) -> Result<PgConnection, String> {
    let options = options(server)
        .username(&server.user)
        .password(&server.password);
    connect(&options)
        .await
        .map_err(|error| format!("connect as {}: {error}", server.user))
}

async fn execute(connection: &mut PgConnection, statement: String) -> Result<(), String> {
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(connection)
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}

async fn server_version(server: &PostgresEnv) -> Result<String, String> {
    let mut connection = admin(server).await?;
    let row: Result<(String,), _> = sqlx::query_as("SHOW server_version")
        .fetch_one(&mut connection)
        .await;
    let _ = connection.close().await;
    row.map(|(version,)| version)
        .map_err(|error| error.to_string())
}

/// Creates the demo's roles and table; returns the bootstrap credential of `orders_app`.
async fn setup(server: &PostgresEnv, reset: bool) -> Result<Credential, String> {
    let mut connection = admin(server).await?;
    let existing: Vec<(String,)> = sqlx::query_as(
        "SELECT rolname::text FROM pg_roles WHERE rolname IN ($1, $2, $3) \
         UNION ALL SELECT 'table orders' WHERE to_regclass('public.orders') IS NOT NULL",
    )
    .bind(ROLE)
    .bind(ALTERNATE)
    .bind(OWNER)
    .fetch_all(&mut connection)
    .await
    .map_err(|error| error.to_string())?;
    if !existing.is_empty() {
        let names: Vec<String> = existing.into_iter().map(|(name,)| name).collect();
        if !reset {
            return Err(format!(
                "already on this server: {}; run with --reset to drop them first (only on a throwaway server)",
                names.join(", ")
            ));
        }
        println!("  --reset: dropping {}", names.join(", "));
        execute(&mut connection, "DROP TABLE IF EXISTS public.orders".into()).await?;
        for role in [ROLE, ALTERNATE, OWNER] {
            if names.iter().any(|name| name == role) {
                execute(&mut connection, format!("DROP OWNED BY {role}")).await?;
                execute(&mut connection, format!("DROP ROLE {role}")).await?;
            }
        }
    }
    let bootstrap = Credential {
        id: CredentialId(ROLE.to_owned()),
        username: Some(ROLE.to_owned()),
        password: generate_password(32),
        expires_at: None,
    };
    // The bootstrap password goes over as a SCRAM verifier, like the rotator's.
    let set_password = sql::set_password_statement(ROLE, &bootstrap.password, None)?;
    let statements = [
        format!("CREATE ROLE {OWNER} NOLOGIN"),
        "CREATE TABLE public.orders (id int PRIMARY KEY, item text NOT NULL, quantity int NOT NULL)"
            .to_owned(),
        "INSERT INTO public.orders VALUES (1, 'keyboard', 2), (2, 'monitor', 1), (3, 'cable', 5)"
            .to_owned(),
        format!("ALTER TABLE public.orders OWNER TO {OWNER}"),
        format!("CREATE ROLE {ROLE} LOGIN"),
        set_password,
        format!("GRANT SELECT ON public.orders TO {ROLE}"),
    ];
    let mut transaction = connection
        .begin()
        .await
        .map_err(|error| error.to_string())?;
    for statement in statements {
        execute(&mut transaction, statement).await?;
    }
    transaction
        .commit()
        .await
        .map_err(|error| error.to_string())?;
    let _ = connection.close().await;
    Ok(bootstrap)
}

fn clock(time: DateTime<Utc>) -> String {
    time.format("%H:%M:%SZ").to_string()
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}
