"""One tick's inputs and the actions decided so far; how ``reconcile`` builds its ``Plan``.

``reconcile``, ``safety`` and ``stepping`` add the status-side actions (conditions, the
verdict, rejected requests) here as they decide them, and end with one of two builders:
``plan`` (the experiment goes on: the actions in the order decided, then the requeue) or
``end`` (a terminal transition: the route first, so that traffic is back on the champion
or fully on the challenger before anything says so, then the status decided so far, then
the transition). Every plan carries the status fields and the analysis evidence of the
tick. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from controller.decide import actions as p
from controller.decide import manual
from controller.decide import observed as obs
from controller.experiment import spec

_T, _F, _U = obs.ConditionStatus.TRUE, obs.ConditionStatus.FALSE, obs.ConditionStatus.UNKNOWN


def _status_fields(
    observed: obs.Observed, verdicts: obs.Verdicts | None, now: datetime
) -> dict[str, Any]:
    """status.samples on every tick; the analysis's figures when it ran; held decisions cleared."""
    samples = observed.samples
    fields: dict[str, Any] = {
        "samples": {"champion": samples.champion, "challenger": samples.challenger}
    }
    if verdicts is not None:
        fields["lastAnalysisAt"] = spec.k8s_time(now)
        fields.update(verdicts.status_fields)
    if observed.held_flushed:
        fields["pendingDecisions"] = []
    return fields


class Tick:
    """The inputs of one tick and the status-side actions decided so far."""

    def __init__(
        self, observed: obs.Observed, verdicts: obs.Verdicts | None, now: datetime
    ) -> None:
        self.observed = observed
        self.status = observed.status
        self.verdicts = verdicts
        self.now = now
        self.actions: list[p.Action] = []
        self.holds: list[str] = []  # reason codes of the conditions holding the weight
        self._fields = _status_fields(observed, verdicts, now)

    # -- building the plan -----------------------------------------------------------------
    def add(self, *actions: p.Action) -> None:
        self.actions.extend(actions)

    def _plan(self, actions: tuple[p.Action, ...]) -> p.Plan:
        return p.Plan(actions, self._fields, hold_decisions=not self.observed.database_reachable)

    def plan(self, requeue: timedelta | None = None) -> p.Plan:
        """The actions in the order decided, then ``RequeueAfter(requeue)`` when given."""
        return self._plan((*self.actions, *([p.RequeueAfter(requeue)] if requeue else [])))

    def end(
        self,
        phase: obs.Phase,
        code: str,
        message: str,
        *,
        actor: str = p.ACTOR,
        request: manual.ManualRequest | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> p.Plan:
        """A terminal transition to RolledBack or Promoted (see the module docstring).

        ``evidence`` joins what reconcile saw in the decision-log entry.
        """
        if phase is obs.Phase.ROLLED_BACK:
            route: p.Action = p.FinalizeRoute()
            kind = p.DecisionKind.ROLLBACK
            event = p.EmitEvent(p.EventType.WARNING, "RolledBack", f"{code}: {message}")
        else:
            route = p.PromoteRoute()
            kind = p.DecisionKind.PROMOTE
            event = p.EmitEvent(p.EventType.NORMAL, "Promoted", message)
        handled = [p.MarkRequestHandled(request.id)] if request is not None else []
        self.settle_holds()
        return self._plan(
            (
                route,
                *self.actions,
                p.SetPhase(phase, code, message, self.now),
                self.record(
                    kind,
                    code,
                    message,
                    actor,
                    {**self.evidence(), **(evidence or {})},
                    key=kind.value,
                ),
                event,
                *handled,
            )
        )

    # -- helpers ---------------------------------------------------------------------------
    def record(
        self,
        kind: p.DecisionKind,
        code: str,
        message: str,
        actor: str = p.ACTOR,
        evidence: Mapping[str, Any] | None = None,
        *,
        key: str,
    ) -> p.RecordDecision:
        """A decision-log entry; the statistics of this tick's analysis join its evidence."""
        full = dict(evidence or {})
        if self.verdicts is not None and self.verdicts.evidence:
            full.setdefault("analysis", dict(self.verdicts.evidence))
        return p.RecordDecision(kind, code, message, actor, self.now, full, key=key)

    def condition(
        self, type_: obs.ConditionType, ok: bool | None, reason: str, message: str
    ) -> None:
        """Upsert a condition when it changed (``ok`` None: Unknown); an event on a transition.

        A Warning event when it turns False; a Normal one when a hold (``observed.HOLDS``)
        turns True again, so that the end of a wait is as visible as its start.
        """
        status = _U if ok is None else _T if ok else _F
        was = self.current(type_)
        old = self._latest(type_)
        if old and (old.status, old.reason, old.message) == (status, reason, message):
            return
        since = old.last_transition_time if old and old.status == status else self.now
        self.add(p.SetCondition(obs.Condition(type_, status, reason, message, since)))
        if status is _F and was is not _F:
            self.add(p.EmitEvent(p.EventType.WARNING, reason, message))
        elif status is _T and was is _F and type_ in obs.HOLDS:
            self.add(p.EmitEvent(p.EventType.NORMAL, reason, f"no longer holding: {message}"))

    def _latest(self, type_: obs.ConditionType) -> obs.Condition | None:
        """The condition as this tick left it so far (else as stored)."""
        for action in reversed(self.actions):
            if isinstance(action, p.SetCondition) and action.condition.type == type_:
                return action.condition
        return self.status.condition(type_)

    def current(self, type_: obs.ConditionType) -> obs.ConditionStatus | None:
        """The condition's status as this tick left it so far (None: never set)."""
        latest = self._latest(type_)
        return None if latest is None else latest.status

    def settle_holds(self) -> None:
        """A finished experiment holds nothing: its holding conditions stop saying it holds.

        The database's condition follows what this tick saw (True once it answers again);
        any other hold still False becomes Unknown (reason ``Finished``): no longer checked.
        """
        db = obs.ConditionType.DATABASE_REACHABLE
        if self.observed.database_reachable and self.current(db) is _F:
            self.condition(db, True, "Reachable", "the database answers")
        for type_ in obs.HOLDS:
            if type_ is not db and self.current(type_) is _F:
                self.condition(type_, None, "Finished", "not checked since the experiment finished")

    def forecast(self, note: obs.ForecastNote) -> None:
        """Record a new decision forecast: the condition, ``status.forecast`` and an event."""
        old = self.status.condition(obs.ConditionType.DECISION_FORECAST)
        self.condition(obs.ConditionType.DECISION_FORECAST, note.likely, note.reason, note.message)
        self._fields["forecast"] = dict(note.document)
        if note.likely and (old is None or old.status != _T):
            self.add(p.EmitEvent(p.EventType.NORMAL, note.reason, note.message))

    def false_since(self, type_: obs.ConditionType) -> datetime:
        """Since when a condition has been False (now if it is not False yet)."""
        old = self.status.condition(type_)
        return old.last_transition_time if old and old.status == _F else self.now

    def pending_request(self) -> manual.ManualRequest | manual.MalformedRequest | None:
        req = self.observed.request
        return None if req is None or req.id in self.status.handled_requests else req

    def evidence(self) -> dict[str, Any]:
        """What reconcile saw, for a transition's decision-log entry."""
        verdicts = self.verdicts
        return {
            "phase": self.status.phase.value,
            "stepIndex": self.status.step_index,
            "challengerWeight": self.observed.router.challenger_weight,
            "samples": {
                "champion": self.observed.samples.champion,
                "challenger": self.observed.samples.challenger,
            },
            "verdicts": None
            if verdicts is None
            else {
                "overall": verdicts.overall.value,
                "srmMismatch": verdicts.srm_mismatch,
                "burnInMet": verdicts.burn_in_met,
                "guardrails": [
                    {
                        "name": g.name,
                        "verdict": g.verdict.value,
                        "reasonCode": g.reason_code,
                        "reason": g.reason,
                    }
                    for g in verdicts.guardrails
                ],
            },
        }

    def reject(self, request_id: str, actor: str, action: str, why: str) -> None:
        self.add(
            self.record(
                p.DecisionKind.REQUEST_REJECTED,
                f"request_rejected:{action}",
                why,
                actor,
                {"requestId": request_id, "phase": self.status.phase.value},
                key=f"request:{request_id}",
            ),
            p.EmitEvent(p.EventType.WARNING, "RequestRejected", f"{action} ({request_id}): {why}"),
            p.MarkRequestHandled(request_id),
        )
