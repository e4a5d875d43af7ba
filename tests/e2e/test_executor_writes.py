"""The executor's database writes are one unit of work: the decision log, the phase, the freeze.

Against the API emulator and real Postgres (the status patch needs the Experiment object);
the operator never ticks here, the test hands the executor a plan of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from canaryctl_demo.world import World, experiment_body
from controller.decide import actions as p
from controller.decide import observed as obs
from controller.experiment import frozen, validation
from controller.operate import executor
from controller.storage import decisions as decision_log
from controller.storage import experiments

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


@pytest.fixture
def world(truncating_engine: sa.Engine) -> Iterator[World]:
    with World.start(truncating_engine, start=T0) as w:
        yield w


def _start_plan(body: dict[str, object]) -> p.Plan:
    spec = validation.parse_experiment(body)
    return p.Plan(
        (
            p.SetPhase(obs.Phase.PROGRESSING, "started", "the canary starts", T0, started_at=T0),
            p.FreezeSettings(frozen.freeze(spec, T0)),
            p.RecordDecision(
                p.DecisionKind.START, "started", "the canary starts", "operator", T0, key="start"
            ),
        )
    )


def _target(world: World, name: str, exp_id: int) -> executor.Target:
    meta = world.get(name)["metadata"]
    return executor.Target(
        meta["namespace"], name, meta["uid"], meta["resourceVersion"], 1, {}, exp_id
    )


def test_the_log_the_phase_and_the_freeze_land_together(
    world: World, truncating_engine: sa.Engine
) -> None:
    body = world.create(experiment_body("atomic", analysis={"allowedLateness": "90s"}))
    with truncating_engine.begin() as conn:
        exp_id = experiments.register_experiment(conn, "ml/atomic", allowed_lateness_seconds=0)
    outcome = executor.apply(
        _start_plan(body),
        _target(world, "atomic", exp_id),
        router=None,
        engine=truncating_engine,
        api=world.api,
        now=T0,
    )
    assert outcome.decisions_written == 1 and outcome.status_written
    with truncating_engine.connect() as conn:
        stored = experiments.get_experiment(conn, "ml/atomic")
        log = decision_log.decisions(conn, exp_id)
    assert (stored.phase, stored.settings_frozen_at) == ("Progressing", T0)
    assert (stored.revenue_cap, stored.allowed_lateness_seconds) == (20.0, 90)
    assert [d.kind for d in log] == ["start"]


def test_a_refused_freeze_writes_neither_the_log_nor_the_phase(
    world: World, truncating_engine: sa.Engine
) -> None:
    body = world.create(experiment_body("refused"))
    with truncating_engine.begin() as conn:
        exp_id = experiments.register_experiment(conn, "ml/refused")
        experiments.freeze_settings(
            conn, "ml/refused", {"other": 1}, now=T0, revenue_cap=None, allowed_lateness_seconds=0
        )
    with pytest.raises(experiments.SettingsFrozenError):
        executor.apply(
            _start_plan(body),
            _target(world, "refused", exp_id),
            router=None,
            engine=truncating_engine,
            api=world.api,
            now=T0,
        )
    with truncating_engine.connect() as conn:
        stored = experiments.get_experiment(conn, "ml/refused")
        log = decision_log.decisions(conn, exp_id)
    assert (stored.phase, log) == ("Pending", [])
    assert world.status("refused") == {}
