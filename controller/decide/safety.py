"""Reconcile's precedence 4–6: roll back at once, roll back after a grace period, or hold.

4. a guardrail FAIL or a sample-ratio mismatch (phases where the challenger has traffic);
5. the maximum duration reached without PASS (reason ``inconclusive``), or, opted in by
   ``spec.analysis.onInconclusive: promote``, a promotion with reason ``no_harm_found``
   that records the largest harm each guardrail could not exclude;
6. the route missing or owned by another Experiment: hold (a queued experiment waits
   for the route; only ``maxDuration`` ends the wait); the database unreachable, data
   missing, analysis unavailable or the challenger not ready: hold the current weight,
   and roll back once the condition lasted its grace period.

``check`` returns the rollback plan, or None with the holding conditions added to the
tick (``tick.holds`` names them for the stepping that follows); every hold is a
condition of ``observed.HOLDS``, set False with a reason and a message (and a Warning
event) while it holds and True once its cause has gone (``Tick.settle_holds`` clears
them when the experiment finishes). Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import timedelta

from controller.decide import actions as p
from controller.decide import observed as obs
from controller.decide.tick import Tick
from controller.experiment import spec

ACTIVE = (obs.Phase.PROGRESSING, obs.Phase.PAUSED, obs.Phase.AWAITING_PROMOTION)
_ROLLED_BACK = obs.Phase.ROLLED_BACK
_HOLDS = obs.HOLDS


def _fmt(d: timedelta) -> str:
    return spec.format_duration(d)


def _hold_or_clear(
    tick: Tick,
    type_: obs.ConditionType,
    *,
    ok: bool,
    grace: timedelta,
    failed: str,
    holding: tuple[str, str],
    fine: tuple[str, str],
) -> p.Plan | None:
    """One holding condition: when not ``ok``, hold (and roll back once it lasted ``grace``)."""
    if ok:
        tick.condition(type_, True, *fine)
        return None
    code = _HOLDS[type_]
    if tick.now - tick.false_since(type_) >= grace:
        return tick.end(_ROLLED_BACK, code, failed.format(_fmt(grace)))
    _hold(tick, type_, holding[0], holding[1].format(_fmt(grace)))
    return None


def _hold(tick: Tick, type_: obs.ConditionType, reason: str, message: str) -> None:
    """Hold with no grace period: the condition False, its code in ``tick.holds``."""
    tick.condition(type_, False, reason, message)
    tick.holds.append(_HOLDS[type_])


def _route(tick: Tick) -> bool:
    """The route found and this Experiment's (or free): True, else a hold (no grace)."""
    r, ct = tick.observed.router, obs.ConditionType
    if r.missing is not None:
        reason, message = r.missing
        _hold(tick, ct.ROUTE_FOUND, reason, f"holding; {message}")
        return False
    tick.condition(ct.ROUTE_FOUND, True, "Found", f"{r.route} found")
    if r.other_owner is not None:
        message = f"holding; {r.route} is owned by {r.other_owner}; waiting until it finishes"
        _hold(tick, ct.ROUTE_AVAILABLE, "OwnedByAnotherExperiment", message)
        return False
    tick.condition(ct.ROUTE_AVAILABLE, True, "Available", f"{r.route} is free or this experiment's")
    return True


def _verdicts(tick: Tick, s: spec.ExperimentSpec, a: spec.Analysis) -> p.Plan | None:
    """Steps 4–5: a failed analysis, or the maximum duration reached without PASS."""
    v = tick.verdicts
    if v is not None and tick.status.phase in ACTIVE:
        if v.failed:
            g = v.failed[0]
            why = g.reason.removeprefix(f"{g.name}: ")  # the engine's reason names it too
            return tick.end(
                _ROLLED_BACK, f"guardrail_failed:{g.name}", f"guardrail {g.name} failed: {why}"
            )
        if a.srm_enabled and v.srm_mismatch:
            return tick.end(
                _ROLLED_BACK,
                "srm",
                v.srm_reason
                or "sample-ratio mismatch: the traffic split is not what the router set",
            )
        if v.overall is obs.Verdict.FAIL:
            return tick.end(_ROLLED_BACK, "analysis_failed", "the analysis reported FAIL")
    start = tick.status.started_at or tick.observed.created_at
    if tick.now - start >= s.max_duration and not (v is not None and v.all_pass):
        if _no_harm_found(tick, s, a):
            return _promote_no_harm(tick, s)
        return tick.end(
            _ROLLED_BACK,
            "inconclusive",
            f"maxDuration {_fmt(s.max_duration)} reached without PASS on every guardrail",
        )
    return None


def _no_harm_found(tick: Tick, s: spec.ExperimentSpec, a: spec.Analysis) -> bool:
    """The opt-in applies: last step reached, burn-in met, analysis ran, no guardrail failed."""
    v = tick.verdicts
    return (
        a.on_inconclusive is spec.InconclusivePolicy.PROMOTE
        and v is not None
        and v.burn_in_met
        and not v.failed
        and v.overall is not obs.Verdict.FAIL
        and tick.status.phase in (obs.Phase.PROGRESSING, obs.Phase.AWAITING_PROMOTION)
        and tick.status.step_index >= len(s.steps) - 1
    )


def format_bound(x: float | None, scale: str) -> str:
    """A bound on a guardrail's scale, as people read it (−3.10 %, ×1.31, +0.02)."""
    if x is None:
        return "unknown"
    if scale == spec.Scale.RELATIVE.value:
        return f"{100 * x:+.2f} %"
    if scale == spec.Scale.RATIO.value:
        return f"×{x:.3g}"
    return f"{x:+.4g}"


def _promote_no_harm(tick: Tick, s: spec.ExperimentSpec) -> p.Plan:
    """maxDuration without PASS, no FAIL, opted in: promote, saying what was not shown."""
    v = tick.verdicts
    assert v is not None
    bounds = [
        {
            "name": g.name,
            "verdict": g.verdict.value,
            "scale": g.scale,
            "largestHarmNotExcluded": g.harm_bound,
            "marginLine": g.margin_line,
        }
        for g in v.guardrails
    ]
    open_ = [g for g in v.guardrails if g.verdict is not obs.Verdict.PASS]
    parts = "; ".join(
        f"{g.name}: harm up to {format_bound(g.harm_bound, g.scale)} not excluded "
        f"(margin {format_bound(g.margin_line, g.scale)})"
        for g in open_
    )
    message = (
        f"maxDuration {_fmt(s.max_duration)} reached with no guardrail failed; promoted by "
        f"spec.analysis.onInconclusive=promote. No harm found, non-inferiority NOT shown: {parts}"
    )
    return tick.end(obs.Phase.PROMOTED, "no_harm_found", message, evidence={"noHarmFound": bounds})


def _data_fresh(tick: Tick, a: spec.Analysis, grace: timedelta) -> p.Plan | None:
    """Data newer than lateness + interval, or a hold; a rollback after ``grace`` more."""
    now = tick.now
    stale_after = a.allowed_lateness + a.interval
    last = tick.observed.last_data_at or tick.status.started_at or now
    age = now - last
    if age > stale_after + grace:
        return tick.end(
            _ROLLED_BACK, _HOLDS[obs.ConditionType.DATA_FRESH], f"no new data for {_fmt(age)}"
        )
    if age > stale_after:
        tick.condition(
            obs.ConditionType.DATA_FRESH,
            False,
            "NoData",
            f"holding; no data newer than {_fmt(stale_after)}; rolling back after {_fmt(grace)} more",
        )
        tick.holds.append(_HOLDS[obs.ConditionType.DATA_FRESH])
    else:
        tick.condition(obs.ConditionType.DATA_FRESH, True, "Fresh", "data is arriving")
    return None


def check(tick: Tick, s: spec.ExperimentSpec, a: spec.Analysis) -> p.Plan | None:
    """Steps 4–6 in order; the first rollback ends the tick."""
    ended = _verdicts(tick, s, a)
    if ended is not None:
        return ended
    phase, o = tick.status.phase, tick.observed
    policy = s.failure_policy
    ct = obs.ConditionType
    route_ok = _route(tick)
    ended = _hold_or_clear(
        tick,
        ct.DATABASE_REACHABLE,
        ok=o.database_reachable,
        grace=policy.database_unreachable_grace,
        failed="the database has been unreachable for {}",
        holding=(
            "DatabaseUnreachable",
            "holding; rolling back if the database is unreachable for {}",
        ),
        fine=("Reachable", "the database answers"),
    )
    if ended is None and o.database_reachable and (phase in ACTIVE or phase is obs.Phase.BASELINE):
        ended = _data_fresh(tick, a, policy.missing_data_grace)
    if ended is None and o.database_reachable and phase in ACTIVE:
        ended = _hold_or_clear(
            tick,
            ct.ANALYSIS_AVAILABLE,
            ok=tick.verdicts is not None,
            grace=policy.missing_data_grace,
            failed="no analysis result for {}",
            holding=(
                "AnalysisUnavailable",
                "holding; rolling back if the analysis cannot run for {}",
            ),
            fine=("Available", "the analysis ran"),
        )
    if ended is None and route_ok:  # a route missing or taken says nothing of the challenger
        ended = _hold_or_clear(
            tick,
            ct.CHALLENGER_READY,
            ok=o.router.challenger_ready,
            grace=policy.challenger_not_ready_grace,
            failed="the challenger has not been ready for {}",
            holding=(
                "ChallengerNotReady",
                "holding; rolling back if the challenger is not ready for {}",
            ),
            fine=("Ready", "the challenger's pods are ready"),
        )
    return ended
