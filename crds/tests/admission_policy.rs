//! The admission policy in `helm/keyturn/files/admission-policy.yaml`, evaluated without an API
//! server.
//!
//! The file's two documents must be a `ValidatingAdmissionPolicy` and its binding that
//! k8s-openapi reads without dropping a field. Every expression of the policy (its `variables` in
//! order, then each validation's `expression` and `messageExpression`) is evaluated by the `cel`
//! crate with the Kubernetes function library of `kube-cel`, with `object`, `oldObject`, `params`,
//! `request` and `variables` bound the way the API server binds them. kube-cel's own
//! `VapEvaluator` cannot bind `variables`, so this file drives the same `cel` crate directly.
//!
//! Each fixture in `crds/fixtures/admission/` is one admission request: a Pod, the ManagedSecrets
//! of the cluster, and which of them must deny it with which message fragments. Like the binding's
//! `paramRef` (`selector: {}`, no namespace), the policy is evaluated once per ManagedSecret in the
//! Pod's namespace, and the Pod is rejected when any evaluation denies it.
//!
//! `policy_mutations_are_caught_by_the_fixtures` breaks the policy one reference path at a time
//! and requires a fixture to notice, so that a fixture set that tests nothing cannot pass.
//! What this cannot verify is listed in docs/adr/0006-admission-policy.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::Pod;
use keyturn_crds::ManagedSecret;
use kube::{CustomResourceExt, Resource};
use kube_cel::KubeCelExt;
use kube_cel::cel::common::ast::Expr;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as CelValue};
use serde::Deserialize;
use serde_json::{Value, json};

const POLICY_NAME: &str = "keyturn-managed-secret-access";
/// `MaxEvaluatedMessageExpressionSizeBytes` of the API server.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crds/ has a parent")
        .to_path_buf()
}

fn policy_text() -> String {
    let path = repository_root().join("helm/keyturn/files/admission-policy.yaml");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("a YAML document"))
        .filter(|document| !document.is_null())
        .collect()
}

/// Whether every field of `expected` is in `actual` with the same value: a misspelt field name
/// is silently dropped when a typed object is deserialised, and then shows up here.
fn missing_fields(expected: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let child = format!("{path}.{key}");
                match actual.get(key) {
                    Some(other) => missing_fields(value, other, &child, out),
                    None => out.push(child),
                }
            }
        }
        (Value::Array(expected), Value::Array(actual)) if expected.len() == actual.len() => {
            for (index, (value, other)) in expected.iter().zip(actual).enumerate() {
                missing_fields(value, other, &format!("{path}[{index}]"), out);
            }
        }
        _ if expected == actual => {}
        _ => out.push(format!("{path} (value differs)")),
    }
}

/// Deserialises `value` into `T` and back, and fails if anything was lost on the way.
fn typed_round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: &Value,
    what: &str,
) -> T {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|error| panic!("{what} does not deserialise: {error}"));
    let back = serde_json::to_value(&typed).expect("serialises");
    let mut lost = Vec::new();
    missing_fields(value, &back, "", &mut lost);
    assert!(
        lost.is_empty(),
        "{what}: fields unknown to the typed model (misspelt?): {lost:?}"
    );
    typed
}

/// One compiled CEL expression with its source.
struct Expression {
    source: String,
    program: Program,
}

impl Expression {
    fn compile(source: &str, what: &str) -> Result<Expression, String> {
        Program::compile(source)
            .map(|program| Expression {
                source: source.to_owned(),
                program,
            })
            .map_err(|error| format!("{what} does not compile: {error}"))
    }
}

struct Validation {
    expression: Expression,
    message: Option<String>,
    message_expression: Option<Expression>,
}

struct Policy {
    variables: Vec<(String, Expression)>,
    validations: Vec<Validation>,
}

impl Policy {
    fn parse(text: &str) -> Result<Policy, String> {
        let documents = yaml_documents(text);
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(documents[0].clone())
            .map_err(|error| format!("not a ValidatingAdmissionPolicy: {error}"))?;
        let spec = policy.spec.ok_or("the policy has no spec")?;
        let variables = spec
            .variables
            .unwrap_or_default()
            .into_iter()
            .map(|variable| {
                let what = format!("variable {}", variable.name);
                Expression::compile(&variable.expression, &what)
                    .map(|expression| (variable.name, expression))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let validations = spec
            .validations
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, validation)| {
                Ok(Validation {
                    expression: Expression::compile(
                        &validation.expression,
                        &format!("validations[{index}].expression"),
                    )?,
                    message: validation.message,
                    message_expression: validation
                        .message_expression
                        .map(|source| {
                            Expression::compile(
                                &source,
                                &format!("validations[{index}].messageExpression"),
                            )
                        })
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Policy {
            variables,
            validations,
        })
    }

    fn expressions(&self) -> Vec<(String, &Expression)> {
        let mut all: Vec<(String, &Expression)> = self
            .variables
            .iter()
            .map(|(name, expression)| (format!("variables.{name}"), expression))
            .collect();
        for (index, validation) in self.validations.iter().enumerate() {
            all.push((
                format!("validations[{index}].expression"),
                &validation.expression,
            ));
            if let Some(message) = &validation.message_expression {
                all.push((format!("validations[{index}].messageExpression"), message));
            }
        }
        all
    }

    /// Evaluates the policy for one (request, param) pair the way the API server does:
    /// variables in order, then every validation. Returns the messages of the failed validations,
    /// or the first error (which `failurePolicy: Fail` would turn into a rejection; no fixture
    /// may cause one).
    fn evaluate(&self, input: &Input<'_>) -> Result<Vec<String>, String> {
        let mut context = Context::default();
        context.register_all();
        context.add_variable_from_value("object", to_cel(input.object));
        context
            .add_variable_from_value("oldObject", input.old_object.map_or(CelValue::Null, to_cel));
        context.add_variable_from_value("params", to_cel(input.params));
        context.add_variable_from_value("request", to_cel(input.request));
        let mut variables: HashMap<Key, CelValue> = HashMap::new();
        for (name, expression) in &self.variables {
            context.add_variable_from_value("variables", cel_map(&variables));
            let value = expression
                .program
                .execute(&context)
                .map_err(|error| format!("variables.{name}: evaluation error: {error}"))?;
            variables.insert(Key::String(Arc::new(name.clone())), value);
        }
        context.add_variable_from_value("variables", cel_map(&variables));

        let mut denials = Vec::new();
        for (index, validation) in self.validations.iter().enumerate() {
            match validation.expression.program.execute(&context) {
                Ok(CelValue::Bool(true)) => {}
                Ok(CelValue::Bool(false)) => denials.push(validation.denial_message(&context)?),
                Ok(other) => {
                    return Err(format!(
                        "validations[{index}] returned {other:?}, not a bool"
                    ));
                }
                Err(error) => {
                    return Err(format!("validations[{index}]: evaluation error: {error}"));
                }
            }
        }
        Ok(denials)
    }
}

impl Validation {
    /// The API server falls back to `message` when `messageExpression` fails; here a failing or
    /// empty messageExpression is an error, so that the fallback never hides a broken one.
    fn denial_message(&self, context: &Context<'_>) -> Result<String, String> {
        let Some(expression) = &self.message_expression else {
            return self
                .message
                .clone()
                .ok_or_else(|| "a validation without message".to_owned());
        };
        match expression.program.execute(context) {
            Ok(CelValue::String(message)) if !message.trim().is_empty() => {
                // The API server replaces such messages with the static `message`.
                if message.contains('\n') {
                    return Err(format!("message with a line break: {message:?}"));
                }
                if message.trim().len() > MAX_MESSAGE_BYTES {
                    return Err(format!("message longer than 5 KiB: {message:?}"));
                }
                Ok((*message).clone())
            }
            Ok(other) => Err(format!(
                "messageExpression returned {other:?}, not a non-empty string"
            )),
            Err(error) => Err(format!("messageExpression: evaluation error: {error}")),
        }
    }
}

struct Input<'a> {
    object: &'a Value,
    old_object: Option<&'a Value>,
    params: &'a Value,
    request: &'a Value,
}

fn cel_map(entries: &HashMap<Key, CelValue>) -> CelValue {
    CelValue::Map(Map {
        map: Arc::new(entries.clone()),
    })
}

/// JSON to CEL values as the API server sees unstructured objects: integers are `int`.
fn to_cel(value: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(boolean) => CelValue::Bool(*boolean),
        Value::Number(number) => match (number.as_i64(), number.as_u64()) {
            (Some(int), _) => CelValue::Int(int),
            (None, Some(uint)) => CelValue::UInt(uint),
            _ => CelValue::Float(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => CelValue::String(Arc::new(text.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(fields) => CelValue::Map(Map {
            map: Arc::new(
                fields
                    .iter()
                    .map(|(key, value)| (Key::String(Arc::new(key.clone())), to_cel(value)))
                    .collect(),
            ),
        }),
    }
}

/// The `request` variable: the fields of admission.k8s.io/v1 AdmissionRequest that CEL sees.
fn admission_request(operation: &str, sub_resource: Option<&str>, pod: &Value) -> Value {
    let mut request = json!({
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "name": pod["metadata"]["name"].as_str().unwrap_or_default(),
        "namespace": pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"]},
        "dryRun": false,
    });
    if let Some(sub_resource) = sub_resource {
        request["subResource"] = json!(sub_resource);
        request["requestSubResource"] = json!(sub_resource);
    }
    request
}

/// The ManagedSecret CRD's schema, to default params the way the API server stores them.
fn crd_schema() -> Value {
    let crd = serde_json::to_value(ManagedSecret::crd()).expect("CRD serialises");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FixtureFile {
    why: String,
    #[serde(default = "default_operation")]
    operation: String,
    #[serde(default)]
    sub_resource: Option<String>,
    managed_secrets: Vec<Value>,
    pod: Value,
    #[serde(default)]
    old_pod: Option<Value>,
    /// ManagedSecret name → fragments its denial must contain. Empty: the Pod is allowed.
    #[serde(default)]
    denied: BTreeMap<String, Vec<String>>,
    /// Fragments no denial message may contain (e.g. a container that does not use the Secret).
    #[serde(default)]
    not_in_messages: Vec<String>,
}

fn default_operation() -> String {
    "CREATE".to_owned()
}

struct Fixture {
    file: String,
    spec: FixtureFile,
    /// The ManagedSecrets as the API server stores them (CRD defaults applied).
    params: Vec<Value>,
    request: Value,
}

fn load_fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/admission");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    let schema = crd_schema();
    paths
        .into_iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("readable fixture");
            let spec: FixtureFile = serde_yaml::from_str(&text)
                .unwrap_or_else(|error| panic!("{file}: not a fixture: {error}"));
            typed_round_trip::<Pod>(&spec.pod, &format!("{file}: pod"));
            if let Some(old) = &spec.old_pod {
                typed_round_trip::<Pod>(old, &format!("{file}: oldPod"));
            }
            let params = spec
                .managed_secrets
                .iter()
                .map(|object| {
                    typed_round_trip::<ManagedSecret>(object, &format!("{file}: ManagedSecret"));
                    kube_cel::apply_defaults(&schema, object)
                })
                .collect();
            let request =
                admission_request(&spec.operation, spec.sub_resource.as_deref(), &spec.pod);
            Fixture {
                file,
                spec,
                params,
                request,
            }
        })
        .collect()
}

/// What the API server would decide: the policy evaluated once per ManagedSecret in the Pod's
/// namespace (the binding's `paramRef` selects them all); name of each denying one → messages.
fn decide(policy: &Policy, fixture: &Fixture) -> Result<BTreeMap<String, Vec<String>>, String> {
    let namespace = fixture.spec.pod["metadata"]["namespace"].as_str();
    let mut denied = BTreeMap::new();
    for params in &fixture.params {
        if params["metadata"]["namespace"].as_str() != namespace {
            continue;
        }
        let name = params["metadata"]["name"].as_str().unwrap_or_default();
        let messages = policy
            .evaluate(&Input {
                object: &fixture.spec.pod,
                old_object: fixture.spec.old_pod.as_ref(),
                params,
                request: &fixture.request,
            })
            .map_err(|error| format!("ManagedSecret {name}: {error}"))?;
        if !messages.is_empty() {
            denied.insert(name.to_owned(), messages);
        }
    }
    Ok(denied)
}

/// Why the decision does not match the fixture, if it does not.
fn mismatch(
    fixture: &Fixture,
    decision: &Result<BTreeMap<String, Vec<String>>, String>,
) -> Option<String> {
    let denied = match decision {
        Ok(denied) => denied,
        Err(error) => return Some(format!("error: {error}")),
    };
    let expected: Vec<&String> = fixture.spec.denied.keys().collect();
    let actual: Vec<&String> = denied.keys().collect();
    if expected != actual {
        return Some(format!(
            "denied by {actual:?}, expected {expected:?}: {denied:?}"
        ));
    }
    for (name, fragments) in &fixture.spec.denied {
        let messages = denied[name].join(" | ");
        for fragment in fragments {
            if !messages.contains(fragment.as_str()) {
                return Some(format!("{name}: message lacks {fragment:?}: {messages}"));
            }
        }
    }
    for messages in denied.values() {
        for fragment in &fixture.spec.not_in_messages {
            if messages
                .iter()
                .any(|message| message.contains(fragment.as_str()))
            {
                return Some(format!("message contains {fragment:?}: {messages:?}"));
            }
        }
    }
    None
}

fn mismatches(policy: &Policy, fixtures: &[Fixture]) -> Vec<(String, String)> {
    fixtures
        .iter()
        .filter_map(|fixture| {
            mismatch(fixture, &decide(policy, fixture)).map(|why| (fixture.file.clone(), why))
        })
        .collect()
}

#[test]
fn the_file_is_a_policy_and_its_binding_that_k8s_openapi_reads_without_loss() {
    let documents = yaml_documents(&policy_text());
    assert_eq!(documents.len(), 2, "the policy, then its binding");
    let policy: ValidatingAdmissionPolicy =
        typed_round_trip(&documents[0], "the ValidatingAdmissionPolicy");
    let binding: ValidatingAdmissionPolicyBinding =
        typed_round_trip(&documents[1], "the ValidatingAdmissionPolicyBinding");
    assert_eq!(
        documents[0]["apiVersion"],
        "admissionregistration.k8s.io/v1"
    );
    assert_eq!(documents[0]["kind"], "ValidatingAdmissionPolicy");
    assert_eq!(
        documents[1]["apiVersion"],
        "admissionregistration.k8s.io/v1"
    );
    assert_eq!(documents[1]["kind"], "ValidatingAdmissionPolicyBinding");

    assert_eq!(policy.metadata.name.as_deref(), Some(POLICY_NAME));
    let spec = policy.spec.expect("policy spec");
    assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
    let param_kind = spec.param_kind.expect("paramKind");
    assert_eq!(
        param_kind.api_version.as_deref(),
        Some(ManagedSecret::api_version(&()).as_ref())
    );
    assert_eq!(
        param_kind.kind.as_deref(),
        Some(ManagedSecret::kind(&()).as_ref())
    );

    // Pods on CREATE and the ephemeralcontainers subresource on UPDATE; never a plain Pod UPDATE
    // (it cannot add a reference, and blocking it would block finalizer removal).
    let constraints = spec.match_constraints.expect("matchConstraints");
    let rules = constraints.resource_rules.expect("resourceRules");
    let matched: Vec<(String, String)> = rules
        .iter()
        .flat_map(|rule| {
            assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
            let resources = rule.resources.clone().unwrap_or_default();
            let operations = rule.operations.clone().unwrap_or_default();
            resources.into_iter().flat_map(move |resource| {
                operations
                    .clone()
                    .into_iter()
                    .map(move |operation| (resource.clone(), operation))
            })
        })
        .collect();
    assert_eq!(
        matched,
        [
            ("pods".to_owned(), "CREATE".to_owned()),
            ("pods/ephemeralcontainers".to_owned(), "UPDATE".to_owned()),
        ]
    );
    let excluded = constraints
        .namespace_selector
        .and_then(|selector| selector.match_expressions)
        .unwrap_or_default();
    assert!(
        excluded.iter().any(
            |requirement| requirement.key == "kubernetes.io/metadata.name"
                && requirement.operator == "NotIn"
                && requirement.values.as_deref() == Some(&["kube-system".to_owned()][..])
        ),
        "kube-system is excluded, so a missing CRD cannot stop the cluster's own Pods"
    );

    let binding = binding.spec.expect("binding spec");
    assert_eq!(binding.policy_name.as_deref(), Some(POLICY_NAME));
    assert_eq!(
        binding.validation_actions.as_deref(),
        Some(&["Deny".to_owned()][..])
    );
    let param_ref = binding.param_ref.expect("paramRef");
    assert_eq!(
        param_ref.namespace, None,
        "params from the Pod's own namespace"
    );
    assert_eq!(param_ref.name, None, "every ManagedSecret, not one by name");
    let selector = param_ref.selector.expect("a selector");
    assert!(
        selector.match_labels.is_none() && selector.match_expressions.is_none(),
        "an empty selector selects every ManagedSecret"
    );
    assert_eq!(
        param_ref.parameter_not_found_action.as_deref(),
        Some("Allow")
    );
}

/// Comprehension variables bound anywhere in `expr` (kube-cel's scope analysis does not know them).
fn comprehension_variables(expr: &Expr, out: &mut Vec<String>) {
    visit(expr, &mut |node| {
        if let Expr::Comprehension(comprehension) = node {
            out.push(comprehension.iter_var.clone());
            out.push(comprehension.accu_var.clone());
        }
    });
}

/// Calls `f` on every node of the expression tree.
fn visit(expr: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(expr);
    match expr {
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                visit(&target.expr, f);
            }
            for argument in &call.args {
                visit(&argument.expr, f);
            }
        }
        Expr::Comprehension(comprehension) => {
            for part in [
                &comprehension.iter_range,
                &comprehension.accu_init,
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                visit(&part.expr, f);
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                visit(&element.expr, f);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let kube_cel::cel::common::ast::EntryExpr::MapEntry(entry) = &entry.expr {
                    visit(&entry.key.expr, f);
                    visit(&entry.value.expr, f);
                }
            }
        }
        Expr::Select(select) => visit(&select.operand.expr, f),
        _ => {}
    }
}

/// The identifiers a value is computed from (`c.env.filter(...)` → `c`).
fn roots(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Ident(name) => out.push(name.clone()),
        Expr::Select(select) => roots(&select.operand.expr, out),
        Expr::Comprehension(comprehension) => roots(&comprehension.iter_range.expr, out),
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                roots(&target.expr, out);
            }
            for argument in &call.args {
                roots(&argument.expr, out);
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                roots(&element.expr, out);
            }
        }
        _ => {}
    }
}

/// Inside a comprehension, every nested comprehension and every `in` must range over something
/// computed from an enclosing iteration variable: then each list element of the Pod is visited a
/// bounded number of times and the cost is linear in the Pod's size, never a product of two
/// independent lists (which is what exhausts the API server's per-expression budget).
fn quadratic_loops(expr: &Expr, enclosing: &mut Vec<String>, out: &mut Vec<String>) {
    match expr {
        Expr::Comprehension(comprehension) => {
            if !enclosing.is_empty() {
                let mut range_roots = Vec::new();
                roots(&comprehension.iter_range.expr, &mut range_roots);
                for root in range_roots {
                    if !enclosing.contains(&root) {
                        out.push(format!(
                            "comprehension over `{root}` inside one over {enclosing:?}"
                        ));
                    }
                }
            }
            quadratic_loops(&comprehension.iter_range.expr, enclosing, out);
            quadratic_loops(&comprehension.accu_init.expr, enclosing, out);
            enclosing.push(comprehension.iter_var.clone());
            enclosing.push(comprehension.accu_var.clone());
            for part in [
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                quadratic_loops(&part.expr, enclosing, out);
            }
            enclosing.truncate(enclosing.len() - 2);
        }
        Expr::Call(call) => {
            if call.func_name == "@in" && !enclosing.is_empty() {
                let mut range_roots = Vec::new();
                roots(&call.args[1].expr, &mut range_roots);
                for root in range_roots {
                    if !enclosing.contains(&root) {
                        out.push(format!("`in` over `{root}` inside a comprehension"));
                    }
                }
            }
            if let Some(target) = &call.target {
                quadratic_loops(&target.expr, enclosing, out);
            }
            for argument in &call.args {
                quadratic_loops(&argument.expr, enclosing, out);
            }
        }
        Expr::Select(select) => quadratic_loops(&select.operand.expr, enclosing, out),
        Expr::List(list) => {
            for element in &list.elements {
                quadratic_loops(&element.expr, enclosing, out);
            }
        }
        _ => {}
    }
}

/// A coarse static type, enough to check what the API server's type checker insists on and the
/// `cel` crate does not check: list and map literals are homogeneous (Kubernetes compiles with
/// `HomogeneousAggregateLiterals`), both branches of `?:` agree, validations are `bool` and
/// messageExpressions `string` (an expression typed `dyn` is refused for either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Double,
    String,
    Bytes,
    Null,
    List,
    Dyn,
}

fn join_kinds(a: Kind, b: Kind, what: &str) -> Result<Kind, String> {
    match (a, b) {
        (Kind::Dyn, _) | (_, Kind::Dyn) => Ok(Kind::Dyn),
        (a, b) if a == b => Ok(a),
        (a, b) => Err(format!("{what} mixes {a:?} and {b:?}")),
    }
}

fn kind_of(expr: &Expr, scope: &HashMap<String, Kind>) -> Result<Kind, String> {
    use kube_cel::cel::common::ast::LiteralValue;
    match expr {
        Expr::Literal(literal) => Ok(match literal {
            LiteralValue::Boolean(_) => Kind::Bool,
            LiteralValue::Int(_) | LiteralValue::UInt(_) => Kind::Int,
            LiteralValue::Double(_) => Kind::Double,
            LiteralValue::String(_) => Kind::String,
            LiteralValue::Bytes(_) => Kind::Bytes,
            LiteralValue::Null => Kind::Null,
        }),
        Expr::Ident(name) => Ok(scope.get(name).copied().unwrap_or(Kind::Dyn)),
        Expr::Select(select) => {
            let operand = kind_of(&select.operand.expr, scope)?;
            if select.test {
                return Ok(Kind::Bool);
            }
            // `variables.x` has the type of x's expression; fields of `object` etc. are `dyn`.
            if select.operand.expr == Expr::Ident("variables".to_owned()) {
                let name = format!("variables.{}", select.field);
                return Ok(scope.get(&name).copied().unwrap_or(Kind::Dyn));
            }
            let _ = operand;
            Ok(Kind::Dyn)
        }
        Expr::List(list) => {
            let mut element_kind: Option<Kind> = None;
            for element in &list.elements {
                let kind = kind_of(&element.expr, scope)?;
                element_kind = Some(match element_kind {
                    None => kind,
                    Some(previous) => join_kinds(previous, kind, "a list literal")?,
                });
            }
            Ok(Kind::List)
        }
        Expr::Map(_) | Expr::Struct(_) => Err(
            "map and object literals are not checked here: avoid them or extend kind_of".to_owned(),
        ),
        Expr::Comprehension(comprehension) => {
            kind_of(&comprehension.iter_range.expr, scope)?;
            let mut inner = scope.clone();
            inner.insert(comprehension.iter_var.clone(), Kind::Dyn);
            let accumulator = kind_of(&comprehension.accu_init.expr, scope)?;
            inner.insert(comprehension.accu_var.clone(), accumulator);
            kind_of(&comprehension.loop_cond.expr, &inner)?;
            kind_of(&comprehension.loop_step.expr, &inner)?;
            kind_of(&comprehension.result.expr, &inner)
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                kind_of(&target.expr, scope)?;
            }
            let arguments = call
                .args
                .iter()
                .map(|argument| kind_of(&argument.expr, scope))
                .collect::<Result<Vec<_>, _>>()?;
            match call.func_name.as_str() {
                "_?_:_" => join_kinds(arguments[1], arguments[2], "a conditional"),
                "_+_" => match join_kinds(arguments[0], arguments[1], "`+`")? {
                    // `'a' + dyn` is a string: the only overload whose first operand is one.
                    Kind::Dyn => Ok(arguments
                        .iter()
                        .copied()
                        .find(|kind| *kind != Kind::Dyn)
                        .unwrap_or(Kind::Dyn)),
                    kind => Ok(kind),
                },
                "_&&_"
                | "_||_"
                | "!_"
                | "_==_"
                | "_!=_"
                | "_<_"
                | "_<=_"
                | "_>_"
                | "_>=_"
                | "@in"
                | "@not_strictly_false"
                | "startsWith"
                | "endsWith"
                | "contains"
                | "matches" => Ok(Kind::Bool),
                "size" => Ok(Kind::Int),
                "join" | "string" => Ok(Kind::String),
                "_[_]" => Ok(Kind::Dyn),
                other => Err(format!("function {other} is not known to kind_of: add it")),
            }
        }
        Expr::Unspecified => Err("an unspecified expression".to_owned()),
    }
}

#[test]
fn every_expression_compiles_is_typed_as_required_and_stays_linear() {
    let policy = Policy::parse(&policy_text()).unwrap_or_else(|error| panic!("{error}"));
    assert!(policy.variables.len() >= 10 && policy.validations.len() == 2);
    let empty_schema = kube_cel::compile_schema(&json!({"type": "object"}));
    let mut problems = Vec::new();
    let mut report = String::new();
    let declared: Vec<&str> = policy
        .variables
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let mut kinds: HashMap<String, Kind> = HashMap::new();
    for (what, expression) in policy.expressions() {
        let expr = &expression.program.expression().expr;

        // Only admission variables; kube-cel also flags comprehension variables, which are fine.
        let mut bound = Vec::new();
        comprehension_variables(expr, &mut bound);
        for warning in
            kube_cel::check_rule_scope(&expression.source, kube_cel::ScopeContext::AdmissionPolicy)
        {
            if !bound
                .iter()
                .any(|name| warning.message.contains(&format!("'{name}'")))
            {
                problems.push(format!("{what}: {}", warning.message));
            }
        }
        for variable in expression.program.references().variables() {
            assert!(
                ["object", "oldObject", "params", "request", "variables"].contains(&variable)
                    || bound.iter().any(|name| name == variable),
                "{what} uses {variable}"
            );
        }

        // A variable may only use variables declared before it (the API server's rule).
        let visible: &[&str] = match what.strip_prefix("variables.") {
            Some(name) => &declared[..declared.iter().position(|d| *d == name).unwrap()],
            None => &declared,
        };
        visit(expr, &mut |node| {
            if let Expr::Select(select) = node
                && select.operand.expr == Expr::Ident("variables".to_owned())
                && !visible.contains(&select.field.as_str())
            {
                problems.push(format!(
                    "{what} uses variables.{} before it is declared",
                    select.field
                ));
            }
        });

        match (kind_of(expr, &kinds), what.rsplit('.').next()) {
            (Err(problem), _) => problems.push(format!("{what}: {problem}")),
            (Ok(kind), Some("expression")) if kind != Kind::Bool => {
                problems.push(format!("{what} is {kind:?}, the API server wants bool"))
            }
            (Ok(kind), Some("messageExpression")) if kind != Kind::String => {
                problems.push(format!("{what} is {kind:?}, the API server wants string"))
            }
            (Ok(kind), _) => {
                kinds.insert(what.clone(), kind);
            }
        }

        let mut loops = Vec::new();
        quadratic_loops(expr, &mut Vec::new(), &mut loops);
        problems.extend(
            loops
                .into_iter()
                .map(|problem| format!("{what}: {problem}")),
        );

        // kube-cel's estimate is a heuristic for CRD rules (every list counts as 1000 items and
        // nesting multiplies); the API server estimates nothing for a policy whose object is
        // `dyn` and only meters the actual cost at run time. Printed for the record.
        let cost = kube_cel::estimate_rule_cost(&expression.source, &empty_schema);
        writeln!(
            report,
            "{what}: kube-cel estimate {}",
            if cost.is_empty() {
                "within 1,000,000".to_owned()
            } else {
                cost.iter()
                    .map(|warning| warning.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        )
        .unwrap();
    }
    println!("{report}");
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_fixture_gets_the_expected_decision_and_message() {
    let policy = Policy::parse(&policy_text()).unwrap_or_else(|error| panic!("{error}"));
    let fixtures = load_fixtures();
    let mut table = String::new();
    for fixture in &fixtures {
        let decision = decide(&policy, fixture);
        let verdict = match &decision {
            Ok(denied) if denied.is_empty() => "allowed".to_owned(),
            Ok(denied) => format!(
                "denied: {}",
                denied
                    .values()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
            Err(error) => format!("error: {error}"),
        };
        writeln!(
            table,
            "{:<50} {verdict}\n{:<50} ({})",
            fixture.file, "", fixture.spec.why
        )
        .unwrap();
    }
    println!("{table}");
    let failures = mismatches(&policy, &fixtures);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn there_are_enough_fixtures_on_both_sides() {
    let fixtures = load_fixtures();
    let denied = fixtures
        .iter()
        .filter(|f| !f.spec.denied.is_empty())
        .count();
    let allowed = fixtures.len() - denied;
    assert!(fixtures.len() >= 15, "{} fixtures", fixtures.len());
    assert!(
        denied >= 8 && allowed >= 7,
        "{denied} denied, {allowed} allowed"
    );
    for fixture in &fixtures {
        assert!(
            fixture
                .spec
                .denied
                .values()
                .all(|fragments| !fragments.is_empty()),
            "{}: a denial must name message fragments, or any denial would do",
            fixture.file
        );
        assert!(!fixture.spec.why.trim().is_empty());
    }
    // Both operations this policy matches are exercised.
    assert!(fixtures.iter().any(|f| f.spec.operation == "UPDATE"
        && f.spec.sub_resource.as_deref() == Some("ephemeralcontainers")));
}

/// Each mutation removes one thing the policy must do; some fixture must then fail.
#[test]
fn policy_mutations_are_caught_by_the_fixtures() {
    let text = policy_text();
    let fixtures = load_fixtures();
    let mutations: &[(&str, &str, &str)] = &[
        (
            "secret volumes",
            "? [v.secret.secretName] : []",
            "? [] : []",
        ),
        (
            "projected volume sources",
            "v.projected.sources.filter(s, has(s.secret) && has(s.secret.name)).map(s, s.secret.name)",
            "[]",
        ),
        (
            "CSI nodePublishSecretRef",
            "? [v.csi.nodePublishSecretRef.name] : []",
            "? [] : []",
        ),
        (
            "flexVolume secretRef",
            "? [v.flexVolume.secretRef.name] : []",
            "? [] : []",
        ),
        (
            "azureFile secretName",
            "? [v.azureFile.secretName] : []",
            "? [] : []",
        ),
        (
            "cephfs secretRef",
            "? [v.cephfs.secretRef.name] : []",
            "? [] : []",
        ),
        (
            "cinder secretRef",
            "? [v.cinder.secretRef.name] : []",
            "? [] : []",
        ),
        (
            "iscsi secretRef",
            "? [v.iscsi.secretRef.name] : []",
            "? [] : []",
        ),
        (
            "rbd secretRef",
            "? [v.rbd.secretRef.name] : []",
            "? [] : []",
        ),
        (
            "scaleIO secretRef",
            "? [v.scaleIO.secretRef.name] : []",
            "? [] : []",
        ),
        (
            "storageos secretRef",
            "? [v.storageos.secretRef.name] : []",
            "? [] : []",
        ),
        (
            "env secretKeyRef",
            ".map(e, e.valueFrom.secretKeyRef.name)",
            ".map(e, '')",
        ),
        (
            "envFrom secretRef",
            ".map(f, f.secretRef.name)",
            ".map(f, '')",
        ),
        ("imagePullSecrets", ".map(r, r.name)", ".map(r, '')"),
        (
            "initContainers",
            "? object.spec.initContainers : []",
            "? [] : []",
        ),
        (
            "ephemeralContainers",
            "? object.spec.ephemeralContainers : []",
            "? [] : []",
        ),
        (
            "only ephemeral containers on UPDATE",
            "(variables.creating && has(object.spec.containers)",
            "(has(object.spec.containers)",
        ),
        (
            "volumes only on CREATE",
            "!variables.creating || !has(object.spec.volumes)",
            "!has(object.spec.volumes)",
        ),
        (
            "service account defaults to \"default\"",
            "? object.spec.serviceAccount : 'default')",
            "? object.spec.serviceAccount : '')",
        ),
        (
            "deprecated serviceAccount alias",
            "? object.spec.serviceAccount : 'default')",
            "? 'default' : 'default')",
        ),
        (
            "secretName defaults to the ManagedSecret's name",
            "? params.spec.secretName : params.metadata.name",
            "? params.spec.secretName : ''",
        ),
        (
            "spec.secretName is honoured",
            "? params.spec.secretName : params.metadata.name",
            "? params.metadata.name : params.metadata.name",
        ),
        (
            "no access field, no restriction",
            "!variables.restricted || size(variables.secretUsers) == 0",
            "size(variables.secretUsers) == 0",
        ),
        (
            "listed service accounts are allowed",
            "\n        || variables.serviceAccount in variables.allowedServiceAccounts",
            "",
        ),
        (
            "the staging Secret is protected",
            "expression: \"size(variables.stagingSecretUsers) == 0\"",
            "expression: \"true\"",
        ),
        (
            "exact names, not prefixes",
            "variables.sites.filter(site, variables.secretName in site)",
            "variables.sites.filter(site, site.exists(n, n.startsWith(variables.secretName)))",
        ),
    ];
    let mut survivors = Vec::new();
    for (what, from, to) in mutations {
        assert_eq!(
            text.matches(from).count(),
            1,
            "mutation {what:?}: {from:?} must occur exactly once"
        );
        let mutated = Policy::parse(&text.replacen(from, to, 1))
            .unwrap_or_else(|error| panic!("mutation {what:?} does not compile: {error}"));
        if mismatches(&mutated, &fixtures).is_empty() {
            survivors.push(*what);
        }
    }
    assert!(
        survivors.is_empty(),
        "no fixture notices when the policy loses: {survivors:?}"
    );
}

/// A large Pod (many containers, env entries and volumes) is decided correctly, and its
/// evaluation is timed for the record (no assertion on time).
#[test]
fn a_large_pod_is_decided_correctly() {
    let policy = Policy::parse(&policy_text()).unwrap_or_else(|error| panic!("{error}"));
    let containers: Vec<Value> = (0..50)
        .map(|index| {
            json!({
                "name": format!("c{index}"),
                "image": "registry.example/app:1",
                "env": (0..100).map(|e| json!({"name": format!("V{e}"), "value": "x"})).collect::<Vec<_>>(),
                "envFrom": [{"configMapRef": {"name": "settings"}}],
            })
        })
        .collect();
    let mut volumes: Vec<Value> = (0..100)
        .map(|index| json!({"name": format!("v{index}"), "configMap": {"name": "settings"}}))
        .collect();
    volumes.push(json!({"name": "last", "secret": {"secretName": "orders-db-credentials"}}));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "big", "namespace": "payments"},
        "spec": {"serviceAccountName": "reports", "containers": containers, "volumes": volumes},
    });
    typed_round_trip::<Pod>(&pod, "the large pod");
    let params = kube_cel::apply_defaults(
        &crd_schema(),
        &json!({
            "apiVersion": "keyturn.dev/v1alpha1", "kind": "ManagedSecret",
            "metadata": {"name": "orders-db", "namespace": "payments"},
            "spec": {
                "secretName": "orders-db-credentials",
                "rotator": {"postgres": {"host": "db", "adminSecretRef": {"name": "pg-admin"}, "role": "orders_app"}},
                "rotation": {"every": "720h"},
                "access": {"serviceAccounts": ["orders-api"]},
            },
        }),
    );
    let request = admission_request("CREATE", None, &pod);
    let started = std::time::Instant::now();
    let messages = policy
        .evaluate(&Input {
            object: &pod,
            old_object: None,
            params: &params,
            request: &request,
        })
        .unwrap_or_else(|error| panic!("{error}"));
    println!(
        "50 containers x 100 env + 101 volumes: {:?}",
        started.elapsed()
    );
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("(volume last)"), "{}", messages[0]);
}
