//! The operator's own small HTTP server: `/metrics` for Prometheus and the `/healthz` and
//! `/readyz` probes for the kubelet. It owns the readiness flag and the accept loop; the caller
//! binds the listener and decides when to shut down.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::Metrics;

/// Content type of `/metrics` answers: the OpenMetrics text format that `Metrics::encode` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// How long open connections may finish their request after shutdown before they are dropped:
/// probes and scrapes are quick, and a stuck client must not hold the process up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A client that opens a connection and sends nothing is dropped after this long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct ReadinessState {
    ready: bool,
    reason: String,
}

/// Whether the operator is ready to serve, shared between whoever decides it (the controller)
/// and `/readyz`. Clones share one flag. It starts not ready with the reason `starting`.
#[derive(Debug, Clone)]
pub struct Readiness {
    state: Arc<Mutex<ReadinessState>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// A flag that is not ready yet (reason `starting`).
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(ReadinessState {
                ready: false,
                reason: "starting".to_owned(),
            })),
        }
    }

    // A panic while holding this lock cannot leave the two plain fields inconsistent in a way
    // that matters, so a poisoned lock is used as is rather than failing every probe.
    fn lock(&self) -> MutexGuard<'_, ReadinessState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the operator ready, or not ready with the generic reason `not ready`.
    pub fn set_ready(&self, ready: bool) {
        let mut state = self.lock();
        state.ready = ready;
        state.reason = if ready {
            String::new()
        } else {
            "not ready".to_owned()
        };
    }

    /// Marks the operator not ready and says why; `/readyz` shows the reason, so it must be a
    /// short plain text without secret values (e.g. `waiting for leadership`).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        let mut state = self.lock();
        state.ready = false;
        state.reason = reason.into();
    }

    /// Whether the operator is ready.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// Why the operator is not ready, or `None` while it is ready.
    pub fn reason(&self) -> Option<String> {
        let state = self.lock();
        (!state.ready).then(|| state.reason.clone())
    }
}

/// What the HTTP server reads: the metrics to encode and the readiness flag.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` resolves, then
/// stops accepting, lets open connections finish their current request (at most a few
/// seconds) and returns.
///
/// Errors: reading the listener's local address. Failed accepts (a client that hung up, too
/// many open files) are logged and retried, since a probe server that exits would get the pod
/// killed for a passing condition.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving metrics and health probes");
    let state = Arc::new(state);
    accept_until(
        listener,
        "metrics listener",
        SHUTDOWN_GRACE,
        shutdown,
        move |stream, stop| serve_connection(stream, Arc::clone(&state), stop),
    )
    .await;
    tracing::info!(%address, "stopped serving metrics and health probes");
    Ok(())
}

/// The accept loop both servers share: each connection is served by `serve` in its own task
/// (given a receiver that turns true at shutdown); once `shutdown` resolves, no more are
/// accepted and open ones get `grace` to finish. Failed accepts (a client that hung
/// up, too many open files) are logged and retried after a pause rather than ending the server.
pub(crate) async fn accept_until<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send,
    serve: F,
) where
    F: Fn(TcpStream, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |address| address.to_string());
    let (stop_sender, stop_receiver) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve(stream, stop_receiver.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, %address, "accept a connection on the {what}");
                    // Out of file descriptors and similar persist for a moment: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow with every request.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Receivers only ever wait for a change; an error means every connection already ended.
    let _ = stop_sender.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "{what}: connections still open after the shutdown grace period: dropping them"
        );
        connections.shutdown().await;
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<HttpState>, stop: watch::Receiver<bool>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&state, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    serve_http1(stream, service, stop, HEADER_READ_TIMEOUT, "metrics").await;
}

/// Serves one HTTP/1 connection until the client closes it or `stop` turns true; then the
/// request in flight finishes and the connection closes instead of being kept alive.
pub(crate) async fn serve_http1<IO, S, B>(
    io: IO,
    service: S,
    mut stop: watch::Receiver<bool>,
    header_read_timeout: Duration,
    what: &'static str,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        // The guard `wait_for` returns is not Send: drop it inside the branch future.
        () = async { drop(stop.wait_for(|stopped| *stopped).await) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // Clients hanging up mid-request are routine (probes, retries); nothing to act on.
        tracing::debug!(%error, "serve a {what} connection");
    }
}

fn respond(state: &HttpState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text_response(StatusCode::NOT_FOUND, "not found\n".to_owned());
    }
    if request.method() != Method::GET {
        let mut response = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".to_owned(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    match path {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
            );
            response
        }
        "/readyz" => match state.readiness.reason() {
            None => text_response(StatusCode::OK, "ok\n".to_owned()),
            Some(reason) => text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        // Answering at all is the health signal: the process and its runtime are alive.
        _ => text_response(StatusCode::OK, "ok\n".to_owned()),
    }
}

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_CONTENT_TYPE));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    use super::*;

    struct Answer {
        status: u16,
        head: String,
        body: String,
    }

    /// Sends one HTTP/1.1 request with `Connection: close` and reads the whole answer.
    async fn request(address: SocketAddr, method: &str, path: &str) -> Answer {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut raw = String::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut raw))
            .await
            .expect("the server answers and closes")
            .unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Answer {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    async fn start() -> (
        SocketAddr,
        HttpState,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = HttpState {
            metrics: Arc::new(Metrics::new()),
            readiness: Readiness::new(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        (address, state, stop, server)
    }

    #[tokio::test]
    async fn endpoints_answer_as_documented() {
        let (address, state, stop, server) = start().await;

        let healthz = request(address, "GET", "/healthz").await;
        assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok\n"));

        let readyz = request(address, "GET", "/readyz").await;
        assert_eq!(readyz.status, 503);
        assert_eq!(readyz.body, "not ready: starting\n");
        state.readiness.set_not_ready("waiting for leadership");
        let readyz = request(address, "GET", "/readyz").await;
        assert_eq!(
            (readyz.status, readyz.body.as_str()),
            (503, "not ready: waiting for leadership\n")
        );
        state.readiness.set_ready(true);
        assert!(state.readiness.is_ready());
        let readyz = request(address, "GET", "/readyz?verbose").await;
        assert_eq!((readyz.status, readyz.body.as_str()), (200, "ok\n"));
        state.readiness.set_ready(false);
        assert_eq!(request(address, "GET", "/readyz").await.status, 503);

        state.metrics.set_leader(true);
        let metrics = request(address, "GET", "/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(
            metrics.head.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            )
        );
        assert!(
            metrics.body.contains("\nkeyturn_leader 1\n"),
            "{}",
            metrics.body
        );
        assert!(metrics.body.ends_with("# EOF\n"));

        assert_eq!(request(address, "GET", "/nothing").await.status, 404);
        let post = request(address, "POST", "/metrics").await;
        assert_eq!(post.status, 405);
        assert!(post.head.contains("allow: get"));
        assert_eq!(request(address, "DELETE", "/healthz").await.status, 405);

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_closes_idle_connections() {
        let (address, _state, stop, server) = start().await;
        // A keep-alive connection that stays open across the shutdown.
        let mut idle = TcpStream::connect(address).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0_u8; 1024];
        let read = idle.read(&mut buffer).await.unwrap();
        assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();

        // The idle connection was closed (end of stream, or a reset) rather than kept alive.
        let after = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut buffer))
            .await
            .expect("the idle connection is closed");
        assert!(matches!(after, Ok(0) | Err(_)));
        // And nobody accepts new connections any more.
        let refused = match TcpStream::connect(address).await {
            Err(_) => true,
            Ok(mut stream) => {
                let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await;
                matches!(stream.read(&mut buffer).await, Ok(0) | Err(_))
            }
        };
        assert!(refused);
    }
}
