//! The dry-run preview shown in `status.preview`: what the next rotation will change, worked
//! out from the spec and the persisted state alone, without touching any backend.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyturn_core::conditions::timestamp;
use keyturn_core::due::DueReason;
use keyturn_core::state::RotationState;
use keyturn_crds::{AwsRotationMode, ManagedSecretSpec, PostgresStrategy, RotationPreview};

/// The preview for a rotation due at `due` (absent while paused or never due).
pub fn preview(
    spec: &ManagedSecretSpec,
    state: &RotationState,
    due: Option<(DateTime<Utc>, DueReason)>,
    ttl: Option<Duration>,
    secret_name: &str,
) -> RotationPreview {
    let mut changes = Vec::new();
    let valid_until = |from: DateTime<Utc>| {
        ttl.and_then(|ttl| chrono::Duration::from_std(ttl).ok())
            .map(|ttl| timestamp(from + ttl))
    };
    let current = state.current.as_ref().map(|current| current.id.as_str());
    let rotator = &spec.rotator;
    let mut retired = None;
    if let Some(postgres) = &rotator.postgres {
        let alternate = postgres
            .alternate_role
            .clone()
            .unwrap_or_else(|| format!("{}_alt", postgres.role));
        let target = match postgres.strategy {
            PostgresStrategy::SingleUser => postgres.role.clone(),
            PostgresStrategy::AlternatingUsers => match current {
                Some(id) if id == postgres.role => alternate,
                Some(_) => postgres.role.clone(),
                None => postgres.role.clone(),
            },
        };
        let until = due
            .and_then(|(at, _)| valid_until(at))
            .map_or_else(String::new, |until| format!(", VALID UNTIL about {until}"));
        changes.push(format!(
            "PostgreSQL {}:{}/{}: role {target} gets a new password (SCRAM verifier computed by keyturn){until}",
            postgres.host, postgres.port, postgres.database
        ));
        retired = match (postgres.strategy, current) {
            (PostgresStrategy::AlternatingUsers, Some(id)) if id != target => Some(format!(
                "role {id} loses its login (NOLOGIN) once every consumer runs with the new password"
            )),
            (PostgresStrategy::SingleUser, Some(_)) => Some(format!(
                "the previous password of role {target} stops working as soon as the new one is set (SingleUser)"
            )),
            _ => None,
        };
    } else if let Some(vault) = &rotator.vault {
        if let Some(role) = &vault.database_static_role {
            changes.push(format!(
                "Vault {}: static role {} at mount {} is rotated (Vault issues the password)",
                vault.address, role.role, role.mount
            ));
        }
        if let Some(kv) = &vault.kv {
            changes.push(format!(
                "Vault {}: a new version of KV v2 secret {}/{} holds a generated password",
                vault.address, kv.mount, kv.path
            ));
            retired = Some("the previous KV version is soft-deleted after the rollout".into());
        }
    } else if let Some(aws) = &rotator.aws_secrets_manager {
        changes.push(match aws.mode {
            AwsRotationMode::Managed => format!(
                "AWS Secrets Manager {} ({}): a new version is staged as AWSPENDING, tested, then made AWSCURRENT",
                aws.secret_id, aws.region
            ),
            AwsRotationMode::Native => format!(
                "AWS Secrets Manager {} ({}): RotateSecret runs the secret's own rotation Lambda",
                aws.secret_id, aws.region
            ),
        });
    } else if let Some(custom) = &rotator.custom {
        changes.push(format!("driver {} issues a new credential", custom.driver));
    }
    changes.push(format!(
        "Secret {secret_name}: keys username and password are replaced with the new credential"
    ));
    if let Some(consumers) = &spec.consumers {
        for workload in &consumers.restart {
            changes.push(format!(
                "{:?} {} is restarted and its rollout awaited",
                workload.kind, workload.name
            ));
        }
        if consumers.auto_discover {
            changes.push(format!(
                "workloads in the namespace that reference Secret {secret_name} are restarted and awaited"
            ));
        }
    }
    if let Some(retired) = retired {
        changes.push(retired);
    }
    RotationPreview {
        due_at: due.map(|(at, _)| at),
        reason: due.map(|(_, reason)| reason.as_str().to_owned()),
        changes,
    }
}
