//! "Loses nothing it accepted", with the real binary: several clients post audit batches to the
//! webhook while the operator is SIGKILLed; every batch answered 200 is in the store (the 200 is
//! sent only after the commit), nothing twice, and the chain verifies. A restarted operator then
//! gets every accepted batch again (the API server's retry) and adds nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyturn_audit::AuditStore;
use keyturn_e2e::{Cluster, OperatorProcess, wait_for};

const TOKEN: &str = "e2e-webhook-token-7c1d";
const BATCH: usize = 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client trusting only `ca_pem`.
fn client(ca_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap()
}

fn batch(ns: &str, ids: &[String]) -> String {
    let items: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"auditID":"{id}","stage":"ResponseComplete","verb":"get",
                "user":{{"username":"system:serviceaccount:{ns}:orders-api"}},"sourceIPs":["10.0.0.3"],
                "objectRef":{{"resource":"secrets","namespace":"{ns}","name":"orders-credentials"}},
                "responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-11-22T08:00:00Z",
                "annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        items.join(",")
    )
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> Result<u16, reqwest::Error> {
    client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(body)
        .send()
        .await
        .map(|response| response.status().as_u16())
}

/// The auditIDs of the read records in the store, with how often each occurs.
async fn stored_ids(store: &AuditStore) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    let records = store.read_range(1, 1_000_000).await.unwrap();
    for record in records
        .iter()
        .filter(|record| record.action == "SecretRead")
    {
        let details: serde_json::Value = serde_json::from_str(&record.details).unwrap();
        *ids.entry(details["auditID"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_answered_200_survive_a_sigkill_and_retries_add_nothing() {
    let cluster = Cluster::start().await;
    let namespace = cluster.namespace("reads").await;
    let ns = namespace.name().to_owned();
    cluster
        .apply_yaml(
            &ns,
            r"
apiVersion: v1
kind: Secret
metadata:
  name: orders-credentials
  labels:
    app.kubernetes.io/managed-by: keyturn
    keyturn.dev/managed-secret: orders
    keyturn.dev/role: published
data:
  password: bm90LWEtcmVhbC1vbmU=
",
        )
        .await;

    let dir = namespace.work_dir();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("webhook.crt"), server.pem()).unwrap();
    std::fs::write(dir.join("webhook.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("webhook.token"), format!("{TOKEN}\n")).unwrap();

    let start = |port: u16| {
        OperatorProcess::builder(&cluster, &namespace)
            .flag("--audit-webhook-addr", &format!("127.0.0.1:{port}"))
            .flag(
                "--audit-webhook-tls-cert",
                dir.join("webhook.crt").to_str().unwrap(),
            )
            .flag(
                "--audit-webhook-tls-key",
                dir.join("webhook.key").to_str().unwrap(),
            )
            .flag(
                "--audit-webhook-token-file",
                dir.join("webhook.token").to_str().unwrap(),
            )
            .spawn()
    };
    let port = free_port();
    let url = format!("https://localhost:{port}/audit/events");
    let operator = start(port);
    operator.wait_ready().await;
    let client = client(&ca_pem);
    // Ready once the index of managed Secrets has loaded (503 before).
    wait_for(
        "the webhook to accept an empty batch",
        Duration::from_secs(60),
        async || (post(&client, &url, batch(&ns, &[])).await.ok() == Some(200)).then_some(()),
    )
    .await;

    // Posters run until the process dies; each remembers the batches answered 200.
    let accepted: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let mut posters = Vec::new();
    for poster in 0..4 {
        let (client, url, ns, accepted) =
            (client.clone(), url.clone(), ns.clone(), accepted.clone());
        posters.push(tokio::spawn(async move {
            for round in 0.. {
                let ids: Vec<String> = (0..BATCH)
                    .map(|n| format!("p{poster}-r{round}-e{n}"))
                    .collect();
                match post(&client, &url, batch(&ns, &ids)).await {
                    Ok(200) => accepted.lock().unwrap().push(ids),
                    Ok(code) => panic!("unexpected answer {code}"),
                    Err(_) => return,
                }
            }
        }));
    }
    wait_for(
        "20 accepted batches",
        Duration::from_secs(120),
        async || (accepted.lock().unwrap().len() >= 20).then_some(()),
    )
    .await;
    operator.kill();
    for poster in posters {
        tokio::time::timeout(Duration::from_secs(60), poster)
            .await
            .unwrap()
            .unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();

    let store = AuditStore::open_sqlite(dir.join("audit.db")).await.unwrap();
    let stored = stored_ids(&store).await;
    let missing: Vec<&String> = accepted
        .iter()
        .flatten()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "accepted but not stored: {missing:?}");
    assert!(
        stored.values().all(|count| *count == 1),
        "an event stored twice"
    );
    let records = store.verify(&[]).await.unwrap().unwrap().records;

    // The API server retries what it did not see accepted — here, everything accepted: the
    // restarted operator answers 200 and adds nothing.
    let port = free_port();
    let url = format!("https://localhost:{port}/audit/events");
    let restarted = start(port);
    restarted.wait_ready().await;
    wait_for(
        "the restarted webhook",
        Duration::from_secs(60),
        async || (post(&client, &url, batch(&ns, &[])).await.ok() == Some(200)).then_some(()),
    )
    .await;
    for ids in &accepted {
        assert_eq!(post(&client, &url, batch(&ns, ids)).await.unwrap(), 200);
    }
    let after = store.verify(&[]).await.unwrap().unwrap().records;
    assert_eq!(after, records, "retried batches added records");
    let distinct: BTreeSet<String> = stored_ids(&store).await.into_keys().collect();
    assert_eq!(distinct.len(), stored.len());
    restarted.terminate();
    store.close().await;
}
