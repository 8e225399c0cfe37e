//! Database secrets engine static roles: `rotate-role` at most once per rotation (guarded by
//! `last_vault_rotation >= started_at`), `static-creds` as the source of truth.

use chrono::{DateTime, Utc};
use vaultrs::api::database::responses::GetStaticCredentialsResponse;

use super::connection::{Connection, Session};
use crate::credential::{Credential, CredentialId, SecretValue};
use crate::error::{ErrorCategory, RotatorError};
use crate::rotator::RotationContext;

/// Which step checks Vault's value, for the error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Set,
    Test,
}

struct StaticCreds {
    username: String,
    password: SecretValue,
    rotated_at: DateTime<Utc>,
    /// As Vault wrote it: part of the credential id.
    rotated_at_text: String,
    ttl_seconds: u64,
}

impl StaticCreds {
    fn credential(&self, role: &str) -> Credential {
        Credential {
            id: credential_id(role, &self.rotated_at_text),
            username: Some(self.username.clone()),
            password: self.password.clone(),
            // Vault rotates the password itself after rotation_period; ttl counts down to it.
            expires_at: (self.ttl_seconds > 0).then(|| {
                Utc::now()
                    + chrono::Duration::seconds(
                        i64::try_from(self.ttl_seconds).unwrap_or(i64::MAX / 2),
                    )
            }),
        }
    }
}

fn credential_id(role: &str, rotated_at: &str) -> CredentialId {
    CredentialId(format!("{role}@{rotated_at}"))
}

async fn read_static_creds(
    connection: &Connection,
    session: &Session,
    mount: &str,
    role: &str,
) -> Result<StaticCreds, RotatorError> {
    let operation = format!("read {mount}/static-creds/{role}");
    let response: GetStaticCredentialsResponse =
        vaultrs::database::static_role::creds(&session.client, mount, role)
            .await
            .map_err(|error| connection.error(&error, &operation, &[]))?;
    let rotated_at = DateTime::parse_from_rfc3339(&response.last_vault_rotation)
        .map_err(|_| {
            RotatorError::new(
                ErrorCategory::Backend,
                &operation,
                format!(
                    "last_vault_rotation {:?} is not an RFC 3339 time",
                    response.last_vault_rotation
                ),
            )
        })?
        .with_timezone(&Utc);
    Ok(StaticCreds {
        username: response.username,
        password: SecretValue::new(response.password),
        rotated_at,
        rotated_at_text: response.last_vault_rotation,
        ttl_seconds: response.ttl,
    })
}

/// Rotates unless Vault already did since the rotation started, then returns Vault's value.
pub(crate) async fn create(
    connection: &Connection,
    session: &Session,
    mount: &str,
    role: &str,
    context: &RotationContext,
) -> Result<Credential, RotatorError> {
    let before = read_static_creds(connection, session, mount, role).await?;
    if before.rotated_at >= context.started_at {
        // A previous attempt of this rotation (or Vault's own schedule) already rotated: that
        // value is this rotation's credential. Rotating again would orphan a value a crashed
        // run may already have staged.
        return Ok(before.credential(role));
    }
    let operation = format!("rotate-role {mount}/rotate-role/{role}");
    vaultrs::database::static_role::rotate(&session.client, mount, role)
        .await
        .map_err(|error| connection.error(&error, &operation, &[]))?;
    let after = read_static_creds(connection, session, mount, role).await?;
    Ok(after.credential(role))
}

/// `set` and `test`: Vault must still hold the staged credential (rotate-role applied it).
pub(crate) async fn check_current(
    connection: &Connection,
    session: &Session,
    mount: &str,
    role: &str,
    pending: &Credential,
    step: Step,
) -> Result<(), RotatorError> {
    let current = read_static_creds(connection, session, mount, role).await?;
    let same_user = pending
        .username
        .as_deref()
        .is_none_or(|username| username == current.username);
    if same_user && current.password == pending.password {
        return Ok(());
    }
    let operation = match step {
        Step::Set => format!("confirm {mount}/static-creds/{role} holds the staged credential"),
        Step::Test => format!("verify {mount}/static-creds/{role} against the staged credential"),
    };
    let current_id = credential_id(role, &current.rotated_at_text);
    let detail = if current_id != pending.id {
        format!(
            "Vault rotated the static role again (now {current_id}, staged {}): its rotation_period or another \
             client rotates it independently; start a new rotation, and set a rotation_period longer than \
             keyturn's schedule",
            pending.id
        )
    } else {
        format!("Vault's credential {current_id} differs from the staged one; start a new rotation")
    };
    Err(RotatorError::new(
        ErrorCategory::Misconfigured,
        operation,
        detail,
    ))
}
