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
from controller.cli.common import EXIT_ERROR, EXIT_USAGE, fail, output_option
from controller.clock import SYSTEM_CLOCK

app = typer.Typer()

_sleep = time.sleep  # list --watch's pause (a test ends the watch through it)

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
    output.Output,
    output_option(
        output.READ_VIEWS,
        "table, wide (more columns, and the statistics), name, json, yaml, or "
        "jsonpath=TEMPLATE (kubectl's, e.g. '{.status.phase}').",
    ),
]
TABLE = output.Output(output.View.TABLE)
Name = Annotated[
    str,
    typer.Argument(
        metavar="NAME", help="Name of the Experiment.", autocompletion=kube.complete_names
    ),
]
Interval = Annotated[
    str,
    typer.Option(
        metavar="DURATION", help="How often to read the Experiment while waiting or watching."
    ),
]


def render(
    items: list[dict[str, Any]], out: output.Output, *, namespaces: bool, forecast: bool = False
) -> str:
    """``list``'s output for ``items`` in the ``-o`` view (the table without a header)."""
    if out.view is output.View.NAME:
        return output.names(items)
    if out.view is output.View.JSONPATH:
        return output.jsonpath(out.template, {"apiVersion": "v1", "kind": "List", "items": items})
    if out.format is not None:
        return output.dump({"apiVersion": "v1", "kind": "List", "items": items}, out.format)
    return output.list_table(
        items,
        SYSTEM_CLOCK.now(),
        namespaces,
        wide=out.view is output.View.WIDE,
        forecast=forecast,
    )


# -- list -----------------------------------------------------------------------------------


@app.command("list")
def list_(
    out: Output = TABLE,
    all_namespaces: Annotated[
        bool, typer.Option("-A", "--all-namespaces", help="List in every namespace.")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option("-w", "--watch", help="After listing, print each Experiment that changes."),
    ] = False,
    interval: Interval = "2s",
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

    `canaryctl list -w`

    Exit codes: 0 listed; 1 cluster errors; 2 bad input; 130 Ctrl-C while watching.
    """
    pause = _parse_timeout(interval, "--interval") or 0.0
    cluster = kube.connect_or_fail(kubeconfig, context, namespace)
    experiments = kube.Experiments(cluster)
    try:
        items = experiments.list(all_namespaces)
    except kube.KubeError as exc:
        fail(str(exc))
    where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
    if not items and out.view in (output.View.TABLE, output.View.WIDE):
        typer.echo(f"no experiments in {where}", err=True)
    else:
        typer.echo(render(items, out, namespaces=all_namespaces, forecast=forecast), nl=False)
    if watch:
        _watch_list(experiments, items, out, all_namespaces, pause, forecast)


def _watch_list(
    experiments: kube.Experiments,
    items: list[dict[str, Any]],
    out: output.Output,
    all_namespaces: bool,
    pause: float,
    forecast: bool = False,
) -> None:
    """``list -w``: poll, and print the rows (or objects) of Experiments that changed."""

    def key(item: dict[str, Any]) -> tuple[str, str]:
        meta = item.get("metadata") or {}
        return meta.get("namespace", ""), meta.get("name", "")

    def row(item: dict[str, Any]) -> Any:
        return {k: v for k, v in item.items() if k != "metadata"}, (item.get("metadata") or {})

    seen = {key(i): row(i) for i in items}
    try:
        while True:
            _sleep(pause)
            try:
                now = experiments.list(all_namespaces)
            except kube.KubeError as exc:
                if not _transient(exc):
                    fail(str(exc))
                typer.echo(f"warning: {exc}; retrying", err=True)
                continue
            changed = [i for i in now if seen.get(key(i)) != row(i)]
            gone = set(seen) - {key(i) for i in now}
            seen = {key(i): row(i) for i in now}
            if changed:
                text = render(changed, out, namespaces=all_namespaces, forecast=forecast)
                if out.view in (output.View.TABLE, output.View.WIDE):
                    text = "".join(text.splitlines(keepends=True)[1:])  # no header again
                typer.echo(text, nl=False)
            for ns, name in sorted(gone):
                typer.echo(f"{ns}/{name} deleted", err=True)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


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
        parts.append(f"weight {weight} %")
    if st.get("step"):
        parts.append(f"step {st['step']}")
    if st.get("verdict"):
        parts.append(f"verdict {st['verdict']}")
    held = [c.get("reason") or code for code, c in output.holds(body)]
    if held:
        parts.append(f"held: {', '.join(held)}")
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
    out: Output = TABLE,
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
            case_sensitive=False,
            metavar="PHASE",
            help="Block until this phase. Exit 0 when reached, 3 when the experiment ended in "
            "another phase (e.g. rolled back instead), 4 on --timeout, 1 on other errors.",
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Give up waiting after this long, e.g. 30m (default: no limit).",
        ),
    ] = None,
    interval: Interval = "2s",
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


def show(body: dict[str, Any], out: output.Output, refreshed: bool = False) -> str:
    """``status``'s output for one Experiment in the ``-o`` view."""
    if out.view is output.View.NAME:
        return output.names([body])
    if out.view is output.View.JSONPATH:
        return output.jsonpath(out.template, body)
    if out.format is not None:
        return output.dump(body, out.format)
    wide = out.view is output.View.WIDE
    return output.status_view(body, SYSTEM_CLOCK.now(), wide=wide, refreshed=refreshed)


def _show(body: dict[str, Any], out: output.Output) -> None:
    typer.echo(show(body, out), nl=False)


def _human(out: output.Output) -> bool:
    return out.view in (output.View.TABLE, output.View.WIDE)


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
    out: output.Output,
) -> tuple[int, dict[str, Any]]:
    """Poll until the wait is settled (or the deadline passes): the exit code, the last body.

    Transient API errors are reported once and retried; others (404: deleted) end the wait.
    """
    name = body["metadata"]["name"]
    live = None
    if watch and _human(out):
        from rich.live import Live
        from rich.text import Text

        live = Live(Text(show(body, out, refreshed=True)), auto_refresh=False)
        live.start()
    last = trouble = ""
    try:
        while True:
            if live is not None:
                from rich.text import Text

                live.update(Text(show(body, out, refreshed=True)), refresh=True)
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
    out: output.Output,
) -> None:
    st = body.get("status") or {}
    phase, name = st.get("phase", "Pending"), body["metadata"]["name"]
    if not _human(out):
        typer.echo(show(body, out), nl=False)
    said = st.get("message") or st.get("reasonCode")
    reason = f" ({output.plain(said)})" if said else ""
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
