"""The pure decision of one tick: ``reconcile(spec, observed, verdicts, now) -> Plan``.

Reads the validated spec (or the ``SpecError`` that made it invalid), what the operator
observed and the analysis summary, and returns the ordered actions for the executor. No
I/O, no clock (``now`` is an argument), no randomness; tested as tables in
``tests/controller/test_reconcile.py``.

Order of precedence at each tick, first match wins:

1. an invalid spec fails the experiment (finalising the route first);
2. terminal phases only keep a rolled-back route final and reject late requests;
3. a manual rollback request;
4. a guardrail FAIL or a sample-ratio mismatch (phases where the challenger has traffic);
5. the maximum duration reached without PASS (reason ``inconclusive``);
6. the database unreachable, data missing, analysis unavailable or the challenger not
   ready for longer than their grace periods (shorter: hold the current weight);
7. other manual requests (promote, pause, resume);
8. stepping: baseline, start, advance a step, promote or await promotion.

A rollback always starts with ``FinalizeRoute`` so traffic is back on the champion
before anything is recorded. Steps 4–6 live in ``safety``, 7–8 in ``stepping``; ``tick``
builds the plan. Each step returns the finished plan or lets the next one decide: no
exceptions, and no action once decided is rewritten.
"""

from __future__ import annotations

from datetime import datetime

from controller.decide import actions as p
from controller.decide import manual, safety, stepping
from controller.decide import observed as obs
from controller.decide.tick import Tick
from controller.experiment import frozen, spec, validation

ACTOR = p.ACTOR
_F = obs.ConditionStatus.FALSE


def _reject_any(tick: Tick, why: str) -> None:
    """Reject the pending request, if any (a finished or failed experiment takes none)."""
    req = tick.pending_request()
    if req is not None:
        action = req.action.value if isinstance(req, manual.ManualRequest) else "unknown"
        actor = req.actor if isinstance(req, manual.ManualRequest) else "unknown"
        tick.reject(req.id, actor, action, why)


def _invalid(tick: Tick, error: validation.SpecError) -> p.Plan:
    """Step 1: an invalid spec fails the experiment (finalising the route first)."""
    if tick.observed.router.challenger_weight > 0:
        tick.add(p.FinalizeRoute())
    message = str(error)
    tick.add(
        p.SetCondition(
            obs.Condition(obs.ConditionType.SPEC_VALID, _F, "InvalidSpec", message, tick.now)
        ),
        p.SetPhase(obs.Phase.FAILED, "invalid_spec", message, tick.now),
        tick.record(
            p.DecisionKind.FAIL,
            "invalid_spec",
            message,
            evidence={"issues": [{"field": i.field, "message": i.message} for i in error.issues]},
            key="fail",
        ),
        p.EmitEvent(p.EventType.WARNING, "InvalidSpec", message),
    )
    _reject_any(tick, "the spec is invalid; the experiment failed")
    tick.settle_holds()
    return tick.plan()


def _terminal(tick: Tick) -> p.Plan:
    """Step 2: keep a rolled-back route final and reject late requests."""
    phase = tick.status.phase
    if (
        phase in (obs.Phase.ROLLED_BACK, obs.Phase.FAILED)
        and tick.observed.router.challenger_weight > 0
    ):
        tick.add(p.FinalizeRoute())
    _reject_any(tick, f"the experiment has finished ({phase.value})")
    tick.settle_holds()
    return tick.plan()


def _frozen_settings(tick: Tick, s: spec.ExperimentSpec) -> spec.Analysis:
    """The analysis settings in force: the frozen ones once Progressing began (edits refused)."""
    st = tick.status
    if st.frozen is None:
        return s.analysis
    analysis = st.frozen.analysis
    spec_digest = frozen.digest(s.analysis)
    if spec_digest == st.frozen.digest:
        tick.condition(
            obs.ConditionType.SETTINGS_FROZEN, True, "Frozen", "analysis settings recorded"
        )
        return analysis
    message = "spec.analysis was edited after Progressing began; the frozen settings stay"
    old = st.condition(obs.ConditionType.SETTINGS_FROZEN)
    if old is None or old.status != _F:
        tick.add(
            tick.record(
                p.DecisionKind.SETTINGS_CHANGE_REFUSED,
                "settings_change_refused",
                message,
                evidence={"frozenDigest": st.frozen.digest, "specDigest": spec_digest},
                key=f"settings_change_refused:{spec_digest}",
            )
        )
    tick.condition(obs.ConditionType.SETTINGS_FROZEN, False, "SettingsChangeRefused", message)
    return analysis


def _run(tick: Tick, s: spec.ExperimentSpec) -> p.Plan:
    """Steps 3–8 for a valid spec in a phase that is not terminal."""
    tick.condition(obs.ConditionType.SPEC_VALID, True, "Valid", "the spec is valid")
    analysis = _frozen_settings(tick, s)
    if tick.observed.forecast is not None:
        tick.forecast(tick.observed.forecast)
    if tick.verdicts is not None and tick.verdicts.overall.value != tick.status.verdict:
        tick.add(p.SetVerdict(tick.verdicts.overall.value))
    req = tick.pending_request()
    if isinstance(req, manual.MalformedRequest):
        tick.reject(req.id, "unknown", "unknown", req.error)
        req = None
    if req is not None and req.action is manual.RequestAction.ROLLBACK:
        who = f"{req.actor}: {req.reason}" if req.reason else req.actor
        return tick.end(
            obs.Phase.ROLLED_BACK,
            "manual_rollback",
            f"rollback requested by {who}",
            actor=req.actor,
            request=req,
        )
    ended = safety.check(tick, s, analysis)
    if ended is not None:
        return ended
    if req is not None:
        handled = stepping.manual_request(tick, req, analysis.interval)
        if handled is not None:
            return handled
    return stepping.progress(tick, s, analysis.interval)


def reconcile(
    spec_or_error: spec.ExperimentSpec | validation.SpecError,
    observed: obs.Observed,
    verdicts: obs.Verdicts | None,
    now: datetime,
) -> p.Plan:
    """Decide one tick; see the module docstring for the order of precedence.

    Parameters
    ----------
    spec_or_error
        The spec from ``validation.parse_experiment``, or the ``SpecError`` it raised.
    observed
        Stored status, router state, per-arm counts of the current step, database
        reachability and freshness, baseline values, and the manual request if any.
    verdicts
        The analysis summary of this tick (with the figures people read and the
        evidence the decision log keeps), or None when the analysis could not run.
    now
        Timezone-aware current time; every time in the plan comes from it.
    """
    if now.tzinfo is None:
        raise ValueError("now: must be timezone-aware")
    tick = Tick(observed, verdicts, now)
    if observed.status.phase.terminal:
        return _terminal(tick)
    if isinstance(spec_or_error, validation.SpecError):
        return _invalid(tick, spec_or_error)
    return _run(tick, spec_or_error)
