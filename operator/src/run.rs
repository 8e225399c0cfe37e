//! `keyturn-operator run`: wires the controller to the cluster. Serves /metrics, /healthz and
//! /readyz at once, opens the audit store, waits to lead (Lease), runs the controller and the
//! audit checkpoint writer while leading, and on SIGTERM lets running steps finish (up to
//! --shutdown-grace) and releases the Lease so a standby takes over without waiting for it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use keyturn_rotators::RotatorRegistry;
use kube::Client;
use tokio::sync::watch;

use crate::audit_checkpoints;
use crate::cli::RunArgs;
use crate::controller::audit_sink::AuditSink;
use crate::controller::crash::CrashPoint;
use crate::controller::{self, Context};
use crate::http::{self, HttpState, Readiness};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::logging::{self, LogFormat};
use crate::metrics::Metrics;
use crate::reads::auth::{AuthError, BearerToken, TlsFiles};
use crate::reads::index::SecretIndex;
use crate::reads::summary::ReadSummaries;
use crate::reads::webhook::{self, WebhookState};

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    // Rotators and kube use rustls without choosing a provider; the process picks ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let format: LogFormat = args
        .log_format
        .parse()
        .map_err(|error| anyhow::anyhow!("--log-format: {error}"))?;
    logging::init(format).context("set up logging")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let crash_point = CrashPoint::from_environment().map_err(anyhow::Error::msg)?;
    // Misconfigured webhook flags stop the process before it touches anything.
    let webhook_settings = webhook_settings(&args)?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::default();
    let (stop_sender, stop) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("bind --http-addr {}", args.http_addr))?;
    tracing::info!(address = %listener.local_addr().map_or_else(|_| args.http_addr.to_string(), |address| address.to_string()), "serving /metrics, /healthz and /readyz");
    let http_state = HttpState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let http_task = tokio::spawn(http::serve(listener, http_state, stopped(stop.clone())));

    let config = kube::Config::infer()
        .await
        .context("load the kubeconfig or in-cluster configuration")?;
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).context("build the Kubernetes client")?;
    let store = AuditSink::open(&args.audit_store).await.with_context(|| {
        format!(
            "open the audit store --audit-store {}",
            redact_url(&args.audit_store)
        )
    })?;
    let mut context = Context::new(
        client.clone(),
        RotatorRegistry::new(),
        AuditSink::new(store.clone()),
        metrics.clone(),
        &identity,
        crash_point,
    );
    let mut reads_summaries = None;
    let mut webhook_task = None;
    let mut index_task = None;
    if let Some((address, settings)) = webhook_settings {
        let index = SecretIndex::default();
        index_task = Some(tokio::spawn(crate::reads::index::run(
            client.clone(),
            args.watch_namespace.clone(),
            index.clone(),
        )));
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("bind --audit-webhook-addr {address}"))?;
        let state = WebhookState {
            store: store.clone(),
            index,
            token: settings.token,
            metrics: metrics.clone(),
            max_body_bytes: webhook::MAX_BODY_BYTES,
        };
        webhook_task = Some(tokio::spawn(webhook::serve(
            listener,
            settings.tls,
            state,
            stopped(stop.clone()),
        )));
        let own_identity = std::fs::read_to_string(crate::reads::SERVICE_ACCOUNT_TOKEN)
            .ok()
            .and_then(|token| crate::reads::own_identity(&token));
        tracing::info!(
            own_identity = own_identity.as_deref().unwrap_or("unknown"),
            "recording reads of managed Secrets from the audit webhook"
        );
        let summaries = Arc::new(ReadSummaries::new(own_identity));
        context = context.with_reads(summaries.clone());
        reads_summaries = Some(summaries);
    }
    let context = Arc::new(context);
    if crash_point.is_some() {
        tracing::warn!(
            "KEYTURN_TEST_CRASH_POINT is set: this process will abort on purpose (tests only)"
        );
    }
    readiness.set_ready(true);

    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_sender.send(true);
    });

    let lease_namespace = args.lease_namespace.clone().unwrap_or(default_namespace);
    let lease = LeaseConfig {
        namespace: lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity: identity.clone(),
        lease_duration: args.lease_duration,
        renew_interval: args.lease_renew_interval,
    };
    let elector = LeaderElector::new(client.clone(), lease).context("leader election settings")?;
    tracing::info!(%identity, "waiting to lead");
    let leadership = tokio::select! {
        leadership = elector.acquire() => leadership.context("acquire the leader Lease")?,
        () = stopped(stop.clone()) => {
            let _ = http_task.await;
            return Ok(());
        }
    };
    metrics.set_leader(true);
    tracing::info!(%identity, "leading; starting the controller");

    // Checkpoints only while leading: one writer, and its failures never reach the controller.
    let checkpoints = tokio::spawn(audit_checkpoints::run(
        client.clone(),
        lease_namespace,
        context.audit.store().clone(),
        args.audit_checkpoint_interval,
        stopped(stop.clone()),
    ));

    // Reads summaries only while leading: the controller is the only writer of status.
    let (trigger_sender, trigger_receiver) = tokio::sync::mpsc::unbounded_channel();
    let summaries_task = reads_summaries.map(|summaries| {
        tokio::spawn(crate::reads::summary::run(
            summaries,
            store.clone(),
            args.reads_refresh_interval,
            trigger_sender,
        ))
    });
    let triggers = futures_util::stream::unfold(trigger_receiver, |mut receiver| async move {
        receiver.recv().await.map(|object| (object, receiver))
    });
    let controller = controller::run_with_triggers(
        context.clone(),
        args.watch_namespace.as_deref(),
        args.concurrency,
        triggers,
        stopped(stop.clone()),
    );
    let grace = args.shutdown_grace;
    let grace_expired = async {
        stopped(stop.clone()).await;
        tokio::time::sleep(grace).await;
    };
    let outcome = tokio::select! {
        () = controller => Ok(()),
        () = grace_expired => {
            // Safe: every step is idempotent and resumes from status and the staging Secret.
            tracing::warn!(grace_seconds = grace.as_secs(), "steps still running after the shutdown grace; abandoning them to the next leader");
            Ok(())
        }
        reason = leadership.lost() => Err(anyhow::anyhow!("lost the leader Lease ({reason:?}); exiting so no two replicas rotate at once")),
    };
    if outcome.is_ok() {
        tokio::time::timeout(Duration::from_secs(5), leadership.release())
            .await
            .ok();
    }
    checkpoints.abort();
    if let Some(task) = summaries_task {
        task.abort();
    }
    if let Some(task) = index_task {
        task.abort();
    }
    // The webhook stops accepting on the stop signal and finishes its requests in flight
    // (each answered only after its append committed) before the store closes.
    if let Some(task) = webhook_task {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    metrics.set_leader(false);
    signals.abort();
    context.audit.store().close().await;
    http_task.abort();
    outcome
}

/// What the audit webhook serves with.
struct WebhookSettings {
    tls: Arc<rustls::ServerConfig>,
    token: Option<BearerToken>,
}

/// The audit webhook's address and settings, `None` when --audit-webhook-addr is unset. TLS is
/// mandatory, and so is caller authentication: mTLS, a bearer token, or both.
fn webhook_settings(
    args: &RunArgs,
) -> anyhow::Result<Option<(std::net::SocketAddr, WebhookSettings)>> {
    let Some(address) = args.audit_webhook_addr else {
        return Ok(None);
    };
    if args.audit_webhook_client_ca.is_none() && args.audit_webhook_token_file.is_none() {
        return Err(AuthError::NoAuthentication.into());
    }
    let (Some(cert), Some(key)) = (&args.audit_webhook_tls_cert, &args.audit_webhook_tls_key)
    else {
        return Err(AuthError::NoServingCertificate.into());
    };
    let tls = crate::reads::auth::server_config(&TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: args.audit_webhook_client_ca.clone(),
    })?;
    let token = args
        .audit_webhook_token_file
        .as_deref()
        .map(BearerToken::from_file)
        .transpose()?;
    Ok(Some((address, WebhookSettings { tls, token })))
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|host| !host.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|host| host.trim().to_owned())
        })
        .unwrap_or_else(|| "keyturn".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The store location without a password, for error messages.
fn redact_url(location: &str) -> String {
    match (location.find("://"), location.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &location[..scheme_end], &location[at..])
        }
        _ => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["keyturn-operator", "run"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => *args,
            other => panic!("not run: {other:?}"),
        }
    }

    fn error(extra: &[&str]) -> String {
        match webhook_settings(&run_args(extra)) {
            Ok(_) => panic!("accepted {extra:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn webhook_needs_tls_and_caller_authentication() {
        assert!(webhook_settings(&run_args(&[])).unwrap().is_none());
        let no_auth = error(&[
            "--audit-webhook-addr=127.0.0.1:8443",
            "--audit-webhook-tls-cert=/tls.crt",
            "--audit-webhook-tls-key=/tls.key",
        ]);
        assert!(
            no_auth.contains("--audit-webhook-client-ca")
                && no_auth.contains("--audit-webhook-token-file"),
            "{no_auth}"
        );
        let no_tls = error(&[
            "--audit-webhook-addr=127.0.0.1:8443",
            "--audit-webhook-token-file=/token",
        ]);
        assert!(no_tls.contains("--audit-webhook-tls-cert"), "{no_tls}");
        let missing = error(&[
            "--audit-webhook-addr=127.0.0.1:8443",
            "--audit-webhook-tls-cert=/nonexistent/tls.crt",
            "--audit-webhook-tls-key=/nonexistent/tls.key",
            "--audit-webhook-token-file=/nonexistent/token",
        ]);
        assert!(missing.contains("/nonexistent/tls.crt"), "{missing}");
    }

    #[test]
    fn reads_refresh_interval_defaults_to_a_minute() {
        assert_eq!(
            run_args(&[]).reads_refresh_interval,
            Duration::from_secs(60)
        );
        let args = run_args(&["--reads-refresh-interval=15s"]);
        assert_eq!(args.reads_refresh_interval, Duration::from_secs(15));
    }
}
