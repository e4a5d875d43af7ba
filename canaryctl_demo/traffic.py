"""A traffic simulator that follows the live split: ranking requests for the demo and tests.

Each simulated minute it asks the router what share of traffic reaches the challenger and
draws that minute's requests for both arms from ``analysis.Scenario``'s distributions:
revenue mostly zero and heavy-tailed when positive, latency lognormal around 30 ms with a
slow tail, rare errors, a diurnal curve, and the scenario's effects on the challenger
(an SRM shortfall drops a share of the challenger's requests before they are logged).
It returns rows in the ingest format; it writes nothing itself.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from analysis import Scenario


def _curve(sc: Scenario, amplitude: float, minute: int) -> float:
    return 1.0 + amplitude * math.sin(2 * math.pi * (minute + sc.phase_minutes) / 1440)


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
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share: must lie in [0, 1], got {share}")
    n = int(rng.poisson(sc.requests_per_minute * _curve(sc, sc.volume_amplitude, minute)))
    is_b = rng.random(n) < share
    if sc.srm_shortfall > 0:
        keep = ~is_b | (rng.random(n) >= sc.srm_shortfall)
        is_b, n = is_b[keep], int(keep.sum())
    clicks = rng.random(n) < sc.click_rate
    revenue = np.zeros(n)
    scale = _curve(sc, sc.revenue_amplitude, minute) * np.where(is_b, 1.0 + sc.revenue_effect, 1.0)
    revenue[clicks] = scale[clicks] * np.exp(
        sc.revenue_log_mean + sc.revenue_log_sigma * rng.standard_normal(int(clicks.sum()))
    )
    log_latency = (
        math.log(sc.latency_median_ms)
        + math.log(_curve(sc, sc.latency_amplitude, minute))
        + sc.latency_sigma * rng.standard_normal(n)
        + np.where(rng.random(n) < sc.tail_share, math.log(sc.tail_factor), 0.0)
        + np.where(is_b, math.log(sc.latency_factor), 0.0)
    )
    p_error = (
        sc.error_rate
        * _curve(sc, sc.error_amplitude, minute)
        * np.where(is_b, sc.error_factor, 1.0)
    )
    error = rng.random(n) < np.minimum(p_error, 1.0)
    offsets = np.sort(rng.random(n) * 60e6).astype("timedelta64[us]")
    ts = np.datetime64(start.replace(tzinfo=None), "us") + offsets
    return pa.table(
        {
            "experiment": pa.array([experiment] * n, type=pa.string()),
            "arm": pa.array(np.where(is_b, "challenger", "champion")),
            "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            "revenue": revenue,
            "latency_ms": np.exp(log_latency),
            "error": error,
        }
    )


MINUTE = timedelta(minutes=1)
