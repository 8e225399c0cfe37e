//! `keyturn-operator explain`: validates ManagedSecret manifests exactly as the controller will
//! and previews each one's next rotations by driving the real lifecycle core with a simulated
//! clock in which every step succeeds. Nothing is contacted, and the output says so.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use keyturn_core::plan::{Action, Observation, StepOutcome, plan, record_outcome};
use keyturn_core::state::{CredentialRef, RotationState};
use keyturn_crds::validate::{ValidatedSpec, validate_spec};
use keyturn_crds::{ManagedSecret, PostgresStrategy};
use serde::Deserialize as _;

use crate::cli::ExplainArgs;

/// Upper bound on simulated steps per object, so a lifecycle bug cannot hang the command.
const MAX_SIMULATED_STEPS: usize = 10_000;

pub fn run(args: &ExplainArgs) -> anyhow::Result<()> {
    let now = keyturn_core::state::whole_seconds(args.now.unwrap_or_else(Utc::now));
    let mut invalid = 0usize;
    for file in &args.files {
        for object in read_manifests(file)? {
            let report = match object {
                Ok(managed_secret) => explain_one(&managed_secret, now, args.rotations),
                Err(error) => Err(format!(
                    "{}: not a ManagedSecret: {error}\n",
                    file.display()
                )),
            };
            match report {
                Ok(text) => print!("{text}"),
                Err(text) => {
                    invalid += 1;
                    print!("{text}");
                }
            }
        }
    }
    if invalid > 0 {
        anyhow::bail!(
            "{invalid} ManagedSecret(s) are invalid; the operator would report them as Stalled"
        );
    }
    Ok(())
}

fn read_manifests(path: &Path) -> anyhow::Result<Vec<Result<ManagedSecret, String>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)
            .with_context(|| format!("{} is not valid YAML", path.display()))?;
        if value.is_null() {
            continue;
        }
        objects.push(
            serde_yaml::from_value::<ManagedSecret>(value).map_err(|error| error.to_string()),
        );
    }
    Ok(objects)
}

fn explain_one(
    managed_secret: &ManagedSecret,
    now: DateTime<Utc>,
    rotations: u32,
) -> Result<String, String> {
    let namespace = managed_secret
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let name = managed_secret
        .metadata
        .name
        .as_deref()
        .unwrap_or("<unnamed>");
    let spec = &managed_secret.spec;
    let validated = match validate_spec(spec) {
        Ok(validated) => validated,
        Err(errors) => {
            let mut text = format!(
                "{namespace}/{name}: INVALID, the operator would set Stalled and not rotate\n"
            );
            for error in errors.errors() {
                let _ = writeln!(text, "  - {error}");
            }
            return Err(text);
        }
    };
    let mut text = format!("{namespace}/{name}: valid\n");
    let _ = writeln!(
        text,
        "  rotator:   {}",
        describe_rotator(managed_secret, &validated)
    );
    let _ = writeln!(text, "  policy:    {}", describe_policy(spec));
    let secret_name = spec.secret_name.as_deref().unwrap_or(name);
    let _ = writeln!(text, "  publishes: Secret {namespace}/{secret_name}");
    if let Some(consumers) = &spec.consumers {
        let names: Vec<String> = consumers
            .restart
            .iter()
            .map(|workload| format!("{:?}/{}", workload.kind, workload.name))
            .collect();
        let discovery = if consumers.auto_discover {
            " and every workload that references the Secret"
        } else {
            ""
        };
        let _ = writeln!(
            text,
            "  restarts:  {}{discovery}",
            if names.is_empty() {
                "-".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    if let Some(access) = &spec.access {
        let accounts: Vec<&str> = access
            .service_accounts
            .iter()
            .map(|account| account.0.as_str())
            .collect();
        let _ = writeln!(
            text,
            "  readers:   service accounts {}",
            accounts.join(", ")
        );
    }
    let _ = writeln!(
        text,
        "  simulated timeline from {} (every step succeeds at once; no cluster or backend contacted):",
        now.format("%Y-%m-%d %H:%M:%SZ")
    );
    let uid = format!("{namespace}/{name}");
    match simulate(&uid, &validated, now, rotations) {
        Ok(lines) => text.push_str(&lines),
        Err(problem) => {
            let _ = writeln!(text, "    simulation stopped: {problem}");
        }
    }
    Ok(text)
}

/// Drives the lifecycle core from an empty status, jumping the clock to each requeue time, and
/// reports every completed rotation.
fn simulate(
    uid: &str,
    validated: &ValidatedSpec,
    start: DateTime<Utc>,
    rotations: u32,
) -> Result<String, String> {
    let mut state = RotationState::default();
    let mut now = start;
    let mut lines = String::new();
    let mut completed = 0u32;
    for _ in 0..MAX_SIMULATED_STEPS {
        let observation = Observation {
            uid,
            generation: Some(1),
            policy: &validated.policy,
            state: &state,
            now,
            manual_request: None,
        };
        let decision = plan(&observation);
        match decision.action {
            Action::Run { rotation_id, step } => {
                let started = decision.state.clone();
                let credential =
                    (step == keyturn_core::machine::Step::Stage).then(|| CredentialRef {
                        id: format!("simulated-{}", started.revision + 1),
                        fingerprint: "simulated".to_owned(),
                        issued_at: now,
                        expires_at: validated
                            .policy
                            .ttl
                            .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
                            .map(|ttl| now + ttl),
                    });
                let observation = Observation {
                    state: &started,
                    ..observation
                };
                let after = record_outcome(
                    &observation,
                    &rotation_id,
                    step,
                    StepOutcome::Succeeded { credential },
                );
                if after.state.revision > started.revision {
                    completed += 1;
                    let reason = started
                        .in_flight
                        .as_ref()
                        .map(|in_flight| in_flight.reason.as_str())
                        .unwrap_or("-");
                    let expires = after
                        .state
                        .expires_at
                        .map(|at| at.format("%Y-%m-%d %H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "never (no expiry.ttl)".to_owned());
                    let _ = writeln!(
                        lines,
                        "    #{completed}  {}  {reason:<18} id {rotation_id}  new credential expires {expires}",
                        now.format("%Y-%m-%d %H:%M:%SZ"),
                    );
                    if completed >= rotations {
                        return Ok(lines);
                    }
                }
                state = after.state;
            }
            Action::Wait => {
                state = decision.state;
                match decision.requeue_at {
                    Some(at) if at > now => now = at,
                    Some(at) => {
                        return Err(format!(
                            "the core asked to look again at {at}, which is not after {now}"
                        ));
                    }
                    None => return Err("nothing further is scheduled".to_owned()),
                }
            }
        }
    }
    Err(format!(
        "no rotation completed within {MAX_SIMULATED_STEPS} simulated steps"
    ))
}

fn describe_rotator(managed_secret: &ManagedSecret, validated: &ValidatedSpec) -> String {
    let rotator = &managed_secret.spec.rotator;
    if let Some(postgres) = &rotator.postgres {
        let roles = match postgres.strategy {
            PostgresStrategy::AlternatingUsers => format!(
                "AlternatingUsers between roles {} and {}",
                postgres.role,
                postgres
                    .alternate_role
                    .clone()
                    .unwrap_or_else(|| format!("{}_alt", postgres.role))
            ),
            PostgresStrategy::SingleUser => format!("SingleUser role {}", postgres.role),
        };
        return format!(
            "postgres {}:{}/{} ({roles})",
            postgres.host, postgres.port, postgres.database
        );
    }
    if let Some(vault) = &rotator.vault {
        let target = match (&vault.database_static_role, &vault.kv) {
            (Some(role), _) => format!("database static role {}/{}", role.mount, role.role),
            (None, Some(kv)) => format!("KV v2 secret {}/{}", kv.mount, kv.path),
            (None, None) => "-".to_owned(),
        };
        return format!("vault {} ({target})", vault.address);
    }
    if let Some(aws) = &rotator.aws_secrets_manager {
        return format!(
            "awsSecretsManager {} in {} ({:?} mode)",
            aws.secret_id, aws.region, aws.mode
        );
    }
    if let Some(custom) = &rotator.custom {
        let secrets: Vec<&str> = custom.secret_refs.keys().map(String::as_str).collect();
        return format!(
            "custom driver {} (parameters: {}; secrets: {}); the operator must be a build that registered it",
            custom.driver,
            custom.parameters.len(),
            if secrets.is_empty() {
                "none".to_owned()
            } else {
                secrets.join(", ")
            }
        );
    }
    validated.rotator.to_string()
}

fn describe_policy(spec: &keyturn_crds::ManagedSecretSpec) -> String {
    let rotation = &spec.rotation;
    let mut parts = Vec::new();
    if let Some(every) = &rotation.every {
        parts.push(format!("every {every}"));
    }
    if let Some(schedule) = &rotation.schedule {
        parts.push(format!(
            "cron \"{schedule}\" in {} within a {} window",
            rotation.time_zone.as_deref().unwrap_or("UTC"),
            rotation.window.as_deref().unwrap_or("1h")
        ));
    }
    if let Some(before) = &rotation.rotate_before {
        parts.push(format!("at the latest {before} before expiry"));
    }
    if let Some(percent) = rotation.rotate_before_percent {
        parts.push(format!(
            "at the latest when {percent}% of the lifetime remains"
        ));
    }
    if let Some(ttl) = spec.expiry.as_ref().and_then(|expiry| expiry.ttl.as_ref()) {
        parts.push(format!("credentials live {ttl}"));
    }
    if rotation.paused {
        parts.push("PAUSED".to_owned());
    }
    parts.join("; ")
}
