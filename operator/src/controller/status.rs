//! Writes a ManagedSecret's status by server-side apply under the controller's field manager,
//! only when it differs from what is stored, and with the object's resourceVersion as a
//! precondition so a replica working from a stale copy cannot overwrite newer progress.

use keyturn_crds::ManagedSecretStatus;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use super::context::Context;
use super::object::ManagedSecretObject;
use super::secrets::FIELD_MANAGER;

/// The status as stored plus the resourceVersion to write against.
pub struct StatusWriter<'a> {
    context: &'a Context,
    object: &'a ManagedSecretObject,
    stored: ManagedSecretStatus,
    resource_version: Option<String>,
    pub writes: u32,
}

impl<'a> StatusWriter<'a> {
    pub fn new(context: &'a Context, object: &'a ManagedSecretObject) -> StatusWriter<'a> {
        StatusWriter {
            context,
            object,
            stored: object.status.clone(),
            resource_version: object.resource_version.clone(),
            writes: 0,
        }
    }

    pub fn stored(&self) -> &ManagedSecretStatus {
        &self.stored
    }

    /// Applies `desired` unless it equals the stored status. Returns whether it wrote.
    pub async fn write(&mut self, desired: &ManagedSecretStatus) -> Result<bool, kube::Error> {
        if *desired == self.stored && self.object.status_unreadable.is_none() {
            return Ok(false);
        }
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.context.client.clone(),
            &self.object.namespace,
            &self.context.resource,
        );
        let mut metadata = json!({"name": self.object.name});
        if let Some(resource_version) = &self.resource_version {
            metadata["resourceVersion"] = json!(resource_version);
        }
        let patch = json!({
            "apiVersion": self.object.api_version,
            "kind": self.object.kind,
            "metadata": metadata,
            "status": desired,
        });
        let written = api
            .patch_status(
                &self.object.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.resource_version = written.metadata.resource_version;
        self.stored = desired.clone();
        self.writes += 1;
        Ok(true)
    }
}
