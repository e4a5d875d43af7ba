"""``canaryctl demo``: the whole loop on a laptop, with no cluster and no database to set up.

Each scenario starts the Kubernetes API emulator with the Experiment CRD, an HTTPRoute and
the champion and challenger Deployments; runs the real operator against it and Postgres
(``CANARYCTL_DATABASE_URL``, or an embedded server started for the run and removed after);
and simulates ranking traffic that follows the live HTTPRoute weights through the real
ingest path, minute by simulated minute, until the operator promotes or rolls back.

The traffic and the experiment are chosen so that every scenario reaches its decision
with at least 99.9 % probability before the maximum duration (``bench/demo_power.py``
measures it); they are stated in the README.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from analysis import Scenario
from canaryctl_demo.world import World, experiment_body
from controller.experiment import spec
from controller.storage import db, experiments

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
NAMESPACE = "ranking"

#: 500 ranking requests a second reach this model slot (a third of the platform's average).
TRAFFIC = Scenario(requests_per_minute=30_000)

SCENARIOS: dict[str, dict[str, Any]] = {
    "good": {
        "effect": {"revenue_effect": 0.02, "latency_factor": 0.95},
        "expect": ("promoted", "promoted"),
        "about": "a better model: +2 % revenue per request, 5 % faster",
    },
    "aa": {
        "effect": {},
        "expect": ("promoted", "promoted"),
        "about": "the same model on both arms (A/A): nothing to find",
    },
    "revenue-drop": {
        "effect": {"revenue_effect": -0.15},
        "expect": ("rolled_back", "guardrail_failed:revenue"),
        "about": "15 % less revenue per request",
    },
    "latency-regression": {
        "effect": {"latency_factor": 1.3},
        "expect": ("rolled_back", "guardrail_failed:latency-p99"),
        "about": "30 % slower on every request",
    },
    "error-spike": {
        "effect": {"error_factor": 4.0},
        "expect": ("rolled_back", "guardrail_failed:errors"),
        "about": "four times the error rate (0.2 % → 0.8 %)",
    },
    "srm": {
        "effect": {"srm_shortfall": 0.1},
        "expect": ("rolled_back", "srm"),
        "about": "the challenger gets 10 % fewer requests than its weight says (sample-ratio mismatch)",
    },
}
ORDER = ["good", "aa", "revenue-drop", "latency-regression", "error-spike", "srm"]


def demo_experiment(name: str) -> dict[str, Any]:
    """The Experiment every scenario runs: derived cap and latency threshold, three steps."""
    return experiment_body(
        name,
        namespace=NAMESPACE,
        steps=[
            {"weight": 5, "minDuration": "15m", "minSamples": 10_000},
            {"weight": 25, "minDuration": "20m", "minSamples": 50_000},
            {"weight": 50, "minDuration": "20m", "minSamples": 100_000},
        ],
        analysis={
            "interval": "1m",
            "alpha": 0.0005,
            "baseline": {"duration": "15m"},
            "revenueCap": {"fromBaseline": {"quantile": 0.999}},
            "burnIn": {"minRequests": 3000, "minNonZeroRevenue": 200},
            "allowedLateness": "1m",
            "guardrails": [
                {
                    "name": "revenue",
                    "kind": "mean",
                    "direction": "higherIsBetter",
                    "margin": {"relative": 0.05},
                },
                {
                    "name": "latency-p99",
                    "kind": "tail",
                    "thresholdFromBaseline": {"quantile": 0.99, "margin": 0.1},
                    "kappa": 1.25,
                },
                {"name": "errors", "kind": "rate", "kappa": 1.5},
            ],
        },
        max_duration="6h",
    )


@dataclass
class Outcome:
    """The summary of one scenario (what ``--json`` prints)."""

    scenario: str
    outcome: str
    reason_code: str
    reason: str
    decided_after_seconds: float
    samples: dict[str, int]
    final_weights: dict[str, int]
    report: str | None
    expected: bool
    wall_seconds: float
    guardrails: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "outcome": self.outcome,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "decided_after_seconds": self.decided_after_seconds,
            "samples": self.samples,
            "final_weights": self.final_weights,
            "report": self.report,
        }


@contextlib.contextmanager
def database(url: str | None) -> Iterator[tuple[str, str]]:
    """The configured database, or an embedded Postgres removed afterwards; yields (url, what)."""
    if url:
        db.upgrade(url)
        yield url, "CANARYCTL_DATABASE_URL"
        return
    data_dir = Path(tempfile.mkdtemp(prefix="canaryctl-demo-pg-"))
    server = db.EmbeddedPostgres(data_dir)
    try:
        found = server.start()
        db.upgrade(found)
        yield found, f"embedded Postgres in {data_dir}"
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _totals(engine: sa.Engine, key: str) -> dict[str, int]:
    with engine.connect() as conn:
        exp = experiments.get_experiment(conn, key)
        row = conn.execute(
            sa.text("SELECT arm, sum(n) FROM rollups_minute WHERE experiment_id = :e GROUP BY arm"),
            {"e": exp.id},
        ).all()
    arms = {0: "champion", 1: "challenger"}
    out = {"champion": 0, "challenger": 0}
    out.update({arms[a]: int(n) for a, n in row})
    return out


def run_scenario(
    engine: sa.Engine,
    scenario: str,
    *,
    seed: int,
    speed: float = 0.0,
    report_dir: Path | None = None,
    on_minute: Callable[[World, str, dict[str, Any]], None] | None = None,
    max_minutes: int = 6 * 60 + 30,
) -> Outcome:
    """Run one scenario to its decision and return its summary."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario: unknown {scenario!r} (one of {', '.join(ORDER)})")
    conf = SCENARIOS[scenario]
    traffic = TRAFFIC.with_effect(**conf["effect"])
    name = f"{scenario}-{seed}-{int(time.time() * 1000) % 10**8}"
    key = f"{NAMESPACE}/{name}"
    wall = time.perf_counter()
    with World.start(engine, start=START, namespace=NAMESPACE, seed_value=seed) as world:
        world.create(demo_experiment(name))
        world.advance(timedelta(0))
        created = world.clock.now()
        status: dict[str, Any] = {}
        for _ in range(max_minutes):
            status = world.status(name)
            if spec.Phase(status.get("phase", spec.Phase.PENDING)).terminal:
                break
            world.send_minute(name, traffic)
            world.advance()
            if on_minute:
                on_minute(world, name, world.status(name))
            if speed > 0:
                time.sleep(60 / speed)
        phase = status.get("phase", "Pending")
        decided_at = spec.parse_k8s_time(status.get("phaseStartedAt", created.isoformat()))
        weights = world.route_weights()
        final_weights = {
            "champion": weights.get("ranker-v1", 0),
            "challenger": weights.get("ranker-v2", 0),
        }
    report = None
    if report_dir is not None:
        report = str(write_report(engine, key, report_dir / f"{name}.html").resolve())
    outcome = {"Promoted": "promoted", "RolledBack": "rolled_back"}.get(phase, phase.lower())
    reason_code = status.get("reasonCode", "")
    return Outcome(
        scenario=scenario,
        outcome=outcome,
        reason_code=reason_code,
        reason=status.get("message", ""),
        decided_after_seconds=(decided_at - created).total_seconds(),
        samples=_totals(engine, key),
        final_weights=final_weights,
        report=report,
        expected=(outcome, reason_code) == conf["expect"],
        wall_seconds=time.perf_counter() - wall,
        guardrails=list(status.get("guardrails", [])),
    )


def write_report(engine: sa.Engine, key: str, path: Path) -> Path:
    """Write the experiment's self-contained HTML report to ``path``."""
    from controller.reports import read, render

    path.parent.mkdir(parents=True, exist_ok=True)
    with engine.connect() as conn:
        report = read.build(conn, key)
    path.write_text(render.render(report, render.Format.HTML))
    return path
