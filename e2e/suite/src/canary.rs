//! The leak check: a canary credential must appear nowhere a credential does not belong: operator
//! logs, the namespace's Events, ManagedSecret objects (status included) and /metrics.

use base64::Engine as _;

use crate::cluster::Cluster;
use crate::operator::OperatorProcess;

/// Characters shown on each side of a leak in the failure message.
const CONTEXT_CHARACTERS: usize = 80;

/// The forms a leaked canary could take: as is, and base64-encoded (Secret-style data).
fn forms(canary: &str) -> Vec<String> {
    vec![
        canary.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(canary),
    ]
}

/// Where in `text` a form of the canary occurs, with some context in which the canary itself
/// is masked: a failing check must not print a real credential into the test output.
fn find_leak(text: &str, forms: &[String]) -> Option<String> {
    forms.iter().find_map(|form| {
        text.find(form.as_str()).map(|start| {
            let mut from = start.saturating_sub(CONTEXT_CHARACTERS);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let mut to = (start + form.len() + CONTEXT_CHARACTERS).min(text.len());
            while !text.is_char_boundary(to) {
                to += 1;
            }
            let masked = text[from..to].replace(form.as_str(), "<CANARY>");
            format!("at byte {start}: …{masked}…")
        })
    })
}

/// Asserts that `canary` (or its base64 form) appears in none of: the logs of `processes`, the
/// Events of `namespace` (core/v1 and events.k8s.io/v1), the status of any ManagedSecret in
/// `namespace` and everything the operator added to its metadata (not the spec: a user may
/// have pasted the canary there, which is their input, not a leak), and the `/metrics` of each
/// process still running.
///
/// # Panics
/// Listing every place the canary was found; also when `canary` is too short to mean anything.
pub async fn assert_no_canary(
    cluster: &Cluster,
    namespace: &str,
    processes: &[&OperatorProcess],
    canary: &str,
) {
    assert!(
        canary.len() >= 8,
        "a canary of {} characters would match by chance; use a long, unusual string",
        canary.len()
    );
    let forms = forms(canary);
    let mut leaks = Vec::new();

    for process in processes {
        if let Some(context) = find_leak(&process.logs(), &forms) {
            leaks.push(format!("log of operator {}: {context}", process.identity()));
        }
        // A process that has exited serves no metrics; its logs were checked above.
        if process.exit_status().is_none() {
            match process.http_get("/metrics").await {
                Ok((_, body)) => {
                    if let Some(context) = find_leak(&body, &forms) {
                        leaks.push(format!(
                            "/metrics of operator {}: {context}",
                            process.identity()
                        ));
                    }
                }
                Err(error) => leaks.push(format!(
                    "/metrics of operator {} could not be checked: {error}",
                    process.identity()
                )),
            }
        }
    }
    for event in cluster.events(namespace).await {
        if let Some(context) = find_leak(&event.to_string(), &forms) {
            leaks.push(format!(
                "{} Event {}: {context}",
                event["apiVersion"].as_str().unwrap_or_default(),
                event["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    for managed_secret in cluster
        .list(namespace, "keyturn.dev/v1alpha1", "ManagedSecret")
        .await
    {
        let written_by_operator = serde_json::json!({
            "status": managed_secret["status"],
            "labels": managed_secret["metadata"]["labels"],
            "annotations": managed_secret["metadata"]["annotations"],
            "finalizers": managed_secret["metadata"]["finalizers"],
        });
        if let Some(context) = find_leak(&written_by_operator.to_string(), &forms) {
            leaks.push(format!(
                "ManagedSecret {}: {context}",
                managed_secret["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "the canary leaked (or could not be checked) in namespace {namespace}:\n  {}",
        leaks.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_plain_and_base64_forms_with_context() {
        let forms = forms("CanaryPw0rd");
        assert_eq!(find_leak("nothing here", &forms), None);
        let leak = find_leak("password=CanaryPw0rd end", &forms).expect("found");
        assert!(leak.contains("password=<CANARY> end"), "{leak}");
        assert!(
            !leak.contains("CanaryPw0rd"),
            "the value itself is masked: {leak}"
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode("CanaryPw0rd");
        assert!(find_leak(&format!("{{\"data\":\"{encoded}\"}}"), &forms).is_some());
        // Context never splits a multi-byte character.
        let text = format!("{}CanaryPw0rd{}", "é".repeat(100), "ü".repeat(100));
        assert!(find_leak(&text, &forms).is_some());
    }
}
