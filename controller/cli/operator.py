"""``canaryctl operator run``: the Kubernetes operator loop (see ``controller.operate.loop``)."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli import kube
from controller.cli.common import DatabaseUrl, fail, require_url, sleep_until, stop_signals

if TYPE_CHECKING:
    from controller.operate.loop import Operator

GRACE_SECONDS = 25  # a stopped loop's time to end its pass, inside the pod's 30 s grace period

app = typer.Typer(help="The operator that runs Experiments.", no_args_is_help=True)


@app.command("run")
def run(
    watch_namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--watch-namespace",
            metavar="NAMESPACE",
            help="Namespace to watch (repeatable); default: all namespaces. (-w is --watch "
            "everywhere else, so it has no short form.)",
        ),
    ] = None,
    kubeconfig: kube.Kubeconfig = None,
    context: kube.Context = None,
    lease_namespace: Annotated[
        str, typer.Option(envvar="POD_NAMESPACE", help="Namespace of the leader-election Lease.")
    ] = "canaryctl-system",
    identity: Annotated[
        str | None, typer.Option(envvar="POD_NAME", help="This replica's name in the Lease.")
    ] = None,
    leader_election: Annotated[
        bool, typer.Option(help="Elect one acting replica through a coordination.k8s.io Lease.")
    ] = True,
    bind_address: Annotated[
        str,
        typer.Option(
            envvar="CANARYCTL_BIND_ADDRESS",
            help="Address /healthz and /readyz listen on; the manifest passes the pod IP.",
        ),
    ] = "127.0.0.1",
    health_port: Annotated[int, typer.Option(help="Port of /healthz and /readyz.")] = 8080,
    metrics_bind_address: Annotated[
        str | None,
        typer.Option(
            envvar="CANARYCTL_METRICS_BIND_ADDRESS",
            help="Address /metrics listens on (default: --bind-address).",
        ),
    ] = None,
    metrics_port: Annotated[int, typer.Option(help="Port of /metrics (Prometheus).")] = 9090,
    workers: Annotated[int, typer.Option(min=1, help="Experiments reconciled in parallel.")] = 8,
    shards: Annotated[
        int,
        typer.Option(
            min=1,
            max=1024,
            help="Shards the experiments are spread over, one Lease each; replicas share them. "
            "1: one elected replica acts. The same on every replica.",
        ),
    ] = 1,
    lease_duration: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds a Lease lasts unrenewed; a replica stops acting after two thirds of it.",
        ),
    ] = 15.0,
    request_timeout: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds to wait for the API server's answer to a request; a watch silent "
            "for twice as long is opened again; Lease requests wait at most two thirds of "
            "--lease-duration.",
        ),
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    database_url: DatabaseUrl = None,
) -> None:
    """Watch Experiments and run them: shift traffic, analyse, roll back or promote."""
    from controller.operate import metrics as metrics_mod
    from controller.operate.loop import Operator, OperatorConfig, tune_gc
    from controller.routers import kubeapi
    from controller.storage import db

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    url = require_url(database_url)
    cluster = kube.connect_or_fail(kubeconfig, context, None)
    kubeapi.set_default_timeout(cluster.api, read=request_timeout)
    config = OperatorConfig(
        namespaces=tuple(watch_namespace or ()),
        lease_namespace=lease_namespace,
        workers=workers,
        shards=shards,
        lease_duration=lease_duration,
        renew_deadline=lease_duration * 2 / 3,
        retry_period=lease_duration * 2 / 15,
        watch_idle_seconds=2 * request_timeout,
    )
    if identity:
        config.identity = identity
    cluster.api.user_agent = f"canaryctl-operator/{config.identity}"
    # no pre-ping: a tick that meets a dropped connection fails and is retried next tick
    engine = db.make_engine(
        url, pool_size=max(5, workers), max_overflow=workers, pool_pre_ping=False
    )
    operator = Operator(cluster.api, engine, config=config)
    stop = threading.Event()
    health_at = (bind_address, health_port)
    metrics_at = (metrics_bind_address or bind_address, metrics_port)
    try:
        health, _ = metrics_mod.serve(operator.metrics, operator.ready, *health_at)
        scrape = health
        if metrics_at != health_at:
            scrape, _ = metrics_mod.serve(operator.metrics, operator.ready, *metrics_at)
    except OSError as exc:
        fail(f"cannot listen on {health_at} or {metrics_at} (health and metrics): {exc}")
    signalled = stop_signals()
    typer.echo(
        f"canaryctl operator {config.identity}: watching "
        f"{', '.join(config.namespaces) or 'all namespaces'}"
        f"{f'; {shards} shards' if shards > 1 else ''}; health on "
        f"{_where(*health_at)}, metrics on {_where(*metrics_at)}"
    )
    tune_gc()  # a long-running process: everything made until now stays
    try:
        _run_until_stopped(operator, stop, signalled, leader_election)
    finally:
        health.shutdown()
        if scrape is not health:
            scrape.shutdown()
        engine.dispose()


def _run_until_stopped(
    operator: Operator,
    stop: threading.Event,
    signalled: Callable[[], bool],
    leader_election: bool,
) -> None:
    """Run the operator in a thread while this (main) thread only waits for a signal.

    Python runs signal handlers in the main thread, between bytecodes: were the loop itself
    in the main thread, a SIGTERM arriving while it waits on a worker could go unhandled for
    as long as that worker takes. Sleeping here in short slices, this thread sets ``stop``
    as soon as SIGTERM comes (or the loop fails), so the shards are given back at once; then
    the loop has a grace period to end.
    """
    failed: list[BaseException] = []

    def target() -> None:
        try:
            operator.run(stop, leader_election=leader_election)
        except BaseException as exc:
            failed.append(exc)
            stop.set()

    runner = threading.Thread(target=target, name="canaryctl-operator", daemon=True)
    runner.start()
    sleep_until(lambda: signalled() or stop.is_set(), math.inf)
    stop.set()
    runner.join(timeout=GRACE_SECONDS)
    if runner.is_alive():
        logging.getLogger(__name__).warning(
            "the operator loop did not end within %d s of the stop; exiting", GRACE_SECONDS
        )
    if failed:
        raise failed[0]


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
