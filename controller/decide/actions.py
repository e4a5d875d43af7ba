"""The actions ``reconcile`` decides and the executor applies, in order.

A ``Plan`` is a frozen tuple of actions. The executor applies them one by one and stops
at the first failure (so a route that could not be finalised is never reported as rolled
back). Every time in an action was chosen by reconcile from its ``now``; the executor
never reads a clock to fill a status field. Values only; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from controller.decide import observed


class DecisionKind(StrEnum):
    """Kinds of entries in the decision log."""

    START_BASELINE = "start_baseline"
    START = "start"
    ADVANCE = "advance"
    AWAIT_PROMOTION = "await_promotion"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    PAUSE = "pause"
    RESUME = "resume"
    FAIL = "fail"
    REQUEST_REJECTED = "request_rejected"
    SETTINGS_CHANGE_REFUSED = "settings_change_refused"


class EventType(StrEnum):
    """Kubernetes event types."""

    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class SetWeight:
    """Route ``weight`` % to the challenger; the executor mirrors it in status.challengerWeight."""

    weight: int


@dataclass(frozen=True)
class PromoteRoute:
    """Send all traffic to the challenger (KServe: clear canaryTrafficPercent)."""


@dataclass(frozen=True)
class FinalizeRoute:
    """All traffic back to the champion (KServe: canaryTrafficPercent 0); first in a rollback."""


@dataclass(frozen=True)
class SetPhase:
    """Set status.phase, reasonCode, message and phaseStartedAt (and startedAt when given)."""

    phase: observed.Phase
    reason_code: str
    message: str
    at: datetime
    started_at: datetime | None = None


@dataclass(frozen=True)
class SetStep:
    """Set status.stepIndex, status.step (``display``) and stepStartedAt; with a ``message``,
    also status.reasonCode and status.message (a step advance says why, without a new phase)."""

    index: int
    display: str
    at: datetime
    reason_code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class SetCondition:
    """Upsert one status condition (reconcile already chose lastTransitionTime)."""

    condition: observed.Condition


@dataclass(frozen=True)
class SetVerdict:
    """Set status.verdict (printer column)."""

    verdict: str


@dataclass(frozen=True)
class FreezeSettings:
    """Record the analysis settings in force in status.frozenSettings."""

    settings: observed.FrozenSettings


@dataclass(frozen=True)
class RecordDecision:
    """Append to the decision log; ``key`` is its idempotency key (one row per transition)."""

    kind: DecisionKind
    reason_code: str
    reason: str
    actor: str
    at: datetime
    evidence: Mapping[str, Any] = field(default_factory=dict)
    key: str = field(kw_only=True)


@dataclass(frozen=True)
class EmitEvent:
    """Emit a Kubernetes event on the Experiment."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class MarkRequestHandled:
    """Append the request id to status.handledRequests (keep the newest 100)."""

    request_id: str


@dataclass(frozen=True)
class RequeueAfter:
    """Reconcile again after ``delay`` (absent in terminal phases)."""

    delay: timedelta


Action = (
    SetWeight
    | PromoteRoute
    | FinalizeRoute
    | SetPhase
    | SetStep
    | SetCondition
    | SetVerdict
    | FreezeSettings
    | RecordDecision
    | EmitEvent
    | MarkRequestHandled
    | RequeueAfter
)

A = TypeVar("A")


@dataclass(frozen=True)
class Plan:
    """The ordered actions of one tick."""

    actions: tuple[Action, ...] = ()

    def of_type(self, kind: type[A]) -> tuple[A, ...]:
        """The actions of one type, in order."""
        return tuple(a for a in self.actions if isinstance(a, kind))

    def first(self, kind: type[A]) -> A | None:
        """The first action of one type, if any."""
        found = self.of_type(kind)
        return found[0] if found else None

    @property
    def phase(self) -> observed.Phase | None:
        """The phase this plan moves to, if it changes the phase."""
        action = self.first(SetPhase)
        return None if action is None else action.phase
