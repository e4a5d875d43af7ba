"""The ``canaryctl`` command: joins one Typer app per command group."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="canaryctl",
    help="Canary releases of ML models with anytime-valid sequential tests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Canary releases of ML models with anytime-valid sequential tests."""


@app.command()
def version() -> None:
    """Print canaryctl's version."""
    from importlib.metadata import version as _version

    typer.echo(_version("canaryctl"))


def main() -> None:
    """Console-script entry point."""
    app()
