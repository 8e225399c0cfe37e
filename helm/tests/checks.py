"""Pure checks of rendered manifests: each returns a list of problems (empty when fine), so the
tests can show all of them at once and test_checks.py can prove each check catches what it is
for. No Helm here.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

# Verbs that let a holder grant or assume permissions it does not have.
FORBIDDEN_VERBS = {"escalate", "bind", "impersonate"}

# Secret verbs the operator may hold in every namespace (scope=cluster), each justified in
# docs/helm.md ("What the cluster-wide Secret permissions mean"):
# - list, watch: the metadata-only watch of the Secrets keyturn owns (RBAC cannot narrow by
#   label);
# - get, create, patch, delete: the staging and published Secrets (server-side apply) and the
#   Secrets a spec names, in whichever namespace a ManagedSecret lives; names are user-chosen.
# Not: update, deletecollection, or anything on a subresource.
CLUSTER_WIDE_SECRET_VERBS = {"get", "list", "watch", "create", "patch", "delete"}

WHY_COMMENT = re.compile(r"^\s*# why: \S")
RULE_START = re.compile(r"^\s*- apiGroups:")


def rules_of(role: dict[str, Any]) -> list[dict[str, Any]]:
    return list(role.get("rules") or [])


def rbac_problems(role: dict[str, Any]) -> list[str]:
    """Problems of one Role or ClusterRole: wildcards, privilege-granting verbs, non-resource
    URLs, aggregation, and Secret access beyond the justified list."""
    kind = role["kind"]
    where = f"{kind} {role['metadata']['name']}"
    problems = []
    if role.get("aggregationRule"):
        problems.append(f"{where}: aggregationRule pulls in rules from other ClusterRoles")
    for index, rule in enumerate(rules_of(role)):
        at = f"{where} rule {index}"
        groups = rule.get("apiGroups") or []
        resources = rule.get("resources") or []
        verbs = rule.get("verbs") or []
        names = rule.get("resourceNames") or []
        for field, items in (
            ("apiGroups", groups),
            ("resources", resources),
            ("verbs", verbs),
            ("resourceNames", names),
        ):
            wild = [item for item in items if "*" in item]
            if wild:
                problems.append(f"{at}: wildcard in {field}: {wild}")
        if rule.get("nonResourceURLs"):
            problems.append(f"{at}: nonResourceURLs {rule['nonResourceURLs']}")
        bad = sorted(FORBIDDEN_VERBS & set(verbs))
        if bad:
            problems.append(f"{at}: grants {bad}")
        if "impersonate" in " ".join(resources):
            problems.append(f"{at}: resources {resources}")
        if not verbs or not resources or not groups:
            problems.append(f"{at}: incomplete rule {rule}")
        touches_secrets = "" in groups and any(
            resource == "secrets" or resource.startswith("secrets/") for resource in resources
        )
        if not touches_secrets:
            continue
        subresources = [resource for resource in resources if resource.startswith("secrets/")]
        if subresources:
            problems.append(f"{at}: Secret subresources {subresources}")
        extra = sorted(set(verbs) - CLUSTER_WIDE_SECRET_VERBS)
        if extra:
            problems.append(
                f"{at}: Secret verbs {extra} beyond {sorted(CLUSTER_WIDE_SECRET_VERBS)}"
            )
    return problems


def binding_problems(
    binding: dict[str, Any], roles: Iterable[dict[str, Any]], service_account: str, namespace: str
) -> list[str]:
    """A binding must bind this chart's own role, of the matching kind, to the chart's service
    account only (not cluster-admin, admin, edit or any other existing role)."""
    where = f"{binding['kind']} {binding['metadata']['name']}"
    reference = binding["roleRef"]
    expected_kind = "ClusterRole" if binding["kind"] == "ClusterRoleBinding" else "Role"
    problems = []
    if reference["kind"] != expected_kind:
        problems.append(f"{where}: binds a {reference['kind']}, expected a {expected_kind}")
    own = {
        (role["kind"], role["metadata"]["name"], role["metadata"].get("namespace"))
        for role in roles
    }
    key = (
        reference["kind"],
        reference["name"],
        binding["metadata"].get("namespace") if reference["kind"] == "Role" else None,
    )
    if key not in own:
        problems.append(
            f"{where}: binds {reference['kind']} {reference['name']}, not one of this chart's"
        )
    expected_subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    if binding.get("subjects") != [expected_subject]:
        problems.append(
            f"{where}: subjects {binding.get('subjects')}, expected [{expected_subject}]"
        )
    return problems


def rule_comment_problems(text: str) -> list[str]:
    """Every rule (`- apiGroups:` line) of a rendered RBAC template must follow a `# why: ...`
    comment block: the nearest non-blank line above it is part of a comment that starts with
    `# why:`."""
    lines = text.splitlines()
    problems = []
    for number, line in enumerate(lines):
        if not RULE_START.match(line):
            continue
        above = number - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        if above < 0 or not lines[above].lstrip().startswith("#"):
            problems.append(f"line {number + 1}: rule without a comment: {line.strip()}")
            continue
        while (
            above > 0
            and lines[above - 1].lstrip().startswith("#")
            and not WHY_COMMENT.match(lines[above])
        ):
            above -= 1
        if not WHY_COMMENT.match(lines[above]):
            problems.append(
                f"line {number + 1}: the comment above the rule does not start with '# why:'"
            )
    return problems


def container_security_problems(pod_spec: dict[str, Any]) -> list[str]:
    """The restricted Pod Security Standard and then some: non-root, read-only root file
    system, no privilege escalation, RuntimeDefault seccomp, every capability dropped, no host
    namespaces or host paths."""
    problems = []
    pod = pod_spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            problems.append(f"pod: {field}")
    for volume in pod_spec.get("volumes") or []:
        if "hostPath" in volume:
            problems.append(f"pod: hostPath volume {volume['name']}")
    if pod.get("runAsUser") == 0:
        problems.append("pod: runAsUser 0")
    containers = (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or [])
    if not containers:
        problems.append("pod: no containers")
    for container in containers:
        at = f"container {container.get('name')}"
        own = container.get("securityContext") or {}

        def effective(field: str, own: dict[str, Any] = own) -> Any:
            return own[field] if field in own else pod.get(field)

        if effective("runAsNonRoot") is not True:
            problems.append(f"{at}: runAsNonRoot is not true")
        if effective("runAsUser") == 0:
            problems.append(f"{at}: runAsUser 0")
        if own.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{at}: readOnlyRootFilesystem is not true")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: allowPrivilegeEscalation is not false")
        if own.get("privileged"):
            problems.append(f"{at}: privileged")
        seccomp = (effective("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            problems.append(f"{at}: seccompProfile {seccomp}, expected RuntimeDefault")
        capabilities = own.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{at}: capabilities.drop lacks ALL")
        if capabilities.get("add"):
            problems.append(f"{at}: capabilities.add {capabilities['add']}")
    return problems


# The ServiceMonitor fields this chart sets, as the Prometheus Operator's CRD
# (monitoring.coreos.com/v1) defines them; kubernetes-validate has no schema for it.
DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
SERVICE_MONITOR_SPEC_FIELDS = {
    "selector",
    "namespaceSelector",
    "endpoints",
    "jobLabel",
    "targetLabels",
    "podTargetLabels",
    "sampleLimit",
    "targetLimit",
    "attachMetadata",
}
ENDPOINT_FIELDS = {
    "port",
    "targetPort",
    "path",
    "scheme",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "honorTimestamps",
    "relabelings",
    "metricRelabelings",
    "tlsConfig",
    "bearerTokenSecret",
    "authorization",
    "params",
    "followRedirects",
    "enableHttp2",
    "filterRunning",
}


def service_monitor_problems(monitor: dict[str, Any], services: list[dict[str, Any]]) -> list[str]:
    problems = []
    if monitor.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"apiVersion {monitor.get('apiVersion')}")
    unknown_top = set(monitor) - {"apiVersion", "kind", "metadata", "spec"}
    if unknown_top:
        problems.append(f"unknown fields {sorted(unknown_top)}")
    spec = monitor.get("spec") or {}
    unknown = set(spec) - SERVICE_MONITOR_SPEC_FIELDS
    if unknown:
        problems.append(f"unknown spec fields {sorted(unknown)}")
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    selected = [
        service
        for service in services
        if labels
        and all(
            service["metadata"].get("labels", {}).get(key) == value for key, value in labels.items()
        )
    ]
    if not selected:
        problems.append(f"selector {labels} selects no rendered Service")
    endpoints = spec.get("endpoints")
    if not endpoints:
        problems.append("no endpoints")
    for endpoint in endpoints or []:
        unknown = set(endpoint) - ENDPOINT_FIELDS
        if unknown:
            problems.append(f"unknown endpoint fields {sorted(unknown)}")
        for field in ("interval", "scrapeTimeout"):
            if field in endpoint and not DURATION.match(str(endpoint[field])):
                problems.append(
                    f"endpoint {field} {endpoint[field]!r} is not a Prometheus duration"
                )
        ports = {port.get("name") for service in selected for port in service["spec"]["ports"]}
        if endpoint.get("port") not in ports:
            problems.append(
                f"endpoint port {endpoint.get('port')!r} is not a port of {sorted(ports)}"
            )
    return problems


def dockerfile_copy_sources(dockerfile: str) -> list[str]:
    """Sources of COPY/ADD instructions that read the build context (not --from=stage)."""
    sources = []
    joined = re.sub(r"\\\n", " ", dockerfile)
    for line in joined.splitlines():
        words = line.split()
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        arguments = [word for word in words[1:] if not word.startswith("--")]
        if any(word.startswith("--from") for word in words[1:]):
            continue
        sources.extend(arguments[:-1])
    return sources


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's .dockerignore semantics, enough for this repository: patterns in order, the
    last match wins, `!` re-includes, `**` matches any number of directories, and a directory
    pattern covers what is under it."""
    excluded = False
    path = path.strip("/")
    parts = path.split("/")
    prefixes = ["/".join(parts[: count + 1]) for count in range(len(parts))]
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = re.compile(_glob_regex(pattern.lstrip("!").strip("/")))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def _glob_regex(pattern: str) -> str:
    out = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return "".join(out)
