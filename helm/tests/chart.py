"""Rendering and linting the keyturn chart with real Helm (helm-python-sdk wraps Helm v4's Go
library: no helm binary, no cluster), and validating what it renders with kubernetes-validate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "keyturn"
RELEASE = "keyturn"
NAMESPACE = "keyturn-system"
# The Kubernetes version manifests are validated against (kubernetes-validate's schemas) and
# that `helm lint` checks the chart's kubeVersion against.
KUBERNETES_VERSION = "1.32.0"

# Kinds kubernetes-validate has no schema for, with how they are checked instead.
# monitoring.coreos.com/v1 ServiceMonitor: checks.service_monitor_problems (the fields this
# chart sets, against the Prometheus Operator's API); nothing else is allowed through.
NOT_IN_KUBERNETES_VALIDATE = {("monitoring.coreos.com/v1", "ServiceMonitor")}


@dataclass
class Manifest:
    template: str
    object: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.object["kind"])

    @property
    def name(self) -> str:
        return str(self.object["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        return self.object["metadata"].get("namespace")


@dataclass
class Rendered:
    templates: dict[str, str]
    manifests: list[Manifest]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [manifest for manifest in self.manifests if manifest.kind == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
        return found[0].object

    def text(self, template: str) -> str:
        return self.templates[f"keyturn/templates/{template}"]


def render(values: dict[str, Any] | None = None) -> Rendered:
    """Renders like `helm template keyturn helm/keyturn -n keyturn-system` (an install)."""
    with helm.Chart.load(CHART) as chart:
        templates = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests = []
    for template, text in sorted(templates.items()):
        if template.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document is not None:
                manifests.append(Manifest(template, document))
    return Rendered(templates, manifests)


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """`helm lint --strict --kube-version v1.32.0 -n keyturn-system` with these values."""
    return helm.lint(
        CHART,
        values or {},
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBERNETES_VERSION}",
    )


def lint_problems(report: dict[str, Any]) -> list[str]:
    """Errors and warnings of a lint report (severity 2 and 3); infos (icon is recommended)
    are not problems."""
    return [
        f"{message['path']}: {message['error']}"
        for message in report["messages"]
        if message["severity"] >= 2
    ] + list(report["errors"])


def validate(manifest: dict[str, Any]) -> None:
    """Raises when kubernetes-validate (strict: unknown fields are errors) rejects it."""
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def chart_crds() -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        return [yaml.safe_load(crd["data"]) for crd in chart.crds]
