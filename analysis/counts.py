"""Exceedance-count e-processes for tail latency and error rates.

Sits between ``stats`` (counts of slow or failed requests per arm) and ``decision``. A
count of bad events above a threshold fixed before the canary is split between the arms;
under per-request randomisation each event lands in the challenger with probability
π = ρ_B p_B / (ρ_A p_A + ρ_B p_B). The e-process mixes a Beta(a, b) prior truncated to the
alternative side of π₀ = κρ_B / (ρ_A + κρ_B). This module keeps no state and never
estimates ρ_B from the counts: it takes the share the router reported.

Sources: Lindon & Malek, "Anytime-valid inference for multinomial count data" (NeurIPS
2022); Netflix's sequential canary testing (KDD 2022). Checked against STATISTICS.md §7
(exceedance table) in ``tests/analysis/test_reference.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from analysis import sequential

FloatArray = npt.NDArray[np.float64]

#: Floor for log e-values so that states stay finite (JSON has no infinities).
LOG_E_FLOOR = -1e6


def null_share(weight_challenger: npt.ArrayLike, kappa: npt.ArrayLike) -> FloatArray:
    """π₀ = κρ_B / (ρ_A + κρ_B): the challenger's share of events when p_B = κ·p_A."""
    rho = np.asarray(weight_challenger, dtype=np.float64)
    k = np.asarray(kappa, dtype=np.float64)
    out: FloatArray = k * rho / ((1.0 - rho) + k * rho)
    return out


def log_e_counts(
    count_challenger: npt.ArrayLike,
    count_champion: npt.ArrayLike,
    pi0: npt.ArrayLike,
    *,
    harm: bool = True,
    a: npt.ArrayLike = 1.0,
    b: npt.ArrayLike = 1.0,
) -> FloatArray:
    """ln E of the truncated Beta-mixture test on the challenger's share of events.

    ``harm=True`` mixes over π ∈ [π₀, 1] (evidence that the challenger has more than its
    tolerated share); ``harm=False`` over [0, π₀] (evidence of non-inferiority).

    Rows (the first axis) are often looks of one history in which a closed or not yet
    started step repeats the row before (a replay, a forecast): each value is computed
    only where some input differs from the row before and carried down otherwise, which
    gives the same values for a fraction of the work.
    """
    e_b, e_a, p0, a, b = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (count_challenger, count_champion, pi0, a, b))
    )
    if e_b.ndim == 0 or e_b.shape[0] < 2:
        return _log_e(e_b, e_a, p0, a, b, harm=harm)
    shape = e_b.shape
    flat = [x.reshape(shape[0], -1) for x in (e_b, e_a, p0, a, b)]
    new = np.zeros(flat[0].shape, dtype=bool)
    new[0] = True
    for x in flat:
        new[1:] |= x[1:] != x[:-1]
    rows = np.maximum.accumulate(np.where(new, np.arange(shape[0])[:, None], 0), axis=0)
    values = np.zeros(flat[0].shape)
    values[new] = _log_e(*(x[new] for x in flat), harm=harm)
    out: FloatArray = np.take_along_axis(values, rows, axis=0).reshape(shape)
    return out


def _log_e(*args: FloatArray, harm: bool) -> FloatArray:
    """:func:`log_e_counts` element by element; ``args``: e_b, e_a, π₀, a, b."""
    e_b, e_a, p0, a, b = args

    def tail(x: FloatArray, y: FloatArray) -> FloatArray:
        # P(π > π₀) as I_{1−π₀}(y, x) (faster than betaincc), or P(π ≤ π₀)
        out: FloatArray = special.betainc(y, x, 1.0 - p0) if harm else special.betainc(x, y, p0)
        return out

    with np.errstate(divide="ignore", invalid="ignore"):
        post = special.betaln(a + e_b, b + e_a) + np.log(tail(a + e_b, b + e_a))
        prior = special.betaln(a, b) + np.log(tail(a, b))
        lik0 = special.xlogy(e_b, p0) + special.xlog1py(e_a, -p0)
        out = np.asarray(post - prior - lik0, dtype=np.float64)
    out = np.where(np.isnan(out), LOG_E_FLOOR, out)
    return np.maximum(out, LOG_E_FLOOR)


def tuned_prior(
    weight_challenger: npt.ArrayLike,
    kappa: npt.ArrayLike,
    ratio: npt.ArrayLike,
    *,
    low: float = 1.3,
    high: float = 3.0,
) -> tuple[FloatArray, FloatArray]:
    """Beta(a, b) for the harm mixture, centred on an inflation of ``ratio``·κ.

    The mean is π(ratio·κ) and the spread puts about ±1 sd on [π(low·κ), π(high·κ)], so
    the mixture concentrates on the inflations that matter instead of all of [π₀, 1]. It
    depends only on the reported share and κ, both fixed when the step starts, so the
    e-process stays valid.
    """
    k = np.asarray(kappa, dtype=np.float64)
    m = null_share(weight_challenger, np.asarray(ratio, dtype=np.float64) * k)
    sd = 0.5 * (null_share(weight_challenger, high * k) - null_share(weight_challenger, low * k))
    c = np.maximum(m * (1.0 - m) / (sd * sd) - 1.0, 2.0)
    return c * m, c * (1.0 - m)


@dataclass(frozen=True)
class CountTest:
    """Result of :func:`exceedance_test` at one look.

    Attributes
    ----------
    pi0 : float
        Null share of events in the challenger.
    log_e_value : float
        ln E of the harm test (p_B > κ·p_A).
    p_value : float
        Always-valid p-value ``min(1, 1/E)`` of the harm test.
    rejected : bool
        ``E >= 1/alpha``.
    """

    pi0: float
    log_e_value: float
    p_value: float
    rejected: bool


def exceedance_test(
    count_challenger: int,
    count_champion: int,
    weight_challenger: float,
    *,
    kappa: float = 1.0,
    alpha: float = 0.05,
    a: float = 1.0,
    b: float = 1.0,
) -> CountTest:
    """One-sided anytime-valid test that the challenger's event rate exceeds κ times the champion's.

    Parameters
    ----------
    count_challenger, count_champion : int
        Events (slow requests or errors) per arm since the window started.
    weight_challenger : float
        The challenger's traffic share reported by the router, in (0, 1).
    kappa : float
        Tolerated inflation (κ ≥ 1 tolerates some harm), > 0.
    alpha : float
        Level, in (0, 1).
    a, b : float
        Beta prior parameters before truncation.

    Returns
    -------
    CountTest

    Notes
    -----
    Lindon & Malek (2022). Checked against STATISTICS.md §7: E_B = 80, E_A = 900,
    ρ_B = 0.05, κ = 1 gives ln E = 4.969577.
    """
    sequential.check_alpha(alpha)
    if count_challenger < 0:
        raise ValueError(f"count_challenger must be >= 0, got {count_challenger}")
    if count_champion < 0:
        raise ValueError(f"count_champion must be >= 0, got {count_champion}")
    if not 0.0 < weight_challenger < 1.0:
        raise ValueError(f"weight_challenger must lie in (0, 1), got {weight_challenger}")
    if not kappa > 0:
        raise ValueError(f"kappa must be > 0, got {kappa}")
    if not (a > 0 and b > 0):
        raise ValueError("a and b must be > 0")
    p0 = float(null_share(weight_challenger, kappa))
    log_e = float(log_e_counts(count_challenger, count_champion, p0, a=a, b=b))
    return CountTest(p0, log_e, min(1.0, math.exp(-log_e)), log_e >= math.log(1.0 / alpha))
