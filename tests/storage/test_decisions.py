"""The decision log: idempotent appends, and the database itself refuses to rewrite it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from controller.storage import decisions, experiments

AT = datetime(2026, 11, 26, 12, tzinfo=UTC)


def test_decisions_are_append_only(conn: sa.Connection) -> None:
    exp = experiments.register_experiment(conn, "ns/append")
    step = {"kind": "weight_change", "actor": "operator", "reason_code": "step", "reason": "step 1"}
    first = decisions.append_decision(
        conn, exp, at=AT, evidence={"weight": 5}, idempotency_key="t1", **step
    )
    again = decisions.append_decision(
        conn, exp, at=AT + timedelta(minutes=1), idempotency_key="t1", **step
    )
    assert first is not None and again is None
    for statement in ("UPDATE decisions SET reason = 'rewritten'", "DELETE FROM decisions"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), conn.begin_nested():
            conn.execute(sa.text(statement))
    log = decisions.decisions(conn, exp)
    assert [(d.kind, d.reason, d.evidence, d.at) for d in log] == [
        ("weight_change", "step 1", {"weight": 5}, AT)
    ]


def test_the_log_is_read_oldest_first_per_experiment(conn: sa.Connection) -> None:
    a = experiments.register_experiment(conn, "ns/a")
    b = experiments.register_experiment(conn, "ns/b")
    for i, exp in enumerate((a, b, a)):
        decisions.append_decision(
            conn,
            exp,
            at=AT - timedelta(minutes=i),
            kind="start",
            actor="operator",
            reason_code=f"r{i}",
            reason="",
        )
    assert [d.reason_code for d in decisions.decisions(conn, a)] == ["r2", "r0"]
    assert [d.reason_code for d in decisions.decisions(conn, b)] == ["r1"]
