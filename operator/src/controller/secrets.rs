//! The Secrets keyturn reads and writes for one ManagedSecret: referenced Secrets (admin
//! credentials, tokens) read on demand and never cached, the staging Secret that holds a new
//! credential before any backend hears of it, and the published Secret consumers read.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keyturn_core::state::CredentialRef;
use keyturn_crds::PublishedSecretType;
use keyturn_rotators::{
    Credential, CredentialId, ErrorCategory, RotatorError, SecretSource, SecretValue,
};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use super::object::ManagedSecretObject;

/// Field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "keyturn/controller";

pub const ROTATION_ID_ANNOTATION: &str = "keyturn.dev/rotation-id";
pub const CREDENTIAL_ID_ANNOTATION: &str = "keyturn.dev/credential-id";
pub const FINGERPRINT_ANNOTATION: &str = "keyturn.dev/fingerprint";
const ISSUED_AT_ANNOTATION: &str = "keyturn.dev/issued-at";
const EXPIRES_AT_ANNOTATION: &str = "keyturn.dev/expires-at";

const USERNAME_KEY: &str = "username";
const PASSWORD_KEY: &str = "password";

/// Reads Secrets of one namespace with a GET each time: keyturn never watches or caches
/// Secrets it does not own.
pub struct KubeSecretSource {
    api: Api<Secret>,
}

impl KubeSecretSource {
    pub fn new(client: Client, namespace: &str) -> KubeSecretSource {
        KubeSecretSource {
            api: Api::namespaced(client, namespace),
        }
    }
}

#[async_trait]
impl SecretSource for KubeSecretSource {
    async fn secret_value(&self, name: &str, key: &str) -> Result<SecretValue, RotatorError> {
        let operation = format!("read key {key} of Secret {name}");
        let secret = self
            .api
            .get_opt(name)
            .await
            .map_err(|error| api_error(&operation, &error))?
            .ok_or_else(|| {
                RotatorError::new(
                    ErrorCategory::NotFound,
                    &operation,
                    format!("Secret {name} does not exist in this namespace; create it or fix the reference"),
                )
            })?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .ok_or_else(|| {
                RotatorError::new(
                    ErrorCategory::NotFound,
                    &operation,
                    format!("Secret {name} has no key {key}; add it or fix the reference"),
                )
            })?;
        let text = String::from_utf8(bytes.0.clone()).map_err(|_| {
            RotatorError::new(
                ErrorCategory::Misconfigured,
                &operation,
                "the value is not UTF-8 text",
            )
        })?;
        Ok(SecretValue::new(text))
    }
}

/// A Kubernetes API failure as a rotator-style error: a step that cannot reach the API is
/// retried like one that cannot reach its backend.
pub fn api_error(operation: &str, error: &kube::Error) -> RotatorError {
    let category = match error {
        kube::Error::Api(status) if status.code == 403 => ErrorCategory::PermissionDenied,
        kube::Error::Api(status) if status.code == 404 => ErrorCategory::NotFound,
        kube::Error::Api(status) if status.code == 429 => ErrorCategory::Throttled,
        _ => ErrorCategory::Unreachable,
    };
    // kube's Display names the status reason and message, never a request body.
    RotatorError::new(category, operation, format!("Kubernetes API: {error}"))
}

/// Reads and writes the two Secrets keyturn owns for a ManagedSecret.
pub struct OwnedSecrets<'a> {
    api: Api<Secret>,
    object: &'a ManagedSecretObject,
}

impl<'a> OwnedSecrets<'a> {
    pub fn new(client: Client, object: &'a ManagedSecretObject) -> OwnedSecrets<'a> {
        OwnedSecrets {
            api: Api::namespaced(client, &object.namespace),
            object,
        }
    }

    /// The credential staged for `rotation_id`, if the staging Secret holds it.
    pub async fn staged(&self, rotation_id: &str) -> Result<Option<Credential>, RotatorError> {
        let name = self.object.staging_secret_name();
        let operation = format!("read staging Secret {name}");
        let Some(secret) = self.owned(&name, &operation).await? else {
            return Ok(None);
        };
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        if annotations.get(ROTATION_ID_ANNOTATION).map(String::as_str) != Some(rotation_id) {
            return Ok(None);
        }
        let data = secret.data.unwrap_or_default();
        let text = |key: &str| {
            data.get(key)
                .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
        };
        let (Some(password), Some(id)) = (
            text(PASSWORD_KEY),
            annotations.get(CREDENTIAL_ID_ANNOTATION),
        ) else {
            return Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                operation,
                "the staging Secret was edited: its password or credential id is missing",
            ));
        };
        Ok(Some(Credential {
            id: CredentialId(id.clone()),
            username: text(USERNAME_KEY),
            password: SecretValue::new(password),
            expires_at: annotations
                .get(EXPIRES_AT_ANNOTATION)
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .map(|time| time.with_timezone(&Utc)),
        }))
    }

    /// Writes the new credential to the staging Secret: the write-ahead copy that makes the
    /// credential survive a crash before the backend is told about it.
    pub async fn stage(
        &self,
        rotation_id: &str,
        credential: &Credential,
        reference: &CredentialRef,
    ) -> Result<(), RotatorError> {
        let name = self.object.staging_secret_name();
        let operation = format!("write staging Secret {name}");
        self.owned(&name, &operation).await?;
        let mut annotations = BTreeMap::from([
            (ROTATION_ID_ANNOTATION.to_owned(), rotation_id.to_owned()),
            (CREDENTIAL_ID_ANNOTATION.to_owned(), credential.id.0.clone()),
            (
                FINGERPRINT_ANNOTATION.to_owned(),
                reference.fingerprint.clone(),
            ),
            (
                ISSUED_AT_ANNOTATION.to_owned(),
                reference.issued_at.to_rfc3339(),
            ),
        ]);
        if let Some(expires_at) = credential.expires_at {
            annotations.insert(EXPIRES_AT_ANNOTATION.to_owned(), expires_at.to_rfc3339());
        }
        let secret = self.secret(name.clone(), "staging", annotations, "Opaque", credential);
        self.apply(&name, &secret, &operation).await
    }

    /// Fails when the Secret consumers read exists and keyturn may not write it. Checked at
    /// Stage, before any backend hears of a new credential: finding out at Publish would be
    /// after the backend password changed (for SingleUser, a live consumer locked out).
    pub async fn ensure_publishable(&self) -> Result<(), RotatorError> {
        let name = self.object.published_secret_name();
        let operation = format!("check that Secret {name} may be published to");
        self.owned(&name, &operation).await.map(|_| ())
    }

    /// Writes the credential consumers read. Skips the write when the Secret already holds
    /// exactly this credential (a step replayed after a crash).
    pub async fn publish(
        &self,
        rotation_id: &str,
        credential: &Credential,
        reference: &CredentialRef,
        secret_type: PublishedSecretType,
    ) -> Result<(), RotatorError> {
        let name = self.object.published_secret_name();
        let operation = format!("publish the credential to Secret {name}");
        if let Some(existing) = self.owned(&name, &operation).await? {
            let annotations = existing.metadata.annotations.clone().unwrap_or_default();
            if annotations.get(FINGERPRINT_ANNOTATION) == Some(&reference.fingerprint)
                && existing
                    .data
                    .as_ref()
                    .and_then(|data| data.get(PASSWORD_KEY))
                    == Some(&ByteString(
                        credential.password.expose().as_bytes().to_vec(),
                    ))
            {
                return Ok(());
            }
        }
        let annotations = BTreeMap::from([
            (ROTATION_ID_ANNOTATION.to_owned(), rotation_id.to_owned()),
            (CREDENTIAL_ID_ANNOTATION.to_owned(), credential.id.0.clone()),
            (
                FINGERPRINT_ANNOTATION.to_owned(),
                reference.fingerprint.clone(),
            ),
        ]);
        let type_ = match secret_type {
            PublishedSecretType::Opaque => "Opaque",
            PublishedSecretType::BasicAuth => "kubernetes.io/basic-auth",
        };
        let secret = self.secret(name.clone(), "published", annotations, type_, credential);
        self.apply(&name, &secret, &operation).await
    }

    /// Deletes the staging Secret (cleanup on delete: it may hold the current credential).
    pub async fn delete_staging(&self) -> Result<(), RotatorError> {
        let name = self.object.staging_secret_name();
        match self.api.delete(&name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(api_error(&format!("delete staging Secret {name}"), &error)),
        }
    }

    fn secret(
        &self,
        name: String,
        role: &str,
        annotations: BTreeMap<String, String>,
        type_: &str,
        credential: &Credential,
    ) -> Secret {
        let mut data = BTreeMap::from([(
            PASSWORD_KEY.to_owned(),
            ByteString(credential.password.expose().as_bytes().to_vec()),
        )]);
        if let Some(username) = &credential.username {
            data.insert(
                USERNAME_KEY.to_owned(),
                ByteString(username.as_bytes().to_vec()),
            );
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.object.namespace.clone()),
                labels: Some(self.object.owned_labels(role)),
                annotations: Some(annotations),
                owner_references: Some(vec![self.object.owner_reference()]),
                ..ObjectMeta::default()
            },
            type_: Some(type_.to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }

    async fn apply(
        &self,
        name: &str,
        secret: &Secret,
        operation: &str,
    ) -> Result<(), RotatorError> {
        let mut object = serde_json::to_value(secret).map_err(|error| {
            RotatorError::new(
                ErrorCategory::Backend,
                operation,
                format!("encoding the Secret: {error}"),
            )
        })?;
        object["apiVersion"] = "v1".into();
        object["kind"] = "Secret".into();
        self.api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .map(|_| ())
            .map_err(|error| api_error(operation, &error))
    }

    /// Secret `name` if it exists, after checking that keyturn controls it: every read and
    /// write of an owned Secret goes through here.
    async fn owned(&self, name: &str, operation: &str) -> Result<Option<Secret>, RotatorError> {
        let existing = self
            .api
            .get_opt(name)
            .await
            .map_err(|error| api_error(operation, &error))?;
        if let Some(secret) = &existing {
            self.check_owned(secret, name, operation)?;
        }
        Ok(existing)
    }

    /// Refuses to overwrite a Secret that another owner (or nobody) controls: keyturn never
    /// takes over a Secret someone else created.
    fn check_owned(
        &self,
        secret: &Secret,
        name: &str,
        operation: &str,
    ) -> Result<(), RotatorError> {
        let controller = secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true));
        match controller {
            Some(owner) if owner.uid == self.object.uid => Ok(()),
            Some(owner) => Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                operation,
                format!(
                    "Secret {name} is controlled by {} {}; set spec.secretName to a Secret keyturn may own",
                    owner.kind, owner.name
                ),
            )),
            None => Err(RotatorError::new(
                ErrorCategory::Misconfigured,
                operation,
                format!(
                    "Secret {name} already exists and keyturn did not create it; delete it or set spec.secretName to another name"
                ),
            )),
        }
    }
}
