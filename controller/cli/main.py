"""The ``canaryctl`` command: joins one Typer app per command group, plus plugin commands.

Start-up is part of the interface: ``canaryctl --help`` and each TAB of shell completion
import this module and every command group, so those modules import only typer, the
standard library and light project modules at module level (ruff's
``banned-module-level-imports`` enforces it; ``bench/cli_startup.py`` measures it). Heavy
modules are imported inside the commands that use them.

Commands that live outside the product (``canaryctl demo``) are plugins: any installed
distribution may add a Typer app to the entry-point group ``canaryctl.commands``. A plugin
that cannot be imported does not break the rest of the CLI: its command stays listed and
says in one line why it cannot run.
"""

from __future__ import annotations

from importlib import metadata

import typer

from controller.cli import control as control_cli
from controller.cli import db as db_cli
from controller.cli import experiments as experiments_cli
from controller.cli import ingest as ingest_cli
from controller.cli import operator as operator_cli
from controller.cli import plan as plan_cli
from controller.cli import report as report_cli
from controller.cli import start as start_cli
from controller.cli.common import Group, fail

PLUGIN_GROUP = "canaryctl.commands"

app = typer.Typer(
    name="canaryctl",
    cls=Group,
    help="Canary releases of ML models with anytime-valid sequential tests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: rich's formatting alone costs ~0.1 s a call
)
app.add_typer(start_cli.app)  # start
app.add_typer(experiments_cli.app)  # list, status
app.add_typer(control_cli.app)  # promote, rollback, pause, resume
app.add_typer(report_cli.app)  # report
app.add_typer(plan_cli.app)  # plan
app.add_typer(db_cli.app, name="db")
app.add_typer(ingest_cli.app, name="ingest")
app.add_typer(operator_cli.app, name="operator")


@app.command()
def version() -> None:
    """Print canaryctl's version."""
    typer.echo(metadata.version("canaryctl"))


def _unavailable(name: str, error: Exception) -> typer.Typer:
    """A stand-in for a plugin that failed to load: listed, and failing with one line."""
    stub = typer.Typer()
    why = f"{type(error).__name__}: {error}"

    @stub.command(
        name=name,
        help=f"(unavailable: {why})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def command() -> None:
        fail(f"the {name} command could not be loaded ({why})")

    return stub


def add_plugins(target: typer.Typer, group: str = PLUGIN_GROUP) -> list[str]:
    """Add the Typer app of every entry point in ``group`` to ``target``; their names.

    The plugin's app is added as the demo was: its commands join the top level (a plugin
    app created with ``typer.Typer(name=...)`` becomes a group of that name instead).
    """
    names = []
    for entry in metadata.entry_points(group=group):
        try:
            plugin = entry.load()
            if not isinstance(plugin, typer.Typer):
                raise TypeError(f"{entry.value} is not a typer.Typer")
        except Exception as exc:  # a broken plugin must not take the CLI down
            plugin = _unavailable(entry.name, exc)
        target.add_typer(plugin)
        names.append(entry.name)
    return names


add_plugins(app)


def main() -> None:
    """Console-script entry point."""
    app()
