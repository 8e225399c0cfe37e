"""What can be checked of the container image without building it (no Docker engine on these
machines, see docs/container-image.md): the build context has what the Dockerfile copies, the
workspace is complete in it, and the runtime stage is distroless and runs as the non-root user
the chart expects."""

from __future__ import annotations

import re
import tomllib

import checks
from chart import REPO, render

DOCKERFILE = (REPO / "Dockerfile").read_text()
DOCKERIGNORE = (REPO / ".dockerignore").read_text().splitlines()


def stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    result: list[list[str]] = []
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    sources = checks.dockerfile_copy_sources(DOCKERFILE)
    assert sources
    missing = [source for source in sources if not (REPO / source).exists()]
    assert missing == []
    ignored = [source for source in sources if checks.dockerignore_excludes(DOCKERIGNORE, source)]
    assert ignored == []


def test_every_workspace_member_is_copied() -> None:
    """cargo refuses a workspace with a member missing: each one must be under a copied path."""
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]
    sources = [source.rstrip("/") for source in checks.dockerfile_copy_sources(DOCKERFILE)]
    for member in workspace["members"]:
        assert any(member == source or member.startswith(source + "/") for source in sources), (
            member
        )
        assert (REPO / member / "Cargo.toml").exists()
        assert not checks.dockerignore_excludes(DOCKERIGNORE, f"{member}/src/lib.rs")
    for generated in ("target", "target/debug/keyturn-operator", "operator/target/x"):
        assert checks.dockerignore_excludes(DOCKERIGNORE, generated)


def test_build_and_runtime_stages() -> None:
    build, runtime = stages()
    assert build[0].startswith("FROM docker.io/library/rust:1.95")
    assert any("cargo build --release --locked -p keyturn-operator" in line for line in build)
    assert runtime[0].startswith("FROM gcr.io/distroless/cc-debian12:nonroot")
    assert not any(line.upper().startswith("RUN ") for line in runtime), "distroless has no shell"
    user = [line.split()[1] for line in runtime if line.upper().startswith("USER ")]
    assert user == ["65532:65532"]
    entrypoint = [line for line in runtime if line.upper().startswith("ENTRYPOINT ")]
    assert entrypoint == ['ENTRYPOINT ["/usr/local/bin/keyturn-operator"]']
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]
    assert build[0].split(":")[1].startswith(workspace["rust-version"])


def test_chart_runs_the_image_user() -> None:
    pod = render({}).one("Deployment")["spec"]["template"]["spec"]
    runtime_user = next(
        line.split()[1] for line in stages()[-1] if line.upper().startswith("USER ")
    )
    user, group = (int(part) for part in runtime_user.split(":"))
    assert pod["securityContext"]["runAsUser"] == user
    assert pod["securityContext"]["runAsGroup"] == group
    assert pod["containers"][0]["args"] == ["run"]
