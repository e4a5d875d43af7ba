"""Sample-ratio mismatch: Dirichlet–multinomial Bayes factor against the reported split.

Sits beside the guardrail tests in ``decision``: when it fires every other result is void.
This module must not use a repeated χ² test (not sequentially valid) and must not take
the split from the observed counts: θ₀ is the share the router reported for the step.

Sources: Lindon & Malek, "Anytime-valid inference for multinomial count data" (NeurIPS
2022); Optimizely's ``ssrm``. Checked against STATISTICS.md §7 (values from ``savvi``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from analysis import sequential

FloatArray = npt.NDArray[np.float64]

#: Default prior concentration k of the Dirichlet mixture.
DEFAULT_CONCENTRATION = 10_000.0


def log_bayes_factor(
    counts: npt.ArrayLike, weights: npt.ArrayLike, concentration: npt.ArrayLike
) -> FloatArray:
    """ln BF over the last axis: ln B(kθ₀ + N) − ln B(kθ₀) − Σ Nᵢ ln θ₀ᵢ."""
    n = np.asarray(counts, dtype=np.float64)
    theta = np.asarray(weights, dtype=np.float64)
    prior = np.asarray(concentration, dtype=np.float64) * theta

    def log_mbeta(x: FloatArray) -> FloatArray:
        out: FloatArray = special.gammaln(x).sum(axis=-1) - special.gammaln(x.sum(axis=-1))
        return out

    out: FloatArray = log_mbeta(prior + n) - log_mbeta(prior) - special.xlogy(n, theta).sum(axis=-1)
    return out


@dataclass(frozen=True)
class SrmResult:
    """Result of :func:`srm_test`.

    Attributes
    ----------
    p_value : float
        Always-valid p-value ``min(previous, 1/BF)``.
    mismatch : bool
        ``p_value <= alpha``: the traffic split differs from the reported one.
    log_bayes_factor : float
        ln BF at this look.
    observed_share : float
        The last arm's observed share of the counts (the challenger's for two arms).
    """

    p_value: float
    mismatch: bool
    log_bayes_factor: float
    observed_share: float


def srm_test(
    counts: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    alpha: float = 0.001,
    concentration: float = DEFAULT_CONCENTRATION,
    previous_p_value: float = 1.0,
) -> SrmResult:
    """Anytime-valid sample-ratio mismatch test on cumulative counts per arm.

    Parameters
    ----------
    counts : array_like of int
        Cumulative requests per arm, non-negative.
    weights : array_like of float
        The split the router reported, positive, summing to 1.
    alpha : float
        Level, in (0, 1).
    concentration : float
        Dirichlet prior concentration k (100 detects large mismatches fast, 10,000 small ones).
    previous_p_value : float
        The previous look's p-value, for the running minimum.

    Returns
    -------
    SrmResult

    Notes
    -----
    Lindon & Malek (2022). The Bayes factor depends on the cumulative counts only, so it
    does not depend on how they were batched. Checked against STATISTICS.md §7:
    [5250, 4750] against [.5, .5] with k = 100 gives ln BF = 10.072489.
    """
    sequential.check_alpha(alpha)
    n = np.asarray(counts, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if n.ndim != 1 or n.size < 2:
        raise ValueError("counts must be a one-dimensional array of at least two arms")
    if np.any(n < 0) or not np.all(np.isfinite(n)):
        raise ValueError("counts must be finite and non-negative")
    if w.shape != n.shape:
        raise ValueError("weights must have the same length as counts")
    if np.any(w <= 0) or abs(float(w.sum()) - 1.0) > 1e-9:
        raise ValueError("weights must be positive and sum to 1")
    if not concentration > 0:
        raise ValueError(f"concentration must be > 0, got {concentration}")
    log_bf = float(log_bayes_factor(n, w, concentration))
    p = min(previous_p_value, 1.0, math.exp(-log_bf) if log_bf > -700 else 1.0)
    total = float(n.sum())
    share = float(n[-1] / total) if total > 0 else math.nan
    return SrmResult(p, p <= alpha, log_bf, share)
