"""Per-minute sufficient statistics drawn cell by cell: the benchmarks' fast path.

``analysis.simulate.simulate_minutes`` draws every request (1.44 M a day at 1,000 req/min,
128 M at 89,000), which is too slow for thousands of Monte Carlo streams on a shared
machine. This module draws the same traffic model (``analysis.simulate.Scenario``) per
(minute, arm) cell from the distributions of the cell's statistics instead:

* requests per arm: independent Poisson counts (Poisson thinning of the minute's volume by
  the challenger's actual share) — exact;
* clicks: binomial; each click's revenue drawn and capped one by one (exact) while the
  cell has at most ``exact_clicks`` clicks; above that the cell's (sum, sum of squares) of
  capped revenue is drawn from the bivariate normal with the capped lognormal's exact
  moments (central limit theorem on ≥ ``exact_clicks`` terms);
* errors and exceedances of each latency threshold: binomial — exact marginals;
* log latency: the ordinary and the slow (tail-mixture) requests of a cell are two normal
  samples, whose sum and centred sum of squares are drawn exactly (normal and χ²).

Each statistic has its exact distribution (up to the CLT above), but exceedance counts
are drawn independently of the log-latency sums, whereas per request they are positively
correlated; per-guardrail rates are unaffected, and the family-wise rate can only be
overstated. Bench-only: the product never imports it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from scipy import stats as sps

from analysis import buckets, simulate


def _capped_moments(log_mean: np.ndarray, sigma: float, cap: float, k: int) -> np.ndarray:
    """E[min(e^(m+σZ), cap)^k] for each m (closed form)."""
    z = (math.log(cap) - log_mean) / sigma
    below = np.exp(k * log_mean + 0.5 * (k * sigma) ** 2) * special.ndtr(z - k * sigma)
    out: np.ndarray = below + cap**k * special.ndtr(-z)
    return out


def simulate_minutes(
    sc: simulate.Scenario,
    seed: int,
    *,
    thresholds_ms: tuple[float, ...] = (),
    exact_clicks: int = 2000,
) -> simulate.MinuteStats:
    """Per-minute statistics per arm for ``sc`` (seeded); see the module docstring."""
    rng = np.random.default_rng(seed)
    t = np.arange(sc.minutes)
    reported = sc.weights()
    share_b = reported * (1.0 - sc.srm_shortfall)
    vol = sc.requests_per_minute * sc.curve_at(sc.volume_amplitude, t)
    lam = np.stack([vol * (1.0 - share_b), vol * share_b], axis=1)
    n = rng.poisson(lam).astype(np.int64)
    is_b = np.array([0.0, 1.0])

    # Revenue: clicks, each capped after the diurnal and effect scaling.
    clicks = rng.binomial(n, sc.click_rate)
    scale = sc.curve_at(sc.revenue_amplitude, t)[:, None] * (1.0 + sc.revenue_effect * is_b)
    log_mean = sc.revenue_log_mean + np.log(scale)
    cap = sc.cap
    rev_sum = np.zeros(n.shape)
    rev_sq = np.zeros(n.shape)
    rev_unc = np.zeros(n.shape)
    small = clicks <= exact_clicks
    k_small = np.where(small, clicks, 0).ravel()
    if k_small.sum():
        cell = np.repeat(np.arange(k_small.size), k_small)
        y = np.exp(log_mean.ravel()[cell] + sc.revenue_log_sigma * rng.standard_normal(cell.size))
        yc = np.minimum(y, cap)
        size = k_small.size
        rev_sum = np.bincount(cell, yc, size).reshape(n.shape)
        rev_sq = np.bincount(cell, yc * yc, size).reshape(n.shape)
        rev_unc = np.bincount(cell, y, size).reshape(n.shape)
    if (~small).any():
        big = ~small
        m = log_mean[big]
        k = clicks[big].astype(float)
        m1, m2, m3, m4 = (_capped_moments(m, sc.revenue_log_sigma, cap, j) for j in (1, 2, 3, 4))
        var1, var2, cov = m2 - m1**2, m4 - m2**2, m3 - m1 * m2
        z1, z2 = rng.standard_normal((2, k.size))
        s1 = k * m1 + np.sqrt(k * var1) * z1
        rho = cov / np.sqrt(var1 * var2)
        s2 = k * m2 + np.sqrt(k * var2) * (rho * z1 + np.sqrt(np.maximum(1 - rho**2, 0)) * z2)
        rev_sum[big] = np.maximum(s1, 0.0)
        rev_sq[big] = np.maximum(s2, rev_sum[big] ** 2 / np.maximum(k, 1))
        unc_mean = np.exp(m + 0.5 * sc.revenue_log_sigma**2)
        rev_unc[big] = np.maximum(rev_sum[big], k * unc_mean)

    # Errors.
    p_err = np.minimum(
        sc.error_rate
        * sc.curve_at(sc.error_amplitude, t)[:, None]
        * (1.0 + (sc.error_factor - 1.0) * is_b),
        1.0,
    )
    errors = rng.binomial(n, p_err)

    # Latency: ordinary and slow requests, each a normal sample in log space.
    base = (
        math.log(sc.latency_median_ms)
        + np.log(sc.curve_at(sc.latency_amplitude, t))[:, None]
        + math.log(sc.latency_factor) * is_b
    )
    slow = rng.binomial(n, sc.tail_share)
    groups = ((n - slow, base), (slow, base + math.log(sc.tail_factor)))
    ll_sum = np.zeros(n.shape)
    ll_sq = np.zeros(n.shape)
    edges = tuple(
        float(buckets.LATENCY_EDGES_MS[np.searchsorted(buckets.LATENCY_EDGES_MS, x)])
        for x in thresholds_ms
    )
    exceed = np.zeros((*n.shape, len(edges)), dtype=np.int64)
    s = sc.latency_sigma
    for count, mu in groups:
        c = count.astype(float)
        total = c * mu + np.sqrt(c) * s * rng.standard_normal(n.shape)
        centred = s * s * rng.chisquare(np.maximum(c - 1, 1)) * (c > 1)
        ll_sum += total
        ll_sq += centred + np.where(c > 0, total**2 / np.maximum(c, 1), 0.0)
        for j, e in enumerate(edges):
            exceed[..., j] += rng.binomial(count, sps.norm.sf((math.log(e) - mu) / s))
    return simulate.MinuteStats(
        n=n,
        revenue_sum=rev_sum,
        revenue_sum_sq=rev_sq,
        revenue_nonzero=clicks.astype(np.int64),
        revenue_uncapped_sum=rev_unc,
        errors=errors.astype(np.int64),
        log_latency_sum=ll_sum,
        log_latency_sum_sq=ll_sq,
        exceedances=exceed,
        weight=reported,
        step=sc.step_index(),
        thresholds_ms=edges,
    )
