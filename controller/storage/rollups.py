"""Reads of the rollups (window totals, minute series, data extent) and the cap rebuild.

Ingest keeps exact per-minute and per-hour sufficient statistics of every arm in the
rollup tables; the operator's analysis and the reports read them here, one statement per
query, never the raw observations. ``apply_cap`` (run when the settings freeze a revenue
cap) and ``revenue_quantile`` (the baseline's cap) are the only functions that read raw
rows. Every function runs in the caller's transaction and never commits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from analysis import buckets
from controller.storage import models

log = logging.getLogger(__name__)

#: Latencies below this many milliseconds are floored before taking logs.
LOG_LATENCY_FLOOR_MS = 0.01


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
    start, end, h0, h1 = _bounds(start, end)
    rows = conn.execute(_WINDOW_SQL, {"e": exp_id, "start": start, "end": end, "h0": h0, "h1": h1})
    out = {name: ArmTotals() for name in models.ARM_CODES}
    for row in rows.mappings():
        out[models.ARM_NAMES[row["arm"]]] = _totals(row)
    return out


_WINDOWS_SQL = sa.text(
    f"""
    WITH w AS (
        SELECT * FROM unnest(CAST(:e AS integer[]), CAST(:start AS timestamptz[]),
                             CAST(:end AS timestamptz[]), CAST(:h0 AS timestamptz[]),
                             CAST(:h1 AS timestamptz[]))
                      WITH ORDINALITY AS w(e, wstart, wend, h0, h1, i)
    ), stats AS (
        SELECT w.i, r.arm, {", ".join(f"r.{c}" for c in ROLLUP_FIELDS)}
          FROM w JOIN rollups_hour r ON r.experiment_id = w.e AND r.arm IN (0, 1)
                                    AND r.period >= w.h0 AND r.period < w.h1
        UNION ALL
        SELECT w.i, r.arm, {", ".join(f"r.{c}" for c in ROLLUP_FIELDS)}
          FROM w JOIN rollups_minute r ON r.experiment_id = w.e AND r.arm IN (0, 1)
           AND ((r.period >= w.wstart AND r.period < w.h0) OR (r.period >= w.h1 AND r.period < w.wend))
    ), lat AS (
        SELECT w.i, r.arm, r.bucket, r.count
          FROM w JOIN latency_hour r ON r.experiment_id = w.e AND r.arm IN (0, 1)
                                    AND r.period >= w.h0 AND r.period < w.h1
        UNION ALL
        SELECT w.i, r.arm, r.bucket, r.count
          FROM w JOIN latency_minute r ON r.experiment_id = w.e AND r.arm IN (0, 1)
           AND ((r.period >= w.wstart AND r.period < w.h0) OR (r.period >= w.h1 AND r.period < w.wend))
    ), hist AS (
        SELECT i, arm, array_agg(bucket ORDER BY bucket) AS b, array_agg(c ORDER BY bucket) AS c
          FROM (SELECT i, arm, bucket, sum(count) AS c FROM lat GROUP BY i, arm, bucket) per_bucket
         GROUP BY i, arm
    )
    SELECT s.*, hist.b, hist.c
      FROM (SELECT i, arm, {_SUM_COLS} FROM stats GROUP BY i, arm) s
      LEFT JOIN hist USING (i, arm)
    """
)


def _bounds(start: datetime, end: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    """A window's checked bounds and the whole hours inside it (``h0 == h1``: none)."""
    start, end = _check_minute("start", start), _check_minute("end", end)
    if end < start:
        raise ValueError("end: the window ends before it starts")
    h0, h1 = _ceil_hour(start), end.replace(minute=0)
    if h1 <= h0:
        h0 = h1 = start
    return start, end, h0, h1


def _totals(row: Any) -> ArmTotals:
    hist = np.zeros(buckets.N_LATENCY_BUCKETS, dtype=np.int64)
    if row["b"] is not None:
        hist[np.asarray(row["b"], dtype=np.int64)] = np.asarray(row["c"], dtype=np.int64)
    values = {c: row[c] for c in ROLLUP_FIELDS}
    for c in ("n", "revenue_nonzero", "errors", "late_n"):
        values[c] = int(values[c])
    return ArmTotals(**values, latency_hist=hist)


def windows_totals(
    conn: sa.Connection, windows: Sequence[tuple[int, datetime, datetime]]
) -> list[dict[str, ArmTotals]]:
    """:func:`window_totals` of many ``(experiment id, start, end)`` windows, in one query
    (the operator's pass reads every due experiment's windows at once); in their order."""
    if not windows:
        return []
    bounds = [_bounds(start, end) for _, start, end in windows]
    params = {
        "e": [e for e, _, _ in windows],
        "start": [b[0] for b in bounds],
        "end": [b[1] for b in bounds],
        "h0": [b[2] for b in bounds],
        "h1": [b[3] for b in bounds],
    }
    out = [{name: ArmTotals() for name in models.ARM_CODES} for _ in windows]
    for row in conn.execute(_WINDOWS_SQL, params).mappings():
        out[row["i"] - 1][models.ARM_NAMES[row["arm"]]] = _totals(row)
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


#: Revenues above the cap: raw rows, and the largest values of pre-aggregated cells whose
#: capped sums are still their uncapped sums (``revenue_tops.capped_at`` NULL).
_ABOVE_CAP = """
    SELECT arm, ts, revenue FROM observations WHERE experiment_id = :e AND revenue > :cap
    UNION ALL
    SELECT t.arm, t.period, v FROM revenue_tops t, unnest(t.revenues) AS v
     WHERE t.experiment_id = :e AND t.capped_at IS NULL AND v > :cap
"""


def apply_cap(conn: sa.Connection, exp_id: int, cap: float) -> None:
    """Cap the revenue sums of rollups built uncapped, reading only the values above the cap.

    capped sum = sum − Σ (r − cap) and capped sum of squares = sum of squares − Σ (r² − cap²)
    over the raw rows with r > cap, in exact numeric arithmetic; every other column stays.
    Pre-aggregated cells stored before the cap contribute their largest values
    (``revenue_tops``), which are exact for every cell whose values above the cap they hold
    (docs/scale.md); those cells are then marked capped.
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
                          FROM ({_ABOVE_CAP}) above
                         GROUP BY 1, 2) x
                 WHERE r.experiment_id = :e AND r.arm = x.arm AND r.period = x.period
                """
            ),
            params,
        )
    short = conn.execute(
        sa.text(
            "SELECT count(*) FROM revenue_tops WHERE experiment_id = :e AND capped_at IS NULL "
            "AND cardinality(revenues) < n "
            "AND (cardinality(revenues) = 0 OR revenues[cardinality(revenues)] > :cap)"
        ),
        params,
    ).scalar_one()
    if short:
        log.warning(
            "experiment %s: %d pre-aggregated cell(s) stored before the cap %g sent too few "
            "revenue_top values to be capped exactly; their capped sums stay too high",
            exp_id, short, cap,
        )  # fmt: skip
    conn.execute(
        sa.text(
            "UPDATE revenue_tops SET capped_at = :cap "
            "WHERE experiment_id = :e AND capped_at IS NULL"
        ),
        params,
    )


def revenue_quantile(
    conn: sa.Connection, exp_id: int, arm: str, start: datetime, end: datetime, q: float
) -> float | None:
    """The ``q`` quantile of per-request revenue of one arm over ``[start, end)``.

    ``percentile_disc``: the smallest value with at least a share ``q`` of the requests at
    or below it. Raw rows are read as they are; requests that arrived as pre-aggregated
    cells enter through their largest values (``revenue_tops``), which give the same value
    whenever the cells hold every value above it (``quantile_with_cells``).
    """
    if not 0 < q < 1:
        raise ValueError(f"q: must lie in (0, 1), got {q}")
    params = {"e": exp_id, "a": models.ARM_CODES[arm], "s": start, "t": end}
    total = conn.execute(
        sa.text(
            "SELECT coalesce(sum(n), 0) FROM rollups_minute "
            "WHERE experiment_id = :e AND arm = :a AND period >= :s AND period < :t"
        ),
        params,
    ).scalar_one()
    raw_n = conn.execute(
        sa.text(
            "SELECT count(*) FROM observations "
            "WHERE experiment_id = :e AND arm = :a AND ts >= :s AND ts < :t"
        ),
        params,
    ).scalar_one()
    if int(total) > int(raw_n):
        return _quantile_with_cells(conn, params, q, int(total), int(raw_n))
    found = conn.execute(
        sa.text(
            "SELECT percentile_disc(:q) WITHIN GROUP (ORDER BY revenue) FROM observations "
            "WHERE experiment_id = :e AND arm = :a AND ts >= :s AND ts < :t"
        ),
        {"q": q, "e": exp_id, "a": models.ARM_CODES[arm], "s": start, "t": end},
    ).scalar()
    return None if found is None else float(found)


def _quantile_with_cells(
    conn: sa.Connection, params: dict[str, Any], q: float, total: int, raw_n: int
) -> float | None:
    """``revenue_quantile`` over raw rows and pre-aggregated cells (``total`` requests).

    The quantile is the ``m``-th largest value, ``m = total − ceil(q·total) + 1`` (the rank
    ``percentile_disc`` takes). The candidate is the ``m``-th largest of the raw rows' and
    the cells' known values; it is exact when every cell that sent fewer values than its
    requests sent values down to the candidate or below (its other values can then not
    exceed it). Otherwise the true value lies above the candidate: it is returned with a
    warning naming how many cells fell short, and None when too few values are known.
    """
    exp_id, arm = params["e"], models.ARM_NAMES[params["a"]]
    k = max(math.ceil(q * total), 1)
    m = total - k + 1
    raw_top = conn.execute(
        sa.text(
            "SELECT revenue FROM observations "
            "WHERE experiment_id = :e AND arm = :a AND ts >= :s AND ts < :t "
            "ORDER BY revenue DESC LIMIT :m"
        ),
        {**params, "m": m},
    ).scalars()
    tops = conn.execute(
        sa.text(
            "SELECT n, revenues FROM revenue_tops "
            "WHERE experiment_id = :e AND arm = :a AND period >= :s AND period < :t"
        ),
        params,
    ).all()
    values = np.fromiter(raw_top, dtype=np.float64)
    known = [values] + [np.asarray(r.revenues, dtype=np.float64) for r in tops]
    merged = np.sort(np.concatenate(known))[::-1]
    unseen_cells = total - raw_n - sum(int(r.n) for r in tops)
    if len(merged) < m:
        log.warning(
            "experiment %s: the %s quantile of %s revenue needs the %d largest values; "
            "raw rows and cells hold %d (cells must send more revenue_top values)",
            exp_id, q, arm, m, len(merged),
        )  # fmt: skip
        return None
    candidate = float(merged[m - 1])
    short = sum(
        1 for r in tops if len(r.revenues) < r.n and (not r.revenues or r.revenues[-1] > candidate)
    ) + (1 if unseen_cells > 0 else 0)
    if short:
        log.warning(
            "experiment %s: the %s quantile of %s revenue is at least %g but not exact: "
            "%d cell(s) sent too few revenue_top values",
            exp_id, q, arm, candidate, short,
        )  # fmt: skip
    return candidate


def champion_recent_totals(
    conn: sa.Connection, champion: str, minutes: int = 60
) -> tuple[dict[str, ArmTotals], float] | None:
    """Per-arm totals over the last ``minutes`` of data of the newest experiment whose champion
    is ``champion``, and the minutes they cover; None when there is none.

    What ``canaryctl start`` forecasts from when no ``--traffic`` is given: the model about
    to be challenged served this traffic in its latest experiment (as champion).
    """
    found = _newest_extent(conn, champion)
    if found is None:
        return None
    exp_id, (first, last) = found
    end = last + timedelta(minutes=1)
    start = max(first, end - timedelta(minutes=minutes))
    return window_totals(conn, exp_id, start, end), (end - start).total_seconds() / 60


def _newest_extent(
    conn: sa.Connection, champion: str, *, span: timedelta = timedelta(0), among: int = 1
) -> tuple[int, tuple[datetime, datetime]] | None:
    """The newest experiment whose champion is ``champion`` with data spanning ``span`` or
    more (among its ``among`` newest), and the extent of its data."""
    ids = conn.execute(
        sa.select(models.Experiment.id)
        .where(models.Experiment.spec["champion"]["name"].astext == champion)
        .order_by(models.Experiment.created_at.desc(), models.Experiment.id.desc())
        .limit(among)
    ).scalars()
    for exp_id in ids:
        extent = data_extent(conn, exp_id)
        if extent is not None and extent[1] + timedelta(minutes=1) - extent[0] >= span:
            return exp_id, extent
    return None


DAY = timedelta(days=1)


#: A champion's day hour by hour: each hour's per-arm totals and the minutes it covers.
ChampionDay = list[tuple[dict[str, ArmTotals], float]]


def champion_day_totals(conn: sa.Connection, champion: str, at: datetime) -> ChampionDay | None:
    """Hour by hour from ``at``'s time of day, the champion's traffic at the same clock hours.

    Read from the last day of data of the newest of the champion's five latest experiments
    that holds a whole day (a running experiment usually does not: then the one before),
    cut into 24 hours from its end: the per-arm totals of each, starting with the hour
    that begins nearest to ``at``'s time of day (within 30 minutes), and the minutes each
    covers (60). None without such a day.

    What ``canaryctl start`` and the operator forecast from (a ``Schedule``): on a platform
    whose traffic and revenue follow the time of day, the day before says more about the
    run's hours than the last hour does.
    """
    found = _newest_extent(conn, champion, span=DAY, among=5)
    if found is None:
        return None
    exp_id, (_, last) = found
    end = last + timedelta(minutes=1)
    base = end - DAY
    hour = timedelta(hours=1)
    first = round((at - base) / hour) % 24  # the hour of that day nearest to ``at``'s time
    starts = [base + ((first + i) % 24) * hour for i in range(24)]
    totals = windows_totals(conn, [(exp_id, start, start + hour) for start in starts])
    return [(t, 60.0) for t in totals]
