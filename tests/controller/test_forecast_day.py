"""The operator's forecast from the champion's day hour by hour (``forecasting.for_tick``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import yaml

import analysis
from controller.experiment import frozen, spec, validation
from controller.operate import evaluate, forecasting
from controller.storage import rollups

EXAMPLE = Path(__file__).parents[2] / "manifests" / "examples" / "gateway-api.yaml"
AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _hour(requests: int) -> dict[str, rollups.ArmTotals]:
    """An hour of rollups: 80 % champion, 8 % of it with revenue 1.5, 0.2 % errors."""
    n = int(requests * 0.8)
    k = n * 8 // 100
    hist = [0] * analysis.N_LATENCY_BUCKETS
    hist[10], hist[-5] = n - n // 100, n // 100
    champion = rollups.ArmTotals(
        n=n,
        revenue_capped_sum=Decimal(1.5 * k),
        revenue_capped_sum_sq=Decimal(2.25 * k),
        revenue_nonzero=k,
        log_latency_sum=Decimal(3.4 * n),
        log_latency_sum_sq=Decimal((3.4**2 + 0.35**2) * n),
        errors=n // 500,
        latency_hist=np.array(hist),
    )
    return {"champion": champion, "challenger": rollups.ArmTotals(n=requests - n)}


def _pending(s: spec.ExperimentSpec) -> evaluate.Pending:
    tails = {g.name: 130.0 for g in s.analysis.guardrails if isinstance(g, spec.TailGuardrail)}
    settings = frozen.freeze(s, AT, derived_cap=4.5, derived_thresholds_ms=tails)
    item = analysis.BatchItem(
        evaluate.settings_for(settings),
        evaluate.guardrails_for(settings),
        [],
        analysis.AnalysisState(),
    )
    return evaluate.Pending(item, 1, [], [], settings)


def test_at_step_start_the_operator_forecasts_from_the_champions_hours() -> None:
    s = validation.parse_experiment(yaml.safe_load(EXAMPLE.read_text()))
    pending = _pending(s)
    busy = [(_hour(600_000 if h < 12 else 30_000), 60.0) for h in range(24)]
    quiet = [(_hour(30_000 if h < 12 else 600_000), 60.0) for h in range(24)]
    early, late = (forecasting.for_tick(pending, s, 0, day) for day in (busy, quiet))
    assert early is not None and late is not None
    assert early.document["trafficPeriods"] == late.document["trafficPeriods"] == 24
    assert early.document["requestsPerMinute"] == late.document["requestsPerMinute"] == 5250.0
    # the same day's traffic, busy during the run's first 12 hours or after them
    first, then = (spec.parse_duration(n.document["promotion"]["median"]) for n in (early, late))
    assert first.total_seconds() == 10 * 3600  # when the steps end (minimum durations)
    assert then.total_seconds() > 18 * 3600  # the steps' minimum samples wait for the busy hours
    # without a day and with no windows analysed yet, there is nothing to forecast from
    assert forecasting.for_tick(pending, s, 0, None) is None
    thin = [(_hour(30_000 if h else 600), 60.0) for h in range(24)]
    assert forecasting.day_schedule(thin, pending.item.guardrails) is None  # an hour too thin
