//! KV v2 secrets: the credential id is the version number the value is (or will be) stored as.
//! Writes use check-and-set on the version before it, so a retry after a crash finds its own
//! value and a concurrent writer is reported, never overwritten.

use serde_json::{Map, Value};
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequestOptions};
use vaultrs::api::kv2::responses::ReadSecretResponse;
use vaultrs::error::ClientError;

use super::connection::{Connection, Session};
use super::{KV_PASSWORD_KEY, KV_USERNAME_KEY};
use crate::credential::{Credential, CredentialId, generate_password};
use crate::error::{ErrorCategory, RotatorError};

fn is_not_found(error: &ClientError) -> bool {
    match error {
        ClientError::APIError { code: 404, .. } => true,
        ClientError::RestClientError { source } => {
            matches!(
                source,
                rustify::errors::ClientError::ServerResponseError { code: 404, .. }
            )
        }
        _ => false,
    }
}

/// `current_version` from the metadata; 0 when the secret does not exist yet.
async fn current_version(
    connection: &Connection,
    session: &Session,
    mount: &str,
    path: &str,
) -> Result<u64, RotatorError> {
    match vaultrs::kv2::read_metadata(&session.client, mount, path).await {
        Ok(metadata) => Ok(metadata.current_version),
        Err(error) if is_not_found(&error) => Ok(0),
        Err(error) => Err(connection.error(&error, &format!("read {mount}/metadata/{path}"), &[])),
    }
}

/// The data of `version` (latest when `None`) and its version number; `None` when it does not
/// exist or is deleted or destroyed.
async fn read(
    connection: &Connection,
    session: &Session,
    mount: &str,
    path: &str,
    version: Option<u64>,
    extra_secrets: &[&str],
) -> Result<Option<(Map<String, Value>, u64)>, RotatorError> {
    let operation = match version {
        Some(version) => format!("read version {version} of {mount}/data/{path}"),
        None => format!("read {mount}/data/{path}"),
    };
    let endpoint = ReadSecretRequest::builder()
        .mount(mount)
        .path(path)
        .version(version)
        .build()
        .map_err(|_| {
            RotatorError::new(
                ErrorCategory::Misconfigured,
                &operation,
                "cannot build the request",
            )
        })?;
    let response: ReadSecretResponse =
        match vaultrs::api::exec_with_result(&session.client, endpoint).await {
            Ok(response) => response,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(connection.error(&error, &operation, extra_secrets)),
        };
    match response.data {
        Value::Object(data) => Ok(Some((data, response.metadata.version))),
        // A deleted version reads as `data: null` where Vault answers 200.
        _ => Ok(None),
    }
}

fn password_of(data: &Map<String, Value>) -> Option<&str> {
    data.get(KV_PASSWORD_KEY).and_then(Value::as_str)
}

fn parse_version(id: &CredentialId, operation: &str) -> Result<u64, RotatorError> {
    id.0.parse::<u64>()
        .ok()
        .filter(|version| *version > 0)
        .ok_or_else(|| {
            RotatorError::new(
                ErrorCategory::Misconfigured,
                operation,
                format!("credential id {id:?} is not a KV version number"),
            )
        })
}

/// Generates the next value; writes nothing.
pub(crate) async fn create(
    connection: &Connection,
    session: &Session,
    mount: &str,
    path: &str,
    password_length: usize,
) -> Result<Credential, RotatorError> {
    let current = current_version(connection, session, mount, path).await?;
    // A username stored next to the password (by whoever set the secret up) is kept.
    let username = match current {
        0 => None,
        _ => read(connection, session, mount, path, None, &[])
            .await?
            .and_then(|(data, _)| {
                data.get(KV_USERNAME_KEY)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }),
    };
    Ok(Credential {
        id: CredentialId((current + 1).to_string()),
        username,
        password: generate_password(password_length),
        expires_at: None,
    })
}

/// Writes `pending` as version `pending.id` with check-and-set on the version before it.
pub(crate) async fn set(
    connection: &Connection,
    session: &Session,
    mount: &str,
    path: &str,
    pending: &Credential,
) -> Result<(), RotatorError> {
    let operation = format!("write {mount}/data/{path}");
    let current = current_version(connection, session, mount, path).await?;
    let version = parse_version(&pending.id, &operation)?;
    if current >= version {
        // Written before (a retry), or someone else took the version.
        return confirm_own_write(connection, session, mount, path, pending, version).await;
    }
    let mut data = match version {
        1 => Map::new(),
        _ => read(
            connection,
            session,
            mount,
            path,
            Some(version - 1),
            &[pending.password.expose()],
        )
        .await?
        .map(|(data, _)| data)
        .unwrap_or_default(),
    };
    data.insert(
        KV_PASSWORD_KEY.to_owned(),
        Value::String(pending.password.expose().to_owned()),
    );
    if let Some(username) = &pending.username {
        data.insert(KV_USERNAME_KEY.to_owned(), Value::String(username.clone()));
    }
    let cas = u32::try_from(version - 1).map_err(|_| {
        RotatorError::new(
            ErrorCategory::Misconfigured,
            &operation,
            "the version number exceeds check-and-set's range",
        )
    })?;
    let options = SetSecretRequestOptions { cas };
    match vaultrs::kv2::set_with_options(
        &session.client,
        mount,
        path,
        &Value::Object(data),
        options,
    )
    .await
    {
        Ok(written) if written.version == version => Ok(()),
        Ok(written) => Err(conflict(
            &operation,
            version,
            &format!("Vault stored it as version {}", written.version),
        )),
        // Check-and-set refused: another write landed first, maybe our own lost answer.
        Err(ClientError::APIError { code: 400, errors })
            if errors.iter().any(|e| e.contains("check-and-set")) =>
        {
            confirm_own_write(connection, session, mount, path, pending, version).await
        }
        Err(error) => Err(connection.error(&error, &operation, &[pending.password.expose()])),
    }
}

async fn confirm_own_write(
    connection: &Connection,
    session: &Session,
    mount: &str,
    path: &str,
    pending: &Credential,
    version: u64,
) -> Result<(), RotatorError> {
    let operation = format!("write {mount}/data/{path}");
    match read(
        connection,
        session,
        mount,
        path,
        Some(version),
        &[pending.password.expose()],
    )
    .await?
    {
        Some((data, _)) if password_of(&data) == Some(pending.password.expose()) => Ok(()),
        Some(_) => Err(conflict(&operation, version, "it holds another value")),
        None => Err(conflict(
            &operation,
            version,
            "it exists no longer or was never written by keyturn",
        )),
    }
}

fn conflict(operation: &str, version: u64, what: &str) -> RotatorError {
    RotatorError::new(
        ErrorCategory::Misconfigured,
        operation,
        format!(
            "another writer changed the secret since keyturn staged version {version} ({what}); \
             start a new rotation and make keyturn the only writer of this path"
        ),
    )
}

/// The latest readable version is the staged one and holds its value.
pub(crate) async fn test(
    connection: &Connection,
    session: &Session,
    mount: &str,
    path: &str,
    pending: &Credential,
) -> Result<(), RotatorError> {
    let operation = format!("verify {mount}/data/{path}");
    let version = parse_version(&pending.id, &operation)?;
    let latest = read(
        connection,
        session,
        mount,
        path,
        None,
        &[pending.password.expose()],
    )
    .await?;
    match latest {
        Some((data, latest))
            if latest == version && password_of(&data) == Some(pending.password.expose()) =>
        {
            Ok(())
        }
        Some((_, latest)) if latest > version => Err(conflict(
            &operation,
            version,
            &format!("version {latest} is newer"),
        )),
        Some(_) => Err(RotatorError::new(
            ErrorCategory::VerificationFailed,
            operation,
            format!("the latest version does not hold the value staged as version {version}"),
        )),
        None => Err(RotatorError::new(
            ErrorCategory::VerificationFailed,
            operation,
            "the latest version is missing or deleted",
        )),
    }
}

/// Soft-deletes `previous` (recoverable with `undelete`; never destroyed). Refuses to delete
/// the latest version: that is the credential consumers use.
pub(crate) async fn retire(
    connection: &Connection,
    session: &Session,
    mount: &str,
    path: &str,
    previous: &CredentialId,
) -> Result<(), RotatorError> {
    let operation = format!("delete version {previous} of {mount}/data/{path}");
    let current = current_version(connection, session, mount, path).await?;
    if current == 0 {
        return Ok(());
    }
    let version = parse_version(previous, &operation)?;
    if version >= current {
        return Err(RotatorError::new(
            ErrorCategory::Misconfigured,
            operation,
            format!(
                "version {version} is the latest (current {current}); keyturn retires only previous versions"
            ),
        ));
    }
    match vaultrs::kv2::delete_versions(&session.client, mount, path, vec![version]).await {
        Ok(()) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(connection.error(&error, &operation, &[])),
    }
}
