"""STATISTICS.md §7 reference values (α = 0.05), reproduced to 1e-6."""

import math

import pytest

from analysis import SufficientStats, exceedance_test, mean_difference, sequential, srm_test


def _stats(n: int, mean: float, var: float) -> SufficientStats:
    total = n * mean
    return SufficientStats(n, total, var * (n - 1) + total * mean)


@pytest.mark.parametrize(
    ("n", "delta", "var_a", "var_b", "tau2", "log_l", "p", "hw"),
    [
        (10_000, 0.02, 1, 1, 1e-4, 0.130601, 0.877568, 0.0619529),
        (10_000, 0.05, 1, 1, 1e-4, 1.880601, 0.152498, 0.0619529),
        (50_000, 0.02, 1, 1, 1e-4, 2.945047, 0.0525996, 0.0201414),
        (1_000, -0.1, 2, 3, 0.0025, 0.130601, 0.877568, 0.309764),
    ],
)
def test_two_sided_mixture(
    n: int, delta: float, var_a: float, var_b: float, tau2: float, log_l: float, p: float, hw: float
) -> None:
    res = mean_difference(_stats(n, 1.0, var_a), _stats(n, 1.0 + delta, var_b), tau2=tau2)
    assert res.log_e_value == pytest.approx(log_l, abs=1e-6)
    assert res.p_value == pytest.approx(p, abs=1e-6)
    assert res.upper - res.estimate == pytest.approx(hw, abs=1e-6)
    assert res.estimate - res.lower == pytest.approx(hw, abs=1e-6)


@pytest.mark.parametrize(
    ("delta", "delta0", "log_e"),
    [(-0.03, 0, 1.123504), (-0.05, 0, 2.552919), (-0.05, -0.02, 1.123504), (0.02, 0, -0.750766)],
)
def test_one_sided_harm(delta: float, delta0: float, log_e: float) -> None:
    got = sequential.log_e_one_sided(delta, 2e-4, 1e-4, delta0, lower=True)
    assert float(got) == pytest.approx(log_e, abs=1e-6)


def test_non_inferiority_is_the_mirror_of_harm() -> None:
    got = sequential.log_e_one_sided(0.05, 2e-4, 1e-4, 0.02, lower=False)
    assert float(got) == pytest.approx(1.123504, abs=1e-6)


@pytest.mark.parametrize(
    ("counts", "theta", "k", "log_bf"),
    [
        ([5100, 4900], [0.5, 0.5], 100, -0.329512),
        ([5250, 4750], [0.5, 0.5], 100, 10.072489),
        ([5250, 4750], [0.5, 0.5], 10_000, 5.904378),
        ([9620, 380], [0.95, 0.05], 100, 14.096381),
    ],
)
def test_srm_bayes_factor(counts: list[int], theta: list[float], k: float, log_bf: float) -> None:
    res = srm_test(counts, theta, alpha=0.05, concentration=k)
    assert res.log_bayes_factor == pytest.approx(log_bf, abs=1e-6)
    assert res.mismatch == (log_bf >= math.log(20))


@pytest.mark.parametrize(
    ("e_b", "e_a", "rho", "kappa", "pi0", "log_e"),
    [
        (60, 900, 0.05, 1, 0.05, -2.450469),
        (80, 900, 0.05, 1, 0.05, 4.969577),
        (80, 900, 0.05, 1.5, 0.073171, -3.398434),
        (120, 1000, 0.10, 1, 0.10, -3.572497),
    ],
)
def test_exceedance_count_test(
    e_b: int, e_a: int, rho: float, kappa: float, pi0: float, log_e: float
) -> None:
    res = exceedance_test(e_b, e_a, rho, kappa=kappa)
    assert res.pi0 == pytest.approx(pi0, abs=1e-6)
    assert res.log_e_value == pytest.approx(log_e, abs=1e-6)


def test_tau2_factor_and_width_at_the_tuned_variance() -> None:
    assert sequential.tau2_factor(0.05) == pytest.approx(7.936, abs=1e-3)
    v = 1.0
    hw = float(sequential.half_width(v, sequential.tau2_factor(0.05) * v, 0.05))
    assert hw == pytest.approx(3.035, abs=1e-3)
