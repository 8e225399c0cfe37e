//! The rotator contract: the cases every rotator must pass against its real server. A backend's
//! test file implements [`Backend`] and calls each `contract::*` function from its own `#[test]`s,
//! so a failure names the backend and the case.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use keyturn_rotators::{
    Credential, CredentialId, RotationContext, Rotator, RotatorError, SecretValue,
};

/// A password no error, Debug output or log line may ever contain.
pub const CANARY: &str = "CanaryPw0rd7f3a9cDoNotLeak";

/// Generous bound on any single step, so a hanging backend fails the test instead of CI.
/// Not a timing assertion: a correct rotator answers in well under a second here.
const STEP_GUARD: Duration = Duration::from_secs(90);

/// One real backend under test. Each call to `fresh_target` gives a new, independent target
/// (a new role, secret or path) so cases can run in parallel.
pub trait Backend: Sync {
    type Target: Send + Sync;
    type Rotator: Rotator;

    /// A new target on the real server, set up the way an operator would before using keyturn.
    fn fresh_target(&self) -> impl Future<Output = Self::Target> + Send;
    /// The rotator for `target`, built as the factory would build it.
    fn rotator(&self, target: &Self::Target) -> Self::Rotator;
    /// The same rotator pointed at `address` instead of the real server.
    fn rotator_at(&self, target: &Self::Target, address: SocketAddr) -> Self::Rotator;
    /// The same rotator with admin credentials the server refuses.
    fn rotator_with_wrong_admin(&self, target: &Self::Target) -> Self::Rotator;
    /// Whether the server accepts `credential` now: a fresh login, or the value being the
    /// backend's current one where there is no login.
    fn accepts(
        &self,
        target: &Self::Target,
        credential: &Credential,
    ) -> impl Future<Output = bool> + Send;
    /// Whether `retire` makes a credential unusable on this backend (PostgreSQL yes; AWS keeps
    /// AWSPREVIOUS readable, which is the backend's documented behaviour).
    fn retire_revokes(&self) -> bool;
    /// Backend-specific invariants after a completed rotation (no dangling AWSPENDING, one KV
    /// version current, grants equal...). Panics with a clear message when violated.
    fn assert_consistent(&self, target: &Self::Target) -> impl Future<Output = ()> + Send;
}

pub fn context(rotation_id: &str, current: Option<CredentialId>) -> RotationContext {
    RotationContext {
        rotation_id: rotation_id.to_owned(),
        started_at: Utc::now(),
        valid_until: Some(Utc::now() + chrono::Duration::hours(1)),
        current,
    }
}

async fn guarded<T>(
    what: &str,
    future: impl Future<Output = Result<T, RotatorError>>,
) -> Result<T, RotatorError> {
    match tokio::time::timeout(STEP_GUARD, future).await {
        Ok(result) => result,
        Err(_) => panic!(
            "{what} did not return within {STEP_GUARD:?}: a rotator must time out on its own"
        ),
    }
}

async fn ok<T>(what: &str, future: impl Future<Output = Result<T, RotatorError>>) -> T {
    guarded(what, future)
        .await
        .unwrap_or_else(|error| panic!("{what} failed: {error}"))
}

/// Runs create → set → test → finish and returns the new credential.
pub async fn rotate<R: Rotator + ?Sized>(rotator: &R, context: &RotationContext) -> Credential {
    let pending = ok("create", rotator.create(context)).await;
    ok("set", rotator.set(context, &pending)).await;
    ok("test", rotator.test(context, &pending)).await;
    ok("finish", rotator.finish(context, &pending)).await;
    pending
}

/// First issuance, a second rotation, and retiring the first credential.
pub async fn happy_path<B: Backend>(backend: &B) {
    let target = backend.fresh_target().await;
    let rotator = backend.rotator(&target);
    let first = rotate(&rotator, &context("rot-happy-1", None)).await;
    assert!(
        backend.accepts(&target, &first).await,
        "the first credential must work after finish"
    );
    let second_context = context("rot-happy-2", Some(first.id.clone()));
    let second = rotate(&rotator, &second_context).await;
    assert!(
        backend.accepts(&target, &second).await,
        "the second credential must work after finish"
    );
    assert_ne!(
        first.fingerprint(),
        second.fingerprint(),
        "a rotation must change the value"
    );
    ok("retire", rotator.retire(&second_context, &first.id)).await;
    assert!(
        backend.accepts(&target, &second).await,
        "retiring the previous must not touch the current"
    );
    if backend.retire_revokes() {
        assert!(
            !backend.accepts(&target, &first).await,
            "the retired credential must be refused"
        );
    }
    ok("retire again", rotator.retire(&second_context, &first.id)).await;
    backend.assert_consistent(&target).await;
}

/// Every step called twice in a row does nothing more the second time.
pub async fn each_step_twice<B: Backend>(backend: &B) {
    let target = backend.fresh_target().await;
    let rotator = backend.rotator(&target);
    let first = rotate(&rotator, &context("rot-twice-1", None)).await;
    let context = context("rot-twice-2", Some(first.id.clone()));
    let pending = ok("create", rotator.create(&context)).await;
    ok("set", rotator.set(&context, &pending)).await;
    ok("set again", rotator.set(&context, &pending)).await;
    ok("test", rotator.test(&context, &pending)).await;
    ok("test again", rotator.test(&context, &pending)).await;
    ok("finish", rotator.finish(&context, &pending)).await;
    ok("finish again", rotator.finish(&context, &pending)).await;
    assert!(
        backend.accepts(&target, &pending).await,
        "the new credential must work after repeated steps"
    );
    ok("retire", rotator.retire(&context, &first.id)).await;
    ok("retire again", rotator.retire(&context, &first.id)).await;
    assert!(
        backend.accepts(&target, &pending).await,
        "the new credential must survive repeated retire"
    );
    backend.assert_consistent(&target).await;
}

/// A crash after each step: a new rotator (as after a restart) resumes from the persisted
/// pending credential, re-running the step that may or may not have completed.
pub async fn crash_after_each_step<B: Backend>(backend: &B) {
    for completed_steps in 1..=4usize {
        let target = backend.fresh_target().await;
        let before = rotate(
            &backend.rotator(&target),
            &context(&format!("rot-crash-{completed_steps}-a"), None),
        )
        .await;
        let context = context(
            &format!("rot-crash-{completed_steps}-b"),
            Some(before.id.clone()),
        );
        // The run that crashes.
        let pending = {
            let rotator = backend.rotator(&target);
            let pending = ok("create", rotator.create(&context)).await;
            if completed_steps >= 2 {
                ok("set", rotator.set(&context, &pending)).await;
            }
            if completed_steps >= 3 {
                ok("test", rotator.test(&context, &pending)).await;
            }
            if completed_steps >= 4 {
                ok("finish", rotator.finish(&context, &pending)).await;
            }
            pending
        };
        // The restarted run: the staged credential was persisted before the crash; the last
        // step is repeated because its completion may not have been recorded.
        let rotator = backend.rotator(&target);
        ok("set after restart", rotator.set(&context, &pending)).await;
        ok("test after restart", rotator.test(&context, &pending)).await;
        ok("finish after restart", rotator.finish(&context, &pending)).await;
        assert!(
            backend.accepts(&target, &pending).await,
            "after a crash following step {completed_steps}, the staged credential must be the working one"
        );
        ok("retire after restart", rotator.retire(&context, &before.id)).await;
        assert!(backend.accepts(&target, &pending).await);
        backend.assert_consistent(&target).await;
    }
}

/// A closed port: every backend call fails fast with a retryable error.
pub async fn backend_down<B: Backend>(backend: &B) {
    let target = backend.fresh_target().await;
    let closed = closed_port();
    let rotator = backend.rotator_at(&target, closed);
    let pending = staged_canary(&rotator, &context("rot-down", None)).await;
    let error = guarded(
        "set against a closed port",
        rotator.set(&context("rot-down", None), &pending),
    )
    .await
    .expect_err("set must fail when the backend is down");
    assert!(
        error.is_retryable(),
        "a down backend is retryable, got: {error}"
    );
    assert_no_canary(&error);
}

/// A server that accepts connections and never answers: calls time out as retryable errors.
pub async fn backend_hangs<B: Backend>(backend: &B) {
    let target = backend.fresh_target().await;
    let address = black_hole().await;
    let rotator = backend.rotator_at(&target, address);
    let context = context("rot-slow", None);
    let pending = staged_canary(&rotator, &context).await;
    let error = guarded(
        "set against a server that never answers",
        rotator.set(&context, &pending),
    )
    .await
    .expect_err("set must fail when the backend never answers");
    assert!(
        error.is_retryable(),
        "a hanging backend is retryable, got: {error}"
    );
    assert_no_canary(&error);
}

/// Admin credentials the server refuses: a permanent error naming the call.
pub async fn wrong_admin_credentials<B: Backend>(backend: &B) {
    let target = backend.fresh_target().await;
    let rotator = backend.rotator_with_wrong_admin(&target);
    let context = context("rot-wrong-admin", None);
    let pending = staged_canary(&rotator, &context).await;
    let error = guarded(
        "set with wrong admin credentials",
        rotator.set(&context, &pending),
    )
    .await
    .expect_err("set must fail with wrong admin credentials");
    assert!(
        !error.is_retryable(),
        "wrong admin credentials are permanent, got: {error}"
    );
    assert_no_canary(&error);
}

/// A staged credential carrying the canary password, keeping whatever id/username `create` chose.
pub async fn staged_canary<R: Rotator>(rotator: &R, context: &RotationContext) -> Credential {
    let created = match guarded("create", rotator.create(context)).await {
        Ok(credential) => credential,
        // Backends that issue the value in `create` cannot create offline: stage by hand.
        Err(_) => Credential {
            id: CredentialId(format!("{}-canary", context.rotation_id)),
            username: None,
            password: SecretValue::new(CANARY),
            expires_at: None,
        },
    };
    Credential {
        password: SecretValue::new(CANARY),
        ..created
    }
}

pub fn assert_no_canary(error: &RotatorError) {
    for text in [
        error.to_string(),
        format!("{error:?}"),
        format!("{error:#?}"),
    ] {
        assert!(
            !text.contains(CANARY),
            "an error leaked the credential: {text}"
        );
    }
}

/// A loopback port nothing listens on.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let address = listener.local_addr().expect("local address");
    drop(listener);
    address
}

/// A loopback server that accepts connections and never sends a byte.
pub async fn black_hole() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    address
}
