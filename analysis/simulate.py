"""Seeded, vectorised synthetic canary traffic for tests, benchmarks and the demo.

Sits outside the decision path: it produces either per-request rows (arm, timestamp
offset, revenue, latency, error), which the demo feeds through the real ingestion path,
or their per-minute sufficient statistics per arm (the fast path for Monte Carlo), both
from the same draws; or one minute of rows at a split the caller gives (the demo follows
the live router this way). One traffic model serves all three. Traffic has a diurnal volume and baseline, a ramp of the challenger
weight, zero-inflated lognormal revenue, lognormal latency with a slow tail, rare errors
and optional injected effects (revenue, latency, errors, sample-ratio shortfall). This
module must not call the tests or the decision; all randomness comes from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from analysis import buckets, spec, stats

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class Scenario:
    """A day (or less) of canary traffic. Effects apply to the challenger only.

    ``ramp`` lists (start minute, reported challenger weight) pairs; ``srm_shortfall`` is
    the relative shortfall of the challenger's actual share against the reported one.
    Baselines follow ``1 + amplitude·sin(2π(t + phase)/1440)``.
    """

    minutes: int = MINUTES_PER_DAY
    requests_per_minute: float = 1000.0
    ramp: tuple[tuple[int, float], ...] = ((0, 0.05), (120, 0.25), (360, 0.5))
    volume_amplitude: float = 0.3
    revenue_amplitude: float = 0.3
    latency_amplitude: float = 0.1
    error_amplitude: float = 0.3
    phase_minutes: float = 0.0
    click_rate: float = 0.08
    revenue_log_mean: float = 0.0
    revenue_log_sigma: float = 1.0
    latency_median_ms: float = 30.0
    latency_sigma: float = 0.35
    tail_share: float = 0.005
    tail_factor: float = 3.0
    error_rate: float = 0.002
    revenue_effect: float = 0.0
    latency_factor: float = 1.0
    error_factor: float = 1.0
    srm_shortfall: float = 0.0
    revenue_cap: float | None = None

    def __post_init__(self) -> None:
        if self.minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if not self.ramp or self.ramp[0][0] != 0:
            raise ValueError("ramp must start at minute 0")
        if any(not 0 < w < 1 for _, w in self.ramp):
            raise ValueError("ramp weights must lie in (0, 1)")
        if any(b[0] <= a[0] for a, b in zip(self.ramp, self.ramp[1:], strict=False)):
            raise ValueError("ramp start minutes must increase")
        for name in ("click_rate", "tail_share", "error_rate", "srm_shortfall"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1)")

    @property
    def cap(self) -> float:
        """Frozen revenue cap: the champion's per-request p99.9 at baseline (pre-period)."""
        if self.revenue_cap is not None:
            return self.revenue_cap
        q = 1.0 - 0.001 / self.click_rate
        return float(math.exp(self.revenue_log_mean + self.revenue_log_sigma * sps.norm.ppf(q)))

    def champion_p99_ms(self) -> float:
        """The champion's p99 latency at baseline (ignoring the slow tail)."""
        return float(self.latency_median_ms * math.exp(self.latency_sigma * sps.norm.ppf(0.99)))

    def with_effect(self, **changes: float) -> Scenario:
        """A copy with other effect sizes."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def weights(self) -> FloatArray:
        """Reported challenger weight per minute."""
        t = np.arange(self.minutes)
        starts = np.array([s for s, _ in self.ramp])
        w = np.array([w for _, w in self.ramp])
        out: FloatArray = w[np.searchsorted(starts, t, side="right") - 1]
        return out

    def step_index(self) -> IntArray:
        """Traffic step of each minute."""
        starts = np.array([s for s, _ in self.ramp])
        out: IntArray = (np.searchsorted(starts, np.arange(self.minutes), side="right") - 1).astype(
            np.int64
        )
        return out

    def curve_at(self, amplitude: float, minute: npt.ArrayLike) -> FloatArray:
        """The diurnal factor ``1 + amplitude·sin(2π(minute + phase)/1440)`` at each minute."""
        t = np.asarray(minute)
        out: FloatArray = 1.0 + amplitude * np.sin(2 * np.pi * (t + self.phase_minutes) / 1440)
        return out

    def _curve(self, amplitude: float) -> FloatArray:
        return self.curve_at(amplitude, np.arange(self.minutes))


@dataclass(frozen=True, eq=False)
class RequestRows:
    """Per-request rows, sorted by time; ``arm`` is 0 (champion) or 1 (challenger).

    ``ts_offset_s`` is in seconds from the start of the simulation (of the minute, for
    :func:`minute_requests`).
    """

    arm: npt.NDArray[np.int8]
    ts_offset_s: FloatArray
    revenue: FloatArray
    latency_ms: FloatArray
    error: npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class MinuteStats:
    """Per-minute sufficient statistics, arrays of shape (minutes, 2) (arm 0 = champion).

    ``exceedances`` has shape (minutes, 2, len(thresholds_ms)) counting latency at or
    above each threshold snapped to its histogram edge; ``hist`` (optional) has shape
    (minutes, 2, N_LATENCY_BUCKETS).
    """

    n: IntArray
    revenue_sum: FloatArray
    revenue_sum_sq: FloatArray
    revenue_nonzero: IntArray
    revenue_uncapped_sum: FloatArray
    errors: IntArray
    log_latency_sum: FloatArray
    log_latency_sum_sq: FloatArray
    exceedances: IntArray
    weight: FloatArray
    step: IntArray
    thresholds_ms: tuple[float, ...] = ()
    hist: IntArray | None = field(default=None)

    def steps_at(self, minute: int) -> list[spec.StepWindow]:
        """Cumulative StepWindows for all steps up to and including ``minute`` (needs ``hist``)."""
        if self.hist is None:
            raise ValueError("steps_at needs minute stats simulated with histograms=True")
        out = []
        last = int(self.step[minute])
        for k in range(last + 1):
            sel = np.flatnonzero((self.step == k) & (np.arange(len(self.step)) <= minute))
            arms = []
            for a in (0, 1):
                arms.append(
                    stats.ArmStats(
                        n=int(self.n[sel, a].sum()),
                        revenue=stats.SufficientStats(
                            int(self.n[sel, a].sum()),
                            float(self.revenue_sum[sel, a].sum()),
                            float(self.revenue_sum_sq[sel, a].sum()),
                        ),
                        revenue_nonzero=int(self.revenue_nonzero[sel, a].sum()),
                        errors=int(self.errors[sel, a].sum()),
                        latency_hist=self.hist[sel, a].sum(axis=0),
                        log_latency=stats.SufficientStats(
                            int(self.n[sel, a].sum()),
                            float(self.log_latency_sum[sel, a].sum()),
                            float(self.log_latency_sum_sq[sel, a].sum()),
                        ),
                    )
                )
            out.append(
                spec.StepWindow(float(self.weight[sel[0]]), arms[0], arms[1], closed=k < last)
            )
        return out


def _draw(
    sc: Scenario, minute: IntArray, reported: FloatArray, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int8], FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Arm, revenue (uncapped), log latency and error flag of requests made in ``minute``.

    ``reported`` is the challenger weight the router reports for each request; the
    scenario's SRM shortfall lowers the share that actually reaches the challenger.
    """
    share = reported * (1.0 - sc.srm_shortfall)
    arm = (rng.random(minute.size) < share).astype(np.int8)
    is_b = arm == 1
    clicks = rng.random(minute.size) < sc.click_rate
    revenue = np.zeros(minute.size)
    k = int(clicks.sum())
    scale = sc.curve_at(sc.revenue_amplitude, minute[clicks])
    scale = scale * np.where(is_b[clicks], 1.0 + sc.revenue_effect, 1.0)
    revenue[clicks] = scale * np.exp(
        sc.revenue_log_mean + sc.revenue_log_sigma * rng.standard_normal(k)
    )
    log_lat = (
        math.log(sc.latency_median_ms)
        + np.log(sc.curve_at(sc.latency_amplitude, minute))
        + sc.latency_sigma * rng.standard_normal(minute.size)
        + np.where(rng.random(minute.size) < sc.tail_share, math.log(sc.tail_factor), 0.0)
        + np.where(is_b, math.log(sc.latency_factor), 0.0)
    )
    p_err = (
        sc.error_rate
        * sc.curve_at(sc.error_amplitude, minute)
        * np.where(is_b, sc.error_factor, 1.0)
    )
    error = rng.random(minute.size) < np.minimum(p_err, 1.0)
    return arm, revenue, log_lat, error


def _requests(
    sc: Scenario, rng: np.random.Generator
) -> tuple[IntArray, npt.NDArray[np.int8], FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Minute, arm, revenue (uncapped), log latency and error flag of every request."""
    vol = sc.requests_per_minute * sc._curve(sc.volume_amplitude)
    n_min = rng.poisson(vol)
    minute = np.repeat(np.arange(sc.minutes), n_min)
    arm, revenue, log_lat, error = _draw(sc, minute, sc.weights()[minute], rng)
    return minute, arm, revenue, log_lat, error


def minute_requests(
    scenario: Scenario, minute: int, share: float, rng: np.random.Generator
) -> RequestRows:
    """The requests of one minute when the router reports ``share`` for the challenger.

    For a simulation that follows a live split (the demo) rather than ``scenario.ramp``:
    the same traffic model as :func:`simulate_requests`, minute ``minute`` of the diurnal
    curve (any minute ≥ 0, also past ``scenario.minutes``). ``ts_offset_s`` counts seconds
    from the start of that minute.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    if minute < 0:
        raise ValueError(f"minute must be >= 0, got {minute}")
    n = int(
        rng.poisson(
            scenario.requests_per_minute * scenario.curve_at(scenario.volume_amplitude, minute)
        )
    )
    minutes = np.full(n, minute, dtype=np.int64)
    arm, revenue, log_lat, error = _draw(scenario, minutes, np.full(n, share), rng)
    ts = np.sort(rng.random(n) * 60.0)
    return RequestRows(arm, ts, revenue, np.exp(log_lat), error)


def simulate_requests(scenario: Scenario, seed: int) -> RequestRows:
    """Per-request rows for ``scenario`` (seeded), sorted by timestamp offset in seconds."""
    rng = np.random.default_rng(seed)
    minute, arm, revenue, log_lat, error = _requests(scenario, rng)
    ts = minute * 60.0 + rng.random(minute.size) * 60.0
    order = np.argsort(ts, kind="stable")
    return RequestRows(arm[order], ts[order], revenue[order], np.exp(log_lat[order]), error[order])


def simulate_minutes(
    scenario: Scenario,
    seed: int,
    *,
    thresholds_ms: tuple[float, ...] = (),
    histograms: bool = False,
) -> MinuteStats:
    """Per-minute sufficient statistics per arm for ``scenario`` (seeded).

    Revenue statistics are on revenue capped at ``scenario.cap``; the uncapped sum is
    kept for reporting. Uses the same draws as :func:`simulate_requests` with that seed.
    """
    rng = np.random.default_rng(seed)
    minute, arm, revenue, log_lat, error = _requests(scenario, rng)
    cell = minute * 2 + arm
    size = scenario.minutes * 2

    def per_cell(weights: npt.ArrayLike | None = None) -> FloatArray:
        counts = np.bincount(cell, weights=weights, minlength=size)
        out: FloatArray = counts.reshape(-1, 2).astype(np.float64)
        return out

    capped = np.minimum(revenue, scenario.cap)
    edges = [
        float(buckets.LATENCY_EDGES_MS[np.searchsorted(buckets.LATENCY_EDGES_MS, t)])
        for t in thresholds_ms
    ]
    exceed = (
        np.stack([per_cell(log_lat >= math.log(e)).astype(np.int64) for e in edges], axis=-1)
        if edges
        else np.zeros((scenario.minutes, 2, 0), dtype=np.int64)
    )
    hist: IntArray | None = None
    if histograms:
        b = buckets.latency_bucket(np.exp(log_lat))
        flat = np.bincount(
            cell * buckets.N_LATENCY_BUCKETS + b, minlength=size * buckets.N_LATENCY_BUCKETS
        )
        hist = flat.reshape(scenario.minutes, 2, buckets.N_LATENCY_BUCKETS).astype(np.int64)
    return MinuteStats(
        n=per_cell().astype(np.int64),
        revenue_sum=per_cell(capped),
        revenue_sum_sq=per_cell(capped * capped),
        revenue_nonzero=per_cell(revenue > 0).astype(np.int64),
        revenue_uncapped_sum=per_cell(revenue),
        errors=per_cell(error).astype(np.int64),
        log_latency_sum=per_cell(log_lat),
        log_latency_sum_sq=per_cell(log_lat * log_lat),
        exceedances=exceed,
        weight=scenario.weights(),
        step=scenario.step_index(),
        thresholds_ms=tuple(edges),
        hist=hist,
    )
