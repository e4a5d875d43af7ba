"""The analysis state and its looks: saved in one statement, read back for a restart and a report."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from controller.clock import SimulatedClock
from controller.ingest import load
from controller.storage import experiments, looks
from tests.storage.helpers import T0, outcomes

NOW = T0 + timedelta(hours=3, minutes=1)


def _look(minute: int, verdict: str) -> dict[str, object]:
    until = T0 + timedelta(minutes=minute)
    return {
        "evaluated_until": until,
        "at": until + timedelta(seconds=5),
        "step_index": 0,
        "challenger_weight": 10,
        "verdict": verdict,
        "payload": {"guardrails": [{"name": "revenue", "estimate": 0.01}]},
    }


def test_state_and_looks_round_trip(conn: sa.Connection) -> None:
    exp = experiments.register_experiment(conn, "ml/looks")
    assert looks.freshness_and_state(conn, exp) == (None, {})
    looks.save_analysis_state(conn, exp, {"step": 1}, look=_look(2, "continue"))
    looks.save_analysis_state(conn, exp, {"step": 2}, look=_look(1, "continue"))
    looks.save_analysis_state(conn, exp, {"step": 3}, look=_look(2, "pass"))  # replaces minute 2
    looks.save_analysis_state(conn, exp, {"step": 4})  # the state alone
    assert looks.freshness_and_state(conn, exp) == (None, {"step": 4})
    got = looks.looks(conn, exp)
    assert [(g["evaluated_until"], g["verdict"]) for g in got] == [
        (T0 + timedelta(minutes=1), "continue"),
        (T0 + timedelta(minutes=2), "pass"),
    ]
    assert got[0]["guardrails"] == [{"name": "revenue", "estimate": 0.01}]


def test_states_and_looks_of_many_experiments_at_once(conn: sa.Connection) -> None:
    a = experiments.register_experiment(conn, "ml/many-a")
    b = experiments.register_experiment(conn, "ml/many-b")
    looks.save_analysis_states(
        conn, [(a, {"step": 1}, _look(1, "continue")), (b, {"step": 7}, _look(1, "fail"))]
    )
    looks.save_analysis_states(conn, [(a, {"step": 2}, _look(1, "pass"))])  # replaces minute 1
    assert looks.freshness_and_states(conn, [a, b, 999_999]) == {
        a: (None, {"step": 2}),
        b: (None, {"step": 7}),
    }
    assert looks.freshness_and_states(conn, []) == {}
    assert [g["verdict"] for g in looks.looks(conn, a)] == ["pass"]
    assert [g["verdict"] for g in looks.looks(conn, b)] == ["fail"]


def test_freshness_is_the_last_minute_with_data(conn: sa.Connection) -> None:
    exp = experiments.register_experiment(conn, "default/ranker")
    load.load(
        conn,
        outcomes(500, seed=8, seconds=600),
        batch_key="fresh",
        source="t",
        clock=SimulatedClock(NOW),
    )
    last, state = looks.freshness_and_state(conn, exp)
    assert (last, state) == (T0 + timedelta(minutes=9), {})
