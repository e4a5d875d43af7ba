"""Normal-mixture e-values and confidence sequences for a difference in means.

Sits between ``stats`` (sufficient statistics in) and ``decision`` (verdicts out). The
kernels are elementwise numpy functions so that ``decision`` and ``trajectory`` can
evaluate thousands of guardrails or every minute of a day in one call. This module must
not keep state between looks and must not choose the mixing variance from the current
sample size (STATISTICS.md §1): τ² is a fixed multiple of the variance the estimate will
have at a planned per-arm sample size ``n_star``.

Sources: Johari, Koomen, Pekelis & Walsh, "Always Valid Inference" (Operations Research
2022); Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform, nonparametric, nonasymptotic
confidence sequences" (Annals of Statistics 2021), normal mixture boundary. Checked
against the reference values of STATISTICS.md §7 (``tests/analysis/test_reference.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from analysis import stats

FloatArray = npt.NDArray[np.float64]

#: Default smaller-arm sample size at which the confidence sequence is tightest.
DEFAULT_N_STAR = 100_000


def check_alpha(alpha: float, name: str = "alpha") -> None:
    """Raise ``ValueError`` unless ``0 < alpha < 1``."""
    if not (0.0 < alpha < 1.0) or math.isnan(alpha):
        raise ValueError(f"{name} must lie in (0, 1), got {alpha}")


def tau2_factor(alpha: float) -> float:
    """τ²/V* that makes the boundary tightest at variance V*: ``2L + ln(1 + 2L)``, L = ln(1/α)."""
    big_l = math.log(1.0 / alpha)
    return 2.0 * big_l + math.log1p(2.0 * big_l)


def tuned_tau2(
    variance: npt.ArrayLike, n_small: npt.ArrayLike, n_star: float, alpha: float
) -> FloatArray:
    """τ² = factor(α)·V·n_small/n_star: the variance per observation times a fixed design size.

    ``V·n_small`` estimates the variance of one observation pair, which does not grow or
    shrink with the sample size, so τ² does not drift with ``n`` (only with the plug-in
    variance estimate, as in Johari et al.).
    """
    v = np.asarray(variance, dtype=np.float64)
    m = np.asarray(n_small, dtype=np.float64)
    return tau2_factor(alpha) * v * m / float(n_star)


def log_lambda_two_sided(
    estimate: npt.ArrayLike,
    variance: npt.ArrayLike,
    tau2: npt.ArrayLike,
    delta0: npt.ArrayLike = 0.0,
) -> FloatArray:
    """ln Λ of the two-sided normal-mixture mSPRT (STATISTICS.md §1)."""
    d = np.asarray(estimate, dtype=np.float64) - np.asarray(delta0, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    t = np.asarray(tau2, dtype=np.float64)
    out: FloatArray = 0.5 * np.log(v / (v + t)) + t * d * d / (2.0 * v * (v + t))
    return out


def half_width(variance: npt.ArrayLike, tau2: npt.ArrayLike, alpha: float) -> FloatArray:
    """Half-width of the two-sided normal-mixture confidence sequence at level 1 − α."""
    v = np.asarray(variance, dtype=np.float64)
    t = np.asarray(tau2, dtype=np.float64)
    big_l = math.log(1.0 / alpha)
    out: FloatArray = np.sqrt(v * (v + t) / t * (2.0 * big_l + np.log((v + t) / v)))
    return out


def log_e_one_sided(
    estimate: npt.ArrayLike,
    variance: npt.ArrayLike,
    tau2: npt.ArrayLike,
    delta0: npt.ArrayLike = 0.0,
    *,
    lower: bool = True,
) -> FloatArray:
    """ln E of the half-normal mixture for "the difference is below δ₀" (``lower=True``).

    With ``lower=False`` the sign is flipped: evidence that the difference is above δ₀.
    Valid for the composite null on the other side of δ₀ (STATISTICS.md §1).
    """
    d = np.asarray(estimate, dtype=np.float64) - np.asarray(delta0, dtype=np.float64)
    v_var = np.asarray(variance, dtype=np.float64)
    rho = 1.0 / np.asarray(tau2, dtype=np.float64)
    s = (-d if lower else d) / v_var
    prec = 1.0 / v_var + rho
    out: FloatArray = (
        0.5 * np.log(4.0 * rho / prec) + s * s / (2.0 * prec) + special.log_ndtr(s / np.sqrt(prec))
    )
    return out


def relative_difference(
    mean_a: FloatArray,
    var_a: FloatArray,
    n_a: FloatArray,
    mean_b: FloatArray,
    var_b: FloatArray,
    n_b: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Delta-method estimate and variance of ``mean_b / mean_a − 1``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        est = mean_b / mean_a - 1.0
        var = var_b / (n_b * mean_a**2) + mean_b**2 * var_a / (n_a * mean_a**4)
    return est, var


@dataclass(frozen=True)
class MeanDifference:
    """Result of :func:`mean_difference` at one look.

    Attributes
    ----------
    estimate : float
        ``mean_B − mean_A`` (or ``mean_B/mean_A − 1`` when relative).
    lower, upper : float
        The confidence sequence at this look (coverage 1 − α over all looks).
    p_value : float
        Always-valid two-sided p-value for "difference = delta0", ``min(previous, 1/Λ)``.
    log_e_value : float
        ln Λ at this look.
    variance, tau2 : float
        Plug-in variance of the estimate and the mixing variance used.
    """

    estimate: float
    lower: float
    upper: float
    p_value: float
    log_e_value: float
    variance: float
    tau2: float


def mean_difference(
    champion: stats.SufficientStats,
    challenger: stats.SufficientStats,
    *,
    alpha: float = 0.05,
    relative: bool = False,
    delta0: float = 0.0,
    n_star: float = DEFAULT_N_STAR,
    tau2: float | None = None,
    previous_p_value: float = 1.0,
) -> MeanDifference:
    """Always-valid test and confidence sequence for a difference in means.

    Parameters
    ----------
    champion, challenger : SufficientStats
        Arm A and arm B.
    alpha : float
        Level of the confidence sequence, in (0, 1).
    relative : bool
        Test ``mean_B / mean_A − 1`` (delta method) instead of ``mean_B − mean_A``.
    delta0 : float
        Null value of the difference for the p-value.
    n_star : float
        Smaller-arm sample size at which the interval is tightest (scale-free tuning);
        τ² = (2L + ln(1 + 2L))·V* with V* the variance at ``n_star`` (STATISTICS.md §1).
    tau2 : float, optional
        Mixing variance in the units of the difference; overrides ``n_star``.
    previous_p_value : float
        The p-value of the previous look, for the running minimum.

    Returns
    -------
    MeanDifference

    Notes
    -----
    Johari et al. (2022), Howard et al. (2021). Checked against STATISTICS.md §7 (values
    from ``confseq``): ln Λ = 0.130601 and half-width 0.0619529 at n = 10,000, Δ̂ = 0.02,
    s² = 1, τ² = 1e-4.
    """
    check_alpha(alpha)
    if n_star <= 0:
        raise ValueError(f"n_star must be > 0, got {n_star}")
    if tau2 is not None and tau2 <= 0:
        raise ValueError(f"tau2 must be > 0, got {tau2}")
    if champion.n < 2 or challenger.n < 2:
        raise ValueError("champion and challenger need at least two observations each")
    if not 0.0 <= previous_p_value <= 1.0:
        raise ValueError(f"previous_p_value must lie in [0, 1], got {previous_p_value}")
    mean_a, mean_b = np.asarray(champion.mean), np.asarray(challenger.mean)
    var_a, var_b = np.asarray(champion.variance), np.asarray(challenger.variance)
    n_a, n_b = np.asarray(float(champion.n)), np.asarray(float(challenger.n))
    if relative:
        if not mean_a > 0:
            raise ValueError("relative=True needs a positive champion mean")
        est, var = relative_difference(mean_a, var_a, n_a, mean_b, var_b, n_b)
    else:
        est, var = mean_b - mean_a, var_a / n_a + var_b / n_b
    if not var > 0:
        raise ValueError("the difference has zero variance; nothing to test")
    t2 = (
        float(tuned_tau2(var, min(champion.n, challenger.n), n_star, alpha))
        if tau2 is None
        else tau2
    )
    log_l = float(log_lambda_two_sided(est, var, t2, delta0))
    hw = float(half_width(var, t2, alpha))
    p = min(previous_p_value, 1.0, math.exp(-log_l))
    return MeanDifference(float(est), float(est) - hw, float(est) + hw, p, log_l, float(var), t2)
