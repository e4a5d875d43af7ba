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
from typing import Any

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


def _cumulate(x: npt.ArrayLike, step: IntArray, n_steps: int, lead: int = 0) -> FloatArray:
    """(*paths, minutes, ...) per-minute values → (rows, steps, ...) cumulative per step.

    ``lead`` leading axes are independent paths; rows are their minutes, path after path.
    """
    a = np.asarray(x, dtype=np.float64)
    rest = a.shape[lead + 1 :]
    out = np.zeros((*a.shape[: lead + 1], n_steps, *rest))
    for k in range(n_steps):
        in_k = (step == k).reshape(-1, *([1] * len(rest)))
        index: tuple[Any, ...] = (Ellipsis, k, *([slice(None)] * len(rest)))
        out[index] = np.cumsum(np.where(in_k, a, 0.0), axis=lead)
    return out.reshape(-1, n_steps, *rest)


@dataclass(frozen=True)
class _Masks:
    """Per-row outcomes of the rule (rows: minutes, or the minutes of each path in turn)."""

    fail_any: npt.NDArray[np.bool_]
    pass_all: npt.NDArray[np.bool_]
    srm_ok: npt.NDArray[np.bool_]
    srm_fire: npt.NDArray[np.bool_]
    ok: dict[str, npt.NDArray[np.bool_]]
    fail: dict[str, npt.NDArray[np.bool_]]
    passing: dict[str, npt.NDArray[np.bool_]]
    log_e: dict[str, FloatArray]


def _masks(
    settings: spec.AnalysisSettings,
    guardrails: Sequence[spec.GuardrailSpec],
    minutes: simulate.MinuteStats,
    lead: int,
) -> _Masks:
    """The rule at every row; ``minutes``' arrays have ``lead`` path axes before the minutes
    (``weight`` and ``step`` are shared by the paths)."""
    step = minutes.step
    n_steps = int(step.max()) + 1
    reps = int(np.prod(np.shape(minutes.n)[:lead], dtype=np.int64))
    t_len = step.size * reps
    started = np.tile(np.arange(n_steps)[None, :] <= step[:, None], (reps, 1))
    rho = np.broadcast_to(
        np.array([minutes.weight[np.flatnonzero(step == k)[0]] for k in range(n_steps)]),
        (t_len, n_steps),
    )

    def cum(x: npt.ArrayLike) -> FloatArray:
        return _cumulate(x, step, n_steps, lead)

    n = cum(minutes.n)
    alpha_g = settings.alpha_each(len(guardrails))
    big_l = engine.log_threshold(alpha_g)
    ones = np.ones(t_len)

    nz = cum(minutes.revenue_nonzero)
    srm_ok = engine.srm_eligible(n, started, ones * settings.srm_min_requests)
    log_bf = np.where(started, engine.srm_step_log_bf(n, rho, settings.srm_concentration), 0.0).sum(
        axis=1
    )
    srm_fire = srm_ok & (log_bf >= big_l) & settings.srm_check

    fail_any = srm_fire.copy()
    pass_all = srm_ok & ~srm_fire
    oks: dict[str, npt.NDArray[np.bool_]] = {}
    fails: dict[str, npt.NDArray[np.bool_]] = {}
    log_e: dict[str, FloatArray] = {}
    passing: dict[str, npt.NDArray[np.bool_]] = {}
    for g in guardrails:
        if g.kind == spec.GuardrailKind.MEAN:
            rev = g.metric == spec.MeanMetric.REVENUE
            total = cum(minutes.revenue_sum if rev else minutes.log_latency_sum)
            total_sq = cum(minutes.revenue_sum_sq if rev else minutes.log_latency_sum_sq)
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
                ev = cum(minutes.errors)
            else:
                j = [round(t, 9) for t in minutes.thresholds_ms].index(
                    round(g.threshold_edge_ms, 9)
                )
                ev = cum(minutes.exceedances[..., j])
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
        oks[g.name] = ok
        fails[g.name] = fail
        log_e[g.name] = comb.log_e_harm
        passing[g.name] = passed & ~srm_fire
    pass_all &= ~fail_any & bool(guardrails)
    return _Masks(fail_any, pass_all, srm_ok, srm_fire, oks, fails, passing, log_e)


def replay(
    settings: spec.AnalysisSettings,
    guardrails: Sequence[spec.GuardrailSpec],
    minutes: simulate.MinuteStats,
) -> Replay:
    """Evaluate a history at every minute (see the module docstring)."""
    m = _masks(settings, guardrails, minutes, 0)
    first_by = {name: _first(x) for name, x in m.fail.items()}
    first_by["srm"] = _first(m.srm_fire)
    first_ok = {"srm": _first(m.srm_ok)} | {name: _first(x) for name, x in m.ok.items()}
    verdict = np.where(
        m.fail_any,
        spec.Verdict.FAIL.value,
        np.where(m.pass_all, spec.Verdict.PASS.value, spec.Verdict.CONTINUE.value),
    )
    return Replay(
        verdict, _first(m.fail_any), first_by, _first(m.pass_all), m.log_e, first_ok, m.passing
    )


@dataclass(frozen=True)
class Paths:
    """Per-look outcomes of many independent paths on the same looks (``replay_paths``).

    Attributes
    ----------
    fail, pass_all : ndarray of bool, shape (paths, looks)
        Overall FAIL (any guardrail or SRM) and overall PASS at each look.
    fail_by : dict of str to ndarray of bool, shape (paths, looks)
        FAIL of each guardrail, and of ``"srm"``.
    passing : dict of str to ndarray of bool, shape (paths, looks)
        As ``Replay.passing``.
    """

    fail: npt.NDArray[np.bool_]
    pass_all: npt.NDArray[np.bool_]
    fail_by: dict[str, npt.NDArray[np.bool_]]
    passing: dict[str, npt.NDArray[np.bool_]]


def replay_paths(
    settings: spec.AnalysisSettings,
    guardrails: Sequence[spec.GuardrailSpec],
    minutes: simulate.MinuteStats,
) -> Paths:
    """``replay`` of many paths in one vectorised pass.

    ``minutes``' per-arm arrays have shape (paths, looks, 2, ...); ``weight`` and ``step``
    (looks,) are shared. The same rows as ``replay`` of each path alone (a test checks it).
    """
    m = _masks(settings, guardrails, minutes, 1)
    shape = np.shape(minutes.n)[:2]

    def per_path(x: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        return np.asarray(x).reshape(shape)

    return Paths(
        per_path(m.fail_any),
        per_path(m.pass_all),
        {name: per_path(x) for name, x in m.fail.items()} | {"srm": per_path(m.srm_fire)},
        {name: per_path(x) for name, x in m.passing.items()},
    )
