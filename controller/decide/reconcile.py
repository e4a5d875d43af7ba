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
before anything is recorded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from controller.decide import actions as p
from controller.decide import manual
from controller.decide import observed as obs
from controller.experiment import frozen, spec, validation

ACTOR = "canaryctl"
_ACTIVE = (obs.Phase.PROGRESSING, obs.Phase.PAUSED, obs.Phase.AWAITING_PROMOTION)
_T, _F = obs.ConditionStatus.TRUE, obs.ConditionStatus.FALSE


class _Done(Exception):
    """Raised inside a tick when the plan is complete (a terminal transition)."""


class _Tick:
    """The inputs of one tick and the actions decided so far."""

    def __init__(
        self,
        observed: obs.Observed,
        verdicts: obs.Verdicts | None,
        now: datetime,
    ) -> None:
        self.o = observed
        self.st = observed.status
        self.v = verdicts
        self.now = now
        self.actions: list[p.Action] = []
        self.holds: list[str] = []

    # -- helpers -------------------------------------------------------------------------
    def add(self, *actions: p.Action) -> None:
        self.actions.extend(actions)

    def plan(self) -> p.Plan:
        return p.Plan(tuple(self.actions))

    def condition(self, type_: obs.ConditionType, ok: bool, reason: str, message: str) -> None:
        """Upsert a condition when it changed; warn on a transition to False."""
        status = _T if ok else _F
        old = self.st.condition(type_)
        if old and (old.status, old.reason, old.message) == (status, reason, message):
            return
        since = old.last_transition_time if old and old.status == status else self.now
        self.add(p.SetCondition(obs.Condition(type_, status, reason, message, since)))
        if not ok and (old is None or old.status != status):
            self.add(p.EmitEvent(p.EventType.WARNING, reason, message))

    def false_since(self, type_: obs.ConditionType) -> datetime:
        """Since when a condition has been False (now if it is not False yet)."""
        old = self.st.condition(type_)
        return old.last_transition_time if old and old.status == _F else self.now

    def pending_request(self) -> manual.ManualRequest | manual.MalformedRequest | None:
        req = self.o.request
        return None if req is None or req.id in self.st.handled_requests else req

    def evidence(self) -> dict[str, Any]:
        v = self.v
        return {
            "phase": self.st.phase.value,
            "stepIndex": self.st.step_index,
            "challengerWeight": self.o.router.challenger_weight,
            "samples": {
                "champion": self.o.samples.champion,
                "challenger": self.o.samples.challenger,
            },
            "verdicts": None
            if v is None
            else {
                "overall": v.overall.value,
                "srmMismatch": v.srm_mismatch,
                "burnInMet": v.burn_in_met,
                "guardrails": [
                    {
                        "name": g.name,
                        "verdict": g.verdict.value,
                        "reasonCode": g.reason_code,
                        "reason": g.reason,
                    }
                    for g in v.guardrails
                ],
            },
        }

    def reject(self, request_id: str, actor: str, action: str, why: str) -> None:
        self.add(
            p.RecordDecision(
                p.DecisionKind.REQUEST_REJECTED,
                f"request_rejected:{action}",
                why,
                actor,
                self.now,
                {"requestId": request_id, "phase": self.st.phase.value},
                key=f"request:{request_id}",
            ),
            p.EmitEvent(p.EventType.WARNING, "RequestRejected", f"{action} ({request_id}): {why}"),
            p.MarkRequestHandled(request_id),
        )

    # -- terminal transitions --------------------------------------------------------------
    def rollback(
        self,
        code: str,
        message: str,
        *,
        actor: str = ACTOR,
        request: manual.ManualRequest | None = None,
    ) -> None:
        dropped = (p.SetWeight, p.PromoteRoute, p.FreezeSettings, p.SetStep, p.RequeueAfter)
        self.actions = [p.FinalizeRoute(), *(a for a in self.actions if not isinstance(a, dropped))]
        self.add(
            p.SetPhase(obs.Phase.ROLLED_BACK, code, message, self.now),
            p.RecordDecision(
                p.DecisionKind.ROLLBACK,
                code,
                message,
                actor,
                self.now,
                self.evidence(),
                key="rollback",
            ),
            p.EmitEvent(p.EventType.WARNING, "RolledBack", f"{code}: {message}"),
        )
        if request is not None:
            self.add(p.MarkRequestHandled(request.id))
        raise _Done

    def promote(
        self,
        code: str,
        message: str,
        *,
        actor: str = ACTOR,
        request: manual.ManualRequest | None = None,
    ) -> None:
        dropped = (p.SetWeight, p.SetStep, p.RequeueAfter)
        self.actions = [p.PromoteRoute(), *(a for a in self.actions if not isinstance(a, dropped))]
        self.add(
            p.SetPhase(obs.Phase.PROMOTED, code, message, self.now),
            p.RecordDecision(
                p.DecisionKind.PROMOTE,
                code,
                message,
                actor,
                self.now,
                self.evidence(),
                key="promote",
            ),
            p.EmitEvent(p.EventType.NORMAL, "Promoted", message),
        )
        if request is not None:
            self.add(p.MarkRequestHandled(request.id))
        raise _Done


def _invalid(tick: _Tick, error: validation.SpecError) -> p.Plan:
    if tick.o.router.challenger_weight > 0:
        tick.add(p.FinalizeRoute())
    message = str(error)
    tick.add(
        p.SetCondition(
            obs.Condition(obs.ConditionType.SPEC_VALID, _F, "InvalidSpec", message, tick.now)
        ),
        p.SetPhase(obs.Phase.FAILED, "invalid_spec", message, tick.now),
        p.RecordDecision(
            p.DecisionKind.FAIL,
            "invalid_spec",
            message,
            ACTOR,
            tick.now,
            {"issues": [{"field": i.field, "message": i.message} for i in error.issues]},
            key="fail",
        ),
        p.EmitEvent(p.EventType.WARNING, "InvalidSpec", message),
    )
    req = tick.pending_request()
    if req is not None:
        action = req.action.value if isinstance(req, manual.ManualRequest) else "unknown"
        actor = req.actor if isinstance(req, manual.ManualRequest) else "unknown"
        tick.reject(req.id, actor, action, "the spec is invalid; the experiment failed")
    return tick.plan()


def _terminal(tick: _Tick) -> p.Plan:
    phase = tick.st.phase
    if phase in (obs.Phase.ROLLED_BACK, obs.Phase.FAILED) and tick.o.router.challenger_weight > 0:
        tick.add(p.FinalizeRoute())
    req = tick.pending_request()
    if req is not None:
        action = req.action.value if isinstance(req, manual.ManualRequest) else "unknown"
        actor = req.actor if isinstance(req, manual.ManualRequest) else "unknown"
        tick.reject(req.id, actor, action, f"the experiment has finished ({phase.value})")
    return tick.plan()


def _fmt(d: timedelta) -> str:
    return spec.format_duration(d)


def _hold_or_clear(
    tick: _Tick,
    type_: obs.ConditionType,
    *,
    ok: bool,
    grace: timedelta,
    code: str,
    failed: str,
    holding: tuple[str, str],
    fine: tuple[str, str],
) -> None:
    """One holding condition: when not ``ok``, hold (and roll back once it lasted ``grace``)."""
    if ok:
        tick.condition(type_, True, *fine)
        return
    if tick.now - tick.false_since(type_) >= grace:
        tick.rollback(code, failed.format(_fmt(grace)))
    tick.condition(type_, False, holding[0], holding[1].format(_fmt(grace)))
    tick.holds.append(code)


def _safety(tick: _Tick, s: spec.ExperimentSpec, a: spec.Analysis) -> None:
    """Steps 4–6: roll back at once, or after a grace period, or hold."""
    st, o, v, now = tick.st, tick.o, tick.v, tick.now
    active = st.phase in _ACTIVE
    if v is not None and active:
        failed = v.failed
        if failed:
            g = failed[0]
            tick.rollback(f"guardrail_failed:{g.name}", f"guardrail {g.name} failed: {g.reason}")
        if a.srm_enabled and v.srm_mismatch:
            tick.rollback(
                "srm",
                v.srm_reason
                or "sample-ratio mismatch: the traffic split is not what the router set",
            )
        if v.overall is obs.Verdict.FAIL:
            tick.rollback("analysis_failed", "the analysis reported FAIL")
    start = st.started_at or o.created_at
    if now - start >= s.max_duration and not (v is not None and v.all_pass):
        tick.rollback(
            "inconclusive",
            f"maxDuration {_fmt(s.max_duration)} reached without PASS on every guardrail",
        )
    policy = s.failure_policy
    ct = obs.ConditionType
    _hold_or_clear(
        tick,
        ct.DATABASE_REACHABLE,
        ok=o.database_reachable,
        grace=policy.database_unreachable_grace,
        code="database_unreachable",
        failed="the database has been unreachable for {}",
        holding=(
            "DatabaseUnreachable",
            "holding; rolling back if the database is unreachable for {}",
        ),
        fine=("Reachable", "the database answers"),
    )
    if o.database_reachable and (active or st.phase is obs.Phase.BASELINE):
        grace = policy.missing_data_grace
        stale_after = a.allowed_lateness + a.interval
        last = o.last_data_at or st.started_at or now
        age = now - last
        if age > stale_after + grace:
            tick.rollback("no_data", f"no new data for {_fmt(age)}")
        if age > stale_after:
            tick.condition(
                ct.DATA_FRESH,
                False,
                "NoData",
                f"holding; no data newer than {_fmt(stale_after)}; "
                f"rolling back after {_fmt(grace)} more",
            )
            tick.holds.append("no_data")
        else:
            tick.condition(ct.DATA_FRESH, True, "Fresh", "data is arriving")
    if o.database_reachable and active:
        _hold_or_clear(
            tick,
            ct.ANALYSIS_AVAILABLE,
            ok=v is not None,
            grace=policy.missing_data_grace,
            code="analysis_unavailable",
            failed="no analysis result for {}",
            holding=(
                "AnalysisUnavailable",
                "holding; rolling back if the analysis cannot run for {}",
            ),
            fine=("Available", "the analysis ran"),
        )
    _hold_or_clear(
        tick,
        ct.CHALLENGER_READY,
        ok=o.router.challenger_ready,
        grace=policy.challenger_not_ready_grace,
        code="challenger_not_ready",
        failed="the challenger has not been ready for {}",
        holding=(
            "ChallengerNotReady",
            "holding; rolling back if the challenger is not ready for {}",
        ),
        fine=("Ready", "the challenger's pods are ready"),
    )


def _manual(tick: _Tick, req: manual.ManualRequest) -> bool:
    """Step 7: act on promote, pause or resume; True when this tick is complete."""
    phase = tick.st.phase
    A = manual.RequestAction
    who = f"{req.actor}: {req.reason}" if req.reason else req.actor
    why = manual.refusal(req.action, full=req.full, phase=phase.value, holds=tuple(tick.holds))
    if why is not None:
        tick.reject(req.id, req.actor, req.action.value, why)
        return False
    if req.action is A.PROMOTE:
        code = (
            "manual_promote_full" if phase is not obs.Phase.AWAITING_PROMOTION else "manual_promote"
        )
        tick.promote(code, f"promotion requested by {who}", actor=req.actor, request=req)
    transitions = {
        (A.PAUSE, obs.Phase.PROGRESSING): (obs.Phase.PAUSED, p.DecisionKind.PAUSE, "Paused"),
        (A.RESUME, obs.Phase.PAUSED): (obs.Phase.PROGRESSING, p.DecisionKind.RESUME, "Resumed"),
    }
    new_phase, kind, reason = transitions[(req.action, phase)]
    code = f"manual_{req.action.value}"
    message = f"{req.action.value} requested by {who}"
    tick.add(
        p.SetPhase(new_phase, code, message, tick.now),
        p.RecordDecision(
            kind, code, message, req.actor, tick.now, tick.evidence(), key=f"request:{req.id}"
        ),
        p.EmitEvent(p.EventType.NORMAL, reason, message),
        p.MarkRequestHandled(req.id),
    )
    return True


def _keep_weight(tick: _Tick, target: int) -> bool:
    """Bring the route to ``target`` (never up while holding); True when it is there."""
    current = tick.o.router.challenger_weight
    if current == target:
        return True
    if current > target or not tick.holds:
        tick.add(p.SetWeight(target))
    return False


def _start(tick: _Tick, s: spec.ExperimentSpec) -> None:
    first = s.steps[0]
    snap = frozen.snapshot(s.analysis, tick.o.baseline, s)
    frozen_now = obs.FrozenSettings(frozen.digest(s.analysis), snap, tick.now)
    message = f"step 1/{len(s.steps)}: challenger at {first.weight} %"
    tick.add(
        p.FreezeSettings(frozen_now),
        p.SetWeight(first.weight),
        p.SetStep(0, f"1/{len(s.steps)}", tick.now),
        p.SetPhase(
            obs.Phase.PROGRESSING,
            "started",
            message,
            tick.now,
            started_at=tick.now if tick.st.started_at is None else None,
        ),
        p.RecordDecision(
            p.DecisionKind.START,
            "started",
            message,
            ACTOR,
            tick.now,
            {"settings": snap},
            key="start",
        ),
        p.EmitEvent(p.EventType.NORMAL, "Started", message),
    )


def _step(tick: _Tick, s: spec.ExperimentSpec) -> None:
    """Progressing: hold the step's weight, advance, promote or await promotion."""
    st, o, v = tick.st, tick.o, tick.v
    i = min(st.step_index, len(s.steps) - 1)
    step = s.steps[i]
    # The route already at the weight this step's transition sets, while the status still
    # says this step: a tick wrote the route and died before recording it. Decide the
    # transition again without moving the route back and forth; go back only if it no
    # longer holds.
    ahead = s.steps[i + 1].weight if i + 1 < len(s.steps) else 100
    resumed = o.router.challenger_weight == ahead != step.weight

    def not_now() -> None:
        if resumed:
            tick.add(p.SetWeight(step.weight))

    if not resumed and (not _keep_weight(tick, step.weight) or tick.holds):
        return
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
            p.RecordDecision(
                p.DecisionKind.ADVANCE,
                "step_complete",
                message,
                ACTOR,
                tick.now,
                tick.evidence(),
                key=f"advance:{i + 1}",
            ),
            p.EmitEvent(p.EventType.NORMAL, "StepAdvanced", message),
        )
        return
    if v is None or not v.all_pass or (resumed and s.promotion is not spec.PromotionMode.AUTOMATIC):
        return not_now()
    if s.promotion is spec.PromotionMode.AUTOMATIC:
        tick.promote("promoted", "every guardrail passed after the last step")
    message = "every guardrail passed; waiting for a manual promote"
    tick.add(
        p.SetPhase(obs.Phase.AWAITING_PROMOTION, "passed", message, tick.now),
        p.RecordDecision(
            p.DecisionKind.AWAIT_PROMOTION,
            "passed",
            message,
            ACTOR,
            tick.now,
            tick.evidence(),
            key="await_promotion",
        ),
        p.EmitEvent(p.EventType.NORMAL, "AwaitingPromotion", message),
    )


def _progress(tick: _Tick, s: spec.ExperimentSpec) -> None:
    """Step 8, by phase."""
    st, phase = tick.st, tick.st.phase
    if phase is obs.Phase.PENDING:
        if s.analysis.needs_baseline:
            if "database_unreachable" in tick.holds:
                return
            if tick.o.router.challenger_weight != 0:
                tick.add(p.SetWeight(0))
            message = "measuring the champion with the challenger at 0 %"
            tick.add(
                p.SetPhase(obs.Phase.BASELINE, "baseline", message, tick.now, started_at=tick.now),
                p.RecordDecision(
                    p.DecisionKind.START_BASELINE,
                    "baseline",
                    message,
                    ACTOR,
                    tick.now,
                    key="start_baseline",
                ),
                p.EmitEvent(p.EventType.NORMAL, "BaselineStarted", message),
            )
            return
        if not tick.holds:
            _start(tick, s)
    elif phase is obs.Phase.BASELINE:
        _keep_weight(tick, 0)
        baseline = s.analysis.baseline
        since = st.phase_started_at or tick.now
        if tick.holds or baseline is None or tick.now - since < baseline.duration:
            return
        ready = frozen.baseline_complete(s.analysis, tick.o.baseline)
        tick.condition(
            obs.ConditionType.BASELINE_READY,
            ready,
            "Computed" if ready else "NotComputed",
            "baseline values computed" if ready else "waiting for the baseline values",
        )
        if ready:
            _start(tick, s)
    elif phase is obs.Phase.PROGRESSING:
        _step(tick, s)
    else:  # Paused, AwaitingPromotion: hold the current step's weight
        _keep_weight(tick, s.steps[min(st.step_index, len(s.steps) - 1)].weight)


def _run(tick: _Tick, s: spec.ExperimentSpec) -> None:
    st = tick.st
    tick.condition(obs.ConditionType.SPEC_VALID, True, "Valid", "the spec is valid")
    analysis = s.analysis
    if st.frozen is not None:
        analysis = frozen.analysis_from_snapshot(st.frozen.snapshot)
        changed = frozen.digest(s.analysis) != st.frozen.digest
        old = st.condition(obs.ConditionType.SETTINGS_FROZEN)
        if changed:
            message = "spec.analysis was edited after Progressing began; the frozen settings stay"
            if old is None or old.status != _F:
                tick.add(
                    p.RecordDecision(
                        p.DecisionKind.SETTINGS_CHANGE_REFUSED,
                        "settings_change_refused",
                        message,
                        ACTOR,
                        tick.now,
                        {
                            "frozenDigest": st.frozen.digest,
                            "specDigest": frozen.digest(s.analysis),
                        },
                        key=f"settings_change_refused:{frozen.digest(s.analysis)}",
                    )
                )
            tick.condition(
                obs.ConditionType.SETTINGS_FROZEN, False, "SettingsChangeRefused", message
            )
        else:
            tick.condition(
                obs.ConditionType.SETTINGS_FROZEN, True, "Frozen", "analysis settings recorded"
            )
    if tick.v is not None and tick.v.overall.value != st.verdict:
        tick.add(p.SetVerdict(tick.v.overall.value))
    req = tick.pending_request()
    if isinstance(req, manual.MalformedRequest):
        tick.reject(req.id, "unknown", "unknown", req.error)
        req = None
    if req is not None and req.action is manual.RequestAction.ROLLBACK:
        who = f"{req.actor}: {req.reason}" if req.reason else req.actor
        tick.rollback(
            "manual_rollback", f"rollback requested by {who}", actor=req.actor, request=req
        )
    _safety(tick, s, analysis)
    tick.add(p.RequeueAfter(analysis.interval))
    if req is not None and _manual(tick, req):
        return
    _progress(tick, s)


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
        The analysis summary of this tick, or None when the analysis could not run.
    now
        Timezone-aware current time; every time in the plan comes from it.
    """
    if now.tzinfo is None:
        raise ValueError("now: must be timezone-aware")
    tick = _Tick(observed, verdicts, now)
    if isinstance(spec_or_error, validation.SpecError):
        if observed.status.phase.terminal:
            return _terminal(tick)
        return _invalid(tick, spec_or_error)
    if observed.status.phase.terminal:
        return _terminal(tick)
    try:
        _run(tick, spec_or_error)
    except _Done:
        tick.actions = [a for a in tick.actions if not isinstance(a, p.RequeueAfter)]
    return tick.plan()
