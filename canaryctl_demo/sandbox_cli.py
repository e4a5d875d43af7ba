"""``canaryctl sandbox up|status|down``: a world to try every command on, without a cluster.

A plugin like ``canaryctl demo``: ``pyproject.toml`` registers :data:`app` (a Typer named
``sandbox``, so a group) under the ``canaryctl.commands`` entry points. ``up``
starts ``canaryctl_demo.sandbox`` as a background process of its own (its own session,
its output in ``sandbox.log``), waits until it has written its state file, and prints the
two ``export`` lines on stdout (so ``eval "$(canaryctl sandbox up)"`` works); everything
else goes to stderr. ``down`` stops that process (SIGTERM, then SIGKILL after a grace
period, and the embedded Postgres if it outlived it) and removes the sandbox directory.
Imports only the standard library and typer at load time, so ``canaryctl --help`` stays
fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from canaryctl_demo.sandbox import State

app = typer.Typer(
    name="sandbox",
    help="A sandbox to try canaryctl: the API emulator, Postgres, the operator and traffic "
    "in the background.",
    no_args_is_help=True,
)

ENV_DIR = "CANARYCTL_SANDBOX_DIR"
EXIT_NOT_RUNNING = 3  # `sandbox status`: nothing is running
CHALLENGERS = "good, aa, revenue-drop, latency-regression, error-spike or srm"

Directory = Annotated[
    Path,
    typer.Option(
        "--dir",
        envvar=ENV_DIR,
        help="Where the sandbox keeps its files (kubeconfig, example, Postgres data, log).",
    ),
]
DEFAULT_DIR = Path.home() / ".canaryctl" / "sandbox"


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (and is not a zombie of ours)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our finished child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exports(state: State) -> str:
    import shlex

    return (
        f"export KUBECONFIG={shlex.quote(state.kubeconfig)}\n"
        f"export CANARYCTL_DATABASE_URL={shlex.quote(state.database_url)}\n"
    )


@app.command()
def up(
    directory: Directory = DEFAULT_DIR,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="Postgres to use (its data is kept by down); default: an embedded Postgres "
            "in the sandbox directory.",
        ),
    ] = None,
    speed: Annotated[
        float,
        typer.Option(
            min=1.0,
            metavar="X",
            help="Simulated minutes per real minute; 1 keeps real time (faster: the ages "
            "status shows run behind the sandbox's clock).",
        ),
    ] = 1.0,
    challenger: Annotated[
        str, typer.Option(metavar="SCENARIO", help=f"How the challenger behaves: {CHALLENGERS}.")
    ] = "good",
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds to wait for it to come up.")
    ] = 180.0,
) -> None:
    """Start the sandbox in the background and print the two lines to export.

    `eval "$(canaryctl sandbox up)"`

    Exit codes: 0 up (or already up: the exports are printed again), 1 it did not come up (the end of its log is printed), 2 bad input.
    """
    from canaryctl_demo import sandbox

    if challenger not in CHALLENGERS.replace(" or ", ", ").split(", "):
        _fail(f"--challenger: {challenger!r} is not one of {CHALLENGERS}", 2)
    directory = directory.expanduser().resolve()
    state = sandbox.State.read(directory)
    if state is not None and _alive(state.pid):
        typer.echo(f"the sandbox is already up (pid {state.pid}, {directory})", err=True)
        typer.echo(_exports(state), nl=False)
        return
    directory.mkdir(parents=True, exist_ok=True)
    (directory / sandbox.STATE).unlink(missing_ok=True)
    command = [sys.executable, "-m", "canaryctl_demo.sandbox", str(directory)]
    command += ["--speed", str(speed), "--challenger", challenger]
    if database_url:
        command += ["--database-url", database_url]
    with open(directory / sandbox.LOG, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by the shell's Ctrl-C or hang-up
        )
    deadline = time.monotonic() + timeout
    while (state := sandbox.State.read(directory)) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            tail = (directory / sandbox.LOG).read_text(errors="replace").strip().splitlines()
            last = tail[-1] if tail else "no output"
            _fail(f"the sandbox did not come up (see {directory / sandbox.LOG}): {last}")
        time.sleep(0.2)
    where = state.embedded_postgres or "the given database"
    typer.echo(
        f"sandbox up (pid {state.pid}): Kubernetes API emulator at {state.api_url}, Postgres "
        f"in {where}, the operator, and traffic ({state.challenger} challenger) at "
        f"{state.speed:g}× real time",
        err=True,
    )
    typer.echo(_exports(state), nl=False)
    typer.echo(
        f"then: canaryctl start -f {state.example} && canaryctl status ranker-v2 --watch",
        err=True,
    )


@app.command()
def status(directory: Directory = DEFAULT_DIR) -> None:
    """Say whether the sandbox runs, where, and what to export.

    `canaryctl sandbox status`

    Exit codes: 0 running, 3 not running.
    """
    from canaryctl_demo import sandbox

    directory = directory.expanduser().resolve()
    state = sandbox.State.read(directory)
    if state is None or not _alive(state.pid):
        typer.echo(f"no sandbox running in {directory}", err=True)
        raise typer.Exit(EXIT_NOT_RUNNING)
    lines = [
        f"running:     pid {state.pid} since {state.started_at}",
        f"api:         {state.api_url} (namespace {state.namespace})",
        f"database:    {state.database_url}",
        f"kubeconfig:  {state.kubeconfig}",
        f"example:     {state.example}",
        f"traffic:     {state.challenger} challenger, {state.speed:g}× real time",
    ]
    typer.echo("\n".join(lines))


@app.command()
def down(
    directory: Directory = DEFAULT_DIR,
    grace: Annotated[float, typer.Option(help="Seconds to wait before killing it.")] = 30.0,
) -> None:
    """Stop the sandbox and remove everything it made (processes, Postgres data, files).

    `canaryctl sandbox down`

    Exit codes: 0 removed (or nothing to remove), 1 a process would not stop.
    """
    import shutil

    from canaryctl_demo import sandbox

    directory = directory.expanduser().resolve()
    state = sandbox.State.read(directory)
    if state is not None:
        _stop(state.pid, grace)
    postgres = _postmaster_pid(directory / sandbox.PG_DIR)
    if postgres is not None:  # it outlived the sandbox (killed): stop it as pg_ctl would
        _stop(postgres, grace)
    if not directory.exists():
        typer.echo(f"no sandbox in {directory}", err=True)
        return
    shutil.rmtree(directory)
    typer.echo(f"sandbox removed ({directory})", err=True)


def _stop(pid: int, grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    if _alive(pid):
        _fail(f"process {pid} would not stop")


def _postmaster_pid(data: Path) -> int | None:
    """The embedded Postgres server's pid while it runs (postmaster.pid's first line)."""
    try:
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None
