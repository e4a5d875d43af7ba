"""The ingest core under arbitrary rows (hypothesis): nothing escapes, nothing is lost or doubled.

Rows with extreme and non-finite numbers, any Unicode (NUL and lone surrogates included),
arbitrary bytes that are not UTF-8 (in CSV and JSON lines), timestamps of any year or epoch unit, and missing or duplicated columns go through a reader
(CSV, JSON lines or Parquet) and ``load.load``. Whatever they hold: only the documented
refusal of a batch unusable as a whole may raise (and then nothing is stored); loaded +
rejected = received; the rollups equal a recount from the stored observations; a re-send
changes nothing. ``HYPOTHESIS_PROFILE=nightly`` runs 2,000 examples instead of 60
(docs/ingest.md, "Formats, values and limits").
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controller.clock import SimulatedClock
from controller.ingest import load, readers, validate
from controller.storage import experiments
from tests.storage.helpers import T0

NOW = T0 + timedelta(hours=3)
EXAMPLES = 2_000 if os.environ.get("HYPOTHESIS_PROFILE") == "nightly" else 60
COLUMNS = (*validate.REQUIRED, "unit_id", "note")

_text = st.text(max_size=12)  # any code point, NUL and lone surrogates included
# arbitrary bytes, carried in text as U+DC80..U+DCFF (``surrogateescape``): ``_encode``
# writes them back as the bytes themselves, most of them not valid UTF-8
_raw = st.binary(min_size=1, max_size=8).map(lambda b: b.decode("utf-8", "surrogateescape"))
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0.0, 0.5, 31.5, 1e12, 1e13, -0.0, 5e-324]),
)
_recent = st.datetimes(
    min_value=datetime(2026, 11, 26, 6),
    max_value=datetime(2026, 11, 26, 12, 30),
    timezones=st.just(UTC),
)
_when = (
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    )
    | _recent
)
_ts = st.one_of(
    _when.map(lambda d: d.isoformat()),
    _when.map(lambda d: d.timestamp()),
    _when.map(lambda d: str(int(d.timestamp()))),
    st.tuples(_when, st.sampled_from([1, 10**3, 10**6, 10**9])).map(
        lambda p: int(p[0].timestamp()) * p[1]
    ),
    _numbers,
    _text,
    _raw,
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "experiment": st.sampled_from(["default/ranker", "ranker", "ghost", "", " ranker "])
    | _text
    | _raw,
    "arm": st.sampled_from(["champion", "challenger", "Champion", ""]) | _text | _raw,
    "ts": _ts,
    "revenue": _numbers | _text | _raw | st.sampled_from(["0.25", "nan", "-inf", "1e400", ""]),
    "latency_ms": _numbers | _text | st.sampled_from(["31.5", "1e10", ""]),
    "error": st.sampled_from([True, False, "true", "0", "1", "no"]) | _text,
    "unit_id": st.none() | _text | _raw | st.text(min_size=1020, max_size=1030, alphabet="ab"),
    "note": _text | _raw,
}


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, list[str], list[list[Any]]]:
    """A format, column names (perhaps one missing or duplicated) and rows of values (in CSV
    some perhaps with a field too few or too many). JSON lines are written with escapes
    (``\\ud800``) or, as ``jsonl-raw``, with the characters and bytes themselves."""
    fmt = draw(st.sampled_from(["csv", "jsonl", "jsonl-raw", "parquet"]))
    names = [c for c in COLUMNS if c in validate.REQUIRED or draw(st.booleans())]
    change = draw(st.sampled_from(["none"] * 8 + ["drop", "duplicate"]))
    if change == "drop":
        names.remove(draw(st.sampled_from(names)))
    elif change == "duplicate" and fmt in ("csv", "parquet"):  # a JSON object cannot repeat a key
        names.append(draw(st.sampled_from(names)))
    # most rows plausible, some with arbitrary values in arbitrary columns
    n = draw(st.integers(min_value=1, max_value=25))
    rows = []
    for _ in range(n):
        plausible = {
            "experiment": "default/ranker",
            "arm": draw(st.sampled_from(["champion", "challenger"])),
            "ts": draw(_recent).isoformat(),
            "revenue": 0.5,
            "latency_ms": 31.5,
            "error": False,
            "unit_id": "u1",
            "note": "",
        }
        wild = draw(st.sets(st.sampled_from(COLUMNS), max_size=3))
        values = [draw(VALUES[c]) if c in wild else plausible[c] for c in names]
        if fmt == "csv" and draw(st.integers(0, 19)) == 0:  # a ragged row: a field short or extra
            values = values[:-1] if draw(st.booleans()) else [*values, "extra"]
        rows.append(values)
    return fmt, names, rows


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _encode(text: str) -> bytes:
    """``text`` as UTF-8, except U+DC80..U+DCFF as the bytes they carry (``_raw``) and other
    lone surrogates as their (invalid) three-byte forms."""
    out = bytearray()
    for char in text:
        code = ord(char)
        out += (
            bytes([code - 0xDC00])
            if 0xDC80 <= code <= 0xDCFF
            else char.encode("utf-8", "surrogatepass")
        )
    return bytes(out)


def _body(fmt: str, names: list[str], rows: list[list[Any]]) -> bytes:
    if fmt.startswith("jsonl"):
        lines = (
            json.dumps(dict(zip(names, r, strict=True)), ensure_ascii=fmt == "jsonl") for r in rows
        )
        return _encode("\n".join(lines))
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")  # so a value with \r is quoted
        writer.writerow(names)
        writer.writerows([[_text_of(v) for v in r] for r in rows])
        return _encode(out.getvalue())
    import pyarrow.parquet as pq

    columns = []
    for i in range(len(names)):
        values = [r[i] for r in rows]
        if all(isinstance(v, float) for v in values):
            columns.append(pa.array(values, type=pa.float64()))
        else:
            texts = [
                None if v is None else validate.without_surrogates(_text_of(v)) for v in values
            ]
            columns.append(pa.array(texts, type=pa.string()))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(columns, names=names), buf)
    return buf.getvalue()


def _count(conn: sa.Connection, sql: str) -> int:
    return int(conn.execute(sa.text(sql)).scalar_one())


_RECOUNT = """
SELECT o.experiment_id, o.arm, date_trunc('minute', o.ts) AS period, count(*) AS n,
       count(*) FILTER (WHERE o.error) AS errors, count(*) FILTER (WHERE o.late) AS late_n,
       sum(o.revenue::numeric) AS revenue_sum
FROM observations o GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
_ROLLUPS = """
SELECT experiment_id, arm, period, n, errors, late_n, revenue_sum FROM rollups_minute ORDER BY 1, 2, 3
"""


def _check(conn: sa.Connection, fmt: str, names: list[str], rows: list[list[Any]]) -> None:
    clock = SimulatedClock(NOW)
    experiments.register_experiment(conn, "default/ranker", allowed_lateness_seconds=300)
    try:
        table = readers.read_bytes(_body(fmt, names, rows), fmt.removesuffix("-raw"))
        result = load.load(conn, table, batch_key="p", source="property", clock=clock)
    except (readers.ReadError, validate.BatchRefused) as exc:  # refused whole: nothing stored
        event(f"{fmt}: refused whole")
        assert str(exc) and "\n" not in str(exc)
        # columns fine: no value, not even bytes that are not UTF-8, refuses the batch
        assert len(set(names)) < len(names) or not set(validate.REQUIRED) <= set(names), exc
        assert _count(conn, "SELECT count(*) FROM ingest_batches") == 0
        return
    event(f"{fmt}: {'some rows loaded' if result.loaded else 'no row loaded'}")
    event(f"{fmt}: {'some rows rejected' if result.rejected else 'no row rejected'}")
    if any("not valid UTF-8" in r.reason for r in result.rejects):
        event(f"{fmt}: a row quarantined for bytes that are not UTF-8")
    assert result.received == len(rows)
    assert result.loaded + result.rejected == result.received
    stored = _count(conn, "SELECT count(*) FROM observations")
    assert stored == result.loaded
    assert _count(conn, "SELECT count(*) FROM ingest_rejects") == result.rejected
    recount = conn.execute(sa.text(_RECOUNT)).all()
    rollups = conn.execute(sa.text(_ROLLUPS)).all()
    assert [r[:6] for r in rollups] == [r[:6] for r in recount]
    for got, want in zip(rollups, recount, strict=True):
        assert math.isclose(
            float(got.revenue_sum), float(want.revenue_sum), rel_tol=1e-9, abs_tol=1e-9
        )
    nonfinite = "SELECT count(*) FROM rollups_minute WHERE revenue_sum_sq::float8 = 'Infinity'"
    assert _count(conn, nonfinite) == 0
    again = load.load(conn, table, batch_key="p", source="property", clock=clock)
    assert again.duplicate and (again.loaded, again.rejected) == (result.loaded, result.rejected)
    assert _count(conn, "SELECT count(*) FROM observations") == stored
    assert conn.execute(sa.text(_ROLLUPS)).all() == rollups


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=batches())
def test_no_row_escapes_loses_or_doubles(
    conn: sa.Connection, batch: tuple[str, list[str], list[list[Any]]]
) -> None:
    fmt, names, rows = batch
    savepoint = conn.begin_nested()
    try:
        _check(conn, fmt, names, rows)
    finally:
        savepoint.rollback()
