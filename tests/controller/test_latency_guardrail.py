"""The ``latency`` guardrail: geometric-mean latency, lower is better, a relative margin.

From the CRD to the engine: parsed and refused like the other kinds, frozen on the
relative scale with harm beginning at +margin, tested by the engine as a mean of log
latency with the margin ln(1 + margin), and shown back as a geometric-mean ratio − 1.
"""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import analysis
from controller.experiment import frozen, spec, validation
from controller.operate import evaluate

EXAMPLE = Path(__file__).parents[2] / "manifests" / "examples" / "gateway-api.yaml"
AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LOG_SD = 0.5  # sd of log latency (the demo world's is close to it)


def _raw() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def _settings(raw: dict[str, Any] | None = None) -> frozen.FrozenSettings:
    s = validation.parse_experiment(raw or _raw())
    return frozen.freeze(s, AT, derived_cap=5.0, derived_thresholds_ms={"latency-p99": 100.0})


def _arm(n: int, median_ms: float) -> analysis.ArmStats:
    """Exact moments of log-normal latency around ``median_ms``; all requests fast, no errors."""
    mu = math.log(median_ms)
    hist = np.zeros(analysis.N_LATENCY_BUCKETS, dtype=np.int64)
    hist[0] = n
    return analysis.ArmStats(
        n=n,
        revenue=analysis.SufficientStats(n, 0.1 * n, 0.6 * n),
        revenue_nonzero=n // 10,
        errors=0,
        latency_hist=hist,
        log_latency=analysis.SufficientStats(n, n * mu, n * (LOG_SD**2 + mu**2)),
    )


def test_the_example_parses_to_a_latency_guardrail() -> None:
    s = validation.parse_experiment(_raw())
    g = next(x for x in s.analysis.guardrails if x.name == "latency-mean")
    assert g == spec.LatencyGuardrail("latency-mean", 0.05)


def test_frozen_on_the_relative_scale_with_harm_above_the_margin() -> None:
    settings = _settings()
    test = settings.guardrail("latency-mean")
    assert test.kind is spec.GuardrailKind.LATENCY
    assert test.scale is frozen.Scale.RELATIVE
    assert (test.margin_line, test.null_line) == (0.05, 0.0)
    assert test.direction is spec.Direction.LOWER_IS_BETTER
    # 4 guardrails and the SRM check share alpha.
    assert test.alpha == pytest.approx(0.05 / 5)
    back = frozen.from_json(frozen.to_json(settings), frozen_at=AT)
    assert back == settings
    assert back.analysis == validation.analysis_from_raw(frozen.analysis_to_raw(back.analysis))


def test_the_engine_tests_the_mean_of_log_latency_at_log1p_margin() -> None:
    g = next(x for x in evaluate.guardrails_for(_settings()) if x.name == "latency-mean")
    assert g.kind == analysis.GuardrailKind.MEAN
    assert g.metric == analysis.MeanMetric.LOG_LATENCY
    assert not g.relative
    assert g.sign == -1.0
    assert g.margin == pytest.approx(math.log(1.05))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"margin": {"absolute": 3.0}}, "margin.absolute"),
        ({"margin": None}, "margin: is required for a latency guardrail"),
        ({"kappa": 1.2}, "kappa"),
        ({"direction": "lowerIsBetter"}, "direction"),
    ],
)
def test_bad_latency_guardrails_are_refused_naming_the_field(
    change: dict[str, Any], message: str
) -> None:
    raw = copy.deepcopy(_raw())
    g = next(x for x in raw["spec"]["analysis"]["guardrails"] if x["name"] == "latency-mean")
    for key, value in change.items():
        if value is None:
            g.pop(key)
        else:
            g[key] = value
    with pytest.raises(validation.SpecError, match=message.replace(".", r"\.")):
        validation.parse_experiment(raw)


def _evaluate(factor: float) -> tuple[analysis.Evaluation, frozen.FrozenSettings]:
    settings = _settings()
    # Half an hour at 1,000 requests/min, challenger at 25 %.
    step = analysis.StepWindow(0.25, _arm(22_500, 20.0), _arm(7_500, 20.0 * factor))
    ev = analysis.evaluate(
        evaluate.settings_for(settings), evaluate.guardrails_for(settings), [step]
    )
    return ev, settings


def test_a_challenger_10_percent_slower_fails_on_it() -> None:
    ev, settings = _evaluate(1.10)
    result = next(g for g in ev.guardrails if g.name == "latency-mean")
    assert result.verdict is analysis.Verdict.FAIL
    assert result.reason_code is analysis.ReasonCode.HARM
    assert "geometric-mean ratio ×1.1" in result.reason
    assert ev.verdict is analysis.Verdict.FAIL
    verdicts = evaluate.summarise(ev, settings=settings, windows=())
    shown = next(g for g in verdicts.guardrails if g.name == "latency-mean")
    assert shown.verdict.value == "fail"
    assert shown.scale == "relative"
    assert shown.harm_bound is not None and shown.harm_bound > 0.05
    row = next(r for r in verdicts.status_fields["guardrails"] if r["name"] == "latency-mean")
    assert row["estimate"] == pytest.approx(0.10, abs=1e-9)  # exact moments: ratio 1.10
    assert row["lower"] > 0.05 and row["upper"] > row["estimate"]
    assert row["marginLine"] == 0.05


def test_an_equally_fast_challenger_is_non_inferior() -> None:
    ev, _ = _evaluate(1.0)
    result = next(g for g in ev.guardrails if g.name == "latency-mean")
    assert result.verdict is analysis.Verdict.PASS
    assert result.reason_code is analysis.ReasonCode.NON_INFERIOR


def test_it_waits_for_its_own_requests() -> None:
    settings = _settings()
    step = analysis.StepWindow(0.05, _arm(1_900, 20.0), _arm(100, 30.0))
    ev = analysis.evaluate(
        evaluate.settings_for(settings), evaluate.guardrails_for(settings), [step]
    )
    result = next(g for g in ev.guardrails if g.name == "latency-mean")
    assert result.verdict is analysis.Verdict.CONTINUE
    assert result.waiting is not None and (result.waiting.have, result.waiting.need) == (100, 500)
