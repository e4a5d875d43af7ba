"""The one loading core: validated rows → binary COPY into observations + exact rollups.

All ingest paths end here. A batch is loaded in one transaction: ``load`` runs in the
caller's (tests, or a caller with more to write atomically), ``load_table`` in one of its
own (the CLI, the HTTP endpoint, the writer, the simulator). Its key is recorded (a second
delivery of the same key is answered from that record and loads nothing), good rows are
copied with binary COPY, the minute and hour rollups and latency histograms are upserted
from the same numpy arrays (``aggregate``), and rejected rows are stored with their
reasons. A failure anywhere before commit leaves no trace of the batch.
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

from controller.clock import SYSTEM_CLOCK, Clock
from controller.ingest import aggregate, pgbinary, validate
from controller.storage import models, partitions

FaultHook = Callable[[str], None]
_MINUTE_US = 60_000_000
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
        aggregate.upsert_rollups(raw, prep, late, info)
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
