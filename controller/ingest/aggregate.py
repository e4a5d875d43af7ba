"""Exact rollups of a validated batch: per-minute and per-hour sums and latency histograms.

``load`` calls ``upsert_rollups`` in the batch's transaction, after the binary COPY of its rows:
the sums are computed in numpy from the same arrays (``group_sums``, one part of a batch at
a time, the parts' sums then added with ``merge``), copied into temporary tables
and added to ``rollups_minute``/``rollups_hour`` and ``latency_minute``/``latency_hour``
with one upsert each (exact ``numeric`` arithmetic in Postgres). Revenue is capped with the
experiment's frozen cap, if any. This module reads no clock and commits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from analysis import buckets
from controller.ingest import pgbinary, validate
from controller.storage import rollups

_MINUTE_US = 60_000_000
_HOUR_US = 3_600_000_000

_ROLLUP_FIELDS = rollups.ROLLUP_FIELDS


@dataclass(frozen=True)
class Groups:
    """Sums of some validated rows per (experiment, arm, minute) group, and their histograms.

    ``keys`` are the groups' ``(experiment << 33) | (arm << 32) | minute`` keys, sorted and
    distinct; ``sums`` holds one array per rollup field, aligned with ``keys``; ``hist`` has
    one row ``(group index, latency bucket, count)`` per non-empty bucket of a group.
    """

    keys: npt.NDArray[np.int64]
    sums: dict[str, npt.NDArray[Any]]
    hist: npt.NDArray[np.int64]


def group_sums(
    prep: validate.Prepared, late: npt.NDArray[np.bool_], info: dict[int, validate.ExperimentInfo]
) -> Groups:
    """The sums and histograms of ``prep``'s rows per (experiment, arm, minute) group."""
    minute = prep.ts.astype(np.int64) // _MINUTE_US
    key = group_key(prep.experiment_id, prep.arm, minute)
    keys, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    del key, minute
    cap = np.full(len(prep.revenue), np.inf)
    for exp_id, exp in info.items():
        if exp.revenue_cap is not None:
            cap[prep.experiment_id == exp_id] = exp.revenue_cap
    capped = np.minimum(prep.revenue, cap)
    del cap
    log_lat = np.log(np.maximum(prep.latency_ms, rollups.LOG_LATENCY_FLOOR_MS))
    g = len(keys)

    def total(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        # with weights, bincount returns float64 (numpy's stubs say int)
        return np.bincount(inverse, weights=values, minlength=g)  # type: ignore[return-value]

    sums: dict[str, npt.NDArray[Any]] = {
        "n": np.bincount(inverse, minlength=g),
        "revenue_sum": total(prep.revenue),
        "revenue_sum_sq": total(prep.revenue * prep.revenue),
        "revenue_capped_sum": total(capped),
        "revenue_capped_sum_sq": total(capped * capped),
        "revenue_nonzero": np.bincount(inverse, weights=prep.revenue > 0, minlength=g).astype(
            np.int64
        ),
        "log_latency_sum": total(log_lat),
        "log_latency_sum_sq": total(log_lat * log_lat),
        "errors": np.bincount(inverse, weights=prep.error, minlength=g).astype(np.int64),
        "late_n": np.bincount(inverse, weights=late, minlength=g).astype(np.int64),
    }
    del capped, log_lat
    bucket = buckets.latency_bucket(prep.latency_ms)
    pair, pair_count = np.unique(inverse.astype(np.int64) * 1024 + bucket, return_counts=True)
    hist = np.stack([pair // 1024, pair % 1024, pair_count], axis=1)
    return Groups(keys, sums, hist)


def merge(parts: list[Groups]) -> Groups:
    """The groups of several parts of one batch as one: sums and bucket counts added."""
    if len(parts) == 1:
        return parts[0]
    keys, inverse = np.unique(np.concatenate([p.keys for p in parts]), return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = {
        f: np.bincount(
            inverse, weights=np.concatenate([p.sums[f] for p in parts]), minlength=len(keys)
        ).astype(np.int64 if f in _INT_FIELDS else np.float64)
        for f in _ROLLUP_FIELDS
    }
    group = np.searchsorted(keys, np.concatenate([p.keys[p.hist[:, 0]] for p in parts]))
    pair, pair_inverse = np.unique(
        group * 1024 + np.concatenate([p.hist[:, 1] for p in parts]), return_inverse=True
    )
    count = np.bincount(
        pair_inverse.reshape(-1), weights=np.concatenate([p.hist[:, 2] for p in parts])
    ).astype(np.int64)
    return Groups(keys, sums, np.stack([pair // 1024, pair % 1024, count], axis=1))


def _decode(
    keys: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    return keys >> 33, (keys >> 32) & 1, keys & 0xFFFFFFFF


_INT_FIELDS = {"n", "revenue_nonzero", "errors", "late_n"}
_TEMP_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS _rollup_in (experiment_id int4, arm int2, period timestamptz, "
    + ", ".join(f"{f} {'int8' if f in _INT_FIELDS else 'float8'}" for f in _ROLLUP_FIELDS)
    + ") ON COMMIT DELETE ROWS; "
    "CREATE TEMP TABLE IF NOT EXISTS _latency_in (experiment_id int4, arm int2, period timestamptz, "
    "bucket int2, count int8) ON COMMIT DELETE ROWS"
)


def _periods(index: npt.NDArray[np.int64], unit_us: int) -> npt.NDArray[np.datetime64]:
    return (index * unit_us).astype("datetime64[us]")


def _copy_in(cur: Any, table: str, columns: list[pgbinary.Column]) -> None:
    cur.execute(f"TRUNCATE {table}")
    with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(pgbinary.encode(columns))


def upsert_rollups(raw: Any, groups: Groups) -> None:
    """Add a batch's sums and histograms to the minute and hour rollups (exact numeric)."""
    upsert_groups(raw, groups.keys, groups.sums, groups.hist)


def group_key(
    experiment_id: npt.NDArray[np.integer[Any]],
    arm: npt.NDArray[np.integer[Any]],
    minute: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """One int64 per (experiment, arm, minute since the epoch): the key ``upsert_groups`` takes."""
    return (experiment_id.astype(np.int64) << 33) | (arm.astype(np.int64) << 32) | minute


def upsert_groups(
    raw: Any,
    keys: npt.NDArray[np.int64],
    sums: dict[str, npt.NDArray[Any]],
    hist: npt.NDArray[np.int64],
) -> None:
    """Add per-minute sums to the minute and hour rollups and latency histograms.

    ``keys`` are distinct ``group_key`` values, ``sums`` one array per ``ROLLUP_FIELDS``
    name aligned with them, ``hist`` rows of (index into ``keys``, bucket, count) with each
    (index, bucket) pair once. Both the raw path and pre-aggregated cells end here.
    """
    exp, arm, minute = _decode(keys)
    hkeys, hinv = np.unique((exp << 33) | (arm << 32) | (minute // 60), return_inverse=True)
    hinv = hinv.reshape(-1)
    hsums = {
        f: np.bincount(hinv, weights=v, minlength=len(hkeys)).astype(v.dtype)
        for f, v in sums.items()
    }
    hexp, harm, hhour = _decode(hkeys)
    # latency histograms per minute group, then summed per hour group
    hpair, hpair_inv = np.unique(hinv[hist[:, 0]] * 1024 + hist[:, 1], return_inverse=True)
    hcount = np.bincount(hpair_inv.reshape(-1), weights=hist[:, 2]).astype(np.int64)
    hgroup = hpair // 1024
    with raw.cursor() as cur:
        cur.execute(_TEMP_TABLES)
        for table, e, a, periods, s in (
            ("rollups_minute", exp, arm, _periods(minute, _MINUTE_US), sums),
            ("rollups_hour", hexp, harm, _periods(hhour, _HOUR_US), hsums),
        ):
            _copy_in(
                cur,
                "_rollup_in",
                [
                    pgbinary.Column("int4", e.astype(np.int32)),
                    pgbinary.Column("int2", a.astype(np.int16)),
                    pgbinary.Column("timestamptz", periods),
                ]
                + [
                    pgbinary.Column("int8" if f in _INT_FIELDS else "float8", s[f])
                    for f in _ROLLUP_FIELDS
                ],
            )
            casts = ", ".join(f if f in _INT_FIELDS else f"{f}::numeric" for f in _ROLLUP_FIELDS)
            updates = ", ".join(f"{f} = {table}.{f} + excluded.{f}" for f in _ROLLUP_FIELDS)
            cur.execute(
                f"INSERT INTO {table} (experiment_id, arm, period, {', '.join(_ROLLUP_FIELDS)}) "
                f"SELECT experiment_id, arm, period, {casts} FROM _rollup_in "
                "ORDER BY experiment_id, arm, period "
                f"ON CONFLICT (experiment_id, arm, period) DO UPDATE SET {updates}"
            )
        for table, e, a, periods, b, c in (
            ("latency_minute", exp[hist[:, 0]], arm[hist[:, 0]],
             _periods(minute[hist[:, 0]], _MINUTE_US), hist[:, 1], hist[:, 2]),
            ("latency_hour", hexp[hgroup], harm[hgroup],
             _periods(hhour[hgroup], _HOUR_US), hpair % 1024, hcount),
        ):  # fmt: skip
            _copy_in(
                cur,
                "_latency_in",
                [
                    pgbinary.Column("int4", e.astype(np.int32)),
                    pgbinary.Column("int2", a.astype(np.int16)),
                    pgbinary.Column("timestamptz", periods),
                    pgbinary.Column("int2", b.astype(np.int16)),
                    pgbinary.Column("int8", c.astype(np.int64)),
                ],
            )
            cur.execute(
                f"INSERT INTO {table} SELECT * FROM _latency_in "
                "ORDER BY experiment_id, arm, period, bucket "
                "ON CONFLICT (experiment_id, arm, period, bucket) "
                f"DO UPDATE SET count = {table}.count + excluded.count"
            )
