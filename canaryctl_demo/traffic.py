"""A traffic simulator that follows the live split: ranking requests for the demo and tests.

Each simulated minute the caller asks the router what share of traffic reaches the
challenger; this module draws that minute's requests from ``analysis.simulate`` (the one
traffic model: diurnal curve, zero-inflated lognormal revenue, lognormal latency with a
slow tail, rare errors, and the scenario's effects on the challenger, an SRM shortfall
included) and returns them as rows in the ingest format. It writes nothing itself.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from analysis import Scenario, simulate


def minute_of_requests(
    sc: Scenario,
    *,
    experiment: str,
    minute: int,
    start: datetime,
    share: float,
    rng: np.random.Generator,
) -> pa.Table:
    """The requests of minute ``minute`` (starting at ``start``) with ``share`` to the challenger."""
    rows = simulate.minute_requests(sc, minute, share, rng)
    n = rows.arm.size
    offsets = (rows.ts_offset_s * 1e6).astype("timedelta64[us]")
    ts = np.datetime64(start.replace(tzinfo=None), "us") + offsets
    return pa.table(
        {
            "experiment": pa.array([experiment] * n, type=pa.string()),
            "arm": pa.array(np.where(rows.arm == 1, "challenger", "champion")),
            "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            "revenue": rows.revenue,
            "latency_ms": rows.latency_ms,
            "error": rows.error,
        }
    )
