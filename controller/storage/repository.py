"""Queries on the store: experiments, frozen settings, the decision log and rollup windows.

This is the one place SQL about experiments and rollups lives; the operator, the CLI, the
reports and the demo call it. Bulk loading of observations is ``controller.ingest``'s job.
Every window query reads rollups only (one statement each), never raw observations;
``apply_cap`` and ``revenue_quantile`` are the only functions that read raw rows back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from analysis import buckets
from controller.storage import models

DEFAULT_NAMESPACE = "default"

#: Latencies below this many milliseconds are floored before taking logs.
LOG_LATENCY_FLOOR_MS = 0.01


class UnknownExperimentError(LookupError):
    """No experiment is registered under that key."""


class SettingsFrozenError(RuntimeError):
    """The experiment's analysis settings were frozen already and differ from the new ones."""


def parse_key(key: str) -> tuple[str, str]:
    """Split ``namespace/name`` (a bare name means namespace ``default``)."""
    key = key.strip()
    namespace, sep, name = key.partition("/")
    if not sep:
        namespace, name = DEFAULT_NAMESPACE, namespace
    if not namespace or not name or "/" in name:
        raise ValueError(f"experiment key {key!r} is not of the form namespace/name")
    return namespace, name


def format_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


# --------------------------------------------------------------------------- experiments


def register_experiment(
    engine: sa.Engine,
    key: str,
    *,
    uid: str | None = None,
    spec: Mapping[str, Any] | None = None,
    allowed_lateness_seconds: int | None = None,
) -> int:
    """Register ``namespace/name`` (idempotent) and return its id.

    Given a ``spec`` or a lateness, they replace the stored ones. An Experiment deleted and
    created again under the same name is a new experiment: when ``uid`` differs from the
    stored one, the old row is kept under ``name@<old uid>`` (its decisions, rollups and
    looks stay with it, so its report can still be read) and a fresh row is registered.
    """
    if allowed_lateness_seconds is not None and allowed_lateness_seconds < 0:
        raise ValueError("allowed_lateness_seconds: must be ≥ 0")
    namespace, name = parse_key(key)
    table = models.Experiment.__table__
    with engine.begin() as conn:
        found = conn.execute(
            sa.select(table.c.id, table.c.uid)
            .where(table.c.namespace == namespace, table.c.name == name)
            .with_for_update()
        ).first()
        if found is not None and uid is not None and found.uid is not None and found.uid != uid:
            conn.execute(
                sa.update(table).where(table.c.id == found.id).values(name=f"{name}@{found.uid}")
            )
            found = None
        values: dict[str, Any] = {"updated_at": sa.func.now()}
        if uid is not None:
            values["uid"] = uid
        if spec is not None:
            values["spec"] = dict(spec)
        if allowed_lateness_seconds is not None:
            values["allowed_lateness_seconds"] = allowed_lateness_seconds
        if found is not None:
            conn.execute(sa.update(table).where(table.c.id == found.id).values(**values))
            return int(found.id)
        values.pop("updated_at")
        return int(
            conn.execute(
                sa.insert(table)
                .values(namespace=namespace, name=name, **values)
                .returning(table.c.id)
            ).scalar_one()
        )


def get_experiment(conn: sa.Connection, key: str) -> models.Experiment:
    """The experiment row for ``key`` (a detached snapshot), or ``UnknownExperimentError``."""
    namespace, name = parse_key(key)
    with Session(bind=conn) as session:
        exp = session.scalars(
            sa.select(models.Experiment).where(
                models.Experiment.namespace == namespace, models.Experiment.name == name
            )
        ).first()
        if exp is None:
            raise UnknownExperimentError(f"experiment {namespace}/{name} is not registered")
        session.expunge(exp)
    return exp


def experiment_id(engine: sa.Engine, key: str) -> int:
    with engine.connect() as conn:
        return get_experiment(conn, key).id


def freeze_settings(
    engine: sa.Engine,
    key: str,
    settings: Mapping[str, Any],
    *,
    now: datetime,
    revenue_cap: float | None = None,
) -> bool:
    """Freeze the analysis settings once; return True when this call froze them.

    Freezing the same settings again is a no-op; different ones raise
    ``SettingsFrozenError``. Setting a revenue cap rebuilds the experiment's rollups
    from its raw observations, so every capped sum uses the frozen cap.
    """
    if revenue_cap is not None and not (np.isfinite(revenue_cap) and revenue_cap > 0):
        raise ValueError(f"revenue_cap: must be a positive finite number (got {revenue_cap})")
    snapshot = dict(settings)
    snapshot["revenueCap"] = revenue_cap
    with engine.begin() as conn:
        exp_id = _id_for(conn, key)
        exp = conn.execute(
            sa.select(
                models.Experiment.id,
                models.Experiment.namespace,
                models.Experiment.name,
                models.Experiment.settings,
                models.Experiment.settings_frozen_at,
            )
            .where(models.Experiment.id == exp_id)
            .with_for_update()
        ).one()
        if exp.settings_frozen_at is not None:
            if exp.settings != snapshot:
                raise SettingsFrozenError(
                    f"experiment {exp.namespace}/{exp.name}: analysis settings were frozen at "
                    f"{exp.settings_frozen_at.isoformat()} and cannot change"
                )
            return False
        conn.execute(
            sa.update(models.Experiment)
            .where(models.Experiment.id == exp.id)
            .values(
                settings=snapshot,
                settings_frozen_at=now,
                revenue_cap=revenue_cap,
                updated_at=now,
            )
        )
        if revenue_cap is not None:
            apply_cap(conn, exp.id, revenue_cap)
    return True


def _id_for(conn: sa.Connection, key: str) -> int:
    namespace, name = parse_key(key)
    found = conn.execute(
        sa.select(models.Experiment.id).where(
            models.Experiment.namespace == namespace, models.Experiment.name == name
        )
    ).scalar()
    if found is None:
        raise UnknownExperimentError(f"experiment {namespace}/{name} is not registered")
    return int(found)


def set_phase(engine: sa.Engine, exp_id: int, phase: str, *, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(models.Experiment)
            .where(models.Experiment.id == exp_id)
            .values(phase=phase, updated_at=now)
        )


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
    engine: sa.Engine, exp_id: int, state: Mapping[str, Any], look: Mapping[str, Any] | None = None
) -> None:
    """Persist the sequential tests' state (a restarted operator continues the same test)
    and, in the same statement, this look for the reports (one row per finalised minute)."""
    params: dict[str, Any] = {"e": exp_id, "state": json.dumps(state)}
    with engine.begin() as conn:
        if look is None:
            conn.execute(_SAVE_STATE, params)
        else:
            conn.execute(
                _SAVE_STATE_AND_LOOK,
                {**params, **look, "payload": json.dumps(look["payload"], default=str)},
            )


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


# --------------------------------------------------------------------------- decision log


def append_decision(
    conn: sa.Connection,
    exp_id: int,
    *,
    at: datetime,
    kind: str,
    actor: str,
    reason_code: str,
    reason: str,
    evidence: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> int | None:
    """Append one decision; with an ``idempotency_key`` already logged, write nothing (None)."""
    stmt = (
        pg_insert(models.Decision)
        .values(
            experiment_id=exp_id,
            at=at,
            kind=kind,
            actor=actor,
            reason_code=reason_code,
            reason=reason,
            evidence=dict(evidence or {}),
            idempotency_key=idempotency_key,
        )
        .on_conflict_do_nothing(index_elements=["experiment_id", "idempotency_key"])
        .returning(models.Decision.id)
    )
    found = conn.execute(stmt).scalar()
    return None if found is None else int(found)


def decisions(conn: sa.Connection, exp_id: int) -> list[models.Decision]:
    """The decision log of one experiment, oldest first."""
    with Session(bind=conn) as session:
        rows = list(
            session.scalars(
                sa.select(models.Decision)
                .where(models.Decision.experiment_id == exp_id)
                .order_by(models.Decision.at, models.Decision.id)
            )
        )
        session.expunge_all()
    return rows


# --------------------------------------------------------------------------- rollup windows


@dataclass(frozen=True)
class ArmTotals:
    """Sufficient statistics of one arm over a window, read from rollups."""

    n: int = 0
    revenue_sum: Decimal = Decimal(0)
    revenue_sum_sq: Decimal = Decimal(0)
    revenue_capped_sum: Decimal = Decimal(0)
    revenue_capped_sum_sq: Decimal = Decimal(0)
    revenue_nonzero: int = 0
    log_latency_sum: Decimal = Decimal(0)
    log_latency_sum_sq: Decimal = Decimal(0)
    errors: int = 0
    late_n: int = 0
    latency_hist: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(buckets.N_LATENCY_BUCKETS, dtype=np.int64)
    )


#: The summed columns of every rollup row (minute and hour), in table order.
ROLLUP_FIELDS = (
    "n",
    "revenue_sum",
    "revenue_sum_sq",
    "revenue_capped_sum",
    "revenue_capped_sum_sq",
    "revenue_nonzero",
    "log_latency_sum",
    "log_latency_sum_sq",
    "errors",
    "late_n",
)
_COLS = ", ".join(ROLLUP_FIELDS)
_SUM_COLS = ", ".join(f"sum({c}) AS {c}" for c in ROLLUP_FIELDS)

_WINDOW_SQL = sa.text(
    f"""
    WITH stats AS (
        SELECT arm, {_COLS} FROM rollups_hour
         WHERE experiment_id = :e AND arm IN (0, 1) AND period >= :h0 AND period < :h1
        UNION ALL
        SELECT arm, {_COLS} FROM rollups_minute
         WHERE experiment_id = :e AND arm IN (0, 1)
           AND ((period >= :start AND period < :h0) OR (period >= :h1 AND period < :end))
    ), lat AS (
        SELECT arm, bucket, count FROM latency_hour
         WHERE experiment_id = :e AND arm IN (0, 1) AND period >= :h0 AND period < :h1
        UNION ALL
        SELECT arm, bucket, count FROM latency_minute
         WHERE experiment_id = :e AND arm IN (0, 1)
           AND ((period >= :start AND period < :h0) OR (period >= :h1 AND period < :end))
    ), hist AS (
        SELECT arm, array_agg(bucket ORDER BY bucket) AS b, array_agg(c ORDER BY bucket) AS c
          FROM (SELECT arm, bucket, sum(count) AS c FROM lat GROUP BY arm, bucket) per_bucket
         GROUP BY arm
    )
    SELECT s.*, hist.b, hist.c
      FROM (SELECT arm, {_SUM_COLS} FROM stats GROUP BY arm) s
      LEFT JOIN hist USING (arm)
    """
)


def _check_minute(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name}: needs a timezone-aware datetime")
    if value.second or value.microsecond:
        raise ValueError(f"{name}: window bounds are whole minutes (got {value.isoformat()})")
    return value.astimezone(UTC)


def _ceil_hour(t: datetime) -> datetime:
    floor = t.replace(minute=0)
    return floor if floor == t else floor + timedelta(hours=1)


def window_totals(
    conn: sa.Connection, exp_id: int, start: datetime, end: datetime
) -> dict[str, ArmTotals]:
    """Per-arm totals and latency histograms over minutes ``[start, end)``, in one query.

    Whole hours inside the window are read from hourly rollups and the ragged ends from
    minute rollups, so a day-long window reads about fifty rows per arm, not 1,440.
    """
    start, end = _check_minute("start", start), _check_minute("end", end)
    if end < start:
        raise ValueError("end: the window ends before it starts")
    h0, h1 = _ceil_hour(start), end.replace(minute=0)
    if h1 <= h0:
        h0 = h1 = start
    rows = conn.execute(_WINDOW_SQL, {"e": exp_id, "start": start, "end": end, "h0": h0, "h1": h1})
    out = {name: ArmTotals() for name in models.ARM_CODES}
    for row in rows.mappings():
        hist = np.zeros(buckets.N_LATENCY_BUCKETS, dtype=np.int64)
        if row["b"] is not None:
            hist[np.asarray(row["b"], dtype=np.int64)] = np.asarray(row["c"], dtype=np.int64)
        values = {c: row[c] for c in ROLLUP_FIELDS}
        for c in ("n", "revenue_nonzero", "errors", "late_n"):
            values[c] = int(values[c])
        out[models.ARM_NAMES[row["arm"]]] = ArmTotals(**values, latency_hist=hist)
    return out


_SERIES_SQL = sa.text(
    f"""
    SELECT period, arm, {_COLS} FROM rollups_minute
     WHERE experiment_id = :e AND period >= :start AND period < :end
     ORDER BY period, arm
    """
)


def minute_series(
    conn: sa.Connection, exp_id: int, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per-minute, per-arm rollups over ``[start, end)`` for reports, in one query."""
    start, end = _check_minute("start", start), _check_minute("end", end)
    rows = conn.execute(_SERIES_SQL, {"e": exp_id, "start": start, "end": end}).mappings()
    return [{**row, "arm": models.ARM_NAMES[row["arm"]]} for row in rows]


def data_extent(conn: sa.Connection, exp_id: int) -> tuple[datetime, datetime] | None:
    """First and last minute with data for the experiment, or None."""
    row = conn.execute(
        sa.text("SELECT min(period), max(period) FROM rollups_minute WHERE experiment_id = :e"),
        {"e": exp_id},
    ).one()
    return None if row[0] is None else (row[0], row[1])


# --------------------------------------------------------------------------- rebuild


def apply_cap(conn: sa.Connection, exp_id: int, cap: float) -> None:
    """Cap the revenue sums of rollups built uncapped, reading only the rows above the cap.

    capped sum = sum − Σ (r − cap) and capped sum of squares = sum of squares − Σ (r² − cap²)
    over the rows with r > cap, in exact numeric arithmetic; every other column stays.
    """
    params = {"e": exp_id, "cap": cap}
    for table, unit in (("rollups_minute", "minute"), ("rollups_hour", "hour")):
        conn.execute(
            sa.text(
                f"""
                UPDATE {table} r
                   SET revenue_capped_sum = r.revenue_sum - x.excess,
                       revenue_capped_sum_sq = r.revenue_sum_sq - x.excess_sq
                  FROM (SELECT arm, date_trunc('{unit}', ts, 'UTC') AS period,
                               sum(revenue::numeric - CAST(:cap AS float8)::numeric) AS excess,
                               sum(revenue::numeric * revenue::numeric
                                   - CAST(:cap AS float8)::numeric * CAST(:cap AS float8)::numeric) AS excess_sq
                          FROM observations
                         WHERE experiment_id = :e AND revenue > :cap
                         GROUP BY 1, 2) x
                 WHERE r.experiment_id = :e AND r.arm = x.arm AND r.period = x.period
                """
            ),
            params,
        )


def load_analysis_state(conn: sa.Connection, exp_id: int) -> dict[str, Any]:
    """The persisted sequential state of an experiment ({} before its first look)."""
    found = conn.execute(
        sa.select(models.Experiment.analysis_state).where(models.Experiment.id == exp_id)
    ).scalar()
    return dict(found or {})


def freshness_and_state(conn: sa.Connection, exp_id: int) -> tuple[datetime | None, dict[str, Any]]:
    """The last minute with data and the persisted sequential state, in one round trip."""
    row = conn.execute(
        sa.text(
            "SELECT (SELECT max(period) FROM rollups_minute WHERE experiment_id = :e AND arm IN (0, 1)), "
            "analysis_state FROM experiments WHERE id = :e"
        ),
        {"e": exp_id},
    ).one()
    return row[0], dict(row[1] or {})


def revenue_quantile(
    conn: sa.Connection, exp_id: int, arm: str, start: datetime, end: datetime, q: float
) -> float | None:
    """The ``q`` quantile of per-request revenue of one arm over ``[start, end)`` (raw rows)."""
    if not 0 < q < 1:
        raise ValueError(f"q: must lie in (0, 1), got {q}")
    found = conn.execute(
        sa.text(
            "SELECT percentile_disc(:q) WITHIN GROUP (ORDER BY revenue) FROM observations "
            "WHERE experiment_id = :e AND arm = :a AND ts >= :s AND ts < :t"
        ),
        {"q": q, "e": exp_id, "a": models.ARM_CODES[arm], "s": start, "t": end},
    ).scalar()
    return None if found is None else float(found)
