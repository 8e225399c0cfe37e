"""The docs check: every shell command shown in README.md and docs/ is accounted for in
docs/commands.toml, and every relative link resolves.

A command is a line of a fenced `sh`, `bash`, `shell` or `console` block (in `console` blocks,
the lines starting with `$ `; the others are output), with `\\` continuations joined, the
comment stripped and runs of blank space folded into one. Each one must match the `command` of
an entry in docs/commands.toml, which says how it is kept true:

- `check = "run"`: the docs check runs it on this machine (in a scratch directory that links
  the repository's folders, with the built binaries on PATH) and expects exit code `exit`
  (default 0);
- `check = "standin"`: the docs check runs it, in the order the page shows it, against a fresh
  Kubernetes API stand-in (e2e/apiserver) per page, with real kubectl and the kubectl plugin,
  after the page's `[[setup]]` commands (the objects the page assumes exist);
- `check = "test"`: `test = "path::function"` runs it or exactly what it does; the check
  verifies that the file defines that function;
- `check = "script"`: `script` (a file run by ./scripts/test.sh or CI) contains `contains`;
- `check = "external"`: it needs what these machines do not have (`needs`: `cluster`,
  `docker`, `vault`, `aws`, `long-run`) and says why in `reason`; with `kind = true`, e2e/kind.sh
  runs it: kind.sh runs every page it names in `doccheck.py commands PAGE` top to bottom on a
  kind cluster, and the check verifies that the page showing the command is one of them.

An entry may add `test` to any check to name the test that covers what the command's result
means. Entries that match no command fail too, so the manifest cannot rot either.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "docs" / "commands.toml"
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
CHECKS = {"run", "standin", "test", "script", "external"}
NEEDS = {"cluster", "docker", "vault", "aws", "long-run"}
HOW_TO_ACCOUNT = (
    "add an entry to docs/commands.toml: check = \"run\" (the docs check runs it here), "
    "\"standin\" (run against the Kubernetes API stand-in), \"test\" with test = "
    "\"path::function\" (a test runs it), \"script\" with script and contains, or "
    "\"external\" with needs and reason (needs a real cluster, Docker, ...)"
)


@dataclass(frozen=True)
class Command:
    text: str
    file: str
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Entry:
    command: str
    check: str
    raw: dict = field(default_factory=dict)

    def get(self, key: str, default=None):
        return self.raw.get(key, default)


def doc_files(repo: Path = REPO) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]


def fenced_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line number of the first content line, content lines) of each fenced block.
    Fences may be indented (inside list items); content loses the fence's indentation."""
    lines = text.splitlines()
    index = 0
    fence = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")
    while index < len(lines):
        match = fence.match(lines[index])
        if not match:
            index += 1
            continue
        indent, marker, language = match.group(1), match.group(2), match.group(3).lower()
        start = index + 1
        body = []
        index += 1
        while index < len(lines):
            stripped = lines[index].strip()
            if stripped.startswith(marker[0] * len(marker)) and set(stripped) <= {marker[0]}:
                break
            line = lines[index]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            index += 1
        index += 1
        yield language, start + 1, body


def strip_comment(line: str) -> str:
    """The line without its shell comment: a `#` that starts a word outside quotes."""
    quote = None
    previous = " "
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            return line[:position]
        previous = char
    return line


def normalise(command: str) -> str:
    return " ".join(command.split())


def commands_in_block(language: str, first_line: int, body: list[str]) -> Iterator[tuple[str, int]]:
    """(command, line) for each command of one block."""
    pending: list[str] = []
    pending_line = first_line
    for offset, raw in enumerate(body):
        line_number = first_line + offset
        if language == "console" and not pending:
            if not raw.startswith("$ "):
                continue  # output
            raw = raw[2:]
        if not pending:
            pending_line = line_number
        line = strip_comment(raw) if not raw.rstrip().endswith("\\") else raw
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        command = normalise(" ".join(pending))
        pending = []
        if command:
            yield command, pending_line
    if pending:
        command = normalise(" ".join(pending))
        if command:
            yield command, pending_line


def commands_in(path: Path, repo: Path = REPO) -> list[Command]:
    relative = str(path.relative_to(repo))
    found = []
    for language, first_line, body in fenced_blocks(path.read_text(encoding="utf-8")):
        if language in SHELL_LANGUAGES:
            for text, line in commands_in_block(language, first_line, body):
                found.append(Command(text, relative, line))
    return found


def all_commands(repo: Path = REPO) -> list[Command]:
    return [command for path in doc_files(repo) for command in commands_in(path, repo)]


def load_manifest(path: Path = MANIFEST) -> list[Entry]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = []
    for raw in data.get("command", []):
        entries.append(Entry(normalise(str(raw.get("command", ""))), str(raw.get("check", "")), raw))
    return entries


def load_setups(path: Path = MANIFEST) -> dict[str, list[str]]:
    """Per page, the commands the docs check runs against a fresh stand-in before the page's
    own `standin` commands (the objects a page assumes exist), from `[[setup]]` tables."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {str(raw["page"]): [str(c) for c in raw.get("commands", [])] for raw in data.get("setup", [])}


def defines(path: Path, function: str) -> bool:
    """Whether a Rust or Python file defines `function`."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    return re.search(rf"\b(fn|def)\s+{re.escape(function)}\s*[(<]", text) is not None


def entry_problems(entry: Entry, repo: Path = REPO) -> list[str]:
    """What is wrong with one manifest entry, without running anything."""
    problems = []
    name = f"docs/commands.toml entry `{entry.command}`"
    if not entry.command:
        return ["docs/commands.toml has an entry without `command`"]
    if entry.check not in CHECKS:
        problems.append(f"{name}: check must be one of {sorted(CHECKS)}, not {entry.check!r}")
    test = entry.get("test")
    if entry.check == "test" and not test:
        problems.append(f"{name}: check = \"test\" needs test = \"path::function\"")
    if test:
        path, _, function = str(test).partition("::")
        if not function:
            problems.append(f"{name}: test must be \"path::function\", not {test!r}")
        elif not defines(repo / path, function):
            problems.append(f"{name}: {path} does not define {function} (test = {test!r})")
    if entry.check == "script":
        script, contains = entry.get("script"), entry.get("contains")
        if not script or not contains:
            problems.append(f"{name}: check = \"script\" needs script and contains")
        elif not (repo / script).is_file():
            problems.append(f"{name}: script {script} does not exist")
        elif str(contains) not in (repo / script).read_text(encoding="utf-8"):
            problems.append(f"{name}: {script} does not contain {contains!r}")
    if entry.check == "external":
        if entry.get("needs") not in NEEDS:
            problems.append(f"{name}: check = \"external\" needs needs = one of {sorted(NEEDS)}")
        if not str(entry.get("reason", "")).strip():
            problems.append(f"{name}: check = \"external\" needs a reason")
    return problems


def pages_run_on_kind(repo: Path = REPO) -> set[str]:
    """The pages e2e/kind.sh runs with `doccheck.py commands PAGE`."""
    kind = repo / "e2e" / "kind.sh"
    text = kind.read_text(encoding="utf-8") if kind.is_file() else ""
    return set(re.findall(r"doccheck\.py\"? commands (\S+\.md)", text))


def kind_commands(page: str, repo: Path = REPO) -> list[str]:
    """The commands of `page` that e2e/kind.sh runs, in order: those marked kind = true."""
    entries = {entry.command: entry for entry in load_manifest(repo / "docs" / "commands.toml")}
    return [
        command.text
        for command in commands_in(repo / page, repo)
        if entries.get(command.text) is not None and entries[command.text].get("kind")
    ]


def accounting_problems(commands: list[Command], entries: list[Entry], repo: Path = REPO) -> list[str]:
    """Commands without an entry, duplicate and unused entries, and bad entries."""
    problems = []
    known: dict[str, Entry] = {}
    for entry in entries:
        if entry.command in known:
            problems.append(f"docs/commands.toml lists `{entry.command}` twice")
        known[entry.command] = entry
        problems.extend(entry_problems(entry, repo))
    shown = {command.text for command in commands}
    kind_pages = pages_run_on_kind(repo)
    for entry in entries:
        pages = sorted({c.file for c in commands if c.text == entry.command})
        if entry.get("kind") and pages and not set(pages) & kind_pages:
            problems.append(
                f"docs/commands.toml entry `{entry.command}` is marked kind = true, but e2e/kind.sh "
                f"runs none of the pages showing it ({', '.join(pages)}; it runs: "
                f"{sorted(kind_pages) or 'no page'})"
            )
    for command in commands:
        if command.text not in known:
            problems.append(
                f"{command.where()}: the command `{command.text}` is not accounted for; "
                + HOW_TO_ACCOUNT
            )
    for entry in entries:
        if entry.command and entry.command not in shown:
            problems.append(
                f"docs/commands.toml: `{entry.command}` is shown in no page any more; remove "
                "the entry (or fix the page)"
            )
    return problems


# Links ------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!\\)\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced blocks, with inline code removed."""
    for number, line in prose_lines_raw(text):
        yield number, INLINE_CODE.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = INLINE_CODE.sub(lambda match: match.group(0).strip("`"), heading)
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: dict[str, int] = {}
    result = set()
    for _, line in prose_lines_raw(path.read_text(encoding="utf-8")):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = found.get(base, 0)
            result.add(base if count == 0 else f"{base}-{count}")
            found[base] = count + 1
    return result


def prose_lines_raw(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced blocks, as written."""
    in_fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        match = re.match(r"(`{3,}|~{3,})", stripped)
        if match:
            if in_fence is None:
                in_fence = match.group(1)[0] * len(match.group(1))
                continue
            if stripped.startswith(in_fence) and set(stripped) <= {in_fence[0]}:
                in_fence = None
                continue
        if in_fence is None:
            yield number, line


def link_problems(files: list[Path], repo: Path = REPO) -> list[str]:
    """Relative links whose file does not exist, or whose #anchor names no heading there."""
    problems = []
    for path in files:
        for number, line in prose_lines(path.read_text(encoding="utf-8")):
            for match in LINK.finditer(line):
                target = match.group(1)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                    continue  # https:, mailto:
                file_part, _, anchor = target.partition("#")
                where = f"{path.relative_to(repo)}:{number}"
                resolved = (path.parent / file_part).resolve() if file_part else path
                if not resolved.exists():
                    problems.append(f"{where}: link to {target} points to a file that does not exist")
                    continue
                if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                    problems.append(f"{where}: link to {target}: no heading with anchor #{anchor}")
    return problems


# Running ----------------------------------------------------------------------------------

def translate(command: str) -> str:
    """What the docs check runs for a command: `cargo run -p keyturn-operator --` becomes the
    binary ./scripts/test.sh built (no second cargo build inside the test run)."""
    return re.sub(r"\bcargo run -p (keyturn-operator|keyturn-apiserver) -- ", r"\1 ", command)


def scratch_dir(repo: Path = REPO) -> Path:
    """A temporary directory whose top-level entries link to the repository's, so that
    commands find examples/, crds/, helm/ ... and whatever they write stays out of the repo."""
    directory = Path(tempfile.mkdtemp(prefix="keyturn-docs-"))
    for child in repo.iterdir():
        if child.name not in {".git", "target"}:
            (directory / child.name).symlink_to(child)
    return directory


def environment(bin_dirs: list[Path], home: Path, kubeconfig: Path | None) -> dict[str, str]:
    env = {
        "PATH": os.pathsep.join([*map(str, bin_dirs), os.environ.get("PATH", "")]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "KUBECONFIG": str(kubeconfig) if kubeconfig else str(home / "no-kubeconfig"),
    }
    return env


def run(command: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", translate(command)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class StandIn:
    """The Kubernetes API stand-in (keyturn-apiserver) with the ManagedSecret CRD, on a free
    loopback port, writing a kubeconfig; stopped by its process id."""

    def __init__(self, binary: Path, directory: Path, repo: Path = REPO):
        self.kubeconfig = directory / "standin.kubeconfig"
        self.process = subprocess.Popen(
            [
                str(binary), "--port", "0",
                "--crd", str(repo / "crds" / "keyturn.dev_managedsecrets.yaml"),
                "--kubeconfig", str(self.kubeconfig),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not self.kubeconfig.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Kubernetes API stand-in did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cleanup(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str]) -> int:
    """`doccheck.py commands PAGE`: print the commands of PAGE marked kind = true, one per line
    (continuations already joined), for e2e/kind.sh to run in order."""
    if len(argv) != 2 or argv[0] != "commands":
        print("usage: doccheck.py commands PAGE", file=sys.stderr)
        return 2
    for command in kind_commands(argv[1]):
        print(command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
