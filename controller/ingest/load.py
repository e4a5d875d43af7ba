"""The one loading core: validated rows → binary COPY into observations + exact rollups.

All ingest paths end here. A batch is loaded in one transaction: ``load`` runs in the
caller's (tests, or a caller with more to write atomically), ``load_table`` in one of its
own (the CLI, the HTTP endpoint, the writer, the simulator). Its key is recorded
(a second delivery of the same key is answered from that record and loads nothing),
good rows are copied with binary COPY, the minute and hour rollups and latency
histograms are upserted from the same numpy arrays, and rejected rows are stored with
their reasons. A failure anywhere before commit leaves no trace of the batch.
Policy: bad rows are quarantined (``ingest_rejects``) while good rows load, and
``loaded + rejected == received`` always holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import sqlalchemy as sa

from analysis import buckets
from controller.clock import SYSTEM_CLOCK, Clock
from controller.ingest import pgbinary, validate
from controller.storage import models, partitions, rollups

FaultHook = Callable[[str], None]
_MINUTE_US = 60_000_000
_HOUR_US = 3_600_000_000
_OBS_COLUMNS = "experiment_id, arm, ts, unit_id, revenue, latency_ms, error, late, batch_id"


@dataclass(frozen=True)
class IngestResult:
    """What happened to one delivered batch."""

    batch_key: str
    received: int
    loaded: int
    rejected: int
    late: int
    duplicate: bool
    rejects: tuple[validate.Reject, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_key,
            "received": self.received,
            "loaded": self.loaded,
            "rejected": self.rejected,
            "late": self.late,
            "duplicate": self.duplicate,
            "rejects": [{"row": r.row, "reason": r.reason} for r in self.rejects[:100]],
        }


def registry(conn: sa.Connection) -> dict[str, validate.ExperimentInfo]:
    """Registered experiments by ``namespace/name``, as validation needs them."""
    rows = conn.execute(
        sa.select(
            models.Experiment.id,
            models.Experiment.namespace,
            models.Experiment.name,
            models.Experiment.revenue_cap,
            models.Experiment.allowed_lateness_seconds,
        )
    ).all()
    return {
        f"{r.namespace}/{r.name}": validate.ExperimentInfo(
            r.id, r.revenue_cap, timedelta(seconds=r.allowed_lateness_seconds)
        )
        for r in rows
    }


@dataclass(frozen=True)
class _Batch:
    """A validated batch and what loading it needs: the registry it was checked against, its days."""

    table: pa.Table
    prep: validate.Prepared
    info: dict[int, validate.ExperimentInfo]
    days: frozenset[date]


def _prepare(
    conn: sa.Connection, table: pa.Table, now: datetime, future_tolerance: timedelta
) -> _Batch:
    reg = registry(conn)
    prep = validate.prepare(table, reg, now=now, future_tolerance=future_tolerance)
    days = frozenset(d.astype(date) for d in np.unique(prep.ts.astype("datetime64[D]")))
    return _Batch(table, prep, {info.id: info for info in reg.values()}, days)


def _check_batch_key(batch_key: str) -> None:
    if not batch_key:
        raise ValueError("batch_key: every batch needs a non-empty id")


def load(
    conn: sa.Connection,
    table: pa.Table,
    *,
    batch_key: str,
    source: str,
    clock: Clock = SYSTEM_CLOCK,
    future_tolerance: timedelta = timedelta(minutes=5),
    fault: FaultHook | None = None,
) -> IngestResult:
    """Validate and load one batch in the caller's transaction (which it never commits).

    The missing partitions are created in the same transaction, so they lock
    ``observations`` until the caller commits: long-lived callers use ``load_table``.
    """
    _check_batch_key(batch_key)
    now = clock.now()
    done = _stored_result(conn, batch_key)
    if done is not None:
        return done
    batch = _prepare(conn, table, now, future_tolerance)
    partitions.ensure_partitions(conn, batch.days)
    return _write(conn, batch, batch_key=batch_key, source=source, now=now, fault=fault)


def load_table(
    engine: sa.Engine,
    table: pa.Table,
    *,
    batch_key: str,
    source: str,
    clock: Clock = SYSTEM_CLOCK,
    future_tolerance: timedelta = timedelta(minutes=5),
    fault: FaultHook | None = None,
) -> IngestResult:
    """Validate and load one batch in a transaction of its own (see the module docstring).

    The entry point of the CLI, the HTTP endpoint and the writer: missing partitions are
    created in a short transaction before the batch's, so DDL never runs inside a load.
    """
    _check_batch_key(batch_key)
    now = clock.now()
    with engine.connect() as conn:
        done = _stored_result(conn, batch_key)
        if done is not None:
            return done
        batch = _prepare(conn, table, now, future_tolerance)
    if batch.days:
        with engine.begin() as conn:
            partitions.ensure_partitions(conn, batch.days)
    with engine.begin() as conn:
        return _write(conn, batch, batch_key=batch_key, source=source, now=now, fault=fault)


def _write(
    conn: sa.Connection,
    batch: _Batch,
    *,
    batch_key: str,
    source: str,
    now: datetime,
    fault: FaultHook | None,
) -> IngestResult:
    """Record the batch's key, copy its good rows, upsert the rollups, store its rejects."""
    prep = batch.prep
    info = _lock_settings(conn, prep, batch.info) if prep.loaded else batch.info
    late = _late_mask(prep, info, now)
    batch_id = conn.execute(
        sa.text(
            "INSERT INTO ingest_batches (batch_key, source, received, loaded, rejected, late, at) "
            "VALUES (:k, :s, :r, :l, :j, :t, :at) ON CONFLICT (batch_key) DO NOTHING RETURNING id"
        ),
        {
            "k": batch_key,
            "s": source,
            "r": prep.received,
            "l": prep.loaded,
            "j": len(prep.rejects),
            "t": int(late.sum()),
            "at": now,
        },
    ).scalar()
    if batch_id is None:  # delivered concurrently and committed first: read its record
        stored = _stored_result(conn, batch_key)
        assert stored is not None
        return stored
    raw = conn.connection.driver_connection
    if prep.loaded:
        _copy_observations(raw, prep, late, batch_id)
        if fault:
            fault("after_copy")
        _upsert_rollups(raw, prep, late, info)
        if fault:
            fault("after_rollups")
    if prep.rejects:
        _store_rejects(raw, batch.table, prep.rejects, batch_id)
    return IngestResult(
        batch_key,
        prep.received,
        prep.loaded,
        len(prep.rejects),
        int(late.sum()),
        False,
        tuple(prep.rejects),
    )


def _lock_settings(
    conn: sa.Connection, prep: validate.Prepared, info: dict[int, validate.ExperimentInfo]
) -> dict[int, validate.ExperimentInfo]:
    """Share-lock the batch's experiments and read their cap and lateness inside the transaction.

    Freezing the settings takes the row for update, so a batch either commits before the
    freeze (whose rebuild then covers it) or sees the frozen cap and lateness; no batch is
    capped or flagged with stale ones.
    """
    ids = sorted({int(i) for i in np.unique(prep.experiment_id)})
    rows = conn.execute(
        sa.text(
            "SELECT id, revenue_cap, allowed_lateness_seconds FROM experiments "
            "WHERE id = ANY(:ids) ORDER BY id FOR SHARE"
        ),
        {"ids": ids},
    ).all()
    out = dict(info)
    for exp_id, cap, lateness in rows:
        out[exp_id] = validate.ExperimentInfo(exp_id, cap, timedelta(seconds=lateness))
    return out


def _stored_result(conn: sa.Connection, batch_key: str) -> IngestResult | None:
    row = conn.execute(
        sa.text("SELECT received, loaded, rejected, late FROM ingest_batches WHERE batch_key = :k"),
        {"k": batch_key},
    ).first()
    if row is None:
        return None
    return IngestResult(batch_key, row.received, row.loaded, row.rejected, row.late, True)


def _late_mask(
    prep: validate.Prepared, info: dict[int, validate.ExperimentInfo], now: datetime
) -> npt.NDArray[np.bool_]:
    """Rows whose minute was already closed for testing (minute end + allowed lateness ≤ now)."""
    lateness_us = np.zeros(len(prep.experiment_id), dtype=np.int64)
    for exp_id, exp in info.items():
        lateness_us[prep.experiment_id == exp_id] = exp.allowed_lateness // timedelta(
            microseconds=1
        )
    minute_end = (prep.ts.astype(np.int64) // _MINUTE_US + 1) * _MINUTE_US
    now_us = int(now.astimezone(UTC).timestamp() * 1_000_000)
    return minute_end + lateness_us <= now_us


def _copy_observations(
    raw: Any, prep: validate.Prepared, late: npt.NDArray[np.bool_], batch_id: int
) -> None:
    n = prep.loaded
    unit = prep.unit_id if prep.unit_id is not None else np.full(n, None, dtype=object)
    payload = pgbinary.encode(
        [
            pgbinary.Column("int4", prep.experiment_id),
            pgbinary.Column("int2", prep.arm),
            pgbinary.Column("timestamptz", prep.ts),
            pgbinary.Column("text", unit),
            pgbinary.Column("float8", prep.revenue),
            pgbinary.Column("float8", prep.latency_ms),
            pgbinary.Column("bool", prep.error),
            pgbinary.Column("bool", late),
            pgbinary.Column("int8", np.full(n, batch_id, dtype=np.int64)),
        ]
    )
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY observations ({_OBS_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        view = memoryview(payload)
        for start in range(0, len(view), 8 << 20):
            copy.write(view[start : start + (8 << 20)])


_ROLLUP_FIELDS = rollups.ROLLUP_FIELDS


def _group_sums(
    prep: validate.Prepared, late: npt.NDArray[np.bool_], info: dict[int, validate.ExperimentInfo]
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], dict[str, npt.NDArray[Any]], npt.NDArray[np.int64]
]:
    """Per (experiment, arm, minute) group: keys, per-row group index, sums."""
    minute = prep.ts.astype(np.int64) // _MINUTE_US
    key = (prep.experiment_id.astype(np.int64) << 33) | (prep.arm.astype(np.int64) << 32) | minute
    keys, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    cap = np.full(len(prep.revenue), np.inf)
    for exp_id, exp in info.items():
        if exp.revenue_cap is not None:
            cap[prep.experiment_id == exp_id] = exp.revenue_cap
    capped = np.minimum(prep.revenue, cap)
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
    bucket = buckets.latency_bucket(prep.latency_ms)
    pair, pair_count = np.unique(inverse.astype(np.int64) * 1024 + bucket, return_counts=True)
    hist = np.stack([pair // 1024, pair % 1024, pair_count], axis=1)
    return keys, inverse, sums, hist


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


def _upsert_rollups(
    raw: Any,
    prep: validate.Prepared,
    late: npt.NDArray[np.bool_],
    info: dict[int, validate.ExperimentInfo],
) -> None:
    """Add this batch's sums and histograms to the minute and hour rollups (exact numeric)."""
    keys, _, sums, hist = _group_sums(prep, late, info)
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


def _store_rejects(
    raw: Any, table: pa.Table, rejects: list[validate.Reject], batch_id: int
) -> None:
    rows = table.take(pa.array([r.row - 1 for r in rejects])).to_pylist()
    with (
        raw.cursor() as cur,
        cur.copy("COPY ingest_rejects (batch_id, row_number, reason, raw) FROM STDIN") as copy,
    ):
        for reject, row in zip(rejects, rows, strict=True):
            copy.write_row(
                (batch_id, reject.row, reject.reason, json.dumps(row, default=str, allow_nan=True))
            )
