"""A/A under continuous monitoring, seeded (the full-size version is bench/detection.py).

300 runs each, so α + 2 Monte Carlo standard errors = 0.05 + 2·sqrt(0.05·0.95/300) ≈ 0.075.
canaryctl's family-wise false-rollback rate (any guardrail or the SRM check) must stay under
it; a naive Welch t-test at every look, on the same streams, must not.
"""

import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis import (
    AnalysisSettings,
    GuardrailKind,
    GuardrailSpec,
    MeanMetric,
    Scenario,
    SufficientStats,
    mean_difference,
    replay,
    simulate_minutes,
)

RUNS = 300
LIMIT = 0.05 + 2 * math.sqrt(0.05 * 0.95 / RUNS)
SETTINGS = AnalysisSettings(alpha=0.05)


def guardrails(sc: Scenario) -> list[GuardrailSpec]:
    return [
        GuardrailSpec("revenue", GuardrailKind.MEAN),
        GuardrailSpec("p99", GuardrailKind.TAIL, threshold_ms=sc.champion_p99_ms()),
        GuardrailSpec("errors", GuardrailKind.RATE),
        GuardrailSpec("lat", GuardrailKind.MEAN, metric=MeanMetric.LOG_LATENCY, relative=False),
    ]


def naive_welch_every_look(ms, burn_in: float) -> bool:  # type: ignore[no-untyped-def]
    n = np.cumsum(ms.n, axis=0).astype(float)
    s = np.cumsum(ms.revenue_sum, axis=0)
    q = np.cumsum(ms.revenue_sum_sq, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = s / n
        se2 = (np.maximum(q - s * m, 0) / (n - 1)) / n
        z = (m[:, 1] - m[:, 0]) / np.sqrt(se2.sum(axis=1))
    p = 2 * sps.norm.sf(np.abs(z))
    return bool(np.any((p < 0.05) & (n.min(axis=1) >= burn_in)))


def run(sc: Scenario, seed0: int) -> tuple[float, float, int]:
    guards = guardrails(sc)
    fails = naive = 0
    looks = sc.minutes
    for seed in range(seed0, seed0 + RUNS):
        ms = simulate_minutes(sc, seed, thresholds_ms=(sc.champion_p99_ms(),))
        rep = replay(SETTINGS, guards, ms)
        fails += rep.first_fail >= 0
        naive += naive_welch_every_look(ms, SETTINGS.burn_in_requests)
        looks = min(looks, int(np.sum(np.cumsum(ms.n, axis=0).min(axis=1) >= 3000)))
    return fails / RUNS, naive / RUNS, looks


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "scenario"),
    [
        (
            "50/50, heavy-tailed revenue (σ_ln = 1.5)",
            Scenario(minutes=130, requests_per_minute=400, ramp=((0, 0.5),), revenue_log_sigma=1.5),
        ),
        (
            "95/5, heavy-tailed revenue (σ_ln = 1.5)",
            Scenario(
                minutes=170, requests_per_minute=1000, ramp=((0, 0.05),), revenue_log_sigma=1.5
            ),
        ),
        (
            "ramp 5/25/50 % on a drifting baseline",
            Scenario(minutes=220, requests_per_minute=600, ramp=((0, 0.05), (70, 0.25), (140, 0.5)),
                     phase_minutes=-110),
        ),
    ],
)  # fmt: skip
def test_aa_false_rollbacks_stay_under_alpha(name: str, scenario: Scenario) -> None:
    rate, naive, looks = run(scenario, 1_000)
    assert looks >= 100, "each run must have at least 100 looks after burn-in"
    assert rate <= LIMIT, f"{name}: canaryctl false rollbacks {rate:.3f} > {LIMIT:.3f}"
    assert naive > LIMIT, f"{name}: the naive per-look t-test ({naive:.3f}) should fail this check"


@pytest.mark.slow
def test_confidence_sequence_covers_the_true_difference_at_every_look() -> None:
    rng = np.random.default_rng(3)
    true_diff, misses = 0.2, 0
    for _ in range(RUNS):
        a = rng.standard_normal((100, 50)) * 2.0
        b = rng.standard_normal((100, 50)) * 2.0 + true_diff
        sa, sb = SufficientStats.zero(), SufficientStats.zero()
        for look in range(100):
            sa = sa + SufficientStats.from_values(a[look])
            sb = sb + SufficientStats.from_values(b[look])
            if look < 1:
                continue
            res = mean_difference(sa, sb, n_star=1000)
            if not res.lower <= true_diff <= res.upper:
                misses += 1
                break
    assert misses / RUNS <= LIMIT
