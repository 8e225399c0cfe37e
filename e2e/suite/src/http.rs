//! One way to build HTTP clients: reqwest with a ring-backed rustls config of its own, because
//! in a workspace build reqwest has no crypto provider of its own and would panic without one.

use std::sync::Arc;
use std::time::Duration;

/// A client for the operator's HTTP endpoints and the backends' APIs. Built per user rather than
/// shared process-wide, so that no pooled connection outlives the runtime that opened it.
pub(crate) fn client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports rustls' default protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        // The operators under test restart and move ports; a reused connection only hides that.
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .expect("build an HTTP client")
}
