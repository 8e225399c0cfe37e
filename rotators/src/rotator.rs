//! The rotator trait: the five steps every backend implements. The controller calls them in
//! order, persisting progress in status between calls, so each step may be called again after a
//! crash and must then do nothing new (idempotent, keyed by `RotationContext::rotation_id`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::credential::{Credential, CredentialId};
use crate::error::RotatorError;

/// What every step is told about the rotation it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationContext {
    /// Deterministic id of this rotation (see `keyturn_core::machine::rotation_id`): the same
    /// for every retry, replica and restart. Backends key their writes on it (AWS
    /// `ClientRequestToken`).
    pub rotation_id: String,
    /// When the rotation started, as persisted in status. Lets a step tell whether the backend
    /// already acted for this rotation (e.g. Vault's `last_vault_rotation`).
    pub started_at: DateTime<Utc>,
    /// The expiry the backend should enforce on the new credential (PostgreSQL `VALID UNTIL`).
    pub valid_until: Option<DateTime<Utc>>,
    /// The credential consumers use now; `None` at the first issuance.
    pub current: Option<CredentialId>,
}

/// One backend. The order is create → set → test → finish, then, once every consumer runs with
/// the new credential, retire of the previous one.
///
/// Where the backend lets keyturn choose the value (PostgreSQL, Vault KV, AWS managed mode),
/// `create` only generates it and touches nothing; the controller persists it in a staging
/// Secret before calling `set`, so the new credential is never known only to the backend.
/// Where the backend issues the value itself (Vault database static roles, AWS native
/// rotation), `create` asks for it idempotently (only if the backend has not already rotated
/// for this rotation) and the backend's own record is the write-ahead copy.
#[async_trait]
pub trait Rotator: Send + Sync {
    /// Short backend name, e.g. `postgres`; used in logs, metrics and audit records.
    fn kind(&self) -> &'static str;

    /// Stage: produce the next credential.
    async fn create(&self, context: &RotationContext) -> Result<Credential, RotatorError>;

    /// Apply: make the backend accept `pending` (ALTER ROLE, AWSPENDING, a KV version).
    /// Calling it again with the same credential changes nothing more.
    async fn set(
        &self,
        context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError>;

    /// Verify: prove `pending` works, with a fresh login where the backend has one.
    async fn test(
        &self,
        context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError>;

    /// Publish (backend side): mark `pending` as current (AWSCURRENT). A no-op where the backend
    /// has no such notion.
    async fn finish(
        &self,
        context: &RotationContext,
        pending: &Credential,
    ) -> Result<(), RotatorError>;

    /// RetirePrevious: make `previous` unusable, or leave it to the backend where it manages
    /// versions itself. A credential already gone is success.
    async fn retire(
        &self,
        context: &RotationContext,
        previous: &CredentialId,
    ) -> Result<(), RotatorError>;

    /// Revoke (a ManagedSecret deleted with `deletionPolicy: Revoke`): make `credential`
    /// unusable even if it is the current one. Unlike `retire`, which must leave a credential
    /// shared with the current one alone (SingleUser), this ends it. Defaults to `retire`.
    async fn revoke(
        &self,
        context: &RotationContext,
        credential: &CredentialId,
    ) -> Result<(), RotatorError> {
        self.retire(context, credential).await
    }
}
