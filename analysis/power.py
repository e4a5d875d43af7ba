"""Planning: samples and time to detect an effect, and power by a deadline.

Sits before an experiment starts: ``canaryctl plan`` prints :func:`plan`. The fixed-horizon
figures are closed-form (normal approximation, from statsmodels' power module); the
sequential ones follow the Gaussian limit of the test canaryctl runs (half-normal mixture
mSPRT, τ² tuned at ``n_star``), simulated on a grid of looks with a fixed seed so that the
plan is reproducible. This module must not read data or the clock.

Sources: Johari et al. (2022) §6 for the cost of always-valid inference; STATISTICS.md §6
(median stop 0.29·N at 2× the fixed-horizon MDE, 0.16·N at 3×), which the tests check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis import sequential

_PATHS = 4000
_GRID = 600


def quantile_with_inf(x: np.ndarray, q: float) -> float:
    """Lower ``q``-quantile of values that may be ``inf`` (never reached)."""
    s = np.sort(np.asarray(x, dtype=np.float64))
    return float(s[max(math.ceil(q * s.size) - 1, 0)]) if s.size else math.nan


@dataclass(frozen=True)
class Plan:
    """What a planned canary can detect.

    Attributes
    ----------
    effect_abs : float
        The effect in metric units (negative for harm on a higher-is-better metric).
    fixed_horizon_n : float
        Challenger requests a fixed-horizon one-sided test at ``alpha`` needs for ``power``.
    fixed_horizon_seconds : float
        The same in seconds of traffic.
    median_n, p90_n : float
        Median and 90th percentile of challenger requests until canaryctl detects the
        effect (``inf`` when not reached by the deadline).
    median_seconds : float
        The median in seconds.
    power_by_deadline : float
        Probability that canaryctl detects the effect before the deadline.
    n_star : float
        The smaller-arm sample size used to tune τ².
    """

    effect_abs: float
    fixed_horizon_n: float
    fixed_horizon_seconds: float
    median_n: float
    p90_n: float
    median_seconds: float
    power_by_deadline: float
    n_star: float

    def describe(self) -> str:
        """A few lines for people (what ``canaryctl plan`` prints)."""

        def hours(seconds: float) -> str:
            return (
                "not by the deadline" if not math.isfinite(seconds) else f"{seconds / 3600:.1f} h"
            )

        rate = self.fixed_horizon_n / self.fixed_horizon_seconds
        return "\n".join(
            [
                f"effect to detect: {self.effect_abs:+.4g} per request",
                f"fixed-horizon test (80 % power): {self.fixed_horizon_n:,.0f} challenger "
                f"requests, {hours(self.fixed_horizon_seconds)}",
                f"canaryctl median detection: {hours(self.median_n / rate)}, "
                f"90th percentile: {hours(self.p90_n / rate)}",
                f"probability of detection by the deadline: {100 * self.power_by_deadline:.0f} %",
            ]
        )


def fixed_horizon_n(
    effect: float, sd: float, weight_challenger: float, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Challenger requests for a one-sided fixed-horizon z-test at ``alpha`` with ``power``.

    The closed form ``(z_{1-α} + z_power)² sd² (1 + w/(1-w)) / effect²`` through statsmodels'
    ``normal_sample_size_one_tail`` (checked against the formula in the tests).
    """
    sequential.check_alpha(alpha)
    sequential.check_alpha(power, "power")
    if effect == 0:
        raise ValueError("effect must not be zero")
    if not sd > 0:
        raise ValueError(f"sd must be > 0, got {sd}")
    if not 0 < weight_challenger < 1:
        raise ValueError(f"weight_challenger must lie in (0, 1), got {weight_challenger}")
    from statsmodels.stats.power import normal_sample_size_one_tail  # slow import: only here

    ratio = weight_challenger / (1 - weight_challenger)  # n_A = n_B / ratio
    # Var(mean_B - mean_A) = sd² (1/n_B + 1/n_A) = sd² (1 + ratio) / n_B
    return float(
        normal_sample_size_one_tail(abs(effect), power, alpha, std_null=sd * math.sqrt(1 + ratio))
    )


def sequential_stopping(
    effect: float,
    sd: float,
    weight_challenger: float,
    max_n_challenger: float,
    *,
    alpha: float,
    n_star: float,
    burn_in: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Challenger sample sizes at which the harm e-process first reaches 1/α (``inf`` if never).

    Gaussian limit: the estimate after n challenger requests is N(effect, V(n)) with
    independent increments; harm means ``effect < 0``.
    """
    rng = np.random.default_rng(seed)
    n_b = np.geomspace(max(burn_in, 10.0), max_n_challenger, _GRID)
    n_a = n_b * (1 - weight_challenger) / weight_challenger
    var = sd * sd * (1 / n_a + 1 / n_b)
    info = 1 / var
    d_info = np.diff(np.concatenate([[0.0], info]))
    score = np.cumsum(
        effect * d_info + np.sqrt(d_info) * rng.standard_normal((_PATHS, _GRID)), axis=1
    )
    est = score / info
    tau2 = sequential.tuned_tau2(var, np.minimum(n_a, n_b), n_star, alpha)
    log_e = sequential.log_e_one_sided(est, var, tau2, 0.0, lower=True)
    hit = log_e >= math.log(1 / alpha)
    first = np.where(hit.any(axis=1), n_b[np.argmax(hit, axis=1)], np.inf)
    return first


def plan(
    baseline_mean: float,
    baseline_sd: float,
    requests_per_second: float,
    weight_challenger: float,
    effect: float,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    n_guardrails: int = 4,
    power: float = 0.8,
    deadline_seconds: float = 86_400.0,
    n_star: float = sequential.DEFAULT_N_STAR,
    burn_in_requests: float = 3000.0,
) -> Plan:
    """Expected samples and time to detection, and power by a deadline, for one mean guardrail.

    Parameters
    ----------
    baseline_mean, baseline_sd : float
        The metric's per-request mean and standard deviation (capped revenue: from a
        pre-period).
    requests_per_second : float
        Total traffic.
    weight_challenger : float
        Canary weight, in (0, 1).
    effect : float
        Effect to detect: a fraction of the mean when ``relative`` (−0.05), else absolute.
    alpha : float
        The experiment's alpha; each guardrail gets ``alpha / (n_guardrails + 1)``.
    n_guardrails : int
        Guardrails sharing alpha with the SRM check.
    power : float
        Target power of the fixed-horizon comparison.
    deadline_seconds : float
        Deadline for ``power_by_deadline``.
    n_star : float
        τ² tuning (smaller-arm requests at which the bound is tightest).
    burn_in_requests : float
        Smaller-arm requests before any verdict.

    Returns
    -------
    Plan

    Notes
    -----
    Checked in ``tests/analysis/test_power.py`` against the closed-form fixed-horizon size
    and the stopping-time ratios of STATISTICS.md §6.
    """
    sequential.check_alpha(alpha)
    if not requests_per_second > 0:
        raise ValueError(f"requests_per_second must be > 0, got {requests_per_second}")
    if n_guardrails < 1:
        raise ValueError(f"n_guardrails must be >= 1, got {n_guardrails}")
    if not deadline_seconds > 0:
        raise ValueError(f"deadline_seconds must be > 0, got {deadline_seconds}")
    effect_abs = effect * baseline_mean if relative else effect
    alpha_g = alpha / (n_guardrails + 1)
    rate_b = requests_per_second * weight_challenger
    n_fixed = fixed_horizon_n(
        abs(effect_abs), baseline_sd, weight_challenger, alpha=alpha_g, power=power
    )
    max_n = rate_b * deadline_seconds
    burn_b = burn_in_requests * max(1.0, weight_challenger / (1 - weight_challenger))
    first = sequential_stopping(
        -abs(effect_abs),
        baseline_sd,
        weight_challenger,
        max_n,
        alpha=alpha_g,
        n_star=n_star,
        burn_in=burn_b,
    )
    median = quantile_with_inf(first, 0.5)
    return Plan(
        effect_abs,
        n_fixed,
        n_fixed / rate_b,
        median,
        quantile_with_inf(first, 0.9),
        median / rate_b,
        float(np.mean(np.isfinite(first))),
        n_star,
    )
