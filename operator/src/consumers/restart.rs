//! Restarting consumers: a server-side apply of the restart annotation on a workload's pod
//! template under the field manager `keyturn/restarter`, idempotent per restart token, and the
//! `RestartBatcher` that folds requests for one workload arriving close together into one write.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use keyturn_crds::WorkloadKind;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::discovery::ConsumerTarget;
use super::error::ConsumerError;
use super::get_workload;
use super::rollout::{RolloutStatus, template_rollout_status};
use super::workload::{
    RESTARTED_FOR_ANNOTATION, Workload, format_restart_tokens, is_valid_restart_token, kind_name,
};

/// The field manager owning the restart annotation: only this one field, so keyturn never
/// takes ownership of anything else in a workload.
pub const FIELD_MANAGER: &str = "keyturn/restarter";

/// How long a restart batch stays open for more requests after its first one.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_secs(1);

/// A restart reads the workload and applies with its resourceVersion as a precondition; a
/// concurrent write (a controller updating status) makes it read and decide again.
const MAX_APPLY_ATTEMPTS: u32 = 3;

/// What a restart request did to the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartOutcome {
    /// The pod template now carries the token; the workload controller replaces the pods.
    Restarted,
    /// The pod template already carried the token: restarted earlier for this rotation.
    AlreadyRestarted,
    /// `spec.replicas` is 0: no pod holds the previous credential, so nothing is restarted.
    ScaledToZero,
    /// The workload does not exist.
    NotFound,
}

/// What to do to one workload for a batch of restart tokens. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartPlan {
    ScaledToZero,
    /// Every token of the batch is already on the pod template.
    AlreadyRestarted,
    /// Apply this annotation value.
    Apply {
        annotation_value: String,
    },
}

/// Decides what a batch of restart tokens does to `workload`.
pub fn plan_restart(workload: &Workload, batch: &BTreeSet<String>) -> RestartPlan {
    if workload.is_scaled_to_zero() {
        return RestartPlan::ScaledToZero;
    }
    let current = workload.restart_tokens();
    if batch.is_subset(&current) {
        return RestartPlan::AlreadyRestarted;
    }
    let current_rolled_out = template_rollout_status(workload) == RolloutStatus::Complete;
    RestartPlan::Apply {
        annotation_value: merge_restart_tokens(&current, current_rolled_out, batch),
    }
}

/// The annotation value a batch writes: its own tokens, sorted, plus the tokens already on the
/// template while that template is still rolling out. The new template replaces those pods too
/// and was written after their Secrets were published, so it serves those rotations as well;
/// dropping their tokens would make them see `NotRestarted` and restart the workload again,
/// back and forth. Once a rollout is complete its tokens are dropped, which keeps the value short.
pub fn merge_restart_tokens(
    current: &BTreeSet<String>,
    current_rolled_out: bool,
    batch: &BTreeSet<String>,
) -> String {
    if current_rolled_out {
        return format_restart_tokens(batch);
    }
    format_restart_tokens(&current.union(batch).cloned().collect())
}

/// Each token's outcome once `plan` has been carried out on a workload whose template carried
/// `current` before.
pub fn batch_outcomes(
    plan: &RestartPlan,
    current: &BTreeSet<String>,
    batch: &BTreeSet<String>,
) -> BTreeMap<String, RestartOutcome> {
    batch
        .iter()
        .map(|token| {
            let outcome = match plan {
                RestartPlan::ScaledToZero => RestartOutcome::ScaledToZero,
                _ if current.contains(token) => RestartOutcome::AlreadyRestarted,
                RestartPlan::AlreadyRestarted => RestartOutcome::AlreadyRestarted,
                RestartPlan::Apply { .. } => RestartOutcome::Restarted,
            };
            (token.clone(), outcome)
        })
        .collect()
}

/// The apply body: only identity, the resourceVersion read (a precondition, so the decision
/// above holds for the object written, and a workload deleted meanwhile is not re-created) and
/// the one annotation this field manager owns.
pub fn restart_patch(
    kind: WorkloadKind,
    name: &str,
    resource_version: Option<&str>,
    annotation_value: &str,
) -> Value {
    let mut metadata = json!({ "name": name });
    if let Some(resource_version) = resource_version {
        metadata["resourceVersion"] = json!(resource_version);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": kind_name(kind),
        "metadata": metadata,
        "spec": {"template": {"metadata": {"annotations": {
            RESTARTED_FOR_ANNOTATION: annotation_value
        }}}}
    })
}

fn uniform_outcomes(
    batch: &BTreeSet<String>,
    outcome: RestartOutcome,
) -> BTreeMap<String, RestartOutcome> {
    batch.iter().map(|token| (token.clone(), outcome)).collect()
}

/// One workload in one namespace: requests with the same key share a batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BatchKey {
    pub(crate) namespace: String,
    pub(crate) kind: WorkloadKind,
    pub(crate) name: String,
}

impl BatchKey {
    fn abandoned(&self, reason: &'static str) -> ConsumerError {
        ConsumerError::BatchAbandoned {
            kind: kind_name(self.kind),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            reason,
        }
    }
}

type OutcomeResult = Result<RestartOutcome, ConsumerError>;
type BatchResult = Result<BTreeMap<String, RestartOutcome>, ConsumerError>;
/// One caller in a batch: its token and where to send its outcome.
type Waiter = (String, oneshot::Sender<OutcomeResult>);

#[derive(Debug)]
struct BatcherShared {
    window: Duration,
    /// Open batches, by workload.
    pending: Mutex<HashMap<BatchKey, Vec<Waiter>>>,
}

impl BatcherShared {
    // A panic while holding the lock leaves the map consistent (every change is one insert,
    // push or remove), so a poisoned lock is still usable.
    fn pending(&self) -> MutexGuard<'_, HashMap<BatchKey, Vec<Waiter>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Debounces restarts: the first request for a workload opens a batch; requests for the same
/// workload arriving within the window join it; when the window closes, one apply carries all
/// their tokens and every caller gets its outcome. Several ManagedSecrets whose rotations land
/// together (one database, several Secrets) then restart a shared workload once, not once each.
/// Clone it freely: clones share the batches. One per process.
#[derive(Clone, Debug)]
pub struct RestartBatcher {
    shared: Arc<BatcherShared>,
}

impl Default for RestartBatcher {
    fn default() -> Self {
        RestartBatcher::new(DEFAULT_BATCH_WINDOW)
    }
}

impl RestartBatcher {
    pub fn new(window: Duration) -> RestartBatcher {
        RestartBatcher {
            shared: Arc::new(BatcherShared {
                window,
                pending: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn window(&self) -> Duration {
        self.shared.window
    }

    /// Restarts `target` for the rotation `token`, together with any other requests for the
    /// same workload within the window. A missing workload is reported as `NotFound`, not as
    /// an error: the caller decides what that means.
    pub async fn restart(
        &self,
        client: &Client,
        namespace: &str,
        target: &ConsumerTarget,
        token: &str,
    ) -> Result<RestartOutcome, ConsumerError> {
        self.submit(client, namespace, target.kind, &target.name, token)?
            .outcome()
            .await
    }

    /// Joins or opens the batch for the workload without waiting for it, so a caller can submit
    /// many workloads and then wait for all their batches at once.
    pub(crate) fn submit(
        &self,
        client: &Client,
        namespace: &str,
        kind: WorkloadKind,
        name: &str,
        token: &str,
    ) -> Result<PendingRestart, ConsumerError> {
        let key = BatchKey {
            namespace: namespace.to_owned(),
            kind,
            name: name.to_owned(),
        };
        if !is_valid_restart_token(token) {
            return Err(ConsumerError::InvalidToken {
                kind: kind_name(kind),
                namespace: key.namespace,
                name: key.name,
                token: token.to_owned(),
            });
        }
        let client = client.clone();
        let flush_key = key.clone();
        self.enqueue(key, token.to_owned(), move |tokens| {
            restart_workload(client, flush_key, tokens)
        })
    }

    /// The batching itself, with the write left to `flush` (called once per batch, with the
    /// batch's tokens) so it can be tested without an API server.
    pub(crate) fn enqueue<Flush, FlushFuture>(
        &self,
        key: BatchKey,
        token: String,
        flush: Flush,
    ) -> Result<PendingRestart, ConsumerError>
    where
        Flush: FnOnce(BTreeSet<String>) -> FlushFuture + Send + 'static,
        FlushFuture: Future<Output = BatchResult> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let mut pending = self.shared.pending();
        match pending.entry(key.clone()) {
            Entry::Occupied(mut batch) => batch.get_mut().push((token, sender)),
            Entry::Vacant(slot) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return Err(key.abandoned("no Tokio runtime to run it"));
                };
                slot.insert(vec![(token, sender)]);
                // The batch runs in its own task, so a caller that stops waiting (its reconcile
                // was cancelled) does not strand the others that joined its batch.
                let shared = Arc::clone(&self.shared);
                let batch_key = key.clone();
                runtime.spawn(async move {
                    tokio::time::sleep(shared.window).await;
                    let waiters = shared.pending().remove(&batch_key).unwrap_or_default();
                    if waiters.is_empty() {
                        return;
                    }
                    let tokens = waiters.iter().map(|(token, _)| token.clone()).collect();
                    let result = flush(tokens).await;
                    for (token, sender) in waiters {
                        let outcome = match &result {
                            Ok(outcomes) => outcomes.get(&token).copied().ok_or_else(|| {
                                batch_key.abandoned("no outcome was produced for its token")
                            }),
                            Err(error) => Err(error.clone()),
                        };
                        // A caller that stopped waiting has dropped its receiver; nothing to do.
                        let _ = sender.send(outcome);
                    }
                });
            }
        }
        Ok(PendingRestart { key, receiver })
    }
}

/// A restart request waiting for its batch.
#[derive(Debug)]
pub(crate) struct PendingRestart {
    key: BatchKey,
    receiver: oneshot::Receiver<OutcomeResult>,
}

impl PendingRestart {
    pub(crate) async fn outcome(self) -> OutcomeResult {
        match self.receiver.await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.key.abandoned("its task ended early")),
        }
    }
}

/// Reads the workload, decides, and applies; the flush of one batch.
async fn restart_workload(client: Client, key: BatchKey, batch: BTreeSet<String>) -> BatchResult {
    let mut attempt = 1;
    loop {
        let Some(workload) = get_workload(&client, &key.namespace, key.kind, &key.name).await?
        else {
            return Ok(uniform_outcomes(&batch, RestartOutcome::NotFound));
        };
        let current = workload.restart_tokens();
        let plan = plan_restart(&workload, &batch);
        let RestartPlan::Apply { annotation_value } = &plan else {
            return Ok(batch_outcomes(&plan, &current, &batch));
        };
        let body = restart_patch(
            key.kind,
            &key.name,
            workload.resource_version(),
            annotation_value,
        );
        match apply_restart(&client, &key, body).await {
            Ok(()) => return Ok(batch_outcomes(&plan, &current, &batch)),
            Err(error) if error.status_code() == Some(409) && attempt < MAX_APPLY_ATTEMPTS => {
                attempt += 1;
            }
            Err(error) if error.status_code() == Some(404) => {
                return Ok(uniform_outcomes(&batch, RestartOutcome::NotFound));
            }
            Err(error) => return Err(error),
        }
    }
}

async fn apply_restart(client: &Client, key: &BatchKey, body: Value) -> Result<(), ConsumerError> {
    let client = client.clone();
    let namespace = key.namespace.as_str();
    let result = match key.kind {
        WorkloadKind::Deployment => {
            apply(
                Api::<Deployment>::namespaced(client, namespace),
                &key.name,
                body,
            )
            .await
        }
        WorkloadKind::StatefulSet => {
            apply(
                Api::<StatefulSet>::namespaced(client, namespace),
                &key.name,
                body,
            )
            .await
        }
        WorkloadKind::DaemonSet => {
            apply(
                Api::<DaemonSet>::namespaced(client, namespace),
                &key.name,
                body,
            )
            .await
        }
    };
    result.map_err(|source| ConsumerError::Workload {
        call: "patch",
        kind: kind_name(key.kind),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        source: Arc::new(source),
    })
}

async fn apply<K>(api: Api<K>, name: &str, body: Value) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    // force: another manager that set this annotation (a person with kubectl) must not block
    // a restart; the annotation has no meaning to anyone else.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(body))
        .await
        .map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    fn tokens(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    fn deployment(replicas: i32, annotation: Option<&str>, rolled_out: bool) -> Workload {
        let mut object = json!({
            "metadata": {"name": "orders-api", "generation": 2, "resourceVersion": "41"},
            "spec": {"replicas": replicas, "selector": {}, "template": {"metadata": {}}},
            "status": {"observedGeneration": if rolled_out { 2 } else { 1 }, "replicas": replicas,
                       "updatedReplicas": replicas, "availableReplicas": replicas}
        });
        if let Some(annotation) = annotation {
            object["spec"]["template"]["metadata"]["annotations"] =
                json!({RESTARTED_FOR_ANNOTATION: annotation});
        }
        Workload::from(serde_json::from_value::<Deployment>(object).unwrap())
    }

    #[test]
    fn merge_sorts_and_carries_unfinished_rollouts() {
        let batch = tokens(&["kt-c", "kt-a"]);
        assert_eq!(
            merge_restart_tokens(&BTreeSet::new(), true, &batch),
            "kt-a,kt-c"
        );
        // The previous rollout finished: its tokens are done with.
        assert_eq!(
            merge_restart_tokens(&tokens(&["kt-b"]), true, &batch),
            "kt-a,kt-c"
        );
        // Still rolling out: the new template serves that rotation too.
        assert_eq!(
            merge_restart_tokens(&tokens(&["kt-b", "kt-a"]), false, &batch),
            "kt-a,kt-b,kt-c"
        );
    }

    #[test]
    fn plan_is_idempotent_per_token() {
        let batch = tokens(&["kt-a"]);
        assert_eq!(
            plan_restart(&deployment(3, Some("kt-a,kt-b"), true), &batch),
            RestartPlan::AlreadyRestarted
        );
        assert_eq!(
            plan_restart(&deployment(3, None, true), &batch),
            RestartPlan::Apply {
                annotation_value: "kt-a".to_owned()
            }
        );
        assert_eq!(
            plan_restart(&deployment(3, Some("kt-b"), true), &batch),
            RestartPlan::Apply {
                annotation_value: "kt-a".to_owned()
            }
        );
        assert_eq!(
            plan_restart(&deployment(3, Some("kt-b"), false), &batch),
            RestartPlan::Apply {
                annotation_value: "kt-a,kt-b".to_owned()
            }
        );
        assert_eq!(
            plan_restart(&deployment(0, None, true), &batch),
            RestartPlan::ScaledToZero
        );
    }

    #[test]
    fn outcomes_per_token() {
        let current = tokens(&["kt-a"]);
        let batch = tokens(&["kt-a", "kt-b"]);
        let apply = RestartPlan::Apply {
            annotation_value: "kt-a,kt-b".to_owned(),
        };
        assert_eq!(
            batch_outcomes(&apply, &current, &batch),
            BTreeMap::from([
                ("kt-a".to_owned(), RestartOutcome::AlreadyRestarted),
                ("kt-b".to_owned(), RestartOutcome::Restarted),
            ])
        );
        assert_eq!(
            batch_outcomes(&RestartPlan::ScaledToZero, &current, &batch),
            uniform_outcomes(&batch, RestartOutcome::ScaledToZero)
        );
    }

    #[test]
    fn patch_carries_only_identity_precondition_and_annotation() {
        assert_eq!(
            restart_patch(
                WorkloadKind::StatefulSet,
                "orders-worker",
                Some("41"),
                "kt-a,kt-b"
            ),
            json!({
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "orders-worker", "resourceVersion": "41"},
                "spec": {"template": {"metadata": {"annotations": {
                    "keyturn.dev/restarted-for": "kt-a,kt-b"
                }}}}
            })
        );
    }

    fn key(name: &str) -> BatchKey {
        BatchKey {
            namespace: "payments".to_owned(),
            kind: WorkloadKind::Deployment,
            name: name.to_owned(),
        }
    }

    /// A flush that records the batches it was called with and restarts every token.
    fn recording_flush(
        flushes: &Arc<Mutex<Vec<BTreeSet<String>>>>,
    ) -> impl FnOnce(BTreeSet<String>) -> std::future::Ready<BatchResult> + Send + 'static {
        let flushes = Arc::clone(flushes);
        move |batch: BTreeSet<String>| {
            flushes.lock().unwrap().push(batch.clone());
            std::future::ready(Ok(uniform_outcomes(&batch, RestartOutcome::Restarted)))
        }
    }

    #[tokio::test]
    async fn requests_within_the_window_share_one_flush() {
        let batcher = RestartBatcher::new(Duration::from_millis(200));
        let flushes = Arc::new(Mutex::new(Vec::new()));
        let first = batcher
            .enqueue(
                key("orders-api"),
                "kt-a".to_owned(),
                recording_flush(&flushes),
            )
            .unwrap();
        let second = batcher
            .clone()
            .enqueue(
                key("orders-api"),
                "kt-b".to_owned(),
                recording_flush(&flushes),
            )
            .unwrap();
        let other = batcher
            .enqueue(key("reports"), "kt-a".to_owned(), recording_flush(&flushes))
            .unwrap();
        assert_eq!(first.outcome().await.unwrap(), RestartOutcome::Restarted);
        assert_eq!(second.outcome().await.unwrap(), RestartOutcome::Restarted);
        assert_eq!(other.outcome().await.unwrap(), RestartOutcome::Restarted);
        let mut flushes = flushes.lock().unwrap().clone();
        flushes.sort();
        assert_eq!(flushes, vec![tokens(&["kt-a"]), tokens(&["kt-a", "kt-b"])]);
    }

    #[tokio::test]
    async fn a_request_after_the_window_opens_a_new_batch() {
        let batcher = RestartBatcher::new(Duration::from_millis(20));
        let flushes = Arc::new(Mutex::new(Vec::new()));
        let first = batcher
            .enqueue(
                key("orders-api"),
                "kt-a".to_owned(),
                recording_flush(&flushes),
            )
            .unwrap();
        first.outcome().await.unwrap();
        let second = batcher
            .enqueue(
                key("orders-api"),
                "kt-b".to_owned(),
                recording_flush(&flushes),
            )
            .unwrap();
        second.outcome().await.unwrap();
        assert_eq!(
            *flushes.lock().unwrap(),
            vec![tokens(&["kt-a"]), tokens(&["kt-b"])]
        );
    }

    #[tokio::test]
    async fn every_caller_gets_the_batch_error() {
        let batcher = RestartBatcher::new(Duration::from_millis(20));
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = |calls: &Arc<AtomicUsize>| {
            let calls = Arc::clone(calls);
            move |_batch: BTreeSet<String>| {
                calls.fetch_add(1, Ordering::SeqCst);
                let status = kube::core::Status::failure("forbidden", "Forbidden").with_code(403);
                std::future::ready(Err(ConsumerError::Workload {
                    call: "get",
                    kind: "Deployment",
                    namespace: "payments".to_owned(),
                    name: "orders-api".to_owned(),
                    source: Arc::new(kube::Error::Api(Box::new(status))),
                }))
            }
        };
        let first = batcher
            .enqueue(key("orders-api"), "kt-a".to_owned(), failing(&calls))
            .unwrap();
        let second = batcher
            .enqueue(key("orders-api"), "kt-b".to_owned(), failing(&calls))
            .unwrap();
        for pending in [first, second] {
            let error = pending.outcome().await.unwrap_err();
            assert_eq!(error.status_code(), Some(403));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_does_not_strand_the_batch() {
        let batcher = RestartBatcher::new(Duration::from_millis(20));
        let flushes = Arc::new(Mutex::new(Vec::new()));
        let abandoned = batcher
            .enqueue(
                key("orders-api"),
                "kt-a".to_owned(),
                recording_flush(&flushes),
            )
            .unwrap();
        drop(abandoned);
        let second = batcher
            .enqueue(
                key("orders-api"),
                "kt-b".to_owned(),
                recording_flush(&flushes),
            )
            .unwrap();
        assert_eq!(second.outcome().await.unwrap(), RestartOutcome::Restarted);
        assert_eq!(*flushes.lock().unwrap(), vec![tokens(&["kt-a", "kt-b"])]);
    }

    #[test]
    fn without_a_runtime_the_request_fails_instead_of_panicking() {
        let batcher = RestartBatcher::default();
        let flushes = Arc::new(Mutex::new(Vec::new()));
        let error = batcher
            .enqueue(
                key("orders-api"),
                "kt-a".to_owned(),
                recording_flush(&flushes),
            )
            .unwrap_err();
        assert_eq!(error.category().as_str(), "BatchAbandoned");
        assert!(error.is_retryable());
    }
}
