"""What a sender of pre-aggregated cells must know of an experiment (``GET /v1/experiments/…``).

A streaming engine that aggregates request outcomes (the reference Spark job in
``scripts/spark/``) caps revenue with the experiment's frozen cap, counts latencies on the
engine's histogram edges, floors latencies before taking logs, and sends enough of each
cell's largest revenue values for the baseline's cap quantile. This module reads those from
the store and the analysis constants, in the caller's transaction; it writes nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from analysis import buckets
from controller.ingest import cells, validate
from controller.storage import models, rollups


def _cap_quantile(spec: dict[str, Any] | None) -> float | None:
    """The quantile of the champion's baseline revenue the cap is derived from, if any."""
    node: Any = spec or {}
    for key in ("analysis", "revenueCap", "fromBaseline", "quantile"):
        node = node.get(key) if isinstance(node, dict) else None
    return float(node) if isinstance(node, (int, float)) else None


def cell_format() -> dict[str, Any]:
    """The constants every cell must be computed with (the same for every experiment)."""
    return {
        "latencyEdgesMs": buckets.LATENCY_EDGES_MS.tolist(),
        "latencyEdgesId": cells.LATENCY_EDGES_ID,
        "logLatencyFloorMs": rollups.LOG_LATENCY_FLOOR_MS,
        "revenueMax": validate.REVENUE_MAX,
        "latencyMaxMs": validate.LATENCY_MAX_MS,
        "topMax": cells.TOP_MAX,
    }


def experiment_settings(conn: sa.Connection, key: str) -> dict[str, Any] | None:
    """The settings a cell sender needs for experiment ``namespace/name``, or None if unknown.

    ``revenueCap`` is null until the settings are frozen (cells then carry uncapped sums
    and their largest values, from which the freeze caps them).
    """
    namespace, _, name = validate.experiment_key(key).partition("/")
    row = conn.execute(
        sa.select(
            models.Experiment.spec,
            models.Experiment.settings_frozen_at,
            models.Experiment.revenue_cap,
            models.Experiment.allowed_lateness_seconds,
        ).where(models.Experiment.namespace == namespace, models.Experiment.name == name)
    ).first()
    if row is None:
        return None
    return {
        "experiment": f"{namespace}/{name}",
        "settingsFrozen": row.settings_frozen_at is not None,
        "revenueCap": row.revenue_cap,
        "capQuantile": _cap_quantile(row.spec),
        "allowedLatenessSeconds": row.allowed_lateness_seconds,
    }
