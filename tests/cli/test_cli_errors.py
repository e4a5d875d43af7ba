"""Every command, given broken input, answers with one line on stderr and a documented code.

Broken input: a missing, empty or malformed kubeconfig, an API server or a database that
does not answer, an unknown experiment, a missing or malformed file, an unknown flag. For
each, the test asserts exactly one line on stderr starting with ``error:``, no traceback
anywhere, and an exit code that docs/cli.md's table lists (issue 12, point 4).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE, ROOT, Cluster
from typer.main import get_command
from typer.testing import CliRunner

from controller.cli.main import app

NO_DB = "postgresql://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1


def documented_exit_codes() -> set[int]:
    """The codes of docs/cli.md's exit-code table."""
    text = (ROOT / "docs" / "cli.md").read_text()
    section = text.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    return {int(m) for m in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}


def leaf_commands() -> list[list[str]]:
    """Every command of the CLI as its words (``["db", "upgrade"]``), plugins included."""
    out: list[list[str]] = []

    def walk(command: object, words: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            out.append(words)
            return
        for name, sub in sorted(subcommands.items()):
            walk(sub, [*words, name])

    walk(get_command(app), [])
    return out


def kubeconfigs(tmp: Path, server: str) -> dict[str, Path]:
    """Kubeconfigs that cannot be used, and one whose server does not answer."""
    unreachable = {
        "apiVersion": "v1",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
        "current-context": "x",
    }
    files = {
        "empty": "",
        "malformed": "apiVersion: v1\nclusters: [\n  - name: {\n",
        "a-list": "- 1\n- 2\n",
        "no-context": "apiVersion: v1\nclusters: []\n",
        "unreachable": yaml.safe_dump(unreachable),
    }
    out = {"missing": tmp / "no-such-kubeconfig"}
    for name, text in files.items():
        (tmp / name).write_text(text)
        out[name] = tmp / name
    return out


def check(args: list[str], code: int, says: str) -> None:
    result = CliRunner().invoke(app, args)
    lines = result.stderr.splitlines()
    where = f"canaryctl {' '.join(args)}: {result.stderr!r}"
    assert result.exit_code == code, where + repr(result.exception)
    assert code in documented_exit_codes(), f"exit code {code} is not in docs/cli.md"
    assert len(lines) == 1 and lines[0].startswith("error: "), where
    assert says in lines[0], where
    assert "Traceback" not in result.output, where


CLUSTER_COMMANDS = [
    ["list"],
    ["status", "exp-a"],
    ["status", "exp-a", "--watch"],
    ["promote", "exp-a"],
    ["rollback", "exp-a", "--reason", "r"],
    ["pause", "exp-a"],
    ["resume", "exp-a"],
    ["start", "-f", str(EXAMPLE)],
    ["operator", "run", "--database-url", NO_DB],
]


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("missing", "no-such-kubeconfig: no such file"),
        ("empty", "the file is empty"),
        ("malformed", "not valid YAML at line 3, column 3"),
        ("a-list", "not a kubeconfig (expected a YAML mapping)"),
        ("no-context", "current-context"),
    ],
)
@pytest.mark.parametrize("command", CLUSTER_COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_a_kubeconfig_that_cannot_be_used(
    tmp_path: Path, command: list[str], kind: str, says: str
) -> None:
    path = kubeconfigs(tmp_path, "https://127.0.0.1:1")[kind]
    check([*command, "--kubeconfig", str(path)], 1, says)


@pytest.mark.parametrize("command", CLUSTER_COMMANDS[:-1], ids=lambda c: "-".join(c[:2]))
def test_an_api_server_that_does_not_answer(tmp_path: Path, command: list[str]) -> None:
    path = kubeconfigs(tmp_path, "http://127.0.0.1:1")["unreachable"]
    check([*command, "--kubeconfig", str(path)], 1, "cannot reach the Kubernetes API")


@pytest.mark.parametrize("command", CLUSTER_COMMANDS[1:7], ids=lambda c: "-".join(c[:2]))
def test_an_unknown_experiment(kubeconfig: Path, command: list[str]) -> None:
    check([*command, "--kubeconfig", str(kubeconfig)], 1, '"exp-a" not found')


def test_an_experiment_that_exists_already(kubeconfig: Path, cluster: Cluster) -> None:
    assert cluster.writes() == []
    CliRunner().invoke(app, ["start", "-f", str(EXAMPLE), "--kubeconfig", str(kubeconfig)])
    check(["start", "-f", str(EXAMPLE), "--kubeconfig", str(kubeconfig)], 1, "already exists")


@pytest.mark.parametrize(
    "command",
    [
        ["db", "upgrade"],
        ["db", "check"],
        ["db", "retention", "--keep", "30d"],
        ["report", "ml/exp-a"],
        ["ingest", "load", str(ROOT / "README.md"), "--format", "csv"],
    ],
    ids=lambda c: "-".join(c[:2]),
)
def test_a_database_that_does_not_answer(command: list[str]) -> None:
    check([*command, "--database-url", NO_DB], 1, "cannot reach the database")


@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["report", "ml/exp-a"], ["ingest", "load", "x.csv"]],
    ids=lambda c: "-".join(c[:2]),
)
def test_a_database_url_that_is_not_postgres(command: list[str]) -> None:
    check([*command, "--database-url", "mysql://x@y/z"], 1, "postgresql://")


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["start", "-f", "no-such.yaml"], 2, "no-such.yaml: no such file"),
        (["start", "-f", "{bad}"], 2, "not valid YAML"),
        (["start", "-f", "{empty}"], 2, "expected one Experiment object, found 0"),
        (["start", "-f", "{list}"], 2, "expected one Experiment object"),
        (["ingest", "load", "no-such.csv", "--database-url", NO_DB], 1, "no such file"),
    ],
)
def test_a_file_that_cannot_be_used(tmp_path: Path, args: list[str], code: int, says: str) -> None:
    (tmp_path / "bad.yaml").write_text("spec: [\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    named = {"{bad}": "bad.yaml", "{empty}": "empty.yaml", "{list}": "list.yaml"}
    args = [str(tmp_path / named[a]) if a in named else a for a in args]
    check(args, code, says)


@pytest.mark.parametrize("words", leaf_commands(), ids=lambda w: "-".join(w) or "root")
def test_an_unknown_flag(words: list[str]) -> None:
    check([*words, "--no-such-flag"], 2, "No such option: --no-such-flag")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["status"], "Missing argument 'NAME'"),
        (["status", "x", "-o", "tabular"], "'tabular' is not one of table, wide, name"),
        (["status", "x", "--wait-for", "Gone"], "'Gone' is not one of"),
        (["status", "x", "--timeout", "soon"], "'soon' is not a duration"),
        (["list", "-o", "jsonpath="], "jsonpath needs a template"),
        (["report", "x", "-o", "pdf"], "'pdf' is not one of html, json, csv"),
        (["db", "retention"], "Missing option '--keep'"),
        (["db", "retention", "--keep", "soon"], "give whole days"),
        (["plan", "--rps", "x"], "'x' is not a valid float"),
        (["rollback", "x"], "Missing option '--reason'"),
        (["start", "--champion", "a"], "give -f FILE, or at least --champion, --challenger"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        # it printed YAML, silently, for a table
        (["start", "--dry-run", "-o", "table"], "'table' is not one of yaml, json"),
    ],
)
def test_bad_values_and_missing_arguments(args: list[str], says: str) -> None:
    check(args, 2, says)
