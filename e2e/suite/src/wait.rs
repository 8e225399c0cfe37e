//! Polling with a deadline: `wait_for` retries a probe every 150 ms and, on timeout, panics with
//! what it waited for, the last thing it saw and the tail of every running operator's log.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use crate::operator::registered_log_tails;

/// A generous default for waits on the operator: long enough for a slow CI machine, short enough
/// that a hung test fails while its logs still say why.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a probe is retried. Short enough to keep tests quick, long enough not to flood the
/// API server (or the stand-in's request log).
const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// Log lines of each operator shown when a wait times out.
const LOG_TAIL_LINES: usize = 40;

/// What a probe returns: done with a value, or not yet (with what it saw, for the timeout message).
///
/// `Option<T>`: `Some` is done. `Result<T, E>`: `Err(observed)` is not yet, and `observed`
/// (`Debug`) is shown if the wait times out; return the object you looked at there.
pub trait Probe {
    type Output;
    /// `Ok` when done; otherwise a description of what was observed.
    fn into_outcome(self) -> Result<Self::Output, String>;
}

impl<T> Probe for Option<T> {
    type Output = T;
    fn into_outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "None (the probe found nothing yet)".to_owned())
    }
}

impl<T, E: Debug> Probe for Result<T, E> {
    type Output = T;
    fn into_outcome(self) -> Result<T, String> {
        self.map_err(|observed| format!("{observed:#?}"))
    }
}

/// Calls `probe` every 150 ms until it is done and returns its value.
///
/// `probe` may be an async closure (`async || ...`, which may borrow and mutate what it captures)
/// or a closure returning a future. The wait is not `Send` (a limit of async closures today): run
/// concurrent waits with `tokio::join!`, or in `spawn_local` tasks, not with `tokio::spawn`.
///
/// # Panics
/// After `timeout`, with `description`, the last observation and the tail of the log of every
/// operator process still registered (spawned and not yet dropped).
pub async fn wait_for<F, P>(description: &str, timeout: Duration, mut probe: F) -> P::Output
where
    F: AsyncFnMut() -> P,
    P: Probe,
{
    let mut attempts = Attempts::new(timeout);
    loop {
        // A probe that hangs (a request stuck behind injected latency) must not outlive the wait.
        let last_observed = match tokio::time::timeout(attempts.probe_budget(), probe()).await {
            Ok(outcome) => match outcome.into_outcome() {
                Ok(value) => return value,
                Err(observed) => observed,
            },
            Err(_) => "the probe itself did not finish in time".to_owned(),
        };
        attempts.pause_or_fail(description, &last_observed).await;
    }
}

/// Calls `observe` until `accept` holds for what it returns, and returns that observation.
///
/// # Panics
/// After `timeout`, like [`wait_for`], showing the last observation (`Debug`).
pub async fn wait_until<F, V, A>(
    description: &str,
    timeout: Duration,
    mut observe: F,
    accept: A,
) -> V
where
    F: AsyncFnMut() -> V,
    V: Debug,
    A: Fn(&V) -> bool,
{
    let mut attempts = Attempts::new(timeout);
    loop {
        let last_observed = match tokio::time::timeout(attempts.probe_budget(), observe()).await {
            Ok(observed) if accept(&observed) => return observed,
            Ok(observed) => format!("{observed:#?}"),
            Err(_) => "the observation itself did not finish in time".to_owned(),
        };
        attempts.pause_or_fail(description, &last_observed).await;
    }
}

/// The bookkeeping of one wait: the deadline, the attempts so far, the failure message.
struct Attempts {
    started: Instant,
    deadline: Instant,
    count: u64,
}

impl Attempts {
    fn new(timeout: Duration) -> Attempts {
        let started = Instant::now();
        Attempts {
            started,
            deadline: started + timeout,
            count: 0,
        }
    }

    /// How long the next probe may take: what is left, but at least one poll interval.
    fn probe_budget(&mut self) -> Duration {
        self.count += 1;
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(POLL_INTERVAL)
    }

    /// Sleeps until the next attempt, or panics when the deadline has passed.
    async fn pause_or_fail(&self, description: &str, last_observed: &str) {
        let now = Instant::now();
        if now >= self.deadline {
            panic!(
                "timed out after {:.1}s ({} attempts) waiting for: {description}\n\
                 last observed: {last_observed}\n{}",
                self.started.elapsed().as_secs_f64(),
                self.count,
                registered_log_tails(LOG_TAIL_LINES)
            );
        }
        tokio::time::sleep(POLL_INTERVAL.min(self.deadline - now)).await;
    }
}
