"""Start-up: what `canaryctl` imports to answer, plugins from entry points, `ingest load`.

The time itself is measured by ``bench/cli_startup.py``, never asserted here; these tests
pin the cause instead: which modules a fresh process has imported once it has answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from conftest import Cluster, experiment
from typer.testing import CliRunner

from canaryctl_demo.kube import emulator
from controller.cli import common, main
from controller.cli.main import app
from controller.storage import db

# Modules none of the light paths may import (the demo plugin's own module is light: it
# holds the command's options and help, and imports the demo world when run).
HEAVY = (
    "alembic",
    "analysis",
    "canaryctl_demo.demo",
    "canaryctl_demo.kube",
    "canaryctl_demo.traffic",
    "canaryctl_demo.world",
    "controller.experiment.validation",
    "controller.ingest",
    "controller.operate",
    "controller.reports",
    "controller.storage",
    "httpx",
    "jsonschema",
    "kmock",
    "kopf",
    "numpy",
    "pandas",
    "psycopg",
    "pyarrow",
    "rich",
    "scipy",
    "sqlalchemy",
    "starlette",
    "statsmodels",
    "uvicorn",
    "yaml",
)
# Runs canaryctl in a fresh interpreter, then prints the top-level packages it has imported.
PROBE = """
import json, sys
from controller.cli.main import app
try:
    app(prog_name="canaryctl")
except SystemExit:
    pass
names = set(sys.modules)
print(json.dumps(sorted(names)), file=sys.stderr)
"""


def imported_by(args: list[str], env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """Run ``canaryctl ARGS`` in a new process: its stdout and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = done.stderr.strip().splitlines()[-1]
    return done.stdout, set(json.loads(last))


def heavy(modules: set[str], allowed: tuple[str, ...] = ()) -> list[str]:
    """The HEAVY packages (or their submodules) among ``modules``, except ``allowed``."""
    return sorted(
        name
        for name in HEAVY
        if name not in allowed and any(m == name or m.startswith(name + ".") for m in modules)
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["version"],
        ["list", "--help"],
        ["status", "--help"],
        ["db", "--help"],
        ["sandbox", "--help"],
    ],
    ids=" ".join,
)
def test_help_and_version_import_nothing_heavy(args: list[str]) -> None:
    out, modules = imported_by(args)
    assert out.strip(), "no output"
    assert heavy(modules) == []
    assert "kubernetes" not in modules


def test_completion_lists_names_without_the_kubernetes_client(
    served: emulator.Served, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create(experiment("ranker-v42"))
    cluster.create(experiment("other"))
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump(served.kubeconfig("ml")))
    env = {
        "KUBECONFIG": str(config),
        "_CANARYCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "canaryctl status ran",
        "COMP_CWORD": "2",
    }
    out, modules = imported_by([], env)
    assert out.split() == ["ranker-v42"]
    assert heavy(modules, allowed=("yaml",)) == []  # the kubeconfig is YAML
    assert "kubernetes" not in modules  # one GET through the standard library


def test_the_database_variable_is_the_stores() -> None:
    assert common.ENV_DATABASE_URL == db.ENV_DATABASE_URL


def write_plugins(root: Path, entries: dict[str, str]) -> None:
    """An installed distribution (a dist-info on ``root``) declaring ``entries`` as plugins."""
    info = root / "canaryctl_test_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: canaryctl-test-plugins\n")
    lines = ["[canaryctl.test-commands]", *(f"{k} = {v}" for k, v in entries.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (root / "canaryctl_test_plugin.py").write_text(
        "import typer\n"
        "app = typer.Typer()\n\n"
        "@app.command()\n"
        "def hello() -> None:\n"
        '    """Say hello."""\n'
        '    typer.echo("hello from a plugin")\n'
    )


def test_plugins_join_the_cli_and_a_broken_one_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_plugins(
        tmp_path,
        {
            "hello": "canaryctl_test_plugin:app",
            "broken": "canaryctl_no_such_module:app",
            "wrong": "canaryctl_test_plugin:hello",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cli = typer.Typer(no_args_is_help=True)

    @cli.command()
    def builtin() -> None:
        """A command of the product."""
        typer.echo("built in")

    assert main.add_plugins(cli, group="canaryctl.test-commands") == ["hello", "broken", "wrong"]
    runner = CliRunner()
    assert runner.invoke(cli, ["builtin"]).stdout == "built in\n"
    assert runner.invoke(cli, ["hello"]).stdout == "hello from a plugin\n"
    listed = runner.invoke(cli, ["--help"]).stdout
    assert "broken" in listed and "(unavailable: ModuleNotFoundError" in listed
    broken = runner.invoke(cli, ["broken", "--scenario", "all"])
    assert (broken.exit_code, broken.stderr) == (
        1,
        "error: the broken command could not be loaded (ModuleNotFoundError: "
        "No module named 'canaryctl_no_such_module')\n",
    )
    wrong = runner.invoke(cli, ["wrong"])
    assert wrong.exit_code == 1
    assert "canaryctl_test_plugin:hello is not a typer.Typer" in wrong.stderr


def test_the_demo_is_a_plugin() -> None:
    listed = CliRunner().invoke(app, ["--help"]).stdout
    assert "demo" in listed and "unavailable" not in listed


def test_the_sandbox_is_a_plugin_group() -> None:
    listed = CliRunner().invoke(app, ["sandbox", "--help"]).stdout
    assert all(f"  {command} " in listed for command in ("up", "status", "down"))


def test_ingest_load_and_serve_are_subcommands() -> None:
    result = CliRunner().invoke(app, ["ingest", "--help"])
    assert result.exit_code == 0
    assert "load" in result.stdout and "serve" in result.stdout
    old = CliRunner().invoke(app, ["ingest", "outcomes.csv"])
    assert old.exit_code == 2 and "No such command 'outcomes.csv'" in old.stderr


def test_ingest_serve_without_the_serve_extra_says_in_one_line_how_to_get_it(
    tmp_path: Path,
) -> None:
    # A package of the same name first on the path fails to import, as a missing one would.
    shadow = tmp_path / "uvicorn"
    shadow.mkdir()
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'uvicorn'\", name='uvicorn')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "CANARYCTL_INGEST_TOKEN": "t"}
    canaryctl = str(Path(sys.executable).with_name("canaryctl"))
    done = subprocess.run(
        [canaryctl, "ingest", "serve", "--database-url", "postgresql://nobody@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert (done.returncode, done.stdout) == (common.EXIT_USAGE, "")
    assert done.stderr == (
        "error: canaryctl ingest serve needs the serve extra (uvicorn is not installed): "
        "pip install 'canaryctl[serve]'\n"
    )
