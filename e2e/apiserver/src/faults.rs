//! Fault injection and the request log: rules match a method and a regex over `path?query` and
//! answer with an error status (409, 429 with Retry-After, 5xx) and/or added latency, `count` times.

use std::sync::Mutex;
use std::time::Duration;

use regex_lite::Regex;
use serde_json::{Value, json};

use crate::error::ApiError;

/// One fault rule.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// HTTP method to match (any if None).
    pub method: Option<String>,
    /// Regex over `path` or `path?query`.
    pub path: Regex,
    /// Error status to answer with (none: only latency).
    pub status: Option<u16>,
    /// `Retry-After` seconds (for 429/5xx).
    pub retry_after: Option<u64>,
    /// Latency added before handling (or before the error).
    pub latency: Option<Duration>,
    /// How many more requests it applies to (None: unlimited).
    pub remaining: Option<u64>,
}

impl FaultRule {
    /// Parses `{"method","path","status","retryAfter","latencyMs","count"}`.
    pub fn from_json(v: &Value) -> Result<Self, ApiError> {
        let path = v["path"].as_str().unwrap_or(".*");
        let path =
            Regex::new(path).map_err(|e| ApiError::bad_request(format!("path regex: {e}")))?;
        let status = v["status"]
            .as_u64()
            .map(u16::try_from)
            .transpose()
            .map_err(|_| ApiError::bad_request("status"))?;
        if status.is_none() && v["latencyMs"].as_u64().is_none() {
            return Err(ApiError::bad_request(
                "a fault needs a status and/or latencyMs",
            ));
        }
        Ok(Self {
            method: v["method"].as_str().map(str::to_uppercase),
            path,
            status,
            retry_after: v["retryAfter"].as_u64(),
            latency: v["latencyMs"].as_u64().map(Duration::from_millis),
            remaining: v["count"].as_u64(),
        })
    }
}

/// What a matching rule does to one request.
#[derive(Debug, Clone, Default)]
pub struct FaultAction {
    /// Sleep first.
    pub latency: Option<Duration>,
    /// Then answer with this status and Retry-After instead of handling the request.
    pub error: Option<(u16, Option<u64>)>,
}

/// Fault rules and the request log.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
    log: Mutex<Vec<Value>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Faults {
    /// Adds a rule.
    pub fn add(&self, rule: FaultRule) {
        lock(&self.rules).push(rule);
    }

    /// Removes all rules.
    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// The first matching rule's action (consuming one of its `count`).
    pub fn check(&self, method: &str, target: &str) -> FaultAction {
        let mut rules = lock(&self.rules);
        let Some(i) = rules.iter().position(|r| {
            r.method.as_deref().is_none_or(|m| m == method)
                && r.path.is_match(target)
                && r.remaining != Some(0)
        }) else {
            return FaultAction::default();
        };
        let r = &mut rules[i];
        if let Some(n) = r.remaining.as_mut() {
            *n -= 1;
        }
        let action = FaultAction {
            latency: r.latency,
            error: r.status.map(|s| (s, r.retry_after)),
        };
        rules.retain(|r| r.remaining != Some(0));
        action
    }

    /// Records one request.
    pub fn record(&self, method: &str, path: &str, query: &str, status: u16) {
        lock(&self.log)
            .push(json!({"method": method, "path": path, "query": query, "status": status}));
    }

    /// The request log (oldest first).
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.log).clone()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rules_match_and_count_down() {
        let f = Faults::default();
        f.add(
            FaultRule::from_json(
                &json!({"method": "put", "path": "/secrets/", "status": 409, "count": 2}),
            )
            .unwrap(),
        );
        assert!(
            f.check("GET", "/api/v1/namespaces/a/secrets/x")
                .error
                .is_none()
        );
        assert_eq!(
            f.check("PUT", "/api/v1/namespaces/a/secrets/x").error,
            Some((409, None))
        );
        assert_eq!(
            f.check("PUT", "/api/v1/namespaces/a/secrets/x").error,
            Some((409, None))
        );
        assert!(
            f.check("PUT", "/api/v1/namespaces/a/secrets/x")
                .error
                .is_none()
        );
        assert!(FaultRule::from_json(&json!({"path": "("})).is_err());
    }
}
