"""The keyturn chart, rendered by real Helm for the default values and every documented
combination: lint, render, Kubernetes schema validation, security context, RBAC, and the
wiring between objects (selectors, ports, volumes, environment)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from helm_python import HelmError

import checks
from chart import (
    NAMESPACE,
    NOT_IN_KUBERNETES_VALIDATE,
    REPO,
    Rendered,
    chart_crds,
    lint,
    lint_problems,
    render,
    validate,
)

POSTGRES = {"audit": {"store": "postgres", "postgres": {"existingSecret": "keyturn-audit-dsn"}}}
WEBHOOK_TLS = {"enabled": True, "tls": {"secretName": "keyturn-webhook-tls"}}

# Every combination docs/helm.md documents. Each must lint, render and validate.
CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "namespace-scoped": {"scope": "namespace"},
    "namespace-scoped-other-namespace": {"scope": "namespace", "watchNamespace": "payments"},
    "postgres": POSTGRES,
    "postgres-three-replicas": {**POSTGRES, "replicaCount": 3},
    "sqlite-existing-claim": {
        "audit": {"sqlite": {"persistence": {"existingClaim": "keyturn-audit-data"}}}
    },
    "sqlite-created-claim": {
        "audit": {
            "sqlite": {
                "persistence": {
                    "storageClassName": "fast-ssd",
                    "size": "5Gi",
                    "keepOnUninstall": False,
                }
            }
        }
    },
    "sqlite-emptydir": {"audit": {"sqlite": {"persistence": {"enabled": False}}}},
    "webhook-mtls": {
        "auditWebhook": {**WEBHOOK_TLS, "clientCA": {"secretName": "kube-apiserver-client-ca"}}
    },
    "webhook-token": {
        "auditWebhook": {**WEBHOOK_TLS, "token": {"secretName": "keyturn-webhook-token"}}
    },
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "network-policy": {"networkPolicy": {"enabled": True}},
    "network-policy-restricted": {
        "auditWebhook": {**WEBHOOK_TLS, "token": {"secretName": "keyturn-webhook-token"}},
        "networkPolicy": {
            "enabled": True,
            "auditWebhookFromCIDRs": ["10.0.0.0/24"],
            "egress": {
                "allowAll": False,
                "apiServerCIDRs": ["10.96.0.1/32", "172.18.0.2/32"],
                "extraRules": [
                    {
                        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                        "ports": [{"port": 5432, "protocol": "TCP"}],
                    }
                ],
            },
        },
    },
    "everything": {
        **POSTGRES,
        "scope": "namespace",
        "watchNamespace": "payments",
        "image": {"digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "registry"}],
        "serviceAccount": {
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/keyturn"}
        },
        "auditWebhook": {
            **WEBHOOK_TLS,
            "clientCA": {"secretName": "kube-apiserver-client-ca"},
            "token": {"secretName": "keyturn-webhook-token", "key": "bearer"},
        },
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "operator": {
            "logLevel": "debug",
            "extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}],
        },
        "priorityClassName": "system-cluster-critical",
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
        ],
    },
    "openshift-assigned-uid": {
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None}
    },
}

CLUSTER_SCOPED_KINDS = (
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)
ADMISSION_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")

_rendered: dict[str, Rendered] = {}


def rendered(case: str) -> Rendered:
    if case not in _rendered:
        _rendered[case] = render(CASES[case])
    return _rendered[case]


def pod_spec(result: Rendered) -> dict[str, Any]:
    return result.one("Deployment")["spec"]["template"]["spec"]


def container(result: Rendered) -> dict[str, Any]:
    containers = pod_spec(result)["containers"]
    assert len(containers) == 1
    return containers[0]


def env(result: Rendered) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container(result)["env"]}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def roles(result: Rendered) -> list[dict[str, Any]]:
    return [m.object for m in result.manifests if m.kind in ("Role", "ClusterRole")]


# ---- every case -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_lint_is_clean(case: str) -> None:
    report = lint(CASES[case])
    assert report["total_charts_linted"] == 1
    assert lint_problems(report) == []


@pytest.mark.parametrize("case", CASES)
def test_every_manifest_validates(case: str) -> None:
    result = rendered(case)
    assert result.manifests
    services = [m.object for m in result.of_kind("Service")]
    for manifest in result.manifests:
        key = (manifest.object["apiVersion"], manifest.kind)
        if key in NOT_IN_KUBERNETES_VALIDATE:
            assert checks.service_monitor_problems(manifest.object, services) == []
        else:
            validate(manifest.object)
        metadata = manifest.object["metadata"]
        assert metadata["labels"]["app.kubernetes.io/instance"] == "keyturn"
        if manifest.kind not in CLUSTER_SCOPED_KINDS:
            assert metadata["namespace"], f"{manifest.kind} {manifest.name} has no namespace"


@pytest.mark.parametrize("case", CASES)
def test_security_context_is_restrictive(case: str) -> None:
    result = rendered(case)
    spec = pod_spec(result)
    assert checks.container_security_problems(spec) == []
    assert spec["automountServiceAccountToken"] is True
    assert result.one("ServiceAccount")["automountServiceAccountToken"] is False
    resources = container(result)["resources"]
    assert (
        resources["requests"]["cpu"]
        and resources["requests"]["memory"]
        and resources["limits"]["memory"]
    )


@pytest.mark.parametrize("case", CASES)
def test_rbac_is_least_privilege(case: str) -> None:
    result = rendered(case)
    all_roles = roles(result)
    assert all_roles
    for role in all_roles:
        assert checks.rbac_problems(role) == []
    service_account = result.one("ServiceAccount")["metadata"]["name"]
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for binding in result.of_kind(kind):
            assert (
                checks.binding_problems(binding.object, all_roles, service_account, NAMESPACE) == []
            )
    # The release-namespace Role holds only the Lease and the checkpoint ConfigMap, by name
    # where the verb allows it.
    leader = next(role for role in all_roles if role["metadata"]["name"].endswith("-leader"))
    assert leader["metadata"]["namespace"] == NAMESPACE
    for rule in leader["rules"]:
        assert rule["resources"] in (["leases"], ["configmaps"])
        if rule["verbs"] != ["create"] or rule["resources"] == ["configmaps"]:
            assert rule.get("resourceNames"), rule
    if CASES[case].get("scope") == "namespace":
        assert not result.of_kind("ClusterRole") and not result.of_kind("ClusterRoleBinding")
        watched = CASES[case].get("watchNamespace") or NAMESPACE
        assert {role["metadata"]["namespace"] for role in all_roles} == {watched, NAMESPACE}
        assert all(
            "clusterroles" not in rule["resources"] for role in all_roles for rule in role["rules"]
        )
    else:
        assert len(result.of_kind("ClusterRole")) == 1


@pytest.mark.parametrize("case", CASES)
def test_every_rbac_rule_has_a_why_comment(case: str) -> None:
    result = rendered(case)
    text = result.text("rbac.yaml")
    assert checks.rule_comment_problems(text) == []
    rule_count = sum(len(role.get("rules", [])) for role in roles(result))
    assert len(re.findall(r"^\s*# why: ", text, flags=re.MULTILINE)) == rule_count


def test_every_rule_in_the_template_sources_has_a_why_comment() -> None:
    """The same check on the sources, so that a rule only some values render is covered too."""
    sources = sorted((REPO / "helm" / "keyturn" / "templates").glob("*"))
    with_rules = [
        path for path in sources if any(map(checks.RULE_START.match, path.read_text().splitlines()))
    ]
    assert [path.name for path in with_rules] == ["_rbac.tpl"]
    for path in with_rules:
        text = path.read_text()
        assert checks.rule_comment_problems(text) == [], path.name
        rules = len(re.findall(r"^\s*- apiGroups:", text, flags=re.MULTILINE))
        assert len(re.findall(r"^\s*# why: ", text, flags=re.MULTILINE)) == rules


@pytest.mark.parametrize("case", CASES)
def test_objects_are_wired_together(case: str) -> None:
    result = rendered(case)
    deployment = result.one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = result.one("Service")
    assert selects(service["spec"]["selector"], pod_labels)
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for manifest in result.of_kind(kind):
            selector = (
                manifest.object["spec"].get("selector") or manifest.object["spec"]["podSelector"]
            )
            assert selects(selector["matchLabels"], pod_labels), kind
    spec = pod_spec(result)
    main = container(result)
    volumes = {volume["name"] for volume in spec["volumes"]}
    mounts = {mount["name"] for mount in main["volumeMounts"]}
    assert mounts == volumes
    port_names = {port["name"] for port in main["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert main[probe]["httpGet"]["port"] in port_names
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {port["targetPort"] for port in service["spec"]["ports"]} == port_names
    assert spec["serviceAccountName"] == result.one("ServiceAccount")["metadata"]["name"]
    variables = env(result)
    assert variables["KEYTURN_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert (
        variables["KEYTURN_LEASE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.namespace"
    )
    assert variables["KEYTURN_HTTP_ADDR"]["value"] == "0.0.0.0:8080"
    grace = int(variables["KEYTURN_SHUTDOWN_GRACE"]["value"].removesuffix("s"))
    assert spec["terminationGracePeriodSeconds"] > grace
    lease_rule = next(
        rule
        for role in roles(result)
        for rule in role["rules"]
        if rule["resources"] == ["leases"] and rule.get("resourceNames")
    )
    assert lease_rule["resourceNames"] == [variables["KEYTURN_LEASE_NAME"]["value"]]
    assert main["args"] == ["run"]


# ---- particular combinations ----------------------------------------------------------------


def test_sqlite_runs_one_replica_recreated_on_a_created_claim() -> None:
    result = rendered("default")
    deployment = result.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not result.of_kind("PodDisruptionBudget")
    claim = result.one("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volume = next(v for v in pod_spec(result)["volumes"] if v["name"] == "audit-data")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mount = next(m for m in container(result)["volumeMounts"] if m["name"] == "audit-data")
    assert mount["mountPath"] == "/var/lib/keyturn"
    assert env(result)["KEYTURN_AUDIT_STORE"]["value"] == "sqlite:/var/lib/keyturn/audit.db"
    assert "one replica" in result.templates["keyturn/templates/NOTES.txt"]


def test_sqlite_existing_claim_is_used_not_created() -> None:
    result = rendered("sqlite-existing-claim")
    assert not result.of_kind("PersistentVolumeClaim")
    volume = next(v for v in pod_spec(result)["volumes"] if v["name"] == "audit-data")
    assert volume["persistentVolumeClaim"]["claimName"] == "keyturn-audit-data"


def test_sqlite_created_claim_takes_class_size_and_policy() -> None:
    claim = rendered("sqlite-created-claim").one("PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert "annotations" not in claim["metadata"]


def test_sqlite_without_persistence_uses_an_emptydir_and_warns() -> None:
    result = rendered("sqlite-emptydir")
    assert not result.of_kind("PersistentVolumeClaim")
    volume = next(v for v in pod_spec(result)["volumes"] if v["name"] == "audit-data")
    assert volume == {"name": "audit-data", "emptyDir": {}}
    assert "LOST" in result.templates["keyturn/templates/NOTES.txt"]


def test_postgres_runs_two_replicas_with_a_disruption_budget_and_spread() -> None:
    result = rendered("postgres")
    deployment = result.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    budget = result.one("PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert not result.of_kind("PersistentVolumeClaim")
    store = env(result)["KEYTURN_AUDIT_STORE"]
    assert store == {
        "name": "KEYTURN_AUDIT_STORE",
        "valueFrom": {"secretKeyRef": {"name": "keyturn-audit-dsn", "key": "dsn"}},
    }
    spec = pod_spec(result)
    assert "audit-data" not in {v["name"] for v in spec["volumes"]}
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert rendered("postgres-three-replicas").one("Deployment")["spec"]["replicas"] == 3


def test_default_has_no_spread_rules_for_a_single_replica() -> None:
    spec = pod_spec(rendered("default"))
    assert "affinity" not in spec and "topologySpreadConstraints" not in spec


def test_namespace_scope_watches_one_namespace() -> None:
    for case, watched in (
        ("namespace-scoped", NAMESPACE),
        ("namespace-scoped-other-namespace", "payments"),
    ):
        result = rendered(case)
        assert env(result)["KEYTURN_WATCH_NAMESPACE"]["value"] == watched
        workload_role = next(
            r for r in roles(result) if not r["metadata"]["name"].endswith("-leader")
        )
        assert workload_role["metadata"]["namespace"] == watched
        binding = next(
            b.object
            for b in result.of_kind("RoleBinding")
            if b.object["metadata"]["namespace"] == watched
            and b.object["roleRef"]["name"] == workload_role["metadata"]["name"]
        )
        assert binding["subjects"][0]["namespace"] == NAMESPACE
        notes = result.templates["keyturn/templates/NOTES.txt"]
        assert "not reported" in notes
        assert f"kubectl -n {watched} get managedsecrets" in notes
    assert "KEYTURN_WATCH_NAMESPACE" not in env(rendered("default"))


def test_cluster_scope_secret_permissions_are_exactly_the_justified_ones() -> None:
    cluster_role = rendered("default").one("ClusterRole")
    secret_verbs = sorted(
        verb
        for rule in cluster_role["rules"]
        if "secrets" in rule["resources"]
        for verb in rule["verbs"]
    )
    assert secret_verbs == sorted(checks.CLUSTER_WIDE_SECRET_VERBS)
    assert all(
        set(rule["resources"]) == {"secrets"}
        for rule in cluster_role["rules"]
        if "secrets" in rule["resources"]
    )


def test_webhook_with_mtls() -> None:
    result = rendered("webhook-mtls")
    variables = env(result)
    assert variables["KEYTURN_AUDIT_WEBHOOK_ADDR"]["value"] == "0.0.0.0:8443"
    assert (
        variables["KEYTURN_AUDIT_WEBHOOK_TLS_CERT"]["value"] == "/etc/keyturn/webhook-tls/tls.crt"
    )
    assert variables["KEYTURN_AUDIT_WEBHOOK_TLS_KEY"]["value"] == "/etc/keyturn/webhook-tls/tls.key"
    assert (
        variables["KEYTURN_AUDIT_WEBHOOK_CLIENT_CA"]["value"]
        == "/etc/keyturn/webhook-client-ca/ca.crt"
    )
    assert "KEYTURN_AUDIT_WEBHOOK_TOKEN_FILE" not in variables
    secrets = {
        v["name"]: v["secret"]["secretName"] for v in pod_spec(result)["volumes"] if "secret" in v
    }
    assert secrets == {
        "webhook-tls": "keyturn-webhook-tls",
        "webhook-client-ca": "kube-apiserver-client-ca",
    }
    mounts = {m["name"]: m for m in container(result)["volumeMounts"]}
    assert all(mounts[name]["readOnly"] for name in secrets)
    ports = {p["name"]: p["port"] for p in result.one("Service")["spec"]["ports"]}
    assert ports == {"metrics": 8080, "audit-webhook": 8443}


def test_webhook_with_bearer_token() -> None:
    result = rendered("webhook-token")
    variables = env(result)
    assert (
        variables["KEYTURN_AUDIT_WEBHOOK_TOKEN_FILE"]["value"] == "/etc/keyturn/webhook-token/token"
    )
    assert "KEYTURN_AUDIT_WEBHOOK_CLIENT_CA" not in variables
    everything = env(rendered("everything"))
    assert (
        everything["KEYTURN_AUDIT_WEBHOOK_TOKEN_FILE"]["value"]
        == "/etc/keyturn/webhook-token/bearer"
    )
    assert everything["KEYTURN_AUDIT_WEBHOOK_CLIENT_CA"]["value"].endswith("/ca.crt")


def test_webhook_off_by_default() -> None:
    result = rendered("default")
    assert not [name for name in env(result) if name.startswith("KEYTURN_AUDIT_WEBHOOK")]
    assert [p["name"] for p in result.one("Service")["spec"]["ports"]] == ["metrics"]


def test_service_monitor_only_when_enabled() -> None:
    assert not rendered("default").of_kind("ServiceMonitor")
    monitor = rendered("service-monitor").one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_network_policy_defaults_allow_egress_and_scrapes_from_monitoring() -> None:
    assert not rendered("default").of_kind("NetworkPolicy")
    policy = rendered("network-policy").one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert len(policy["ingress"]) == 1
    assert policy["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_network_policy_restricted() -> None:
    policy = rendered("network-policy-restricted").one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    webhook = policy["ingress"][1]
    assert webhook["ports"] == [{"port": "audit-webhook", "protocol": "TCP"}]
    assert webhook["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    dns, api, backend = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"] == [
        {"ipBlock": {"cidr": "10.96.0.1/32"}},
        {"ipBlock": {"cidr": "172.18.0.2/32"}},
    ]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert backend["ports"] == [{"port": 5432, "protocol": "TCP"}]
    # Without CIDRs the webhook port is open to any caller (it authenticates them).
    everything = rendered("everything").one("NetworkPolicy")["spec"]
    assert "from" not in everything["ingress"][1]


def test_image_tag_and_digest() -> None:
    assert container(rendered("default"))["image"] == "ghcr.io/keyturn/keyturn-operator:0.1.0"
    assert (
        container(rendered("everything"))["image"]
        == "ghcr.io/keyturn/keyturn-operator@sha256:" + "ab" * 32
    )
    tagged = render({"image": {"tag": "0.2.0-rc1"}})
    assert container(tagged)["image"] == "ghcr.io/keyturn/keyturn-operator:0.2.0-rc1"


def test_openshift_mode_leaves_ids_to_the_platform() -> None:
    context = pod_spec(rendered("openshift-assigned-uid"))["securityContext"]
    assert context == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_rbac_create_false_renders_no_rbac() -> None:
    result = render({"rbac": {"create": False}})
    assert not [m for m in result.manifests if m.kind.endswith(("Role", "RoleBinding"))]


# ---- combinations that cannot work ----------------------------------------------------------

# (values, what the schema error names, what the template's own check says). The schema makes
# `helm lint`, `helm template` and `helm install` fail; the template check (keyturn.validate)
# explains why, and still stops `--skip-schema-validation` installs. The last two have no
# schema rule: JSON Schema cannot compare two values, and lint mode in Helm turns `fail` into a
# log line, so only rendering (template/install) rejects them.
INVALID: dict[str, tuple[dict[str, Any], str | None, str]] = {
    "sqlite-two-replicas": (
        {"replicaCount": 2},
        "/replicaCount",
        "audit.store=sqlite allows one replica",
    ),
    "postgres-without-secret": (
        {"audit": {"store": "postgres"}},
        "/audit/postgres/existingSecret",
        "audit.store=postgres needs audit.postgres.existingSecret",
    ),
    "webhook-without-tls": (
        {"auditWebhook": {"enabled": True, "token": {"secretName": "t"}}},
        "/auditWebhook/tls/secretName",
        "auditWebhook.enabled needs auditWebhook.tls.secretName",
    ),
    "webhook-without-authentication": (
        {"auditWebhook": WEBHOOK_TLS},
        "/auditWebhook/clientCA/secretName",
        "needs a way to authenticate the API server",
    ),
    "watch-namespace-with-cluster-scope": (
        {"watchNamespace": "payments"},
        "/watchNamespace",
        "watchNamespace=payments needs scope=namespace",
    ),
    "restricted-egress-without-api-server": (
        {"networkPolicy": {"enabled": True, "egress": {"allowAll": False}}},
        "/networkPolicy/egress/apiServerCIDRs",
        "needs networkPolicy.egress.apiServerCIDRs",
    ),
    "grace-period-below-shutdown-grace": (
        {"operator": {"shutdownGraceSeconds": 30, "terminationGracePeriodSeconds": 30}},
        None,
        "operator.terminationGracePeriodSeconds (30) must exceed operator.shutdownGraceSeconds (30)",
    ),
    "postgres-with-sqlite-claim": (
        {
            **POSTGRES,
            "audit": {**POSTGRES["audit"], "sqlite": {"persistence": {"existingClaim": "x"}}},
        },
        None,
        "audit.sqlite.persistence.existingClaim is set but audit.store=postgres",
    ),
}

# Typos and unsafe values the schema alone rejects.
SCHEMA_ONLY: dict[str, tuple[dict[str, Any], str]] = {
    "typo-at-top-level": ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    "typo-nested": ({"audit": {"postgress": {}}}, "additional properties 'postgress' not allowed"),
    "root-user": ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
    "unknown-scope": ({"scope": "global"}, "/scope"),
    "bad-duration": (
        {"audit": {"checkpointInterval": "five minutes"}},
        "/audit/checkpointInterval",
    ),
    "bad-digest": ({"image": {"digest": "latest"}}, "/image/digest"),
}


@pytest.fixture(scope="module")
def chart_without_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("chart") / "keyturn"
    shutil.copytree(REPO / "helm" / "keyturn", copy)
    (copy / "values.schema.json").unlink()
    return copy


@pytest.mark.parametrize("case", INVALID)
def test_invalid_combination_fails_with_a_clear_message(
    case: str, chart_without_schema: Path
) -> None:
    values, schema_names, explanation = INVALID[case]
    with pytest.raises(HelmError) as failure:
        render(values)
    message = str(failure.value)
    if schema_names is not None:
        assert schema_names in message
        assert any(schema_names in problem for problem in lint_problems(lint(values)))
    else:
        assert explanation in message
    # The template check on its own: the same values against the chart without its schema.
    with helm.Chart.load(chart_without_schema) as chart:
        with pytest.raises(HelmError) as failure:
            chart.render(values, name="keyturn", namespace=NAMESPACE)
    assert "keyturn: " in str(failure.value)
    assert explanation in str(failure.value)


@pytest.mark.parametrize("case", SCHEMA_ONLY)
def test_schema_rejects(case: str) -> None:
    values, names = SCHEMA_ONLY[case]
    with pytest.raises(HelmError) as failure:
        render(values)
    assert names in str(failure.value)
    assert lint_problems(lint(values))


# ---- the CRD --------------------------------------------------------------------------------


def test_chart_crd_is_the_generated_one() -> None:
    generated = (REPO / "crds" / "keyturn.dev_managedsecrets.yaml").read_bytes()
    copy = (REPO / "helm" / "keyturn" / "crds" / "keyturn.dev_managedsecrets.yaml").read_bytes()
    assert copy == generated, (
        "helm/keyturn/crds/ differs from crds/: cp crds/keyturn.dev_managedsecrets.yaml helm/keyturn/crds/"
    )


def test_chart_crd_loads_and_validates() -> None:
    crds = chart_crds()
    assert [crd["metadata"]["name"] for crd in crds] == ["managedsecrets.keyturn.dev"]
    for crd in crds:
        validate(crd)


# ---- the admission policy -------------------------------------------------------------------


def test_admission_policy_is_the_tested_file_plus_the_chart_labels() -> None:
    """The chart installs exactly what crds/tests/admission_policy.rs evaluates."""
    import yaml

    source = [
        document
        for document in yaml.safe_load_all((REPO / "helm" / "keyturn" / "files" / "admission-policy.yaml").read_text())
        if document
    ]
    installed = [m.object for m in rendered("default").manifests if m.kind in ADMISSION_KINDS]
    assert [o["kind"] for o in installed] == [o["kind"] for o in source]
    for ours, theirs in zip(installed, source):
        labels = ours["metadata"].pop("labels")
        assert labels["app.kubernetes.io/instance"] == "keyturn"
        theirs["metadata"].pop("labels", None)
        assert ours == theirs


@pytest.mark.parametrize(
    "values",
    [{"admissionPolicy": {"enabled": False}}, {"scope": "namespace"}],
    ids=["disabled", "namespace-scoped"],
)
def test_admission_policy_is_left_out_when_disabled_or_namespace_scoped(values: dict) -> None:
    assert not [m for m in render(values).manifests if m.kind in ADMISSION_KINDS]


def test_audit_webhook_examples_in_the_chart_match_docs() -> None:
    """The audit policy and webhook kubeconfig shipped in files/ are the documented, tested ones."""
    for name in ("audit-policy.yaml", "audit-webhook-kubeconfig.yaml"):
        chart_copy = (REPO / "helm" / "keyturn" / "files" / name).read_text()
        documented = (REPO / "docs" / "examples" / name).read_text()
        assert chart_copy == documented, f"helm/keyturn/files/{name} differs from docs/examples/{name}: copy it"
