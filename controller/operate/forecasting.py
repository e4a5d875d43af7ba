"""The decision forecast as the controller uses it: inputs from specs and rollups, words out.

Between ``analysis.forecast`` (the one forecast, pure statistics) and its three readers:
``canaryctl plan`` and ``canaryctl start`` (from a spec or flags and a traffic figure) and
the operator (from the frozen settings and the champion's observed rollups, at each step
start). It maps the Experiment's steps, settings and guardrails to the engine's inputs,
the observed champion totals to a ``Traffic``, and a ``Forecast`` to the status document
(``status.forecast``), the ``DecisionForecast`` condition and the one-line advice that names
the blocking guardrail and its fix. No I/O, no clock: callers pass what they read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import analysis
from analysis import forecast as fc
from controller.decide import observed as obs
from controller.experiment import frozen, spec
from controller.operate import evaluate
from controller.storage import rollups

#: A stand-in threshold for tail guardrails whose threshold comes from a baseline not yet
#: measured: the forecast reads only the tail share at the threshold, never the value.
_STAND_IN_THRESHOLD_MS = 1000.0
#: The operator waits for this many champion requests before forecasting from them.
MIN_CHAMPION_REQUESTS = 1000
#: Paths of the operator's forecast: fewer than the CLI's 200, so that a step start costs
#: its tick about a second more with a look every interval over a day; the probabilities
#: are then good to about ±6 points.
OPERATOR_PATHS = 60

REASON_LIKELY = "PromotionLikely"
REASON_UNLIKELY = "PromotionUnlikely"


def ramp(steps: Sequence[spec.Step]) -> list[fc.RampStep]:
    """The Experiment's steps as the forecast reads them (percent weights to shares)."""
    return [
        fc.RampStep(s.weight / 100, s.min_duration.total_seconds() / 60, s.min_samples)
        for s in steps
    ]


def engine_inputs(
    settings: frozen.FrozenSettings,
) -> tuple[analysis.AnalysisSettings, list[analysis.GuardrailSpec]]:
    """The engine's settings and guardrails from frozen settings (what the operator tests)."""
    return evaluate.settings_for(settings), evaluate.guardrails_for(settings)


def spec_inputs(
    s: spec.ExperimentSpec, at: datetime
) -> tuple[analysis.AnalysisSettings, list[analysis.GuardrailSpec]]:
    """The same from a spec not started yet (thresholds from a baseline get a stand-in)."""
    thresholds = {
        g.name: _STAND_IN_THRESHOLD_MS
        for g in s.analysis.guardrails
        if isinstance(g, spec.TailGuardrail) and g.threshold_ms is None
    }
    return engine_inputs(frozen.freeze(s, at, derived_cap=1.0, derived_thresholds_ms=thresholds))


def traffic_from(
    champion: analysis.ArmStats,
    requests: int,
    minutes: float,
    guardrails: Sequence[analysis.GuardrailSpec],
) -> fc.Traffic | None:
    """The traffic and the champion's moments from observed totals (None: too little data).

    ``requests`` counts both arms over ``minutes``; the moments are the champion's only
    (the challenger's are what the test is about).
    """
    n = champion.n
    if n < MIN_CHAMPION_REQUESTS or not minutes > 0 or requests <= 0:
        return None
    mean = champion.revenue.mean
    sd = math.sqrt(max(champion.revenue.variance, 0.0))
    nonzero = champion.revenue_nonzero / n
    tails = {
        g.name: min(max(champion.slower_than(g.edge_index) / n, 0.5 / n), 0.5)
        for g in guardrails
        if g.kind == analysis.GuardrailKind.TAIL
    }
    ll_sd = math.sqrt(max(champion.log_latency.variance, 0.0))
    try:
        return fc.Traffic(
            requests_per_minute=requests / minutes,
            revenue_mean=mean if mean > 0 else fc.Traffic.revenue_mean,
            revenue_sd=sd if sd > 0 and mean > 0 else fc.Traffic.revenue_sd,
            revenue_nonzero=nonzero if mean > 0 and nonzero > 0 else fc.Traffic.revenue_nonzero,
            error_rate=min(champion.errors / n, 0.5),
            tail_share=tails or 0.01,
            log_latency_mean=champion.log_latency.mean,
            log_latency_sd=ll_sd if ll_sd > 0 else fc.Traffic.log_latency_sd,
        )
    except ValueError:
        return None


def schedule_from(
    hours: Sequence[tuple[analysis.ArmStats, int, float]],
    guardrails: Sequence[analysis.GuardrailSpec],
) -> fc.Schedule | None:
    """A day's traffic hour by hour from observed totals (None: an hour has too little data).

    ``hours``: per hour from the run's start, the champion's totals, the requests of both
    arms and the minutes they cover (``rollups.champion_day_totals``).
    """
    periods = [traffic_from(c, n, m, guardrails) for c, n, m in hours]
    if not periods or any(p is None for p in periods):
        return None
    return fc.Schedule(tuple(p for p in periods if p is not None), period_minutes=60.0)


def day_schedule(
    day: Sequence[tuple[Mapping[str, rollups.ArmTotals], float]] | None,
    guardrails: Sequence[analysis.GuardrailSpec],
) -> fc.Schedule | None:
    """:func:`schedule_from` on ``rollups.champion_day_totals``' hours (None stays None)."""
    if day is None:
        return None
    return schedule_from(
        [
            (evaluate.arm_stats(t["champion"]), sum(a.n for a in t.values()), minutes)
            for t, minutes in day
        ],
        guardrails,
    )


def run(
    settings: analysis.AnalysisSettings,
    guardrails: Sequence[analysis.GuardrailSpec],
    steps: Sequence[fc.RampStep],
    max_duration: timedelta,
    traffic: fc.Traffic | fc.Schedule,
    effect: fc.Effect | None = None,
    *,
    fixes: bool = True,
    paths: int = fc.DEFAULT_PATHS,
    interval: timedelta = timedelta(minutes=1),
) -> fc.Forecast:
    """``analysis.forecast.forecast`` with maxDuration as a duration, looking every ``interval``
    (the experiment's ``spec.analysis.interval``, as the operator does)."""
    return fc.forecast(
        settings,
        guardrails,
        steps,
        max_duration.total_seconds() / 60,
        traffic,
        effect,
        fixes=fixes,
        paths=paths,
        look_minutes=interval.total_seconds() / 60,
    )


def duration(minutes: float) -> str:
    """Minutes as a Go-style duration, rounded to the minute; "never" when infinite."""
    if not math.isfinite(minutes):
        return "never"
    return spec.format_duration(timedelta(minutes=round(minutes)))


def limit(g: analysis.GuardrailSpec, value: float | None = None) -> str:
    """A guardrail's margin (or κ) as people read it: "margin 2 %", "κ 1.2"."""
    if g.kind == analysis.GuardrailKind.MEAN:
        v = g.margin if value is None else value
        if g.metric == analysis.MeanMetric.LOG_LATENCY and not g.relative:
            # A latency guardrail: the log-scale margin back as the tolerated slowdown.
            return f"margin {100 * math.expm1(v):.3g} % slower"
        return f"margin {100 * v:.3g} %" if g.relative else f"margin {v:.4g}"
    return f"κ {g.kappa if value is None else value:.3g}"


def kind(g: analysis.GuardrailSpec) -> str:
    """A guardrail's kind as the Experiment names it (``latency``: the mean of log latency)."""
    if g.kind == analysis.GuardrailKind.MEAN and g.metric == analysis.MeanMetric.LOG_LATENCY:
        return "latency"
    return g.kind.value


def advice(f: fc.Forecast, guardrails: Sequence[analysis.GuardrailSpec]) -> str:
    """One line: how likely promotion is before maxDuration; if unlikely, what blocks and fixes."""
    p = f.promotion
    head = (
        f"a healthy challenger is promoted before maxDuration {duration(f.max_minutes)} "
        f"with probability {100 * p.probability:.0f} % (median {duration(p.median)})"
    )
    if f.blocking is None:
        return head
    g = next(x for x in guardrails if x.name == f.blocking)
    fixes = []
    if f.fix.margin is not None:
        fixes.append(limit(g, f.fix.margin))
    if f.fix.max_minutes is not None:
        fixes.append(f"maxDuration {duration(f.fix.max_minutes)}")
    if f.fix.requests_per_minute is not None:
        fixes.append(f"{f.fix.requests_per_minute:,.0f} requests/min")
    alone = f.passing[f.blocking].probability
    fix = (
        f"; {int(100 * fc.LIKELY)} % likely with {' or '.join(fixes)}"
        if fixes
        else "; no margin, duration or traffic searched makes it likely"
    )
    return (
        f"{head}: guardrail {f.blocking} ({limit(g)}) blocks, non-inferior by then "
        f"in {100 * alone:.0f} % of runs{fix}"
    )


def _times(t: fc.Times) -> dict[str, Any]:
    return {
        "median": duration(t.median),
        "p90": duration(t.p90),
        "probability": round(t.probability, 4),
    }


def document(
    f: fc.Forecast,
    guardrails: Sequence[analysis.GuardrailSpec],
    traffic: fc.Traffic | fc.Schedule,
    *,
    harm: bool = False,
) -> dict[str, Any]:
    """The forecast as data: ``status.forecast`` and ``-o json|yaml`` (durations Go-style)."""
    out: dict[str, Any] = {
        "likely": f.likely,
        "requestsPerMinute": round(traffic.requests_per_minute, 1),
        "trafficPeriods": len(traffic.periods) if isinstance(traffic, fc.Schedule) else 1,
        "stepsEnd": duration(f.steps_minutes),
        "maxDuration": duration(f.max_minutes),
        "promotion": _times(f.promotion),
        "guardrails": [
            {"name": g.name, "kind": kind(g), "limit": limit(g), **_times(f.passing[g.name])}
            for g in guardrails
        ],
        "falseRollback": round(f.false_rollback, 4),
        "blocking": f.blocking,
        "advice": advice(f, guardrails),
        "paths": f.paths,
        "seed": f.seed,
    }
    if f.blocking is not None:
        out["fix"] = {
            "margin": f.fix.margin,
            "maxDuration": None if f.fix.max_minutes is None else duration(f.fix.max_minutes),
            "requestsPerMinute": None
            if f.fix.requests_per_minute is None
            else round(f.fix.requests_per_minute),
        }
    if harm:
        out["failure"] = _times(f.failure)
        out["failing"] = {name: _times(t) for name, t in f.failing.items()}
    return out


def note(
    f: fc.Forecast,
    guardrails: Sequence[analysis.GuardrailSpec],
    traffic: fc.Traffic | fc.Schedule,
    step_index: int,
) -> obs.ForecastNote:
    """What reconcile records: the condition and ``status.forecast`` for this step."""
    doc = {"stepIndex": step_index, **document(f, guardrails, traffic)}
    return obs.ForecastNote(
        likely=f.likely,
        reason=REASON_LIKELY if f.likely else REASON_UNLIKELY,
        message=advice(f, guardrails),
        document=doc,
    )


def observed_traffic(
    steps: Sequence[analysis.StepWindow], minutes: Sequence[float], g: list[analysis.GuardrailSpec]
) -> fc.Traffic | None:
    """The traffic of the windows analysed so far (champion moments over all of them)."""
    if not steps:
        return None
    champion = steps[0].champion
    for s in steps[1:]:
        champion = champion + s.champion
    requests = sum(s.champion.n + s.challenger.n for s in steps)
    return traffic_from(champion, requests, float(sum(minutes)), g)


def for_tick(
    pending: evaluate.Pending,
    s: spec.ExperimentSpec,
    step_index: int,
    day: Sequence[tuple[Mapping[str, rollups.ArmTotals], float]] | None = None,
    *,
    allowed: Callable[[], bool] = lambda: True,
) -> obs.ForecastNote | None:
    """The operator's forecast at a step start, from the champion's day or the run so far.

    ``day``: the champion's traffic hour by hour from the run's first step, at the same
    hours of an earlier day (``rollups.champion_day_totals``); without it (or with an hour
    of too little data), the traffic of the windows analysed so far, constant. None when
    neither is there (without a day, while the champion has fewer than
    ``MIN_CHAMPION_REQUESTS`` requests in the run), or when ``allowed()``
    (asked once it has them) says no: the forecast costs its tick a fraction of a second,
    so a pass runs only so many. It is the forecast of a run from the start (it does not
    condition on the test statistics so far: those are in ``status.guardrails``).
    """
    settings, guardrails = engine_inputs(pending.settings)
    traffic: fc.Traffic | fc.Schedule | None = day_schedule(day, guardrails)
    if traffic is None:
        if sum(w.champion.n for w in pending.item.steps) < MIN_CHAMPION_REQUESTS:
            return None
        minutes = [(end - start).total_seconds() / 60 for _, start, end, _ in pending.windows]
        traffic = observed_traffic(pending.item.steps, minutes, guardrails)
    if traffic is None or not allowed():
        return None
    f = run(
        settings,
        guardrails,
        ramp(s.steps),
        s.max_duration,
        traffic,
        paths=OPERATOR_PATHS,
        interval=pending.settings.analysis.interval,
    )
    return note(f, guardrails, traffic, step_index)


def stored_step(raw_status: Mapping[str, Any]) -> int | None:
    """The step index ``status.forecast`` was computed at (None when there is none)."""
    doc = raw_status.get("forecast")
    return doc.get("stepIndex") if isinstance(doc, Mapping) else None


def with_traffic(t: fc.Traffic, requests_per_minute: float) -> fc.Traffic:
    """``t`` at another total traffic."""
    return replace(t, requests_per_minute=requests_per_minute)
