"""Replay canaryctl's decision at every minute of a recorded or simulated history at once.

Sits beside ``decision``: where ``evaluate`` answers "what now?" for one look with state
passed in and out, ``replay`` answers "when would canaryctl have stopped?" for every
minute of a history, vectorised over time with the same ``engine`` kernels and the same
rules (per-guardrail eligibility, per-step burn-in, products over steps, Bonferroni split, FAIL only with the
estimate on the harmful side). Tests check it against minute-by-minute ``evaluate``. Used
by the benchmark and by notebooks; it must not be used by the controller (which needs
state) and must not change any rule of ``decision``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analysis import engine, simulate, spec

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Replay:
    """Per-minute outcome of a history; minutes are 0-based, −1 means never.

    Attributes
    ----------
    verdict : ndarray of str, shape (minutes,)
        The experiment's verdict at each minute.
    first_fail : int
        First minute with an overall FAIL (any guardrail or SRM).
    first_fail_by : dict of str to int
        First FAIL per guardrail name, and under ``"srm"`` for the SRM check.
    first_pass : int
        First minute with an overall PASS.
    log_e_harm : dict of str to ndarray
        ln E of each guardrail's harm test at each minute.
    first_eligible : dict of str to int
        First minute at which each guardrail (and ``"srm"``) may decide.
    passing : dict of str to ndarray of bool
        Minutes at which each guardrail, on its own, shows non-inferiority with its data
        eligible and no sample-ratio mismatch (what ``analysis.forecast`` reads).
    """

    verdict: npt.NDArray[np.str_]
    first_fail: int
    first_fail_by: dict[str, int]
    first_pass: int
    log_e_harm: dict[str, FloatArray]
    first_eligible: dict[str, int]
    passing: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)


def _first(mask: npt.NDArray[np.bool_]) -> int:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else -1


def _cumulate(x: npt.ArrayLike, step: IntArray, n_steps: int) -> FloatArray:
    """(minutes, ...) per-minute values → (minutes, steps, ...) cumulative per step."""
    a = np.asarray(x, dtype=np.float64)
    out = np.zeros((a.shape[0], n_steps, *a.shape[1:]))
    for k in range(n_steps):
        in_k = (step == k).reshape(-1, *([1] * (a.ndim - 1)))
        out[:, k] = np.cumsum(np.where(in_k, a, 0.0), axis=0)
    return out


def replay(
    settings: spec.AnalysisSettings,
    guardrails: Sequence[spec.GuardrailSpec],
    minutes: simulate.MinuteStats,
) -> Replay:
    """Evaluate a history at every minute (see the module docstring)."""
    step = minutes.step
    n_steps = int(step.max()) + 1
    t_len = step.size
    started = np.arange(n_steps)[None, :] <= step[:, None]
    rho = np.broadcast_to(
        np.array([minutes.weight[np.flatnonzero(step == k)[0]] for k in range(n_steps)]),
        (t_len, n_steps),
    )
    n = _cumulate(minutes.n, step, n_steps)
    alpha_g = settings.alpha_each(len(guardrails))
    big_l = engine.log_threshold(alpha_g)
    ones = np.ones(t_len)

    nz = _cumulate(minutes.revenue_nonzero, step, n_steps)
    srm_ok = engine.srm_eligible(n, started, ones * settings.srm_min_requests)
    log_bf = np.where(started, engine.srm_step_log_bf(n, rho, settings.srm_concentration), 0.0).sum(
        axis=1
    )
    srm_fire = srm_ok & (log_bf >= big_l) & settings.srm_check

    fail_any = srm_fire.copy()
    pass_all = srm_ok & ~srm_fire
    first_by: dict[str, int] = {}
    first_ok: dict[str, int] = {"srm": _first(srm_ok)}
    log_e: dict[str, FloatArray] = {}
    passing: dict[str, npt.NDArray[np.bool_]] = {}
    for g in guardrails:
        if g.kind == spec.GuardrailKind.MEAN:
            rev = g.metric == spec.MeanMetric.REVENUE
            total = _cumulate(
                minutes.revenue_sum if rev else minutes.log_latency_sum, step, n_steps
            )
            total_sq = _cumulate(
                minutes.revenue_sum_sq if rev else minutes.log_latency_sum_sq, step, n_steps
            )
            summ = engine.mean_summaries(
                n,
                total,
                total_sq,
                nz if rev else np.full_like(n, np.inf),
                relative=np.full(t_len, g.relative),
                min_requests=ones
                * (settings.burn_in_requests if rev else settings.mean_min_requests),
                min_nonzero=ones * (settings.burn_in_nonzero if rev else 0.0),
                n_star=ones * settings.n_star,
                alpha=ones * alpha_g,
                null_ratio=ones * (1.0 - g.sign * g.margin),
            )
            comb = engine.combine_means(
                summ,
                sign=ones * g.sign,
                margin=ones * g.margin,
                alpha=ones * alpha_g,
                with_bounds=False,
            )
            ok = engine.mean_eligible(summ)
        else:
            if g.kind == spec.GuardrailKind.RATE:
                ev = _cumulate(minutes.errors, step, n_steps)
            else:
                j = [round(t, 9) for t in minutes.thresholds_ms].index(
                    round(g.threshold_edge_ms, 9)
                )
                ev = _cumulate(minutes.exceedances[..., j], step, n_steps)
            comb = engine.combine_counts(
                ev,
                n,
                rho,
                started,
                kappa=ones * g.kappa,
                alpha=ones * alpha_g,
                a=ones * settings.beta_a,
                b=ones * settings.beta_b,
                prior_ratio=ones
                * (math.inf if settings.count_prior_ratio is None else settings.count_prior_ratio),
                with_bounds=False,
            )
            ok = engine.count_eligible(ev, started, ones * settings.min_events)
        fail = ok & ~srm_fire & (comb.log_e_harm >= big_l) & comb.harmful
        passed = ok & (comb.log_e_noninf >= big_l) & comb.safe
        fail_any |= fail
        pass_all &= passed
        first_by[g.name] = _first(fail)
        first_ok[g.name] = _first(ok)
        log_e[g.name] = comb.log_e_harm
        passing[g.name] = passed & ~srm_fire
    first_by["srm"] = _first(srm_fire)
    pass_all &= ~fail_any & bool(guardrails)
    verdict = np.where(
        fail_any,
        spec.Verdict.FAIL.value,
        np.where(pass_all, spec.Verdict.PASS.value, spec.Verdict.CONTINUE.value),
    )
    return Replay(verdict, _first(fail_any), first_by, _first(pass_all), log_e, first_ok, passing)
