"""The actions ``reconcile`` decides and the executor applies, in order.

A ``Plan`` is a frozen tuple of actions plus the status fields that travel with it (the
samples and the analysis's figures, written on every tick). It carries every effect of a
tick: the executor applies the actions one by one and stops at the first failure (so a
route that could not be finalised is never reported as rolled back), and adds nothing of
its own. Every time in an action was chosen by reconcile from its ``now``; the executor
never reads a clock to fill a status field. Values only; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from controller.decide import observed
from controller.experiment import frozen

#: The actor of the decisions canaryctl takes by itself (people's requests name the person).
ACTOR = "canaryctl"


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
class ClaimRoute:
    """Mark the route as this Experiment's without moving traffic (the Baseline starts at 0 %)."""


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
    """Record the frozen settings in status.frozenSettings and the database (whose cap and
    allowed lateness ingest applies from then on)."""

    settings: frozen.FrozenSettings


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
class RemoveFinalizer:
    """Let a deleted Experiment go: remove canaryctl's finalizer (last of a deletion)."""


@dataclass(frozen=True)
class RequeueAfter:
    """Reconcile again after ``delay`` (absent in terminal phases)."""

    delay: timedelta


Action = (
    SetWeight
    | ClaimRoute
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
    | RemoveFinalizer
    | RequeueAfter
)

A = TypeVar("A")


@dataclass(frozen=True)
class Plan:
    """The ordered actions of one tick, and how its status and decisions are written.

    ``status_fields`` are merged into the status as they are (``samples``, and after an
    analysis ``lastAnalysisAt``, ``guardrails`` and ``srm``; ``pendingDecisions: []`` once
    held decisions reached the log). ``hold_decisions``: the database is away, so the
    decisions wait in ``status.pendingDecisions``. ``write_status`` is False for a
    deletion (the resource is going away).
    """

    actions: tuple[Action, ...] = ()
    status_fields: Mapping[str, Any] = field(default_factory=dict)
    hold_decisions: bool = False
    write_status: bool = True

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
