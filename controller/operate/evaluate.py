"""The analysis input of a tick, and its result as reconcile and people read it.

Between observation and decision: maps an Experiment's frozen analysis settings to
``analysis`` settings and guardrail specs; reads the rollups of each traffic step's
window (the windows themselves are decided in ``decide.windows``) into a
``analysis.BatchItem``; derives the baseline's cap and thresholds; persists the
sequential state and the look after the batch ran; and turns an ``analysis.Evaluation``
into the ``observed.Verdicts`` reconcile reads, with the status fields and the evidence
that travel in the plan. Reads and writes Postgres through ``storage.rollups`` and ``storage.looks``; no
Kubernetes, no clock. It decides nothing: the SRM policy, too, lives in the analysis
settings (a disabled check takes no alpha and voids nothing).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

import analysis
from analysis import arms as analysis_arms
from controller.decide import observed as obs
from controller.decide import windows as win
from controller.experiment import frozen, spec
from controller.routers import base as routers
from controller.storage import looks, rollups


def settings_for(settings: frozen.FrozenSettings) -> analysis.AnalysisSettings:
    """The engine's settings from the frozen ones; refuses a split that differs from the record."""
    a = settings.analysis
    kwargs: dict[str, Any] = {
        "alpha": a.alpha,
        "burn_in_requests": a.burn_in.min_requests,
        "burn_in_nonzero": a.burn_in.min_non_zero_revenue,
        "min_events": a.burn_in.min_events,
        "srm_min_requests": a.burn_in.min_srm_requests,
        "srm_check": settings.srm.enabled,
    }
    if a.tuning.samples_per_arm:
        kwargs["n_star"] = float(a.tuning.samples_per_arm)
    out = analysis.AnalysisSettings(**kwargs)
    each = out.alpha_each(len(settings.guardrails))
    recorded = {g.alpha for g in settings.guardrails}
    if not all(math.isclose(x, each, rel_tol=1e-12) for x in recorded):
        raise ValueError(
            f"frozen settings record alpha {sorted(recorded)} per test, the engine would use {each}"
        )
    return out


def guardrails_for(settings: frozen.FrozenSettings) -> list[analysis.GuardrailSpec]:
    """The analysis engine's guardrail specs, as frozen (thresholds resolved)."""
    out = []
    for g in settings.guardrails:
        if g.kind is spec.GuardrailKind.MEAN:
            assert g.direction is not None and g.margin is not None
            out.append(
                analysis.GuardrailSpec(
                    g.name,
                    analysis.GuardrailKind.MEAN,
                    metric=analysis.MeanMetric.REVENUE,
                    direction=analysis.Direction[g.direction.name],
                    margin=g.margin,
                    relative=g.scale is frozen.Scale.RELATIVE,
                )
            )
        elif g.kind is spec.GuardrailKind.LATENCY:
            assert g.margin is not None
            out.append(latency_spec(g.name, g.margin))
        elif g.kind is spec.GuardrailKind.TAIL:
            out.append(
                analysis.GuardrailSpec(
                    g.name,
                    analysis.GuardrailKind.TAIL,
                    kappa=g.margin_line,
                    threshold_ms=g.threshold_ms,
                )
            )
        else:
            out.append(
                analysis.GuardrailSpec(g.name, analysis.GuardrailKind.RATE, kappa=g.margin_line)
            )
    return out


def latency_spec(name: str, margin: float) -> analysis.GuardrailSpec:
    """A latency guardrail as the engine tests it: the mean of log latency, lower is better.

    Geometric-mean ratio B/A ≤ 1 + ``margin`` is exactly mean log B − mean log A ≤
    ln(1 + ``margin``), so the absolute margin on the log scale is that logarithm.
    """
    return analysis.GuardrailSpec(
        name,
        analysis.GuardrailKind.MEAN,
        metric=analysis.MeanMetric.LOG_LATENCY,
        direction=analysis.Direction.LOWER_IS_BETTER,
        margin=math.log1p(margin),
        relative=False,
    )


def on_spec_scale(ev: analysis.Evaluation, settings: frozen.FrozenSettings) -> analysis.Evaluation:
    """``ev`` with each latency guardrail's estimate and bounds as a geometric-mean ratio − 1.

    The engine reports the difference of mean log latencies; exp(·) − 1 is monotone, so the
    bounds stay the anytime-valid bounds, on the scale the frozen settings record
    (relative, harm beginning at +margin).
    """
    latency = {g.name for g in settings.guardrails if g.kind is spec.GuardrailKind.LATENCY}
    if not latency:
        return ev
    return dataclasses.replace(
        ev,
        guardrails=tuple(
            dataclasses.replace(
                g,
                estimate=math.expm1(g.estimate),
                lower=math.expm1(g.lower),
                upper=math.expm1(g.upper),
            )
            if g.name in latency
            else g
            for g in ev.guardrails
        ),
    )


def arm_stats(t: rollups.ArmTotals) -> analysis.ArmStats:
    """Storage's exact totals as the analysis engine's arm statistics (capped revenue)."""
    return analysis.ArmStats(
        n=t.n,
        revenue=analysis.SufficientStats(
            t.n, float(t.revenue_capped_sum), float(t.revenue_capped_sum_sq)
        ),
        revenue_nonzero=t.revenue_nonzero,
        errors=t.errors,
        latency_hist=t.latency_hist,
        log_latency=analysis.SufficientStats(
            t.n, float(t.log_latency_sum), float(t.log_latency_sum_sq)
        ),
    )


# ----------------------------------------------------------------------------- verdicts


def summarise(
    ev: analysis.Evaluation,
    *,
    settings: frozen.FrozenSettings,
    windows: Sequence[win.Window],
    steps: Sequence[analysis.StepWindow] = (),
) -> obs.Verdicts:
    """The controller-side summary reconcile reads, with the figures people read.

    ``steps`` are the rollups the evaluation read (one per window): each arm's values in
    the metric's unit and the revenue impact come from them (:func:`arm_fields`).
    Latency guardrails' figures are put on their recorded scale first (:func:`on_spec_scale`).
    """
    ev = on_spec_scale(ev, settings)
    fields = status_fields(ev, settings, steps, windows)  # once: the evidence repeats them
    return obs.Verdicts(
        overall=obs.Verdict(ev.verdict.value),
        guardrails=tuple(
            obs.GuardrailVerdict(
                g.name,
                obs.Verdict(g.verdict.value),
                g.reason_code.value,
                g.reason,
                harm_bound=harm_bound(g, settings.guardrail(g.name)),
                margin_line=settings.guardrail(g.name).margin_line,
                scale=settings.guardrail(g.name).scale.value,
            )
            for g in ev.guardrails
        ),
        srm_mismatch=bool(ev.srm.mismatch),
        burn_in_met=ev.burn_in_met,
        srm_reason=ev.reason if ev.reason_code is analysis.ReasonCode.SRM else "",
        status_fields=fields,
        evidence=evidence(ev, windows, settings, steps, fields),
    )


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def harm_bound(g: analysis.GuardrailResult, test: frozen.GuardrailTest) -> float | None:
    """The confidence-sequence bound on the harmful side: the largest harm not excluded.

    The lower bound of a higher-is-better mean, the upper bound otherwise (a lower-is-better
    mean, a ratio of exceedances or errors); None before the burn-in (no bound yet).
    """
    lower_is_harm = test.direction is spec.Direction.HIGHER_IS_BETTER
    return _num(g.lower if lower_is_harm else g.upper)


def _waiting(w: analysis.Waiting | None) -> dict[str, Any]:
    """``{"waiting": {have, need, unit}}`` while a test waits for its own data, else nothing."""
    return {} if w is None else {"waiting": {"have": w.have, "need": w.need, "unit": w.unit}}


def status_fields(
    ev: analysis.Evaluation,
    settings: frozen.FrozenSettings,
    steps: Sequence[analysis.StepWindow] = (),
    windows: Sequence[win.Window] = (),
) -> dict[str, Any]:
    """``status.guardrails``, ``status.srm`` and, with ``steps``, ``status.arms`` and
    ``status.impact``: each figure with the alpha it was judged at, the scale it is on and
    the line where harm begins (as frozen), and what each arm measured, for people and
    the CLI."""
    values = arm_fields(ev, settings, steps, windows)
    rows = []
    for g in ev.guardrails:
        test = settings.guardrail(g.name)
        rows.append(
            values["guardrails"].get(g.name, {})
            | {
                "name": g.name,
                "kind": g.kind.value,
                "verdict": g.verdict.value,
                "reasonCode": g.reason_code.value,
                "reason": g.reason,
                "estimate": _num(g.estimate),
                "lower": _num(g.lower),
                "upper": _num(g.upper),
                "pValue": _num(g.p_value),
                "pValueNonInferiority": _num(g.p_value_noninferiority),
                "alpha": g.alpha,
                "scale": test.scale.value,
                "marginLine": test.margin_line,
                "nullLine": test.null_line,
                **_waiting(g.waiting),
            }
        )
    out: dict[str, Any] = {"arms": values["arms"], "impact": values["impact"]} if steps else {}
    return out | {
        "guardrails": rows,
        "srm": {
            "enabled": settings.srm.enabled,
            "mismatch": bool(ev.srm.mismatch),
            "pValue": _num(ev.srm.p_value),
            "observedShare": _num(ev.srm.observed_share),
            "expectedShare": _num(ev.srm.expected_share),
            "alpha": ev.srm.alpha,
            **_waiting(ev.srm.waiting),
        },
    }


def _arm(v: analysis_arms.ArmValues) -> dict[str, Any]:
    q = v.quantiles_ms()
    return {
        "requests": round(v.requests),
        "revenuePerRequest": _num(v.revenue_per_request),
        "errorRate": _num(v.error_rate),
        "latencyMs": {f"p{round(k * 100)}": _num(x) for k, x in q.items()},
    }


def arm_fields(
    ev: analysis.Evaluation,
    settings: frozen.FrozenSettings,
    steps: Sequence[analysis.StepWindow],
    windows: Sequence[win.Window],
) -> dict[str, Any]:
    """What each arm measured over the evaluated steps, in the metric's own unit.

    ``arms``: per arm, requests, revenue per request, error rate and p50/p95/p99 latency
    (ms, from the histograms), both arms pooled over the steps with the same weights
    (``analysis.arms.pooled``). ``guardrails``: per guardrail name, the metric it tests
    in each arm (``metric``, ``unit``, ``champion``, ``challenger``, and ``thresholdMs``
    for a tail). ``impact``: the revenue change per hour if the challenger took all the
    traffic, with the engine's recorded bounds: the revenue guardrail's relative estimate
    and bounds × the champion's revenue per request × the requests per hour observed over
    the evaluated windows (both arms). Empty when no step had requests in both arms.
    """
    empty: dict[str, Any] = {"arms": None, "guardrails": {}, "impact": None}
    both = analysis_arms.pooled([(s.champion, s.challenger) for s in steps])
    if both is None:
        return empty
    champion, challenger = both
    per_guardrail = {}
    for spec_g in guardrails_for(settings):
        gv = analysis_arms.guardrail_values(spec_g, champion, challenger)
        row: dict[str, Any] = {
            "metric": gv.metric,
            "unit": gv.unit,
            "champion": _num(gv.champion),
            "challenger": _num(gv.challenger),
        }
        if gv.threshold_ms is not None:
            row["thresholdMs"] = gv.threshold_ms
        per_guardrail[spec_g.name] = row
    return {
        "arms": {"champion": _arm(champion), "challenger": _arm(challenger)},
        "guardrails": per_guardrail,
        "impact": revenue_impact(ev, settings, champion, steps, windows),
    }


def revenue_impact(
    ev: analysis.Evaluation,
    settings: frozen.FrozenSettings,
    champion: analysis_arms.ArmValues,
    steps: Sequence[analysis.StepWindow],
    windows: Sequence[win.Window],
) -> dict[str, Any] | None:
    """Revenue change per hour at full traffic, with bounds (see :func:`arm_fields`).

    None without a revenue mean guardrail, without an estimate yet, or without a measured
    duration. An absolute-scale margin's estimate is already per request.
    """
    seconds = sum((end - start).total_seconds() for _, start, end, _ in windows)
    requests = sum(s.champion.n + s.challenger.n for s in steps)
    rpr = champion.revenue_per_request
    if seconds <= 0 or not requests or not math.isfinite(rpr):
        return None
    per_hour = requests / seconds * 3600
    for g in ev.guardrails:
        test = settings.guardrail(g.name)
        if test.kind is not spec.GuardrailKind.MEAN or not math.isfinite(g.estimate):
            continue
        per_request = rpr if test.scale is frozen.Scale.RELATIVE else 1.0

        def hourly(x: float, per_request: float = per_request) -> float | None:
            return _num(x * per_request * per_hour)

        return {
            "guardrail": g.name,
            "revenuePerHour": hourly(g.estimate),
            "lower": hourly(g.lower),
            "upper": hourly(g.upper),
            "requestsPerHour": _num(per_hour),
            "championRevenuePerRequest": _num(rpr),
        }
    return None


def evidence(
    ev: analysis.Evaluation,
    steps: Sequence[win.Window],
    settings: frozen.FrozenSettings,
    step_stats: Sequence[analysis.StepWindow] = (),
    fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The statistics a decision was based on, for the decision log (``fields``: the
    ``status_fields`` of the same arguments, when already computed)."""
    return {
        "verdict": ev.verdict.value,
        "reasonCode": ev.reason_code.value,
        **(status_fields(ev, settings, step_stats, steps) if fields is None else fields),
        "steps": [
            {
                "index": r.index,
                "weight": r.weight,
                "share": r.share,
                "start": s.isoformat(),
                "end": e.isoformat(),
                "closed": c,
            }
            for r, s, e, c in steps
        ],
    }


def quantile_from_hist(hist: np.ndarray, q: float) -> float:
    """Upper edge (ms) of the histogram bucket holding the ``q`` quantile."""
    total = int(hist.sum())
    if total == 0:
        raise ValueError("hist: no latency data")
    index = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    edges = analysis.LATENCY_EDGES_MS
    return float(edges[min(index, len(edges) - 1)])


def derived_threshold(hist: np.ndarray, quantile: float, margin: float) -> float:
    """The smallest histogram edge ≥ (1 + margin) × the champion's ``quantile`` latency."""
    target = (1 + margin) * quantile_from_hist(hist, quantile)
    edges = analysis.LATENCY_EDGES_MS
    return float(edges[min(int(np.searchsorted(edges, target, side="left")), len(edges) - 1)])


# ----------------------------------------------------------------------------- the input


@dataclass
class Pending:
    """An analysis gathered for the batch: its input and what to persist afterwards."""

    item: analysis.BatchItem
    exp_id: int
    history: list[win.StepRecord]
    windows: list[win.Window]
    settings: frozen.FrozenSettings


@dataclass
class Input:
    """What the store says for this tick: counts of the current step, baseline, analysis input."""

    samples: obs.ArmCounts
    baseline: obs.BaselineResult | None = None
    pending: Pending | None = None


_ANALYSED = (obs.Phase.PROGRESSING, obs.Phase.PAUSED, obs.Phase.AWAITING_PROMOTION)


def in_force(s: spec.ExperimentSpec, stored: obs.StoredStatus) -> spec.Analysis:
    """The analysis settings in force: the frozen ones once Progressing began."""
    return stored.frozen.analysis if stored.frozen else s.analysis


@dataclass
class Planned:
    """An analysis input whose windows are known but not read yet (``complete_input``)."""

    exp_id: int
    samples_index: int  # the current step's index: its window gives the tick's counts
    baseline: obs.BaselineResult | None
    history: list[win.StepRecord]
    windows: list[win.Window]
    settings: frozen.FrozenSettings
    previous: dict[str, Any] | None  # the persisted sequential state


def read_input(
    conn: sa.Connection,
    exp_id: int,
    s: spec.ExperimentSpec,
    stored: obs.StoredStatus,
    route: routers.RouteState | None,
    persisted: Mapping[str, Any],
    now: datetime,
    last_consistent: datetime | None = None,
) -> Input:
    """Baseline values and the analysis input of this tick (``persisted``: the saved state)."""
    planned = plan_input(conn, exp_id, s, stored, route, persisted, now, last_consistent)
    if isinstance(planned, Input):
        return planned
    totals = [
        rollups.window_totals(conn, exp_id, start, end) for _, start, end, _ in planned.windows
    ]
    return complete_input(planned, totals)


def plan_input(
    conn: sa.Connection,
    exp_id: int,
    s: spec.ExperimentSpec,
    stored: obs.StoredStatus,
    route: routers.RouteState | None,
    persisted: Mapping[str, Any],
    now: datetime,
    last_consistent: datetime | None = None,
) -> Input | Planned:
    """``read_input`` up to the windows: the whole input when there is nothing to analyse,
    else the windows whose totals ``complete_input`` takes (read one by one or for a pass)."""
    frozen_analysis = in_force(s, stored)
    final_until = win.watermark(now, frozen_analysis.allowed_lateness)
    baseline = None
    if (
        stored.phase is obs.Phase.BASELINE
        and s.analysis.baseline is not None
        and stored.phase_started_at
    ):
        baseline = _baseline(conn, exp_id, s.analysis, stored.phase_started_at, final_until)
    if stored.phase not in _ANALYSED or stored.frozen is None or stored.step_started_at is None:
        return Input(obs.ArmCounts(), baseline)
    history = [win.StepRecord.from_dict(d) for d in persisted.get("steps", [])]
    weight = s.steps[stored.step_index].weight if stored.step_index < len(s.steps) else 0
    evaluated = persisted.get("evaluatedUntil")
    cut = win.cut_at(
        route_weight=None if route is None else route.challenger_weight,
        step_weight=weight,
        evaluated_until=datetime.fromisoformat(evaluated) if evaluated else None,
        last_consistent=last_consistent,
        step_started_at=stored.step_started_at,
    )
    history = win.update_history(
        history,
        step_index=stored.step_index,
        step_started_at=stored.step_started_at,
        weight=weight,
        share=route.challenger_share if route is not None else weight / 100,
        now=now,
        cut=cut,
    )
    windows = win.windows(history, final_until)
    if not windows:
        return Input(obs.ArmCounts(), baseline)
    return Planned(
        exp_id,
        stored.step_index,
        baseline,
        history,
        windows,
        stored.frozen,
        persisted.get("analysis"),
    )


def complete_input(planned: Planned, totals: Sequence[Mapping[str, rollups.ArmTotals]]) -> Input:
    """The analysis input from the planned windows' totals (one per window, in order)."""
    steps = []
    current = obs.ArmCounts()
    for (record, _, _, closed), t in zip(planned.windows, totals, strict=True):
        steps.append(
            analysis.StepWindow(
                weight_challenger=record.share,
                champion=arm_stats(t["champion"]),
                challenger=arm_stats(t["challenger"]),
                design_weight_challenger=record.weight / 100,
                closed=closed,
            )
        )
        if record.index == planned.samples_index:
            current = obs.ArmCounts(t["champion"].n, t["challenger"].n)
    previous = planned.previous
    item = analysis.BatchItem(
        settings_for(planned.settings),
        guardrails_for(planned.settings),
        steps,
        analysis.AnalysisState.from_dict(previous) if previous else analysis.AnalysisState(),
    )
    return Input(
        current,
        planned.baseline,
        Pending(item, planned.exp_id, planned.history, planned.windows, planned.settings),
    )


def _baseline(
    conn: sa.Connection,
    exp_id: int,
    a: spec.Analysis,
    started: datetime,
    final_until: datetime,
) -> obs.BaselineResult | None:
    """The champion's derived cap and thresholds once the baseline period is final."""
    assert a.baseline is not None
    start = win.ceil_minute(started)
    end = start + a.baseline.duration
    if final_until < end:
        return None
    cap = None
    if a.revenue_cap is not None and a.revenue_cap.from_baseline is not None:
        q = rollups.revenue_quantile(
            conn, exp_id, "champion", start, end, a.revenue_cap.from_baseline.quantile
        )
        cap = q if q is not None and q > 0 else None
    thresholds: dict[str, float] = {}
    tails = [
        g for g in a.guardrails if isinstance(g, spec.TailGuardrail) and g.threshold_from_baseline
    ]
    if tails:
        hist = rollups.window_totals(conn, exp_id, start, end)["champion"].latency_hist
        if hist.sum() > 0:
            for g in tails:
                fb = g.threshold_from_baseline
                assert fb is not None
                thresholds[g.name] = derived_threshold(hist, fb.quantile, fb.margin)
    return obs.BaselineResult(revenue_cap=cap, thresholds_ms=thresholds)


Save = tuple[int, dict[str, Any], dict[str, Any]]


def to_save(
    pending: Pending,
    evaluation: analysis.Evaluation,
    *,
    now: datetime,
    step_index: int,
    challenger_weight: int,
    samples: obs.ArmCounts,
    summary: obs.Verdicts | None = None,
) -> Save:
    """What ``save_many`` writes for one experiment: its id, its sequential state with the
    step history, and this look.

    ``summary``: ``summarise`` of this evaluation, whose evidence is the look's payload
    when no figure was rescaled for the status (else it is computed here, unscaled)."""
    until = max(w[2] for w in pending.windows)
    state = {
        "analysis": evaluation.state.to_dict(),
        "steps": [r.to_dict() for r in pending.history],
        "evaluatedUntil": until.isoformat(),
    }
    look = {
        "evaluated_until": until,
        "at": now,
        "step_index": step_index,
        "challenger_weight": challenger_weight,
        "verdict": evaluation.verdict.value,
        "payload": (
            dict(summary.evidence)
            if summary is not None and on_spec_scale(evaluation, pending.settings) is evaluation
            else evidence(evaluation, pending.windows, pending.settings, pending.item.steps)
        )
        | {"samples": {"champion": samples.champion, "challenger": samples.challenger}},
    }
    return pending.exp_id, state, look


def save_many(engine: sa.Engine, saves: Sequence[Save]) -> None:
    """Persist several experiments' states and looks (``to_save``) in one transaction."""
    if not saves:
        return
    with engine.begin() as conn:
        looks.save_analysis_states(conn, saves)
