"""Reconcile's precedence 7–8: people's requests (promote, pause, resume), then stepping.

Stepping by phase: Pending enters the baseline or starts step 1 (freezing the analysis
settings); Baseline waits for its values; Progressing holds the step's weight, advances,
promotes or awaits promotion; Paused and AwaitingPromotion hold the current weight. The
weight is never raised while a condition holds it (``tick.holds``). Pure: no I/O, no
clock.
"""

from __future__ import annotations

from datetime import timedelta

from controller.decide import actions as p
from controller.decide import manual
from controller.decide import observed as obs
from controller.decide.tick import Tick
from controller.experiment import frozen, spec

#: Holds under which the route is not claimed for a baseline (it is missing, taken, or the
#: decision could not be recorded).
_NO_CLAIM = {
    obs.HOLDS[obs.ConditionType.ROUTE_FOUND],
    obs.HOLDS[obs.ConditionType.ROUTE_AVAILABLE],
    obs.HOLDS[obs.ConditionType.DATABASE_REACHABLE],
}


def manual_request(tick: Tick, req: manual.ManualRequest, requeue: timedelta) -> p.Plan | None:
    """Step 7: act on promote, pause or resume; the plan when this tick is complete."""
    phase = tick.status.phase
    A = manual.RequestAction
    who = f"{req.actor}: {req.reason}" if req.reason else req.actor
    why = manual.refusal(req.action, full=req.full, phase=phase.value, holds=tuple(tick.holds))
    if why is not None:
        tick.reject(req.id, req.actor, req.action.value, why)
        return None
    if req.action is A.PROMOTE:
        code = (
            "manual_promote_full" if phase is not obs.Phase.AWAITING_PROMOTION else "manual_promote"
        )
        return tick.end(
            obs.Phase.PROMOTED,
            code,
            f"promotion requested by {who}",
            actor=req.actor,
            request=req,
        )
    transitions = {
        (A.PAUSE, obs.Phase.PROGRESSING): (obs.Phase.PAUSED, p.DecisionKind.PAUSE, "Paused"),
        (A.RESUME, obs.Phase.PAUSED): (obs.Phase.PROGRESSING, p.DecisionKind.RESUME, "Resumed"),
    }
    new_phase, kind, reason = transitions[(req.action, phase)]
    code = f"manual_{req.action.value}"
    message = f"{req.action.value} requested by {who}"
    tick.add(
        p.SetPhase(new_phase, code, message, tick.now),
        tick.record(kind, code, message, req.actor, tick.evidence(), key=f"request:{req.id}"),
        p.EmitEvent(p.EventType.NORMAL, reason, message),
        p.MarkRequestHandled(req.id),
    )
    return tick.plan(requeue)


def _keep_weight(tick: Tick, target: int) -> bool:
    """Bring the route to ``target`` (never up while holding); True when it is there."""
    current = tick.observed.router.challenger_weight
    if current == target:
        return True
    if current > target or not tick.holds:
        tick.add(p.SetWeight(target))
    return False


def _start(tick: Tick, s: spec.ExperimentSpec) -> None:
    first = s.steps[0]
    baseline = tick.observed.baseline
    settings = frozen.freeze(
        s,
        tick.now,
        derived_cap=None if baseline is None else baseline.revenue_cap,
        derived_thresholds_ms=None if baseline is None else baseline.thresholds_ms,
    )
    message = f"step 1/{len(s.steps)}: challenger at {first.weight} %"
    tick.add(
        p.FreezeSettings(settings),
        p.SetWeight(first.weight),
        p.SetStep(0, f"1/{len(s.steps)}", tick.now),
        p.SetPhase(
            obs.Phase.PROGRESSING,
            "started",
            message,
            tick.now,
            started_at=tick.now if tick.status.started_at is None else None,
        ),
        tick.record(
            p.DecisionKind.START,
            "started",
            message,
            evidence={"settings": frozen.to_json(settings)},
            key="start",
        ),
        p.EmitEvent(p.EventType.NORMAL, "Started", message),
    )


def _step(tick: Tick, s: spec.ExperimentSpec) -> p.Plan | None:
    """Progressing: hold the step's weight, advance, promote (the plan) or await promotion."""
    st, o, v = tick.status, tick.observed, tick.verdicts
    i = min(st.step_index, len(s.steps) - 1)
    step = s.steps[i]
    # The route already at the weight this step's transition sets, while the status still
    # says this step: a tick wrote the route and died before recording it. Decide the
    # transition again without moving the route back and forth; go back only if it no
    # longer holds.
    ahead = s.steps[i + 1].weight if i + 1 < len(s.steps) else 100
    resumed = o.router.challenger_weight == ahead != step.weight

    def not_now() -> p.Plan | None:
        """Not this tick: a resumed transition's route goes back to the step's weight."""
        if resumed:
            tick.add(p.SetWeight(step.weight))
        return None

    if not resumed and (not _keep_weight(tick, step.weight) or tick.holds):
        return None
    if resumed and tick.holds:
        return not_now()
    elapsed = tick.now - (st.step_started_at or tick.now)
    if elapsed < step.min_duration or o.samples.smaller < step.min_samples:
        return not_now()
    if i + 1 < len(s.steps):
        nxt = s.steps[i + 1]
        message = f"step {i + 2}/{len(s.steps)}: challenger at {nxt.weight} %"
        tick.add(
            p.SetWeight(nxt.weight),
            p.SetStep(i + 1, f"{i + 2}/{len(s.steps)}", tick.now, "step_complete", message),
            tick.record(
                p.DecisionKind.ADVANCE,
                "step_complete",
                message,
                evidence=tick.evidence(),
                key=f"advance:{i + 1}",
            ),
            p.EmitEvent(p.EventType.NORMAL, "StepAdvanced", message),
        )
        return None
    if v is None or not v.all_pass or (resumed and s.promotion is not spec.PromotionMode.AUTOMATIC):
        return not_now()
    if s.promotion is spec.PromotionMode.AUTOMATIC:
        return tick.end(
            obs.Phase.PROMOTED, "promoted", "every guardrail passed after the last step"
        )
    message = "every guardrail passed; waiting for a manual promote"
    tick.add(
        p.SetPhase(obs.Phase.AWAITING_PROMOTION, "passed", message, tick.now),
        tick.record(
            p.DecisionKind.AWAIT_PROMOTION,
            "passed",
            message,
            evidence=tick.evidence(),
            key="await_promotion",
        ),
        p.EmitEvent(p.EventType.NORMAL, "AwaitingPromotion", message),
    )
    return None


def _pending(tick: Tick, s: spec.ExperimentSpec) -> None:
    """Pending: enter the baseline when the analysis needs one, else start step 1."""
    if not s.analysis.needs_baseline:
        if not tick.holds:
            _start(tick, s)
        return
    if set(tick.holds) & _NO_CLAIM:
        return
    # The route becomes this Experiment's now, so that a rollback during the baseline has
    # something to finalise (setting the weight claims it as well).
    tick.add(p.SetWeight(0) if tick.observed.router.challenger_weight != 0 else p.ClaimRoute())
    message = "measuring the champion with the challenger at 0 %"
    tick.add(
        p.SetPhase(obs.Phase.BASELINE, "baseline", message, tick.now, started_at=tick.now),
        tick.record(p.DecisionKind.START_BASELINE, "baseline", message, key="start_baseline"),
        p.EmitEvent(p.EventType.NORMAL, "BaselineStarted", message),
    )


def _baseline(tick: Tick, s: spec.ExperimentSpec) -> None:
    """Baseline: keep the challenger at 0 %; start step 1 once the values are computed."""
    _keep_weight(tick, 0)
    baseline = s.analysis.baseline
    since = tick.status.phase_started_at or tick.now
    if tick.holds or baseline is None or tick.now - since < baseline.duration:
        return
    b = tick.observed.baseline
    ready = frozen.baseline_complete(
        s.analysis,
        None if b is None else b.revenue_cap,
        None if b is None else b.thresholds_ms,
    )
    tick.condition(
        obs.ConditionType.BASELINE_READY,
        ready,
        "Computed" if ready else "NotComputed",
        "baseline values computed" if ready else "waiting for the baseline values",
    )
    if ready:
        _start(tick, s)


def progress(tick: Tick, s: spec.ExperimentSpec, requeue: timedelta) -> p.Plan:
    """Step 8, by phase."""
    phase = tick.status.phase
    if phase is obs.Phase.PENDING:
        _pending(tick, s)
    elif phase is obs.Phase.BASELINE:
        _baseline(tick, s)
    elif phase is obs.Phase.PROGRESSING:
        promoted = _step(tick, s)
        if promoted is not None:
            return promoted
    else:  # Paused, AwaitingPromotion: hold the current step's weight
        _keep_weight(tick, s.steps[min(tick.status.step_index, len(s.steps) - 1)].weight)
    return tick.plan(requeue)
