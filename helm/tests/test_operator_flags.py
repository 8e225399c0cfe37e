"""The environment the chart gives the operator is what `keyturn-operator run` reads: every
KEYTURN_* variable is one of its flags (operator/src/cli.rs), and the real binary accepts the
rendered values (it gets past argument parsing to loading the Kubernetes configuration)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chart import REPO, render

CLI = (REPO / "operator" / "src" / "cli.rs").read_text()
FLAG_VARIABLES = set(re.findall(r'env = "([A-Z_]+)"', CLI))

# The audit webhook's flags are being added to the operator in parallel with this chart
# (docs/helm.md, "The audit webhook"); until they land, the binary ignores these variables.
WEBHOOK_VARIABLES = {
    "KEYTURN_AUDIT_WEBHOOK_ADDR",
    "KEYTURN_AUDIT_WEBHOOK_TLS_CERT",
    "KEYTURN_AUDIT_WEBHOOK_TLS_KEY",
    "KEYTURN_AUDIT_WEBHOOK_CLIENT_CA",
    "KEYTURN_AUDIT_WEBHOOK_TOKEN_FILE",
}

WEBHOOK = {
    "enabled": True,
    "tls": {"secretName": "tls"},
    "clientCA": {"secretName": "ca"},
    "token": {"secretName": "token"},
}
COMBINATIONS: dict[str, dict[str, Any]] = {
    "sqlite": {},
    "postgres": {"audit": {"store": "postgres", "postgres": {"existingSecret": "dsn"}}},
    "namespace-with-webhook": {
        "scope": "namespace",
        "auditWebhook": WEBHOOK,
        "operator": {"logFormat": "text", "logLevel": "debug"},
    },
}


def operator_env(values: dict[str, Any]) -> list[dict[str, Any]]:
    deployment = render(values).one("Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]["env"]


@pytest.mark.parametrize("case", COMBINATIONS)
def test_every_variable_is_an_operator_flag(case: str) -> None:
    assert "KEYTURN_AUDIT_STORE" in FLAG_VARIABLES  # the pattern still finds the flags
    names = {entry["name"] for entry in operator_env(COMBINATIONS[case])}
    unknown = {
        name
        for name in names
        if name.startswith("KEYTURN_") and name not in FLAG_VARIABLES | WEBHOOK_VARIABLES
    }
    assert unknown == set()


def operator_binary() -> Path | None:
    configured = os.environ.get("KEYTURN_OPERATOR_BIN")
    if configured:
        # Set by scripts/test.sh after it built the binaries: it must exist.
        assert Path(configured).is_file(), f"KEYTURN_OPERATOR_BIN={configured} does not exist"
        return Path(configured)
    built = REPO / "target" / "debug" / "keyturn-operator"
    return built if built.is_file() else None


@pytest.mark.parametrize("case", COMBINATIONS)
def test_the_operator_accepts_the_rendered_values(case: str, tmp_path: Path) -> None:
    binary = operator_binary()
    if binary is None:
        pytest.skip(
            "no keyturn-operator binary: cargo build -p keyturn-operator, or run ./scripts/test.sh"
        )
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "KUBECONFIG": str(tmp_path / "none"),
    }
    for entry in operator_env(COMBINATIONS[case]):
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            environment[entry["name"]] = "postgres://keyturn@127.0.0.1:1/keyturn"
        else:
            field = entry["valueFrom"]["fieldRef"]["fieldPath"]
            environment[entry["name"]] = {
                "metadata.name": "keyturn-0",
                "metadata.namespace": "keyturn-system",
            }[field]
    # Where the pod has volumes and its own network namespace, the test has neither: the SQLite
    # file goes to a temporary directory and the HTTP server to a free loopback port. Both
    # rendered values are still checked for their form.
    assert environment["KEYTURN_HTTP_ADDR"] == "0.0.0.0:8080"
    environment["KEYTURN_HTTP_ADDR"] = "127.0.0.1:0"
    # The webhook's certificate, client CA and token are files in mounted Secrets: the operator
    # reads them at start, so they are made here (a throwaway self-signed certificate) in place
    # of the mount paths, which must be under the pod's mounts.
    mounts = [
        mount["mountPath"]
        for mount in render(COMBINATIONS[case]).one("Deployment")["spec"]["template"]["spec"][
            "containers"
        ][0].get("volumeMounts", [])
    ]
    webhook_files = {
        name: value
        for name, value in environment.items()
        if name.startswith("KEYTURN_AUDIT_WEBHOOK_") and name != "KEYTURN_AUDIT_WEBHOOK_ADDR"
    }
    if webhook_files:
        certificate, key = tmp_path / "tls.crt", tmp_path / "tls.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-subj", "/CN=keyturn-audit", "-days", "1",
             "-keyout", str(key), "-out", str(certificate)],
            check=True, capture_output=True,
        )
        (tmp_path / "token").write_text("a-token-for-the-test\n")
        made = {
            "KEYTURN_AUDIT_WEBHOOK_TLS_CERT": certificate,
            "KEYTURN_AUDIT_WEBHOOK_TLS_KEY": key,
            "KEYTURN_AUDIT_WEBHOOK_CLIENT_CA": certificate,
            "KEYTURN_AUDIT_WEBHOOK_TOKEN_FILE": tmp_path / "token",
        }
        for name, path in webhook_files.items():
            assert any(path.startswith(mount + "/") for mount in mounts), (name, path, mounts)
            environment[name] = str(made[name])
        environment["KEYTURN_AUDIT_WEBHOOK_ADDR"] = "127.0.0.1:0"
    if environment["KEYTURN_AUDIT_STORE"].startswith("sqlite:"):
        assert environment["KEYTURN_AUDIT_STORE"] == "sqlite:/var/lib/keyturn/audit.db"
        environment["KEYTURN_AUDIT_STORE"] = f"sqlite:{tmp_path / 'audit.db'}"
    args = render(COMBINATIONS[case]).one("Deployment")["spec"]["template"]["spec"]["containers"][
        0
    ]["args"]
    finished = subprocess.run(
        [str(binary), *args], env=environment, capture_output=True, text=True, timeout=60
    )
    # Argument errors exit 2 with clap's message; past them, the binary stops at the missing
    # kubeconfig (there is no cluster here) and exits 1.
    assert finished.returncode == 1, finished.stderr
    assert "invalid value" not in finished.stderr
    assert "kubeconfig" in finished.stderr, finished.stderr
