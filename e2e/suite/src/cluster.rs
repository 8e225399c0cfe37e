//! The cluster a test runs against: a real one when `E2E_KUBECONFIG` names its kubeconfig, else
//! the in-memory stand-in with the committed CRD; and fresh namespaces, one per test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource};

use crate::names::{runs_dir, unique_name, workspace_root};
use crate::standin::StandIn;

/// The environment variable naming a real cluster's kubeconfig; unset or empty: the stand-in.
pub const E2E_KUBECONFIG: &str = "E2E_KUBECONFIG";

/// Label on every namespace the harness creates, to find leftovers on a real cluster.
const NAMESPACE_LABEL: &str = "keyturn.dev/e2e";

/// A cluster to test against. Cloning is cheap and shares the stand-in, which stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    kubeconfig_path: PathBuf,
    standin: Option<Arc<StandIn>>,
    /// Holds the stand-in's kubeconfig file for as long as the cluster lives.
    _kubeconfig_dir: Option<Arc<tempfile::TempDir>>,
    /// apiVersion and kind -> resource, filled by discovery on first use.
    pub(crate) resources: Arc<tokio::sync::Mutex<DiscoveredResources>>,
}

type DiscoveredResources = HashMap<(String, String), (ApiResource, ApiCapabilities)>;

impl std::fmt::Debug for Cluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cluster")
            .field("kubeconfig_path", &self.kubeconfig_path)
            .field("standin", &self.standin)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The cluster of `E2E_KUBECONFIG` when it is set; otherwise a new in-process stand-in
    /// serving the committed CRD, with its kubeconfig written to a temporary file.
    ///
    /// # Panics
    /// When the kubeconfig cannot be loaded, the stand-in does not start, or the real cluster
    /// lacks the ManagedSecret CRD.
    pub async fn start() -> Cluster {
        // kube builds a rustls config (even for the stand-in's plain HTTP) with the process-wide
        // crypto provider, which rustls can only pick by itself when exactly one is compiled in;
        // ring is the one keyturn uses everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        match std::env::var(E2E_KUBECONFIG) {
            Ok(path) if !path.trim().is_empty() => {
                Self::connect_real(PathBuf::from(path.trim())).await
            }
            _ => Self::start_standin().await,
        }
    }

    async fn connect_real(kubeconfig_path: PathBuf) -> Cluster {
        let client = client_from_kubeconfig(&kubeconfig_path).await;
        let cluster = Cluster {
            client,
            kubeconfig_path,
            standin: None,
            _kubeconfig_dir: None,
            resources: Arc::default(),
        };
        let managed_secret = GroupVersionKind::gvk("keyturn.dev", "v1alpha1", "ManagedSecret");
        if let Err(error) = kube::discovery::pinned_kind(&cluster.client, &managed_secret).await {
            panic!(
                "the cluster of {E2E_KUBECONFIG}={} does not serve keyturn.dev/v1alpha1 \
                 ManagedSecret ({error}); install the CRD first: kubectl apply --server-side -f \
                 crds/keyturn.dev_managedsecrets.yaml (e2e/kind.sh does)",
                cluster.kubeconfig_path.display()
            );
        }
        cluster
    }

    async fn start_standin() -> Cluster {
        let crd_path = workspace_root().join("crds/keyturn.dev_managedsecrets.yaml");
        let crd = std::fs::read_to_string(&crd_path)
            .unwrap_or_else(|error| panic!("read {}: {error}", crd_path.display()));
        Self::start_standin_serving(vec![crd]).await
    }

    /// A new in-process stand-in that serves no custom resource: a cluster where keyturn is not
    /// installed, for the errors tools give there.
    pub async fn start_standin_without_keyturn() -> Cluster {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self::start_standin_serving(Vec::new()).await
    }

    async fn start_standin_serving(crds: Vec<String>) -> Cluster {
        let standin = StandIn::start(crds).await;
        let directory = tempfile::Builder::new()
            .prefix("keyturn-e2e-kubeconfig.")
            .tempdir()
            .expect("create a temporary directory for the stand-in's kubeconfig");
        let kubeconfig_path = directory.path().join("kubeconfig");
        std::fs::write(&kubeconfig_path, standin.kubeconfig_yaml())
            .unwrap_or_else(|error| panic!("write {}: {error}", kubeconfig_path.display()));
        // Through the kubeconfig file, as the operator will: that file is tested too.
        let client = client_from_kubeconfig(&kubeconfig_path).await;
        Cluster {
            client,
            kubeconfig_path,
            standin: Some(Arc::new(standin)),
            _kubeconfig_dir: Some(Arc::new(directory)),
            resources: Arc::default(),
        }
    }

    /// A client for the cluster.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The kubeconfig file the operator gets as `KUBECONFIG`.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Whether this is the in-process stand-in rather than a real cluster.
    pub fn is_standin(&self) -> bool {
        self.standin.is_some()
    }

    /// The stand-in's controls (faults, request log, dropped watches, compaction), or `None` on a
    /// real cluster.
    pub fn standin(&self) -> Option<&StandIn> {
        self.standin.as_deref()
    }

    /// Like [`Cluster::standin`], but prints a `SKIPPED:` notice naming `what` when running
    /// against a real cluster, so that a test can `let Some(standin) = ... else { return };`.
    pub fn standin_or_skip(&self, what: &str) -> Option<&StandIn> {
        if self.standin.is_none() {
            eprintln!(
                "SKIPPED: {what} needs the in-process API stand-in, and {E2E_KUBECONFIG} points \
                 at a real cluster"
            );
        }
        self.standin.as_deref()
    }

    /// Creates a fresh namespace `<prefix>-<random6>`. On a real cluster it is deleted (best
    /// effort, not waited for) when the returned value is dropped; the stand-in goes away whole.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let mut last_error = None;
        // A clash of six random characters is unlikely, but costs only a retry.
        for _ in 0..3 {
            let name = unique_name(prefix);
            let namespace: Namespace = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {NAMESPACE_LABEL: "true"}},
            }))
            .expect("a Namespace object");
            match namespaces.create(&PostParams::default(), &namespace).await {
                Ok(_) => return TestNamespace::new(name, self),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    last_error = Some(format!("{status:?}"));
                }
                Err(error) => panic!("create namespace {name}: {error}"),
            }
        }
        panic!("create a namespace with prefix {prefix:?}: {last_error:?}");
    }
}

async fn client_from_kubeconfig(path: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|error| panic!("read kubeconfig {}: {error}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|error| panic!("load kubeconfig {}: {error}", path.display()));
    kube::Client::try_from(config)
        .unwrap_or_else(|error| panic!("client for kubeconfig {}: {error}", path.display()))
}

/// A namespace created for one test, with a working directory for its operators' logs and audit
/// database (`<target>/e2e-runs/<namespace>/`, kept when the test fails).
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    work_dir: PathBuf,
    /// The real cluster's kubeconfig, to delete the namespace on drop; None on the stand-in.
    delete_with: Option<PathBuf>,
}

impl TestNamespace {
    fn new(name: String, cluster: &Cluster) -> TestNamespace {
        let work_dir = runs_dir().join(&name);
        std::fs::create_dir_all(&work_dir)
            .unwrap_or_else(|error| panic!("create {}: {error}", work_dir.display()));
        TestNamespace {
            name,
            work_dir,
            delete_with: (!cluster.is_standin()).then(|| cluster.kubeconfig_path.clone()),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where this namespace's operator logs and audit database live.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "e2e: the test failed; logs and audit database of namespace {} are kept in {}",
                self.name,
                self.work_dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.work_dir);
        }
        if let Some(kubeconfig_path) = self.delete_with.take() {
            delete_namespace_in_background(kubeconfig_path, self.name.clone());
        }
    }
}

/// Deletes a namespace from a thread with its own runtime and client: the test's runtime may be
/// shutting down (or be a current-thread runtime blocked in this very drop). Waits a few seconds
/// at most; whatever is left is the real cluster's to finish (the label finds leftovers).
fn delete_namespace_in_background(kubeconfig_path: PathBuf, name: String) {
    let (done_sender, done_receiver) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("keyturn-e2e-cleanup".to_owned())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let client = client_from_kubeconfig(&kubeconfig_path).await;
                let namespaces: Api<Namespace> = Api::all(client);
                if let Err(error) = namespaces.delete(&name, &DeleteParams::background()).await {
                    eprintln!("e2e: could not delete namespace {name}: {error}");
                }
            });
            let _ = done_sender.send(());
        });
    if spawned.is_ok() {
        let _ = done_receiver.recv_timeout(Duration::from_secs(10));
    }
}
