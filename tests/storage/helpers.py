"""Builders of request-outcome batches for storage and ingest tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def outcomes(
    n: int,
    *,
    seed: int = 0,
    experiment: str = "default/ranker",
    start: datetime = T0,
    seconds: float = 3 * 3600,
    unit_ids: bool = False,
) -> pa.Table:
    """``n`` plausible rows: zero-inflated lognormal revenue, lognormal latency, rare errors."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, seconds, n))
    ts = np.datetime64(start.replace(tzinfo=None), "us") + (offsets * 1e6).astype("timedelta64[us]")
    columns: dict[str, Any] = {
        "experiment": pa.array([experiment] * n),
        "arm": pa.array(rng.choice(["champion", "challenger"], n, p=[0.8, 0.2])),
        "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
        "revenue": np.where(rng.random(n) < 0.08, rng.lognormal(-1.0, 1.5, n), 0.0),
        "latency_ms": rng.lognormal(np.log(30.0), 0.35, n),
        "error": rng.random(n) < 0.01,
    }
    if unit_ids:
        columns["unit_id"] = pa.array([f"user-{i % 977}" if i % 5 else None for i in range(n)])
    return pa.table(columns)


def row(**overrides: Any) -> dict[str, Any]:
    base = {
        "experiment": "default/ranker",
        "arm": "champion",
        "ts": (T0 + timedelta(minutes=5)).isoformat(),
        "revenue": "0.5",
        "latency_ms": "31.5",
        "error": "false",
    }
    base.update(overrides)
    return base


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.table(
        {
            k: pa.array([None if r.get(k) is None else str(r[k]) for r in rows], type=pa.string())
            for k in names
        }
    )
