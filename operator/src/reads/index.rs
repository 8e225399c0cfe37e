//! Which Secrets keyturn manages, for the webhook to tell a read worth recording from one to
//! drop: an index (namespace, Secret name) → ManagedSecret, fed by a metadata-only watch of the
//! Secrets labelled `app.kubernetes.io/managed-by=keyturn`. Every replica with the webhook keeps
//! its own (followers receive webhook traffic behind the Service too); Secret data never enters
//! it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};

use super::event::Scope;
use crate::controller::object::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

const MANAGED_SECRET_LABEL: &str = "keyturn.dev/managed-secret";
const ROLE_LABEL: &str = "keyturn.dev/role";

/// The ManagedSecret a Secret belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub managed_secret: String,
    /// `published`, `staging`, ... (the `keyturn.dev/role` label).
    pub role: String,
}

/// One managed Secret a read covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedRead {
    pub namespace: String,
    pub secret: String,
    pub owner: Owner,
}

#[derive(Debug, Default)]
struct Inner {
    ready: bool,
    secrets: BTreeMap<(String, String), Owner>,
    /// Built while a (re)list is in progress, swapped in when it completes.
    relisting: Option<BTreeMap<(String, String), Owner>>,
}

/// Shared, cheaply cloned index of managed Secrets.
#[derive(Debug, Clone, Default)]
pub struct SecretIndex {
    inner: Arc<RwLock<Inner>>,
}

impl SecretIndex {
    // A poisoned lock still holds a consistent map (every change is one insert or remove).
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An index that already knows these Secrets `(namespace, secret, owner)`, ready: for
    /// tests and for callers that build it themselves.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, String, Owner)>) -> Self {
        let index = SecretIndex::default();
        {
            let mut inner = index.write();
            inner.ready = true;
            for (namespace, secret, owner) in entries {
                inner.secrets.insert((namespace, secret), owner);
            }
        }
        index
    }

    /// Whether the first complete list has arrived; before that no read can be classified.
    pub fn is_ready(&self) -> bool {
        self.read().ready
    }

    /// How many managed Secrets are known.
    pub fn len(&self) -> usize {
        self.read().secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The managed Secrets in `scope`.
    pub fn in_scope(&self, scope: &Scope<'_>) -> Vec<ManagedRead> {
        let inner = self.read();
        let read = |((namespace, secret), owner): (&(String, String), &Owner)| ManagedRead {
            namespace: namespace.clone(),
            secret: secret.clone(),
            owner: owner.clone(),
        };
        match scope {
            Scope::Object { namespace, name } => inner
                .secrets
                .get_key_value(&((*namespace).to_owned(), (*name).to_owned()))
                .map(read)
                .into_iter()
                .collect(),
            Scope::Namespace(namespace) => inner
                .secrets
                .range(((*namespace).to_owned(), String::new())..)
                .take_while(|((secret_namespace, _), _)| secret_namespace == namespace)
                .map(read)
                .collect(),
            Scope::Cluster => inner.secrets.iter().map(read).collect(),
        }
    }

    /// Applies one watch event.
    pub fn apply(&self, event: Event<PartialObjectMeta<Secret>>) {
        let mut inner = self.write();
        match event {
            Event::Init => inner.relisting = Some(BTreeMap::new()),
            Event::InitApply(secret) => {
                if let (Some(relisting), Some((key, owner))) =
                    (inner.relisting.as_mut(), entry(&secret))
                {
                    relisting.insert(key, owner);
                }
            }
            Event::InitDone => {
                if let Some(relisted) = inner.relisting.take() {
                    inner.secrets = relisted;
                }
                inner.ready = true;
            }
            Event::Apply(secret) => {
                if let Some((key, owner)) = entry(&secret) {
                    inner.secrets.insert(key, owner);
                } else if let (Some(namespace), Some(name)) =
                    (&secret.metadata.namespace, &secret.metadata.name)
                {
                    // No longer labelled as keyturn's.
                    inner.secrets.remove(&(namespace.clone(), name.clone()));
                }
            }
            Event::Delete(secret) => {
                if let (Some(namespace), Some(name)) =
                    (&secret.metadata.namespace, &secret.metadata.name)
                {
                    inner.secrets.remove(&(namespace.clone(), name.clone()));
                }
            }
        }
    }
}

/// The index entry of a Secret: its ManagedSecret from the controller owner reference (the full
/// name), else from the label (which may be cut to 63 characters).
fn entry(secret: &PartialObjectMeta<Secret>) -> Option<((String, String), Owner)> {
    let metadata = &secret.metadata;
    let labels = metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE) {
        return None;
    }
    let from_owner = metadata.owner_references.iter().flatten().find(|owner| {
        owner.kind == "ManagedSecret" && owner.api_version.starts_with("keyturn.dev/")
    });
    let managed_secret = from_owner
        .map(|owner| owner.name.clone())
        .or_else(|| labels.get(MANAGED_SECRET_LABEL).cloned())?;
    let role = labels.get(ROLE_LABEL).cloned().unwrap_or_default();
    Some((
        (metadata.namespace.clone()?, metadata.name.clone()?),
        Owner {
            managed_secret,
            role,
        },
    ))
}

/// Keeps `index` current until the returned future is dropped: a metadata-only watch of the
/// Secrets keyturn labelled, in `namespace` or in every namespace.
pub async fn run(client: Client, namespace: Option<String>, index: SecretIndex) {
    // `Api<PartialObjectMeta<_>>` makes the watch metadata-only: Secret data never arrives.
    let api: Api<PartialObjectMeta<Secret>> = match &namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    let config =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let mut events = std::pin::pin!(watch(api, config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => index.apply(event),
            Err(error) => tracing::warn!(%error, "watch managed Secrets for the audit webhook"),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn secret(
        namespace: &str,
        name: &str,
        managed: Option<&str>,
        owner: Option<&str>,
    ) -> PartialObjectMeta<Secret> {
        let mut labels = BTreeMap::new();
        if let Some(managed) = managed {
            labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
            labels.insert(MANAGED_SECRET_LABEL.to_owned(), managed.to_owned());
            labels.insert(ROLE_LABEL.to_owned(), "published".to_owned());
        }
        let metadata = ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            labels: Some(labels),
            owner_references: owner.map(|owner| {
                vec![OwnerReference {
                    api_version: "keyturn.dev/v1alpha1".into(),
                    kind: "ManagedSecret".into(),
                    name: owner.into(),
                    uid: "u".into(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }]
            }),
            ..ObjectMeta::default()
        };
        PartialObjectMeta::<Secret> {
            metadata,
            ..PartialObjectMeta::default()
        }
    }

    fn names(reads: Vec<ManagedRead>) -> Vec<String> {
        reads
            .into_iter()
            .map(|read| {
                format!(
                    "{}/{}->{}",
                    read.namespace, read.secret, read.owner.managed_secret
                )
            })
            .collect()
    }

    #[test]
    fn scopes_select_the_managed_secrets_they_cover() {
        let index = SecretIndex::default();
        assert!(!index.is_ready());
        index.apply(Event::Init);
        index.apply(Event::InitApply(secret(
            "payments",
            "orders-db-credentials",
            Some("orders-db"),
            Some("orders-db"),
        )));
        index.apply(Event::InitApply(secret(
            "payments",
            "cache",
            Some("cache"),
            None,
        )));
        index.apply(Event::InitApply(secret(
            "payments-eu",
            "x",
            Some("x"),
            None,
        )));
        index.apply(Event::InitApply(secret(
            "payments",
            "unlabelled",
            None,
            None,
        )));
        assert!(!index.is_ready());
        index.apply(Event::InitDone);
        assert!(index.is_ready());
        assert_eq!(index.len(), 3);

        let object = Scope::Object {
            namespace: "payments",
            name: "orders-db-credentials",
        };
        assert_eq!(
            names(index.in_scope(&object)),
            ["payments/orders-db-credentials->orders-db"]
        );
        let unmanaged = Scope::Object {
            namespace: "payments",
            name: "unlabelled",
        };
        assert!(index.in_scope(&unmanaged).is_empty());
        assert_eq!(
            names(index.in_scope(&Scope::Namespace("payments"))),
            [
                "payments/cache->cache",
                "payments/orders-db-credentials->orders-db"
            ]
        );
        assert_eq!(index.in_scope(&Scope::Cluster).len(), 3);
        assert!(index.in_scope(&Scope::Namespace("pay")).is_empty());

        // The label removed: no longer managed; deleted: gone; a relist replaces everything.
        index.apply(Event::Apply(secret("payments", "cache", None, None)));
        index.apply(Event::Delete(secret("payments-eu", "x", Some("x"), None)));
        assert_eq!(index.len(), 1);
        index.apply(Event::Init);
        index.apply(Event::InitApply(secret("shop", "a", Some("a"), None)));
        assert_eq!(
            index.len(),
            1,
            "the old map serves until the relist completes"
        );
        index.apply(Event::InitDone);
        assert_eq!(names(index.in_scope(&Scope::Cluster)), ["shop/a->a"]);
    }
}
