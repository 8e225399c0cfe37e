"""The checks in checks.py catch what they exist for: each bad input below is one a chart change
could plausibly introduce, and the chart tests would pass if its check missed it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import checks
from chart import render

GOOD_CLUSTER_ROLE: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "keyturn"},
    "rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get", "create", "patch", "delete"],
        },
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "patch"]},
    ],
}


def with_rule(rule: dict[str, Any], kind: str = "ClusterRole") -> dict[str, Any]:
    role = copy.deepcopy(GOOD_CLUSTER_ROLE)
    role["kind"] = kind
    if kind == "Role":
        role["metadata"]["namespace"] = "payments"
    role["rules"].append(rule)
    return role


def test_the_good_role_passes() -> None:
    assert checks.rbac_problems(GOOD_CLUSTER_ROLE) == []


@pytest.mark.parametrize(
    "rule, expected",
    [
        ({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}, "wildcard in apiGroups"),
        ({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}, "wildcard in resources"),
        (
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]},
            "wildcard in verbs",
        ),
        (
            {"apiGroups": ["apps"], "resources": ["deployments/*"], "verbs": ["get"]},
            "wildcard in resources",
        ),
        (
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["clusterroles"],
                "verbs": ["escalate"],
            },
            "grants ['escalate']",
        ),
        (
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"]},
            "grants ['bind']",
        ),
        (
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
            "grants ['impersonate']",
        ),
        (
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["update"]},
            "Secret verbs ['update']",
        ),
        (
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["deletecollection"]},
            "Secret verbs ['deletecollection']",
        ),
        (
            {"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "proxy"]},
            "Secret verbs ['proxy']",
        ),
        (
            {"apiGroups": [""], "resources": ["secrets/status"], "verbs": ["get"]},
            "Secret subresources",
        ),
        ({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}, "nonResourceURLs"),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": []}, "incomplete rule"),
    ],
)
def test_bad_rules_are_caught(rule: dict[str, Any], expected: str) -> None:
    for kind in ("ClusterRole", "Role"):
        problems = checks.rbac_problems(with_rule(rule, kind))
        assert any(expected in problem for problem in problems), (kind, problems)


def test_aggregation_is_caught() -> None:
    role = copy.deepcopy(GOOD_CLUSTER_ROLE)
    role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}
    assert checks.rbac_problems(role)


def test_an_injected_wildcard_in_the_rendered_chart_is_caught() -> None:
    """End to end: the rendered ClusterRole with one verb replaced by `*` fails the check."""
    cluster_role = render({}).one("ClusterRole")
    assert checks.rbac_problems(cluster_role) == []
    cluster_role["rules"][0]["verbs"] = ["*"]
    assert checks.rbac_problems(cluster_role)


def test_bindings_to_foreign_roles_or_subjects_are_caught() -> None:
    roles = [GOOD_CLUSTER_ROLE]
    subject = {"kind": "ServiceAccount", "name": "keyturn", "namespace": "keyturn-system"}
    good = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "keyturn"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "keyturn",
        },
        "subjects": [subject],
    }
    assert checks.binding_problems(good, roles, "keyturn", "keyturn-system") == []
    admin = copy.deepcopy(good)
    admin["roleRef"]["name"] = "cluster-admin"
    assert checks.binding_problems(admin, roles, "keyturn", "keyturn-system")
    group = copy.deepcopy(good)
    group["subjects"].append({"kind": "Group", "name": "system:authenticated"})
    assert checks.binding_problems(group, roles, "keyturn", "keyturn-system")
    role_binding_to_cluster_role = copy.deepcopy(good)
    role_binding_to_cluster_role["kind"] = "RoleBinding"
    role_binding_to_cluster_role["metadata"]["namespace"] = "payments"
    assert checks.binding_problems(role_binding_to_cluster_role, roles, "keyturn", "keyturn-system")


def test_rules_without_a_why_comment_are_caught() -> None:
    good = """rules:
# why: the reason, which
# goes on for two lines.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]

# why: another reason.
- apiGroups: ["apps"]
"""
    assert checks.rule_comment_problems(good) == []
    missing = good + '- apiGroups: ["batch"]\n'
    assert len(checks.rule_comment_problems(missing)) == 1
    other_comment = good + '# needed\n- apiGroups: ["batch"]\n'
    assert len(checks.rule_comment_problems(other_comment)) == 1
    empty_reason = good + '# why:\n- apiGroups: ["batch"]\n'
    assert len(checks.rule_comment_problems(empty_reason)) == 1


def test_every_weak_security_setting_is_caught() -> None:
    pod = render({}).one("Deployment")["spec"]["template"]["spec"]
    assert checks.container_security_problems(pod) == []
    weakenings = [
        ("securityContext", "runAsNonRoot", False, "runAsNonRoot"),
        ("container", "readOnlyRootFilesystem", False, "readOnlyRootFilesystem"),
        ("container", "allowPrivilegeEscalation", True, "allowPrivilegeEscalation"),
        ("container", "privileged", True, "privileged"),
        ("container", "capabilities", {"drop": ["NET_RAW"]}, "capabilities.drop"),
        ("container", "capabilities", {"drop": ["ALL"], "add": ["NET_ADMIN"]}, "capabilities.add"),
        ("container", "seccompProfile", {"type": "Unconfined"}, "seccompProfile"),
        ("container", "runAsUser", 0, "runAsUser 0"),
        ("pod", "hostNetwork", True, "hostNetwork"),
    ]
    for where, field, value, expected in weakenings:
        weak = copy.deepcopy(pod)
        if where == "securityContext":
            weak["securityContext"][field] = value
            weak["containers"][0]["securityContext"].pop(field, None)
        elif where == "container":
            weak["containers"][0]["securityContext"][field] = value
        else:
            weak[field] = value
        problems = checks.container_security_problems(weak)
        assert any(expected in problem for problem in problems), (field, problems)
    init = copy.deepcopy(pod)
    init["initContainers"] = [{"name": "init", "image": "busybox"}]
    assert any("container init" in problem for problem in checks.container_security_problems(init))
    host_path = copy.deepcopy(pod)
    host_path["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert checks.container_security_problems(host_path)


def test_service_monitor_check_catches_mistakes() -> None:
    result = render({"serviceMonitor": {"enabled": True}})
    monitor = result.one("ServiceMonitor")
    services = [result.one("Service")]
    assert checks.service_monitor_problems(monitor, services) == []
    wrong_port = copy.deepcopy(monitor)
    wrong_port["spec"]["endpoints"][0]["port"] = "http"
    assert checks.service_monitor_problems(wrong_port, services)
    wrong_selector = copy.deepcopy(monitor)
    wrong_selector["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"
    assert checks.service_monitor_problems(wrong_selector, services)
    typo = copy.deepcopy(monitor)
    typo["spec"]["endpoints"][0]["intervall"] = "30s"
    assert checks.service_monitor_problems(typo, services)
    bad_interval = copy.deepcopy(monitor)
    bad_interval["spec"]["endpoints"][0]["interval"] = "30 seconds"
    assert checks.service_monitor_problems(bad_interval, services)


def test_dockerignore_semantics() -> None:
    patterns = ["*", "!Cargo.toml", "!operator/", "**/target/"]
    assert checks.dockerignore_excludes(patterns, "README.md")
    assert checks.dockerignore_excludes(patterns, "docs/index.md")
    assert not checks.dockerignore_excludes(patterns, "Cargo.toml")
    assert not checks.dockerignore_excludes(patterns, "operator/src/main.rs")
    assert checks.dockerignore_excludes(patterns, "operator/target/debug/x")
    assert checks.dockerignore_excludes(patterns, "target")


def test_dockerfile_copy_sources() -> None:
    dockerfile = """FROM rust AS build
COPY Cargo.toml Cargo.lock ./
COPY --chown=1:1 operator \\
     ./operator
COPY --from=build /out/x /x
ADD crds /crds
"""
    assert checks.dockerfile_copy_sources(dockerfile) == [
        "Cargo.toml",
        "Cargo.lock",
        "operator",
        "crds",
    ]
