"""The ``canaryctl`` command: joins one Typer app per command group."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from controller.cli import control as control_cli
from controller.cli import db as db_cli
from controller.cli import experiments as experiments_cli
from controller.cli import ingest as ingest_cli
from controller.cli import operator as operator_cli
from controller.cli import plan as plan_cli
from controller.cli import report as report_cli
from controller.cli import start as start_cli

app = typer.Typer(
    name="canaryctl",
    help="Canary releases of ML models with anytime-valid sequential tests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(start_cli.app)  # start
app.add_typer(experiments_cli.app)  # list, status
app.add_typer(control_cli.app)  # promote, rollback, pause, resume
app.add_typer(report_cli.app)  # report
app.add_typer(plan_cli.app)  # plan
app.add_typer(db_cli.app, name="db")
app.add_typer(ingest_cli.app, name="ingest")
app.add_typer(operator_cli.app, name="operator")
# Plugins (``canaryctl demo`` from canaryctl_demo): temporary until the CLI loads them lazily.
for _plugin in entry_points(group="canaryctl.commands"):
    app.add_typer(_plugin.load())


@app.command()
def version() -> None:
    """Print canaryctl's version."""
    from importlib.metadata import version as _version

    typer.echo(_version("canaryctl"))


def main() -> None:
    """Console-script entry point."""
    app()
