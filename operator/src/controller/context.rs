//! What every reconcile shares: the Kubernetes client, the rotator registry, the audit sink,
//! metrics, the one event recorder, and the test-only crash point.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keyturn_rotators::RotatorRegistry;
use kube::Client;
use kube::api::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::events::{Recorder, Reporter};

use super::audit_sink::AuditSink;
use super::crash::CrashPoint;
use crate::consumers::RestartBatcher;
use crate::metrics::Metrics;
use crate::reads::summary::ReadSummaries;

/// The name of the controller in Events, field managers and audit records.
pub const CONTROLLER_NAME: &str = "keyturn-operator";

pub struct Context {
    pub client: Client,
    /// The ManagedSecret resource (watched untyped, see `object.rs`).
    pub resource: ApiResource,
    pub registry: RotatorRegistry,
    pub audit: AuditSink,
    pub metrics: Arc<Metrics>,
    /// One recorder for every object, so repeated events become a series instead of new objects.
    pub recorder: Recorder,
    /// Who acts, in audit records: the operator and this replica's identity.
    pub actor: String,
    pub crash_point: Option<CrashPoint>,
    /// Shared by every reconcile so one workload used by several ManagedSecrets restarts once
    /// per batch.
    pub restarter: RestartBatcher,
    /// Consecutive reconcile errors (API failures, not step failures) per object uid, for the
    /// error policy's backoff.
    pub error_counts: Mutex<HashMap<String, u32>>,
    /// Read summaries from the audit webhook's records; `None` while the webhook is disabled
    /// (then status has no `reads` and no `UnexpectedReader` condition is set).
    pub reads: Option<Arc<ReadSummaries>>,
}

impl Context {
    /// A context for the cluster `client` talks to; `identity` names this replica in Events
    /// and audit records.
    pub fn new(
        client: Client,
        registry: RotatorRegistry,
        audit: AuditSink,
        metrics: Arc<Metrics>,
        identity: &str,
        crash_point: Option<CrashPoint>,
    ) -> Context {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: Some(identity.to_owned()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            resource: Context::managed_secret_resource(),
            registry,
            audit,
            metrics,
            actor: format!("{CONTROLLER_NAME}/{identity}"),
            crash_point,
            restarter: RestartBatcher::default(),
            error_counts: Mutex::new(HashMap::new()),
            reads: None,
        }
    }

    /// The same context with reads summaries, so reconciles write `status.reads`.
    pub fn with_reads(mut self, reads: Arc<ReadSummaries>) -> Context {
        self.reads = Some(reads);
        self
    }

    pub fn managed_secret_resource() -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("keyturn.dev", "v1alpha1", "ManagedSecret"),
            "managedsecrets",
        )
    }

    pub fn note_error(&self, uid: &str) -> u32 {
        let mut counts = self
            .error_counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(uid.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    pub fn clear_errors(&self, uid: &str) {
        let mut counts = self
            .error_counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.remove(uid);
    }
}
