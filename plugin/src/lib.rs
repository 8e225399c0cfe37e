//! `kubectl keyturn`: what a platform engineer or a security reviewer asks of keyturn, answered
//! from the cluster through kubeconfig (and from the audit store for history and verification).
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod errors;
pub mod history;
pub mod status;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use k8s_openapi::api::events::v1::Event;
use keyturn_crds::ManagedSecret;
use keyturn_operator::access::AccessTarget;
use keyturn_operator::access::readers::{BEYOND_RBAC, ReadGrant};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::{ClusterArgs, Command, Output};
use crate::errors::{Call, PluginError, close_names, did_you_mean, is_not_found};
use crate::status::{Cell, StatusRow};

/// The annotation the operator honours once per value as a request to rotate now.
pub const ROTATE_REQUEST_ANNOTATION: &str = "keyturn.dev/rotate-requested-at";
const RESOURCE: &str = "managedsecrets.keyturn.dev";

/// Runs one command; the exit code is 1 when `audit verify` names a bad record, 2 when it could
/// not check.
pub fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    // kube's rustls needs a process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Command::Audit(command) = cli.command {
        return Ok(match keyturn_operator::audit_command::run(command) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(2)
            }
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        let cluster = Cluster::connect(&cli.cluster).await?;
        let mut out = std::io::stdout().lock();
        match cli.command {
            Command::Status(args) => {
                let namespace = (!args.all_namespaces).then_some(cluster.namespace.as_str());
                let objects = match &args.name {
                    Some(name) => vec![cluster.get(name).await?],
                    None => cluster.list(namespace).await?,
                };
                let rows: Vec<StatusRow> = objects.iter().map(StatusRow::of).collect();
                if args.output == Output::Table && rows.is_empty() {
                    match namespace {
                        Some(namespace) => eprintln!("No ManagedSecrets found in {namespace} namespace."),
                        None => eprintln!("No ManagedSecrets found."),
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                let colour = std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none();
                let table = status::table(&rows, args.all_namespaces, Utc::now(), colour);
                write_output(&mut out, args.output, &rows, &table)?;
            }
            Command::Rotate(args) => {
                let requested = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                cluster
                    .patch(&args.name, json!({"metadata": {"annotations": {ROTATE_REQUEST_ANNOTATION: requested}}}))
                    .await?;
                writeln!(out, "managedsecret.keyturn.dev/{} rotation requested ({ROTATE_REQUEST_ANNOTATION}={requested})", args.name)?;
            }
            Command::Pause(args) => {
                cluster.patch(&args.name, json!({"spec": {"rotation": {"paused": true}}})).await?;
                writeln!(out, "managedsecret.keyturn.dev/{} paused", args.name)?;
            }
            Command::Resume(args) => {
                cluster.patch(&args.name, json!({"spec": {"rotation": {"paused": false}}})).await?;
                writeln!(out, "managedsecret.keyturn.dev/{} resumed", args.name)?;
            }
            Command::History(args) => {
                // Fails with a helpful message when the name is wrong, before any store is opened.
                cluster.get(&args.name).await?;
                let entries = match &args.store {
                    Some(store) => history::from_store(store, &cluster.namespace, &args.name).await?,
                    None => history::from_events(&cluster.events(&args.name).await?),
                };
                let table = history::table(&entries);
                write_output(&mut out, args.output, &entries, &table)?;
                if args.store.is_none() && args.output == Output::Table {
                    eprintln!("(from Events, which the API server keeps for about an hour; --store gives the whole audit history)");
                }
            }
            Command::WhoCanRead(args) => {
                let object = cluster.get(&args.name).await?;
                let target = access_target(&object);
                let (grants, cluster_unchecked) = keyturn_operator::access::cluster::who_can_read(&cluster.client, &target)
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}: who-can-read lists RoleBindings and Roles in the namespace and ClusterRoleBindings and ClusterRoles"))?;
                let table = readers_table(&target, &grants);
                write_output(&mut out, args.output, &grants, &table)?;
                if cluster_unchecked {
                    eprintln!("warning: you may not list ClusterRoleBindings and ClusterRoles, so subjects that read this Secret through them are not shown");
                }
                if args.output == Output::Table {
                    writeln!(out, "\n{BEYOND_RBAC}")?;
                }
            }
            Command::Evidence(args) => {
                let summary = evidence(&cluster, &args).await?;
                writeln!(
                    out,
                    "wrote evidence for {} ManagedSecrets of namespace {} ({} files); {}",
                    summary.managed_secrets.len(),
                    cluster.namespace,
                    summary.files,
                    summary.verification
                )?;
                if !summary.chain_valid {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Command::Audit(_) => unreachable!("handled before connecting"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Gathers each ManagedSecret of the namespace and who can read it, then writes the bundle from
/// the store (opened read-only).
async fn evidence(
    cluster: &Cluster,
    args: &cli::EvidenceArgs,
) -> anyhow::Result<keyturn_operator::evidence::EvidenceSummary> {
    use keyturn_operator::evidence::{EvidenceRequest, ManagedSecretEvidence, write_bundle};
    let now = Utc::now();
    let since = parse_since(&args.since, now)?;
    let mut checkpoints = Vec::new();
    if let Some(path) = &args.checkpoints {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read --checkpoints {}", path.display()))?;
        checkpoints.extend(keyturn_operator::audit_checkpoints::parse_list(
            &text,
            &path.display().to_string(),
        )?);
    }
    if let Some(namespace) = &args.checkpoints_namespace {
        checkpoints.extend(
            keyturn_operator::audit_checkpoints::read_from_cluster(&cluster.client, namespace)
                .await?,
        );
    }
    let mut managed_secrets = std::collections::BTreeMap::new();
    for object in cluster.list(Some(&cluster.namespace)).await? {
        let target = access_target(&object);
        let readers =
            match keyturn_operator::access::cluster::who_can_read(&cluster.client, &target).await {
                Ok(readers) => Some(readers),
                Err(error) => {
                    eprintln!(
                        "warning: who can read {}: {error}; access.json will not list readers",
                        target.name
                    );
                    None
                }
            };
        managed_secrets.insert(
            target.name.clone(),
            ManagedSecretEvidence { object, readers },
        );
    }
    let store = keyturn_operator::audit_command::open_read_only(&args.store)
        .await
        .context("open the audit store --store")?;
    let request = EvidenceRequest {
        namespace: cluster.namespace.clone(),
        since,
        now,
        out: args.out.clone().unwrap_or_else(|| {
            std::path::PathBuf::from(format!(
                "keyturn-evidence-{}-{}",
                cluster.namespace,
                now.format("%Y%m%dT%H%M%SZ")
            ))
        }),
        checkpoints,
        store_label: history::redact_url(&args.store),
    };
    let summary = write_bundle(&store, &request, &managed_secrets).await;
    store.close().await;
    Ok(summary?)
}

/// `--since`: a period back from `now` in days (`90d`), years of 365 days (`1y`), or a Go-style
/// duration (`12h`), or an RFC 3339 instant.
pub fn parse_since(
    text: &str,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<chrono::DateTime<Utc>> {
    if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    let days = |count: &str, per: i64| {
        count
            .parse::<i64>()
            .ok()
            .and_then(|count| count.checked_mul(per))
            .and_then(chrono::Duration::try_days)
    };
    let period = match (text.strip_suffix('d'), text.strip_suffix('y')) {
        (Some(count), _) => days(count, 1),
        (_, Some(count)) => days(count, 365),
        _ => keyturn_core::duration::parse_duration(text)
            .ok()
            .and_then(|period| chrono::Duration::from_std(period).ok()),
    };
    period
        .and_then(|period| now.checked_sub_signed(period))
        .ok_or_else(|| {
            anyhow::anyhow!("--since {text:?} is not a period (90d, 1y, 12h) or an RFC 3339 time")
        })
}

/// A table for people, JSON or YAML for scripts.
fn write_output<T: Serialize>(
    out: &mut impl Write,
    output: Output,
    rows: &T,
    table: &str,
) -> anyhow::Result<()> {
    match output {
        Output::Table => out.write_all(table.as_bytes())?,
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        Output::Yaml => out.write_all(serde_yaml::to_string(rows)?.as_bytes())?,
    }
    Ok(())
}

fn readers_table(target: &AccessTarget, grants: &[ReadGrant]) -> String {
    let mut lines = vec![
        ["SUBJECT", "VERBS", "BINDING", "ROLE", "SPEC.ACCESS"]
            .map(Cell::plain)
            .to_vec(),
    ];
    for grant in grants {
        let standing = grant.standing.as_str();
        lines.push(vec![
            Cell::plain(&grant.subject),
            Cell::plain(&grant.verbs.join(",")),
            Cell::plain(&grant.binding),
            Cell::plain(&grant.role),
            Cell::plain(standing),
        ]);
    }
    let mut text = format!("Secret {}/{}:\n", target.namespace, target.secret_name);
    if grants.is_empty() {
        text.push_str("No RBAC binding grants read of this Secret.\n");
    } else {
        text.push_str(&status::render(&lines, false));
    }
    text
}

/// What access management knows of a ManagedSecret, from its JSON (the spec need not be
/// valid: the Secret name and the listed accounts are read where present).
pub fn access_target(object: &Value) -> AccessTarget {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let name = text(&object["metadata"]["name"]);
    let mut service_accounts: Vec<String> = object["spec"]["access"]["serviceAccounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|account| account.as_str().map(str::to_owned))
        .collect();
    service_accounts.sort();
    service_accounts.dedup();
    AccessTarget {
        namespace: text(&object["metadata"]["namespace"]),
        secret_name: object["spec"]["secretName"]
            .as_str()
            .map_or_else(|| name.clone(), str::to_owned),
        name,
        uid: text(&object["metadata"]["uid"]),
        api_version: text(&object["apiVersion"]),
        kind: text(&object["kind"]),
        service_accounts,
    }
}

/// The client and the namespace commands act in.
struct Cluster {
    client: Client,
    namespace: String,
    resource: ApiResource,
}

impl Cluster {
    async fn connect(args: &ClusterArgs) -> Result<Cluster, PluginError> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &args.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|error| {
                    PluginError::Kubeconfig(format!("{}: {error}", path.display()))
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        }
        .map_err(|error| PluginError::Kubeconfig(error.to_string()))?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client =
            Client::try_from(config).map_err(|error| PluginError::Kubeconfig(error.to_string()))?;
        Ok(Cluster {
            client,
            namespace,
            resource: ApiResource::erase::<ManagedSecret>(&()),
        })
    }

    fn api(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &self.resource),
            None => Api::all_with(self.client.clone(), &self.resource),
        }
    }

    async fn list(&self, namespace: Option<&str>) -> Result<Vec<Value>, PluginError> {
        let call = Call::new("list", RESOURCE, namespace);
        let list = self
            .api(namespace)
            .list(&ListParams::default())
            .await
            .map_err(|error| match is_not_found(&error) {
                true => PluginError::CrdMissing,
                false => call.fail(error),
            })?;
        Ok(list.items.iter().map(as_json).collect())
    }

    async fn get(&self, name: &str) -> Result<Value, PluginError> {
        let call = Call::new("get", RESOURCE, Some(&self.namespace));
        match self.api(Some(&self.namespace)).get(name).await {
            Ok(object) => Ok(as_json(&object)),
            Err(error) if is_not_found(&error) => Err(self.not_found(name).await),
            Err(error) => Err(call.fail(error)),
        }
    }

    /// A missing object, or a missing CRD (then the list fails too); with close names.
    async fn not_found(&self, name: &str) -> PluginError {
        match self.list(Some(&self.namespace)).await {
            Ok(objects) => {
                let names: Vec<&str> = objects
                    .iter()
                    .filter_map(|object| object["metadata"]["name"].as_str())
                    .collect();
                PluginError::NotFound {
                    name: name.to_owned(),
                    namespace: self.namespace.clone(),
                    hint: did_you_mean(&close_names(name, names)),
                }
            }
            Err(error) => error,
        }
    }

    async fn patch(&self, name: &str, patch: Value) -> Result<(), PluginError> {
        let call = Call::new("patch", RESOURCE, Some(&self.namespace));
        match self
            .api(Some(&self.namespace))
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Err(self.not_found(name).await),
            Err(error) => Err(call.fail(error)),
        }
    }

    async fn events(&self, name: &str) -> Result<Vec<Event>, PluginError> {
        let call = Call::new("list", "events.events.k8s.io", Some(&self.namespace));
        let selector = format!("regarding.kind=ManagedSecret,regarding.name={name}");
        Api::<Event>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().fields(&selector))
            .await
            .map(|list| list.items)
            .map_err(|error| call.fail(error))
    }
}

fn as_json(object: &DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_days_years_durations_and_instants() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |text: &str| parse_since(text, now).unwrap().to_rfc3339();
        assert_eq!(at("90d"), "2026-08-24T12:00:00+00:00");
        assert_eq!(at("1y"), "2025-11-22T12:00:00+00:00");
        assert_eq!(at("12h"), "2026-11-22T00:00:00+00:00");
        assert_eq!(at("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00+00:00");
        let error = parse_since("ninety days", now).unwrap_err().to_string();
        assert!(error.contains("--since \"ninety days\""), "{error}");
    }

    #[test]
    fn the_access_target_comes_from_the_spec_or_defaults_to_the_name() {
        let object = json!({
            "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
            "metadata": {"name": "orders", "namespace": "payments", "uid": "u-1"},
            "spec": {"access": {"serviceAccounts": ["worker", "api", "api"]}}
        });
        let target = access_target(&object);
        assert_eq!(target.secret_name, "orders");
        assert_eq!(target.service_accounts, vec!["api", "worker"]);
        let mut named = object.clone();
        named["spec"]["secretName"] = json!("orders-db");
        assert_eq!(access_target(&named).secret_name, "orders-db");
    }
}
