"""Every ``canaryctl`` example in docs/cli.md parses: the documented options exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from controller.cli.main import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
BLOCKS = re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(), flags=re.S)
EXAMPLES = [
    line.removeprefix("$ ").strip()
    for block in BLOCKS
    for line in block.splitlines()
    if line.removeprefix("$ ").strip().startswith("canaryctl ")
]


def test_the_doc_has_examples_of_every_command() -> None:
    used = {shlex.split(e)[1] for e in EXAMPLES}
    assert used >= {"start", "list", "status", "promote", "rollback", "pause", "resume"}


@pytest.mark.parametrize("example", EXAMPLES)
def test_documented_example_parses(example: str) -> None:
    words = shlex.split(example.split(" < ")[0])[1:]
    group = typer.main.get_command(app)
    with typer.Context(group) as parent:
        command = group.get_command(parent, words[0])  # type: ignore[attr-defined]
        assert command is not None, example
        command.make_context(words[0], words[1:], parent=parent)  # raises on a bad option


CLUSTER = {"--kubeconfig", "--context", "-n", "--namespace"}  # "[cluster]" in the reference


def _reference() -> dict[str, str]:
    """The reference table: each command's words -> the rest of its row."""
    section = DOC.read_text().split("\n## Reference\n", 1)[1]
    rows = re.findall(r"^\| `canaryctl ([a-z ]+?)(?: [A-Z]+)?` \|(.*)$", section, flags=re.M)
    return {words: rest for words, rest in rows}


def _leaves() -> list[tuple[str, typer.core.TyperCommand]]:
    out = []

    def walk(command: object, words: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            out.append((" ".join(words), command))
            return
        for name, sub in subcommands.items():
            walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return out  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("words", "command"), _leaves(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_the_reference_names_every_command_option_and_exit_code(
    words: str, command: typer.core.TyperCommand
) -> None:
    reference = _reference()
    assert words in reference, f"docs/cli.md's reference has no row for canaryctl {words}"
    row = reference[words]
    names = set(re.findall(r"`(-{1,2}[a-zA-Z][a-z-]*)", row))
    if "[cluster]" in row:
        names |= CLUSTER
    for param in command.params:
        if param.param_type_name == "argument" or param.hidden or param.name == "help":
            continue
        opts = [*param.opts, *param.secondary_opts]
        missing = [o for o in opts if o not in names]
        assert not missing, f"canaryctl {words}: {missing} not in docs/cli.md's reference"
    codes = {int(c) for c in re.findall(r"\b(\d+)\b", row.rsplit("|", 2)[-2])}
    documented = {int(c) for c in re.findall(r"^\| (\d+) \|", DOC.read_text(), flags=re.M)}
    assert codes and codes <= documented, f"canaryctl {words}: exit codes {codes}"


def test_the_reference_names_no_command_that_does_not_exist() -> None:
    assert set(_reference()) == {words for words, _ in _leaves()}


@pytest.mark.parametrize(
    ("words", "command"), _leaves(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_help_names_values_plainly(words: str, command: typer.core.TyperCommand) -> None:
    """No click-style ``<str>``/``<bool>`` metavars, no ``--x / --no-x`` pair for a plain flag."""
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*words.split(), "--help"])
    assert result.exit_code == 0, result.output
    options = result.stdout.split("Options:", 1)[-1]
    assert not re.search(r"^\s+-[^\n]*<(str|int|float|bool|int range|path)>", options, re.M)
    pairs = re.findall(r"--([a-z-]+) / --no-\1", options)
    assert set(pairs) <= {"leader-election"}, (
        pairs
    )  # on by default: the pair says how to turn it off


SHORT_FLAGS = {"-w": "--watch", "-f": "--filename", "-o": "--output", "-n": "--namespace"}


@pytest.mark.parametrize(
    ("words", "command"), _leaves(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_a_short_flag_means_the_same_everywhere(
    words: str, command: typer.core.TyperCommand
) -> None:
    """kubectl's meanings: -w is --watch (not operator run's --watch-namespace), -f a file
    (not report's --format), -o the output, -n the namespace."""
    for param in command.params:
        for short, long in SHORT_FLAGS.items():
            if short in param.opts:
                assert long in param.opts, f"canaryctl {words}: {short} is {param.opts}"
