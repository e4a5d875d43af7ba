"""Per-arm values: quantiles off the histogram, guardrail metrics, step pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import arms, buckets
from analysis.spec import GuardrailKind, GuardrailSpec, MeanMetric
from analysis.stats import ArmStats, SufficientStats


def _arm(latencies_ms: np.ndarray, revenue: np.ndarray, errors: int = 0) -> ArmStats:
    hist = np.bincount(buckets.latency_bucket(latencies_ms), minlength=buckets.N_LATENCY_BUCKETS)
    return ArmStats(
        n=latencies_ms.size,
        revenue=SufficientStats.from_values(revenue),
        revenue_nonzero=int((revenue > 0).sum()),
        errors=errors,
        latency_hist=hist,
        log_latency=SufficientStats.from_values(np.log(latencies_ms)),
    )


def test_quantiles_within_two_percent_of_the_sample() -> None:
    rng = np.random.default_rng(7)
    lat = rng.lognormal(math.log(30.0), 0.4, 50_000)
    v = arms.ArmValues.from_stats(_arm(lat, np.zeros(lat.size)))
    for q in arms.QUANTILES:
        assert v.latency_ms(q) == pytest.approx(np.quantile(lat, q), rel=0.02)
    assert v.geometric_mean_latency_ms == pytest.approx(30.0, rel=0.01)


def test_empty_histogram_has_no_quantile_and_q_is_checked() -> None:
    assert math.isnan(arms.latency_quantile(np.zeros(buckets.N_LATENCY_BUCKETS), 0.5))
    with pytest.raises(ValueError, match="q must be"):
        arms.latency_quantile(np.ones(buckets.N_LATENCY_BUCKETS), 1.5)


def test_guardrail_values_read_the_metric_each_kind_tests() -> None:
    lat_a = np.full(1000, 20.0)
    lat_a[:10] = 200.0
    lat_b = np.full(1000, 20.0)
    lat_b[:40] = 200.0
    a = arms.ArmValues.from_stats(_arm(lat_a, np.r_[np.ones(100), np.zeros(900)], errors=5))
    b = arms.ArmValues.from_stats(_arm(lat_b, np.r_[np.ones(90), np.zeros(910)], errors=20))
    tail = GuardrailSpec("latency-p99", GuardrailKind.TAIL, threshold_ms=80.0)
    t = arms.guardrail_values(tail, a, b)
    assert (t.metric, t.unit) == ("share_slower", "share")
    assert (t.champion, t.challenger) == pytest.approx((0.01, 0.04))
    assert t.relative_change == pytest.approx(3.0)
    assert t.threshold_ms is not None and 80.0 <= t.threshold_ms < 80.0 * 1.02
    r = arms.guardrail_values(GuardrailSpec("errors", GuardrailKind.RATE), a, b)
    assert (r.champion, r.challenger) == pytest.approx((0.005, 0.02))
    m = arms.guardrail_values(GuardrailSpec("revenue", GuardrailKind.MEAN), a, b)
    assert m.metric == "revenue_per_request"
    assert m.absolute_change == pytest.approx(-0.01)
    ll = GuardrailSpec("lat", GuardrailKind.MEAN, metric=MeanMetric.LOG_LATENCY)
    assert arms.guardrail_values(ll, a, b).unit == "ms"


def test_pooling_weighs_both_arms_alike_so_drift_makes_no_difference() -> None:
    # Revenue drifts 1.0 → 3.0 between steps; both arms are identical within each step,
    # but the challenger carries far more of the second step. Per-arm pooling would show
    # a large false difference; equal step weights show none.
    lat = np.full(1, 20.0)

    def arm(n: int, rev: float) -> ArmStats:
        one = _arm(np.repeat(lat, n), np.full(n, rev))
        return one

    steps = [(arm(950, 1.0), arm(50, 1.0)), (arm(500, 3.0), arm(500, 3.0))]
    pooled = arms.pooled(steps)
    assert pooled is not None
    a, b = pooled
    assert a.revenue_per_request == pytest.approx(b.revenue_per_request)
    assert (a.requests, b.requests) == (1450, 550)
    assert arms.pooled([(arm(10, 1.0), ArmStats(0))]) is None
