"""The count e-processes: supermartingale property, tuned prior, and the decision's use of them."""

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps

from analysis import (
    N_LATENCY_BUCKETS,
    AnalysisSettings,
    ArmStats,
    GuardrailKind,
    GuardrailSpec,
    StepWindow,
    counts,
    evaluate,
    exceedance_test,
)


@pytest.mark.parametrize("rho", [0.05, 0.25, 0.5])
@pytest.mark.parametrize("kappa", [1.0, 1.5])
@pytest.mark.parametrize("tuned", [False, True])
def test_expected_e_value_under_the_null_is_at_most_one(
    rho: float, kappa: float, tuned: bool
) -> None:
    pi0 = float(counts.null_share(rho, kappa))
    a, b = counts.tuned_prior(rho, kappa, 2.0) if tuned else (1.0, 1.0)
    for total in (1, 10, 100, 1000):
        e_b = np.arange(total + 1)
        log_e = counts.log_e_counts(e_b, total - e_b, pi0, a=a, b=b)
        log_expectation = float(special.logsumexp(sps.binom.logpmf(e_b, total, pi0) + log_e))
        assert log_expectation <= 1e-9


def test_tuned_prior_is_centred_on_the_target_inflation() -> None:
    a, b = counts.tuned_prior(0.05, 1.0, 2.0)
    assert float(a / (a + b)) == pytest.approx(float(counts.null_share(0.05, 2.0)))


def _arm(n: int, errors: int) -> ArmStats:
    return ArmStats(n=n, errors=errors, latency_hist=np.zeros(N_LATENCY_BUCKETS, dtype=np.int64))


def test_the_decision_with_a_uniform_prior_reproduces_the_reference_value() -> None:
    settings = AnalysisSettings(burn_in_requests=0, count_prior_ratio=None)
    ev = evaluate(
        settings,
        [GuardrailSpec("errors", GuardrailKind.RATE)],
        [StepWindow(0.05, _arm(950_000, 900), _arm(50_000, 80))],
    )
    assert ev.guardrails[0].log_e_value == pytest.approx(4.969577, abs=1e-6)
    assert exceedance_test(80, 900, 0.05).log_e_value == pytest.approx(4.969577, abs=1e-6)


def test_the_tuned_prior_detects_a_doubling_sooner() -> None:
    guard = [GuardrailSpec("errors", GuardrailKind.RATE)]
    step = [StepWindow(0.05, _arm(950_000, 300), _arm(50_000, 32))]
    uniform = evaluate(AnalysisSettings(burn_in_requests=0, count_prior_ratio=None), guard, step)
    tuned = evaluate(AnalysisSettings(burn_in_requests=0), guard, step)
    assert tuned.guardrails[0].log_e_value > uniform.guardrails[0].log_e_value + 1.0
