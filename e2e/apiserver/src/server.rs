//! The HTTP front: routes Kubernetes REST paths (core `/api/v1` and `/apis/{group}/{version}`),
//! streams watches as JSON lines, and serves the `/_standin/*` admin API for faults and logs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::faults::{FaultRule, Faults};
use crate::resources::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{self, Event, EventType, Store, WriteOptions};
use crate::table::{self, Include};

type Resp = Response<BoxBody<Bytes, Infallible>>;

/// Start-up configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Loopback port (0: an ephemeral one).
    pub port: u16,
    /// CRD YAML documents whose resources are served.
    pub crds: Vec<String>,
    /// Events retained for watches; older resourceVersions get 410 Gone.
    pub history_limit: usize,
    /// How often open watches get a BOOKMARK (when asked for).
    pub bookmark_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 0,
            crds: Vec::new(),
            history_limit: 1000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// Shared server state.
#[derive(Debug)]
pub struct State {
    /// Objects.
    pub store: Store,
    /// Served types.
    pub types: Vec<ResourceType>,
    /// Fault rules and request log.
    pub faults: Faults,
    bookmark_interval: Duration,
}

/// A running stand-in; dropping it stops the server.
#[derive(Debug)]
pub struct Handle {
    /// Bound address.
    pub addr: SocketAddr,
    /// Shared state (store, faults, request log).
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Handle {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this server (namespace `default`, no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\n\
             contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: default\n\
             current-context: standin\nusers:\n- name: standin\n  user: {{}}\n",
            self.url()
        )
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.shutdown.send(true);
    }
}

/// Binds 127.0.0.1:`config.port` and serves in the background.
pub async fn start(config: Config) -> std::io::Result<Handle> {
    let mut types = resources::builtins();
    for crd in &config.crds {
        types.extend(resources::from_crd_yaml(crd).map_err(std::io::Error::other)?);
    }
    let state = Arc::new(State {
        store: Store::new(config.history_limit),
        types,
        faults: Faults::default(),
        bookmark_interval: config.bookmark_interval,
    });
    // The namespaces every cluster has; objects can only be created in existing namespaces.
    let ns_type = resources::find(&state.types, "", "v1", "namespaces")
        .ok_or_else(|| std::io::Error::other("no namespaces type"))?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"metadata": {"name": ns}});
        state
            .store
            .create(ns_type, "", obj, &WriteOptions::default())
            .map_err(std::io::Error::other)?;
    }
    let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
    let addr = listener.local_addr()?;
    let st = state.clone();
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let st = st.clone();
            let mut stop = shutdown_rx.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper::service::service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(handle(st, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
                // Dropping the Handle closes open connections (and their watches) too.
                tokio::select! {
                    _ = conn => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        }
    });
    Ok(Handle {
        addr,
        state,
        task,
        shutdown,
    })
}

fn json_resp(code: u16, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn err_resp(e: &ApiError) -> Resp {
    json_resp(e.code, &e.to_status())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// A parsed resource path.
struct Target<'a> {
    t: &'a ResourceType,
    ns: Option<String>,
    name: Option<String>,
    status: bool,
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path.starts_with("/_standin/") {
        return admin(&st, req).await;
    }
    let target = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let action = st.faults.check(method.as_str(), &target);
    if let Some(d) = action.latency {
        tokio::time::sleep(d).await;
    }
    let resp = if let Some((code, retry_after)) = action.error {
        let reason = match code {
            409 => "Conflict",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        let mut status =
            ApiError::new(code, reason, format!("injected fault ({code})")).to_status();
        if let Some(s) = retry_after {
            status["details"] = json!({"retryAfterSeconds": s});
        }
        let mut r = json_resp(code, &status);
        if let Some(s) = retry_after
            && let Ok(v) = hyper::header::HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert("retry-after", v);
        }
        r
    } else {
        match route(&st, req).await {
            Ok(r) => r,
            Err(e) => err_resp(&e),
        }
    };
    st.faults.record(
        method.as_str(),
        &path,
        &percent_decode(&query),
        resp.status().as_u16(),
    );
    resp
}

async fn admin(st: &State, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = read_body(req).await;
    let ok = json!({"ok": true});
    match (method, path.as_str()) {
        (Method::POST, "/_standin/faults") => {
            let parsed = body.and_then(|b| {
                serde_json::from_slice::<Value>(&b)
                    .map_err(|e| ApiError::bad_request(e.to_string()))
            });
            match parsed.and_then(|v| FaultRule::from_json(&v)) {
                Ok(rule) => {
                    st.faults.add(rule);
                    json_resp(201, &ok)
                }
                Err(e) => err_resp(&e),
            }
        }
        (Method::DELETE, "/_standin/faults") => {
            st.faults.clear();
            json_resp(200, &ok)
        }
        (Method::GET, "/_standin/requests") => json_resp(200, &json!(st.faults.requests())),
        (Method::DELETE, "/_standin/requests") => {
            st.faults.clear_requests();
            json_resp(200, &ok)
        }
        (Method::POST, "/_standin/drop-watches") => {
            json_resp(200, &json!({"dropped": st.store.drop_watches()}))
        }
        (Method::POST, "/_standin/compact") => {
            st.store.compact();
            json_resp(200, &ok)
        }
        _ => err_resp(&ApiError::not_found("admin", &path)),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    req.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))
}

/// The object in a POST or PUT body: JSON or YAML, as a real server reads them. Protobuf (which
/// kubectl's typed clients send for built-ins, e.g. `kubectl create namespace`) and CBOR get 415,
/// naming what is accepted; client-go falls back to JSON after a 415 for CBOR, not for protobuf.
fn parse_object(content_type: &str, b: &[u8]) -> Result<Value, ApiError> {
    match content_type {
        "" | "application/json" | "*/*" => parse_json(b),
        "application/yaml" => serde_yaml::from_slice(b)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}"))),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json, application/yaml (got {other:?}; the keyturn stand-in does not \
                 speak protobuf: use `kubectl apply -f` instead of `kubectl create <type>`)"
            ),
        )),
    }
}

fn parse_json(b: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

fn resolve<'a>(st: &'a State, segs: &[&str]) -> Result<Result<Target<'a>, Value>, ApiError> {
    let nf = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let (group, version, rest) = match segs {
        ["api"] => return Ok(Err(resources::core_versions())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis"] => return Ok(Err(resources::group_list(&st.types))),
        ["apis", g] => return resources::group(&st.types, g).map(Err).ok_or_else(nf),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        // kubectl's validation looks for the `fieldValidation` parameter here (crate::openapi).
        ["openapi", "v3"] => return Ok(Err(crate::openapi::root(&st.types))),
        ["openapi", "v3", gv @ ..] => {
            return crate::openapi::group_version(&st.types, &gv.join("/"))
                .map(Err)
                .ok_or_else(nf);
        }
        ["version"] => {
            return Ok(Err(
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-keyturn-standin",
                                  "platform": "linux/amd64"}),
            ));
        }
        _ => return Err(nf()),
    };
    if rest.is_empty() {
        return resources::resource_list(&st.types, group, version)
            .map(Err)
            .ok_or_else(nf);
    }
    let (ns, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() => (Some((*ns).to_string()), r),
        r => (None, r),
    };
    let t = resources::find(&st.types, group, version, rest[0]).ok_or_else(nf)?;
    if ns.is_some() && !t.namespaced {
        return Err(nf());
    }
    let status = match rest.get(2) {
        None => false,
        Some(&"status") if t.status_subresource => true,
        Some(_) => return Err(nf()),
    };
    if rest.len() > 3 {
        return Err(nf());
    }
    Ok(Ok(Target {
        t,
        ns,
        name: rest.get(1).map(|s| (*s).to_string()),
        status,
    }))
}

async fn route(st: &Arc<State>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let path = req.uri().path().to_string();
    if path == "/healthz" || path == "/readyz" || path == "/livez" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok")).boxed()));
    }
    let q = parse_query(req.uri().query().unwrap_or(""));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let target = match resolve(st, &segs)? {
        Err(doc) => return Ok(json_resp(200, &doc)),
        Ok(t) => t,
    };
    let Target {
        t,
        ns,
        name,
        status,
    } = target;
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // `Accept: ...;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`: metadata-only answers.
    let meta_only = accept.contains("as=PartialObjectMetadata");
    // `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...` (kubectl get): server-side
    // printing, for reads only, as on a real server.
    let form = match table::table_version(&accept) {
        Some(v) if req.method() == Method::GET => Form::Table(
            v,
            Include::parse(q.get("includeObject").map(String::as_str))?,
        ),
        _ if meta_only => Form::Meta,
        _ => Form::Full,
    };
    let out = |code: u16, v: &Value| {
        if meta_only {
            json_resp(code, &to_meta(v))
        } else {
            json_resp(code, v)
        }
    };
    let user_agent = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = read_body(req).await?;
    // Non-apply writes record field ownership like a real server: `fieldManager`, else the
    // User-Agent up to its first '/'.
    let field_manager = q
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .or_else(|| {
            user_agent
                .split('/')
                .next()
                .filter(|m| !m.is_empty())
                .map(String::from)
        });
    let opts = WriteOptions {
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
        field_manager: Some(field_manager.unwrap_or_else(|| "unknown".into())),
    };
    let ns_req = || -> Result<String, ApiError> {
        if t.namespaced {
            ns.clone()
                .ok_or_else(|| ApiError::new(404, "NotFound", "the namespace is required"))
        } else {
            Ok(String::new())
        }
    };
    match (method, name) {
        (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(st, t, ns.as_deref(), &q, form)
        }
        (Method::GET, None) => list(st, t, ns.as_deref(), &q, form),
        (Method::GET, Some(n)) => {
            let obj = st.store.get(t, &ns_req()?, &n)?;
            Ok(match form {
                Form::Table(version, include) => json_resp(
                    200,
                    &table::to_table(t, &[obj], None, include, version, chrono::Utc::now()),
                ),
                _ => out(200, &obj),
            })
        }
        (Method::POST, None) => Ok(out(
            201,
            &st.store
                .create(t, &ns_req()?, parse_object(&content_type, &body)?, &opts)?,
        )),
        (Method::PUT, Some(n)) => Ok(out(
            200,
            &st.store.replace(
                t,
                &ns_req()?,
                &n,
                parse_object(&content_type, &body)?,
                status,
                &opts,
            )?,
        )),
        (Method::PATCH, Some(n)) => {
            let ns = ns_req()?;
            match content_type.as_str() {
                "application/merge-patch+json" => Ok(out(
                    200,
                    &st.store
                        .merge_patch(t, &ns, &n, &parse_json(&body)?, status, &opts)?,
                )),
                "application/json-patch+json" => Ok(out(
                    200,
                    &st.store
                        .json_patch(t, &ns, &n, &parse_json(&body)?, status, &opts)?,
                )),
                // CRDs have no strategic merge patch (415, as on a real server): kubectl sends
                // them merge patches.
                "application/strategic-merge-patch+json" if !t.custom => Ok(out(
                    200,
                    &st.store
                        .strategic_patch(t, &ns, &n, &parse_json(&body)?, status, &opts)?,
                )),
                "application/apply-patch+yaml" => {
                    let applied: Value = serde_yaml::from_slice(&body)
                        .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")))?;
                    let manager =
                        q.get("fieldManager")
                            .filter(|m| !m.is_empty())
                            .ok_or_else(|| {
                                ApiError::bad_request("fieldManager is required for apply requests")
                            })?;
                    let force = q.get("force").is_some_and(|f| f == "true");
                    let (obj, created) = st
                        .store
                        .apply(t, &ns, &n, &applied, manager, force, status, &opts)?;
                    Ok(out(if created { 201 } else { 200 }, &obj))
                }
                other => Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: \
                             application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
                    ),
                )),
            }
        }
        (Method::DELETE, Some(n)) => {
            let opts_body = if body.is_empty() {
                json!({})
            } else {
                parse_json(&body)?
            };
            let opts = WriteOptions {
                field_manager: opts.field_manager.clone(),
                dry_run: opts.dry_run
                    || opts_body["dryRun"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v == "All")),
            };
            let orphan = opts_body["propagationPolicy"] == "Orphan"
                || opts_body["orphanDependents"] == true
                || q.get("propagationPolicy").is_some_and(|p| p == "Orphan");
            Ok(out(
                200,
                &st.store.delete(
                    t,
                    &ns_req()?,
                    &n,
                    &opts_body["preconditions"],
                    orphan,
                    &opts,
                )?,
            ))
        }
        (Method::DELETE, None) => {
            // deletecollection: every object matching the selectors, each deleted as by DELETE.
            let (ls, fs) = selectors(&q, t)?;
            let (items, _) = st.store.list(t, ns.as_deref());
            let mut deleted = Vec::new();
            for o in items.iter().filter(|o| ls.matches(o) && fs.matches(o)) {
                let ons = o["metadata"]["namespace"].as_str().unwrap_or("");
                let name = o["metadata"]["name"].as_str().unwrap_or("");
                match st.store.delete(t, ons, name, &Value::Null, false, &opts) {
                    Ok(d) => deleted.push(if meta_only { to_meta(&d) } else { d }),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let kind = if meta_only {
                "PartialObjectMetadataList".to_string()
            } else {
                format!("{}List", t.kind)
            };
            Ok(json_resp(
                200,
                &json!({"kind": kind, "apiVersion": t.api_version(),
                "metadata": {"resourceVersion": st.store.current_rv().to_string()}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// The `PartialObjectMetadata` form of an object.
fn to_meta(v: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": v["metadata"]})
}

/// The form of an answer, from the `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The objects.
    Full,
    /// `PartialObjectMetadata`.
    Meta,
    /// A `Table` (`meta.k8s.io/` version, what rows carry).
    Table(&'static str, Include),
}

fn selectors(
    q: &HashMap<String, String>,
    t: &ResourceType,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    Ok((
        LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?,
        FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), t)?,
    ))
}

fn list(
    st: &State,
    t: &ResourceType,
    ns: Option<&str>,
    q: &HashMap<String, String>,
    form: Form,
) -> Result<Resp, ApiError> {
    let (ls, fs) = selectors(q, t)?;
    let (items, rv) = st.store.list(t, ns);
    let mut items: Vec<Value> = items
        .into_iter()
        .filter(|o| ls.matches(o) && fs.matches(o))
        .collect();
    if let Some(cont) = q.get("continue").filter(|c| !c.is_empty()) {
        items.retain(|o| {
            let key = format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            );
            key.as_str() > cont.as_str()
        });
    }
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = &items[limit - 1]["metadata"];
        meta["continue"] = json!(format!(
            "{}/{}",
            last["namespace"].as_str().unwrap_or(""),
            last["name"].as_str().unwrap_or("")
        ));
        meta["remainingItemCount"] = json!(remaining);
    }
    if let Form::Table(version, include) = form {
        return Ok(json_resp(
            200,
            &table::to_table(t, &items, Some(meta), include, version, chrono::Utc::now()),
        ));
    }
    if form == Form::Meta {
        let items: Vec<Value> = items.iter().map(to_meta).collect();
        return Ok(json_resp(
            200,
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta, "items": items}),
        ));
    }
    Ok(json_resp(
        200,
        &json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": meta, "items": items}),
    ))
}

/// A response body fed by a channel (watch streams).
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// One watch event in the form the watcher asked for. Table watches (`kubectl get -w`) get a
/// one-row Table per event (a row-less one for a BOOKMARK); kubectl prints the column headers
/// once because the definitions stay the same.
fn line(kind: &str, object: &Value, form: Form, t: &ResourceType) -> Bytes {
    let object = match form {
        _ if kind == "ERROR" => object.clone(),
        Form::Full => object.clone(),
        Form::Meta => to_meta(object),
        Form::Table(version, _) if kind == "BOOKMARK" => json!({
            "kind": "Table", "apiVersion": version,
            "metadata": {"resourceVersion": object["metadata"]["resourceVersion"]},
            "columnDefinitions": [], "rows": []}),
        Form::Table(version, include) => table::to_table(
            t,
            std::slice::from_ref(object),
            None,
            include,
            version,
            chrono::Utc::now(),
        ),
    };
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// The event as this watcher sees it: namespace and selectors applied, with selector
/// transitions turned into ADDED/DELETED like the real server does.
fn filter_event(
    ev: &Event,
    type_id: &str,
    ns: Option<&str>,
    ls: &LabelSelector,
    fs: &FieldSelector,
) -> Option<(&'static str, Value)> {
    if ev.type_id != type_id
        || ns.is_some_and(|n| ev.object["metadata"]["namespace"].as_str() != Some(n))
    {
        return None;
    }
    let m = |o: &Value| ls.matches(o) && fs.matches(o);
    let now = m(&ev.object);
    let before = ev.old.as_ref().is_some_and(m);
    match ev.kind {
        EventType::Modified if now && !before => Some(("ADDED", ev.object.clone())),
        EventType::Modified if !now && before => Some(("DELETED", ev.object.clone())),
        EventType::Deleted if before => Some(("DELETED", ev.object.clone())),
        _ if now && ev.kind != EventType::Deleted => Some((ev.kind.as_str(), ev.object.clone())),
        _ => None,
    }
}

fn watch(
    st: &Arc<State>,
    t: &ResourceType,
    ns: Option<&str>,
    q: &HashMap<String, String>,
    form: Form,
) -> Result<Resp, ApiError> {
    let (ls, fs) = selectors(q, t)?;
    // Streaming lists (`sendInitialEvents=true`) start with the current state as ADDED events
    // and mark its end with an annotated BOOKMARK.
    let send_initial = q.get("sendInitialEvents").is_some_and(|b| b == "true");
    let from = match q.get("resourceVersion").map(String::as_str) {
        _ if send_initial => None,
        None | Some("" | "0") => None,
        Some(s) => Some(store::parse_rv(s)?),
    };
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            "sendInitialEvents requires allowWatchBookmarks=true",
        ));
    }
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut resp = Response::new(ChannelBody(rx).boxed());
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    let start = match st.store.watch(t, ns, from) {
        Ok(s) => s,
        Err(e) if e.code == 410 => {
            let _ = tx.try_send(line("ERROR", &e.to_status(), form, t));
            return Ok(resp);
        }
        Err(e) => return Err(e),
    };
    let (st, t, type_id, ns, kind, api_version) = (
        st.clone(),
        t.clone(),
        t.id(),
        ns.map(String::from),
        t.kind.clone(),
        t.api_version(),
    );
    tokio::spawn(async move {
        let store::WatchStart {
            initial,
            mut rx,
            rv,
        } = start;
        let mut last_rv = from.unwrap_or(rv);
        for ev in &initial {
            if let Some((k, o)) = filter_event(ev, &type_id, ns.as_deref(), &ls, &fs)
                && tx.send(line(k, &o, form, &t)).await.is_err()
            {
                return;
            }
            last_rv = last_rv.max(ev.rv);
        }
        if send_initial {
            let bm = json!({"kind": kind, "apiVersion": api_version, "metadata": {
                "resourceVersion": last_rv.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(line("BOOKMARK", &bm, form, &t)).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        let mut tick = tokio::time::interval(st.bookmark_interval);
        tick.tick().await;
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400));
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { return };
                    last_rv = last_rv.max(ev.rv);
                    if let Some((k, o)) = filter_event(&ev, &type_id, ns.as_deref(), &ls, &fs)
                        && tx.send(line(k, &o, form, &t)).await.is_err() {
                            return;
                        }
                }
                _ = tick.tick(), if bookmarks => {
                    let current = st.store.current_rv();
                    while let Ok(ev) = rx.try_recv() {
                        last_rv = last_rv.max(ev.rv);
                        if let Some((k, o)) = filter_event(&ev, &type_id, ns.as_deref(), &ls, &fs)
                            && tx.send(line(k, &o, form, &t)).await.is_err() {
                                return;
                            }
                    }
                    last_rv = last_rv.max(current);
                    let bm = json!({"kind": kind, "apiVersion": api_version,
                                    "metadata": {"resourceVersion": last_rv.to_string()}});
                    if tx.send(line("BOOKMARK", &bm, form, &t)).await.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(sleep_until) => return,
                () = tx.closed() => return,
            }
        }
    });
    Ok(resp)
}
