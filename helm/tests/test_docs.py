"""docs/helm.md stays true to the chart: its RBAC table lists exactly the rules the chart
renders (so no rule exists without a documented reason, and no documented rule is stale), and
its values table covers every value in values.yaml."""

from __future__ import annotations

import re
from typing import Any

import yaml

from chart import CHART, REPO, render

DOC = (REPO / "docs" / "helm.md").read_text()

RuleKey = tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def table_rows(start: str, end: str | None = None) -> list[list[str]]:
    body = DOC.split(start, 1)[1]
    if start.startswith("|"):
        body = start + body  # the start is the header row
    body = body.split(end, 1)[0] if end else body.split("\n\n", 1)[0]
    rows = []
    for line in body.strip().splitlines():
        if not line.startswith("|") or set(line) <= {"|", "-"}:
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def documented_rules() -> set[RuleKey]:
    rules = set()
    for where, group, resources, names, verbs, why in table_rows(
        "<!-- rbac-table:start -->", "<!-- rbac-table:end -->"
    ):
        assert len(why) > 20, f"no reason given for {resources}"
        api_group = "" if group == "core" else ticked(group)[0]
        rules.add(
            (
                where,
                api_group,
                tuple(sorted(ticked(resources))),
                tuple(sorted(ticked(names))),
                tuple(sorted(ticked(verbs))),
            )
        )
    return rules


def rendered_rules(values: dict[str, Any]) -> set[RuleKey]:
    rules = set()
    for manifest in render(values).manifests:
        if manifest.kind not in ("Role", "ClusterRole"):
            continue
        for rule in manifest.object["rules"]:
            if manifest.name.endswith("-leader"):
                where = "release namespace"
            elif "clusterroles" in rule["resources"]:
                where = "cluster"
            else:
                where = "ManagedSecret namespaces"
            (group,) = rule["apiGroups"]
            rules.add(
                (
                    where,
                    group,
                    tuple(sorted(rule["resources"])),
                    tuple(sorted(rule.get("resourceNames", []))),
                    tuple(sorted(rule["verbs"])),
                )
            )
    return rules


def test_rbac_table_matches_the_rendered_rules() -> None:
    documented = documented_rules()
    cluster = rendered_rules({})
    namespaced = rendered_rules({"scope": "namespace", "watchNamespace": "payments"})
    assert cluster - documented == set(), "rendered rules without a row in docs/helm.md"
    assert namespaced - documented == set(), "rendered rules without a row in docs/helm.md"
    assert documented - (cluster | namespaced) == set(), "rows in docs/helm.md no template renders"
    assert {rule for rule in namespaced if rule[0] == "cluster"} == set()


def value_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths |= value_paths(value, path + ".")
        else:
            paths.add(path)
    return paths


def documented_values() -> set[str]:
    documented = set()
    for row in table_rows("| Value | Default | Meaning |\n"):
        previous = ""
        for token in ticked(row[0]):
            if token.startswith("."):
                token = previous.rsplit(".", 1)[0] + token
            documented.add(token)
            previous = token
    return documented


def test_every_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = documented_values()
    missing = {
        path
        for path in value_paths(values)
        if not any(path == entry or path.startswith(entry + ".") for entry in documented)
    }
    assert missing == set(), "values missing from the table in docs/helm.md"
    stale = {
        entry
        for entry in documented
        if not any(path == entry or path.startswith(entry + ".") for path in value_paths(values))
    }
    assert stale == set(), "documented values that values.yaml does not have"


def test_documented_defaults_of_plain_values_match() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(values, "")
    checked = 0
    for row in table_rows("| Value | Default | Meaning |\n"):
        names, default = ticked(row[0]), ticked(row[1])
        if len(names) != 1 or len(default) != 1 or names[0] not in flat:
            continue
        expected = flat[names[0]]
        shown = yaml.safe_load(default[0]) if default[0] not in ('""',) else ""
        assert shown == expected, f"{names[0]}: docs say {default[0]}, values.yaml has {expected!r}"
        checked += 1
    assert checked >= 30
