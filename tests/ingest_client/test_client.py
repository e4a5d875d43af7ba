"""The HTTP ingest client against the real ingest server (uvicorn, real Postgres) over HTTP."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.clock import SimulatedClock
from controller.ingest import client as client_mod
from controller.ingest import server, spool
from controller.storage import experiments
from tests import serving
from tests.storage.helpers import T0

NOW = T0 + timedelta(hours=3, minutes=1)
TOKEN = "s3cret"
EXPERIMENT = "default/ranker"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(truncating_engine: sa.Engine) -> sa.Engine:
    """The server commits from its own thread, so the tables are truncated after each test."""
    return truncating_engine


@pytest.fixture
def registered(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return experiments.register_experiment(conn, EXPERIMENT)


def _observations(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM observations")).scalar_one())


def _serve(app: ASGIApp) -> tuple[str, Callable[[], None]]:
    """Run ``app`` under uvicorn in a thread on a free local port; returns its URL and a stop."""
    return serving.serve(app)


def _ingest_app(engine: sa.Engine) -> ASGIApp:
    return server.create_app(engine, token=TOKEN, clock=SimulatedClock(NOW))


@pytest.fixture
def endpoint(engine: sa.Engine, registered: int) -> Iterator[str]:
    url, stop = _serve(_ingest_app(engine))
    yield url
    stop()


def _closed_port() -> str:
    """The URL of a local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _record(client: client_mod.Client, n: int, offset: int = 0) -> None:
    for i in range(n):
        client.record(
            EXPERIMENT,
            "challenger" if i % 5 == 0 else "champion",
            T0 + timedelta(seconds=offset + i),
            0.25 if i % 7 == 0 else 0.0,
            30.0 + i % 11,
            i % 50 == 0,
            unit_id=f"user-{i % 97}" if i % 2 else None,
        )


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_rows_recorded_arrive_exactly_once(engine: sa.Engine, endpoint: str) -> None:
    with client_mod.Client(endpoint, TOKEN, batch_rows=400) as client:
        _record(client, 2_500)
        assert client.flush(timeout=30)
        stats = client.stats()
    assert _observations(engine) == 2_500
    assert stats["recorded"] == stats["sent_rows"] == 2_500
    assert stats["sent_batches"] >= 7  # 2,500 rows in batches of at most 400
    assert (stats["dropped"], stats["lost_rows"], stats["rejected_batches"]) == (0, 0, 0)
    assert stats["queue_depth"] == 0
    with engine.connect() as conn:
        units = conn.execute(
            sa.text("SELECT count(*) FROM observations WHERE unit_id IS NOT NULL")
        ).scalar_one()
    assert units == 1_250


def test_rows_from_many_threads_arrive_exactly_once(engine: sa.Engine, endpoint: str) -> None:
    with client_mod.Client(endpoint, TOKEN, batch_rows=250, max_delay=0.05) as client:
        threads = [
            threading.Thread(target=_record, args=(client, 600, k * 1_000)) for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert client.stats()["sent_rows"] == 2_400
    assert _observations(engine) == 2_400


class _Flaky:
    """Answers the first requests with the given statuses; ``store`` lets the real app load first.

    A stored-then-503 answer is a lost answer: the retry must come with the same batch id.
    """

    def __init__(self, app: ASGIApp, answers: list[tuple[int, bool]]) -> None:
        self.app, self.answers, self.keys = app, list(answers), []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/batches" or not self.answers:
            if scope["type"] == "http":
                self.keys.append(dict(scope["headers"]).get(b"idempotency-key", b"").decode())
            await self.app(scope, receive, send)
            return
        self.keys.append(dict(scope["headers"]).get(b"idempotency-key", b"").decode())
        status, store = self.answers.pop(0)
        if store:

            async def discard(message: Message) -> None:
                return None

            await self.app(scope, receive, discard)
        response = JSONResponse(
            {"error": "flaky"}, status_code=status, headers={"Retry-After": "0"}
        )
        await response(scope, receive, send)


def test_503s_then_200_store_the_batch_once_under_one_id(
    engine: sa.Engine, registered: int
) -> None:
    flaky = _Flaky(_ingest_app(engine), [(503, True), (503, False), (429, False), (500, True)])
    url, stop = _serve(flaky)
    try:
        with client_mod.Client(
            url, TOKEN, batch_rows=10_000, max_delay=3600, backoff=0.0
        ) as client:
            _record(client, 300)
            assert client.flush(timeout=30)
            stats = client.stats()
    finally:
        stop()
    assert len(flaky.keys) == 5 and len(set(flaky.keys)) == 1
    assert stats["retries"] == 4
    assert stats["sent_batches"] == stats["duplicate_batches"] == 1
    assert stats["sent_rows"] == 300
    assert _observations(engine) == 300


def test_a_4xx_refuses_the_batch_without_retrying(
    engine: sa.Engine, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger=client_mod.__name__),
        client_mod.Client(endpoint, "wrong", batch_rows=10_000, max_delay=3600) as client,
    ):
        _record(client, 40)
        assert client.flush(timeout=30)
        stats = client.stats()
    assert (stats["rejected_batches"], stats["rejected_rows"], stats["retries"]) == (1, 40, 0)
    assert stats["sent_rows"] == 0
    refused = [r.getMessage() for r in caplog.records]
    assert len(refused) == 1
    assert "refused with 401: missing or wrong bearer token" in refused[0]
    assert _observations(engine) == 0


def test_bad_values_are_quarantined_by_the_server_not_the_batch(
    engine: sa.Engine, endpoint: str
) -> None:
    naive = datetime(2026, 11, 26, 9, 30)  # taken as UTC
    with client_mod.Client(endpoint, TOKEN) as client:
        client.record(EXPERIMENT, "champion", naive, 0.1, 30.0, False)
        client.record(EXPERIMENT, "champion", T0.timestamp() + 60, 0.1, 30.0, True)
        client.record(EXPERIMENT, "champion", "2026-11-26T09:02:00Z", 0.1, 30.0, False)
        client.record(EXPERIMENT, "champion", T0, float("nan"), 30.0, False)
        client.record(EXPERIMENT, "blue", T0, 0.1, 30.0, False)
        client.record(EXPERIMENT, "champion", "yesterday", 0.1, 30.0, False)
        assert client.flush(timeout=30)
        stats = client.stats()
    assert (stats["sent_rows"], stats["quarantined_rows"]) == (6, 3)
    with engine.connect() as conn:
        stored = sorted(
            conn.execute(sa.text("SELECT ts, error FROM observations")).all(), key=lambda r: r[0]
        )
    assert stored == [
        (T0 + timedelta(minutes=1), True),
        (T0 + timedelta(minutes=2), False),
        (datetime(2026, 11, 26, 9, 30, tzinfo=UTC), False),
    ]


def test_server_down_rows_are_spooled_then_delivered_once_by_a_new_client(
    engine: sa.Engine, registered: int, tmp_path: Path
) -> None:
    down = _closed_port()
    with client_mod.Client(
        down, TOKEN, batch_rows=200, retry_budget=0.0, spool_dir=tmp_path
    ) as client:
        _record(client, 700)
        assert client.flush(timeout=30)
        stats = client.stats()
    assert stats["spooled"] == 700 and stats["sent_rows"] == 0
    assert stats["spool_batches"] == len(list(tmp_path.glob("*.ndjson"))) >= 4
    assert _observations(engine) == 0

    url, stop = _serve(_ingest_app(engine))
    try:
        with client_mod.Client(url, TOKEN, max_delay=0.05, spool_dir=tmp_path) as again:
            assert again.stats()["spool_batches"] == stats["spool_batches"]
            _wait_until(lambda: again.stats()["spool_batches"] == 0, "the spool to drain")
            resent = again.stats()
        with client_mod.Client(url, TOKEN, max_delay=0.05, spool_dir=tmp_path) as third:
            assert third.flush(timeout=30)
    finally:
        stop()
    assert resent["sent_rows"] == 700 and resent["duplicate_batches"] == 0
    assert list(tmp_path.glob("*.ndjson")) == []
    assert _observations(engine) == 700


def test_a_spooled_batch_the_server_already_stored_is_not_stored_twice(
    engine: sa.Engine, registered: int, tmp_path: Path
) -> None:
    lost_answers = _Flaky(_ingest_app(engine), [(503, True)] * 3)
    url, stop = _serve(lost_answers)
    try:
        with client_mod.Client(
            url, TOKEN, retry_budget=0.0, max_backoff=0.0, max_delay=3600, spool_dir=tmp_path
        ) as client:
            _record(client, 50)
            assert client.flush(timeout=30)
            _wait_until(lambda: client.stats()["spool_batches"] == 0, "the spool to drain")
            stats = client.stats()
    finally:
        stop()
    assert stats["spooled"] == 50 and stats["duplicate_batches"] == 1
    assert len(set(lost_answers.keys)) == 1
    assert _observations(engine) == 50


def test_closing_while_the_server_is_away_spools_what_is_queued(tmp_path: Path) -> None:
    client = client_mod.Client(
        _closed_port(), TOKEN, batch_rows=100, max_delay=3600, retry_budget=3600, spool_dir=tmp_path
    )
    _record(client, 250)
    client.close(timeout=0.0)
    stats = client.stats()
    assert stats["spooled"] == 250 and stats["lost_rows"] == 0 and stats["queue_depth"] == 0
    assert b"".join(p.read_bytes() for p in tmp_path.glob("*.ndjson")).count(b"\n") == 250


def test_a_full_queue_drops_and_counts() -> None:
    client = client_mod.Client(
        _closed_port(), TOKEN, max_queue=10, batch_rows=1_000, max_delay=3600
    )
    accepted = [client.record(EXPERIMENT, "champion", T0, 0.0, 30.0, False) for _ in range(25)]
    stats = client.stats()
    assert accepted == [True] * 10 + [False] * 15
    assert (stats["recorded"], stats["dropped"], stats["queue_depth"]) == (25, 15, 10)
    client.close(timeout=0.0)
    assert client.stats()["lost_rows"] == 10  # no spool: what was queued is counted as lost
    assert client.record(EXPERIMENT, "champion", T0, 0.0, 30.0, False) is False
    assert client.stats()["dropped"] == 16


def test_flush_says_when_it_ran_out_of_time() -> None:
    client = client_mod.Client(_closed_port(), TOKEN, retry_budget=3600, backoff=0.01)
    client.record(EXPERIMENT, "champion", None, 0.0, 30.0, False)
    assert client.flush(timeout=0.05) is False
    client.close(timeout=0.0)
    assert client.stats()["lost_rows"] == 1


def test_a_full_spool_counts_the_lost_rows(tmp_path: Path) -> None:
    with client_mod.Client(
        _closed_port(),
        TOKEN,
        batch_rows=10,
        retry_budget=0.0,
        spool_dir=tmp_path,
        spool_max_bytes=2_000,
    ) as client:
        _record(client, 100)
        assert client.flush(timeout=30)
        stats = client.stats()
    assert stats["spooled"] + stats["lost_rows"] == 100
    assert stats["lost_rows"] > 0 and 0 < stats["spool_bytes"] <= 2_000


def test_one_spool_directory_per_process(tmp_path: Path) -> None:
    with (
        client_mod.Client(_closed_port(), TOKEN, spool_dir=tmp_path),
        pytest.raises(spool.SpoolInUse, match="in use by another client"),
    ):
        client_mod.Client(_closed_port(), TOKEN, spool_dir=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ingest:8080"}, "url: expected http://"),
        ({"token": ""}, "token: "),
        ({"max_queue": 0}, "max_queue: must be ≥ 1"),
        ({"batch_rows": 0}, "batch_rows: must be ≥ 1"),
        ({"max_delay": 0}, "max_delay: must be > 0"),
        ({"timeout": -1}, "timeout: must be > 0"),
        ({"retry_budget": float("nan")}, "retry_budget: must be ≥ 0"),
        ({"verify": "/nowhere/ca.pem"}, "verify: no CA bundle"),
        ({"spool_dir": "/proc/no-spool-here"}, "spool_dir /proc/no-spool-here: cannot create"),
        ({"spool_dir": "x", "spool_max_bytes": 0}, "spool_max_bytes: must be ≥ 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"url": "http://127.0.0.1:1", "token": TOKEN} | kwargs
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")) as error:
        client_mod.Client(**arguments)
    assert "\n" not in str(error.value)


def test_metrics_register_with_prometheus(engine: sa.Engine, endpoint: str) -> None:
    registry = CollectorRegistry()
    with client_mod.Client(endpoint, TOKEN) as client:
        client.register_metrics(registry)
        _record(client, 30)
        assert client.flush(timeout=30)
        assert registry.get_sample_value("canaryctl_client_sent_rows_total") == 30
        assert registry.get_sample_value("canaryctl_client_recorded_total") == 30
        assert registry.get_sample_value("canaryctl_client_queue_depth") == 0


HEAVY = ["numpy", "scipy", "sqlalchemy", "pyarrow", "pandas", "alembic", "psycopg", "kubernetes"]


def test_importing_the_client_imports_nothing_heavy() -> None:
    probe = (
        "import json, sys\n"
        "import controller.ingest.client\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert "controller" in loaded
    assert loaded.isdisjoint([*HEAVY, "httpx"])  # httpx comes with the sender thread


def test_a_program_that_exits_without_closing_still_delivers(
    engine: sa.Engine, endpoint: str
) -> None:
    program = (
        "import sys\n"
        "from controller.ingest.client import Client\n"
        f"client = Client(sys.argv[1], {TOKEN!r}, max_delay=3600)\n"
        "for i in range(120):\n"
        f"    client.record({EXPERIMENT!r}, 'champion', {T0.timestamp()} + i, 0.0, 30.0, False)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, endpoint],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert _observations(engine) == 120


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this value")


def test_an_unencodable_batch_is_counted_as_lost_and_the_sender_carries_on(
    engine: sa.Engine, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    with client_mod.Client(endpoint, TOKEN, batch_rows=10_000, max_delay=3600) as client:
        client.record(EXPERIMENT, "champion", T0, 0.0, 30.0, False, unit_id=_Unprintable())  # type: ignore[arg-type]
        _record(client, 9)
        assert client.flush(timeout=30)
        _record(client, 20, offset=100)
        assert client.flush(timeout=30)
        stats = client.stats()
    assert (stats["lost_rows"], stats["sent_rows"]) == (10, 20)
    assert "a batch of 10 rows lost to an unexpected error" in caplog.text
    assert _observations(engine) == 20


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://ingest:8080", "http://ingest:8080/v1/batches"),
        ("https://ingest/", "https://ingest/v1/batches"),
        ("http://ingest:8080/v1/batches", "http://ingest:8080/v1/batches"),
    ],
)
def test_the_endpoint_is_the_batches_path_of_the_url(url: str, endpoint: str) -> None:
    client = client_mod.Client(url, TOKEN)
    client.close(timeout=0.0)
    assert client.endpoint == endpoint


def test_metrics_without_prometheus_client_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with (
        client_mod.Client(_closed_port(), TOKEN) as client,
        pytest.raises(
            RuntimeError, match=r"^register_metrics needs prometheus_client: pip install"
        ),
    ):
        client.register_metrics()
