"""The whole operator against the Kubernetes API emulator and real Postgres, in simulated time."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from analysis import Scenario
from controller.sandbox import World, experiment_body
from controller.storage import repository

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
BASE = Scenario(requests_per_minute=10_000)


def _decisions(engine: sa.Engine, key: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        exp = repository.get_experiment(conn, key)
        return [(d.kind, d.reason_code) for d in repository.decisions(conn, exp.id)]


def test_a_good_canary_is_promoted(engine: sa.Engine) -> None:
    with World.start(engine, start=T0) as world:
        world.create(experiment_body("good"))
        status = world.run(
            "good", BASE, until={"Promoted", "RolledBack", "Failed"}, max_minutes=400
        )
        assert status["phase"] == "Promoted", status
        assert world.route_weights() == {"ranker-v1": 0, "ranker-v2": 100}
        kinds = [k for k, _ in _decisions(engine, "ml/good")]
        assert kinds[0] == "start" and kinds[-1] == "promote"


def test_a_revenue_drop_is_rolled_back(engine: sa.Engine) -> None:
    with World.start(engine, start=T0) as world:
        world.create(experiment_body("bad"))
        status = world.run(
            "bad",
            BASE.with_effect(revenue_effect=-0.3),
            until={"Promoted", "RolledBack"},
            max_minutes=400,
        )
        assert status["phase"] == "RolledBack", status
        assert status["reasonCode"] == "guardrail_failed:revenue"
        assert world.route_weights() == {"ranker-v1": 100, "ranker-v2": 0}
        assert ("rollback", "guardrail_failed:revenue") in _decisions(engine, "ml/bad")
