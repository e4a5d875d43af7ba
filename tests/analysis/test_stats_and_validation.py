"""Sufficient statistics, and bad arguments raising ValueError naming the argument."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import (
    AnalysisSettings,
    ArmStats,
    GuardrailKind,
    GuardrailSpec,
    StepWindow,
    SufficientStats,
    exceedance_test,
    mean_difference,
    srm_test,
)

values = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=50)


@given(values, values)
@settings(max_examples=60, deadline=None)
def test_merge_equals_stats_of_concatenation(a: list[float], b: list[float]) -> None:
    merged = SufficientStats.from_values(a) + SufficientStats.from_values(b)
    both = SufficientStats.from_values(a + b)
    assert merged.n == both.n
    assert merged.mean == pytest.approx(both.mean, rel=1e-9, abs=1e-9)
    assert merged.variance == pytest.approx(np.var(a + b, ddof=1), rel=1e-6, abs=1e-6)


def test_variance_is_stable_for_a_large_offset() -> None:
    rng = np.random.default_rng(0)
    x = 1e4 + rng.standard_normal(10_000)
    s = SufficientStats.from_values(x)
    assert s.variance == pytest.approx(np.var(x, ddof=1), rel=1e-5)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: srm_test([-1, 5], [0.5, 0.5]), "counts"),
        (lambda: srm_test([5, 5], [0.6, 0.6]), "weights"),
        (lambda: srm_test([5, 5], [0.5, 0.5], alpha=1.5), "alpha"),
        (lambda: srm_test([5, 5], [0.5, 0.5], alpha=0.0), "alpha"),
        (lambda: exceedance_test(-1, 3, 0.1), "count_challenger"),
        (lambda: exceedance_test(1, 3, 1.2), "weight_challenger"),
        (lambda: exceedance_test(1, 3, 0.1, kappa=0), "kappa"),
        (
            lambda: mean_difference(SufficientStats(5, 1, 1), SufficientStats(5, 1, 1), alpha=-0.1),
            "alpha",
        ),
        (lambda: SufficientStats(-1, 0.0, 0.0), "n"),
        (lambda: ArmStats(n=-3), "n"),
        (lambda: ArmStats(n=3, errors=4), "errors"),
        (lambda: ArmStats(n=3, latency_hist=np.zeros(5, dtype=np.int64)), "latency_hist"),
        (lambda: AnalysisSettings(alpha=1.0), "alpha"),
        (lambda: AnalysisSettings(burn_in_requests=-1), "burn_in_requests"),
        (lambda: GuardrailSpec("x", GuardrailKind.MEAN, margin=-0.1), "margin"),
        (lambda: GuardrailSpec("x", GuardrailKind.RATE, kappa=-1), "kappa"),
        (lambda: GuardrailSpec("x", GuardrailKind.TAIL), "threshold_ms"),
        (lambda: StepWindow(1.0, ArmStats(n=1), ArmStats(n=1)), "weight_challenger"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=name):
        call()


def test_tail_threshold_snaps_up_to_a_histogram_edge() -> None:
    from analysis import LATENCY_EDGES_MS

    g = GuardrailSpec("p99", GuardrailKind.TAIL, threshold_ms=67.7)
    assert g.threshold_edge_ms >= 67.7
    assert LATENCY_EDGES_MS[g.edge_index - 1] < 67.7
