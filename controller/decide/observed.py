"""What ``reconcile`` reads: the stored status, the world as observed, the analysis summary.

The operator fills these values each tick (status from the custom resource, weight and
readiness from the router, counts and freshness from Postgres, the request from the
annotation, verdicts from the analysis engine) and passes them to the pure
``reconcile.reconcile``. Values only; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from controller.decide import manual
from controller.experiment.frozen import FrozenSettings
from controller.experiment.spec import Phase as Phase
from controller.experiment.spec import Verdict as Verdict


class ConditionStatus(StrEnum):
    """Kubernetes condition status."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """The conditions reconcile maintains."""

    SPEC_VALID = "SpecValid"
    SETTINGS_FROZEN = "SettingsFrozen"
    CHALLENGER_READY = "ChallengerReady"
    DATABASE_REACHABLE = "DatabaseReachable"
    DATA_FRESH = "DataFresh"
    ANALYSIS_AVAILABLE = "AnalysisAvailable"
    BASELINE_READY = "BaselineReady"
    ROUTE_FOUND = "RouteFound"
    ROUTE_AVAILABLE = "RouteAvailable"
    DECISION_FORECAST = "DecisionForecast"


#: The conditions whose False status holds an experiment (no step up, no start, no
#: promotion), each with the code the hold goes by in ``Tick.holds``, in the manual
#: request rules and in the CLI. The one list of holds: ``safety`` sets these conditions,
#: ``stepping`` and ``manual.refusal`` read the codes, ``canaryctl list`` and ``status``
#: show the conditions. ``DecisionForecast`` is a condition but not a hold: a forecast
#: that a healthy challenger will not be promoted in time warns; it never stops a step.
HOLDS: Mapping[ConditionType, str] = {
    ConditionType.ROUTE_FOUND: "route_not_found",
    ConditionType.ROUTE_AVAILABLE: "route_owned",
    ConditionType.DATABASE_REACHABLE: "database_unreachable",
    ConditionType.DATA_FRESH: "no_data",
    ConditionType.ANALYSIS_AVAILABLE: "analysis_unavailable",
    ConditionType.CHALLENGER_READY: "challenger_not_ready",
}


@dataclass(frozen=True)
class Condition:
    """One stored condition; ``last_transition_time`` says since when it has this status."""

    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: datetime


@dataclass(frozen=True)
class StoredStatus:
    """The Experiment's status as stored (what earlier ticks decided)."""

    phase: Phase = Phase.PENDING
    phase_started_at: datetime | None = None
    started_at: datetime | None = None
    step_index: int = 0
    step_started_at: datetime | None = None
    frozen: FrozenSettings | None = None
    handled_requests: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    verdict: str | None = None

    def condition(self, type_: ConditionType) -> Condition | None:
        """The stored condition of this type, if any."""
        return next((c for c in self.conditions if c.type == type_), None)


@dataclass(frozen=True)
class RouterState:
    """What the traffic router reports now.

    ``route`` names the routing object(s) for messages; ``other_owner`` is the Experiment
    that owns them when it is not this one; ``missing`` is a reason (``RouteNotFound`` or
    ``BackendNotFound``) and a sentence saying what could not be found (the routing object, a
    Deployment, a backend in it) when the router could not read the split.
    """

    challenger_weight: int
    challenger_ready: bool
    route: str = ""
    other_owner: str | None = None
    missing: tuple[str, str] | None = None


@dataclass(frozen=True)
class ArmCounts:
    """Finalised requests per arm in the current step."""

    champion: int = 0
    challenger: int = 0

    @property
    def smaller(self) -> int:
        """Requests in the smaller arm."""
        return min(self.champion, self.challenger)


@dataclass(frozen=True)
class BaselineResult:
    """Values derived from the champion's baseline period by the analysis engine."""

    revenue_cap: float | None = None
    thresholds_ms: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ForecastNote:
    """The decision forecast the operator computed at a step start (``operate.forecasting``).

    ``likely``: a healthy challenger is expected to be promoted before maxDuration;
    ``message`` names the blocking guardrail and its fix; ``document`` is
    ``status.forecast``.
    """

    likely: bool
    reason: str
    message: str
    document: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """Everything reconcile knows about the world at one tick."""

    created_at: datetime
    status: StoredStatus
    router: RouterState
    samples: ArmCounts
    database_reachable: bool
    last_data_at: datetime | None = None
    baseline: BaselineResult | None = None
    request: manual.ManualRequest | manual.MalformedRequest | None = None
    held_flushed: bool = False  # decisions held in status.pendingDecisions reached the log
    forecast: ForecastNote | None = None  # recomputed at a step start, else None


@dataclass(frozen=True)
class Deleting:
    """What the operator saw of an Experiment being deleted (``deletion.decide`` reads it)."""

    key: str  # namespace/name
    router_found: bool
    route_owner: str | None  # the Experiment the route says it belongs to
    challenger_weight: int
    finalizer_present: bool
    database_reachable: bool


@dataclass(frozen=True)
class GuardrailVerdict:
    """One guardrail's verdict with a machine-readable reason code and a sentence."""

    name: str
    verdict: Verdict
    reason_code: str
    reason: str
    # The largest harm the confidence sequence could not exclude (the bound on the harmful
    # side, on ``scale``), and the margin line it is judged against: "no harm found" reads it.
    harm_bound: float | None = None
    margin_line: float | None = None
    scale: str = ""


@dataclass(frozen=True)
class Verdicts:
    """The controller-side summary of one analysis run (None when it could not run)."""

    overall: Verdict
    guardrails: tuple[GuardrailVerdict, ...]
    srm_mismatch: bool = False
    burn_in_met: bool = False
    srm_reason: str = ""  # the analysis engine's sentence when the SRM check fired
    # What people read, made by the operator from the analysis: status.guardrails and
    # status.srm, and the statistics the decision log keeps as a decision's evidence.
    status_fields: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> tuple[GuardrailVerdict, ...]:
        """Guardrails whose verdict is FAIL."""
        return tuple(g for g in self.guardrails if g.verdict is Verdict.FAIL)

    @property
    def all_pass(self) -> bool:
        """PASS overall and on every guardrail, with the burn-in met."""
        return (
            self.overall is Verdict.PASS
            and self.burn_in_met
            and bool(self.guardrails)
            and all(g.verdict is Verdict.PASS for g in self.guardrails)
        )
