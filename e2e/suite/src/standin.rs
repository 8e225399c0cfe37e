//! The in-process API stand-in and what only it can do: fault rules, the request log, dropped
//! watches and compacted history. Tests reach it through `Cluster::standin()`, which is `None` on
//! a real cluster, so every use is visibly skippable.

use std::sync::Arc;
use std::time::Duration;

use keyturn_apiserver::faults::FaultRule;
use keyturn_apiserver::server::State;
use serde_json::{Value, json};

/// A running stand-in. It serves from a thread and runtime of its own, so it keeps answering the
/// operator while a test blocks, and whatever runtime flavour the test uses.
pub struct StandIn {
    url: String,
    kubeconfig_yaml: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StandIn")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl StandIn {
    /// Starts the stand-in serving `crds`.
    pub(crate) async fn start(crds: Vec<String>) -> StandIn {
        let (ready_sender, ready_receiver) = tokio::sync::oneshot::channel();
        let (stop, stop_receiver) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("keyturn-standin".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the stand-in's tokio runtime");
                runtime.block_on(async move {
                    let config = keyturn_apiserver::Config {
                        crds,
                        ..keyturn_apiserver::Config::default()
                    };
                    let handle = match keyturn_apiserver::start(config).await {
                        Ok(handle) => handle,
                        Err(error) => {
                            let _ = ready_sender.send(Err(error.to_string()));
                            return;
                        }
                    };
                    let started = (
                        handle.url(),
                        handle.kubeconfig_yaml(),
                        Arc::clone(&handle.state),
                    );
                    if ready_sender.send(Ok(started)).is_err() {
                        return;
                    }
                    // Serves until the StandIn is dropped (the sender goes away) or told to stop.
                    let _ = stop_receiver.await;
                    drop(handle);
                });
            })
            .expect("spawn the stand-in's thread");
        let (url, kubeconfig_yaml, state) = ready_receiver
            .await
            .expect("the stand-in's thread ended before it started serving")
            .unwrap_or_else(|error| panic!("the API stand-in did not start: {error}"));
        StandIn {
            url,
            kubeconfig_yaml,
            state,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn kubeconfig_yaml(&self) -> &str {
        &self.kubeconfig_yaml
    }

    /// Adds a fault rule; rules are checked in the order they were added.
    pub fn add_fault(&self, fault: Fault) {
        let rule = FaultRule::from_json(&fault.to_json())
            .unwrap_or_else(|error| panic!("invalid fault {fault:?}: {error:?}"));
        self.state.faults.add(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    /// Every request the stand-in answered since the start or the last `clear_requests`, oldest
    /// first (admin requests are not recorded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .faults
            .requests()
            .iter()
            .map(RecordedRequest::from_json)
            .collect()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.state.faults.clear_requests();
    }

    /// Closes every open watch stream (clients must re-watch); returns how many were open.
    pub fn drop_watches(&self) -> usize {
        self.state.store.drop_watches()
    }

    /// Forgets the watch history: a watch from any older resourceVersion now gets 410 Gone.
    pub fn compact(&self) {
        self.state.store.compact();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A fault rule: requests whose method and `path?query` match get an error status and/or latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    method: Option<String>,
    path: String,
    status: Option<u16>,
    retry_after: Option<u64>,
    latency: Option<Duration>,
    count: Option<u64>,
}

impl Fault {
    /// Matches requests of any method whose `path?query` (query percent-encoded, as sent)
    /// matches the regex `path`. Give it a `status` and/or a `latency`.
    pub fn new(path: impl Into<String>) -> Fault {
        Fault {
            method: None,
            path: path.into(),
            status: None,
            retry_after: None,
            latency: None,
            count: None,
        }
    }

    /// Only requests with this HTTP method (`GET`, `PUT`, `PATCH`, ...).
    pub fn method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Answer with this status (and a `Status` body) instead of handling the request.
    pub fn status(mut self, status: u16) -> Fault {
        self.status = Some(status);
        self
    }

    /// `Retry-After` seconds, for 429 and 5xx.
    pub fn retry_after(mut self, seconds: u64) -> Fault {
        self.retry_after = Some(seconds);
        self
    }

    /// Wait this long before answering (or before the error).
    pub fn latency(mut self, latency: Duration) -> Fault {
        self.latency = Some(latency);
        self
    }

    /// Apply to the next `count` matching requests only (default: all of them).
    pub fn times(mut self, count: u64) -> Fault {
        self.count = Some(count);
        self
    }

    /// The admin API's JSON form (`POST /_standin/faults`).
    pub fn to_json(&self) -> Value {
        let mut rule = json!({"path": self.path});
        let fields = [
            ("method", self.method.clone().map(Value::from)),
            ("status", self.status.map(Value::from)),
            ("retryAfter", self.retry_after.map(Value::from)),
            (
                "latencyMs",
                self.latency.map(|latency| {
                    Value::from(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX))
                }),
            ),
            ("count", self.count.map(Value::from)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                rule[key] = value;
            }
        }
        rule
    }
}

/// One entry of the stand-in's request log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The decoded query string.
    pub query: String,
    pub status: u16,
}

impl RecordedRequest {
    fn from_json(entry: &Value) -> RecordedRequest {
        let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
        RecordedRequest {
            method: text("method"),
            path: text("path"),
            query: text("query"),
            status: entry["status"]
                .as_u64()
                .and_then(|status| u16::try_from(status).ok())
                .unwrap_or_default(),
        }
    }

    /// Whether this was a watch request.
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    }
}
