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


def rollup_rows(
    engine: Any, exp_id: int, table: str = "rollups_minute", end: datetime | None = None
) -> list[dict[str, Any]]:
    """An experiment's rollup rows (minute or hour) before ``end``, by arm and period."""
    import sqlalchemy as sa

    from controller.storage import rollups

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT arm, period, {', '.join(rollups.ROLLUP_FIELDS)} FROM {table} "
                "WHERE experiment_id = :e AND (CAST(:end AS timestamptz) IS NULL OR period < :end) "
                "ORDER BY arm, period"
            ),
            {"e": exp_id, "end": end},
        ).mappings()
        return [dict(r) for r in rows]


def histogram_rows(engine: Any, exp_id: int, end: datetime | None = None) -> list[tuple[Any, ...]]:
    """An experiment's per-minute latency histogram rows before ``end``."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT arm, period, bucket, count FROM latency_minute WHERE experiment_id = :e "
                    "AND (CAST(:end AS timestamptz) IS NULL OR period < :end) ORDER BY 1, 2, 3"
                ),
                {"e": exp_id, "end": end},
            )
        ]


def evaluate_window(
    engine: Any, exp_id: int, start: datetime, end: datetime, **settings: Any
) -> Any:
    """``analysis.evaluate`` on one step of the stored rollups over ``[start, end)`` (a 20 %
    challenger), with a relative revenue guardrail, an error rate and a 45 ms tail."""
    import analysis
    from controller.operate.evaluate import arm_stats
    from controller.storage import rollups

    with engine.connect() as conn:
        totals = rollups.window_totals(conn, exp_id, start, end)
    step = analysis.StepWindow(
        weight_challenger=0.2,
        champion=arm_stats(totals["champion"]),
        challenger=arm_stats(totals["challenger"]),
        design_weight_challenger=0.2,
        closed=False,
    )
    guardrails = [
        analysis.GuardrailSpec(
            "revenue",
            analysis.GuardrailKind.MEAN,
            metric=analysis.MeanMetric.REVENUE,
            direction=analysis.Direction.HIGHER_IS_BETTER,
            margin=0.05,
            relative=True,
        ),
        analysis.GuardrailSpec("errors", analysis.GuardrailKind.RATE, kappa=1.5),
        analysis.GuardrailSpec("p95", analysis.GuardrailKind.TAIL, kappa=1.5, threshold_ms=45.0),
    ]
    return analysis.evaluate(analysis.AnalysisSettings(**settings), guardrails, [step])
