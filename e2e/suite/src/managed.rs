//! Reading ManagedSecrets the way tests need: the status of one, and waiting until it has
//! completed a given revision with nothing in flight.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::wait::wait_for;

/// `apiVersion` of ManagedSecrets.
pub const MANAGED_SECRET_API_VERSION: &str = "keyturn.dev/v1alpha1";

impl Cluster {
    /// The `status` of ManagedSecret `name`, or `null` when it (or its status) does not exist.
    pub async fn managed_secret_status(&self, namespace: &str, name: &str) -> Value {
        self.get(namespace, MANAGED_SECRET_API_VERSION, "ManagedSecret", name)
            .await
            .map(|object| object["status"].clone())
            .unwrap_or(Value::Null)
    }

    /// Waits until ManagedSecret `name` has completed rotation `revision` (or a later one when
    /// `exactly` is false) and has nothing in flight; returns its status.
    pub async fn wait_for_revision(
        &self,
        namespace: &str,
        name: &str,
        revision: u64,
        exactly: bool,
        timeout: Duration,
    ) -> Value {
        wait_for(
            &format!("{name} settled at revision {revision}"),
            timeout,
            async || {
                let status = self.managed_secret_status(namespace, name).await;
                let reached = status["revision"].as_u64().is_some_and(|current| {
                    if exactly {
                        current == revision
                    } else {
                        current >= revision
                    }
                });
                if reached && status["inFlight"].is_null() {
                    Ok(status)
                } else {
                    Err(status)
                }
            },
        )
        .await
    }
}
