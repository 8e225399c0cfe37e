//! The `spec` of a ManagedSecret: what the user declares.
//! Shape checks the API server can enforce live here as schema patterns and CEL rules;
//! checks it cannot (cron syntax, the time-zone database) live in `validate.rs`.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::ManagedSecretStatus;

/// Go/Kubernetes duration syntax, the same that CEL's `duration()` accepts (`720h`, `1h30m`, `90s`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$";
/// A DNS-1123 subdomain: Secret, ServiceAccount and workload names.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A key inside a Secret's `data`.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// PostgreSQL role names keyturn manages: the unquoted, lower-case identifier subset, so that a
/// name means the same thing quoted or not and can never carry SQL.
pub const POSTGRES_ROLE_PATTERN: &str = r"^[a-z_][a-z0-9_]*$";
/// Vault mount and path segments: no spaces, quotes, empty segments or `..` traversal.
pub const VAULT_PATH_PATTERN: &str =
    r"^\.?[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*\.?(/\.?[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*\.?)*$";
/// An AWS Secrets Manager secret name or ARN (the characters AWS allows).
pub const AWS_SECRET_ID_PATTERN: &str = r"^[A-Za-z0-9/_+=.@:\-]+$";
pub const AWS_REGION_PATTERN: &str = r"^[a-z]{2,4}(-[a-z]+){1,3}-[0-9]+$";
/// A 5-field cron expression or one of the `@daily`-style macros; full parsing is the operator's.
pub const CRON_SHAPE_PATTERN: &str =
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+(\s+\S+){4})$";
/// An IANA time-zone name shape; the operator checks it against the time-zone database.
pub const TIME_ZONE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$";
/// A third-party rotator driver: `<DNS domain>/<name>`, so it can never clash with a built-in.
pub const DRIVER_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A credential that keyturn issues, verifies, publishes, restarts consumers for and retires
/// before it expires.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keyturn.dev",
    version = "v1alpha1",
    kind = "ManagedSecret",
    namespaced,
    status = "ManagedSecretStatus",
    shortname = "ms",
    shortname = "msec",
    category = "keyturn",
    doc = "A credential that keyturn rotates before it expires, publishes to a Secret, and audits",
    printcolumn(name = "Rotator", type_ = "string", json_path = ".status.rotator", description = "Which backend issues the credential"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether a valid credential is published"),
    printcolumn(name = "Last Rotated", type_ = "date", json_path = ".status.lastRotationTime"),
    printcolumn(name = "Next Rotation", type_ = "string", format = "date-time", json_path = ".status.nextRotationTime"),
    printcolumn(name = "Expires", type_ = "string", format = "date-time", json_path = ".status.expiresAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Reason", type_ = "string", priority = 1, json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    validation = Rule::new("size(self.metadata.name) <= 200").message("metadata.name must be at most 200 characters so that the Secrets keyturn derives from it stay valid names"),
)]
#[x_kube(
    validation = Rule::new("!has(self.expiry) || !has(self.expiry.ttl) || !has(self.rotation.rotateBefore) || duration(self.rotation.rotateBefore) < duration(self.expiry.ttl)")
        .message("spec.rotation.rotateBefore must be shorter than spec.expiry.ttl, or the credential is due for rotation the moment it is issued")
        .field_path(".rotation.rotateBefore"),
    validation = Rule::new("!has(self.expiry) || !has(self.expiry.ttl) || !has(self.rotation.every) || duration(self.rotation.every) <= duration(self.expiry.ttl)")
        .message("spec.rotation.every must not be longer than spec.expiry.ttl: the credential would expire before its scheduled rotation")
        .field_path(".rotation.every"),
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedSecretSpec {
    /// The Secret keyturn owns and writes the credential to. Defaults to the ManagedSecret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,

    /// The type of the published Secret. Service-account-token and other types the API server
    /// fills in are refused: keyturn must never create a Secret that could mint a token.
    #[serde(default)]
    pub secret_type: PublishedSecretType,

    /// The backend that issues the credential: exactly one of postgres, vault, awsSecretsManager.
    pub rotator: RotatorSpec,

    /// When rotation happens.
    pub rotation: RotationSpec,

    /// Lifetime of each credential: enforced by PostgreSQL (VALID UNTIL) and used to plan rotation
    /// before expiry. Vault static roles expire by their own rotation_period, not by this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<ExpirySpec>,

    /// Workloads restarted after the new credential is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<ConsumersSpec>,

    /// Who may read the published Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessSpec>,

    /// What happens to the backend credential when the ManagedSecret is deleted:
    /// `Retain` (default) leaves it valid, `Revoke` retires it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PublishedSecretType {
    #[default]
    Opaque,
    #[serde(rename = "kubernetes.io/basic-auth")]
    BasicAuth,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Revoke,
}

/// Exactly one backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.vault), has(self.awsSecretsManager), has(self.custom)].filter(x, x).size() == 1")
    .message("set exactly one of spec.rotator.postgres, spec.rotator.vault, spec.rotator.awsSecretsManager or spec.rotator.custom"))]
#[serde(rename_all = "camelCase")]
pub struct RotatorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresRotatorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultRotatorSpec>,
    /// AWS Secrets Manager: one secret, rotated by keyturn (Managed) or by AWS's rotation Lambda
    /// (Native), with the operator's AWS identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secrets_manager: Option<AwsSecretsManagerRotatorSpec>,
    /// A third-party rotator registered in this keyturn build under `driver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomRotatorSpec>,
}

/// A rotator added by a third party without changes to keyturn: the driver registered under
/// `driver` receives `parameters` and the resolved values of `secretRefs`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomRotatorSpec {
    /// The driver's name, `<DNS domain>/<name>`, e.g. `example.com/token-service`.
    #[schemars(length(min = 3, max = 253), pattern(DRIVER_NAME_PATTERN))]
    pub driver: String,
    /// Driver settings. Not for secrets: they are visible to everyone who can read the
    /// ManagedSecret; use secretRefs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub parameters: BTreeMap<String, String>,
    /// Secrets the driver needs (admin credentials, API tokens), by the name the driver expects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub secret_refs: BTreeMap<String, SecretKeyRef>,
}

/// A reference to a key of a Secret in the ManagedSecret's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key in the Secret's data.
    #[schemars(length(min = 1, max = 253), pattern(SECRET_KEY_PATTERN))]
    pub key: String,
}

/// PostgreSQL: keyturn connects as an admin role and sets the target role's password as a
/// SCRAM verifier computed client-side.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.strategy != 'AlternatingUsers' || has(self.alternateRole) || size(self.role) <= 59")
        .message("spec.rotator.postgres.role must be at most 59 characters with AlternatingUsers, so that the default alternate role `<role>_alt` fits PostgreSQL's 63-byte limit; or set alternateRole")
        .field_path(".role"),
    validation = Rule::new("!has(self.alternateRole) || self.alternateRole != self.role")
        .message("spec.rotator.postgres.alternateRole must differ from role")
        .field_path(".alternateRole"),
    validation = Rule::new("!has(self.alternateRole) || self.strategy == 'AlternatingUsers'")
        .message("spec.rotator.postgres.alternateRole is only used with strategy AlternatingUsers")
        .field_path(".alternateRole"),
    validation = Rule::new("!has(self.caSecretRef) || self.sslMode in ['verify-ca', 'verify-full']")
        .message("spec.rotator.postgres.caSecretRef needs sslMode verify-ca or verify-full to have any effect")
        .field_path(".caSecretRef"),
)]
#[serde(rename_all = "camelCase")]
pub struct PostgresRotatorSpec {
    /// Host name or address of the PostgreSQL server.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[A-Za-z0-9:]([A-Za-z0-9.\-:]*[A-Za-z0-9])?$")
    )]
    pub host: String,
    /// Port of the PostgreSQL server.
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Database to connect to.
    #[serde(default = "default_postgres_database")]
    #[schemars(length(min = 1, max = 63), pattern(r"^[A-Za-z_][A-Za-z0-9_$\-]*$"))]
    pub database: String,
    #[serde(default)]
    pub ssl_mode: PostgresSslMode,
    /// CA bundle for `verify-ca` / `verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Secret with the `username` and `password` of a role allowed to ALTER the target role.
    pub admin_secret_ref: AdminSecretRef,
    /// The login role whose password keyturn rotates.
    #[schemars(length(min = 1, max = 63), pattern(POSTGRES_ROLE_PATTERN))]
    pub role: String,
    /// `AlternatingUsers` (default) switches consumers between `role` and `alternateRole`,
    /// keeping the previous one valid until consumers have rolled out; `SingleUser` changes one
    /// role's password in place.
    #[serde(default)]
    pub strategy: PostgresStrategy,
    /// The second role for AlternatingUsers. Defaults to `<role>_alt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(POSTGRES_ROLE_PATTERN))]
    pub alternate_role: Option<String>,
}

fn default_postgres_port() -> u16 {
    5432
}

fn default_postgres_database() -> String {
    "postgres".to_owned()
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminSecretRef {
    /// Name of the Secret, in the ManagedSecret's namespace.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key holding the admin role's name.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253), pattern(SECRET_KEY_PATTERN))]
    pub username_key: String,
    /// Key holding the admin role's password.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253), pattern(SECRET_KEY_PATTERN))]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".to_owned()
}

fn default_password_key() -> String {
    "password".to_owned()
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PostgresStrategy {
    #[default]
    AlternatingUsers,
    SingleUser,
}

/// libpq's sslmode values; `require` by default because credentials cross this connection.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresSslMode {
    Disable,
    Prefer,
    #[default]
    Require,
    VerifyCa,
    VerifyFull,
}

/// Vault or OpenBao.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.databaseStaticRole) != has(self.kv)")
        .message("set exactly one of spec.rotator.vault.databaseStaticRole or spec.rotator.vault.kv"),
    validation = Rule::new("isURL(self.address) && url(self.address).getScheme() in ['http', 'https'] && url(self.address).getHostname() != '' && !self.address.matches('^[^:/?#]+://[^/?#]*@')")
        .message("spec.rotator.vault.address must be an http(s) URL with a host and no user or password in it, such as https://vault.vault.svc:8200")
        .field_path(".address"),
)]
#[serde(rename_all = "camelCase")]
pub struct VaultRotatorSpec {
    /// Address of Vault or OpenBao, e.g. `https://vault.vault.svc:8200`.
    #[schemars(length(min = 1, max = 2048))]
    pub address: String,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), pattern(VAULT_PATH_PATTERN))]
    pub namespace: Option<String>,
    /// CA bundle that signed Vault's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// How keyturn logs in to Vault: exactly one of token, appRole, kubernetes.
    pub auth: VaultAuthSpec,
    /// A static role of the database secrets engine: keyturn calls rotate-role on its schedule and
    /// reads static-creds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_static_role: Option<VaultDatabaseStaticRoleSpec>,
    /// A KV v2 secret keyturn generates and writes as new versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<VaultKvSpec>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.token), has(self.appRole), has(self.kubernetes)].filter(x, x).size() == 1")
    .message("set exactly one of spec.rotator.vault.auth.token, appRole or kubernetes"))]
#[serde(rename_all = "camelCase")]
pub struct VaultAuthSpec {
    /// A Vault token read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<VaultTokenAuth>,
    /// AppRole login: a role id, and a secret id read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<VaultAppRoleAuth>,
    /// Kubernetes auth with the operator pod's service account token: the operator's identity,
    /// shared by every ManagedSecret that names the same Vault role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<VaultKubernetesAuth>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultTokenAuth {
    /// The Secret key holding the token.
    pub secret_ref: SecretKeyRef,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultAppRoleAuth {
    /// Mount path of the AppRole auth method.
    #[serde(default = "default_approle_mount")]
    #[schemars(length(min = 1, max = 255), pattern(VAULT_PATH_PATTERN))]
    pub mount: String,
    /// The AppRole's role id (an identifier, not a secret).
    #[schemars(length(min = 1, max = 255))]
    pub role_id: String,
    /// The Secret key holding the AppRole's secret id.
    pub secret_id_ref: SecretKeyRef,
}

fn default_approle_mount() -> String {
    "approle".to_owned()
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesAuth {
    /// Mount path of the Kubernetes auth method.
    #[serde(default = "default_kubernetes_mount")]
    #[schemars(length(min = 1, max = 255), pattern(VAULT_PATH_PATTERN))]
    pub mount: String,
    /// The Vault role to log in as.
    #[schemars(length(min = 1, max = 255), pattern(VAULT_PATH_PATTERN))]
    pub role: String,
}

fn default_kubernetes_mount() -> String {
    "kubernetes".to_owned()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!self.mount.contains('..') && !self.role.contains('..')")
    .message("spec.rotator.vault.databaseStaticRole must not contain `..`"))]
#[serde(rename_all = "camelCase")]
pub struct VaultDatabaseStaticRoleSpec {
    /// Mount path of the database secrets engine.
    #[serde(default = "default_database_mount")]
    #[schemars(length(min = 1, max = 255), pattern(VAULT_PATH_PATTERN))]
    pub mount: String,
    /// Name of the static role.
    #[schemars(length(min = 1, max = 255), pattern(VAULT_PATH_PATTERN))]
    pub role: String,
}

fn default_database_mount() -> String {
    "database".to_owned()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!self.mount.contains('..') && !self.path.contains('..')")
    .message("spec.rotator.vault.kv.mount and path must not contain `..`"))]
#[serde(rename_all = "camelCase")]
pub struct VaultKvSpec {
    /// Mount path of the KV v2 secrets engine.
    #[serde(default = "default_kv_mount")]
    #[schemars(length(min = 1, max = 255), pattern(VAULT_PATH_PATTERN))]
    pub mount: String,
    /// Path of the secret within that mount.
    #[schemars(length(min = 1, max = 1024), pattern(VAULT_PATH_PATTERN))]
    pub path: String,
    /// Length of the generated password.
    #[serde(default = "default_password_length")]
    #[schemars(range(min = 16, max = 256))]
    pub password_length: u16,
}

fn default_kv_mount() -> String {
    "secret".to_owned()
}

fn default_password_length() -> u16 {
    32
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsSecretsManagerRotatorSpec {
    /// AWS region of the secret, e.g. `eu-central-1`.
    #[schemars(length(min = 1, max = 32), pattern(AWS_REGION_PATTERN))]
    pub region: String,
    /// The secret's name or ARN.
    #[schemars(length(min = 1, max = 2048), pattern(AWS_SECRET_ID_PATTERN))]
    pub secret_id: String,
    /// A custom endpoint (VPC endpoint, or a test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://[^\s/$.?#][^\s]*$"))]
    pub endpoint: Option<String>,
    /// `Managed`: keyturn generates the value and drives AWSPENDING → AWSCURRENT → AWSPREVIOUS.
    /// `Native`: keyturn calls RotateSecret (AWS's rotation Lambda does the work) and mirrors it.
    #[serde(default)]
    pub mode: AwsRotationMode,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AwsRotationMode {
    #[default]
    Managed,
    Native,
}

/// When rotation happens: an interval or a cron schedule, and how long before expiry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.every) != has(self.schedule)")
        .message("set exactly one of spec.rotation.every (an interval such as 720h) or spec.rotation.schedule (cron such as \"0 3 * * SUN\")"),
    validation = Rule::new("!has(self.window) || has(self.schedule)")
        .message("spec.rotation.window only applies to spec.rotation.schedule").field_path(".window"),
    validation = Rule::new("!has(self.timeZone) || has(self.schedule)")
        .message("spec.rotation.timeZone only applies to spec.rotation.schedule").field_path(".timeZone"),
    validation = Rule::new("!(has(self.rotateBefore) && has(self.rotateBeforePercent))")
        .message("set at most one of spec.rotation.rotateBefore or spec.rotation.rotateBeforePercent"),
)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// Rotate this long after the previous rotation, e.g. `720h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')")
        .message("spec.rotation.every must be at least 1m"))]
    pub every: Option<String>,
    /// A 5-field cron expression, e.g. `0 3 * * SUN`, evaluated in `timeZone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(CRON_SHAPE_PATTERN))]
    pub schedule: Option<String>,
    /// IANA time zone of `schedule`, e.g. `Europe/Berlin`. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(TIME_ZONE_PATTERN))]
    pub time_zone: Option<String>,
    /// How long after a scheduled time a rotation may still start, e.g. `2h`. Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')")
        .message("spec.rotation.window must be at least 1m"))]
    pub window: Option<String>,
    /// Rotate at the latest this long before the credential's real expiry, e.g. `72h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')")
        .message("spec.rotation.rotateBefore must be positive"))]
    pub rotate_before: Option<String>,
    /// Rotate at the latest when this percentage of the credential's lifetime remains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub rotate_before_percent: Option<u8>,
    /// Stop starting new rotations (one already in flight still finishes).
    #[serde(default)]
    pub paused: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExpirySpec {
    /// Lifetime of each credential, e.g. `2160h` (PostgreSQL enforces it with VALID UNTIL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('5m')")
        .message("spec.expiry.ttl must be at least 5m"))]
    pub ttl: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumersSpec {
    /// Workloads to restart after a rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub restart: Vec<WorkloadRef>,
    /// Also restart workloads in the namespace whose pod template references the Secret.
    #[serde(default)]
    pub auto_discover: bool,
    /// How long to wait for a restarted workload to be ready before reporting Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), pattern(DURATION_PATTERN))]
    pub rollout_timeout: Option<String>,
}

/// A workload in the ManagedSecret's namespace, restarted after each rotation.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// The workload's name.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessSpec {
    /// Service accounts (in this namespace) allowed to read the Secret.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub service_accounts: Vec<ServiceAccountName>,
}

/// A ServiceAccount name in the ManagedSecret's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct ServiceAccountName(
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))] pub String,
);
