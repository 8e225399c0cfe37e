"""Unit tests of the docs check itself: each rule catches what it is for, on small made-up
repositories, so that a green docs check means something."""

from __future__ import annotations

from pathlib import Path

import doccheck

PAGE = """# A page

```sh
kubectl get ms -A            # every namespace
helm install keyturn helm/keyturn \\
  -n keyturn-system --create-namespace
echo '# not a comment' "a # b"
```

```console
$ keyturn-operator audit verify --store sqlite:audit.db
audit log valid: 3 records verified
```

1. a list item:
   ```bash
   kubectl annotate ms orders-db a=b --overwrite
   ```

```yaml
kind: NotAShellBlock
```
"""


def make_repo(tmp_path: Path, page: str = PAGE, manifest: str = "") -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Readme\n", encoding="utf-8")
    (tmp_path / "docs" / "page.md").write_text(page, encoding="utf-8")
    (tmp_path / "docs" / "commands.toml").write_text(manifest, encoding="utf-8")
    (tmp_path / "e2e").mkdir()
    (tmp_path / "e2e" / "kind.sh").write_text("kind create cluster --name x\n", encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "a.rs").write_text("#[test]\nfn it_works() {}\n", encoding="utf-8")
    return tmp_path


def problems(repo: Path) -> list[str]:
    return doccheck.accounting_problems(
        doccheck.all_commands(repo), doccheck.load_manifest(repo / "docs" / "commands.toml"), repo
    )


def test_extracts_commands_joins_continuations_and_drops_comments_and_output(tmp_path):
    repo = make_repo(tmp_path)
    texts = [command.text for command in doccheck.all_commands(repo)]
    assert texts == [
        "kubectl get ms -A",
        "helm install keyturn helm/keyturn -n keyturn-system --create-namespace",
        "echo '# not a comment' \"a # b\"",
        "keyturn-operator audit verify --store sqlite:audit.db",
        "kubectl annotate ms orders-db a=b --overwrite",
    ]
    lines = [command.line for command in doccheck.all_commands(repo)]
    assert lines == [4, 5, 7, 11, 17]


ALL_ACCOUNTED = """
[[command]]
command = "kubectl get ms -A"
check = "standin"

[[command]]
command = "helm install keyturn helm/keyturn -n keyturn-system --create-namespace"
check = "external"
needs = "cluster"
reason = "no cluster here"

[[command]]
command = "echo '# not a comment' \\"a # b\\""
check = "run"

[[command]]
command = "keyturn-operator audit verify --store sqlite:audit.db"
check = "test"
test = "tests/a.rs::it_works"

[[command]]
command = "kubectl annotate ms orders-db a=b --overwrite"
check = "script"
script = "e2e/kind.sh"
contains = "kind create"
"""


def test_a_fully_accounted_page_passes(tmp_path):
    assert problems(make_repo(tmp_path, manifest=ALL_ACCOUNTED)) == []


def test_a_new_command_without_an_entry_fails_and_says_how_to_account_for_it(tmp_path):
    page = PAGE.replace("kubectl get ms -A", "kubectl get ms -A\nkubectl delete ms orders-db")
    found = problems(make_repo(tmp_path, page=page, manifest=ALL_ACCOUNTED))
    assert len(found) == 1, found
    assert "docs/page.md:5: the command `kubectl delete ms orders-db` is not accounted for" in found[0]
    assert "docs/commands.toml" in found[0] and 'check = "run"' in found[0]


def test_a_changed_flag_is_a_new_command(tmp_path):
    page = PAGE.replace("kubectl get ms -A", "kubectl get ms --all-namespaces")
    found = problems(make_repo(tmp_path, page=page, manifest=ALL_ACCOUNTED))
    assert any("`kubectl get ms --all-namespaces` is not accounted for" in p for p in found), found
    assert any("`kubectl get ms -A` is shown in no page any more" in p for p in found), found


def test_a_test_that_does_not_exist_fails(tmp_path):
    manifest = ALL_ACCOUNTED.replace("tests/a.rs::it_works", "tests/a.rs::it_was_renamed")
    found = problems(make_repo(tmp_path, manifest=manifest))
    assert found == [
        "docs/commands.toml entry `keyturn-operator audit verify --store sqlite:audit.db`: "
        "tests/a.rs does not define it_was_renamed (test = 'tests/a.rs::it_was_renamed')"
    ]


def test_external_needs_a_reason(tmp_path):
    manifest = ALL_ACCOUNTED.replace('reason = "no cluster here"', "")
    found = problems(make_repo(tmp_path, manifest=manifest))
    assert len(found) == 1 and "needs a reason" in found[0], found


def test_kind_commands_must_be_on_a_page_kind_sh_runs(tmp_path):
    manifest = ALL_ACCOUNTED.replace('reason = "no cluster here"', 'reason = "r"\nkind = true')
    found = problems(make_repo(tmp_path, manifest=manifest))
    assert len(found) == 1 and "e2e/kind.sh runs none of the pages showing it (docs/page.md" in found[0], found

    repo = tmp_path
    (repo / "e2e" / "kind.sh").write_text(
        'kind create cluster\npython docs/tests/doccheck.py commands docs/page.md\n', encoding="utf-8"
    )
    assert problems(repo) == []
    assert doccheck.kind_commands("docs/page.md", repo) == [
        "helm install keyturn helm/keyturn -n keyturn-system --create-namespace"
    ]


def test_a_script_must_contain_what_the_entry_says(tmp_path):
    manifest = ALL_ACCOUNTED.replace('contains = "kind create"', 'contains = "helm install"')
    found = problems(make_repo(tmp_path, manifest=manifest))
    assert found == [
        "docs/commands.toml entry `kubectl annotate ms orders-db a=b --overwrite`: "
        "e2e/kind.sh does not contain 'helm install'"
    ]


def test_an_unknown_check_fails(tmp_path):
    manifest = ALL_ACCOUNTED.replace('check = "standin"', 'check = "trust-me"')
    found = problems(make_repo(tmp_path, manifest=manifest))
    assert len(found) == 1 and "check must be one of" in found[0], found


def test_links_to_missing_files_and_headings_fail(tmp_path):
    repo = make_repo(tmp_path)
    (repo / "docs" / "other.md").write_text("# Other\n\n## The part `x`\n", encoding="utf-8")
    (repo / "docs" / "links.md").write_text(
        "[ok](other.md) [ok](other.md#the-part-x) [ok](https://example.com) [self](#links)\n"
        "[missing](gone.md) [bad anchor](other.md#nope) `[in code](gone.md)`\n\n# Links\n"
        "```md\n[in a block](gone.md)\n```\n",
        encoding="utf-8",
    )
    found = doccheck.link_problems([repo / "docs" / "links.md"], repo)
    assert found == [
        "docs/links.md:2: link to gone.md points to a file that does not exist",
        "docs/links.md:2: link to other.md#nope: no heading with anchor #nope",
    ]


def test_translate_runs_the_built_binary_instead_of_cargo():
    assert doccheck.translate("cargo run -p keyturn-operator -- crd") == "keyturn-operator crd"
    assert doccheck.translate("kubectl keyturn status") == "kubectl keyturn status"


def test_slug_follows_github():
    assert doccheck.slug("What the Secret permissions mean") == "what-the-secret-permissions-mean"
    assert doccheck.slug("`kubectl get managedsecrets` columns") == "kubectl-get-managedsecrets-columns"
    assert doccheck.slug("Checkpoints in the cluster") == "checkpoints-in-the-cluster"
    assert doccheck.slug("Stores and their append-only guarantees") == "stores-and-their-append-only-guarantees"
