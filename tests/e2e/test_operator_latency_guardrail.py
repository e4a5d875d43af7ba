"""The operator against the emulator with a ``kind: latency`` guardrail (geometric-mean latency)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from analysis import Scenario
from canaryctl_demo.world import World, experiment_body, guardrails
from controller.storage import decisions as decision_log
from controller.storage import experiments

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
BASE = Scenario(requests_per_minute=10_000)
DONE = {"Promoted", "RolledBack", "Failed"}
#: Revenue and errors as in the demo, the latency tail replaced by the geometric mean (5 %).
GUARDRAILS = [
    *(g for g in guardrails() if g["kind"] != "tail"),
    {"name": "latency-mean", "kind": "latency", "margin": {"relative": 0.05}},
]


@pytest.fixture
def world(truncating_engine: sa.Engine) -> Iterator[World]:
    with World.start(truncating_engine, start=T0) as w:
        yield w


def test_a_challenger_10_percent_slower_is_rolled_back_on_its_geometric_mean(
    world: World, truncating_engine: sa.Engine
) -> None:
    world.create(experiment_body("slow", analysis={"guardrails": GUARDRAILS}))
    status = world.run("slow", BASE.with_effect(latency_factor=1.10), until=DONE, max_minutes=120)
    reason = "guardrail_failed:latency-mean"
    assert (status["phase"], status["reasonCode"]) == ("RolledBack", reason), status["message"]
    row = next(g for g in status["guardrails"] if g["name"] == "latency-mean")
    assert (row["verdict"], row["scale"], row["marginLine"]) == ("fail", "relative", 0.05)
    assert row["lower"] > 0.05  # the whole confidence sequence is beyond 5 % slower
    assert row["metric"] == "geometric_mean_latency_ms"
    assert row["challenger"] > row["champion"] * 1.05
    with truncating_engine.connect() as conn:
        exp = experiments.get_experiment(conn, "ml/slow")
        kinds = [(d.kind, d.reason_code) for d in decision_log.decisions(conn, exp.id)]
    assert ("rollback", reason) in kinds
