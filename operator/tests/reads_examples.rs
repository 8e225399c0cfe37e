//! The shipped examples for wiring the API server to the reads webhook parse as what they claim
//! to be, log Secrets at Metadata level only, and point at the path the webhook serves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyturn_operator::reads::webhook;
use kube::config::Kubeconfig;
use serde_yaml::Value;

fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples")
        .join(name)
}

#[test]
fn audit_policy_logs_secret_reads_at_metadata_level_only() {
    let text = std::fs::read_to_string(example("audit-policy.yaml")).unwrap();
    let policy: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(policy["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(policy["kind"], "Policy");
    let omitted: Vec<&str> = policy["omitStages"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|stage| stage.as_str().unwrap())
        .collect();
    assert_eq!(omitted, ["RequestReceived"]);
    let rules = policy["rules"].as_sequence().unwrap();
    let levels: Vec<&str> = rules
        .iter()
        .map(|rule| rule["level"].as_str().unwrap())
        .collect();
    assert!(
        levels
            .iter()
            .all(|level| ["None", "Metadata"].contains(level)),
        "bodies would carry Secret data: {levels:?}"
    );
    let secrets_rule = rules
        .iter()
        .find(|rule| rule["level"] == "Metadata")
        .expect("a Metadata rule");
    let verbs: Vec<&str> = secrets_rule["verbs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|verb| verb.as_str().unwrap())
        .collect();
    assert_eq!(verbs, ["get", "list", "watch"]);
    assert_eq!(secrets_rule["resources"][0]["group"], "");
    assert_eq!(secrets_rule["resources"][0]["resources"][0], "secrets");
    // The catch-all comes last, so nothing but Secrets reaches the webhook.
    let last = rules.last().unwrap();
    assert_eq!(last["level"], "None");
    assert!(last.get("resources").is_none() && last.get("verbs").is_none());
}

#[test]
fn webhook_kubeconfig_points_at_the_served_path_with_credentials() {
    let config = Kubeconfig::read_from(example("audit-webhook-kubeconfig.yaml")).unwrap();
    let cluster = config.clusters[0].cluster.as_ref().unwrap();
    let server: url::Url = cluster.server.as_deref().unwrap().parse().unwrap();
    assert_eq!(server.scheme(), "https");
    assert_eq!(server.path(), webhook::PATH);
    assert!(cluster.certificate_authority.is_some());
    let user = config.auth_infos[0].auth_info.as_ref().unwrap();
    assert!(user.client_certificate.is_some() && user.client_key.is_some() || user.token.is_some());
    assert_eq!(
        config.current_context.as_deref(),
        Some(config.contexts[0].name.as_str())
    );
}
