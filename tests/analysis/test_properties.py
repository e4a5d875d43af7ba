"""Properties: duality, SRM invariance to batching, safe-side estimates never FAIL."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analysis import (
    N_LATENCY_BUCKETS,
    AnalysisSettings,
    ArmStats,
    GuardrailKind,
    GuardrailSpec,
    StepWindow,
    SufficientStats,
    Verdict,
    evaluate,
    mean_difference,
    srm_test,
)


@given(
    n=st.integers(10, 10**6),
    mean_a=st.floats(-5, 5),
    diff=st.floats(-2, 2),
    sd=st.floats(0.1, 10),
    tau2=st.floats(1e-6, 1.0),
    alpha=st.floats(0.001, 0.5),
    delta0=st.floats(-1, 1),
)
@settings(max_examples=200, deadline=None)
def test_p_value_and_interval_are_dual(
    n: int, mean_a: float, diff: float, sd: float, tau2: float, alpha: float, delta0: float
) -> None:
    def s(m: float) -> SufficientStats:
        return SufficientStats(n, n * m, sd * sd * (n - 1) + n * m * m)

    res = mean_difference(s(mean_a), s(mean_a + diff), alpha=alpha, tau2=tau2, delta0=delta0)
    margin = 1e-9 * (1 + abs(res.upper) + abs(res.lower))
    assume(abs(delta0 - res.lower) > margin and abs(delta0 - res.upper) > margin)
    assert (res.p_value <= alpha) == (not res.lower < delta0 < res.upper)


def test_mean_difference_p_value_is_a_running_minimum() -> None:
    rng = np.random.default_rng(1)
    a, b, p = SufficientStats.zero(), SufficientStats.zero(), 1.0
    for _ in range(50):
        a = a + SufficientStats.from_values(rng.standard_normal(200))
        b = b + SufficientStats.from_values(rng.standard_normal(200) + 0.05)
        res = mean_difference(a, b, previous_p_value=p)
        assert res.p_value <= p
        p = res.p_value
    assert p < 1.0


@given(
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=1, max_size=40),
    st.integers(1, 10**6),
)
@settings(max_examples=80, deadline=None)
def test_srm_is_invariant_to_batching(minutes: list[tuple[int, int]], seed: int) -> None:
    counts = np.array(minutes)
    rng = np.random.default_rng(seed)
    cuts = np.sort(
        rng.choice(np.arange(1, len(counts) + 1), size=min(3, len(counts)), replace=False)
    )
    batches = np.split(counts, cuts)
    total = sum((b.sum(axis=0) for b in batches), np.zeros(2, dtype=np.int64))
    one = srm_test(counts.sum(axis=0), [0.8, 0.2])
    batched = srm_test(total, [0.8, 0.2])
    assert one.log_bayes_factor == batched.log_bayes_factor


def _arm(n: int, mean: float, sd: float, errors: int) -> ArmStats:
    return ArmStats(
        n=n,
        revenue=SufficientStats(n, n * mean, sd * sd * (n - 1) + n * mean * mean),
        revenue_nonzero=n,
        errors=errors,
        latency_hist=np.zeros(N_LATENCY_BUCKETS, dtype=np.int64),
    )


step_strategy = st.tuples(
    st.floats(0.02, 0.6),  # challenger weight
    st.integers(5_000, 500_000),  # requests
    st.floats(0.5, 2.0),  # champion mean
    st.floats(-0.5, 0.5),  # relative difference
    st.floats(0.001, 0.05),  # champion error rate
    st.floats(0.2, 4.0),  # error ratio
)


@given(st.lists(step_strategy, min_size=1, max_size=3), st.floats(0, 0.1), st.floats(1, 1.5))
@settings(max_examples=150, deadline=None)
def test_an_estimate_on_the_safe_side_of_the_margin_never_fails(
    steps: list[tuple[float, int, float, float, float, float]], margin: float, kappa: float
) -> None:
    windows = []
    for i, (w, n, m, d, p, ratio) in enumerate(steps):
        n_b = max(int(n * w), 10)
        n_a = n - n_b
        windows.append(
            StepWindow(
                w,
                _arm(n_a, m, m, int(p * n_a)),
                _arm(n_b, m * (1 + d), m, min(int(p * ratio * n_b), n_b)),
                closed=i < len(steps) - 1,
            )
        )
    guards = [
        GuardrailSpec("revenue", GuardrailKind.MEAN, margin=margin),
        GuardrailSpec("errors", GuardrailKind.RATE, kappa=kappa),
    ]
    ev = evaluate(AnalysisSettings(burn_in_requests=100, burn_in_nonzero=10), guards, windows)
    rev, err = ev.guardrails
    if rev.estimate >= -margin:
        assert rev.verdict != Verdict.FAIL
    if rev.verdict == Verdict.FAIL:  # the bound clears the margin (up to bisection resolution)
        assert rev.upper < -margin + 1e-9 * (1 + abs(rev.upper))
    if not err.estimate > kappa:
        assert err.verdict != Verdict.FAIL
    if err.verdict == Verdict.FAIL:
        assert err.lower > kappa * (1 - 1e-4)
    assert not math.isnan(rev.log_e_value)


def test_count_bounds_bracket_the_estimate() -> None:
    ev = evaluate(
        AnalysisSettings(burn_in_requests=100, burn_in_nonzero=0),
        [GuardrailSpec("errors", GuardrailKind.RATE)],
        [StepWindow(0.5, _arm(100_000, 1, 1, 200), _arm(100_000, 1, 1, 400))],
    )
    g = ev.guardrails[0]
    assert g.lower < g.estimate < g.upper
    assert g.estimate == pytest.approx(2.0)
    assert g.verdict == Verdict.FAIL
