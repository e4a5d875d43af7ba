"""The three ingest paths end to end: the CLI on files, the HTTP endpoint, the batching writer.

They load through ``load.load_table`` from other threads or a CLI run, which commit their own
transactions: these tests use ``truncating_engine``, not the rolled-back ``conn``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pyarrow.csv as pacsv
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from controller.cli.main import app
from controller.clock import SimulatedClock
from controller.ingest import server, writer
from controller.storage import db, experiments
from tests import serving
from tests.storage.helpers import T0, outcomes, row

NOW = T0 + timedelta(hours=3, minutes=1)


@pytest.fixture
def registered(truncating_engine: sa.Engine) -> int:
    with truncating_engine.begin() as conn:
        return experiments.register_experiment(conn, "default/ranker")


def _observations(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM observations")).scalar_one())


def _cli(database_url: str, *args: str) -> object:
    return CliRunner().invoke(app, list(args), env={db.ENV_DATABASE_URL: database_url})


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_cli_ingests_each_format_once(
    truncating_engine: sa.Engine, registered: int, database_url: str, tmp_path: Path, fmt: str
) -> None:
    table = outcomes(1_000, seed=7, start=T0.replace(year=2026, month=11, day=20))
    path = tmp_path / f"outcomes.{fmt}"
    if fmt == "csv":
        pacsv.write_csv(table, path)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        path.write_text("\n".join(json.dumps(r, default=str) for r in table.to_pylist()))
    result = _cli(database_url, "ingest", "load", str(path))
    assert result.exit_code == 0, result.output
    assert "received 1000, loaded 1000, rejected 0" in result.output
    again = _cli(database_url, "ingest", "load", str(path))
    assert again.exit_code == 0 and "already ingested" in again.output
    assert _observations(truncating_engine) == 1_000


def test_cli_unregistered_experiment_is_one_line_and_non_zero(
    truncating_engine: sa.Engine, registered: int, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "experiment,arm,ts,revenue,latency_ms,error\n"
        "shop/ranker-v9,champion,2026-11-20T10:00:00Z,0.1,30,false\n"
    )
    result = _cli(database_url, "ingest", "load", str(path))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: row 1: experiment shop/ranker-v9 is not registered"
    ]


def test_cli_partly_bad_file_loads_good_rows_and_says_how_many_were_refused(
    truncating_engine: sa.Engine, registered: int, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.jsonl"
    good = row(ts="2026-11-20T10:00:00+00:00")
    lines = [good, {**good, "latency_ms": -3}, {**good, "arm": "blue"}, good]
    path.write_text("\n".join(json.dumps(r) for r in lines))
    result = _cli(database_url, "ingest", "load", str(path), "-o", "json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout.strip().splitlines()[0])
    assert (payload["received"], payload["loaded"], payload["rejected"]) == (4, 2, 2)
    assert "2 of 4 rows rejected (first: row 2: latency_ms is negative)" in result.stderr
    assert _observations(truncating_engine) == 2


def test_cli_rerun_of_a_file_with_rejected_rows_says_it_was_loaded_before(
    truncating_engine: sa.Engine, registered: int, database_url: str, tmp_path: Path
) -> None:
    """Issue 12: the second run printed "already ingested" and then an IndexError traceback."""
    path = tmp_path / "mixed.jsonl"
    good = row(ts="2026-11-20T10:00:00+00:00")
    path.write_text("\n".join(json.dumps(r) for r in [good, {**good, "latency_ms": -3}]))
    assert _cli(database_url, "ingest", "load", str(path)).exit_code == 1
    text = _cli(database_url, "ingest", "load", str(path))
    as_json = _cli(database_url, "ingest", "load", str(path), "-o", "json")
    for again in (text, as_json):
        assert (again.exit_code, again.stderr) == (0, ""), again.output
        assert "Traceback" not in again.output
    assert "already ingested (1 loaded, 1 rejected); nothing loaded again" in text.stdout
    assert json.loads(as_json.stdout)["duplicate"] is True
    assert _observations(truncating_engine) == 1


def test_cli_missing_file_and_unknown_format(database_url: str, tmp_path: Path) -> None:
    missing = _cli(database_url, "ingest", "load", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 1 and "no such file" in missing.output
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    unknown = _cli(database_url, "ingest", "load", str(odd))
    assert unknown.exit_code == 1 and "--format" in unknown.output


@pytest.fixture
def endpoint(truncating_engine: sa.Engine, registered: int) -> Iterator[str]:
    api = server.create_app(
        truncating_engine, token="s3cret", max_bytes=64_000, clock=SimulatedClock(NOW)
    )
    with serving.running(api) as url:
        yield url


def _jsonl(n: int) -> bytes:
    return "\n".join(
        json.dumps(row(ts=(T0 + timedelta(seconds=i)).isoformat())) for i in range(n)
    ).encode()


def test_http_batch_loads_once_and_answers_counts(
    truncating_engine: sa.Engine, endpoint: str
) -> None:
    headers = {
        "Authorization": "Bearer s3cret",
        "Idempotency-Key": "svc-1",
        "Content-Type": "application/x-ndjson",
    }
    with httpx.Client(base_url=endpoint) as client:
        first = client.post("/v1/batches", content=_jsonl(20), headers=headers)
        second = client.post("/v1/batches", content=_jsonl(20), headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() | {"rejects": []} == {
        "batch_id": "svc-1",
        "received": 20,
        "loaded": 20,
        "rejected": 0,
        "late": 20,
        "duplicate": False,
        "rejects": [],
    }
    assert second.json()["duplicate"] is True
    assert _observations(truncating_engine) == 20


def test_http_csv_with_a_bad_row(truncating_engine: sa.Engine, endpoint: str) -> None:
    body = (
        "experiment,arm,ts,revenue,latency_ms,error\n"
        "ranker,champion,2026-11-26T10:00:00Z,0.2,31,false\n"
        "ranker,challenger,2026-11-26T10:00:01Z,NaN,29,false\n"
    )
    with httpx.Client(base_url=endpoint) as client:
        answer = client.post(
            "/v1/batches?batch_id=csv-1",
            content=body,
            headers={"Authorization": "Bearer s3cret", "Content-Type": "text/csv"},
        )
    assert answer.status_code == 200
    assert answer.json()["rejects"] == [{"row": 2, "reason": "revenue is NaN"}]


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"Authorization": "Bearer wrong"}, b"{}", 401, "bearer token"),
        ({}, b"{}", 401, "bearer token"),
        ({"Authorization": "Bearer s3cret"}, b"{}", 400, "Idempotency-Key"),
        (
            {
                "Authorization": "Bearer s3cret",
                "Idempotency-Key": "k",
                "Content-Type": "text/plain",
            },
            b"x",
            415,
            "text/plain",
        ),
        (
            {
                "Authorization": "Bearer s3cret",
                "Idempotency-Key": "k",
                "Content-Type": "application/x-ndjson",
            },
            b"x" * 70_000,
            413,
            "limit",
        ),
        (
            {
                "Authorization": "Bearer s3cret",
                "Idempotency-Key": "k",
                "Content-Type": "application/x-ndjson",
            },
            b"{not json",
            422,
            "line 1",
        ),
        (
            {
                "Authorization": "Bearer s3cret",
                "Idempotency-Key": "k",
                "Content-Type": "application/x-ndjson",
            },
            b'{"arm": "champion"}',
            422,
            "missing required column",
        ),
    ],
)
def test_http_refusals_name_the_problem_and_store_nothing(
    truncating_engine: sa.Engine,
    endpoint: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    with httpx.Client(base_url=endpoint) as client:
        answer = client.post("/v1/batches", content=body, headers=headers)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert _observations(truncating_engine) == 0


def test_writer_flushes_by_size_and_time_from_many_threads(
    truncating_engine: sa.Engine, registered: int
) -> None:
    sink = writer.DatabaseSink(truncating_engine, clock=SimulatedClock(NOW))
    w = writer.BatchWriter(sink, max_rows=250, max_delay=0.2)

    def produce(offset: int) -> None:
        for i in range(300):
            w.write(row(ts=(T0 + timedelta(seconds=offset + i)).isoformat(), error=i % 50 == 0))

    threads = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10
    while sum(r.loaded for r in w.results) < 1_200 and time.monotonic() < deadline:
        time.sleep(0.05)  # the time-based flush sends the last partial batch
    assert sum(r.loaded for r in w.results) == 1_200
    w.close()
    assert all(r.loaded <= 250 for r in w.results) and len({r.batch_key for r in w.results}) == len(
        w.results
    )
    assert _observations(truncating_engine) == 1_200


class _FlakySink:
    """Fails the first ``fail`` sends after storing them halfway (as a lost answer would)."""

    def __init__(self, inner: writer.DatabaseSink, fail: int) -> None:
        self.inner, self.fail, self.keys = inner, fail, []

    def send(self, batch_key, rows):  # type: ignore[no-untyped-def]
        self.keys.append(batch_key)
        result = self.inner.send(batch_key, rows)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("answer lost")
        return result


def test_writer_retries_with_the_same_batch_id_and_never_double_counts(
    truncating_engine: sa.Engine, registered: int
) -> None:
    sink = _FlakySink(writer.DatabaseSink(truncating_engine, clock=SimulatedClock(NOW)), fail=2)
    with writer.BatchWriter(sink, max_rows=100, max_delay=5, sleep=lambda s: None) as w:
        w.write_many(row(ts=(T0 + timedelta(seconds=i)).isoformat()) for i in range(100))
    assert len(sink.keys) == 3 and len(set(sink.keys)) == 1
    assert w.results[-1].duplicate and w.failed == []
    assert _observations(truncating_engine) == 100
