"""The sandbox's background process: the demo world kept alive for the real CLI to talk to.

``canaryctl sandbox up`` (``canaryctl_demo.sandbox_cli``) starts :func:`serve` in a process
of its own. It starts Postgres (embedded in the sandbox directory unless a URL is given),
the Kubernetes API emulator with the Experiment CRD, the champion and challenger
Deployments and an HTTPRoute (the demo's :class:`~canaryctl_demo.world.World`), the real
operator, and simulated ranking traffic for every Experiment in the namespace, minute by
simulated minute at ``speed`` times real time. It writes a kubeconfig, an example
Experiment and its state file (:data:`STATE`) into the sandbox directory, and runs until
SIGTERM, when it stops the operator, the emulator and the embedded Postgres.

Its simulated clock starts at the wall clock's minute and, at ``speed`` 1, keeps it (less
than a minute behind); faster than real time it runs ahead of the wall clock, so the ages
and the step progress the CLI computes from the wall clock read short. The emulator takes
its timestamps from the same clock. The product never imports this module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from controller.cli.common import sleep_until, stop_signals

STATE = "sandbox.json"
LOG = "sandbox.log"
KUBECONFIG = "kubeconfig"
PG_DIR = "postgres"
NAMESPACE = "ranking"
_PASS = 2.0  # real seconds between the operator's passes within a simulated minute
EXAMPLE = "ranker-v2.yaml"

logger = logging.getLogger("canaryctl.sandbox")


@dataclass(frozen=True)
class State:
    """What ``sandbox up`` writes once everything is up (``sandbox.json``)."""

    pid: int
    api_url: str
    database_url: str
    embedded_postgres: str | None  # the data directory when the sandbox started Postgres
    kubeconfig: str
    example: str
    namespace: str
    speed: float
    challenger: str
    started_at: str

    @classmethod
    def read(cls, directory: Path) -> State | None:
        """The state in ``directory``, or None when there is none (or it is unreadable)."""
        try:
            return cls(**json.loads((directory / STATE).read_text()))
        except (OSError, ValueError, TypeError):
            return None


@contextlib.contextmanager
def _database(directory: Path, url: str | None) -> Iterator[tuple[str, str | None]]:
    """The given database, or Postgres embedded in ``directory/postgres``; migrated."""
    from controller.storage import db

    if url:
        db.upgrade(url)
        yield url, None
        return
    data = directory / PG_DIR
    server = db.EmbeddedPostgres(data)
    try:
        found = server.start()
        db.upgrade(found)
        yield found, str(data)
    finally:
        server.stop()


def example_experiment() -> dict[str, Any]:
    """The sandbox's example, chosen to decide within minutes of real time at the sandbox's
    traffic (30,000 requests a minute): two short steps, alpha 0.05, manual promotion (a
    good challenger waits in AwaitingPromotion for ``canaryctl promote``)."""
    from canaryctl_demo.world import experiment_body

    return experiment_body(
        "ranker-v2",
        namespace=NAMESPACE,
        steps=[
            {"weight": 10, "minDuration": "3m", "minSamples": 2000},
            {"weight": 50, "minDuration": "3m", "minSamples": 10000},
        ],
        analysis={
            "interval": "1m",
            "alpha": 0.05,
            "revenueCap": {"value": 20.0},
            "burnIn": {"minRequests": 1000, "minNonZeroRevenue": 80},
            "allowedLateness": "0s",
            "guardrails": [
                {
                    "name": "revenue",
                    "kind": "mean",
                    "direction": "higherIsBetter",
                    "margin": {"relative": 0.05},
                },
                {"name": "latency-p99", "kind": "tail", "thresholdMs": 70.0, "kappa": 1.25},
                {"name": "errors", "kind": "rate", "kappa": 1.5},
            ],
        },
        promotion="manual",
        max_duration="2h",
    )


def serve(directory: Path, *, database_url: str | None, speed: float, challenger: str) -> None:
    """Run the sandbox until SIGTERM or SIGINT; see the module docstring."""
    from canaryctl_demo.demo import SCENARIOS, TRAFFIC
    from canaryctl_demo.world import World
    from controller.storage import db

    signalled = stop_signals()
    scenario = TRAFFIC.with_effect(**SCENARIOS[challenger]["effect"])
    with _database(directory, database_url) as (url, embedded):
        engine = db.make_engine(url)
        start = datetime.now(UTC).replace(second=0, microsecond=0)
        try:
            with World.start(engine, start=start, namespace=NAMESPACE) as world:
                # every time the sandbox writes (creation, status, decisions) is its clock's
                world.served.emulator.store.clock = world.clock.now
                kubeconfig = directory / KUBECONFIG
                kubeconfig.write_text(yaml.safe_dump(world.served.kubeconfig(NAMESPACE)))
                example = directory / EXAMPLE
                example.write_text(yaml.safe_dump(example_experiment(), sort_keys=False))
                state = State(
                    pid=os.getpid(),
                    api_url=world.served.url,
                    database_url=url,
                    embedded_postgres=embedded,
                    kubeconfig=str(kubeconfig),
                    example=str(example),
                    namespace=NAMESPACE,
                    speed=speed,
                    challenger=challenger,
                    started_at=start.isoformat(),
                )
                (directory / STATE).write_text(json.dumps(asdict(state), indent=2) + "\n")
                logger.info("sandbox up: %s", state)
                world.advance(timedelta(0))
                minute = 60 / speed
                next_minute = time.monotonic() + minute
                while not sleep_until(
                    signalled, max(0.0, min(_PASS, next_minute - time.monotonic()))
                ):
                    if time.monotonic() >= next_minute:
                        next_minute += minute
                        _minute(world, scenario)
                    else:  # between minutes: act on new Experiments and requests at once
                        _guarded(world.advance, timedelta(0))
        finally:
            engine.dispose()
    logger.info("sandbox stopped")


def _guarded(step: Any, *args: Any) -> None:
    """One step of the loop; an error is logged, and the sandbox goes on."""
    try:
        step(*args)
    except Exception:
        logger.exception("sandbox step failed")


def _minute(world: Any, scenario: Any) -> None:
    """One simulated minute: traffic for every Experiment that routes (started, not finished;
    a queued one waits without traffic), then the operator's pass."""
    from controller.experiment.spec import TERMINAL_PHASES

    try:
        items = world.operator.list_experiments()
    except Exception:
        logger.exception("listing experiments failed")
        items = []
    for body in items:
        name = body["metadata"]["name"]
        phase = (body.get("status") or {}).get("phase", "Pending")
        if phase == "Pending" or phase in TERMINAL_PHASES:  # no route of its own to follow
            continue
        try:
            world.send_minute(name, scenario)
        except Exception as exc:  # an invalid spec or a missing route: no traffic for it
            logger.info("%s: no traffic this minute: %s", name, exc)
    _guarded(world.advance)


def main(argv: list[str] | None = None) -> None:
    """``python -m canaryctl_demo.sandbox DIR ...``: the background process ``up`` starts."""
    parser = argparse.ArgumentParser(prog="canaryctl-sandbox")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--database-url")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--challenger", default="good")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per request
    serve(
        args.directory,
        database_url=args.database_url,
        speed=args.speed,
        challenger=args.challenger,
    )


if __name__ == "__main__":
    main()
