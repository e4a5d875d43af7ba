"""The operator's decision forecast against the API emulator and Postgres, in simulated time.

At each step start the operator forecasts, from the champion traffic it observed, whether a
healthy challenger will be promoted before maxDuration, and says so in a condition, an
Event and ``status.forecast``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes.client
import pytest
import sqlalchemy as sa

from analysis import Scenario
from canaryctl_demo.kube import seed
from canaryctl_demo.world import HTTPROUTE, World, experiment_body, guardrails
from controller.ingest import load
from controller.operate.loop import OperatorConfig
from controller.storage import experiments, rollups
from tests.storage.helpers import outcomes

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


@pytest.fixture
def world(truncating_engine: sa.Engine) -> Iterator[World]:
    with World.start(truncating_engine, start=T0) as w:
        yield w


def _condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "DecisionForecast")


def _events(world: World, name: str) -> list[tuple[str, str, str]]:
    items = kubernetes.client.CoreV1Api(world.api).list_namespaced_event(world.namespace).items
    return [(e.type, e.reason, e.message) for e in items if e.involved_object.name == name]


def test_a_margin_too_tight_for_the_traffic_is_flagged_naming_the_guardrail(
    world: World,
) -> None:
    body = experiment_body(
        "tight",
        analysis={"guardrails": guardrails(revenue_margin=0.005)},
        max_duration="2h",
    )
    world.create(body)
    status = world.run("tight", Scenario(requests_per_minute=2000), until={"x"}, max_minutes=6)
    assert status["phase"] == "Progressing"
    cond = _condition(status)
    assert (cond["status"], cond["reason"]) == ("False", "PromotionUnlikely")
    assert "guardrail revenue (margin 0.5 %) blocks" in cond["message"]
    assert "requests/min" in cond["message"] or "maxDuration" in cond["message"]
    forecast = status["forecast"]
    assert forecast["stepIndex"] == 0 and forecast["blocking"] == "revenue"
    assert forecast["promotion"]["probability"] < 0.8
    assert 1500 < forecast["requestsPerMinute"] < 2500  # observed, not assumed
    assert ("Warning", "PromotionUnlikely", cond["message"]) in _events(world, "tight")


def test_a_comfortable_canary_is_forecast_likely(world: World) -> None:
    world.create(experiment_body("easy"))
    status = world.run("easy", Scenario(requests_per_minute=10_000), until={"x"}, max_minutes=6)
    cond = _condition(status)
    assert (cond["status"], cond["reason"]) == ("True", "PromotionLikely")
    assert (
        status["forecast"]["likely"] is True and status["forecast"].get("blocking") is None
    )  # null: merge-patched away
    assert status["forecast"]["stepsEnd"] == "1h"  # the steps' minimum durations: no earlier
    assert status["forecast"]["promotion"]["probability"] >= 0.8
    assert any(r == "PromotionLikely" for _, r, _ in _events(world, "easy"))


def test_a_pass_runs_only_its_budget_of_forecasts_the_others_come_at_the_next(
    truncating_engine: sa.Engine,
) -> None:
    config = OperatorConfig(workers=1, forecasts_per_pass=1)
    with World.start(truncating_engine, start=T0, operator_config=config) as world:
        assert world.cluster is not None
        world.cluster.create(
            HTTPROUTE, seed.httproute("ranker-b", {"ranker-v1": 100, "ranker-v2": 0})
        )
        world.create(experiment_body("a", max_duration="2h"))
        world.create(experiment_body("b", route="ranker-b", max_duration="2h"))
        world.advance(timedelta(0))
        forecasts = []
        for _ in range(8):
            for name in ("a", "b"):
                world.send_minute(name, Scenario(requests_per_minute=2000))
            world.advance()
            forecasts.append(sum("forecast" in world.status(n) for n in ("a", "b")))
            if forecasts[-1] == 2:
                break
        # both had traffic enough at the same pass: one forecast then, the other one pass later
        assert forecasts[-2:] == [1, 2], forecasts


class _At:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_from_the_champions_day_hour_by_hour_read_once_per_champion_within_the_budget(
    truncating_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three experiments on ranker-v1, whose earlier experiment holds a whole day, and two on
    other champions (no day: from their runs' traffic), all started in one pass: the first
    three forecast hour by hour from that day (no run data needed), the day is read once per champion and start in a pass, and a pass
    reads no more days than it may run forecasts."""
    with truncating_engine.begin() as conn:
        experiments.register_experiment(conn, "ml/old", spec={"champion": {"name": "ranker-v1"}})
    day = outcomes(36_000, experiment="ml/old", start=T0 - timedelta(days=2), seconds=86_400)
    load.load_table(
        truncating_engine, day, batch_key="day", source="test", clock=_At(T0 - timedelta(days=1))
    )
    reads: list[tuple[str, datetime]] = []
    real = rollups.champion_day_totals

    def counted(conn: sa.Connection, champion: str, at: datetime) -> Any:
        reads.append((champion, at))
        return real(conn, champion, at)

    monkeypatch.setattr(rollups, "champion_day_totals", counted)
    config = OperatorConfig(workers=1, forecasts_per_pass=2)
    with World.start(truncating_engine, start=T0, operator_config=config) as world:
        assert world.cluster is not None
        names = {"a": "ranker-v1", "b": "ranker-v1", "c": "ranker-v1", "x": "other-0"}
        names["y"] = "other-1"
        for name, champion in names.items():
            if champion != "ranker-v1":
                world.cluster.create_deployment(champion, replicas=2)
            world.cluster.create(
                HTTPROUTE, seed.httproute(f"route-{name}", {champion: 100, "ranker-v2": 0})
            )
            world.create(
                experiment_body(name, champion=champion, route=f"route-{name}", max_duration="2h")
            )
        world.advance(timedelta(0))  # every one starts its first step: no forecast due yet
        assert reads == []
        per_pass = []
        for _ in range(10):
            for name in ("x", "y"):  # no day for theirs: a forecast from the run's traffic
                world.send_minute(name, Scenario(requests_per_minute=2000))
            world.advance()
            per_pass.append(list(reads))
            reads.clear()
            if all("forecast" in world.status(n) for n in names):
                break
        for one in per_pass:
            assert len(one) == len(set(one)), f"a day read twice in a pass: {one}"
            assert len(one) <= 2, f"more days read than the pass may forecast: {one}"
        assert all("forecast" in world.status(n) for n in names)
        assert len(per_pass) >= 3  # five forecasts, two a pass
        for name, champion in names.items():
            forecast = world.status(name)["forecast"]
            if champion == "ranker-v1":  # 36,000 requests a day, 24 hours
                assert forecast["trafficPeriods"] == 24
                assert 20 < forecast["requestsPerMinute"] < 30
            else:
                assert forecast["trafficPeriods"] == 1
                assert 1500 < forecast["requestsPerMinute"] < 2500
