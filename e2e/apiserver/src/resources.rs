//! The resource types the stand-in serves: the built-ins keyturn uses and CRDs loaded at start-up,
//! plus the discovery documents (`/api`, `/apis`, `/apis/{group}/{version}`) kube-rs reads.

use serde_json::{Value, json};

/// One served resource type (a group/version/plural triple and what it supports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether the `/status` subresource exists (and the main resource ignores `.status`).
    pub status_subresource: bool,
    /// Short names for discovery (`kubectl get deploy`).
    pub short_names: Vec<String>,
    /// Discovery categories (`kubectl get all` lists the types in `all`).
    pub categories: Vec<String>,
    /// Whether this came from a CustomResourceDefinition (CRDs require resourceVersion on PUT).
    pub custom: bool,
    /// A CRD version's `additionalPrinterColumns` (server-side `kubectl get` output).
    pub printer_columns: Vec<PrinterColumn>,
    /// A CRD version's `schema.openAPIV3Schema`, published under `/openapi/v3`.
    pub schema: Option<Value>,
}

/// One of a CRD version's `additionalPrinterColumns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub kind: String,
    /// OpenAPI format hint (`date-time`, `name`, ...), passed on to clients.
    pub format: String,
    /// Column description.
    pub description: String,
    /// 0: always shown; higher: only with `kubectl get -o wide`.
    pub priority: i64,
    /// A simple JSONPath relative to the object (`crate::jsonpath`).
    pub json_path: String,
}

impl PrinterColumn {
    fn from_crd(c: &Value) -> Result<Self, String> {
        let name = c["name"]
            .as_str()
            .ok_or("additionalPrinterColumns entry without a name")?;
        let json_path = c["jsonPath"]
            .as_str()
            .ok_or_else(|| format!("printer column {name:?} without a jsonPath"))?;
        // The real API server rejects a CRD with a column path it cannot evaluate.
        crate::jsonpath::JsonPath::parse(json_path)
            .map_err(|e| format!("printer column {name:?}: {e}"))?;
        let kind = c["type"].as_str().unwrap_or("string");
        if !matches!(kind, "string" | "integer" | "number" | "boolean" | "date") {
            return Err(format!(
                "printer column {name:?}: unsupported type {kind:?}"
            ));
        }
        Ok(Self {
            name: name.into(),
            kind: kind.into(),
            format: c["format"].as_str().unwrap_or("").into(),
            description: c["description"].as_str().unwrap_or("").into(),
            priority: c["priority"].as_i64().unwrap_or(0),
            json_path: json_path.into(),
        })
    }
}

impl ResourceType {
    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            status_subresource: false,
            short_names: Vec::new(),
            categories: Vec::new(),
            custom: false,
            printer_columns: Vec::new(),
            schema: None,
        }
    }

    fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// The short names and categories a real API server gives the type.
    fn named(mut self, short_names: &[&str], categories: &[&str]) -> Self {
        self.short_names = short_names.iter().map(|s| (*s).to_string()).collect();
        self.categories = categories.iter().map(|s| (*s).to_string()).collect();
        self
    }

    /// `apiVersion` as written in objects (`v1` or `group/version`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `metadata.generation` is maintained (CRDs and the apps/v1 workloads; Secrets,
    /// ConfigMaps and the like have none on a real server either).
    pub fn tracks_generation(&self) -> bool {
        self.custom || self.group == "apps"
    }

    /// Storage identifier of the type.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }
}

/// The built-in resource types keyturn uses.
pub fn builtins() -> Vec<ResourceType> {
    let b = ResourceType::builtin;
    vec![
        b("", "v1", "namespaces", "Namespace", false)
            .with_status()
            .named(&["ns"], &[]),
        b("", "v1", "secrets", "Secret", true),
        b("", "v1", "events", "Event", true).named(&["ev"], &[]),
        b("", "v1", "serviceaccounts", "ServiceAccount", true).named(&["sa"], &[]),
        b("", "v1", "configmaps", "ConfigMap", true).named(&["cm"], &[]),
        b("apps", "v1", "deployments", "Deployment", true)
            .with_status()
            .named(&["deploy"], &["all"]),
        b("apps", "v1", "statefulsets", "StatefulSet", true)
            .with_status()
            .named(&["sts"], &["all"]),
        b("apps", "v1", "daemonsets", "DaemonSet", true)
            .with_status()
            .named(&["ds"], &["all"]),
        b("coordination.k8s.io", "v1", "leases", "Lease", true),
        b("events.k8s.io", "v1", "events", "Event", true),
        b("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
    ]
}

/// Reads the resource types (one per served version) of a CustomResourceDefinition in YAML.
pub fn from_crd_yaml(yaml: &str) -> Result<Vec<ResourceType>, String> {
    let crd: Value = serde_yaml::from_str(yaml).map_err(|e| format!("CRD YAML: {e}"))?;
    let spec = &crd["spec"];
    let group = spec["group"].as_str().ok_or("CRD without spec.group")?;
    let names = &spec["names"];
    let plural = names["plural"]
        .as_str()
        .ok_or("CRD without spec.names.plural")?;
    let kind = names["kind"]
        .as_str()
        .ok_or("CRD without spec.names.kind")?;
    let singular = names["singular"]
        .as_str()
        .map_or_else(|| kind.to_lowercase(), String::from);
    let short_names: Vec<String> = names["shortNames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let categories: Vec<String> = names["categories"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let versions = spec["versions"]
        .as_array()
        .ok_or("CRD without spec.versions")?;
    let mut out = Vec::new();
    for v in versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
    {
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        let printer_columns = v["additionalPrinterColumns"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(PrinterColumn::from_crd)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|e| format!("CRD {plural}.{group} {version}: {e}"))?
            .unwrap_or_default();
        out.push(ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: singular.clone(),
            kind: kind.into(),
            namespaced,
            status_subresource: v["subresources"]["status"].is_object(),
            short_names: short_names.clone(),
            categories: categories.clone(),
            custom: true,
            printer_columns,
            schema: v["schema"]["openAPIV3Schema"]
                .is_object()
                .then(|| v["schema"]["openAPIV3Schema"].clone()),
        });
    }
    Ok(out)
}

/// Looks up a served type.
pub fn find<'a>(
    types: &'a [ResourceType],
    group: &str,
    version: &str,
    plural: &str,
) -> Option<&'a ResourceType> {
    types
        .iter()
        .find(|t| t.group == group && t.version == version && t.plural == plural)
}

/// `GET /api`.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "apiVersion": "v1", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

fn groups(types: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) if !vs.contains(&t.version) => vs.push(t.version.clone()),
            Some(_) => {}
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    out
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

/// `GET /apis`.
pub fn group_list(types: &[ResourceType]) -> Value {
    let gs: Vec<Value> = groups(types)
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

/// `GET /apis/{group}`.
pub fn group(types: &[ResourceType], group: &str) -> Option<Value> {
    let (g, vs) = groups(types).into_iter().find(|(g, _)| g == group)?;
    let mut doc = group_doc(&g, &vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for t in types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        resources.push(json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": t.short_names, "categories": t.categories,
        }));
        if t.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}
