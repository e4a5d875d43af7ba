"""Large files through ``canaryctl ingest load``: read in chunks, loaded whole and exactly once.

The CLI commits from its own connection: these tests use ``truncating_engine``. Chunks are
made small (``--chunk-rows``) so a file of a few hundred rows spans several of them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from controller.cli.main import app
from controller.ingest import readers
from controller.storage import db, experiments
from tests.storage.helpers import T0, outcomes

START = T0.replace(day=20)
ROWS = 1_000
CHUNK = 128  # 1,000 rows: 7 full chunks and one of 104


@pytest.fixture
def registered(truncating_engine: sa.Engine) -> int:
    with truncating_engine.begin() as conn:
        return experiments.register_experiment(conn, "default/ranker")


def _cli(database_url: str, *args: str) -> object:
    return CliRunner().invoke(app, list(args), env={db.ENV_DATABASE_URL: database_url})


def _write(table: pa.Table, path: Path) -> None:
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path, row_group_size=300)  # row groups that straddle chunks
    else:
        path.write_text("\n".join(json.dumps(r, default=str) for r in table.to_pylist()) + "\n\n")


def _counts(engine: sa.Engine) -> tuple[int, int, int, int]:
    """Observations, distinct (ts, latency) pairs among them, batches, rollup total."""
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(sa.text(sql)).scalar_one() or 0)
            for sql in (
                "SELECT count(*) FROM observations",
                "SELECT count(DISTINCT (ts, latency_ms)) FROM observations",
                "SELECT count(*) FROM ingest_batches",
                "SELECT sum(n) FROM rollups_minute",
            )
        )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_iter_file_gives_chunks_of_exactly_the_asked_rows_in_order(
    tmp_path: Path, suffix: str
) -> None:
    table = outcomes(ROWS, seed=3, start=START)
    path = tmp_path / f"outcomes{suffix}"
    _write(table, path)
    chunks = list(readers.iter_file(path, chunk_rows=CHUNK))
    assert [c.num_rows for c in chunks] == [CHUNK] * 7 + [ROWS - 7 * CHUNK]
    latency = [v for c in chunks for v in c["latency_ms"].cast(pa.float64()).to_pylist()]
    assert latency == table["latency_ms"].to_pylist()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_file_larger_than_a_chunk_loads_completely_once_and_a_rerun_loads_nothing(
    truncating_engine: sa.Engine, registered: int, database_url: str, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"outcomes{suffix}"
    _write(outcomes(ROWS, seed=5, start=START), path)
    first = _cli(database_url, "ingest", "load", str(path), "--chunk-rows", str(CHUNK))
    assert first.exit_code == 0, first.output
    assert f"received {ROWS}, loaded {ROWS}, rejected 0" in first.output
    assert _counts(truncating_engine) == (ROWS, ROWS, 8, ROWS)
    with truncating_engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT batch_key FROM ingest_batches ORDER BY id")).scalars()
        keys = list(keys)
    assert keys[0].startswith("sha256:") and keys[1:] == [f"{keys[0]}:{n}" for n in range(2, 9)]
    for chunk_rows in (CHUNK, 7, 10_000):  # the same chunks, or others: nothing twice
        again = _cli(database_url, "ingest", "load", str(path), "--chunk-rows", str(chunk_rows))
        assert again.exit_code == 0 and "already ingested" in again.output, again.output
    assert _counts(truncating_engine) == (ROWS, ROWS, 8, ROWS)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_rejects_are_stored_and_printed_with_their_row_in_the_file(
    truncating_engine: sa.Engine, registered: int, database_url: str, tmp_path: Path, suffix: str
) -> None:
    table = outcomes(ROWS, seed=6, start=START)
    latency = table["latency_ms"].to_pylist()
    bad = [5, 130, 600, 999]  # 0-based: chunks 1, 2, 5 and 8 (rows 6, 3, 89 and 104 of them)
    for i in bad:
        latency[i] = -1.0
    path = tmp_path / f"outcomes{suffix}"
    _write(table.set_column(4, "latency_ms", pa.array(latency)), path)
    result = _cli(database_url, "ingest", "load", str(path), "--chunk-rows", str(CHUNK))
    assert result.exit_code == 1
    assert "4 of 1000 rows rejected (first: row 6: latency_ms is negative)" in result.output
    assert _counts(truncating_engine)[0] == ROWS - len(bad)
    with truncating_engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT b.batch_key, r.row_number, r.raw->>'latency_ms' FROM ingest_rejects r "
                "JOIN ingest_batches b ON b.id = r.batch_id ORDER BY r.row_number"
            )
        ).all()
    assert [r.row_number for r in stored] == [i + 1 for i in bad]
    assert {float(r[2]) for r in stored} == {-1.0}
    key = stored[0].batch_key
    assert [r.batch_key for r in stored] == [key, f"{key}:2", f"{key}:5", f"{key}:8"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_rows_of_a_file_with_bytes_that_are_not_utf8_are_quarantined_by_their_row(
    truncating_engine: sa.Engine, registered: int, database_url: str, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"outcomes{suffix}"
    _write(outcomes(ROWS, seed=7, start=START), path)
    lines = path.read_bytes().split(b"\n")
    header = 1 if suffix == ".csv" else 0
    bad = [3, 300, 777]  # 1-based rows: in chunks 1, 3 and 7
    for n in bad:
        lines[n - 1 + header] = lines[n - 1 + header].replace(b"ranker", b"rank\xffer", 1)
    path.write_bytes(b"\n".join(lines))
    result = _cli(database_url, "ingest", "load", str(path), "--chunk-rows", str(CHUNK))
    assert result.exit_code == 1, result.output
    assert "3 of 1000 rows rejected (first: row 3: " in result.output
    assert _counts(truncating_engine)[0] == ROWS - len(bad)
    with truncating_engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT row_number, reason, raw FROM ingest_rejects ORDER BY row_number")
        ).all()
    assert [r.row_number for r in stored] == bad
    assert all("not valid UTF-8" in r.reason for r in stored)
    assert {r.raw["experiment"] for r in stored} == {"default/rank\\xffer"}


def test_a_file_whose_later_chunks_start_new_days_loads_and_creates_them(
    truncating_engine: sa.Engine, registered: int, database_url: str, tmp_path: Path
) -> None:
    """Chunk 1's days are created before the file's transaction; days first seen in later
    chunks inside it (a transaction of their own would wait on the file's own lock)."""
    from controller.storage import partitions

    first = START - timedelta(days=40)
    days = [first + timedelta(days=d) for d in range(3)]
    parts = [outcomes(300, seed=d, start=day, seconds=3_600) for d, day in enumerate(days)]
    path = tmp_path / "outcomes.parquet"
    _write(pa.concat_tables(parts), path)
    result = _cli(database_url, "ingest", "load", str(path), "--chunk-rows", str(CHUNK))
    assert result.exit_code == 0, result.output
    assert _counts(truncating_engine)[0] == 900
    with truncating_engine.connect() as conn:
        have = set(partitions.existing_partitions(conn))
    assert {partitions.partition_name(d.date()) for d in days} <= have


def test_precreate_is_asked_for_the_days_before_the_first_row_is_copied(
    truncating_engine: sa.Engine, registered: int
) -> None:
    from controller.ingest import load

    day = START - timedelta(days=300)
    parts = [outcomes(10, seed=9, start=day + timedelta(days=d), seconds=60) for d in range(3)]
    asked: list[frozenset[object]] = []
    with truncating_engine.begin() as conn:
        result = load.load(
            conn, iter(parts), batch_key="k", source="t", digest="sha256:k", precreate=asked.append
        )
    assert result.loaded == 30
    assert asked == [frozenset({day.date()})]  # the later days: created by the load itself
    with pytest.raises(ValueError, match="digest"), truncating_engine.begin() as conn:
        load.load(conn, iter(parts), batch_key="j", source="t")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_unreadable_after_its_first_chunks_stores_nothing(
    truncating_engine: sa.Engine, registered: int, database_url: str, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"outcomes{suffix}"
    _write(outcomes(ROWS, seed=8, start=START - timedelta(days=200)), path)
    with path.open("a") as handle:  # the last chunk is broken
        handle.write('{"experiment": \n' if suffix == ".jsonl" else 'a,"b\n')
    result = _cli(database_url, "ingest", "load", str(path), "--chunk-rows", str(CHUNK))
    assert result.exit_code == 3  # refused whole (docs/ingest.md: exit codes)
    message = result.output.strip().splitlines()
    assert len(message) == 1 and "refused whole, nothing stored" in message[0], result.output
    assert str(path) in message[0]
    assert _counts(truncating_engine) == (0, 0, 0, 0)
    with truncating_engine.connect() as conn:  # not even the partition of its day
        names = conn.execute(
            sa.text("SELECT relname FROM pg_class WHERE relname LIKE 'observations_p%'")
        ).scalars()
        assert not [n for n in names if n.endswith(f"{(START - timedelta(days=200)):%Y%m%d}")]
