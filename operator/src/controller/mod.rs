//! The ManagedSecret controller: watches ManagedSecrets and, metadata-only, the Secrets keyturn
//! owns; runs each reconcile behind the finalizer that lets cleanup happen on delete.

pub mod audit_sink;
pub mod cleanup;
pub mod consumers;
pub mod context;
pub mod crash;
pub mod error;
pub mod events;
pub mod object;
pub mod preview;
pub mod reads;
pub mod reconcile;
pub mod resource;
pub mod secrets;
pub mod status;
pub mod steps;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::{WatchStreamExt, reflector, watcher};

pub use context::Context;
use error::ReconcileError;
use object::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, ManagedSecretObject};
use resource::ManagedSecretResource;

/// Removed only after cleanup has run.
pub const FINALIZER: &str = "keyturn.dev/cleanup";

/// Runs the controller until `shutdown` resolves; reconciles already running are allowed to
/// finish their current step (each step is idempotent, so one cut short by a kill is resumed).
pub async fn run(
    context: Arc<Context>,
    watch_namespace: Option<&str>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    run_with_triggers(
        context,
        watch_namespace,
        concurrency,
        futures_util::stream::pending(),
        shutdown,
    )
    .await;
}

/// [`run`], also reconciling every ManagedSecret `triggers` names (the reads summary names
/// those whose `status.reads` changed).
pub async fn run_with_triggers(
    context: Arc<Context>,
    watch_namespace: Option<&str>,
    concurrency: u16,
    triggers: impl futures_util::Stream<Item = reflector::ObjectRef<ManagedSecretResource>>
    + Send
    + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let (managed_secrets, secrets): (Api<ManagedSecretResource>, Api<PartialObjectMeta<Secret>>) =
        match watch_namespace {
            Some(namespace) => (
                Api::namespaced(client.clone(), namespace),
                Api::namespaced(client.clone(), namespace),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    // Only Secrets keyturn labelled, and only their metadata: Secret data never enters the cache.
    let owned_secrets = watcher(
        secrets,
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
    )
    .default_backoff()
    .touched_objects();
    // The cache holds slimmed objects (see resource.rs): no managed fields, raw spec and status.
    let (reader, writer) = reflector::store();
    let managed_secret_events = watcher(managed_secrets, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(resource::slim)
        .reflect(writer)
        .touched_objects();
    let rbac = RbacTriggers::new(&client, watch_namespace);
    let (namespaced_index, cluster_index) = (reader.clone(), reader.clone());
    let (role_index, cluster_role_index) = (reader.clone(), reader.clone());
    Controller::for_stream(managed_secret_events, reader)
        .with_config(ControllerConfig::default().concurrency(concurrency.max(1)))
        .trigger_backoff(EachStreamBacksOffAlone)
        .owns_stream(owned_secrets)
        // RBAC changes re-check access (keyturn's own bindings and drift) of the ManagedSecrets
        // they can affect: a namespace's, or every one for cluster-wide objects.
        .watches_stream(rbac.role_bindings, move |binding| {
            in_namespace(&namespaced_index, binding.metadata.namespace.as_deref())
        })
        .watches_stream(rbac.roles, move |role| {
            in_namespace(&role_index, role.metadata.namespace.as_deref())
        })
        .watches_stream(rbac.cluster_role_bindings, move |_| {
            in_namespace(&cluster_index, None)
        })
        .watches_stream(rbac.cluster_roles, move |_| {
            in_namespace(&cluster_role_index, None)
        })
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(object = %object.name, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(error, object)) => {
                    tracing::warn!(managed_secret = %format!("{}/{}", object.namespace.unwrap_or_default(), object.name), %error, "reconcile failed");
                }
                Err(error) => tracing::warn!(%error, "controller"),
            }
        })
        .await;
}

/// The controller's backoff over its merged trigger streams: none. Every watch above already
/// backs off on its own (`default_backoff`); kube-runtime's default would add one shared,
/// growing backoff over all of them, so after a compacted history each stream's single 410
/// stretched the next stream's recovery (six watches: about 50 s before the ManagedSecret
/// watch listed again, and no rotation ran meanwhile).
struct EachStreamBacksOffAlone;

impl Iterator for EachStreamBacksOffAlone {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        Some(std::time::Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for EachStreamBacksOffAlone {
    fn reset(&mut self) {}
}

/// Metadata-only watches of the RBAC objects access depends on; only that they changed
/// matters, the reconcile lists what it judges.
struct RbacTriggers {
    role_bindings: Trigger<RoleBinding>,
    roles: Trigger<Role>,
    cluster_role_bindings: Trigger<ClusterRoleBinding>,
    cluster_roles: Trigger<ClusterRole>,
}

type Trigger<K> = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send>,
>;

impl RbacTriggers {
    fn new(client: &kube::Client, watch_namespace: Option<&str>) -> RbacTriggers {
        fn trigger<K>(api: Api<PartialObjectMeta<K>>) -> Trigger<K>
        where
            K: kube::Resource
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + Sync
                + 'static,
            K::DynamicType: Default,
        {
            Box::pin(
                watcher(api, watcher::Config::default())
                    .default_backoff()
                    .touched_objects(),
            )
        }
        let (role_bindings, roles) = match watch_namespace {
            Some(namespace) => (
                Api::namespaced(client.clone(), namespace),
                Api::namespaced(client.clone(), namespace),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        // A namespace-scoped operator may not watch cluster-wide RBAC (its install has no
        // ClusterRole); those triggers then never fire, and status.access says drift through
        // ClusterRoleBindings is unchecked.
        let cluster_wide = watch_namespace.is_none();
        RbacTriggers {
            role_bindings: trigger::<RoleBinding>(role_bindings),
            roles: trigger::<Role>(roles),
            cluster_role_bindings: match cluster_wide {
                true => trigger::<ClusterRoleBinding>(Api::all(client.clone())),
                false => Box::pin(futures_util::stream::empty()),
            },
            cluster_roles: match cluster_wide {
                true => trigger::<ClusterRole>(Api::all(client.clone())),
                false => Box::pin(futures_util::stream::empty()),
            },
        }
    }
}

/// The cached ManagedSecrets of `namespace`, or all of them for `None`.
fn in_namespace(
    index: &reflector::Store<ManagedSecretResource>,
    namespace: Option<&str>,
) -> Vec<reflector::ObjectRef<ManagedSecretResource>> {
    index
        .state()
        .iter()
        .filter(|object| namespace.is_none() || object.metadata.namespace.as_deref() == namespace)
        .map(|object| reflector::ObjectRef::from_obj(object.as_ref()))
        .collect()
}

async fn reconcile(
    object: Arc<ManagedSecretResource>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let api: Api<ManagedSecretResource> = Api::namespaced(context.client.clone(), &namespace);
    let deleting_since = object
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|time| chrono::DateTime::from_timestamp(time.0.as_second(), 0));
    let key = format!(
        "{namespace}/{}",
        object.metadata.name.clone().unwrap_or_default()
    );
    let result = finalizer(&api, FINALIZER, object, |event| async {
        match event {
            FinalizerEvent::Apply(object) => {
                let parsed = ManagedSecretObject::from_resource(&object)?;
                reconcile::apply(&parsed, &context).await
            }
            FinalizerEvent::Cleanup(object) => {
                let parsed = ManagedSecretObject::from_resource(&object)?;
                cleanup::cleanup(&parsed, &context, deleting_since).await
            }
        }
    })
    .await
    .map_err(|error| match error {
        kube::runtime::finalizer::Error::ApplyFailed(error)
        | kube::runtime::finalizer::Error::CleanupFailed(error) => error,
        other => ReconcileError::Finalizer {
            object: key.clone(),
            message: other.to_string(),
        },
    });
    context
        .metrics
        .observe_reconcile(started.elapsed(), result.is_ok());
    result
}

/// API failures (not step failures, which the lifecycle core backs off itself): retry soon,
/// then less often, per object.
fn error_policy(
    object: Arc<ManagedSecretResource>,
    error: &ReconcileError,
    context: Arc<Context>,
) -> Action {
    let uid = object.metadata.uid.clone().unwrap_or_default();
    let attempts = context.note_error(&uid);
    context.metrics.reconcile_failed(error.category());
    let delay = Duration::from_millis(500u64.saturating_mul(1 << attempts.min(8)))
        .min(Duration::from_secs(120));
    Action::requeue(delay)
}
