"""The Experiment's raw status: reading it into ``StoredStatus`` and folding a plan into it.

The boundary between ``status`` as stored in Kubernetes (camelCase JSON, typed here as
``TypedDict``) and the values reconcile reads. ``apply_plan`` is pure: it returns the
status a plan leads to, for the executor to write (one merge patch of ``status``) after
the plan's route actions succeeded. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

from controller.decide import actions as p
from controller.decide import observed as obs
from controller.experiment import frozen, spec

MAX_HANDLED_REQUESTS = 100


class ConditionDict(TypedDict):
    """One condition as stored."""

    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str


class FrozenSettingsDict(TypedDict):
    """``status.frozenSettings`` as stored."""

    digest: str
    frozenAt: str
    snapshot: dict[str, Any]


class StatusDict(TypedDict, total=False):
    """``status`` of an Experiment as stored (see ``controller.experiment.crd.STATUS_SCHEMA``)."""

    phase: str
    reasonCode: str
    message: str
    phaseStartedAt: str
    startedAt: str
    stepIndex: int
    step: str
    stepStartedAt: str
    challengerWeight: int
    verdict: str
    frozenSettings: FrozenSettingsDict
    handledRequests: list[str]
    conditions: list[ConditionDict]
    observedGeneration: int


_time, _text = spec.parse_k8s_time, spec.k8s_time


def _maybe_time(text: str | None) -> datetime | None:
    return None if text is None else _time(text)


#: Frozen settings read from statuses, by digest, freezing time and routing: the stored
#: document and what it reads as. An operator reads the same frozen settings at every tick
#: of an experiment (experiments with the same settings share a digest, not their routing).
_FROZEN: dict[tuple[str, str, str], tuple[Mapping[str, Any], frozen.FrozenSettings]] = {}
_FROZEN_MAX = 4096


def _frozen(stored: FrozenSettingsDict) -> frozen.FrozenSettings:
    """``status.frozenSettings`` read, remembered while the document is the same."""
    snapshot = stored["snapshot"]
    key = (str(stored["digest"]), str(stored["frozenAt"]), repr(snapshot.get("routing")))
    found = _FROZEN.get(key)
    if found is not None and found[0] == stored:
        return found[1]
    parsed = frozen.from_json(
        {**snapshot, "digest": stored["digest"]}, frozen_at=_time(stored["frozenAt"])
    )
    if len(_FROZEN) >= _FROZEN_MAX:
        _FROZEN.clear()
    _FROZEN[key] = (stored, parsed)
    return parsed


def read_status(raw: StatusDict | None) -> obs.StoredStatus:
    """The stored status as reconcile reads it (an empty status is a new experiment)."""
    raw = raw or {}
    stored_frozen = raw.get("frozenSettings")
    return obs.StoredStatus(
        phase=obs.Phase(raw.get("phase", obs.Phase.PENDING.value)),
        phase_started_at=_maybe_time(raw.get("phaseStartedAt")),
        started_at=_maybe_time(raw.get("startedAt")),
        step_index=raw.get("stepIndex", 0),
        step_started_at=_maybe_time(raw.get("stepStartedAt")),
        frozen=None if stored_frozen is None else _frozen(stored_frozen),
        handled_requests=tuple(raw.get("handledRequests", ())),
        conditions=tuple(
            obs.Condition(
                obs.ConditionType(c["type"]),
                obs.ConditionStatus(c["status"]),
                c.get("reason", ""),
                c.get("message", ""),
                _time(c["lastTransitionTime"]),
            )
            for c in raw.get("conditions", ())
            if c["type"] in obs.ConditionType.__members__.values()
        ),
        verdict=raw.get("verdict"),
    )


def _condition(c: obs.Condition) -> ConditionDict:
    return {
        "type": c.type.value,
        "status": c.status.value,
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": _text(c.last_transition_time),
    }


def apply_plan(plan: p.Plan, raw: StatusDict | None) -> StatusDict:
    """The status after every action of ``plan`` has been applied, with its status fields."""
    out: StatusDict = dict(raw or {})  # type: ignore[assignment]
    conditions = list(out.get("conditions", []))
    handled = list(out.get("handledRequests", []))
    for action in plan.actions:
        if isinstance(action, p.SetWeight):
            out["challengerWeight"] = action.weight
        elif isinstance(action, p.PromoteRoute):
            out["challengerWeight"] = 100
        elif isinstance(action, p.FinalizeRoute):
            out["challengerWeight"] = 0
        elif isinstance(action, p.SetPhase):
            out["phase"] = action.phase.value
            out["reasonCode"] = action.reason_code
            out["message"] = action.message
            out["phaseStartedAt"] = _text(action.at)
            if action.started_at is not None:
                out["startedAt"] = _text(action.started_at)
        elif isinstance(action, p.SetStep):
            out["stepIndex"] = action.index
            out["step"] = action.display
            out["stepStartedAt"] = _text(action.at)
            if action.message is not None:
                out["reasonCode"] = action.reason_code or out.get("reasonCode", "")
                out["message"] = action.message
        elif isinstance(action, p.SetCondition):
            new = _condition(action.condition)
            conditions = [c for c in conditions if c["type"] != new["type"]] + [new]
        elif isinstance(action, p.SetVerdict):
            out["verdict"] = action.verdict
        elif isinstance(action, p.FreezeSettings):
            s = action.settings
            out["frozenSettings"] = {
                "digest": s.digest,
                "frozenAt": _text(s.frozen_at),
                "snapshot": frozen.to_json(s),
            }
        elif isinstance(action, p.MarkRequestHandled) and action.request_id not in handled:
            handled = [*handled, action.request_id][-MAX_HANDLED_REQUESTS:]
    if conditions:
        out["conditions"] = conditions
    if handled:
        out["handledRequests"] = handled
    out.update(plan.status_fields)  # type: ignore[typeddict-item]
    return out
