"""A thread-safe batching writer for services that log outcomes from Python.

Rows are buffered and flushed as one batch when ``max_rows`` are waiting or
``max_delay`` has passed since the first of them, by a background thread. Each batch
gets an id once, so a retry after a failure (the database briefly away) can never load
it twice. Where batches go is a ``Sink``: straight into the database, or to the HTTP
ingest endpoint of another process.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa
import sqlalchemy as sa

from controller.clock import SYSTEM_CLOCK, Clock
from controller.ingest import load, validate

logger = logging.getLogger(__name__)

COLUMNS = ("experiment", "arm", "ts", "revenue", "latency_ms", "error", "unit_id")


class Sink(Protocol):
    """Where a batch goes; raising means "not stored, retry with the same id"."""

    def send(self, batch_key: str, rows: list[Mapping[str, Any]]) -> load.IngestResult: ...


def rows_to_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) as an Arrow table with the ingest columns; never raises for a bad value.

    Values are written as text (``error`` stays boolean when every value is one), so
    validation judges each row; a value that has no text form (a lone surrogate, a failing
    ``__str__``) gets its row a reason in ``validate.PROBLEM_COLUMN`` instead of an error.
    """
    columns: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    problems: list[str | None] = [None] * len(rows)
    for i, row in enumerate(rows):
        for c in COLUMNS:
            try:
                value = row.get(c)
                if c == "ts" and isinstance(value, datetime):
                    value = value.isoformat()
                elif value is not None and not isinstance(value, (str, bool)):
                    value = str(value)
            except Exception as exc:  # a row that is not a mapping, or a value without text
                value, problems[i] = None, f"{c} has no text form ({type(exc).__name__})"
            if isinstance(value, str):
                clean = validate.without_surrogates(value)
                if clean != value and problems[i] is None:
                    problems[i] = f"{c} is not valid Unicode (a lone surrogate)"
                value = clean
            columns[c].append(value)
    all_bool = all(isinstance(v, bool) for v in columns["error"])
    table = {
        c: pa.array(
            values
            if c == "error" and all_bool
            else [str(v).lower() if isinstance(v, bool) else v for v in values],
            type=pa.bool_() if c == "error" and all_bool else pa.string(),
        )
        for c, values in columns.items()
    }
    if any(p is not None for p in problems):
        table[validate.PROBLEM_COLUMN] = pa.array(problems, type=pa.string())
    return pa.table(table)


@dataclass
class DatabaseSink:
    """Load batches straight into the store."""

    engine: sa.Engine
    clock: Clock = SYSTEM_CLOCK

    def send(self, batch_key: str, rows: list[Mapping[str, Any]]) -> load.IngestResult:
        return load.load_table(
            self.engine, rows_to_table(rows), batch_key=batch_key, source="writer", clock=self.clock
        )


@dataclass
class BatchWriter:
    """Buffer rows and flush them in batches from a background thread (see module docstring)."""

    sink: Sink
    max_rows: int = 10_000
    max_delay: float = 1.0
    retries: int = 5
    backoff: float = 0.2
    on_result: Callable[[load.IngestResult], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    _rows: list[Mapping[str, Any]] = field(default_factory=list, init=False)
    _first_at: float | None = field(default=None, init=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, init=False)
    _send_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _closed: bool = field(default=False, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    results: list[load.IngestResult] = field(default_factory=list, init=False)
    failed: list[tuple[str, int, str]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError("max_rows: must be ≥ 1")
        if self.max_delay <= 0:
            raise ValueError("max_delay: must be > 0 seconds")
        self._thread = threading.Thread(
            target=self._run, name="canaryctl-batch-writer", daemon=True
        )
        self._thread.start()

    def write(self, row: Mapping[str, Any]) -> None:
        """Queue one row (a mapping with the ingest columns)."""
        self.write_many((row,))

    def write_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue many rows; full batches are sent by the background thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the writer is closed")
            self._rows.extend(rows)
            if self._first_at is None and self._rows:
                self._first_at = time.monotonic()
            self._lock.notify()

    def flush(self) -> None:
        """Send everything queued now, in batches of at most ``max_rows``."""
        while True:
            with self._lock:
                if not self._rows:
                    return
                batch, self._rows = self._rows[: self.max_rows], self._rows[self.max_rows :]
                self._first_at = time.monotonic() if self._rows else None
            self._send(batch)

    def close(self) -> None:
        """Flush what is queued and stop the background thread."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not self._due():
                    timeout = (
                        None
                        if self._first_at is None
                        else max(0.0, self._first_at + self.max_delay - time.monotonic())
                    )
                    self._lock.wait(timeout)
                if self._closed:
                    return
            self.flush()

    def _due(self) -> bool:
        if not self._rows:
            return False
        return len(self._rows) >= self.max_rows or (
            self._first_at is not None and time.monotonic() - self._first_at >= self.max_delay
        )

    def _send(self, batch: list[Mapping[str, Any]]) -> None:
        key = f"writer:{uuid.uuid4()}"
        with self._send_lock:
            for attempt in range(self.retries + 1):
                try:
                    result = self.sink.send(key, batch)
                except ValueError as exc:  # the batch itself is unusable: retrying cannot help
                    logger.error("batch %s of %d rows refused: %s", key, len(batch), exc)
                    self.failed.append((key, len(batch), str(exc)))
                    return
                except Exception as exc:  # the sink failed: same id, try again
                    if attempt == self.retries:
                        logger.error(
                            "batch %s of %d rows not stored after %d tries: %s",
                            key,
                            len(batch),
                            attempt + 1,
                            exc,
                        )
                        self.failed.append((key, len(batch), str(exc)))
                        return
                    self.sleep(self.backoff * 2**attempt)
                    continue
                self.results.append(result)
                if self.on_result:
                    self.on_result(result)
                return
