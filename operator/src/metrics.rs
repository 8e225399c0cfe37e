//! Placeholder with the interface the controller uses; replaced by the real Prometheus metrics.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Default)]
pub struct Metrics;

impl Metrics {
    pub fn rotation_finished(&self, _rotator: &str, _completed: bool) {}
    pub fn step_failed(&self, _category: &str) {}
    pub fn step_finished(&self, _step: &str, _outcome: &str) {}
    pub fn set_schedule(
        &self,
        _namespace: &str,
        _name: &str,
        _expires_at: Option<DateTime<Utc>>,
        _next: Option<DateTime<Utc>>,
    ) {
    }
    pub fn forget(&self, _namespace: &str, _name: &str) {}
    pub fn observe_reconcile(&self, _duration: Duration, _ok: bool) {}
    pub fn reconcile_error(&self, _category: &str) {}
    pub fn set_audit_unavailable(&self, _unavailable: bool) {}
    pub fn audit_appended(&self, _count: u64) {}
}
