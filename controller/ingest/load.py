"""The one loading core: validated rows → binary COPY into observations + exact rollups.

All ingest paths end here. A batch is loaded in one transaction: ``load`` runs in the
caller's (tests, or a caller with more to write atomically), ``load_table`` in one of its
own (the HTTP endpoint, the writer, the simulator; the CLI runs a file's chunks through
``load`` in one transaction). Its key is recorded with a hash of its content (a second
delivery of the same key and content is answered from that record and loads nothing; the
same key with other content is a ``BatchConflict``); then, one part of the batch at a time
(``SLICE_ROWS`` rows in ``load``, the whole batch in ``load_table``), the partitions it needs
are created, its good rows are copied with binary COPY and its rejected rows stored with
their reasons; the minute and hour rollups and latency histograms are summed from the same
numpy arrays, part by part, and upserted once (``aggregate``); last the batch's counts are
recorded. All of it happens in the batch's one transaction, so a failure anywhere before
commit leaves no trace of the batch, not even a partition.
Policy: bad rows are quarantined (``ingest_rejects``) while good rows load, and
``loaded + rejected == received`` always holds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from controller.clock import SYSTEM_CLOCK, Clock
from controller.ingest import aggregate, pgbinary, validate
from controller.storage import models, partitions

FaultHook = Callable[[str], None]
_MINUTE_US = 60_000_000
_OBS_COLUMNS = "experiment_id, arm, ts, unit_id, revenue, latency_ms, error, late, batch_id"


class BatchConflict(ValueError):
    """A known batch id arrived with a different body; nothing of it is stored (HTTP 409)."""


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


SLICE_ROWS = 16_384  # rows validated, encoded and copied at a time by ``load``


@dataclass(frozen=True)
class _Part:
    """Some consecutive rows of a batch, validated: its table, where it starts, its days."""

    table: pa.Table
    start: int  # 0-based position of the part's first row in the batch
    prep: validate.Prepared
    days: frozenset[date]


def _part(
    table: pa.Table,
    start: int,
    reg: dict[str, validate.ExperimentInfo],
    now: datetime,
    future_tolerance: timedelta,
) -> _Part:
    prep = validate.prepare(table, reg, now=now, future_tolerance=future_tolerance)
    days = frozenset(d.astype(date) for d in np.unique(prep.ts.astype("datetime64[D]")))
    return _Part(table, start, prep, days)


def _slices(
    tables: Iterable[pa.Table],
    reg: dict[str, validate.ExperimentInfo],
    now: datetime,
    future_tolerance: timedelta,
) -> Iterator[_Part]:
    """The batch's parts of at most ``SLICE_ROWS`` rows, each validated only when reached."""
    start = 0
    for table in tables:
        for offset in range(0, max(table.num_rows, 1), SLICE_ROWS):
            part = table.slice(offset, SLICE_ROWS)
            yield _part(part, start, reg, now, future_tolerance)
            start += part.num_rows
        del table


def _check_batch_key(batch_key: str) -> None:
    if not batch_key:
        raise ValueError("batch_key: every batch needs a non-empty id")


class _HashSink:
    """A write-only file object that only feeds a SHA-256."""

    closed = False

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def content_hash(table: pa.Table) -> str:
    """``sha256:…`` of the table's schema and rows (its Arrow IPC stream, hashed as written)."""
    sink = _HashSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as stream:
        for batch in table.to_batches(max_chunksize=1 << 16):
            stream.write_batch(batch)
    return "sha256:" + sink.hash.hexdigest()


def load(
    conn: sa.Connection,
    table: pa.Table | Iterable[pa.Table],
    *,
    batch_key: str,
    source: str,
    clock: Clock = SYSTEM_CLOCK,
    future_tolerance: timedelta = timedelta(minutes=5),
    fault: FaultHook | None = None,
    digest: str | None = None,
    row_offset: int = 0,
    precreate: Callable[[frozenset[date]], object] | None = None,
) -> IngestResult:
    """Validate and load one batch in the caller's transaction (which it never commits).

    ``table`` is the batch, or its consecutive parts (tables of one set of columns) read
    only as they are needed: then ``digest`` is required. Raises ``validate.BatchRefused``
    for a batch unusable as a whole and ``BatchConflict`` for a known id with another body;
    either way nothing is written. ``digest`` identifies the body (default:
    ``content_hash(table)``); a caller that hashed the delivered bytes may pass that
    instead. The batch is validated, copied and summed ``SLICE_ROWS`` rows at a time, so
    beside the parts being read only one slice's working set is held (docs/ingest.md,
    "Large files"). Rejects are numbered from ``row_offset + 1`` (stored and returned), so
    a file loaded in chunks numbers them by their row in the file.

    The missing partitions are created in the same transaction, so they lock
    ``observations`` until the caller commits: keep the transaction short. ``precreate``,
    if given, is called first with the days to create while this call has copied nothing
    yet (to create them in a short transaction of its own; the caller's must hold no lock
    on ``observations`` then).
    """
    _check_batch_key(batch_key)
    now = clock.now()
    if digest is None:
        if not isinstance(table, pa.Table):
            raise ValueError("digest: a batch given in parts needs the digest of its body")
        digest = content_hash(table)
    done = _stored_result(conn, batch_key, digest)
    if done is not None:
        return done
    tables = iter([table] if isinstance(table, pa.Table) else table)
    first = next(tables, None)
    if first is None:
        raise validate.BatchError("the batch has no parts (and so no columns)")
    reg = registry(conn)
    # the whole-batch checks (columns, their types) on no rows, so no slice can refuse it
    validate.prepare(first.slice(0, 0), reg, now=now, future_tolerance=future_tolerance)
    return _write(
        conn,
        _slices(itertools.chain([first], tables), reg, now, future_tolerance),
        reg,
        batch_key=batch_key,
        digest=digest,
        source=source,
        now=now,
        fault=fault,
        row_offset=row_offset,
        precreate=precreate,
    )


def load_table(
    engine: sa.Engine,
    table: pa.Table,
    *,
    batch_key: str,
    source: str,
    clock: Clock = SYSTEM_CLOCK,
    future_tolerance: timedelta = timedelta(minutes=5),
    fault: FaultHook | None = None,
    digest: str | None = None,
) -> IngestResult:
    """Validate and load one batch in a transaction of its own (see the module docstring).

    The entry point of the HTTP endpoint, the writer and the simulator. Validation runs
    before the transaction, on the whole batch (the server's row limit bounds it); the
    partitions the batch needs are created inside it (a new day's partition briefly locks
    ``observations`` until the batch commits). Concurrent deliveries of one id: one loads,
    the others get its record as a duplicate.
    """
    _check_batch_key(batch_key)
    now = clock.now()
    digest = digest or content_hash(table)
    with engine.connect() as conn:
        done = _stored_result(conn, batch_key, digest)
        if done is not None:
            return done
        reg = registry(conn)
        whole = _part(table, 0, reg, now, future_tolerance)
    with engine.begin() as conn:
        return _write(
            conn,
            [whole],
            reg,
            batch_key=batch_key,
            digest=digest,
            source=source,
            now=now,
            fault=fault,
        )


def claim_batch(
    conn: sa.Connection,
    batch_key: str,
    digest: str,
    source: str,
    now: datetime,
    *,
    received: int = 0,
    loaded: int = 0,
    rejected: int = 0,
    late: int = 0,
) -> int | IngestResult:
    """Record a batch's key (with its counts, when known now): its id, or the stored result
    when a concurrent delivery of the same id committed first."""
    batch_id = conn.execute(
        sa.text(
            "INSERT INTO ingest_batches "
            "(batch_key, source, received, loaded, rejected, late, at, content_hash) "
            "VALUES (:k, :s, :r, :l, :j, :t, :at, :h) "
            "ON CONFLICT (batch_key) DO NOTHING RETURNING id"
        ),
        {
            "k": batch_key,
            "h": digest,
            "s": source,
            "r": received,
            "l": loaded,
            "j": rejected,
            "t": late,
            "at": now,
        },
    ).scalar()
    if batch_id is None:
        stored = _stored_result(conn, batch_key, digest)
        assert stored is not None
        return stored
    return int(batch_id)


def _write(
    conn: sa.Connection,
    parts: Iterable[_Part],
    reg: dict[str, validate.ExperimentInfo],
    *,
    batch_key: str,
    digest: str,
    source: str,
    now: datetime,
    fault: FaultHook | None,
    row_offset: int = 0,
    precreate: Callable[[frozenset[date]], object] | None = None,
) -> IngestResult:
    """Record the batch's key, then part by part create its partitions, copy its good rows
    and store its rejects; then upsert the rollups of all parts and the batch's counts."""
    batch_id = claim_batch(conn, batch_key, digest, source, now)
    if isinstance(batch_id, IngestResult):  # delivered concurrently and committed first
        return batch_id
    raw = conn.connection.driver_connection
    info = {exp.id: exp for exp in reg.values()}
    locked: set[int] = set()
    made: set[date] = set()
    groups: list[aggregate.Groups] = []
    rejects: list[validate.Reject] = []
    received = loaded = late_n = 0
    for part in parts:
        prep = part.prep
        received += prep.received
        if prep.loaded:
            ids = {int(i) for i in np.unique(prep.experiment_id)} - locked
            if ids:
                info = _lock_settings(conn, ids, info)
                locked |= ids
            late = _late_mask(prep, info, now)
            if precreate is not None and not loaded and part.days - made:
                precreate(part.days - made)  # nothing copied yet: no lock on observations
            partitions.ensure_partitions(conn, part.days - made)
            made |= part.days
            _copy_observations(raw, prep, late, batch_id)
            groups.append(aggregate.group_sums(prep, late, info))
            loaded += prep.loaded
            late_n += int(late.sum())
            del late
        if prep.rejects:
            numbered = [
                validate.Reject(r.row + part.start + row_offset, r.reason) for r in prep.rejects
            ]
            _store_rejects(raw, part.table, prep.rejects, numbered, batch_id)
            rejects += numbered
        del part, prep
    if fault:
        fault("after_copy")
    if groups:
        aggregate.upsert_rollups(raw, aggregate.merge(groups))
    if fault:
        fault("after_rollups")
    conn.execute(
        sa.text(
            "UPDATE ingest_batches SET received = :r, loaded = :l, rejected = :j, late = :t "
            "WHERE id = :id"
        ),
        {"id": batch_id, "r": received, "l": loaded, "j": len(rejects), "t": late_n},
    )
    return IngestResult(batch_key, received, loaded, len(rejects), late_n, False, tuple(rejects))


def _lock_settings(
    conn: sa.Connection, ids: set[int], info: dict[int, validate.ExperimentInfo]
) -> dict[int, validate.ExperimentInfo]:
    """Share-lock the batch's experiments and read their cap and lateness inside the transaction.

    Freezing the settings takes the row for update, so a batch either commits before the
    freeze (whose rebuild then covers it) or sees the frozen cap and lateness; no batch is
    capped or flagged with stale ones.
    """
    rows = conn.execute(
        sa.text(
            "SELECT id, revenue_cap, allowed_lateness_seconds FROM experiments "
            "WHERE id = ANY(:ids) ORDER BY id FOR SHARE"
        ),
        {"ids": sorted(ids)},
    ).all()
    out = dict(info)
    for exp_id, cap, lateness in rows:
        out[exp_id] = validate.ExperimentInfo(exp_id, cap, timedelta(seconds=lateness))
    return out


def _stored_result(conn: sa.Connection, batch_key: str, digest: str) -> IngestResult | None:
    """The stored record of ``batch_key`` as a duplicate, if any; another body is a conflict."""
    row = conn.execute(
        sa.text(
            "SELECT received, loaded, rejected, late, content_hash FROM ingest_batches "
            "WHERE batch_key = :k"
        ),
        {"k": batch_key},
    ).first()
    if row is None:
        return None
    if row.content_hash is not None and row.content_hash != digest:
        raise BatchConflict(
            f"batch id {batch_key!r} was already used for a different body "
            f"({row.received} rows); send new rows under a new id"
        )
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


def _storable(value: object) -> object:
    """A value as JSONB can hold it: text cleaned of NUL and lone surrogates, non-finite
    numbers as text, anything else JSON has no form for as its text."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return validate.clean_text(value)
    if isinstance(value, dict):
        return {validate.clean_text(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    return validate.clean_text(str(value))


def _column_values(column: pa.ChunkedArray) -> list[object]:
    """Python values of a column; a type without a Python form (a year out of range) as text."""
    try:
        return list(column.to_pylist())
    except (ValueError, OverflowError, pa.ArrowException):
        try:
            return list(pc.cast(column, pa.string()).to_pylist())
        except pa.ArrowException:
            return [str(column.type)] * len(column)


def _store_rejects(
    raw: Any,
    table: pa.Table,
    rejects: list[validate.Reject],
    numbered: list[validate.Reject],
    batch_id: int,
) -> None:
    """Copy the rejected rows as JSON, with their reasons (both cleaned: see ``_storable``).

    ``rejects`` number the rows of ``table``; ``numbered`` are the same rejects with the
    numbers they are stored under (their row in the batch or the file).
    """
    taken = table.take(pa.array([r.row - 1 for r in rejects], type=pa.int64()))
    names = [n for n in taken.column_names if n != validate.PROBLEM_COLUMN]
    columns = [_column_values(taken.column(i)) for i, n in enumerate(taken.column_names)
               if n != validate.PROBLEM_COLUMN]  # fmt: skip
    with (
        raw.cursor() as cur,
        cur.copy("COPY ingest_rejects (batch_id, row_number, reason, raw) FROM STDIN") as copy,
    ):
        for i, reject in enumerate(numbered):
            row = {
                validate.clean_text(n): _storable(col[i])
                for n, col in zip(names, columns, strict=True)
            }
            copy.write_row(
                (batch_id, reject.row, validate.clean_text(reject.reason), json.dumps(row))
            )
