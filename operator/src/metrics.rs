//! Prometheus metrics: owns the registry and every `keyturn_*` metric family, and encodes them in
//! the OpenMetrics text format for the `/metrics` endpoint. Label values are only what callers
//! pass (rotator names, PascalCase categories, step names, object namespace/name): never secrets.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// How a rotation ended, the `outcome` label of `keyturn_rotations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RotationOutcome {
    Completed,
    Failed,
}

impl RotationOutcome {
    /// The label value: `completed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for RotationOutcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RotationLabels {
    rotator: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CategoryLabels {
    category: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    step: String,
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ObjectLabels {
    namespace: String,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

fn reconcile_duration_histogram() -> Histogram {
    // 5 ms up to about 41 s: a reconcile that only reads is milliseconds, one that rotates
    // waits on a backend and can take tens of seconds.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric the operator exports, and the registry that encodes them. Share it as
/// `Arc<Metrics>`: all methods take `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rotations: Family<RotationLabels, Counter>,
    rotation_failures: Family<CategoryLabels, Counter>,
    rotation_steps: Family<StepLabels, Counter>,
    credential_expiry: Family<ObjectLabels, Gauge>,
    next_rotation: Family<ObjectLabels, Gauge>,
    reconcile_duration: Family<OutcomeLabels, Histogram>,
    reconcile_errors: Family<CategoryLabels, Counter>,
    audit_unavailable: Gauge,
    audit_records: Counter,
    consumer_restarts: Family<KindLabels, Counter>,
    leader: Gauge,
    secret_reads: Family<DecisionLabels, Counter>,
    unexpected_readers: Family<ObjectLabels, Gauge>,
    audit_webhook_requests: Family<CodeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the registry with every family registered (and no series in labelled families).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rotations = Family::<RotationLabels, Counter>::default();
        registry.register(
            "keyturn_rotations",
            "Rotations finished, by rotator and outcome (completed or failed)",
            rotations.clone(),
        );
        let rotation_failures = Family::<CategoryLabels, Counter>::default();
        registry.register(
            "keyturn_rotation_failures",
            "Rotation steps that failed, by failure category",
            rotation_failures.clone(),
        );
        let rotation_steps = Family::<StepLabels, Counter>::default();
        registry.register(
            "keyturn_rotation_steps",
            "Rotation steps run, by step and outcome (succeeded, pending or failed)",
            rotation_steps.clone(),
        );
        let credential_expiry = Family::<ObjectLabels, Gauge>::default();
        registry.register_with_unit(
            "keyturn_credential_expiry_timestamp",
            "When the current credential of a ManagedSecret expires, as a Unix timestamp",
            Unit::Seconds,
            credential_expiry.clone(),
        );
        let next_rotation = Family::<ObjectLabels, Gauge>::default();
        registry.register_with_unit(
            "keyturn_next_rotation_timestamp",
            "When a ManagedSecret is next due for rotation, as a Unix timestamp",
            Unit::Seconds,
            next_rotation.clone(),
        );
        let reconcile_duration = Family::<OutcomeLabels, Histogram>::new_with_constructor(
            reconcile_duration_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "keyturn_reconcile_duration",
            "Time spent in one reconcile of a ManagedSecret, by outcome (ok or error)",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<CategoryLabels, Counter>::default();
        registry.register(
            "keyturn_reconcile_errors",
            "Reconciles that ended in an error, by error category",
            reconcile_errors.clone(),
        );
        let audit_unavailable = Gauge::default();
        registry.register(
            "keyturn_audit_unavailable",
            "1 while the audit log cannot be written (rotations wait), else 0",
            audit_unavailable.clone(),
        );
        let audit_records = Counter::default();
        registry.register(
            "keyturn_audit_records",
            "Records appended to the audit log",
            audit_records.clone(),
        );
        let consumer_restarts = Family::<KindLabels, Counter>::default();
        registry.register(
            "keyturn_consumer_restarts",
            "Restarts of consuming workloads triggered after a rotation, by workload kind",
            consumer_restarts.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "keyturn_leader",
            "1 while this replica holds the leader lease, else 0",
            leader.clone(),
        );
        let secret_reads = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "keyturn_secret_reads",
            "Reads of managed Secrets recorded from the audit webhook (one per Secret covered), by authorization decision (allow, forbid, unknown)",
            secret_reads.clone(),
        );
        let unexpected_readers = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "keyturn_unexpected_readers",
            "Service accounts outside spec.access that read a ManagedSecret's Secret in the last 24 hours; a series exists only while there are some",
            unexpected_readers.clone(),
        );
        let audit_webhook_requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "keyturn_audit_webhook_requests",
            "Requests to the audit webhook, by HTTP status code (handshake_failed: TLS refused)",
            audit_webhook_requests.clone(),
        );
        Self {
            registry,
            secret_reads,
            unexpected_readers,
            audit_webhook_requests,
            rotations,
            rotation_failures,
            rotation_steps,
            credential_expiry,
            next_rotation,
            reconcile_duration,
            reconcile_errors,
            audit_unavailable,
            audit_records,
            consumer_restarts,
            leader,
        }
    }

    /// Counts one finished rotation in `keyturn_rotations_total{rotator,outcome}`.
    pub fn rotation_finished(&self, rotator: &str, outcome: RotationOutcome) {
        self.rotations
            .get_or_create(&RotationLabels {
                rotator: rotator.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts one failed step in `keyturn_rotation_failures_total{category}`; `category` is a
    /// low-cardinality PascalCase name such as `Unreachable`.
    pub fn step_failed(&self, category: &str) {
        self.rotation_failures
            .get_or_create(&CategoryLabels {
                category: category.to_owned(),
            })
            .inc();
    }

    /// Counts one step run in `keyturn_rotation_steps_total{step,outcome}` (outcome
    /// `succeeded`, `pending` or `failed`).
    pub fn step_finished(&self, step: &str, outcome: &str) {
        self.rotation_steps
            .get_or_create(&StepLabels {
                step: step.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the expiry and next-rotation gauges of one ManagedSecret; `None` removes that
    /// series (so a dashboard shows no stale time).
    pub fn set_schedule(
        &self,
        namespace: &str,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        next_rotation: Option<DateTime<Utc>>,
    ) {
        let labels = ObjectLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        set_or_remove(&self.credential_expiry, &labels, expires_at);
        set_or_remove(&self.next_rotation, &labels, next_rotation);
    }

    /// Removes both per-object series of a deleted ManagedSecret.
    pub fn forget(&self, namespace: &str, name: &str) {
        let labels = ObjectLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.credential_expiry.remove(&labels);
        self.next_rotation.remove(&labels);
        self.unexpected_readers.remove(&labels);
    }

    /// Records one reconcile's duration in `keyturn_reconcile_duration_seconds{outcome}`.
    pub fn observe_reconcile(&self, duration: Duration, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.reconcile_duration
            .get_or_create(&OutcomeLabels { outcome })
            .observe(duration.as_secs_f64());
    }

    /// Counts one failed reconcile in `keyturn_reconcile_errors_total{category}`.
    pub fn reconcile_failed(&self, category: &str) {
        self.reconcile_errors
            .get_or_create(&CategoryLabels {
                category: category.to_owned(),
            })
            .inc();
    }

    /// Sets `keyturn_audit_unavailable` to 1 (unavailable) or 0.
    pub fn set_audit_unavailable(&self, unavailable: bool) {
        self.audit_unavailable.set(i64::from(unavailable));
    }

    /// Adds `count` to `keyturn_audit_records_total`.
    pub fn audit_appended(&self, count: u64) {
        self.audit_records.inc_by(count);
    }

    /// Counts one consumer restart in `keyturn_consumer_restarts_total{kind}`.
    pub fn consumer_restarted(&self, kind: &str) {
        self.consumer_restarts
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts one recorded read in `keyturn_secret_reads_total{decision}`; `outcome` is the
    /// record's (`Allowed`, `Denied`, anything else is `unknown`).
    pub fn secret_read(&self, outcome: &str) {
        let decision = match outcome {
            "Allowed" => "allow",
            "Denied" => "forbid",
            _ => "unknown",
        };
        self.secret_reads
            .get_or_create(&DecisionLabels { decision })
            .inc();
    }

    /// Sets `keyturn_unexpected_readers{namespace,name}`; 0 removes the series, so the family
    /// only holds ManagedSecrets that have unexpected readers.
    pub fn set_unexpected_readers(&self, namespace: &str, name: &str, count: usize) {
        let labels = ObjectLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        if count == 0 {
            self.unexpected_readers.remove(&labels);
        } else {
            self.unexpected_readers
                .get_or_create(&labels)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Counts one answer of the audit webhook in `keyturn_audit_webhook_requests_total{code}`.
    pub fn audit_webhook_request(&self, code: &str) {
        self.audit_webhook_requests
            .get_or_create(&CodeLabels {
                code: code.to_owned(),
            })
            .inc();
    }

    /// Sets `keyturn_leader` to 1 (this replica leads) or 0.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Every metric in the OpenMetrics text format, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail and our label sets encode infallibly, so an error
        // here would be a bug in the encoder: report it rather than serve nothing.
        if let Err(error) = encode(&mut text, &self.registry) {
            tracing::error!(%error, "encode the metrics registry");
        }
        text
    }
}

fn set_or_remove(
    family: &Family<ObjectLabels, Gauge>,
    labels: &ObjectLabels,
    time: Option<DateTime<Utc>>,
) {
    match time {
        Some(time) => {
            family.get_or_create(labels).set(time.timestamp());
        }
        None => {
            family.remove(labels);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;

    use chrono::TimeZone;

    use super::*;

    fn sample_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|line| !line.starts_with('#')).collect()
    }

    #[test]
    fn encoding_has_every_family_with_its_labels() {
        let metrics = Metrics::new();
        let expires = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
        let next = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        metrics.rotation_finished("postgres", RotationOutcome::Completed);
        metrics.rotation_finished("postgres", RotationOutcome::Failed);
        metrics.step_failed("Unreachable");
        metrics.step_finished("CreateCredential", "succeeded");
        metrics.set_schedule("apps", "db", Some(expires), Some(next));
        metrics.observe_reconcile(Duration::from_millis(20), true);
        metrics.observe_reconcile(Duration::from_secs(2), false);
        metrics.reconcile_failed("Conflict");
        metrics.set_audit_unavailable(true);
        metrics.audit_appended(3);
        metrics.consumer_restarted("Deployment");
        metrics.set_leader(true);

        let text = metrics.encode();
        let lines = sample_lines(&text);
        for expected in [
            r#"keyturn_rotations_total{rotator="postgres",outcome="completed"} 1"#,
            r#"keyturn_rotations_total{rotator="postgres",outcome="failed"} 1"#,
            r#"keyturn_rotation_failures_total{category="Unreachable"} 1"#,
            r#"keyturn_rotation_steps_total{step="CreateCredential",outcome="succeeded"} 1"#,
            r#"keyturn_credential_expiry_timestamp_seconds{namespace="apps",name="db"} 1893553445"#,
            r#"keyturn_next_rotation_timestamp_seconds{namespace="apps",name="db"} 1893456000"#,
            r#"keyturn_reconcile_duration_seconds_count{outcome="ok"} 1"#,
            r#"keyturn_reconcile_duration_seconds_count{outcome="error"} 1"#,
            r#"keyturn_reconcile_errors_total{category="Conflict"} 1"#,
            "keyturn_audit_unavailable 1",
            "keyturn_audit_records_total 3",
            r#"keyturn_consumer_restarts_total{kind="Deployment"} 1"#,
            "keyturn_leader 1",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
        }
        for (family, kind) in [
            ("keyturn_rotations", "counter"),
            ("keyturn_credential_expiry_timestamp_seconds", "gauge"),
            ("keyturn_reconcile_duration_seconds", "histogram"),
            ("keyturn_leader", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "missing TYPE of {family} in\n{text}"
            );
        }
        assert!(text.contains("# UNIT keyturn_reconcile_duration_seconds seconds\n"));
        assert!(text.ends_with("# EOF\n"));

        metrics.set_audit_unavailable(false);
        metrics.set_leader(false);
        let lines_after = metrics.encode();
        assert!(sample_lines(&lines_after).contains(&"keyturn_leader 0"));
        assert!(sample_lines(&lines_after).contains(&"keyturn_audit_unavailable 0"));
    }

    #[test]
    fn forget_and_none_remove_series() {
        let metrics = Metrics::new();
        let time = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        metrics.set_schedule("apps", "db", Some(time), Some(time));
        metrics.set_schedule("apps", "cache", Some(time), Some(time));

        metrics.set_schedule("apps", "cache", None, Some(time));
        let text = metrics.encode();
        assert!(!text.contains(
            r#"keyturn_credential_expiry_timestamp_seconds{namespace="apps",name="cache"}"#
        ));
        assert!(
            text.contains(
                r#"keyturn_next_rotation_timestamp_seconds{namespace="apps",name="cache"}"#
            )
        );

        metrics.forget("apps", "db");
        metrics.forget("apps", "cache");
        let text = metrics.encode();
        assert!(!text.contains(r#"name="db""#), "{text}");
        assert!(!text.contains(r#"name="cache""#), "{text}");
        // Forgetting an unknown object is harmless.
        metrics.forget("apps", "never-seen");
    }

    #[test]
    fn label_values_are_only_what_callers_pass() {
        let metrics = Metrics::new();
        metrics.rotation_finished("vault", RotationOutcome::Completed);
        metrics.step_failed("Unauthorized");
        metrics.step_finished("Verify", "pending");
        metrics.set_schedule(
            "team-a",
            "api-key",
            Some(Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap()),
            None,
        );
        metrics.observe_reconcile(Duration::from_millis(1), true);
        metrics.reconcile_failed("Backend");
        metrics.consumer_restarted("StatefulSet");

        let text = metrics.encode();
        let mut values = BTreeSet::new();
        for line in sample_lines(&text) {
            let Some(start) = line.find('{') else {
                continue;
            };
            let end = line.rfind('}').unwrap();
            for pair in line[start + 1..end].split(',') {
                let (key, value) = pair.split_once('=').unwrap();
                // Histogram bucket bounds are the encoder's own label, not a caller's value.
                if key != "le" {
                    values.insert(value.trim_matches('"').to_owned());
                }
            }
        }
        let expected: BTreeSet<String> = [
            "vault",
            "completed",
            "Unauthorized",
            "Verify",
            "pending",
            "team-a",
            "api-key",
            "ok",
            "Backend",
            "StatefulSet",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(values, expected);
    }
}
