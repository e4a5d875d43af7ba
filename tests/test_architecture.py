"""Architecture contracts run as part of the test suite, so a violation fails the README's test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "analysis is pure statistics KEPT" in result.stdout


def _contract_names() -> list[str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]]


def test_every_layer_of_the_architecture_map_is_a_contract() -> None:
    """docs/architecture.md lists the contracts by name; pyproject.toml holds the same list."""
    names = _contract_names()
    assert len(names) >= 8
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert [n for n in names if f"**{n}**" not in doc] == []
