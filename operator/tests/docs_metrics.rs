//! Every `keyturn_*` metric the docs name (alert rules, runbooks, the compliance map, the
//! controller's metric table) is one the operator exports, so an alert copied from the docs
//! cannot silently match nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use keyturn_operator::metrics::{Metrics, RotationOutcome};

/// The sample names the operator exports, with every family given one series.
fn exported() -> BTreeSet<String> {
    let metrics = Metrics::new();
    metrics.rotation_finished("postgres", RotationOutcome::Completed);
    metrics.step_failed("Unreachable");
    metrics.step_finished("Verify", "succeeded");
    let time = chrono::DateTime::from_timestamp(2_000_000_000, 0).unwrap();
    metrics.set_schedule("payments", "orders-db", Some(time), Some(time));
    metrics.observe_reconcile(Duration::from_millis(5), true);
    metrics.reconcile_failed("Conflict");
    metrics.set_audit_unavailable(true);
    metrics.audit_appended(1);
    metrics.consumer_restarted("Deployment");
    metrics.set_leader(true);
    metrics.secret_read("Allowed");
    metrics.set_unexpected_readers("payments", "orders-db", 1);
    metrics.audit_webhook_request("200");
    metrics
        .encode()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

fn named_in_docs(page: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(page);
    let text = std::fs::read_to_string(&path).expect("read the page");
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("keyturn_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches('_');
        // Crate and Rust paths (`keyturn_core::...`, `keyturn_audit`) are not metrics.
        let is_path = tail[end..].starts_with("::");
        // `keyturn_admin` is the PostgreSQL role in the examples.
        let is_other = ["keyturn_admin", "keyturn_audit"].contains(&name);
        if !is_path && !is_other && !name.is_empty() {
            names.insert(name.to_owned());
        }
        rest = &tail[end.max(1)..];
    }
    names
}

#[test]
fn every_metric_the_docs_name_is_exported() {
    let exported = exported();
    assert!(exported.contains("keyturn_rotations_total"), "{exported:?}");
    for page in ["runbooks.md", "compliance.md", "controller.md"] {
        let named = named_in_docs(page);
        assert!(!named.is_empty(), "docs/{page} names no metric");
        // A histogram is named by its family; its samples are `_bucket`, `_sum` and `_count`.
        let unknown: Vec<&String> = named
            .iter()
            .filter(|name| {
                !exported.contains(*name) && !exported.contains(&format!("{name}_count"))
            })
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/{page} names metrics the operator does not export: {unknown:?}; exported: {exported:?}"
        );
    }
}
