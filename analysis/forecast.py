"""Forecast of a canary's decisions on its ramp: when a healthy challenger passes, when harm fails.

Sits before and beside a run: ``canaryctl plan`` and ``canaryctl start`` print it from the
traffic people give (or the champion traffic observed in Postgres), and the operator
recomputes it at each step start from the observed champion rollups. The traffic is constant
(``Traffic``) or follows the hours of the run (``Schedule``: the champion's day hour by hour,
what a platform with a daily cycle needs; at the day's mean rate a run that starts before
the peak was forecast 40 % late, ``bench/promotion.py``). It simulates
per-look sufficient statistics of both arms on the actual ramp (each step's weight for
its minimum duration, then the last weight until ``maxDuration``) and runs the decision
rule itself on them, :func:`analysis.trajectory.replay`, so the forecast follows every
rule of ``decision`` (eligibility, products over steps, Bonferroni split, margins) without
a second copy. It looks as often as the operator does (every ``spec.analysis.interval``,
default 1 minute): a test whose e-value crosses its threshold between two coarser looks
would otherwise be counted later or not at all, which made the forecast's pass times late
(``bench/promotion.py``). All paths are replayed in one vectorised pass
(:func:`analysis.trajectory.replay_paths`), so 200 paths over a day of one-minute looks take
a second or two; the searches for a fix look more coarsely. The seed is fixed, so the same
inputs give the same forecast. This module must not read data, the clock or the controller.

How the draws are made (per look and arm): requests Poisson at the arm's rate; non-zero
revenue events binomial; the sum of the positive capped revenue values a gamma with the
mean and variance of that many values (exact for the first two moments, positive and
right-skewed as the real sums are); errors and threshold exceedances binomial; log-latency
sums normal. Sums of squares are their expectations: the plug-in variance then carries
the right value but not its sampling noise, which matters for validity at small n (see
``bench/detection.py``) but little for when a healthy challenger passes. The benchmark
``bench/promotion.py`` checks the forecast's median against an independent
request-level simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from analysis import buckets, simulate, spec, trajectory

FloatArray = npt.NDArray[np.float64]

#: Probability of promotion before maxDuration below which a forecast warns; also the
#: probability the suggested fixes (margin, duration, traffic) aim for.
LIKELY = 0.8
DEFAULT_PATHS = 200
#: Looks over the horizon of each run of a fix search (coarser than the forecast itself).
SEARCH_LOOKS = 150
_SEARCH_PATHS = 100
_SEARCH_STEPS = 7
_MAX_TRAFFIC_FACTOR = 1000.0
_MAX_DURATION_FACTOR = 8.0


@dataclass(frozen=True)
class RampStep:
    """One traffic step as the forecast reads it.

    Parameters
    ----------
    weight : float
        Challenger share, in (0, 1).
    minutes : float
        Minimum duration, ≥ 0.
    min_samples : int
        Minimum requests in the smaller arm before the step may end.
    """

    weight: float
    minutes: float
    min_samples: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.weight < 1.0:
            raise ValueError(f"weight must lie in (0, 1), got {self.weight}")
        if not (self.minutes >= 0 and math.isfinite(self.minutes)):
            raise ValueError(f"minutes must be finite and >= 0, got {self.minutes}")
        if self.min_samples < 0:
            raise ValueError(f"min_samples must be >= 0, got {self.min_samples}")

    def duration(self, requests_per_minute: float) -> float:
        """Minutes the step lasts at this traffic: its duration or its samples, the later."""
        smaller = requests_per_minute * min(self.weight, 1.0 - self.weight)
        return max(self.minutes, self.min_samples / smaller if self.min_samples else 0.0)


@dataclass(frozen=True)
class Traffic:
    """The champion's traffic and per-request metric moments (capped revenue).

    Parameters
    ----------
    requests_per_minute : float
        Total requests per minute over both arms.
    revenue_mean, revenue_sd : float
        Mean and standard deviation of capped revenue per request.
    revenue_nonzero : float
        Share of requests with revenue > 0, in (0, 1].
    error_rate : float
        Share of requests that fail, in [0, 1).
    tail_share : float or mapping of str to float
        Share of the champion's requests at or above a tail guardrail's threshold (one
        value for all, or by guardrail name), in (0, 1).
    log_latency_mean, log_latency_sd : float
        Moments of ln(latency in ms), for ``mean`` guardrails on log latency.
    """

    requests_per_minute: float
    revenue_mean: float = 0.1289
    revenue_sd: float = 0.6605
    revenue_nonzero: float = 0.08
    error_rate: float = 0.002
    tail_share: float | Mapping[str, float] = 0.01
    log_latency_mean: float = math.log(30.0)
    log_latency_sd: float = 0.35

    def __post_init__(self) -> None:
        if not (self.requests_per_minute > 0 and math.isfinite(self.requests_per_minute)):
            raise ValueError(f"requests_per_minute must be > 0, got {self.requests_per_minute}")
        if not (self.revenue_mean > 0 and self.revenue_sd > 0):
            raise ValueError("revenue_mean and revenue_sd must be > 0")
        if not 0 < self.revenue_nonzero <= 1:
            raise ValueError(f"revenue_nonzero must lie in (0, 1], got {self.revenue_nonzero}")
        if self.revenue_sd**2 + self.revenue_mean**2 < self.revenue_mean**2 / self.revenue_nonzero:
            raise ValueError("revenue_sd is too small for that mean and non-zero share")
        if not 0 <= self.error_rate < 1:
            raise ValueError(f"error_rate must lie in [0, 1), got {self.error_rate}")
        shares = (
            self.tail_share.values() if isinstance(self.tail_share, Mapping) else [self.tail_share]
        )
        if any(not 0 < s < 1 for s in shares):
            raise ValueError("tail_share must lie in (0, 1)")
        if not self.log_latency_sd > 0:
            raise ValueError(f"log_latency_sd must be > 0, got {self.log_latency_sd}")

    def tail_of(self, name: str) -> float:
        """The tail share of guardrail ``name``."""
        if isinstance(self.tail_share, Mapping):
            if name not in self.tail_share:
                raise ValueError(f"tail_share has no value for guardrail {name!r}")
            return float(self.tail_share[name])
        return float(self.tail_share)

    def scaled(self, factor: float) -> Traffic:
        """The same traffic with ``factor`` times the requests."""
        return replace(self, requests_per_minute=self.requests_per_minute * factor)

    @classmethod
    def from_scenario(
        cls, scenario: simulate.Scenario, guardrails: Sequence[spec.GuardrailSpec] = ()
    ) -> Traffic:
        """The moments of ``scenario``'s champion at baseline (diurnal curves at their mean)."""
        mu, sigma, q = scenario.revenue_log_mean, scenario.revenue_log_sigma, scenario.click_rate
        c = math.log(scenario.cap)
        over = float(sps.norm.sf((c - mu) / sigma))
        m1 = math.exp(mu + sigma**2 / 2) * float(sps.norm.cdf((c - mu - sigma**2) / sigma))
        m2 = math.exp(2 * mu + 2 * sigma**2) * float(sps.norm.cdf((c - mu - 2 * sigma**2) / sigma))
        m1, m2 = m1 + scenario.cap * over, m2 + scenario.cap**2 * over
        mean, second = q * m1, q * m2
        lat_mu = math.log(scenario.latency_median_ms)

        def share(threshold_ms: float) -> float:
            edge = buckets.LATENCY_EDGES_MS[np.searchsorted(buckets.LATENCY_EDGES_MS, threshold_ms)]
            z = (math.log(float(edge)) - lat_mu) / scenario.latency_sigma
            slow = math.log(scenario.tail_factor) / scenario.latency_sigma
            return float(
                (1 - scenario.tail_share) * sps.norm.sf(z)
                + scenario.tail_share * sps.norm.sf(z - slow)
            )

        tails = {
            g.name: share(g.threshold_edge_ms)
            for g in guardrails
            if g.kind == spec.GuardrailKind.TAIL
        }
        ts = scenario.tail_share
        return cls(
            requests_per_minute=scenario.requests_per_minute,
            revenue_mean=mean,
            revenue_sd=math.sqrt(second - mean**2),
            revenue_nonzero=q,
            error_rate=scenario.error_rate,
            tail_share=tails or 0.01,
            log_latency_mean=lat_mu + ts * math.log(scenario.tail_factor),
            log_latency_sd=math.sqrt(
                scenario.latency_sigma**2 + ts * (1 - ts) * math.log(scenario.tail_factor) ** 2
            ),
        )


@dataclass(frozen=True)
class Schedule:
    """Traffic that changes over the run, period by period: a day's profile, hour by hour.

    Parameters
    ----------
    periods : sequence of Traffic
        ``periods[i]`` holds from minute ``i · period_minutes`` after the run's start; the
        sequence repeats after its end, so give a whole cycle (24 hours for a daily profile),
        starting at the hour the run starts.
    period_minutes : float
        Length of each period, > 0.
    """

    periods: tuple[Traffic, ...]
    period_minutes: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "periods", tuple(self.periods))
        if not self.periods:
            raise ValueError("periods must not be empty")
        if not (self.period_minutes > 0 and math.isfinite(self.period_minutes)):
            raise ValueError(f"period_minutes must be finite and > 0, got {self.period_minutes}")

    @property
    def requests_per_minute(self) -> float:
        """The mean traffic over the cycle."""
        return float(np.mean([p.requests_per_minute for p in self.periods]))

    def scaled(self, factor: float) -> Schedule:
        """The same profile with ``factor`` times the requests."""
        return replace(self, periods=tuple(p.scaled(factor) for p in self.periods))

    def index(self, minutes: FloatArray) -> npt.NDArray[np.int64]:
        """The period in force at each of ``minutes`` after the start."""
        out: npt.NDArray[np.int64] = np.floor(minutes / self.period_minutes).astype(np.int64) % len(
            self.periods
        )
        return out

    def elapsed(self, start: float, requests: float) -> float:
        """Minutes from ``start`` until ``requests`` requests have arrived."""
        if requests <= 0:
            return 0.0
        rates = [p.requests_per_minute * self.period_minutes for p in self.periods]
        need, t = requests, start
        cycles = math.floor(need / sum(rates))
        need -= cycles * sum(rates)
        t += cycles * len(rates) * self.period_minutes
        while True:
            k = math.floor(t / self.period_minutes + 1e-9)
            end = (k + 1) * self.period_minutes
            rate = self.periods[k % len(rates)].requests_per_minute
            if rate * (end - t) >= need:
                return t + need / rate - start
            need -= rate * (end - t)
            t = end


def _schedule(traffic: Traffic | Schedule) -> Schedule:
    return traffic if isinstance(traffic, Schedule) else Schedule((traffic,))


@dataclass(frozen=True)
class Effect:
    """What the challenger changes (nothing: a healthy challenger).

    Parameters
    ----------
    revenue : float
        Relative change of mean revenue (−0.05 is a 5 % drop), > −1.
    tail_ratio : float
        Challenger's tail share over the champion's (p_B / p_A), > 0.
    error_ratio : float
        Challenger's error rate over the champion's, > 0.
    latency_factor : float
        Multiplies the challenger's latency (``mean`` guardrails on log latency), > 0.
    srm_shortfall : float
        Relative shortfall of the challenger's actual share against the reported one.
    """

    revenue: float = 0.0
    tail_ratio: float = 1.0
    error_ratio: float = 1.0
    latency_factor: float = 1.0
    srm_shortfall: float = 0.0

    def __post_init__(self) -> None:
        if not self.revenue > -1:
            raise ValueError(
                f"revenue must be > -1 (a change of more than -100 %), got {self.revenue}"
            )
        for name in ("tail_ratio", "error_ratio", "latency_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.srm_shortfall < 1:
            raise ValueError(f"srm_shortfall must lie in [0, 1), got {self.srm_shortfall}")


@dataclass(frozen=True)
class Times:
    """A distribution of times over the simulated paths, in minutes (``inf``: not by the horizon).

    Attributes
    ----------
    median, p90 : float
    probability : float
        Share of paths that reach the event by the horizon (``maxDuration``).
    minutes : tuple of float
        Every path's time, sorted.
    """

    median: float
    p90: float
    probability: float
    minutes: tuple[float, ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, minutes: FloatArray, horizon: float) -> Times:
        s = np.sort(minutes)

        def q(p: float) -> float:
            return float(s[max(math.ceil(p * s.size) - 1, 0)])

        return cls(q(0.5), q(0.9), float(np.mean(minutes <= horizon)), tuple(s.tolist()))

    def share_by(self, minutes: float) -> float:
        """Share of paths that reach the event by ``minutes``."""
        return float(np.mean(np.array(self.minutes) <= minutes)) if self.minutes else math.nan

    @property
    def reached_median(self) -> float:
        """Median over the paths that reach the event (``inf`` when none does)."""
        hit = [m for m in self.minutes if math.isfinite(m)]
        return float(np.median(hit)) if hit else math.inf


@dataclass(frozen=True)
class Fix:
    """What would make promotion likely (probability ``LIKELY``), each found by search.

    ``None`` when no value within the searched range does it (or it is not needed).

    Attributes
    ----------
    margin : float, optional
        The blocking guardrail's margin (a fraction for relative ``mean``) or κ (counts).
    max_minutes : float, optional
        The maxDuration, in minutes.
    requests_per_minute : float, optional
        Total traffic.
    """

    margin: float | None = None
    max_minutes: float | None = None
    requests_per_minute: float | None = None


@dataclass(frozen=True)
class Forecast:
    """What canaryctl is expected to decide on this ramp, margins, alpha and traffic.

    Attributes
    ----------
    promotion : Times
        Minutes from the first step's start until a healthy challenger is promoted (the
        first PASS after the steps' minimum durations, with no FAIL before it).
    passing : dict of str to Times
        Per guardrail: minutes until it shows non-inferiority after the steps' minimum
        durations (on its own), probability by maxDuration.
    failure : Times
        Minutes until the first FAIL (rollback) of a challenger with the ``effect`` (of a
        healthy one without).
    failing : dict of str to Times
        Per guardrail (and ``"srm"``): minutes until its FAIL.
    false_rollback : float
        Probability that a healthy challenger is rolled back before maxDuration.
    steps_minutes : float
        When the steps' minimum durations end (no promotion before).
    max_minutes : float
    blocking : str, optional
        The guardrail least likely to pass by maxDuration when promotion is unlikely.
    fix : Fix
        What would make promotion likely (empty unless asked and unlikely).
    paths, seed, look_minutes
        How it was simulated.
    """

    promotion: Times
    passing: dict[str, Times]
    failure: Times
    failing: dict[str, Times]
    false_rollback: float
    steps_minutes: float
    max_minutes: float
    blocking: str | None
    fix: Fix = field(default_factory=Fix)
    paths: int = DEFAULT_PATHS
    seed: int = 0
    look_minutes: float = 0.0

    @property
    def likely(self) -> bool:
        """True when a (healthy) challenger is promoted by maxDuration with probability ≥ LIKELY."""
        return self.promotion.probability >= LIKELY


def _looks(
    ramp: Sequence[RampStep], traffic: Schedule, horizon: float, look_minutes: float
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64], float]:
    """Look lengths, weights and step indices up to ``horizon``; when the steps end."""
    lengths: list[float] = []
    weights: list[float] = []
    steps: list[int] = []
    t = 0.0
    ends: list[float] = []
    for s in ramp:  # each step's duration or its samples at the traffic of its time, the later
        smaller = min(s.weight, 1.0 - s.weight)
        ends.append(max(s.minutes, traffic.elapsed(sum(ends), s.min_samples / smaller)))
    steps_end = float(sum(ends))
    for k, step in enumerate(ramp):
        end = horizon if k == len(ramp) - 1 else min(t + ends[k], horizon)
        while t < end - 1e-9:
            dt = min(look_minutes, end - t)
            lengths.append(dt)
            weights.append(step.weight)
            steps.append(k)
            t += dt
        if t >= horizon - 1e-9:
            break
    # a step that lasts no time has no look: number the steps that do consecutively
    index = np.unique(steps, return_inverse=True)[1].astype(np.int64)
    return np.array(lengths), np.array(weights), index, steps_end


def _draw(
    guardrails: Sequence[spec.GuardrailSpec],
    traffic: Schedule,
    effect: Effect,
    lengths: FloatArray,
    weights: FloatArray,
    steps: npt.NDArray[np.int64],
    paths: int,
    rng: np.random.Generator,
) -> simulate.MinuteStats:
    """``paths`` histories of per-look sufficient statistics, arrays (paths, looks, 2, ...)."""
    looks = lengths.size
    # each look reads the traffic of the period its middle falls in, as a column (looks, 1)
    period = traffic.index(np.cumsum(lengths) - lengths / 2)

    def per_look(value: Callable[[Traffic], float]) -> FloatArray:
        out: FloatArray = np.array([value(p) for p in traffic.periods])[period][:, None]
        return out

    share_b = weights * (1.0 - effect.srm_shortfall)
    rate = (
        per_look(lambda t: t.requests_per_minute)
        * lengths[:, None]
        * np.stack([1 - share_b, share_b], -1)
    )
    n = rng.poisson(rate, size=(paths, looks, 2))
    q = per_look(lambda t: t.revenue_nonzero)
    m_pos = per_look(lambda t: t.revenue_mean) / q
    v_pos = per_look(lambda t: t.revenue_sd**2 + t.revenue_mean**2) / q - m_pos**2
    k = rng.binomial(n, q)
    scale_rev = np.array([1.0, 1.0 + effect.revenue])
    spread = v_pos > 1e-12 * m_pos**2
    v_safe = np.where(spread, v_pos, 1.0)
    rev = np.where(
        spread,
        rng.gamma(np.maximum(k * m_pos**2 / v_safe, 1e-300), v_safe / m_pos) * (k > 0),
        k * m_pos,
    )
    rev = rev * scale_rev
    rev_sq = k * (np.maximum(v_pos, 0.0) + m_pos**2) * scale_rev**2
    errors = rng.binomial(
        n, np.minimum(per_look(lambda t: t.error_rate) * np.array([1.0, effect.error_ratio]), 1)
    )
    tails = [g for g in guardrails if g.kind == spec.GuardrailKind.TAIL]
    edges = tuple(dict.fromkeys(g.threshold_edge_ms for g in tails))
    exceed = np.zeros((paths, looks, 2, len(edges)), dtype=np.int64)
    for j, edge in enumerate(edges):
        g = next(t for t in tails if t.threshold_edge_ms == edge)
        p = per_look(partial(Traffic.tail_of, name=g.name)) * np.array([1.0, effect.tail_ratio])
        exceed[..., j] = rng.binomial(n, np.minimum(p, 1.0))
    mu = per_look(lambda t: t.log_latency_mean) + np.array([0.0, math.log(effect.latency_factor)])
    sd = per_look(lambda t: t.log_latency_sd)
    ll = n * mu + np.sqrt(n) * sd * rng.standard_normal(n.shape)
    ll_sq = n * (sd**2 + mu**2)
    return simulate.MinuteStats(
        n=n,
        revenue_sum=rev,
        revenue_sum_sq=rev_sq,
        revenue_nonzero=k,
        revenue_uncapped_sum=rev,
        errors=errors,
        log_latency_sum=ll,
        log_latency_sum_sq=ll_sq,
        exceedances=exceed,
        weight=weights,
        step=steps,
        thresholds_ms=edges,
    )


@dataclass(frozen=True)
class _Run:
    promoted: FloatArray
    passed: dict[str, FloatArray]
    failed: FloatArray
    failed_by: dict[str, FloatArray]


def _run(
    settings: spec.AnalysisSettings,
    guardrails: Sequence[spec.GuardrailSpec],
    ramp: Sequence[RampStep],
    horizon: float,
    traffic: Schedule,
    effect: Effect,
    paths: int,
    seed: int,
    look_minutes: float,
) -> tuple[_Run, float]:
    lengths, weights, steps, steps_end = _looks(ramp, traffic, horizon, look_minutes)
    t_end = np.cumsum(lengths)
    after = t_end >= steps_end - 1e-9
    rng = np.random.default_rng(seed)
    histories = _draw(guardrails, traffic, effect, lengths, weights, steps, paths, rng)
    r = trajectory.replay_paths(settings, guardrails, histories)

    def first(mask: npt.NDArray[np.bool_]) -> FloatArray:
        """Per path, the end minute of the first look where ``mask`` holds (inf: none)."""
        hit = mask.any(axis=1)
        out: FloatArray = np.where(hit, t_end[np.argmax(mask, axis=1)], np.inf)
        return out

    failed = first(r.fail)
    ok = after[None, :] & (t_end[None, :] < failed[:, None])
    promoted = first(ok & r.pass_all)
    passed = {g.name: first(ok & r.passing[g.name]) for g in guardrails}
    failed_by = {name: first(x) for name, x in r.fail_by.items()}
    return _Run(promoted, passed, failed, failed_by), steps_end


def _look_minutes(horizon: float, look_minutes: float, looks: int | None = None) -> float:
    """``look_minutes``, or, with ``looks``, the coarser of it and horizon / ``looks``."""
    if not (look_minutes > 0 and math.isfinite(look_minutes)):
        raise ValueError(f"look_minutes must be finite and > 0, got {look_minutes}")
    if looks is None:
        return look_minutes
    if looks < 1:
        raise ValueError(f"looks must be >= 1, got {looks}")
    return max(look_minutes, math.ceil(horizon / looks))


def forecast(
    settings: spec.AnalysisSettings,
    guardrails: Sequence[spec.GuardrailSpec],
    ramp: Sequence[RampStep],
    max_minutes: float,
    traffic: Traffic | Schedule,
    effect: Effect | None = None,
    *,
    paths: int = DEFAULT_PATHS,
    seed: int = 0,
    look_minutes: float = 1.0,
    looks: int | None = None,
    fixes: bool = False,
) -> Forecast:
    """Forecast promotion (and, with ``effect``, failure) on a ramp.

    Parameters
    ----------
    settings : AnalysisSettings
        Alpha, burn-in and tuning, as the experiment records them.
    guardrails : sequence of GuardrailSpec
        With their margins (``mean``) or κ (``tail``, ``rate``).
    ramp : sequence of RampStep
        The steps in order; the last weight holds until ``max_minutes``.
    max_minutes : float
        maxDuration in minutes: no promotion after it.
    traffic : Traffic or Schedule
        The traffic and champion moments: constant (``Traffic``), or changing over the run
        (``Schedule``, e.g. the champion's traffic hour by hour the day before, from the
        hour the run starts), which is what a diurnal platform needs (``bench/promotion.py``).
    effect : Effect, optional
        A harm to forecast the FAIL of (``failure``, ``failing``); promotion is always
        forecast for a healthy challenger.
    paths : int
        Simulated histories.
    seed : int
        Fixes the draws: the same inputs give the same forecast.
    look_minutes : float
        Minutes between looks: the experiment's ``spec.analysis.interval`` (default 1).
    looks : int, optional
        At most about this many looks over the horizon (coarser looks, for a cheaper and
        later-biased forecast); default: every ``look_minutes``.
    fixes : bool
        When promotion is unlikely, search the blocking guardrail's margin, the maxDuration
        and the traffic that make it likely (``Fix``); a few more seconds.

    Returns
    -------
    Forecast

    Notes
    -----
    The rule simulated is :func:`analysis.trajectory.replay`'s, the same as
    :func:`analysis.evaluate`'s (checked in ``tests/analysis/test_forecast.py``).
    Promotion follows the controller's stepping: never before every step's minimum
    duration (and minimum samples, at the forecast traffic) has passed.
    """
    if not guardrails:
        raise ValueError("guardrails must not be empty")
    if not ramp:
        raise ValueError("ramp must contain at least one step")
    if not (max_minutes > 0 and math.isfinite(max_minutes)):
        raise ValueError(f"max_minutes must be finite and > 0, got {max_minutes}")
    if paths < 1:
        raise ValueError(f"paths must be >= 1, got {paths}")
    look = _look_minutes(max_minutes, look_minutes, looks)
    traffic = _schedule(traffic)
    run, steps_end = _run(
        settings, guardrails, ramp, max_minutes, traffic, Effect(), paths, seed, look
    )
    harmed = run
    if effect is not None and effect != Effect():
        harmed, _ = _run(
            settings, guardrails, ramp, max_minutes, traffic, effect, paths, seed, look
        )
    promotion = Times.of(run.promoted, max_minutes)
    passing = {name: Times.of(x, max_minutes) for name, x in run.passed.items()}
    blocking = None
    if promotion.probability < LIKELY:
        blocking = min(
            passing, key=lambda n: (passing[n].probability, -min(passing[n].median, 1e300))
        )
    fix = Fix()
    if fixes and blocking is not None:
        fix = _search(
            settings, guardrails, ramp, max_minutes, traffic, blocking, seed, look_minutes
        )
    return Forecast(
        promotion,
        passing,
        Times.of(harmed.failed, max_minutes),
        {name: Times.of(x, max_minutes) for name, x in harmed.failed_by.items()},
        float(np.mean(run.failed <= max_minutes)),
        steps_end,
        max_minutes,
        blocking,
        fix,
        paths,
        seed,
        look,
    )


def alone(settings: spec.AnalysisSettings, n_guardrails: int) -> spec.AnalysisSettings:
    """Settings under which one guardrail is tested at the alpha it gets among ``n_guardrails``.

    For forecasting one guardrail of a larger set (``canaryctl plan --guardrails``, and the
    searches below): the Bonferroni share is linear in alpha, so scaling alpha by
    ``alpha_each(n) / alpha_each(1)`` gives the single guardrail (and the SRM check) that share.
    """
    each = settings.alpha_each(n_guardrails)
    return replace(settings, alpha=each * settings.alpha / settings.alpha_each(1))


def _bisect(ok: Callable[[float], bool], lo: float, hi: float, *, geometric: bool) -> float | None:
    """Smallest x in [lo, hi] with ok(x) (ok monotone), or None when ok(hi) fails."""
    if not ok(hi):
        return None
    for _ in range(_SEARCH_STEPS):
        mid = math.sqrt(lo * hi) if geometric else (lo + hi) / 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _search(
    settings: spec.AnalysisSettings,
    guardrails: Sequence[spec.GuardrailSpec],
    ramp: Sequence[RampStep],
    max_minutes: float,
    traffic: Schedule,
    blocking: str,
    seed: int,
    look_minutes: float = 1.0,
) -> Fix:
    """The blocking guardrail's margin, the maxDuration and the traffic that make it pass.

    Each searches the blocking guardrail on its own (at the alpha it gets among all
    guardrails), with fewer paths and coarser looks (``SEARCH_LOOKS`` over the horizon,
    hence a little conservative): it says what to change, the forecast then confirms it.
    """
    g = next(x for x in guardrails if x.name == blocking)
    single = alone(settings, len(guardrails))

    def likely(
        guard: spec.GuardrailSpec, horizon: float, tr: Schedule, *, by: float | None = None
    ) -> tuple[bool, FloatArray]:
        run, _ = _run(
            single,
            [guard],
            ramp,
            horizon,
            tr,
            Effect(),
            _SEARCH_PATHS,
            seed,
            _look_minutes(horizon, look_minutes, SEARCH_LOOKS),
        )
        t = run.passed[guard.name]
        return bool(np.mean(t <= (by or horizon)) >= LIKELY), t

    if g.kind == spec.GuardrailKind.MEAN:
        margin = _bisect(
            lambda m: likely(replace(g, margin=m), max_minutes, traffic)[0],
            g.margin,
            max(1.0, 4 * g.margin)
            if g.relative
            else max(4 * g.margin, traffic.periods[0].revenue_mean),
            geometric=False,
        )
    else:
        margin = _bisect(
            lambda k: likely(replace(g, kappa=k), max_minutes, traffic)[0],
            g.kappa,
            max(10.0, 4 * g.kappa),
            geometric=True,
        )
    long = max_minutes * _MAX_DURATION_FACTOR
    ok, times = likely(g, long, traffic)
    duration = float(np.quantile(times, LIKELY)) if ok else None
    rpm = _bisect(
        lambda f: likely(g, max_minutes, traffic.scaled(f))[0],
        1.0,
        _MAX_TRAFFIC_FACTOR,
        geometric=True,
    )
    return Fix(
        margin,
        duration,
        None if rpm is None else rpm * traffic.requests_per_minute,
    )
