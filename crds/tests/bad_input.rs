//! Bad-input tests for the ManagedSecret API.
//!
//! Every file in `crds/fixtures/invalid/` is a whole ManagedSecret with exactly one problem and a
//! header naming the field the error must name and the layer that must catch it:
//!
//! ```yaml
//! # expect-field: spec.rotation.every
//! # expect-layer: schema|cel|operator
//! # why: ...
//! ```
//!
//! The three layers, in the order a real request meets them:
//!
//! 1. `schema`: the generated CRD's `openAPIV3Schema`, checked with the `jsonschema` crate after
//!    translating the Kubernetes dialect (`nullable`, unknown-field rejection as `kubectl`'s
//!    default `--validate=strict` does it on the server) into plain JSON Schema.
//! 2. `cel`: every `x-kubernetes-validations` rule of the schema tree, evaluated by `kube-cel`.
//! 3. `operator`: `keyturn_crds::validate::validate_spec`, for what the API server cannot check.
//!
//! An invalid fixture must be accepted by every layer before its `expect-layer` and rejected by
//! that layer with a message naming `expect-field` (so the header documents where the check
//! lives, and moving a check between layers shows up here). A fixture that does not deserialise
//! into `ManagedSecret` only counts for `expect-layer: schema`. Every fixture in
//! `crds/fixtures/valid/` must pass all layers. Failures print a table of fixture, layer and
//! message; `cargo test -- --nocapture` prints it always.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use keyturn_crds::{ManagedSecret, ManagedSecretSpec};
use kube::CustomResourceExt;
use kube_cel::{ErrorKind, RootContext, ScopeContext, Validator};
use serde_json::{Map, Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Schema,
    Cel,
    Operator,
}

impl Layer {
    const ALL: [Layer; 3] = [Layer::Schema, Layer::Cel, Layer::Operator];

    fn parse(text: &str) -> Option<Layer> {
        match text {
            "schema" => Some(Layer::Schema),
            "cel" => Some(Layer::Cel),
            "operator" => Some(Layer::Operator),
            _ => None,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Schema => "schema",
            Layer::Cel => "cel",
            Layer::Operator => "operator",
        })
    }
}

/// One problem one layer reported.
#[derive(Clone, Debug)]
struct Problem {
    field: String,
    message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line per problem, and the field only once (operator messages often start with it).
        let message = self
            .message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if self.field.is_empty() || message.starts_with(&self.field) {
            f.write_str(&message)
        } else {
            write!(f, "{}: {message}", self.field)
        }
    }
}

/// What one layer said about one object.
#[derive(Clone, Debug)]
enum Verdict {
    Accepted,
    Rejected(Vec<Problem>),
    /// The layer could not run (the object does not deserialise into `ManagedSecret`).
    NotRun(String),
}

impl Verdict {
    fn from_problems(problems: Vec<Problem>) -> Verdict {
        if problems.is_empty() {
            Verdict::Accepted
        } else {
            Verdict::Rejected(problems)
        }
    }

    fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted)
    }

    fn names_field(&self, field: &str) -> bool {
        match self {
            Verdict::Rejected(problems) => problems
                .iter()
                .any(|problem| problem_names_field(problem, field)),
            _ => false,
        }
    }

    fn summary(&self) -> String {
        match self {
            Verdict::Accepted => "accepted".to_owned(),
            Verdict::NotRun(why) => format!("not run: {why}"),
            Verdict::Rejected(problems) => problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    fn messages(&self) -> Vec<String> {
        match self {
            Verdict::Rejected(problems) => problems.iter().map(ToString::to_string).collect(),
            _ => Vec::new(),
        }
    }
}

/// Whether `problem` is about `field`: reported at that path (or an index of it), or naming the
/// path as a whole word in its message (CEL rules on a parent object name the child fields).
fn problem_names_field(problem: &Problem, field: &str) -> bool {
    if problem.field == field
        || problem
            .field
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('['))
    {
        return true;
    }
    let text = &problem.message;
    text.match_indices(field).any(|(start, _)| {
        let before_ok = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'));
        let mut after = text[start + field.len()..].chars();
        let after_ok = match after.next() {
            None => true,
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => false,
            Some('.') => !after.next().is_some_and(|c| c.is_ascii_alphanumeric()),
            Some(_) => true,
        };
        before_ok && after_ok
    })
}

struct Fixture {
    file: String,
    expect_field: Option<String>,
    expect_layer: Option<Layer>,
    why: Option<String>,
    object: Result<Value, String>,
}

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(kind)
}

fn load_fixtures(kind: &str) -> Vec<Fixture> {
    let dir = fixture_dir(kind);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable fixture");
            let header = |key: &str| {
                text.lines()
                    .take_while(|line| line.starts_with('#'))
                    .find_map(|line| {
                        line.strip_prefix('#')?
                            .trim()
                            .strip_prefix(key)?
                            .strip_prefix(':')
                    })
                    .map(|value| value.trim().to_owned())
            };
            Fixture {
                file: path
                    .file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned(),
                expect_field: header("expect-field"),
                expect_layer: header("expect-layer").as_deref().and_then(Layer::parse),
                why: header("why"),
                object: serde_yaml::from_str::<Value>(&text).map_err(|error| error.to_string()),
            }
        })
        .collect()
}

/// The CRD's `openAPIV3Schema`, exactly as generated.
fn crd_schema() -> Value {
    let crd = serde_json::to_value(ManagedSecret::crd()).expect("CRD serialises");
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1, "one served version");
    versions[0]["schema"]["openAPIV3Schema"].clone()
}

/// Translates the Kubernetes structural-schema dialect into plain JSON Schema:
/// - `nullable: true` becomes `type: [T, "null"]`;
/// - objects without `x-kubernetes-preserve-unknown-fields` get `additionalProperties: false`,
///   which is what the API server's strict field validation (kubectl's default since 1.27)
///   reports as `unknown field`; without it the API server silently prunes them;
/// - the root gets the `apiVersion`/`kind`/`metadata` properties the API server adds itself.
fn as_json_schema(schema: &Value) -> Value {
    fn translate(node: &Value) -> Value {
        let Some(object) = node.as_object() else {
            return node.clone();
        };
        let mut out = Map::new();
        for (key, value) in object {
            let translated = match key.as_str() {
                "properties" => Value::Object(
                    value
                        .as_object()
                        .expect("properties is an object")
                        .iter()
                        .map(|(name, child)| (name.clone(), translate(child)))
                        .collect(),
                ),
                "items" | "additionalProperties" if value.is_object() => translate(value),
                "allOf" | "anyOf" | "oneOf" => Value::Array(
                    value
                        .as_array()
                        .expect("array")
                        .iter()
                        .map(translate)
                        .collect(),
                ),
                _ => value.clone(),
            };
            out.insert(key.clone(), translated);
        }
        if out.get("nullable") == Some(&Value::Bool(true))
            && let Some(Value::String(kind)) = out.get("type").cloned()
        {
            out.insert("type".to_owned(), json!([kind, "null"]));
        }
        let preserves = out.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if out.contains_key("properties") && !out.contains_key("additionalProperties") && !preserves
        {
            out.insert("additionalProperties".to_owned(), Value::Bool(false));
        }
        Value::Object(out)
    }
    let mut root = translate(schema);
    let properties = root["properties"].as_object_mut().expect("root properties");
    properties.insert(
        "apiVersion".to_owned(),
        json!({ "type": "string", "enum": ["keyturn.dev/v1alpha1"] }),
    );
    properties.insert(
        "kind".to_owned(),
        json!({ "type": "string", "enum": ["ManagedSecret"] }),
    );
    properties.insert("metadata".to_owned(), json!({ "type": "object" }));
    root
}

/// `/spec/access/serviceAccounts/3` → `spec.access.serviceAccounts[3]`.
fn dotted(location: &jsonschema::paths::Location) -> String {
    let mut path = String::new();
    for segment in location.iter() {
        match segment {
            jsonschema::paths::LocationSegment::Index(index) => {
                write!(path, "[{index}]").expect("write")
            }
            jsonschema::paths::LocationSegment::Property(name) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&name);
            }
        }
    }
    path
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

struct Layers {
    schema: jsonschema::Validator,
    crd_schema: Value,
    compiled: kube_cel::CompiledSchema,
    cel: Validator,
    root: RootContext,
}

impl Layers {
    fn new() -> Layers {
        let crd_schema = crd_schema();
        let schema = jsonschema::options()
            // OpenAPI v3.0's schema object is draft-4 based; Kubernetes checks `pattern` with Go's
            // RE2, which the `regex` engine matches far better than ECMA-262 `fancy-regex`.
            .with_draft(jsonschema::Draft::Draft4)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&as_json_schema(&crd_schema))
            .expect("the CRD schema is a valid JSON Schema");
        Layers {
            schema,
            compiled: kube_cel::compile_schema(&crd_schema),
            crd_schema,
            cel: Validator::new(),
            root: RootContext {
                api_version: "keyturn.dev/v1alpha1".to_owned(),
                api_group: "keyturn.dev".to_owned(),
                kind: "ManagedSecret".to_owned(),
            },
        }
    }

    fn schema_layer(&self, object: &Value) -> Verdict {
        let problems = self
            .schema
            .iter_errors(object)
            .flat_map(|error| {
                let path = dotted(error.instance_path());
                // Masked: the API server echoes the rejected value, we do not need to.
                let message = error.masked().to_string();
                match error.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        vec![Problem {
                            field: child(&path, property.as_str().unwrap_or_default()),
                            message,
                        }]
                    }
                    jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                        unexpected
                            .iter()
                            .map(|name| Problem {
                                field: child(&path, name),
                                message: format!("unknown field {:?}", child(&path, name)),
                            })
                            .collect()
                    }
                    _ => vec![Problem {
                        field: path,
                        message,
                    }],
                }
            })
            .collect();
        Verdict::from_problems(problems)
    }

    fn cel_layer(&self, object: &Value) -> Verdict {
        match self.cel.validate_compiled_with_context(
            &self.compiled,
            object,
            None,
            Some(&self.root),
        ) {
            Ok(()) => Verdict::Accepted,
            Err(errors) => Verdict::Rejected(
                errors
                    .iter()
                    .map(|error| Problem {
                        field: error.field_path.clone(),
                        message: match error.kind {
                            ErrorKind::ValidationFailure => error.message.clone(),
                            ref other => format!("[{other:?}] {}", error.message),
                        },
                    })
                    .collect(),
            ),
        }
    }

    fn check(&self, object: &Value) -> Report {
        let parsed = serde_json::from_value::<ManagedSecret>(object.clone())
            .map_err(|error| error.to_string());
        let operator = match &parsed {
            Ok(resource) => operator_layer(&resource.spec),
            Err(error) => Verdict::NotRun(format!("does not deserialise: {error}")),
        };
        Report {
            serde: parsed.err(),
            schema: self.schema_layer(object),
            cel: self.cel_layer(object),
            operator,
        }
    }
}

/// Layer 3: the operator's own checks.
fn operator_layer(spec: &ManagedSecretSpec) -> Verdict {
    match keyturn_crds::validate::validate_spec(spec) {
        Ok(_) => Verdict::Accepted,
        Err(errors) => Verdict::Rejected(
            errors
                .errors()
                .iter()
                .map(|error| Problem {
                    field: error.field.clone(),
                    message: error.message.clone(),
                })
                .collect(),
        ),
    }
}

struct Report {
    serde: Option<String>,
    schema: Verdict,
    cel: Verdict,
    operator: Verdict,
}

impl Report {
    fn layer(&self, layer: Layer) -> &Verdict {
        match layer {
            Layer::Schema => &self.schema,
            Layer::Cel => &self.cel,
            Layer::Operator => &self.operator,
        }
    }

    /// The first layer that rejects the object.
    fn first_rejecting(&self) -> Option<Layer> {
        Layer::ALL
            .into_iter()
            .find(|layer| matches!(self.layer(*layer), Verdict::Rejected(_)))
    }
}

/// fixture -> layer -> message, one row per layer.
fn table(rows: &[(&Fixture, &Report)]) -> String {
    let mut out = String::new();
    let width = rows
        .iter()
        .map(|(fixture, _)| fixture.file.len())
        .max()
        .unwrap_or(10);
    for (fixture, report) in rows {
        let expected = match (&fixture.expect_layer, &fixture.expect_field) {
            (Some(layer), Some(field)) => format!("expect {layer} @ {field}"),
            _ => "expect: all layers accept".to_owned(),
        };
        writeln!(out, "{:width$}  {expected}", fixture.file).expect("write");
        if let Some(why) = &fixture.why {
            writeln!(out, "{:width$}  why: {why}", "").expect("write");
        }
        if let Some(error) = &report.serde {
            writeln!(out, "{:width$}    serde    {error}", "").expect("write");
        }
        for layer in Layer::ALL {
            writeln!(
                out,
                "{:width$}    {layer:<8} {}",
                "",
                report.layer(layer).summary()
            )
            .expect("write");
        }
    }
    out
}

fn check_all(kind: &str) -> (Vec<Fixture>, Vec<Report>) {
    let layers = Layers::new();
    let fixtures = load_fixtures(kind);
    let reports = fixtures
        .iter()
        .map(|fixture| match &fixture.object {
            Ok(object) => layers.check(object),
            Err(error) => Report {
                serde: Some(error.clone()),
                schema: Verdict::NotRun(format!("not YAML: {error}")),
                cel: Verdict::NotRun("not YAML".to_owned()),
                operator: Verdict::NotRun("not YAML".to_owned()),
            },
        })
        .collect();
    (fixtures, reports)
}

/// Why an invalid fixture's outcome is wrong, if it is.
fn invalid_fixture_failure(fixture: &Fixture, report: &Report) -> Option<String> {
    let (Some(layer), Some(field)) = (fixture.expect_layer, fixture.expect_field.as_deref()) else {
        return Some(
            "header needs `# expect-field:` and `# expect-layer: schema|cel|operator`".to_owned(),
        );
    };
    if fixture.why.is_none() {
        return Some("header needs `# why:`".to_owned());
    }
    if let Err(error) = &fixture.object {
        return Some(format!("not YAML: {error}"));
    }
    if report.serde.is_some() && layer != Layer::Schema {
        return Some(format!(
            "does not deserialise into ManagedSecret, which only counts for expect-layer schema (expected {layer})"
        ));
    }
    if let Some(earlier) = Layer::ALL
        .into_iter()
        .filter(|l| *l < layer)
        .find(|l| !report.layer(*l).is_accepted())
    {
        return Some(format!(
            "{earlier} already rejects it (expected the first rejection at {layer})"
        ));
    }
    match report.layer(layer) {
        Verdict::Accepted => Some(format!("{layer} accepts it")),
        Verdict::NotRun(why) => Some(format!("{layer} did not run: {why}")),
        rejected if !rejected.names_field(field) => {
            Some(format!("{layer} rejects it but never names {field}"))
        }
        Verdict::Rejected(_) => None,
    }
}

#[test]
fn invalid_fixtures_are_rejected_by_their_layer() {
    let (fixtures, reports) = check_all("invalid");
    let rows: Vec<_> = fixtures.iter().zip(&reports).collect();
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|(fixture, report)| {
            invalid_fixture_failure(fixture, report).map(|why| format!("{}: {why}", fixture.file))
        })
        .collect();
    println!("{}", table(&rows));
    let mut per_layer = std::collections::BTreeMap::new();
    for fixture in &fixtures {
        *per_layer
            .entry(
                fixture
                    .expect_layer
                    .map_or("?".to_owned(), |l| l.to_string()),
            )
            .or_insert(0) += 1;
    }
    println!("invalid fixtures per layer: {per_layer:?}");
    assert!(
        failures.is_empty(),
        "{} of {} invalid fixtures are not rejected as their header says:\n  {}\n\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n  "),
        table(&rows)
    );
}

#[test]
fn valid_fixtures_pass_every_layer() {
    let (fixtures, reports) = check_all("valid");
    let rows: Vec<_> = fixtures.iter().zip(&reports).collect();
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|(fixture, report)| {
            if let Some(error) = &report.serde {
                return Some(format!("{}: does not deserialise: {error}", fixture.file));
            }
            report
                .first_rejecting()
                .map(|layer| format!("{}: {layer} rejects it", fixture.file))
        })
        .collect();
    println!("{}", table(&rows));
    assert!(
        failures.is_empty(),
        "valid fixtures rejected (a rule is too strict):\n  {}\n\n{}",
        failures.join("\n  "),
        table(&rows)
    );
}

#[test]
fn there_are_enough_fixtures_and_each_layer_is_covered() {
    let invalid = load_fixtures("invalid");
    let valid = load_fixtures("valid");
    assert!(
        invalid.len() >= 30,
        "at least 30 invalid fixtures, found {}",
        invalid.len()
    );
    assert!(
        valid.len() >= 6,
        "at least 6 valid fixtures, found {}",
        valid.len()
    );
    for layer in Layer::ALL {
        assert!(
            invalid
                .iter()
                .any(|fixture| fixture.expect_layer == Some(layer)),
            "no invalid fixture expects the {layer} layer"
        );
    }
    for fixture in &valid {
        assert!(
            fixture.expect_layer.is_none() && fixture.expect_field.is_none(),
            "{}: valid fixtures carry no expect- header",
            fixture.file
        );
    }
    let rotators = ["postgres", "vault", "awsSecretsManager"];
    for rotator in rotators {
        assert!(
            valid.iter().any(|fixture| {
                fixture
                    .object
                    .as_ref()
                    .is_ok_and(|object| object["spec"]["rotator"].get(rotator).is_some())
            }),
            "no valid fixture uses the {rotator} rotator"
        );
    }
}

/// kube-cel must be able to compile every rule, and its static analysis (variable scope and a
/// coarse cost estimate) must not object; a rule it cannot compile would reject everything.
#[test]
fn every_cel_rule_compiles_in_kube_cel() {
    fn walk(
        node: &kube_cel::CompiledSchema,
        path: &str,
        problems: &mut Vec<String>,
        rules: &mut usize,
    ) {
        for result in &node.validations {
            match result {
                Ok(compiled) => {
                    *rules += 1;
                    let rule = &compiled.rule.rule;
                    for warning in kube_cel::analyze_rule(rule, node, ScopeContext::CrdValidation) {
                        if !is_comprehension_variable_warning(rule, &warning) {
                            problems
                                .push(format!("{path}: {:?}: {}", warning.kind, warning.message));
                        }
                    }
                }
                Err(error) => problems.push(format!("{path}: {error}")),
            }
        }
        let mut children: Vec<_> = node.properties.iter().collect();
        children.sort_by_key(|(name, _)| *name);
        for (name, child_node) in children {
            walk(child_node, &child(path, name), problems, rules);
        }
        if let Some(items) = &node.items {
            walk(items, &format!("{path}[*]"), problems, rules);
        }
    }
    let layers = Layers::new();
    let mut problems = Vec::new();
    let mut rules = 0;
    walk(&layers.compiled, "", &mut problems, &mut rules);
    assert!(
        problems.is_empty(),
        "kube-cel objects to CRD rules:\n  {}",
        problems.join("\n  ")
    );
    let in_yaml = serde_json::to_string(&layers.crd_schema)
        .expect("json")
        .matches("\"rule\":")
        .count();
    assert_eq!(
        rules, in_yaml,
        "every x-kubernetes-validations rule was compiled"
    );
}

/// kube-cel's scope check does not know the variables that `filter`/`all`/`exists`/`map` bind, so
/// it reports `x` in `[..].filter(x, x)` as out of scope; the API server type-checks those fine.
fn is_comprehension_variable_warning(rule: &str, warning: &kube_cel::AnalysisWarning) -> bool {
    let Some(variable) = warning
        .message
        .strip_prefix("variable '")
        .and_then(|rest| rest.split('\'').next())
    else {
        return false;
    };
    matches!(warning.kind, kube_cel::WarningKind::WrongScope)
        && ["filter", "all", "exists", "exists_one", "map"]
            .iter()
            .any(|mac| rule.contains(&format!(".{mac}({variable},")))
}

/// Where kube-cel and a real API server disagree on rules this CRD uses, as documented in
/// docs/validation.md. Each case states what the API server does; if kube-cel changes, this test
/// fails so that the document (and maybe a fixture's expect-layer) gets updated.
#[test]
fn kube_cel_differences_from_the_api_server_are_as_documented() {
    let layers = Layers::new();
    let base = |file: &str| -> Value {
        serde_yaml::from_str(
            &std::fs::read_to_string(fixture_dir("valid").join(file)).expect("fixture"),
        )
        .expect("yaml")
    };
    let with = |file: &str, pointer: &str, value: Value| {
        let mut object = base(file);
        let (parent, key) = pointer.rsplit_once('/').expect("pointer");
        object
            .pointer_mut(parent)
            .expect("parent")
            .as_object_mut()
            .expect("object")
            .insert(key.to_owned(), value);
        object
    };
    // (case, object, what the API server does, kube-cel rejects?)
    let cases = [
        (
            "every: 9999999999h (beyond Go's 2562047h)",
            {
                // Without a ttl, so that only the `every >= 1m` rule looks at it.
                let mut object = with(
                    "postgres-interval.yaml",
                    "/spec/rotation/every",
                    json!("9999999999h"),
                );
                object["spec"]
                    .as_object_mut()
                    .expect("spec")
                    .remove("expiry");
                object
            },
            "rejects: duration() fails to parse; kube-cel saturates",
            false,
        ),
        (
            "every: 43200000000µs (micro sign)",
            with(
                "postgres-interval.yaml",
                "/spec/rotation/every",
                json!("43200000000\u{b5}s"),
            ),
            "accepts: Go parses µs; kube-cel's duration() does not",
            true,
        ),
        (
            "vault address http://localhost:8200",
            with(
                "vault-kv-cron.yaml",
                "/spec/rotator/vault/address",
                json!("http://localhost:8200"),
            ),
            "accepts: getScheme() is http; kube-cel returns '' for localhost URLs",
            true,
        ),
        (
            "vault address https:// (no host)",
            with(
                "vault-kv-cron.yaml",
                "/spec/rotator/vault/address",
                json!("https://"),
            ),
            "accepts: Go's url.ParseRequestURI allows an empty host; WHATWG parsing does not",
            true,
        ),
        (
            "every: null next to a schedule",
            with(
                "postgres-cron-timezone-window-percent.yaml",
                "/spec/rotation/every",
                Value::Null,
            ),
            "accepts: null nullable fields count as absent and their rules are skipped",
            true,
        ),
    ];
    let mut changed = Vec::new();
    for (case, object, api_server, kube_cel_rejects) in &cases {
        let verdict = layers.cel_layer(object);
        if verdict.is_accepted() == *kube_cel_rejects {
            changed.push(format!(
                "{case}: API server {api_server}; kube-cel now says {}",
                verdict.summary()
            ));
        }
    }
    assert!(
        changed.is_empty(),
        "kube-cel changed; update docs/validation.md:\n  {}",
        changed.join("\n  ")
    );
}

/// Looks like something a user pasted by mistake: long, mixed classes, not a word or path.
fn looks_like_password(value: &str) -> bool {
    value.len() >= 12
        && value.chars().any(|c| c.is_ascii_uppercase())
        && value.chars().any(|c| c.is_ascii_lowercase())
        && value.chars().any(|c| c.is_ascii_digit())
        && value.chars().any(|c| !c.is_ascii_alphanumeric())
        && !value.contains(' ')
}

fn string_leaves<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| string_leaves(item, out)),
        Value::Object(map) => map.values().for_each(|item| string_leaves(item, out)),
        _ => {}
    }
}

/// No layer's message repeats a password-looking value from the object (a user who pastes a
/// password into the wrong field must not find it in events, logs or status).
#[test]
fn messages_never_echo_password_like_values() {
    let mut fixtures = load_fixtures("invalid");
    fixtures.extend(load_fixtures("valid"));
    let layers = Layers::new();
    let mut checked = 0;
    let mut leaks = Vec::new();
    for fixture in &fixtures {
        let Ok(object) = &fixture.object else {
            continue;
        };
        let mut leaves = Vec::new();
        string_leaves(object, &mut leaves);
        let secrets: Vec<&str> = leaves
            .into_iter()
            .filter(|value| looks_like_password(value))
            .collect();
        if secrets.is_empty() {
            continue;
        }
        checked += 1;
        let report = layers.check(object);
        for layer in Layer::ALL {
            for message in report.layer(layer).messages() {
                if let Some(secret) = secrets.iter().find(|secret| message.contains(**secret)) {
                    leaks.push(format!(
                        "{} ({layer}) echoes {secret:?}: {message}",
                        fixture.file
                    ));
                }
            }
        }
    }
    assert!(checked > 0, "some fixture carries a password-like value");
    assert!(
        leaks.is_empty(),
        "messages echo password-like values:\n  {}",
        leaks.join("\n  ")
    );
}

#[test]
fn field_matching_is_by_whole_path() {
    let problem = |field: &str, message: &str| Problem {
        field: field.to_owned(),
        message: message.to_owned(),
    };
    assert!(problem_names_field(
        &problem("spec.rotation.every", "x"),
        "spec.rotation.every"
    ));
    assert!(problem_names_field(
        &problem("spec.access.serviceAccounts[3]", "x"),
        "spec.access.serviceAccounts"
    ));
    assert!(problem_names_field(
        &problem("spec", "spec.rotation.every must be short."),
        "spec.rotation.every"
    ));
    assert!(!problem_names_field(
        &problem("spec", "spec.rotation.everyday"),
        "spec.rotation.every"
    ));
    assert!(!problem_names_field(
        &problem("spec.rotation.every", "spec.rotation.every"),
        "spec.rotation"
    ));
    assert!(!problem_names_field(
        &problem("x", "xspec.rotation"),
        "spec.rotation"
    ));
}
