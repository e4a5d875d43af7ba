"""Issue 10's table D1–D13 and the reused batch id, one test each: no input raises out of the core.

Each test feeds the input the probe found harmful and asserts what now happens: the bad row is
quarantined with its reason while the good rows load, or the batch is refused whole with a clear
message and nothing (not even a partition) stays behind.
"""

from __future__ import annotations

import io
import json
import math
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from controller.cli.main import app
from controller.clock import SimulatedClock
from controller.ingest import load, readers, validate, writer
from controller.storage import db, experiments, partitions
from tests.storage.helpers import T0, row, rows_table

NOW = T0 + timedelta(hours=3, minutes=1)
HEADER = "experiment,arm,ts,revenue,latency_ms,error"
GOOD_CSV = "default/ranker,champion,2026-11-26T09:05:00Z,0.5,31.5,false"


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(NOW)


@pytest.fixture
def exp_id(conn: sa.Connection) -> int:
    return experiments.register_experiment(conn, "default/ranker", allowed_lateness_seconds=300)


def _count(conn: sa.Connection, sql: str) -> int:
    return int(conn.execute(sa.text(sql)).scalar_one())


def _load(
    conn: sa.Connection, table: pa.Table, clock: SimulatedClock, key: str = "b"
) -> load.IngestResult:
    return load.load(conn, table, batch_key=key, source="test", clock=clock)


def _reasons(result: load.IngestResult) -> list[tuple[int, str]]:
    return [(r.row, r.reason) for r in result.rejects]


# D1, D2, D6: timestamps of any year or epoch unit are rows, never crashes


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("1969-12-31T23:59:00Z", "ts is before 1970-01-01T00:00:00Z (the earliest accepted)"),
        ("0001-01-01T00:00:00Z", "ts is before 1970-01-01T00:00:00Z (the earliest accepted)"),
        ("9999-12-31T23:59:59Z", "ts is more than 0:05:00 in the future"),
        ("-86400", "ts is before 1970-01-01T00:00:00Z (the earliest accepted)"),
        ("1e300", "ts is out of range (epoch seconds up to year 9999)"),
    ],
)
def test_d1_d2_timestamps_outside_the_range_are_rejected_rows(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock, ts: str, reason: str
) -> None:
    result = _load(conn, rows_table([row(), row(ts=ts), row()]), clock)
    assert (result.loaded, result.rejected) == (2, 1)
    assert _reasons(result) == [(2, reason)]
    again = _load(conn, rows_table([row(ts=ts)]), clock, key="again")
    assert again.rejected == 1
    assert all(p.startswith("observations_p2026") for p in partitions.existing_partitions(conn))


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_d6_parquet_timestamps_in_any_unit(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock, unit: str
) -> None:
    when = T0 + timedelta(minutes=7, seconds=3)
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    ticks = int(when.timestamp()) * per_second
    table = pa.table(
        {
            **{k: pa.array([v, v, v]) for k, v in row().items() if k != "ts"},
            "ts": pa.array([ticks, -86_400 * per_second, None], type=pa.timestamp(unit, tz="UTC")),
        }
    )
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    result = _load(conn, readers.read_bytes(buf.getvalue(), "parquet"), clock)
    assert (result.loaded, result.rejected) == (1, 2)
    assert [r.row for r in result.rejects] == [2, 3]
    assert conn.execute(sa.text("SELECT ts FROM observations")).scalar_one() == when


def test_d6_epoch_numbers_extreme_and_negative(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    when = (T0 + timedelta(minutes=7)).timestamp()
    table = pa.table(
        {
            **{k: pa.array([v] * 5) for k, v in row().items() if k != "ts"},
            "ts": pa.array([when, 1e300, -86_400.0, math.nan, math.inf]),
        }
    )
    result = _load(conn, table, clock)
    assert result.loaded == 1
    assert [r for _, r in _reasons(result)] == [
        "ts is out of range (epoch seconds up to year 9999)",
        "ts is before 1970-01-01T00:00:00Z (the earliest accepted)",
        "ts is not a valid timestamp (ISO 8601 or epoch seconds)",
        "ts is not a valid timestamp (ISO 8601 or epoch seconds)",
    ]


# D3, D4: NUL bytes and lone surrogates


def test_d3_a_nul_byte_in_unit_id_is_quarantined(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    table = rows_table([row(unit_id="u1"), row(unit_id="u\x002"), row(unit_id="u3")])
    result = _load(conn, table, clock)
    assert (result.loaded, result.rejected) == (2, 1)
    assert _reasons(result) == [(2, "unit_id contains a NUL byte")]
    raw = conn.execute(sa.text("SELECT raw FROM ingest_rejects")).scalar_one()
    assert raw["unit_id"] == "u\ufffd2"


def test_d3_a_nul_byte_in_any_field_of_a_rejected_row_is_stored_safely(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    table = rows_table([row(), row(arm="blue\x00", note="a\x00b", experiment="x\x00y")])
    result = _load(conn, table, clock)
    assert (result.loaded, result.rejected) == (1, 1)
    assert _reasons(result) == [(2, "experiment 'default/x\\x00y' is not registered")]
    raw = conn.execute(sa.text("SELECT raw FROM ingest_rejects")).scalar_one()
    assert raw["note"] == "a\ufffdb" and raw["arm"] == "blue\ufffd"


def test_d4_a_lone_surrogate_in_json_is_quarantined(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    lines = [json.dumps(row(unit_id="u1")), json.dumps(row(unit_id="u\ud800")), json.dumps(row())]
    table = readers.read_bytes("\n".join(lines).encode(), "jsonl")
    result = _load(conn, table, clock)
    assert (result.loaded, result.rejected) == (2, 1)
    assert _reasons(result) == [(2, "unit_id is not valid Unicode (a lone surrogate)")]
    raw = conn.execute(sa.text("SELECT raw FROM ingest_rejects")).scalar_one()
    assert raw["unit_id"] == "u\ufffd"
    assert validate.PROBLEM_COLUMN not in raw


# bytes that are not UTF-8: their rows are quarantined, never the batch


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_rows_with_bytes_that_are_not_utf8_are_quarantined_and_the_others_load(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock, fmt: str
) -> None:
    good = row(unit_id="u1", note="fine")
    rows = [good, row(unit_id="u\udcff2", note="ok"), good, row(unit_id="u4", note="caf\udcc3(")]
    if fmt == "csv":
        lines = [f"{HEADER},unit_id,note"] + [",".join(r.values()) for r in rows]
    else:
        lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    body = "\n".join(lines).encode("utf-8", "surrogateescape")  # 0xff and a cut 0xc3 0x28
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    result = _load(conn, readers.read_bytes(body, fmt), clock)
    assert (result.received, result.loaded, result.rejected) == (4, 2, 2)
    reasons = dict(_reasons(result))
    assert sorted(reasons) == [2, 4]
    if fmt == "csv":
        assert reasons[2] == "unit_id is not valid UTF-8 (kept with the bad bytes escaped: u\\xff2)"
        assert reasons[4].startswith("note is not valid UTF-8")
    else:
        assert reasons[2] == "line 2 is not valid UTF-8 (kept with the bad bytes escaped)"
    stored = conn.execute(
        sa.text("SELECT row_number, raw FROM ingest_rejects ORDER BY row_number")
    ).all()
    assert [r.row_number for r in stored] == [2, 4]
    assert stored[0].raw["unit_id"] == "u\\xff2" and stored[1].raw["note"] == "caf\\xc3("
    assert validate.PROBLEM_COLUMN not in stored[0].raw
    assert _count(conn, "SELECT count(*) FROM observations WHERE unit_id = 'u1'") == 2


def test_a_ragged_csv_row_with_bytes_that_are_not_utf8_is_quarantined(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    body = f"{HEADER}\n{GOOD_CSV}\ndefault/ranker,champ\udcffion\n{GOOD_CSV}\n"
    table = readers.read_bytes(body.encode("utf-8", "surrogateescape"), "csv")
    result = _load(conn, table, clock)
    assert (result.received, result.loaded, result.rejected) == (3, 2, 1)
    assert _reasons(result) == [
        (3, "line 3 has 2 field(s) where the header has 6: default/ranker,champ\\xffion")
    ]


def test_a_csv_header_that_is_not_utf8_refuses_the_batch_naming_the_columns(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    body = f"experiment,a\udcffrm,ts,revenue,latency_ms,error\n{GOOD_CSV}\n"
    table = readers.read_bytes(body.encode("utf-8", "surrogateescape"), "csv")
    with pytest.raises(validate.BatchRefused, match="missing required column"):
        _load(conn, table, clock)
    assert _count(conn, "SELECT count(*) FROM ingest_batches") == 0


# D5: duplicate column names refuse the batch whole


def test_d5_a_duplicated_column_refuses_the_batch(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    data = f"{HEADER},arm\n{GOOD_CSV},champion\n".encode()
    table = readers.read_bytes(data, "csv")
    with pytest.raises(validate.BatchRefused, match="column 'arm' appears more than once"):
        _load(conn, table, clock)
    assert _count(conn, "SELECT count(*) FROM ingest_batches") == 0


def test_d5_the_cli_says_so_in_one_line_with_the_refusal_exit_code(
    truncating_engine: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(f"{HEADER},arm\n{GOOD_CSV},champion\n")
    result = CliRunner().invoke(
        app, ["ingest", "load", str(path)], env={db.ENV_DATABASE_URL: database_url}
    )
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == [
        f"error: {path}: batch refused whole, nothing stored: column 'arm' appears more than once"
    ]


# D7: concurrent deliveries of one batch id


def test_d7_concurrent_deliveries_of_one_id_load_once_and_none_errors(
    truncating_engine: sa.Engine,
) -> None:
    with truncating_engine.begin() as conn:
        experiments.register_experiment(conn, "default/ranker")
    table = rows_table([row(ts=(T0 + timedelta(days=1, minutes=i)).isoformat()) for i in range(50)])
    clock = SimulatedClock(T0 + timedelta(days=2))
    results: list[load.IngestResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def deliver() -> None:
        start.wait()
        try:
            results.append(
                load.load_table(truncating_engine, table, batch_key="same", source="t", clock=clock)
            )
        except BaseException as exc:  # the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.duplicate for r in results) == [False] + [True] * 7
    assert {(r.loaded, r.rejected) for r in results} == {(50, 0)}
    with truncating_engine.connect() as conn:
        assert _count(conn, "SELECT count(*) FROM observations") == 50


# D8: the batching writer never drops the good rows of a batch


class _Collect:
    def __init__(self, inner: writer.DatabaseSink) -> None:
        self.inner, self.calls = inner, 0

    def send(self, batch_key, rows):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.send(batch_key, rows)


@pytest.mark.parametrize(
    "poison",
    [
        {"ts": "1969-12-31T23:59:00Z"},
        {"unit_id": "u\x00"},
        {"unit_id": "u\ud800"},
        {"revenue": 1e200},
        {"ts": datetime(1, 1, 1, tzinfo=UTC)},
    ],
    ids=["D1", "D3", "D4", "D9", "year-1"],
)
def test_d8_a_poisoned_row_is_quarantined_and_the_999_good_rows_load(
    truncating_engine: sa.Engine, poison: dict[str, object]
) -> None:
    with truncating_engine.begin() as conn:
        experiments.register_experiment(conn, "default/ranker")
    good = [
        {**row(ts=T0 + timedelta(seconds=i)), "revenue": 0.25, "error": False, "unit_id": f"u{i}"}
        for i in range(999)
    ]
    rows = [*good[:500], {**good[0], **poison}, *good[500:]]
    sink = _Collect(writer.DatabaseSink(truncating_engine, SimulatedClock(NOW)))
    with writer.BatchWriter(sink, max_rows=10_000, max_delay=60) as w:
        w.write_many(rows)
    assert w.failed == []
    assert [(r.received, r.loaded, r.rejected) for r in w.results] == [(1000, 999, 1)]
    assert sink.calls == 1
    with truncating_engine.connect() as conn:
        assert _count(conn, "SELECT count(*) FROM observations") == 999
        assert _count(conn, "SELECT row_number FROM ingest_rejects") == 501


# D9: absurd values never reach the rollups


def test_d9_absurd_revenue_is_rejected_and_the_rollups_stay_finite(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    table = rows_table([row(revenue="1e200"), row(latency_ms="1e300"), row(revenue="2.5")])
    result = _load(conn, table, clock)
    assert _reasons(result) == [
        (1, f"revenue is above {validate.REVENUE_MAX:g}"),
        (2, f"latency_ms is above {validate.LATENCY_MAX_MS:g}"),
    ]
    sums = conn.execute(
        sa.text("SELECT revenue_sum, revenue_sum_sq, log_latency_sum_sq FROM rollups_minute")
    ).all()
    assert [tuple(float(v) for v in s) for s in sums] == [
        (2.5, 6.25, pytest.approx(math.log(31.5) ** 2))
    ]
    nonfinite = "SELECT count(*) FROM rollups_minute WHERE revenue_sum_sq = 'Infinity'::numeric"
    assert _count(conn, nonfinite) == 0


# D10: epoch seconds in CSV and JSON lines


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_d10_epoch_seconds_in_text_formats(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock, fmt: str
) -> None:
    when = T0 + timedelta(minutes=7, seconds=3)
    epochs = [str(int(when.timestamp())), f"{when.timestamp():.3f}", f" {when.timestamp():.9e} "]
    if fmt == "csv":
        body = "\n".join([HEADER] + [f"default/ranker,champion,{e},0.5,31.5,false" for e in epochs])
        table = readers.read_bytes(body.encode(), "csv")
    else:
        values: list[object] = [int(when.timestamp()), when.timestamp(), epochs[2]]
        table = readers.read_bytes(
            "\n".join(json.dumps(row(ts=v)) for v in values).encode(), "jsonl"
        )
    result = _load(conn, table, clock)
    assert (result.loaded, result.rejected) == (3, 0), result.rejects
    stored = conn.execute(sa.text("SELECT DISTINCT ts FROM observations")).scalars().all()
    assert stored == [when]


# D11: validation is linear whatever the mix of bad values


@pytest.mark.parametrize("column", ["experiment", "arm"])
def test_d11_twenty_thousand_distinct_unknown_values(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock, column: str
) -> None:
    n = 20_000
    table = rows_table([row(**{column: f"ghost-{i}"}) for i in range(n)])
    result = _load(conn, table, clock)
    assert (result.loaded, result.rejected) == (0, n)
    expected = (
        "experiment default/ghost-19999 is not registered"
        if column == "experiment"
        else "unknown arm 'ghost-19999' (expected champion or challenger)"
    )
    assert result.rejects[-1].reason == expected
    assert _count(conn, "SELECT count(DISTINCT reason) FROM ingest_rejects") == n


# D12: a failed batch leaves no partition behind


def test_d12_a_failed_batch_leaves_no_partition(truncating_engine: sa.Engine) -> None:
    with truncating_engine.begin() as conn:
        experiments.register_experiment(conn, "default/ranker")
    table = rows_table([row(ts="2026-11-03T10:00:00Z")])

    def crash(where: str) -> None:
        if where == "after_copy":
            raise RuntimeError("injected")

    with pytest.raises(RuntimeError, match="injected"):
        load.load_table(
            truncating_engine,
            table,
            batch_key="k",
            source="t",
            clock=SimulatedClock(NOW),
            fault=crash,
        )
    with truncating_engine.connect() as conn:
        assert partitions.existing_partitions(conn) == {}
        assert _count(conn, "SELECT count(*) FROM ingest_batches") == 0


# the reused id: a different body under a known id is a conflict


def test_a_known_id_with_a_different_body_is_a_conflict_naming_it(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    first = rows_table([row(), row(arm="challenger")])
    assert _load(conn, first, clock, key="b-7").loaded == 2
    assert _load(conn, first, clock, key="b-7").duplicate
    other = rows_table([row(), row(revenue="9.5")])
    with pytest.raises(
        load.BatchConflict, match="batch id 'b-7' was already used for a different body"
    ):
        _load(conn, other, clock, key="b-7")
    assert _count(conn, "SELECT count(*) FROM observations") == 2
    assert conn.execute(sa.text("SELECT content_hash FROM ingest_batches")).scalar_one() == (
        load.content_hash(first)
    )


def test_a_caller_may_identify_the_body_by_its_own_digest(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    table = rows_table([row()])
    first = load.load(conn, table, batch_key="k", source="t", clock=clock, digest="sha256:aa")
    again = load.load(conn, table, batch_key="k", source="t", clock=clock, digest="sha256:aa")
    assert (first.duplicate, again.duplicate) == (False, True)
    with pytest.raises(load.BatchConflict, match="'k'"):
        load.load(conn, table, batch_key="k", source="t", clock=clock, digest="sha256:bb")


def test_a_batch_stored_before_hashes_existed_is_still_a_duplicate(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    _load(conn, rows_table([row()]), clock, key="old")
    conn.execute(sa.text("UPDATE ingest_batches SET content_hash = NULL"))
    assert _load(conn, rows_table([row(revenue="3")]), clock, key="old").duplicate


def test_columns_of_an_unusable_type_refuse_the_batch(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    table = rows_table([row()]).set_column(1, "arm", pa.array([[1, 2]]))
    with pytest.raises(validate.BatchRefused, match="column 'arm'"):
        _load(conn, table, clock)


def test_dates_and_timestamps_beyond_year_9999_as_arrow_types(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    base = {k: pa.array([v, v]) for k, v in row().items() if k != "ts"}
    dates = pa.table({**base, "ts": pa.array([T0.date(), None], type=pa.date32())})
    result = _load(conn, dates, clock, key="dates")
    assert (result.loaded, result.rejected) == (1, 1)
    far = pa.table({**base, "ts": pa.array([400_000_000_000, -1], type=pa.timestamp("s"))})
    result = _load(conn, far, clock, key="far")
    assert [r for _, r in _reasons(result)] == [
        "ts is out of range (epoch seconds up to year 9999)",
        "ts is before 1970-01-01T00:00:00Z (the earliest accepted)",
    ]
    stored = conn.execute(
        sa.text(
            "SELECT r.raw->>'ts' FROM ingest_rejects r JOIN ingest_batches b ON b.id = r.batch_id "
            "WHERE b.batch_key = 'far' ORDER BY r.row_number"
        )
    ).scalars()
    assert list(stored) == ["14645-06-30 15:06:40", "1969-12-31 23:59:59"]


def test_non_finite_numbers_of_a_rejected_row_are_stored_as_text(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    base = {k: pa.array([v]) for k, v in row().items() if k not in ("revenue", "latency_ms")}
    table = pa.table({**base, "revenue": [math.nan], "latency_ms": [math.inf]})
    assert _reasons(_load(conn, table, clock)) == [(1, "revenue is NaN")]
    raw = conn.execute(sa.text("SELECT raw FROM ingest_rejects")).scalar_one()
    assert (raw["revenue"], raw["latency_ms"]) == ("nan", "inf")


def test_a_csv_row_with_another_number_of_fields_is_quarantined(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    body = f"{HEADER}\n{GOOD_CSV}\n{GOOD_CSV},extra\ndefault/ranker,champion\n{GOOD_CSV}\n"
    result = _load(conn, readers.read_bytes(body.encode(), "csv"), clock)
    assert (result.received, result.loaded, result.rejected) == (4, 2, 2)
    assert [r for _, r in _reasons(result)] == [
        f"line 3 has 7 field(s) where the header has 6: {(GOOD_CSV + ',extra')[:60]!r}…",
        "line 4 has 2 field(s) where the header has 6: default/ranker,champion",
    ]
