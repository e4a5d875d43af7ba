"""Vectorised kernels of the decision: per-step summaries, products over steps, bounds.

Sits under ``decision`` (one experiment or a batch) and ``trajectory`` (every minute of a
recorded history): both lay their inputs out as arrays with a leading row axis and a step
axis, and call these functions, so that a verdict means the same thing everywhere. Each
step is its own stratum: estimates are taken within a step, e-values of successive steps
multiply (log e-values add), and nothing is pooled across steps (STATISTICS.md §5). This
module keeps no state and makes no verdicts; it must not pool arms across steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis import counts, sequential, srm

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_BISECTION_STEPS = 40
_COUNT_BISECTION_STEPS = 18  # on ln κ, ±3 around the estimate: resolution 2e-5


@dataclass(frozen=True)
class MeanSummary:
    """Per-step mean-difference summaries, arrays of shape (rows, steps)."""

    estimate: FloatArray
    variance: FloatArray
    tau2: FloatArray
    active: BoolArray
    size: FloatArray


@dataclass(frozen=True)
class Combined:
    """Per-row results after multiplying over steps, arrays of shape (rows,).

    ``estimate`` is a difference (mean rows) or a ratio p_B/p_A (count rows); ``harmful``
    and ``safe`` say on which side of the margin it lies.
    """

    log_e_harm: FloatArray
    log_e_noninf: FloatArray
    estimate: FloatArray
    lower: FloatArray
    upper: FloatArray
    harmful: BoolArray
    safe: BoolArray
    step_log_e_harm: FloatArray
    step_log_e_noninf: FloatArray


def mean_summaries(
    n: FloatArray,
    total: FloatArray,
    total_sq: FloatArray,
    nonzero: FloatArray,
    *,
    relative: BoolArray,
    min_requests: FloatArray,
    min_nonzero: FloatArray,
    n_star: FloatArray,
    alpha: FloatArray,
    null_ratio: FloatArray | None = None,
) -> MeanSummary:
    """Within-step differences ``B − A`` (or ``B/A − 1``) with τ² tuned at ``n_star``.

    Arm arrays have shape (rows, steps, 2) with arm 0 = champion; ``relative``,
    ``min_requests``, ``min_nonzero``, ``n_star`` and ``alpha`` have shape (rows,). A step
    is active once its smaller arm has ``min_requests`` requests and ``min_nonzero``
    non-zero values (burn-in).

    Relative rows take the variance of ``mean_B/mean_A`` as max(r̂², r₀²)·CV²·(1/n_A + 1/n_B)
    with r̂ the estimated ratio, r₀ = ``null_ratio`` (shape (rows,), 1 − sign·margin; default
    1) and CV² the larger arm's. The delta method's plug-in r̂²·CV²(…) shrinks with r̂, so a
    challenger sample that happens to fall below the champion also looks more precise, which
    inflated the harm evidence (A/A 1.5 % against a 1.25 % share over 4,000 streams; a
    nominal 1 % lower tail of the statistic at 200 revenue events held 2.8 %). Below the null
    ratio the variance is taken at the null, the score-test choice (the statistic's law is
    the null's: Cox & Hinkley 1974, §9.3; Farrington & Manning 1990 for ratios); above it,
    r̂² keeps the non-inferiority side as conservative as before. V never shrinks.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        var = np.maximum(total_sq - total * mean, 0.0) / (n - 1.0)
        ma, mb = mean[..., 0], mean[..., 1]
        va, vb = var[..., 0], var[..., 1]
        na, nb = n[..., 0], n[..., 1]
        rel = relative[:, None]
        # Robust plug-in: each arm gets at least the other arm's spread (same coefficient of
        # variation when relative, same variance otherwise). With right-skewed revenue a small
        # arm's low mean comes with a low variance estimate, which would inflate the harm
        # evidence; the floor removes that correlation and can only widen V.
        cv2 = np.maximum(va / ma**2, vb / mb**2)
        ok = rel & (ma > 0) & (mb > 0)
        va = np.where(ok, cv2 * ma**2, np.where(rel, va, np.maximum(va, vb)))
        vb = np.where(ok, cv2 * mb**2, np.where(rel, vb, np.maximum(var[..., 0], vb)))
        rel_est, _ = sequential.relative_difference(ma, va, na, mb, vb, nb)
        r0 = np.ones(len(n)) if null_ratio is None else null_ratio
        ratio2 = np.maximum((mb / ma) ** 2, (r0**2)[:, None])
        rel_var = cv2 * ratio2 * (1.0 / na + 1.0 / nb)
        est = np.where(rel, rel_est, mb - ma)
        v = np.where(rel, rel_var, va / na + vb / nb)
    n_small = np.minimum(na, nb)
    active = (
        (n_small >= np.maximum(min_requests, 2.0)[:, None])
        & (np.minimum(nonzero[..., 0], nonzero[..., 1]) >= min_nonzero[:, None])
        & np.isfinite(est)
        & np.isfinite(v)
        & (v > 0)
        & ~(rel & ~(ma > 0))
    )
    safe_v = np.where(active, v, 1.0)
    big_l = np.log(1.0 / alpha)
    factor = 2.0 * big_l + np.log1p(2.0 * big_l)
    tau2 = factor[:, None] * safe_v * n_small / n_star[:, None]
    tau2 = np.where(active, tau2, 1.0)
    return MeanSummary(np.where(active, est, 0.0), safe_v, tau2, active, na + nb)


def _solve(
    f: Callable[[FloatArray], FloatArray],
    lo: FloatArray,
    hi: FloatArray,
    target: FloatArray,
    increasing: bool,
    steps: int = _BISECTION_STEPS,
) -> FloatArray:
    """Vectorised bisection for f(x) = target on [lo, hi], f monotone."""
    lo, hi = lo.copy(), hi.copy()
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        above = f(mid) >= target
        move_hi = above if increasing else ~above
        hi = np.where(move_hi, mid, hi)
        lo = np.where(move_hi, lo, mid)
    out: FloatArray = 0.5 * (lo + hi)
    return out


def combine_means(
    s: MeanSummary,
    *,
    sign: FloatArray,
    margin: FloatArray,
    alpha: FloatArray,
    with_bounds: bool = True,
) -> Combined:
    """Products over steps of the one-sided harm and non-inferiority e-values at the margin.

    Work in the goodness scale d = sign·Δ, where harm is d < −margin. Bounds are the
    confidence-sequence bounds dual to the two one-sided products, each at level
    ``alpha`` (so PASS ⇔ the bound clears the margin, FAIL ⇔ the other bound does).
    """
    d_hat = sign[:, None] * s.estimate
    act = s.active

    def per_step(d0: FloatArray, lower: bool) -> FloatArray:
        le = sequential.log_e_one_sided(d_hat, s.variance, s.tau2, d0[:, None], lower=lower)
        out: FloatArray = np.where(act, le, 0.0)
        return out

    d0 = -margin
    step_harm, step_noninf = per_step(d0, True), per_step(d0, False)
    harm, noninf = step_harm.sum(axis=1), step_noninf.sum(axis=1)
    w = np.where(act, s.size, 0.0)
    wsum = w.sum(axis=1)
    any_active = wsum > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        est_d = np.where(any_active, (w * d_hat).sum(axis=1) / wsum, np.nan)
    lo_d = np.full_like(est_d, -np.inf)
    hi_d = np.full_like(est_d, np.inf)
    big_l = np.log(1.0 / alpha)
    if with_bounds and np.any(any_active):
        idx = np.flatnonzero(any_active)
        sub = MeanSummary(s.estimate[idx], s.variance[idx], s.tau2[idx], s.active[idx], s.size[idx])
        dh = d_hat[idx]
        centre = est_d[idx]
        spread = np.where(sub.active, np.abs(dh - centre[:, None]), 0.0).max(axis=1)
        scale = np.where(sub.active, np.sqrt(sub.variance + sub.tau2), 0.0).max(axis=1)
        width = spread + scale * np.sqrt(2.0 * (big_l[idx] + 50.0))

        def f(x: FloatArray, lower: bool) -> FloatArray:
            le = sequential.log_e_one_sided(dh, sub.variance, sub.tau2, x[:, None], lower=lower)
            out: FloatArray = np.where(sub.active, le, 0.0).sum(axis=1)
            return out

        target = big_l[idx]
        hi_d[idx] = _solve(lambda x: f(x, True), centre - width, centre + width, target, True)
        lo_d[idx] = _solve(lambda x: f(x, False), centre - width, centre + width, target, False)
    neg = sign < 0
    lower = np.where(neg, -hi_d, lo_d)
    upper = np.where(neg, -lo_d, hi_d)
    estimate = sign * est_d
    return Combined(
        harm,
        noninf,
        estimate,
        lower,
        upper,
        np.asarray(est_d < d0),
        np.asarray(est_d > d0),
        step_harm,
        step_noninf,
    )


def count_step_log_e(
    events: FloatArray,
    rho: FloatArray,
    kappa: FloatArray,
    *,
    harm: bool,
    a: FloatArray | float,
    b: FloatArray | float,
) -> FloatArray:
    """Per-step ln E of the count test; ``events`` has shape (rows, steps, 2)."""
    pi0 = counts.null_share(rho, kappa)
    return counts.log_e_counts(events[..., 1], events[..., 0], pi0, harm=harm, a=a, b=b)


def combine_counts(
    events: FloatArray,
    n: FloatArray,
    rho: FloatArray,
    present: BoolArray,
    *,
    kappa: FloatArray,
    alpha: FloatArray,
    a: FloatArray,
    b: FloatArray,
    prior_ratio: FloatArray,
    with_bounds: bool = True,
) -> Combined:
    """Products over steps of the count e-values at κ; estimate and bounds of p_B/p_A.

    ``events`` and ``n`` have shape (rows, steps, 2); the other arrays (rows, steps) or (rows,).
    Where ``prior_ratio`` is finite the harm mixture uses :func:`counts.tuned_prior` for the
    step's share and the κ tested; elsewhere, and for non-inferiority, Beta(a, b).
    """
    safe_rho = np.where(present, rho, 0.5)
    aa, bb = a[:, None], b[:, None]

    tuned = np.isfinite(prior_ratio)[:, None]
    centre = np.where(np.isfinite(prior_ratio), prior_ratio, 2.0)[:, None]

    def per_step(k: FloatArray, harm: bool) -> FloatArray:
        pa, pb = aa, bb
        if harm:
            ta, tb = counts.tuned_prior(safe_rho, k[:, None], centre)
            pa, pb = np.where(tuned, ta, aa), np.where(tuned, tb, bb)
        le = count_step_log_e(events, safe_rho, k[:, None], harm=harm, a=pa, b=pb)
        out: FloatArray = np.where(present, le, 0.0)
        return out

    def total(k: FloatArray, harm: bool) -> FloatArray:
        out: FloatArray = per_step(k, harm).sum(axis=1)
        return out

    step_harm, step_noninf = per_step(kappa, True), per_step(kappa, False)
    harm, noninf = step_harm.sum(axis=1), step_noninf.sum(axis=1)
    w = np.where(present, n.sum(axis=-1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(present[..., None] & (n > 0), events / n, 0.0)
        r_a = (w * rate[..., 0]).sum(axis=1)
        r_b = (w * rate[..., 1]).sum(axis=1)
        ratio = np.where(r_a > 0, r_b / r_a, np.where(r_b > 0, np.inf, np.nan))
    big_l = np.log(1.0 / alpha)
    lower = np.zeros_like(ratio)
    upper = np.full_like(ratio, np.inf)
    if with_bounds and len(ratio):
        lower, upper = _count_bounds(total, ratio, big_l)
    return Combined(
        harm,
        noninf,
        ratio,
        lower,
        upper,
        np.asarray(ratio > kappa),
        np.asarray(ratio < kappa),
        step_harm,
        step_noninf,
    )


def _count_bounds(
    total: Callable[[FloatArray, bool], FloatArray], ratio: FloatArray, big_l: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Invert the count tests in κ: bisection on ln κ, first within ±3 of the estimate."""
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = np.where(np.isfinite(ratio) & (ratio > 0), np.log(ratio), 0.0)
    centre = np.clip(centre, -8.0, 8.0)
    wide_lo, wide_hi = np.full_like(ratio, -12.0), np.full_like(ratio, 12.0)
    out = []
    for harm in (True, False):  # harm: decreasing in κ, gives the lower bound

        def f(x: FloatArray, harm: bool = harm) -> FloatArray:
            return total(np.exp(x), harm)

        lo, hi = centre - 3.0, centre + 3.0
        at_lo, at_hi = f(lo) >= big_l, f(hi) >= big_l
        if harm:
            below, above = ~at_lo, at_hi  # root left of lo / right of hi
        else:
            below, above = at_lo, ~at_hi
        a = np.where(below, wide_lo, np.where(above, hi, lo))
        b = np.where(below, lo, np.where(above, wide_hi, hi))
        root = np.exp(_solve(f, a, b, big_l, not harm, _COUNT_BISECTION_STEPS))
        if harm:
            out.append(np.where(f(wide_lo) >= big_l, root, 0.0))
        else:
            out.append(np.where(f(wide_hi) >= big_l, root, np.inf))
    return out[0], out[1]


def mean_eligible(s: MeanSummary) -> BoolArray:
    """A mean guardrail may decide once one of its steps counts (passed its burn-in)."""
    out: BoolArray = np.asarray(s.active.any(axis=1))
    return out


def count_eligible(events: FloatArray, present: BoolArray, min_events: FloatArray) -> BoolArray:
    """A count guardrail may decide once both arms together have ``min_events`` events.

    ``events`` has shape (rows, steps, 2), ``present`` (rows, steps), ``min_events`` (rows,).
    The count test is exact at any count (it conditions on the events' total), so this
    floor only restricts the looks at which it may reject: Ville's inequality covers every
    look, hence any subset of them.
    """
    total = np.where(present[..., None], events, 0.0).sum(axis=(1, 2))
    out: BoolArray = np.asarray(total >= min_events)
    return out


def srm_eligible(n: FloatArray, present: BoolArray, min_requests: FloatArray) -> BoolArray:
    """The SRM check may decide once the smaller arm has ``min_requests`` (all steps)."""
    smaller = np.where(present[..., None], n, 0.0).sum(axis=1).min(axis=-1)
    out: BoolArray = np.asarray(smaller >= min_requests)
    return out


def srm_step_log_bf(n: FloatArray, rho: FloatArray, concentration: npt.ArrayLike) -> FloatArray:
    """Per-step ln BF of the SRM test; ``n`` has shape (..., 2), ``rho`` the challenger share."""
    theta = np.stack([1.0 - rho, rho], axis=-1)
    return srm.log_bayes_factor(n, theta, concentration)


def log_threshold(alpha: float) -> float:
    """ln(1/α)."""
    return math.log(1.0 / alpha)
