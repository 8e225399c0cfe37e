"""The docs check on this repository: every shell command in README.md and docs/ is accounted for
in docs/commands.toml (and the entries are true), the commands marked "run" and "standin" run
and exit as expected, and every relative link resolves. ./scripts/test.sh runs it after the
build (phase "docs checks"); see docs/tests/doccheck.py for the rules.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

import doccheck

REPO = doccheck.REPO


def bin_dirs() -> list[Path]:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    binaries = Path(os.environ.get("KEYTURN_BIN_DIR") or target / "debug")
    venv = Path(os.environ.get("KEYTURN_VENV") or REPO / "target" / "venv")
    return [binaries, venv / "bin"]


def require(*programs: str) -> list[Path]:
    """The binary directories, when they hold `programs`; else skip (fail under test.sh, which
    sets KEYTURN_DOCS_REQUIRE_BINARIES=1 after building them)."""
    dirs = bin_dirs()
    missing = [p for p in programs if not any((d / p).is_file() for d in dirs)]
    if missing:
        message = f"not built or installed: {', '.join(missing)} (looked in {', '.join(map(str, dirs))})"
        if os.environ.get("KEYTURN_DOCS_REQUIRE_BINARIES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return dirs


COMMANDS = doccheck.all_commands()
ENTRIES = doccheck.load_manifest()
BY_COMMAND = {entry.command: entry for entry in ENTRIES}
SETUPS = doccheck.load_setups()


def test_the_docs_show_commands():
    # Guards the extraction itself: an empty result would make every other check vacuous.
    assert len(COMMANDS) > 40, COMMANDS
    assert any(command.text == "./scripts/demo.sh" for command in COMMANDS)


def test_every_command_in_the_docs_is_accounted_for():
    problems = doccheck.accounting_problems(COMMANDS, ENTRIES)
    assert not problems, "\n" + "\n".join(problems)


def test_every_relative_link_resolves():
    problems = doccheck.link_problems(doccheck.doc_files())
    assert not problems, "\n" + "\n".join(problems)


def test_setups_are_for_pages_with_standin_commands():
    pages = {command.file for command in COMMANDS if getattr(BY_COMMAND.get(command.text), "check", None) == "standin"}
    assert set(SETUPS) <= pages, f"[[setup]] for pages without standin commands: {set(SETUPS) - pages}"


def test_readme_starts_with_the_demo_and_the_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first = next(body for language, _, body in doccheck.fenced_blocks(readme))
    assert [line for line in first if line.strip()] == ["./scripts/demo.sh", "./scripts/test.sh"]


RUN = sorted({c.text for c in COMMANDS if BY_COMMAND.get(c.text) and BY_COMMAND[c.text].check == "run"})


@pytest.mark.parametrize("command", RUN)
def test_run_commands_exit_as_documented(command: str):
    dirs = require("keyturn-operator", "kubectl-keyturn")
    entry = BY_COMMAND[command]
    directory = doccheck.scratch_dir()
    try:
        env = doccheck.environment(dirs, directory, None)
        result = doccheck.run(command, directory, env)
        expected = int(entry.get("exit", 0))
        assert result.returncode == expected, (
            f"`{command}` exited {result.returncode}, expected {expected}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
        for needle in entry.get("stdout_contains", []):
            assert needle in result.stdout, f"`{command}`: {needle!r} not in its output"
    finally:
        doccheck.cleanup(directory)


def standin_pages() -> dict[str, list[doccheck.Command]]:
    pages: dict[str, list[doccheck.Command]] = defaultdict(list)
    for command in COMMANDS:
        entry = BY_COMMAND.get(command.text)
        if entry and entry.check == "standin":
            pages[command.file].append(command)
    return dict(pages)


@pytest.mark.parametrize("page", sorted(standin_pages()))
def test_standin_commands_run_in_page_order_against_the_api_stand_in(page: str):
    dirs = require("keyturn-apiserver", "kubectl-keyturn", "kubectl")
    binary = next(d / "keyturn-apiserver" for d in dirs if (d / "keyturn-apiserver").is_file())
    directory = doccheck.scratch_dir()
    standin = None
    try:
        standin = doccheck.StandIn(binary, directory)
        env = doccheck.environment(dirs, directory, standin.kubeconfig)
        for setup in SETUPS.get(page, []):
            result = doccheck.run(setup, directory, env)
            assert result.returncode == 0, f"setup of {page}: `{setup}` failed:\n{result.stderr}"
        for command in standin_pages()[page]:
            entry = BY_COMMAND[command.text]
            result = doccheck.run(command.text, directory, env)
            expected = int(entry.get("exit", 0))
            assert result.returncode == expected, (
                f"{command.where()}: `{command.text}` exited {result.returncode} against the "
                f"API stand-in, expected {expected}\nstdout:\n{result.stdout[-3000:]}\n"
                f"stderr:\n{result.stderr[-3000:]}"
            )
            for needle in entry.get("stdout_contains", []):
                assert needle in result.stdout, f"{command.where()}: {needle!r} not in:\n{result.stdout}"
    finally:
        if standin:
            standin.stop()
        doccheck.cleanup(directory)


def test_quick_start_manifests_validate_against_kubernetes():
    """The quick start's Kubernetes objects against the Kubernetes 1.32 schemas (strict, as the
    chart tests do); its ManagedSecret is checked by `keyturn-operator explain` (a "run"
    command in docs/commands.toml)."""
    import kubernetes_validate
    import yaml

    checked = 0
    for path in sorted((REPO / "examples" / "quick-start").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not document or document.get("kind") == "ManagedSecret":
                continue
            kubernetes_validate.validate(document, "1.32.0", strict=True)
            checked += 1
    assert checked >= 5, checked


def test_the_index_links_every_page():
    index = REPO / "docs" / "index.md"
    linked = set()
    for _, line in doccheck.prose_lines(index.read_text(encoding="utf-8")):
        for match in doccheck.LINK.finditer(line):
            target = match.group(1).partition("#")[0]
            if target:
                linked.add((index.parent / target).resolve())
    pages = {path.resolve() for path in (REPO / "docs").rglob("*.md") if path != index}
    missing = sorted(str(path.relative_to(REPO)) for path in pages - linked)
    assert not missing, f"docs/index.md does not link: {missing}"
