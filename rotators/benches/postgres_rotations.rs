//! Throughput of the real `PostgresRotator` against the PostgreSQL in `KEYTURN_TEST_POSTGRES_URL`
//! (a program, not a test: it measures and prints, it asserts nothing about time).
//!
//! Creates R login roles, then rotates each once with at most C rotations in flight, for
//! SingleUser and AlternatingUsers. One rotation is create → set → test → finish, plus retire of
//! the previous role for AlternatingUsers, exactly as the controller calls them, with
//! `sslmode=disable`. Drops its roles at the end.
//!
//! ```text
//! cargo bench -p keyturn-rotators --bench postgres_rotations -- [--roles R] [--concurrency C]
//!     [--strategy single|alternating|both]
//! ```
//!
//! `scripts/bench.sh` starts a throwaway server, runs this and the pgbench comparison. Besides the
//! human-readable report, each strategy prints one `RESULT key=value ...` line for scripts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use keyturn_crds::{PostgresSslMode, PostgresStrategy};
use keyturn_rotators::postgres::{PostgresConfig, PostgresRotator};
use keyturn_rotators::{CredentialId, RotationContext, Rotator, RotatorError, SecretValue};
use keyturn_testenv::PostgresEnv;
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const USAGE: &str = "\
postgres_rotations: rotates R PostgreSQL credentials with the real PostgresRotator, C at a time.

Usage: cargo bench -p keyturn-rotators --bench postgres_rotations -- [OPTIONS]

Options:
  -r, --roles R          roles to rotate, one rotation each    [env KEYTURN_BENCH_ROLES, default 200]
  -c, --concurrency C    rotations in flight at most           [env KEYTURN_BENCH_CONCURRENCY, default 8]
  -s, --strategy S       single | alternating | both           [env KEYTURN_BENCH_STRATEGY, default both]
  -h, --help             this text

Needs KEYTURN_TEST_POSTGRES_URL (a superuser URL; scripts/bench.sh starts a server and sets it).";

/// The steps of one rotation, in order.
const STEPS: [&str; 5] = ["create", "set", "test", "finish", "retire"];

#[derive(Debug, Clone, Copy)]
struct Options {
    roles: usize,
    concurrency: usize,
    single: bool,
    alternating: bool,
}

fn parse_options() -> Result<Option<Options>, String> {
    let env_number = |name: &str, default: usize| -> Result<usize, String> {
        match std::env::var(name) {
            Ok(value) => value
                .trim()
                .parse()
                .map_err(|_| format!("{name}={value:?} is not a number")),
            Err(_) => Ok(default),
        }
    };
    let mut roles = env_number("KEYTURN_BENCH_ROLES", 200)?;
    let mut concurrency = env_number("KEYTURN_BENCH_CONCURRENCY", 8)?;
    let mut strategy = std::env::var("KEYTURN_BENCH_STRATEGY").unwrap_or_else(|_| "both".into());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |flag: &str, text: String| -> Result<usize, String> {
            text.parse()
                .map_err(|_| format!("{flag} {text:?} is not a number"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            "-r" | "--roles" => roles = number(&flag, value(&flag)?)?,
            "-c" | "--concurrency" => concurrency = number(&flag, value(&flag)?)?,
            "-s" | "--strategy" => strategy = value(&flag)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if roles == 0 || concurrency == 0 {
        return Err("roles and concurrency must be positive".into());
    }
    let (single, alternating) = match strategy.as_str() {
        "single" => (true, false),
        "alternating" => (false, true),
        "both" => (true, true),
        other => return Err(format!("unknown strategy {other:?}")),
    };
    Ok(Some(Options {
        roles,
        concurrency,
        single,
        alternating,
    }))
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(pg) = keyturn_testenv::postgres() else {
        eprintln!("error: KEYTURN_TEST_POSTGRES_URL is not set\n\n{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut errors = 0;
    runtime.block_on(async {
        let version = server_version(&pg).await;
        println!(
            "PostgreSQL {version} at {}:{}/{}, sslmode=disable; R = {} roles, C = {} in flight, {} tokio workers",
            pg.host,
            pg.port,
            pg.database,
            options.roles,
            options.concurrency,
            runtime_workers()
        );
        for (enabled, strategy) in [
            (options.single, PostgresStrategy::SingleUser),
            (options.alternating, PostgresStrategy::AlternatingUsers),
        ] {
            if enabled {
                errors += run(&pg, options, strategy).await;
            }
        }
    });
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {errors} rotations failed");
        ExitCode::FAILURE
    }
}

fn runtime_workers() -> usize {
    tokio::runtime::Handle::current().metrics().num_workers()
}

// ---------------------------------------------------------------------------------------------
// Setup and teardown (not measured)

fn admin_options(pg: &PostgresEnv) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .host(&pg.host)
        .port(pg.port)
        .database(&pg.database)
        .username(&pg.user)
        .password(&pg.password)
        .ssl_mode(PgSslMode::Disable)
}

async fn admin(pg: &PostgresEnv) -> PgConnection {
    PgConnection::connect_with(&admin_options(pg))
        .await
        .unwrap_or_else(|error| panic!("connect as {} to {}: {error}", pg.user, pg.host))
}

async fn exec(connection: &mut PgConnection, statement: String) {
    sqlx::raw_sql(AssertSqlSafe(statement.clone()))
        .execute(connection)
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
}

async fn server_version(pg: &PostgresEnv) -> String {
    let mut connection = admin(pg).await;
    let row: (String,) = sqlx::query_as("SHOW server_version")
        .fetch_one(&mut connection)
        .await
        .expect("SHOW server_version");
    connection.close().await.ok();
    row.0
}

/// The roles of one run: `ktb_<random>_<i>` (and `<role>_alt` for AlternatingUsers), each with
/// SELECT on one shared table, so that AlternatingUsers compares and copies real grants.
struct Fixture {
    prefix: String,
    roles: Vec<String>,
    alternates: Vec<String>,
}

impl Fixture {
    async fn create(pg: &PostgresEnv, count: usize, strategy: PostgresStrategy) -> Fixture {
        let prefix = format!("ktb_{:08x}", rand::rng().random::<u32>());
        let roles: Vec<String> = (0..count).map(|i| format!("{prefix}_{i}")).collect();
        let alternates: Vec<String> = match strategy {
            PostgresStrategy::AlternatingUsers => {
                roles.iter().map(|role| format!("{role}_alt")).collect()
            }
            PostgresStrategy::SingleUser => Vec::new(),
        };
        let mut connection = admin(pg).await;
        exec(
            &mut connection,
            format!("CREATE TABLE public.{prefix}_t (id int)"),
        )
        .await;
        for chunk in roles
            .iter()
            .chain(&alternates)
            .collect::<Vec<_>>()
            .chunks(100)
        {
            let mut batch = String::new();
            for role in chunk {
                // No password yet: a plain one here would cost the server a PBKDF2 per role and
                // blur its CPU figures; the rotation sets the first verifier.
                batch.push_str(&format!(
                    "CREATE ROLE {role} LOGIN; GRANT SELECT ON public.{prefix}_t TO {role};\n"
                ));
            }
            exec(&mut connection, batch).await;
        }
        connection.close().await.ok();
        Fixture {
            prefix,
            roles,
            alternates,
        }
    }

    async fn drop(self, pg: &PostgresEnv) {
        let mut connection = admin(pg).await;
        exec(
            &mut connection,
            format!("DROP TABLE IF EXISTS public.{}_t", self.prefix),
        )
        .await;
        for chunk in self
            .roles
            .iter()
            .chain(&self.alternates)
            .collect::<Vec<_>>()
            .chunks(100)
        {
            let mut batch = String::new();
            for role in chunk {
                batch.push_str(&format!("DROP ROLE IF EXISTS {role};\n"));
            }
            exec(&mut connection, batch).await;
        }
        connection.close().await.ok();
    }
}

// ---------------------------------------------------------------------------------------------
// The measurement

/// What one rotation took: per step (`STEPS` order) and in total, or the first error.
struct Sample {
    steps: [Duration; 5],
    total: Duration,
    error: Option<RotatorError>,
}

async fn timed<T>(
    slot: &mut Duration,
    step: impl Future<Output = Result<T, RotatorError>>,
) -> Result<T, RotatorError> {
    let started = Instant::now();
    let result = step.await;
    *slot = started.elapsed();
    result
}

/// One rotation of an issued credential, as the controller runs it.
async fn rotate(rotator: PostgresRotator, strategy: PostgresStrategy) -> Sample {
    let mut steps = [Duration::ZERO; 5];
    let started = Instant::now();
    let current = CredentialId(rotator.role().to_owned());
    let context = RotationContext {
        rotation_id: format!("bench-{}", rotator.role()),
        started_at: Utc::now(),
        valid_until: Some(Utc::now() + chrono::Duration::days(30)),
        current: Some(current.clone()),
    };
    let result = async {
        let [create, set, test, finish, retire] = &mut steps;
        let pending = timed(create, rotator.create(&context)).await?;
        timed(set, rotator.set(&context, &pending)).await?;
        timed(test, rotator.test(&context, &pending)).await?;
        timed(finish, rotator.finish(&context, &pending)).await?;
        if strategy == PostgresStrategy::AlternatingUsers {
            timed(retire, rotator.retire(&context, &current)).await?;
        }
        Ok::<(), RotatorError>(())
    }
    .await;
    Sample {
        steps,
        total: started.elapsed(),
        error: result.err(),
    }
}

fn rotator_for(pg: &PostgresEnv, strategy: PostgresStrategy, role: &str) -> PostgresRotator {
    let config = PostgresConfig {
        ssl_mode: PostgresSslMode::Disable,
        strategy,
        ..PostgresConfig::new(
            &pg.host,
            pg.port,
            &pg.database,
            &pg.user,
            SecretValue::new(&pg.password),
            role,
        )
    };
    PostgresRotator::new(config).unwrap_or_else(|error| panic!("rotator for {role}: {error}"))
}

/// Rotates every role once, at most `concurrency` at a time; prints the report and returns the
/// number of failed rotations.
async fn run(pg: &PostgresEnv, options: Options, strategy: PostgresStrategy) -> usize {
    let name = match strategy {
        PostgresStrategy::SingleUser => "SingleUser",
        PostgresStrategy::AlternatingUsers => "AlternatingUsers",
    };
    let fixture = Fixture::create(pg, options.roles, strategy).await;
    let rotators: Vec<PostgresRotator> = fixture
        .roles
        .iter()
        .map(|role| rotator_for(pg, strategy, role))
        .collect();

    let semaphore = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for rotator in rotators {
        // Acquired before spawning: never more than C rotations exist, let alone run.
        let permit = Arc::clone(&semaphore)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        tasks.spawn(async move {
            let sample = rotate(rotator, strategy).await;
            drop(permit);
            sample
        });
    }
    let mut samples = Vec::with_capacity(options.roles);
    while let Some(joined) = tasks.join_next().await {
        samples.push(joined.expect("a rotation task panicked"));
    }
    let wall = started.elapsed();

    fixture.drop(pg).await;
    report(name, options, wall, &samples, strategy)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    // Nearest rank.
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn report(
    name: &str,
    options: Options,
    wall: Duration,
    samples: &[Sample],
    strategy: PostgresStrategy,
) -> usize {
    let errors: Vec<&RotatorError> = samples
        .iter()
        .filter_map(|sample| sample.error.as_ref())
        .collect();
    let mut totals: Vec<Duration> = samples.iter().map(|sample| sample.total).collect();
    totals.sort();
    let rate = samples.len() as f64 / wall.as_secs_f64();
    let (p50, p95, p99) = (
        percentile(&totals, 0.50),
        percentile(&totals, 0.95),
        percentile(&totals, 0.99),
    );
    println!();
    println!("== {name}");
    println!("rotations          {}", samples.len());
    println!("errors             {}", errors.len());
    println!("wall time          {:.3} s", wall.as_secs_f64());
    println!("rotations/s        {rate:.1}");
    println!(
        "latency p50/95/99  {:.1} / {:.1} / {:.1} ms",
        millis(p50),
        millis(p95),
        millis(p99)
    );
    println!("per-step average:");
    let steps = if strategy == PostgresStrategy::AlternatingUsers {
        &STEPS[..]
    } else {
        &STEPS[..4]
    };
    let mut step_fields = String::new();
    for (index, step) in steps.iter().enumerate() {
        let sum: Duration = samples.iter().map(|sample| sample.steps[index]).sum();
        let average = millis(sum) / samples.len() as f64;
        println!("  {step:<8} {average:8.2} ms");
        step_fields.push_str(&format!(" {step}_ms={average:.2}"));
    }
    for error in errors.iter().take(5) {
        println!("  error: {error}");
    }
    println!(
        "RESULT strategy={name} roles={} concurrency={} rotations={} errors={} wall_s={:.3} rate={rate:.1} p50_ms={:.1} p95_ms={:.1} p99_ms={:.1}{step_fields}",
        options.roles,
        options.concurrency,
        samples.len(),
        errors.len(),
        wall.as_secs_f64(),
        millis(p50),
        millis(p95),
        millis(p99)
    );
    errors.len()
}
