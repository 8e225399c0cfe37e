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
