"""``status.guardrails[].waiting`` and ``status.srm.waiting``: what each test still waits for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

import analysis
from controller.experiment import frozen, validation
from controller.operate import evaluate

EXAMPLE = Path(__file__).parents[2] / "manifests" / "examples" / "gateway-api.yaml"


def _arm(n: int, nonzero: int, slow: int, errors: int) -> analysis.ArmStats:
    hist = np.zeros(analysis.N_LATENCY_BUCKETS, dtype=np.int64)
    hist[0] = n - slow
    hist[-1] = slow
    return analysis.ArmStats(
        n=n,
        revenue=analysis.SufficientStats(n, 0.1 * n, 0.6 * n),
        revenue_nonzero=nonzero,
        errors=errors,
        latency_hist=hist,
    )


def test_each_waiting_test_reports_have_need_and_unit() -> None:
    s = validation.parse_experiment(yaml.safe_load(EXAMPLE.read_text()))
    settings = frozen.freeze(
        s,
        datetime(2026, 11, 26, tzinfo=UTC),
        derived_cap=5.0,
        derived_thresholds_ms={"latency-p99": 100.0},
    )
    step = analysis.StepWindow(0.05, _arm(1_140, 90, 30, 4), _arm(60, 5, 3, 1))
    ev = analysis.evaluate(
        evaluate.settings_for(settings), evaluate.guardrails_for(settings), [step]
    )
    fields = evaluate.status_fields(ev, settings)
    rows = {r["name"]: r for r in fields["guardrails"]}
    assert rows["revenue"]["waiting"] == {"have": 60, "need": 3000, "unit": "requests"}
    assert rows["errors"]["waiting"] == {"have": 5, "need": 10, "unit": "errors"}
    assert "waiting" not in rows["latency-p99"]  # 33 slow requests ≥ 10
    assert rows["revenue"]["reasonCode"] == "burn_in"
    assert fields["srm"]["waiting"] == {"have": 60, "need": 100, "unit": "requests"}
