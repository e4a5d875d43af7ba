"""Fixtures: the ingest server under real uvicorn (``listen.config``) on a free port, real Postgres.

The server commits from its worker threads, so these tests use ``truncating_engine``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from controller.clock import SimulatedClock
from controller.storage import experiments
from tests.serving import running as running
from tests.storage.helpers import T0, row

NOW = T0 + timedelta(hours=3, minutes=1)
CLOCK = SimulatedClock(NOW)


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
