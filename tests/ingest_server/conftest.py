"""Fixtures: the ingest server under real uvicorn (``listen.config``) on a free port, real Postgres.

The server commits from its worker threads, so these tests use ``truncating_engine``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from controller.clock import SimulatedClock
from controller.storage import experiments
from tests.storage.helpers import T0, row

NOW = T0 + timedelta(hours=3, minutes=1)
CLOCK = SimulatedClock(NOW)


@contextmanager
def running(app: Any, **listen: Any) -> Iterator[str]:
    """Serve ``app`` with ``listen.Listen(**listen)`` in a thread; yields its base URL."""
    import uvicorn

    from controller.ingest import listen as listen_

    tls = listen.get("tls_cert") is not None
    where = listen_.Listen(**{"host": "127.0.0.1", "port": 0, **listen})
    srv = uvicorn.Server(listen_.config(app, where, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def registered(truncating_engine: sa.Engine) -> dict[str, int]:
    with truncating_engine.begin() as conn:
        return {
            key: experiments.register_experiment(conn, key)
            for key in ("default/ranker", "shop/ranker", "shop/search", "ads/ranker")
        }


def jsonl(*rows: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def rows(n: int, **overrides: Any) -> list[dict[str, Any]]:
    return [row(ts=(T0 + timedelta(seconds=i)).isoformat(), **overrides) for i in range(n)]


def count(engine: sa.Engine, sql: str = "SELECT count(*) FROM observations") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def headers(token: str = "s3cret", key: str = "b-1", **more: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": key,
        "Content-Type": "application/x-ndjson",
        **more,
    }


Factory = Callable[..., Any]


from tests import emulated  # noqa: E402

served = emulated.served  # fixture: the Kubernetes API emulator over HTTP
