"""``canaryctl list`` and ``canaryctl status``: read Experiments, watch them, wait for a phase.

``status --wait-for`` ends with an exit code a CI pipeline can branch on (``EXIT_*``, listed
in docs/cli.md). Rendering is in ``output``, the API in ``kube``; this module only reads and
waits and never writes to the cluster (``start`` creates, ``control`` writes requests).
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any

import typer

from controller.cli import kube, output
from controller.cli.common import EXIT_ERROR, EXIT_USAGE, fail
from controller.clock import SYSTEM_CLOCK

app = typer.Typer()

EXIT_REACHED = 0
EXIT_OTHER_END = 3
EXIT_TIMEOUT = 4
__all__ = ["EXIT_ERROR", "EXIT_OTHER_END", "EXIT_REACHED", "EXIT_TIMEOUT", "EXIT_USAGE", "app"]


class WaitTarget(StrEnum):
    """Phases ``status --wait-for`` can wait for."""

    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    AWAITING_PROMOTION = "AwaitingPromotion"


Output = Annotated[
    output.Format, typer.Option("-o", "--output", help="Output format: table, json or yaml.")
]
Name = Annotated[
    str,
    typer.Argument(help="Name of the Experiment.", autocompletion=kube.complete_names),
]


# -- list -----------------------------------------------------------------------------------


@app.command("list")
def list_(
    out: Output = output.Format.TABLE,
    all_namespaces: Annotated[
        bool, typer.Option("-A", "--all-namespaces", help="List in every namespace.")
    ] = False,
    forecast: Annotated[
        bool,
        typer.Option(
            "--forecast",
            help="Add the decision forecast: probability of promotion by maxDuration, and "
            "the blocking guardrail.",
        ),
    ] = False,
    kubeconfig: kube.Kubeconfig = None,
    context: kube.Context = None,
    namespace: kube.Namespace = None,
) -> None:
    """List Experiments with phase, weight, step and verdict (and the forecast with --forecast).

    `canaryctl list -n ranking`

    `canaryctl list -A -o json`
    """
    cluster = kube.connect_or_fail(kubeconfig, context, namespace)
    try:
        items = kube.Experiments(cluster).list(all_namespaces)
    except kube.KubeError as exc:
        fail(str(exc))
    if out is output.Format.TABLE:
        if not items:
            where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
            typer.echo(f"no experiments in {where}", err=True)
            return
        typer.echo(
            output.list_table(items, SYSTEM_CLOCK.now(), all_namespaces, forecast=forecast),
            nl=False,
        )
    else:
        typer.echo(output.dump({"apiVersion": "v1", "kind": "List", "items": items}, out), nl=False)


# -- status ---------------------------------------------------------------------------------


def wait_outcome(phase: str, target: str | None) -> int | None:
    """The exit code once ``phase`` settles the wait for ``target`` (None: keep waiting)."""
    from controller.experiment.spec import TERMINAL_PHASES

    if target is not None and phase == target:
        return EXIT_REACHED
    if phase in TERMINAL_PHASES:
        return EXIT_OTHER_END if target is not None else EXIT_REACHED
    return None


def _summary(body: dict[str, Any]) -> str:
    st = body.get("status") or {}
    weight = st.get("challengerWeight")
    parts = [st.get("phase", "Pending")]
    if weight is not None:
        parts.append(f"weight {weight}%")
    if st.get("step"):
        parts.append(f"step {st['step']}")
    if st.get("verdict"):
        parts.append(f"verdict {st['verdict']}")
    return ", ".join(parts)


def _parse_timeout(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    from controller.experiment import spec

    try:
        return spec.parse_duration(text).total_seconds()
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not a duration like '30s', '10m' or '2h'", param_hint=option
        ) from exc


@app.command()
def status(
    name: Name,
    out: Output = output.Format.TABLE,
    watch: Annotated[
        bool,
        typer.Option(
            "-w", "--watch", help="Live view until the experiment finishes (or --wait-for)."
        ),
    ] = False,
    wait_for: Annotated[
        WaitTarget | None,
        typer.Option(
            "--wait-for",
            help="Block until this phase. Exit 0 when reached, 3 when the experiment ended in "
            "another phase (e.g. rolled back instead), 4 on --timeout, 1 on other errors.",
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(help="Give up waiting after this long, e.g. 30m (default: no limit)."),
    ] = None,
    interval: Annotated[
        str, typer.Option(help="How often to read the Experiment while waiting or watching.")
    ] = "2s",
    kubeconfig: kube.Kubeconfig = None,
    context: kube.Context = None,
    namespace: kube.Namespace = None,
) -> None:
    """Show an Experiment: phase, weight and step, progress, guardrails, samples per arm.

    `canaryctl status ranker-v42 --watch`

    `canaryctl status ranker-v42 --wait-for Promoted --timeout 6h`

    Exit codes: 0 shown, or the --wait-for phase reached; 3 it ended in another phase (rolled back instead, failed, promoted without awaiting); 4 --timeout passed first; 2 bad input; 1 other errors (e.g. not found).
    """
    limit = _parse_timeout(timeout, "--timeout")
    pause = _parse_timeout(interval, "--interval") or 0.0
    cluster = kube.connect_or_fail(kubeconfig, context, namespace)
    experiments = kube.Experiments(cluster)

    try:
        body = experiments.get(name)
        if not watch and wait_for is None:
            _show(body, out)
            return
        deadline = None if limit is None else time.monotonic() + limit
        code, body = _follow(experiments, body, wait_for, deadline, pause, watch, out)
    except kube.KubeError as exc:
        fail(str(exc))
    _finish(body=body, code=code, target=wait_for, timeout=timeout, out=out)


def _show(body: dict[str, Any], out: output.Format) -> None:
    if out is output.Format.TABLE:
        typer.echo(output.status_view(body, SYSTEM_CLOCK.now()), nl=False)
    else:
        typer.echo(output.dump(body, out), nl=False)


def _transient(exc: kube.KubeError) -> bool:
    """No answer, throttled or a server error: worth another try while waiting."""
    return exc.code == 0 or exc.code == 429 or exc.code >= 500


def _follow(
    experiments: kube.Experiments,
    body: dict[str, Any],
    target: str | None,
    deadline: float | None,
    pause: float,
    watch: bool,
    out: output.Format,
) -> tuple[int, dict[str, Any]]:
    """Poll until the wait is settled (or the deadline passes): the exit code, the last body.

    Transient API errors are reported once and retried; others (404: deleted) end the wait.
    """
    name = body["metadata"]["name"]
    live = None
    if watch and out is output.Format.TABLE:
        from rich.live import Live
        from rich.text import Text

        live = Live(Text(output.status_view(body, SYSTEM_CLOCK.now())), auto_refresh=False)
        live.start()
    last = trouble = ""
    try:
        while True:
            if live is not None:
                from rich.text import Text

                live.update(Text(output.status_view(body, SYSTEM_CLOCK.now())), refresh=True)
            elif (summary := _summary(body)) != last:
                typer.echo(f"{name}: {summary}", err=True)
                last = summary
            code = wait_outcome((body.get("status") or {}).get("phase", "Pending"), target)
            if code is not None:
                return code, body
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return EXIT_TIMEOUT, body
            time.sleep(pause if left is None else min(pause, left))
            try:
                body = experiments.get(name)
                trouble = ""
            except kube.KubeError as exc:
                if not _transient(exc):
                    raise
                if str(exc) != trouble:
                    typer.echo(f"warning: {exc}; retrying", err=True)
                    trouble = str(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        if live is not None:
            live.stop()


def _finish(
    *,
    body: dict[str, Any],
    code: int,
    target: str | None,
    timeout: str | None,
    out: output.Format,
) -> None:
    st = body.get("status") or {}
    phase, name = st.get("phase", "Pending"), body["metadata"]["name"]
    if out is not output.Format.TABLE:
        typer.echo(output.dump(body, out), nl=False)
    reason = f" ({st['reasonCode']}: {st.get('message', '')})" if st.get("reasonCode") else ""
    if target is None:
        typer.echo(f"{name} finished: {phase}{reason}", err=True)
    elif code == EXIT_REACHED:
        typer.echo(f"{name} reached {phase}{reason}", err=True)
    elif code == EXIT_OTHER_END:
        typer.echo(f"{name} ended in {phase} instead of {target}{reason}", err=True)
    elif code == EXIT_TIMEOUT:
        typer.echo(
            f"{name} timed out after {timeout} waiting for {target}; it is {_summary(body)}",
            err=True,
        )
    raise typer.Exit(code)
