//! Access bindings: who may read a ManagedSecret's published Secret. The pure part builds the
//! Role and RoleBinding keyturn owns, finds broader grants (drift) and words the condition;
//! `cluster` is the thin part that reads and writes them through the Kubernetes API.

pub mod cluster;
pub mod condition;
pub mod desired;
pub mod drift;
pub mod readers;

/// Field manager of the Role and RoleBinding, so server-side apply replaces exactly the lists
/// keyturn owns (a subject removed from the spec disappears from the binding).
pub const ACCESS_FIELD_MANAGER: &str = "keyturn/access";

/// What access management needs to know about one ManagedSecret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTarget {
    pub namespace: String,
    /// The ManagedSecret's name.
    pub name: String,
    pub uid: String,
    pub api_version: String,
    pub kind: String,
    /// The Secret consumers read (`spec.secretName`, else the ManagedSecret's name).
    pub secret_name: String,
    /// `spec.access.serviceAccounts`, sorted and without duplicates.
    pub service_accounts: Vec<String>,
}

impl AccessTarget {
    /// The name of both the Role and the RoleBinding.
    pub fn binding_name(&self) -> String {
        format!("{}-keyturn-read", self.name)
    }
}

/// Test fixtures shared by the access modules' unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::AccessTarget;

    /// ManagedSecret `payments/orders`, publishing `orders-credentials`, listing `accounts`.
    pub fn target(accounts: &[&str]) -> AccessTarget {
        AccessTarget {
            namespace: "payments".into(),
            name: "orders".into(),
            uid: "uid-1".into(),
            api_version: "keyturn.dev/v1alpha1".into(),
            kind: "ManagedSecret".into(),
            secret_name: "orders-credentials".into(),
            service_accounts: accounts
                .iter()
                .map(|account| (*account).to_owned())
                .collect(),
        }
    }

    pub fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(Into::into),
            ..ObjectMeta::default()
        }
    }
}
