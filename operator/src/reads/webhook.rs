//! The HTTPS endpoint the API server's audit webhook posts to (`POST /audit/events`): checks
//! the caller, parses the EventList, appends the reads of managed Secrets to the audit store as
//! one transaction keyed by auditID, and answers 200 only once that transaction committed.
//! Any other answer leaves nothing written, so the API server's retry loses nothing and adds
//! nothing twice.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use keyturn_audit::AuditStore;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::auth::BearerToken;
use super::event::parse_event_list;
use super::index::SecretIndex;
use super::record::records_for;
use crate::metrics::Metrics;

/// The path the API server's webhook kubeconfig points at.
pub const PATH: &str = "/audit/events";
/// Largest body accepted: the API server's default batch (400 events at Metadata level) is a
/// few hundred KiB; this leaves room for RequestResponse-level policies without letting a
/// caller make the operator buffer without bound.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may finish after shutdown (an append takes milliseconds).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the webhook needs.
#[derive(Debug, Clone)]
pub struct WebhookState {
    pub store: AuditStore,
    pub index: SecretIndex,
    /// Required bearer token; `None` when only mTLS authenticates callers.
    pub token: Option<BearerToken>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
}

/// Serves the webhook on `listener` with `tls` until `shutdown` resolves, then stops accepting
/// and lets requests in flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    state: WebhookState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, path = PATH, "serving the audit webhook");
    let acceptor = TlsAcceptor::from(tls);
    let state = Arc::new(state);
    crate::http::accept_until(
        listener,
        "audit webhook",
        SHUTDOWN_GRACE,
        shutdown,
        move |stream, stop| serve_connection(stream, acceptor.clone(), Arc::clone(&state), stop),
    )
    .await;
    tracing::info!(%address, "stopped serving the audit webhook");
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    state: Arc<WebhookState>,
    stop: watch::Receiver<bool>,
) {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            // Includes clients without an acceptable certificate under mTLS.
            tracing::info!(%error, "audit webhook TLS handshake refused");
            state.metrics.audit_webhook_request("handshake_failed");
            return;
        }
        Err(_) => {
            state.metrics.audit_webhook_request("handshake_failed");
            return;
        }
    };
    let service = service_fn(move |request: Request<Incoming>| {
        let state = Arc::clone(&state);
        async move {
            let response = respond(&state, request).await;
            state
                .metrics
                .audit_webhook_request(response.status().as_str());
            Ok::<_, Infallible>(response)
        }
    });
    crate::http::serve_http1(stream, service, stop, HEADER_READ_TIMEOUT, "audit webhook").await;
}

async fn respond(state: &WebhookState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != PATH {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if request.method() != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if let Some(token) = &state.token {
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !token.accepts(presented) {
            let mut response = text(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    if !is_json(request.headers().get(CONTENT_TYPE)) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type must be application/json",
        );
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.max_body_bytes as u64) {
        return too_large(state.max_body_bytes);
    }
    let body = match Limited::new(request.into_body(), state.max_body_bytes)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return too_large(state.max_body_bytes),
        Err(error) => {
            return text(StatusCode::BAD_REQUEST, &format!("read the body: {error}"));
        }
    };
    let events = match parse_event_list(&body) {
        Ok(events) => events,
        Err(error) => return text(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    drop(body);
    if !state.index.is_ready() {
        return unavailable("the index of managed Secrets is still loading");
    }
    let batch = records_for(&events, &state.index, Utc::now());
    match state.store.append_batch_once(&batch.keyed).await {
        Ok(appended) => {
            for record in &appended.records {
                state.metrics.secret_read(&record.outcome);
            }
            tracing::debug!(
                events = events.len(),
                secret_reads = batch.secret_reads,
                recorded = appended.records.len(),
                duplicates = appended.duplicate_keys,
                "audit events accepted"
            );
            text(StatusCode::OK, "ok")
        }
        Err(error) => {
            tracing::error!(%error, events = events.len(), "audit webhook: reads not recorded; the API server will retry");
            unavailable("the audit store is unavailable; nothing of this batch was recorded")
        }
    }
}

/// `application/json`, with or without parameters.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("body larger than {limit} bytes; lower --audit-webhook-batch-max-size"),
    )
}

fn unavailable(message: &str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert!(
                is_json(Some(&HeaderValue::from_static(accepted))),
                "{accepted}"
            );
        }
        for refused in ["text/plain", "application/yaml", "application/jsonx"] {
            assert!(
                !is_json(Some(&HeaderValue::from_static(refused))),
                "{refused}"
            );
        }
        assert!(!is_json(None));
    }
}
