"""The sequential analysis' persisted state and its looks (one row per finalised minute).

Each tick the operator reads the state its previous tick left (with the data's freshness,
in one round trip), runs the analysis and saves the new state together with the look the
reports draw. A restarted operator continues the same sequential test from this state.
Every function runs in the caller's transaction and never commits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from controller.storage import models

_SAVE_STATE = sa.text("UPDATE experiments SET analysis_state = CAST(:state AS jsonb) WHERE id = :e")
_SAVE_STATE_AND_LOOK = sa.text(
    """
    WITH saved_state AS (
        UPDATE experiments SET analysis_state = CAST(:state AS jsonb) WHERE id = :e
    )
    INSERT INTO looks (experiment_id, evaluated_until, at, step_index, challenger_weight, verdict, payload)
    VALUES (:e, :evaluated_until, :at, :step_index, :challenger_weight, :verdict, CAST(:payload AS jsonb))
    ON CONFLICT (experiment_id, evaluated_until) DO UPDATE
       SET at = excluded.at, step_index = excluded.step_index,
           challenger_weight = excluded.challenger_weight, verdict = excluded.verdict,
           payload = excluded.payload
    """
)


def save_analysis_state(
    conn: sa.Connection,
    exp_id: int,
    state: Mapping[str, Any],
    look: Mapping[str, Any] | None = None,
) -> None:
    """Persist the sequential tests' state (a restarted operator continues the same test)
    and, in the same statement, this look for the reports (one row per finalised minute)."""
    if look is None:
        conn.execute(_SAVE_STATE, {"e": exp_id, "state": json.dumps(state)})
    else:
        save_analysis_states(conn, [(exp_id, state, look)])


def save_analysis_states(
    conn: sa.Connection, saves: Sequence[tuple[int, Mapping[str, Any], Mapping[str, Any]]]
) -> None:
    """:func:`save_analysis_state` of many ``(experiment id, state, look)``, as one batch
    (the operator's pass saves every analysed experiment's state and look at once)."""
    if saves:
        conn.execute(
            _SAVE_STATE_AND_LOOK,
            [
                {
                    "e": exp_id,
                    "state": json.dumps(state),
                    **look,
                    "payload": json.dumps(look["payload"], default=str),
                }
                for exp_id, state, look in saves
            ],
        )


_FRESHNESS_AND_STATES = sa.text(
    "SELECT e.id, (SELECT max(period) FROM rollups_minute "
    "WHERE experiment_id = e.id AND arm IN (0, 1)), e.analysis_state "
    "FROM experiments e WHERE e.id = ANY(CAST(:ids AS integer[]))"
)


def freshness_and_states(
    conn: sa.Connection, exp_ids: Sequence[int]
) -> dict[int, tuple[datetime | None, dict[str, Any]]]:
    """:func:`freshness_and_state` of many experiments, in one query (missing ids left out)."""
    if not exp_ids:
        return {}
    rows = conn.execute(_FRESHNESS_AND_STATES, {"ids": list(exp_ids)})
    return {row[0]: (row[1], dict(row[2] or {})) for row in rows}


def freshness_and_state(conn: sa.Connection, exp_id: int) -> tuple[datetime | None, dict[str, Any]]:
    """The last minute with data and the persisted sequential state ({} before the first look)."""
    found = freshness_and_states(conn, [exp_id])
    if exp_id not in found:
        raise sa.exc.NoResultFound(f"no experiment with id {exp_id}")
    return found[exp_id]


def looks(conn: sa.Connection, exp_id: int) -> list[dict[str, Any]]:
    """Every recorded look of an experiment, oldest first."""
    rows = conn.execute(
        sa.select(
            models.Look.evaluated_until,
            models.Look.at,
            models.Look.step_index,
            models.Look.challenger_weight,
            models.Look.verdict,
            models.Look.payload,
        )
        .where(models.Look.experiment_id == exp_id)
        .order_by(models.Look.evaluated_until)
    )
    return [
        {
            "evaluated_until": r.evaluated_until,
            "at": r.at,
            "step_index": r.step_index,
            "challenger_weight": r.challenger_weight,
            "verdict": r.verdict,
            **r.payload,
        }
        for r in rows
    ]
