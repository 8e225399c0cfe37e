//! Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics: one replica
//! holds the Lease and renews it; standbys poll and take it over once it expires or is released.
//! Every write is a PUT carrying the resourceVersion that was read, so two candidates never both win.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which Lease to hold, as whom, and how long a holder may go without renewing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease (it must exist).
    pub namespace: String,
    /// Name of the Lease, shared by every replica.
    pub name: String,
    /// This replica's identity, unique among live replicas (e.g. the pod name).
    pub identity: String,
    /// How long a Lease stays valid after its last renewal. Written to the Lease in whole
    /// seconds, rounded up.
    pub lease_duration: Duration,
    /// How often the holder renews and standbys poll; must be shorter than `lease_duration`.
    pub renew_interval: Duration,
}

/// Why leadership ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossReason {
    /// A renewal found another identity holding the Lease.
    HeldByOther { holder: String },
    /// The Lease was deleted while we held it.
    LeaseDeleted,
    /// No renewal succeeded within `lease_duration - renew_interval`: stop before a standby may
    /// take over.
    RenewalDeadlineExceeded,
    /// `Leadership::release` was called.
    Released,
    /// The renewal task ended without saying why (it panicked or was aborted).
    RenewalStopped,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("configure lease {namespace}/{name}: {problem}")]
    InvalidConfig {
        namespace: String,
        name: String,
        problem: &'static str,
    },
    #[error("{action} lease {namespace}/{name}")]
    Api {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        // Boxed: kube's error is large and would bloat every Result of this module.
        source: Box<kube::Error>,
    },
    #[error("{action} lease {namespace}/{name}: it changed between each read and write")]
    KeptChanging {
        action: &'static str,
        namespace: String,
        name: String,
    },
}

impl LeaderError {
    /// Errors that retrying cannot fix: bad configuration, missing permissions or namespace, or
    /// a Lease the server rejects. Everything else (timeouts, 5xx, lost connections) is retried.
    fn is_permanent(&self) -> bool {
        match self {
            Self::InvalidConfig { .. } => true,
            Self::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(status) => {
                    matches!(status.code, 400 | 401 | 403 | 404 | 405 | 415 | 422)
                }
                _ => false,
            },
            Self::KeptChanging { .. } => false,
        }
    }
}

#[derive(Debug)]
struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    lease_duration_seconds: i32,
}

/// Campaigns for one Lease. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LeaderElector {
    elector: Arc<Elector>,
}

impl LeaderElector {
    /// Checks the identity and durations; does not contact the API server.
    pub fn new(client: kube::Client, config: LeaseConfig) -> Result<Self, LeaderError> {
        let invalid = |problem| LeaderError::InvalidConfig {
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            problem,
        };
        if config.identity.is_empty() {
            return Err(invalid("identity is empty"));
        }
        if config.renew_interval.is_zero() {
            return Err(invalid("renew interval is zero"));
        }
        if config.renew_interval >= config.lease_duration {
            return Err(invalid(
                "renew interval is not shorter than the lease duration",
            ));
        }
        let whole_seconds =
            config.lease_duration.as_secs() + u64::from(config.lease_duration.subsec_nanos() > 0);
        let lease_duration_seconds =
            i32::try_from(whole_seconds).map_err(|_| invalid("lease duration is too long"))?;
        Ok(Self {
            elector: Arc::new(Elector {
                api: Api::namespaced(client, &config.namespace),
                config,
                lease_duration_seconds,
            }),
        })
    }

    /// Waits until this identity holds the Lease, then renews it in the background.
    ///
    /// Creates the Lease when absent, takes it over when it is released or expired
    /// (`renewTime + leaseDurationSeconds` before the local clock), and otherwise polls every
    /// renew interval. Transient API errors (timeouts, 5xx, lost connections) are logged and
    /// retried; answers that retrying cannot fix (400, 401, 403, 405, 415, 422, or 404 on create
    /// for a missing namespace) are returned. Dropping the future stops campaigning; if it had
    /// just won, the unrenewed Lease expires after the lease duration.
    pub async fn acquire(&self) -> Result<Leadership, LeaderError> {
        let elector = &self.elector;
        let mut last_holder_seen: Option<String> = None;
        loop {
            // Taken before the write: our renewTime is at most this late, so the local deadline
            // derived from it never trails what other replicas see.
            let attempt_started = Instant::now();
            match elector.try_acquire().await {
                Ok(Attempt::Acquired(lease)) => {
                    tracing::info!(
                        lease = %elector.key(),
                        identity = %elector.config.identity,
                        transitions = lease.spec.as_ref().and_then(|spec| spec.lease_transitions),
                        "acquired the leader lease"
                    );
                    return Ok(Leadership::start(
                        Arc::clone(elector),
                        *lease,
                        attempt_started,
                    ));
                }
                Ok(Attempt::HeldBy(holder)) => {
                    if last_holder_seen.as_deref() != Some(holder.as_str()) {
                        tracing::info!(
                            lease = %elector.key(),
                            %holder,
                            "waiting for the leader lease held by another replica"
                        );
                        last_holder_seen = Some(holder);
                    }
                }
                Ok(Attempt::LostRace) => {}
                Err(error) if error.is_permanent() => return Err(error),
                Err(error) => {
                    tracing::warn!(
                        error = %error,
                        cause = %source_text(&error),
                        "campaign for the leader lease; retrying"
                    );
                }
            }
            tokio::time::sleep(elector.config.renew_interval).await;
        }
    }
}

// Boxed: a Lease is large and these are returned by value on every poll.
enum Attempt {
    Acquired(Box<Lease>),
    HeldBy(String),
    /// Another candidate wrote between our read and our write; read again next round.
    LostRace,
}

enum Renewal {
    Renewed(Box<Lease>),
    Lost(LossReason),
}

impl Elector {
    fn key(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    fn api_error(&self, action: &'static str) -> impl FnOnce(kube::Error) -> LeaderError + '_ {
        move |source| LeaderError::Api {
            action,
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source: Box::new(source),
        }
    }

    fn kept_changing(&self, action: &'static str) -> LeaderError {
        LeaderError::KeptChanging {
            action,
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
        }
    }

    fn is_ours(&self, lease: &Lease) -> bool {
        holder(lease) == Some(self.config.identity.as_str())
    }

    async fn try_acquire(&self) -> Result<Attempt, LeaderError> {
        let now = Timestamp::now();
        let existing = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(self.api_error("get"))?;
        let Some(mut lease) = existing else {
            return self.create(now).await;
        };
        let previous_holder = holder(&lease).map(str::to_owned);
        let ours = previous_holder.as_deref() == Some(self.config.identity.as_str());
        if let Some(previous_holder) = &previous_holder
            && !ours
            && !is_expired(&lease, now)
        {
            return Ok(Attempt::HeldBy(previous_holder.clone()));
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if !ours {
            // A new term: same bookkeeping as client-go, so tools reading the Lease agree.
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.acquire_time = Some(MicroTime(now));
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(self.lease_duration_seconds);
        // `lease` still carries the resourceVersion we read: the PUT fails with 409 if anyone
        // wrote in between, which is what makes the takeover safe.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => Ok(Attempt::Acquired(Box::new(updated))),
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => {
                Ok(Attempt::LostRace)
            }
            Err(error) => Err(self.api_error("replace")(error)),
        }
    }

    async fn create(&self, now: Timestamp) -> Result<Attempt, LeaderError> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.lease_duration_seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(created) => Ok(Attempt::Acquired(Box::new(created))),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(Attempt::LostRace),
            Err(error) => Err(self.api_error("create")(error)),
        }
    }

    /// One renewal: PUT with the resourceVersion of our last write. A conflict means someone
    /// else wrote: read who holds the Lease now, and retry once if it is still us.
    async fn renew(&self, last_written: &Lease) -> Result<Renewal, LeaderError> {
        let mut lease = last_written.clone();
        for _ in 0..2 {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(self.config.identity.clone());
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            spec.lease_duration_seconds = Some(self.lease_duration_seconds);
            match self
                .api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(updated) => return Ok(Renewal::Renewed(Box::new(updated))),
                Err(kube::Error::Api(status)) if status.is_not_found() => {
                    return Ok(Renewal::Lost(LossReason::LeaseDeleted));
                }
                Err(kube::Error::Api(status)) if status.is_conflict() => {}
                Err(error) => return Err(self.api_error("renew")(error)),
            }
            let current = self
                .api
                .get_opt(&self.config.name)
                .await
                .map_err(self.api_error("get"))?;
            let Some(current) = current else {
                return Ok(Renewal::Lost(LossReason::LeaseDeleted));
            };
            if !self.is_ours(&current) {
                return Ok(Renewal::Lost(LossReason::HeldByOther {
                    holder: holder(&current).unwrap_or_default().to_owned(),
                }));
            }
            lease = current;
        }
        // Still ours but written by someone else twice in a row: try again next interval.
        Err(self.kept_changing("renew"))
    }

    /// Clears holderIdentity so a standby takes over at its next poll.
    async fn release(&self, last_written: Lease) -> Result<(), LeaderError> {
        let mut lease = last_written;
        for _ in 0..2 {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            match self
                .api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    tracing::info!(lease = %self.key(), "released the leader lease");
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(()),
                Err(kube::Error::Api(status)) if status.is_conflict() => {}
                Err(error) => return Err(self.api_error("release")(error)),
            }
            let current = self
                .api
                .get_opt(&self.config.name)
                .await
                .map_err(self.api_error("get"))?;
            match current {
                Some(current) if self.is_ours(&current) => lease = current,
                // Someone else holds it or it is gone: nothing of ours to release.
                _ => return Ok(()),
            }
        }
        Err(self.kept_changing("release"))
    }

    /// Renews every interval until stopped or lost; returns the last Lease written when it was
    /// stopped while still leading (for `release`).
    async fn keep_renewing(
        &self,
        mut lease: Lease,
        acquired_at: Instant,
        status: watch::Sender<Option<LossReason>>,
        mut stop: oneshot::Receiver<()>,
    ) -> Option<Lease> {
        let renew_interval = self.config.renew_interval;
        // Give up this long after the last successful renewal was sent: a renewal interval
        // before any standby can consider the Lease expired.
        let renew_deadline = self.config.lease_duration - renew_interval;
        let mut last_renewed = acquired_at;
        let mut next_attempt = acquired_at + renew_interval;
        let reason = loop {
            let deadline = last_renewed + renew_deadline;
            tokio::select! {
                _ = &mut stop => {
                    let _ = status.send(Some(LossReason::Released));
                    return Some(lease);
                }
                () = tokio::time::sleep_until(deadline) => break LossReason::RenewalDeadlineExceeded,
                () = tokio::time::sleep_until(next_attempt) => {}
            }
            let attempt_started = Instant::now();
            next_attempt = attempt_started + renew_interval;
            let outcome = tokio::select! {
                _ = &mut stop => {
                    let _ = status.send(Some(LossReason::Released));
                    return Some(lease);
                }
                outcome = tokio::time::timeout_at(deadline, self.renew(&lease)) => outcome,
            };
            match outcome {
                Err(_elapsed) => break LossReason::RenewalDeadlineExceeded,
                Ok(Ok(Renewal::Renewed(updated))) => {
                    lease = *updated;
                    last_renewed = attempt_started;
                }
                Ok(Ok(Renewal::Lost(reason))) => break reason,
                Ok(Err(error)) => {
                    tracing::warn!(
                        error = %error,
                        cause = %source_text(&error),
                        "renew the leader lease; retrying until the renewal deadline"
                    );
                }
            }
        };
        tracing::warn!(lease = %self.key(), ?reason, "lost the leader lease");
        let _ = status.send(Some(reason));
        None
    }
}

/// The Lease's holder, if any (an empty holderIdentity means released).
fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.holder_identity.as_deref())
        .filter(|holder| !holder.is_empty())
}

/// Whether the Lease is expired against the local clock: `renewTime + leaseDurationSeconds`
/// in the past. A Lease missing either field counts as expired, as in client-go.
fn is_expired(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = lease.spec.as_ref() else {
        return true;
    };
    let (Some(renew_time), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    match renew_time
        .0
        .checked_add(SignedDuration::from_secs(i64::from(seconds)))
    {
        Ok(expiry) => expiry < now,
        // Only a renewTime near the end of representable time overflows: far in the future.
        Err(_) => false,
    }
}

fn source_text(error: &LeaderError) -> String {
    std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Held leadership. Renews in the background until lost, released or dropped; dropping it
/// stops renewing without releasing, so the Lease expires after its duration.
#[derive(Debug)]
pub struct Leadership {
    elector: Arc<Elector>,
    status: watch::Receiver<Option<LossReason>>,
    stop: Option<oneshot::Sender<()>>,
    renewal: Option<JoinHandle<Option<Lease>>>,
}

impl Leadership {
    fn start(elector: Arc<Elector>, lease: Lease, acquired_at: Instant) -> Self {
        let (status_sender, status) = watch::channel(None);
        let (stop, stop_receiver) = oneshot::channel();
        let renewing = Arc::clone(&elector);
        let renewal = tokio::spawn(async move {
            renewing
                .keep_renewing(lease, acquired_at, status_sender, stop_receiver)
                .await
        });
        Self {
            elector,
            status,
            stop: Some(stop),
            renewal: Some(renewal),
        }
    }

    /// Whether we still lead. Turns false at the renewal deadline, before any standby can
    /// take the Lease over.
    pub fn is_leading(&self) -> bool {
        self.status.borrow().is_none()
    }

    /// Resolves when leadership is lost (at once if it already is): stop leader-only work then.
    pub async fn lost(&self) -> LossReason {
        let mut status = self.status.clone();
        match status.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(LossReason::RenewalStopped),
            Err(_closed) => LossReason::RenewalStopped,
        }
    }

    /// A receiver of the loss reason (`None` while leading), for `select!` loops.
    pub fn subscribe(&self) -> watch::Receiver<Option<LossReason>> {
        self.status.clone()
    }

    /// Stops renewing and, if we still hold the Lease, clears its holderIdentity so a standby
    /// takes over at its next poll. Call after leader-only work has stopped.
    pub async fn release(mut self) -> Result<(), LeaderError> {
        if let Some(stop) = self.stop.take() {
            // The task may already have ended after a loss; then there is nothing to stop.
            let _ = stop.send(());
        }
        let last_written = match self.renewal.take() {
            Some(renewal) => renewal.await.ok().flatten(),
            None => None,
        };
        match last_written {
            Some(lease) => self.elector.release(lease).await,
            None => Ok(()),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use keyturn_apiserver::faults::FaultRule;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const NAMESPACE: &str = "default";

    async fn stand_in() -> (keyturn_apiserver::Handle, kube::Client) {
        let handle = keyturn_apiserver::start(keyturn_apiserver::Config::default())
            .await
            .unwrap();
        let client =
            kube::Client::try_from(kube::Config::new(handle.url().parse().unwrap())).unwrap();
        (handle, client)
    }

    fn elector(
        client: &kube::Client,
        name: &str,
        identity: &str,
        lease_duration: Duration,
        renew_interval: Duration,
    ) -> LeaderElector {
        LeaderElector::new(
            client.clone(),
            LeaseConfig {
                namespace: NAMESPACE.to_owned(),
                name: name.to_owned(),
                identity: identity.to_owned(),
                lease_duration,
                renew_interval,
            },
        )
        .unwrap()
    }

    async fn read_lease(client: &kube::Client, name: &str) -> LeaseSpec {
        Api::<Lease>::namespaced(client.clone(), NAMESPACE)
            .get(name)
            .await
            .unwrap()
            .spec
            .unwrap()
    }

    /// The Lease as JSON text, straight from the stand-in (to see the wire format).
    async fn raw_lease(handle: &keyturn_apiserver::Handle, name: &str) -> serde_json::Value {
        let mut stream = tokio::net::TcpStream::connect(handle.addr).await.unwrap();
        let request = format!(
            "GET /apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{name} HTTP/1.1\r\n\
             Host: test\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (_head, body) = raw.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    const SHORT_LEASE: Duration = Duration::from_secs(2);
    const SHORT_RENEW: Duration = Duration::from_millis(500);
    /// Bound for things that should take about a renew interval; loose for a loaded machine.
    const GENEROUS: Duration = Duration::from_secs(15);

    #[test]
    fn configuration_is_checked() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap()))
                .unwrap();
        let config = |identity: &str, lease_duration, renew_interval| LeaseConfig {
            namespace: NAMESPACE.to_owned(),
            name: "checked".to_owned(),
            identity: identity.to_owned(),
            lease_duration,
            renew_interval,
        };
        let error = LeaderElector::new(
            client.clone(),
            config("a", Duration::from_secs(2), Duration::from_secs(2)),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "configure lease default/checked: renew interval is not shorter than the lease duration"
        );
        assert!(LeaderElector::new(client.clone(), config("", SHORT_LEASE, SHORT_RENEW)).is_err());
        assert!(
            LeaderElector::new(client.clone(), config("a", SHORT_LEASE, Duration::ZERO)).is_err()
        );
        let rounded = LeaderElector::new(
            client,
            config("a", Duration::from_millis(2500), SHORT_RENEW),
        )
        .unwrap();
        assert_eq!(rounded.elector.lease_duration_seconds, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_candidate_acquires_and_renews() {
        let (handle, client) = stand_in().await;
        let first = elector(&client, "single", "first", SHORT_LEASE, SHORT_RENEW);
        let leadership = tokio::time::timeout(GENEROUS, first.acquire())
            .await
            .unwrap()
            .unwrap();
        assert!(leadership.is_leading());
        let spec = read_lease(&client, "single").await;
        assert_eq!(spec.holder_identity.as_deref(), Some("first"));
        assert_eq!(spec.lease_duration_seconds, Some(2));
        assert_eq!(spec.lease_transitions, Some(0));
        assert!(spec.acquire_time.is_some());
        let first_renewal = spec.renew_time.unwrap();

        tokio::time::sleep(SHORT_RENEW * 3).await;
        let spec = read_lease(&client, "single").await;
        assert!(
            spec.renew_time.unwrap() > first_renewal,
            "renewTime advances"
        );
        assert!(leadership.is_leading());

        // MicroTime on the wire: RFC 3339 in UTC with exactly six fractional digits.
        let raw = raw_lease(&handle, "single").await;
        let renew_time = raw["spec"]["renewTime"].as_str().unwrap();
        let (_, fraction) = renew_time.split_once('.').unwrap();
        assert_eq!(fraction.len(), "123456Z".len(), "{renew_time}");
        assert!(fraction.ends_with('Z'), "{renew_time}");

        leadership.release().await.unwrap();
        let spec = read_lease(&client, "single").await;
        assert_eq!(spec.holder_identity, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_standby_waits_while_the_leader_renews_and_takes_over_on_release() {
        let (_handle, client) = stand_in().await;
        // A long lease, so that taking over at once is clearly told apart from waiting for
        // expiry even on a slow machine.
        let lease_duration = Duration::from_secs(4);
        let first = elector(&client, "handover", "first", lease_duration, SHORT_RENEW);
        let second = elector(&client, "handover", "second", lease_duration, SHORT_RENEW);
        let leadership = first.acquire().await.unwrap();

        let standby = tokio::spawn(async move { second.acquire().await });
        // Past the lease duration: renewals keep the Lease valid, so the standby waits.
        tokio::time::sleep(lease_duration + Duration::from_secs(1)).await;
        assert!(
            !standby.is_finished(),
            "the standby must not acquire a renewed lease"
        );
        assert!(leadership.is_leading());

        let released_at = Instant::now();
        leadership.release().await.unwrap();
        let second_leadership = tokio::time::timeout(GENEROUS, standby)
            .await
            .expect("the standby acquires soon after the release")
            .unwrap()
            .unwrap();
        // About one poll interval; the bound is loose for a loaded machine but under the lease
        // duration, which is what waiting for expiry would take.
        assert!(
            released_at.elapsed() < lease_duration,
            "took {:?}",
            released_at.elapsed()
        );
        let spec = read_lease(&client, "handover").await;
        assert_eq!(spec.holder_identity.as_deref(), Some("second"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert!(second_leadership.is_leading());
        second_leadership.release().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_standby_takes_over_an_abandoned_lease_after_it_expires() {
        let (_handle, client) = stand_in().await;
        let lease_duration = Duration::from_secs(3);
        let first = elector(&client, "abandoned", "first", lease_duration, SHORT_RENEW);
        let second = elector(&client, "abandoned", "second", lease_duration, SHORT_RENEW);
        let (acquired_sender, acquired) = oneshot::channel();
        // A leader that dies without releasing: its task is aborted while holding leadership.
        let crashed = tokio::spawn(async move {
            let leadership = first.acquire().await.unwrap();
            acquired_sender.send(()).unwrap();
            std::future::pending::<()>().await;
            drop(leadership);
        });
        acquired.await.unwrap();
        tokio::time::sleep(SHORT_RENEW * 2).await;
        crashed.abort();
        let aborted_at = Instant::now();

        let leadership = tokio::time::timeout(lease_duration + GENEROUS, second.acquire())
            .await
            .expect("the standby acquires once the lease expires")
            .unwrap();
        let waited = aborted_at.elapsed();
        // The last renewal was at most about a renew interval before the abort, so the Lease
        // stayed valid for most of its duration after it.
        assert!(
            waited >= Duration::from_secs(1),
            "took over after {waited:?}"
        );
        let spec = read_lease(&client, "abandoned").await;
        assert_eq!(spec.holder_identity.as_deref(), Some("second"));
        assert_eq!(spec.lease_transitions, Some(1));
        leadership.release().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_renewals_lose_leadership_before_the_lease_expires() {
        let (handle, client) = stand_in().await;
        // A full second between the renewal deadline and the expiry others see.
        let lease_duration = Duration::from_secs(3);
        let renew_interval = Duration::from_secs(1);
        let first = elector(&client, "failing", "first", lease_duration, renew_interval);
        let leadership = first.acquire().await.unwrap();
        tokio::time::sleep(renew_interval).await;

        handle.state.faults.add(
            FaultRule::from_json(&serde_json::json!({
                "method": "PUT",
                "path": "/leases/failing$",
                "status": 500,
            }))
            .unwrap(),
        );
        let reason = tokio::time::timeout(GENEROUS, leadership.lost())
            .await
            .expect("leadership is lost after the renewal deadline");
        assert_eq!(reason, LossReason::RenewalDeadlineExceeded);
        assert!(!leadership.is_leading());
        // When we gave up, the Lease had not expired yet for anyone else.
        let spec = read_lease(&client, "failing").await;
        assert_eq!(spec.holder_identity.as_deref(), Some("first"));
        assert!(!is_expired(
            &Lease {
                metadata: ObjectMeta::default(),
                spec: Some(spec),
            },
            Timestamp::now()
        ));

        handle.state.faults.clear();
        let second = elector(&client, "failing", "second", lease_duration, renew_interval);
        let second_leadership = tokio::time::timeout(GENEROUS, second.acquire())
            .await
            .unwrap()
            .unwrap();
        // Releasing a lost leadership writes nothing.
        leadership.release().await.unwrap();
        assert_eq!(
            read_lease(&client, "failing")
                .await
                .holder_identity
                .as_deref(),
            Some("second")
        );
        second_leadership.release().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_conflict_with_another_holder_loses_leadership() {
        let (_handle, client) = stand_in().await;
        let first = elector(&client, "stolen", "first", SHORT_LEASE, SHORT_RENEW);
        let leadership = first.acquire().await.unwrap();
        let api = Api::<Lease>::namespaced(client.clone(), NAMESPACE);
        let mut lease = api.get("stolen").await.unwrap();
        lease.spec.as_mut().unwrap().holder_identity = Some("intruder".to_owned());
        api.replace("stolen", &PostParams::default(), &lease)
            .await
            .unwrap();
        let reason = tokio::time::timeout(GENEROUS, leadership.lost())
            .await
            .unwrap();
        assert_eq!(
            reason,
            LossReason::HeldByOther {
                holder: "intruder".to_owned()
            }
        );
        leadership.release().await.unwrap();
        assert_eq!(
            read_lease(&client, "stolen")
                .await
                .holder_identity
                .as_deref(),
            Some("intruder")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_takeovers_of_the_same_expired_lease_cannot_both_win() {
        let (handle, client) = stand_in().await;
        let api = Api::<Lease>::namespaced(client.clone(), NAMESPACE);
        let long_ago = Timestamp::now()
            .checked_sub(SignedDuration::from_secs(3600))
            .unwrap();
        api.create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some("contested".to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some("departed".to_owned()),
                    lease_duration_seconds: Some(2),
                    renew_time: Some(MicroTime(long_ago)),
                    lease_transitions: Some(4),
                    ..LeaseSpec::default()
                }),
            },
        )
        .await
        .unwrap();
        // Slow writes: both candidates read the same resourceVersion before either writes.
        handle.state.faults.add(
            FaultRule::from_json(&serde_json::json!({
                "method": "PUT",
                "path": "/leases/contested$",
                "latencyMs": 300,
            }))
            .unwrap(),
        );
        let first = elector(&client, "contested", "first", SHORT_LEASE, SHORT_RENEW);
        let second = elector(&client, "contested", "second", SHORT_LEASE, SHORT_RENEW);
        let (first_attempt, second_attempt) =
            tokio::join!(first.elector.try_acquire(), second.elector.try_acquire());
        let winners: Vec<String> = [first_attempt.unwrap(), second_attempt.unwrap()]
            .into_iter()
            .filter_map(|attempt| match attempt {
                Attempt::Acquired(lease) => holder(&lease).map(str::to_owned),
                Attempt::HeldBy(_) | Attempt::LostRace => None,
            })
            .collect();
        assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
        let spec = read_lease(&client, "contested").await;
        assert_eq!(spec.holder_identity.as_ref(), winners.first());
        assert_eq!(spec.lease_transitions, Some(5));
        assert!(spec.acquire_time.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_candidates_never_lead_at_once() {
        let (_handle, client) = stand_in().await;
        let leaders = Arc::new(Mutex::new(Vec::<String>::new()));
        let overlaps = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let terms = Arc::new(AtomicUsize::new(0));
        let run_until = Instant::now() + Duration::from_secs(6);
        let mut candidates = Vec::new();
        for index in 0..5_u64 {
            let candidate = elector(
                &client,
                "crowded",
                &format!("candidate-{index}"),
                SHORT_LEASE,
                Duration::from_millis(300),
            );
            let leaders = Arc::clone(&leaders);
            let overlaps = Arc::clone(&overlaps);
            let terms = Arc::clone(&terms);
            candidates.push(tokio::spawn(async move {
                let identity = format!("candidate-{index}");
                let mut term = 0_u64;
                while Instant::now() < run_until {
                    let Ok(acquired) =
                        tokio::time::timeout_at(run_until, candidate.acquire()).await
                    else {
                        break;
                    };
                    let leadership = acquired.unwrap();
                    {
                        let mut current = leaders.lock().unwrap();
                        if !current.is_empty() {
                            let mut overlap = current.clone();
                            overlap.push(identity.clone());
                            overlaps.lock().unwrap().push(overlap);
                        }
                        current.push(identity.clone());
                    }
                    terms.fetch_add(1, Ordering::SeqCst);
                    let hold = Duration::from_millis(200 + 150 * index);
                    tokio::select! {
                        () = tokio::time::sleep(hold) => {}
                        _ = leadership.lost() => {}
                    }
                    leaders.lock().unwrap().retain(|leader| *leader != identity);
                    // Mostly hand over politely; sometimes vanish and let the Lease expire.
                    if term % 3 == 2 {
                        drop(leadership);
                    } else {
                        leadership.release().await.unwrap();
                    }
                    term += 1;
                }
            }));
        }
        for candidate in candidates {
            tokio::time::timeout(GENEROUS, candidate)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(*overlaps.lock().unwrap(), Vec::<Vec<String>>::new());
        assert!(
            terms.load(Ordering::SeqCst) >= 2,
            "leadership changed hands: {} terms",
            terms.load(Ordering::SeqCst)
        );
    }
}
