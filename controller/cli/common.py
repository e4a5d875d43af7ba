"""Helpers every command group shares: the database option, one-line errors, output formats.

Like every module of ``controller.cli``, this one imports only typer, the standard library
and light project modules at module level, so that ``canaryctl --help`` and shell completion
start fast; ``controller.storage`` (SQLAlchemy, Alembic) is imported inside the functions.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer

#: The environment variable of the database URL (``controller.storage.db.ENV_DATABASE_URL``,
#: repeated here so that declaring ``--database-url`` does not import SQLAlchemy; a test pins
#: that both agree).
ENV_DATABASE_URL = "CANARYCTL_DATABASE_URL"

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar=ENV_DATABASE_URL,
        help="Postgres URL (postgresql://user@host:port/db); defaults to $CANARYCTL_DATABASE_URL.",
        show_envvar=True,
    ),
]


EXIT_ERROR = 1  # anything that went wrong, a refused request included
EXIT_USAGE = 2  # bad input: options, a missing file, an invalid spec (click uses 2 as well)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line ``error: …`` to stderr and exit with ``code`` (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def require_url(url: str | None) -> str:
    """The configured database URL (``--database-url`` or the environment), else exit with one line."""
    from controller.storage import db

    found = db.configured_url(url)
    if not found:
        fail(f"no database configured: pass --database-url or set {ENV_DATABASE_URL}")
    try:
        db.sqlalchemy_url(found)
    except db.DatabaseConfigError as exc:
        fail(str(exc))
    return found


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, sort_keys=True) + "\n")
