"""Helpers every command group shares: the database option, one-line errors, output formats.

Like every module of ``controller.cli``, this one imports only typer, the standard library
and light project modules at module level, so that ``canaryctl --help`` and shell completion
start fast; ``controller.storage`` (SQLAlchemy, Alembic) is imported inside the functions.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

try:  # the click typer runs on: its own copy in recent typer, else the click package
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click  # type: ignore[no-redef]

#: The environment variable of the database URL (``controller.storage.db.ENV_DATABASE_URL``,
#: repeated here so that declaring ``--database-url`` does not import SQLAlchemy; a test pins
#: that both agree).
ENV_DATABASE_URL = "CANARYCTL_DATABASE_URL"

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        envvar=ENV_DATABASE_URL,
        help="Postgres URL (postgresql://user@host:port/db); defaults to $CANARYCTL_DATABASE_URL.",
        show_envvar=True,
    ),
]


EXIT_ERROR = 1  # anything that went wrong, a refused request included
EXIT_USAGE = 2  # bad input: options, a missing file, an invalid spec (click uses 2 as well)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line ``error: …`` to stderr and exit with ``code`` (no traceback).

    Newlines and runs of spaces in ``message`` (a driver's or a parser's text) become one
    space, so the promise of one line holds whatever the message says.
    """
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def one_line(text: object) -> str:
    """``text`` on one line: runs of whitespace, newlines included, become one space."""
    return " ".join(str(text).split())


def database_error(exc: BaseException) -> str:
    """A driver error (``sqlalchemy.exc.DBAPIError`` or its ``orig``) as one line."""
    return f"cannot reach the database: {one_line(getattr(exc, 'orig', None) or exc)}"


class OneLineError(click.ClickException):
    """An error shown as one line, ``error: …``, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(one_line(message))
        self.exit_code = code

    def show(self, file: Any = None) -> None:
        typer.echo(f"error: {self.message}", err=True, file=file)


#: Set to show the traceback of an unexpected error instead of its one line.
ENV_DEBUG = "CANARYCTL_DEBUG"


#: How an option's value is named in help when the option does not name it (click's own
#: ``<str>``, ``<int range>`` read as noise): upper case, as kubectl and click used to.
_METAVARS = {"str": "TEXT", "int": "N", "int range": "N", "float": "NUMBER", "path": "PATH"}


def _name_metavars(command: Any) -> None:
    """Give every value-taking option of ``command`` (and of its subcommands) a plain metavar."""
    for sub in (getattr(command, "commands", None) or {}).values():
        _name_metavars(sub)
    for param in getattr(command, "params", ()):
        if param.metavar is None and not getattr(param, "is_flag", False):
            name = _METAVARS.get(param.type.name)
            if name is not None and param.param_type_name == "option":
                param.metavar = name


class Group(TyperGroup):
    """The root command group: every error of every command ends as one line on stderr.

    click prints a usage error as the usage, a hint and the message (four lines); this
    group turns it into one line with the same exit code (2). An exception no command
    expected becomes one line naming it, exit 1, unless ``$CANARYCTL_DEBUG`` is set.
    Asking for help (``no_args_is_help``) still prints the help.
    """

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _name_metavars(command)
        return command

    @staticmethod
    def _usage(exc: click.UsageError, fallback: str) -> OneLineError:
        path = exc.ctx.command_path if exc.ctx is not None else fallback
        see = f" (see '{path} --help')" if path else ""
        return OneLineError(f"{exc.format_message().rstrip('.')}{see}", EXIT_USAGE)

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except click.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise self._usage(exc, self.name or "") from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except click.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise self._usage(exc, ctx.command_path) from None
        except (click.ClickException, typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get(ENV_DEBUG):
                raise
            raise OneLineError(
                f"unexpected {type(exc).__name__}: {one_line(exc)} (a bug in canaryctl: please "
                f"report it; {ENV_DEBUG}=1 shows the traceback)"
            ) from exc


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


def output_option(allowed: Sequence[str], help: str) -> Any:
    """The ``-o``/``--output`` option of a read command, taking the views in ``allowed``.

    Its value is parsed into an :class:`output.Output` (a bad view or jsonpath template is
    a usage error, before anything is read).
    """
    from controller.cli import output

    def parse(value: str | output.Output) -> output.Output:
        if isinstance(value, output.Output):
            return value
        try:
            return output.parse_output(value, allowed)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return typer.Option(
        "-o", "--output", parser=parse, metavar="FORMAT", help=help, show_default=False
    )


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, sort_keys=True) + "\n")


def stop_signals(signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> Callable[[], bool]:
    """Note SIGTERM and SIGINT from now on; returns whether one has come.

    The handler only appends to a list. A handler that set a ``threading.Event`` would take
    the Event's lock, and Python runs handlers in the main thread between bytecodes: while
    that thread holds the same lock (inside ``Event.wait``, or inside an earlier handler's
    ``set`` when two SIGTERMs come in a row) it would wait for itself forever. So the main
    thread waits with ``sleep_until`` and sets any Event itself.
    """
    received: list[int] = []
    for sig in signals:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    return lambda: bool(received)


def sleep_until(done: Callable[[], bool], seconds: float, *, slice: float = 0.2) -> bool:
    """Sleep up to ``seconds`` (``math.inf``: until ``done()``) in slices of ``slice``,
    ending early once ``done()``; returns ``done()``."""
    deadline = time.monotonic() + seconds
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(slice, left))
    return done()
