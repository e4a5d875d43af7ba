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
