"""Every ``canaryctl`` example in docs/reports.md parses, and the documented errors are real."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from controller.cli.main import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "reports.md"
BLOCKS = re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(), flags=re.S)
EXAMPLES = sorted(
    {
        line.removeprefix("$ ").split(" | ")[0].strip()
        for block in BLOCKS
        for line in block.splitlines()
        if line.removeprefix("$ ").strip().startswith("canaryctl ")
    }
)


def test_the_doc_has_examples_of_both_commands() -> None:
    assert {shlex.split(e)[1] for e in EXAMPLES} == {"report", "plan"}


@pytest.mark.parametrize("example", EXAMPLES)
def test_documented_example_parses(example: str) -> None:
    words = shlex.split(example)[1:]
    group = typer.main.get_command(app)
    with typer.Context(group) as parent:
        command = group.get_command(parent, words[0])  # type: ignore[attr-defined]
        assert command is not None, example
        command.make_context(words[0], words[1:], parent=parent)  # raises on a bad option


def test_the_documented_plan_table_is_what_plan_prints() -> None:
    from typer.testing import CliRunner

    shown = next(b for b in BLOCKS if b.startswith("$ canaryctl plan --rps 200 --weight 10"))
    command, *lines = shown.splitlines()
    result = CliRunner().invoke(app, shlex.split(command.removeprefix("$ "))[1:])
    assert result.stdout.splitlines() == lines
