//! Operator-side validation: turns a `ManagedSecretSpec` into the pure rotation policy the
//! lifecycle core works with. It repeats the CRD's schema and CEL checks (a CRD applied without
//! them, or an older API server, must not let bad input through) and adds what CEL cannot
//! check: cron syntax and the time-zone database. Every error names the field and the fix.

use std::fmt;
use std::time::Duration;

use keyturn_core::duration::parse_duration;
use keyturn_core::policy::{PolicyError, RotateBefore, RotationPolicy};
use keyturn_core::schedule::{CronTrigger, ScheduleError, Trigger};

use crate::spec::{
    ManagedSecretSpec, PostgresRotatorSpec, PostgresSslMode, PostgresStrategy, RotatorSpec,
    VaultRotatorSpec,
};

/// PostgreSQL's identifier length limit (NAMEDATALEN - 1).
const POSTGRES_MAX_IDENTIFIER: usize = 63;
const ALTERNATE_ROLE_SUFFIX: &str = "_alt";
const DEFAULT_ROLLOUT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Shortest interval and window: the same floor as the CRD's CEL rules.
const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest credential lifetime: the same floor as the CRD's CEL rule.
const MIN_TTL: Duration = Duration::from_secs(5 * 60);
const PASSWORD_LENGTHS: std::ops::RangeInclusive<u16> = 16..=256;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field, e.g. `spec.rotation.schedule`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Errors from the core already start with the field path; don't print it twice.
        if self.message.starts_with(&self.field) {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in a spec (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(Vec<FieldError>);

impl SpecErrors {
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "invalid ManagedSecret spec: {}", joined.join("; "))
    }
}

/// Which backend a spec uses; also the value of `status.rotator` and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RotatorKind {
    Postgres,
    Vault,
    AwsSecretsManager,
    /// A third-party driver from `spec.rotator.custom`.
    Custom,
}

impl RotatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RotatorKind::Postgres => "postgres",
            RotatorKind::Vault => "vault",
            RotatorKind::AwsSecretsManager => "awsSecretsManager",
            RotatorKind::Custom => "custom",
        }
    }
}

impl fmt::Display for RotatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A spec that passed every check, with its durations and schedule parsed.
#[derive(Debug, Clone)]
pub struct ValidatedSpec {
    pub rotator: RotatorKind,
    pub policy: RotationPolicy,
    pub rollout_timeout: Duration,
}

/// Collects field errors while the checks run.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Parses an optional duration field, recording a problem when it does not parse.
    fn duration(&mut self, field: &str, value: Option<&str>) -> Option<Duration> {
        let text = value?;
        match parse_duration(text) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                self.push(
                    field,
                    format!("{error}; write a duration such as 720h, 90m or 1h30m (units h, m, s; no days)"),
                );
                None
            }
        }
    }
}

pub fn validate_spec(spec: &ManagedSecretSpec) -> Result<ValidatedSpec, SpecErrors> {
    let mut problems = Problems::default();
    let rotator = validate_rotator(&spec.rotator, &mut problems);
    validate_references_and_addresses(spec, &mut problems);
    let policy = validate_policy(spec, &mut problems);
    let rollout_timeout = spec
        .consumers
        .as_ref()
        .and_then(|consumers| {
            problems.duration(
                "spec.consumers.rolloutTimeout",
                consumers.rollout_timeout.as_deref(),
            )
        })
        .unwrap_or(DEFAULT_ROLLOUT_TIMEOUT);
    if let Some(access) = &spec.access {
        for (index, account) in access.service_accounts.iter().enumerate() {
            if !is_dns_subdomain(&account.0) {
                problems.push(
                    &format!("spec.access.serviceAccounts[{index}]"),
                    "must be a ServiceAccount name: lower-case letters, digits, '-' and '.', at most 253 characters",
                );
            }
        }
    }
    if let Some(name) = &spec.secret_name
        && !is_dns_subdomain(name)
    {
        problems.push(
            "spec.secretName",
            "must be a Secret name: lower-case letters, digits, '-' and '.', at most 253 characters",
        );
    }
    match (rotator, policy) {
        (Some(rotator), Some(policy)) if problems.0.is_empty() => Ok(ValidatedSpec {
            rotator,
            policy,
            rollout_timeout,
        }),
        _ => Err(SpecErrors(problems.0)),
    }
}

fn validate_rotator(rotator: &RotatorSpec, problems: &mut Problems) -> Option<RotatorKind> {
    let mut chosen = Vec::new();
    if let Some(postgres) = &rotator.postgres {
        validate_postgres(postgres, problems);
        chosen.push(RotatorKind::Postgres);
    }
    if let Some(vault) = &rotator.vault {
        validate_vault(vault, problems);
        chosen.push(RotatorKind::Vault);
    }
    if let Some(aws) = &rotator.aws_secrets_manager {
        if !aws
            .secret_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@:-".contains(c))
        {
            problems.push(
                "spec.rotator.awsSecretsManager.secretId",
                "must be a secret name or ARN: letters, digits and /_+=.@:- only",
            );
        }
        chosen.push(RotatorKind::AwsSecretsManager);
    }
    if let Some(custom) = &rotator.custom {
        if !is_driver_name(&custom.driver) {
            problems.push(
                "spec.rotator.custom.driver",
                "must be <DNS domain>/<name> in lower case, e.g. example.com/token-service",
            );
        }
        chosen.push(RotatorKind::Custom);
    }
    match chosen.as_slice() {
        [one] => Some(*one),
        [] => {
            problems.push(
                "spec.rotator",
                "set one of postgres, vault, awsSecretsManager or custom",
            );
            None
        }
        _ => {
            problems.push(
                "spec.rotator",
                "set only one of postgres, vault, awsSecretsManager or custom",
            );
            None
        }
    }
}

/// Checks the schema makes on names and addresses, repeated here because the operator may see
/// objects no API server validated (and to be sure of what it acts on). A Secret reference that
/// is not a Secret name is often a credential pasted into the wrong field: the message never
/// repeats the value, so it cannot reach status, Events or logs.
fn validate_references_and_addresses(spec: &ManagedSecretSpec, problems: &mut Problems) {
    let mut references: Vec<(String, &str)> = Vec::new();
    if let Some(postgres) = &spec.rotator.postgres {
        references.push((
            "spec.rotator.postgres.adminSecretRef.name".into(),
            &postgres.admin_secret_ref.name,
        ));
        if let Some(ca) = &postgres.ca_secret_ref {
            references.push(("spec.rotator.postgres.caSecretRef.name".into(), &ca.name));
        }
        let host_ok = !postgres.host.is_empty()
            && postgres.host.len() <= 253
            && postgres
                .host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            && !postgres.host.starts_with(['.', '-'])
            && !postgres.host.ends_with(['.', '-', ':']);
        if !host_ok {
            problems.push(
                "spec.rotator.postgres.host",
                "must be a host name or IP address (letters, digits, '.', '-', ':'), without a scheme, user, path or port",
            );
        }
    }
    if let Some(vault) = &spec.rotator.vault {
        if let Some(ca) = &vault.ca_secret_ref {
            references.push(("spec.rotator.vault.caSecretRef.name".into(), &ca.name));
        }
        if let Some(token) = &vault.auth.token {
            references.push((
                "spec.rotator.vault.auth.token.secretRef.name".into(),
                &token.secret_ref.name,
            ));
        }
        if let Some(app_role) = &vault.auth.app_role {
            references.push((
                "spec.rotator.vault.auth.appRole.secretIdRef.name".into(),
                &app_role.secret_id_ref.name,
            ));
        }
        if has_user_info(&vault.address) {
            problems.push(
                "spec.rotator.vault.address",
                "must not carry a user or password; put credentials in spec.rotator.vault.auth",
            );
        }
    }
    if let Some(aws) = &spec.rotator.aws_secrets_manager {
        if !is_aws_region(&aws.region) {
            problems.push(
                "spec.rotator.awsSecretsManager.region",
                "must be an AWS region such as eu-central-1",
            );
        }
        if let Some(endpoint) = &aws.endpoint
            && (!(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
                || has_user_info(endpoint))
        {
            problems.push(
                "spec.rotator.awsSecretsManager.endpoint",
                "must be an http(s) URL without a user or password, such as https://secretsmanager.eu-central-1.amazonaws.com",
            );
        }
    }
    if let Some(custom) = &spec.rotator.custom {
        for (name, reference) in &custom.secret_refs {
            references.push((
                format!("spec.rotator.custom.secretRefs.{name}.name"),
                &reference.name,
            ));
        }
    }
    for (field, name) in references {
        if !is_dns_subdomain(name) {
            problems.push(
                &field,
                "must be the name of a Secret in this namespace (lower-case letters, digits, '-' and '.'); the value is not repeated here in case it is a credential pasted into the wrong field",
            );
        }
    }
    if let Some(access) = &spec.access
        && access.service_accounts.len() > MAX_SERVICE_ACCOUNTS
    {
        problems.push(
            "spec.access.serviceAccounts",
            format!(
                "lists {} service accounts; at most {MAX_SERVICE_ACCOUNTS} are allowed",
                access.service_accounts.len()
            ),
        );
    }
}

/// Most service accounts one ManagedSecret may grant (the schema's maxItems).
const MAX_SERVICE_ACCOUNTS: usize = 64;

/// `scheme://user[:password]@host...`
fn has_user_info(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// The shape of AWS_REGION_PATTERN: `^[a-z]{2,4}(-[a-z]+){1,3}-[0-9]+$`.
fn is_aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    let lower = |part: &&str| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase());
    (3..=5).contains(&parts.len())
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
        && words.iter().all(lower)
        && (2..=4).contains(&words[0].len())
}

fn validate_postgres(postgres: &PostgresRotatorSpec, problems: &mut Problems) {
    check_postgres_role("spec.rotator.postgres.role", &postgres.role, problems);
    if let Some(alternate) = &postgres.alternate_role {
        check_postgres_role("spec.rotator.postgres.alternateRole", alternate, problems);
        if alternate == &postgres.role {
            problems.push(
                "spec.rotator.postgres.alternateRole",
                "must differ from spec.rotator.postgres.role",
            );
        }
        if postgres.strategy != PostgresStrategy::AlternatingUsers {
            problems.push(
                "spec.rotator.postgres.alternateRole",
                "is only used with strategy AlternatingUsers; remove it or change the strategy",
            );
        }
    } else if postgres.strategy == PostgresStrategy::AlternatingUsers
        && postgres.role.len() + ALTERNATE_ROLE_SUFFIX.len() > POSTGRES_MAX_IDENTIFIER
    {
        problems.push(
            "spec.rotator.postgres.role",
            "is too long for the default alternate role `<role>_alt` (63 bytes at most); shorten it or set alternateRole",
        );
    }
    if postgres.port == 0 {
        problems.push("spec.rotator.postgres.port", "must be between 1 and 65535");
    }
    if postgres.ca_secret_ref.is_some()
        && !matches!(
            postgres.ssl_mode,
            PostgresSslMode::VerifyCa | PostgresSslMode::VerifyFull
        )
    {
        problems.push(
            "spec.rotator.postgres.caSecretRef",
            "needs sslMode verify-ca or verify-full to have any effect",
        );
    }
}

/// The unquoted lower-case identifier subset: the same name quoted or unquoted, never SQL.
fn check_postgres_role(field: &str, role: &str, problems: &mut Problems) {
    let mut chars = role.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !starts_well || !rest_ok || role.len() > POSTGRES_MAX_IDENTIFIER {
        problems.push(
            field,
            "must be a PostgreSQL role name of lower-case letters, digits and '_', starting with a letter or '_', at most 63 characters",
        );
    }
}

fn validate_vault(vault: &VaultRotatorSpec, problems: &mut Problems) {
    let scheme_ok = vault.address.starts_with("https://") || vault.address.starts_with("http://");
    if !scheme_ok {
        problems.push(
            "spec.rotator.vault.address",
            "must be an http(s) URL such as https://vault.vault.svc:8200",
        );
    }
    if let Some(kv) = &vault.kv
        && !PASSWORD_LENGTHS.contains(&kv.password_length)
    {
        problems.push(
            "spec.rotator.vault.kv.passwordLength",
            "must be between 16 and 256",
        );
    }
    if vault.database_static_role.is_some() == vault.kv.is_some() {
        problems.push(
            "spec.rotator.vault",
            "set exactly one of databaseStaticRole or kv",
        );
    }
    let auth = &vault.auth;
    let methods = [
        auth.token.is_some(),
        auth.app_role.is_some(),
        auth.kubernetes.is_some(),
    ];
    if methods.iter().filter(|set| **set).count() != 1 {
        problems.push(
            "spec.rotator.vault.auth",
            "set exactly one of token, appRole or kubernetes",
        );
    }
    let paths = [
        (
            "spec.rotator.vault.databaseStaticRole.mount",
            vault
                .database_static_role
                .as_ref()
                .map(|s| s.mount.as_str()),
        ),
        (
            "spec.rotator.vault.databaseStaticRole.role",
            vault.database_static_role.as_ref().map(|s| s.role.as_str()),
        ),
        (
            "spec.rotator.vault.kv.mount",
            vault.kv.as_ref().map(|kv| kv.mount.as_str()),
        ),
        (
            "spec.rotator.vault.kv.path",
            vault.kv.as_ref().map(|kv| kv.path.as_str()),
        ),
    ];
    for (field, value) in paths {
        if let Some(path) = value
            && !is_vault_path(path)
        {
            problems.push(field, "must be a Vault path of letters, digits and _.- segments separated by '/', without '..'");
        }
    }
}

fn validate_policy(spec: &ManagedSecretSpec, problems: &mut Problems) -> Option<RotationPolicy> {
    let rotation = &spec.rotation;
    let every = problems.duration("spec.rotation.every", rotation.every.as_deref());
    let window = problems.duration("spec.rotation.window", rotation.window.as_deref());
    let rotate_before = problems.duration(
        "spec.rotation.rotateBefore",
        rotation.rotate_before.as_deref(),
    );
    let ttl = spec
        .expiry
        .as_ref()
        .and_then(|expiry| problems.duration("spec.expiry.ttl", expiry.ttl.as_deref()));

    for (field, value, floor) in [
        ("spec.rotation.every", every, MIN_INTERVAL),
        ("spec.rotation.window", window, MIN_INTERVAL),
        ("spec.expiry.ttl", ttl, MIN_TTL),
    ] {
        if value.is_some_and(|value| value < floor) {
            problems.push(
                field,
                format!("must be at least {}", keyturn_core::format_duration(floor)),
            );
        }
    }
    if rotation.window.is_some() && rotation.schedule.is_none() {
        problems.push(
            "spec.rotation.window",
            "only applies to spec.rotation.schedule; remove it or add a schedule",
        );
    }
    if rotation.time_zone.is_some() && rotation.schedule.is_none() {
        problems.push(
            "spec.rotation.timeZone",
            "only applies to spec.rotation.schedule; remove it or add a schedule",
        );
    }
    let trigger = match (&rotation.every, &rotation.schedule) {
        (Some(_), Some(_)) => {
            problems.push(
                "spec.rotation",
                "set only one of every (an interval such as 720h) or schedule (cron such as \"0 3 * * SUN\")",
            );
            None
        }
        (None, None) => {
            problems.push(
                "spec.rotation",
                "set one of every (an interval such as 720h) or schedule (cron such as \"0 3 * * SUN\")",
            );
            None
        }
        (Some(_), None) => every.map(|every| Trigger::Interval { every }),
        (None, Some(expression)) => {
            match CronTrigger::parse(expression, rotation.time_zone.as_deref(), window) {
                Ok(cron) => Some(Trigger::Cron(cron)),
                Err(error) => {
                    problems.push(schedule_error_field(&error), error.to_string());
                    None
                }
            }
        }
    };
    let rotate_before = match (rotate_before, rotation.rotate_before_percent) {
        (Some(_), Some(_)) => {
            problems.push(
                "spec.rotation.rotateBeforePercent",
                "set only one of spec.rotation.rotateBefore or spec.rotation.rotateBeforePercent",
            );
            None
        }
        (Some(before), None) => Some(RotateBefore::Duration(before)),
        (None, Some(percent)) => Some(RotateBefore::Percent(percent)),
        (None, None) => None,
    };
    let policy = RotationPolicy {
        trigger: trigger?,
        rotate_before,
        ttl,
        paused: rotation.paused,
    };
    if let Err(error) = policy.validate() {
        problems.push(policy_error_field(&error), error.to_string());
        return None;
    }
    if let (Some(every), Some(ttl)) = (every, ttl)
        && every > ttl
    {
        problems.push(
            "spec.rotation.every",
            "must not be longer than spec.expiry.ttl: the credential would expire before its scheduled rotation",
        );
        return None;
    }
    Some(policy)
}

fn schedule_error_field(error: &ScheduleError) -> &'static str {
    match error {
        ScheduleError::UnknownTimeZone { .. } => "spec.rotation.timeZone",
        ScheduleError::ZeroWindow => "spec.rotation.window",
        ScheduleError::FieldCount { .. } | ScheduleError::Invalid { .. } => {
            "spec.rotation.schedule"
        }
    }
}

fn policy_error_field(error: &PolicyError) -> &'static str {
    match error {
        PolicyError::ZeroInterval => "spec.rotation.every",
        PolicyError::ZeroRotateBefore | PolicyError::RotateBeforeNotShorterThanTtl { .. } => {
            "spec.rotation.rotateBefore"
        }
        PolicyError::PercentOutOfRange { .. } => "spec.rotation.rotateBeforePercent",
        PolicyError::ZeroTtl => "spec.expiry.ttl",
        PolicyError::ZeroWindow => "spec.rotation.window",
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_driver_name(name: &str) -> bool {
    let Some((domain, driver)) = name.split_once('/') else {
        return false;
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    domain.contains('.') && is_dns_subdomain(domain) && label_ok(driver) && name.len() <= 253
}

fn is_vault_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != ".."
                && segment != "."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        })
}
