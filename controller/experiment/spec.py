"""The Experiment spec as typed, frozen values, Go-style durations and Kubernetes times.

Sits between the raw custom resource (validated by ``controller.experiment.validation``) and
everything that decides or acts: the reconcile function, the routers, the analysis
engine and the CLI all read an ``ExperimentSpec``, never the raw JSON. This module only
describes values; it does no validation beyond what building a value needs, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

API_GROUP = "canaryctl.dev"
API_VERSION = "v1alpha1"
KIND = "Experiment"
PLURAL = "experiments"

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
#: The same grammar as a JSON-schema pattern (used in the CRD).
DURATION_PATTERN = r"^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$"


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration such as ``"30s"``, ``"1h30m"`` or ``"250ms"`` (no sign)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"text: {text!r} is not a duration like '30s', '5m' or '2h'")
    pos = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"text: {text!r} is not a duration like '30s', '5m' or '2h'")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta as a Go-style duration (``"1h30m"``, ``"45s"``); inverse of parse."""
    total = value.total_seconds()
    if total < 0:
        raise ValueError("value: durations are never negative")
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{int(hours)}h")
    if minutes:
        parts.append(f"{int(minutes)}m")
    if seconds or not parts:
        parts.append(f"{seconds:g}s")
    return "".join(parts)


def k8s_time(when: datetime) -> str:
    """``when`` as Kubernetes writes times: RFC 3339 in UTC with a trailing ``Z``."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.isoformat().replace("+00:00", "Z")


def parse_k8s_time(text: str) -> datetime:
    """A Kubernetes time (``...Z`` or an explicit offset) as a datetime; inverse of ``k8s_time``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Phase(StrEnum):
    """Lifecycle phase of an Experiment (``status.phase``)."""

    PENDING = "Pending"
    BASELINE = "Baseline"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    AWAITING_PROMOTION = "AwaitingPromotion"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        """True for phases an experiment never leaves."""
        return self in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED)


#: ``status.phase`` values an experiment never leaves (for readers of raw status).
TERMINAL_PHASES = frozenset(phase.value for phase in Phase if phase.terminal)


class Verdict(StrEnum):
    """Outcome of a guardrail, or of the whole analysis (values as ``analysis.Verdict``, mapped in ``operate``)."""

    PASS = "pass"
    FAIL = "fail"
    CONTINUE = "continue"


class Scale(StrEnum):
    """What a guardrail's estimate and bounds measure."""

    RELATIVE = "relative"  # B/A − 1, a fraction of the champion's mean
    ABSOLUTE = "absolute"  # B − A, in the metric's unit
    RATIO = "ratio"  # p_B / p_A of exceedances or errors


class RouterKind(StrEnum):
    """Which traffic router splits requests between the two arms."""

    GATEWAY_API = "gatewayAPI"
    ISTIO = "istio"
    KSERVE = "kserve"
    REPLICAS = "replicas"


class GuardrailKind(StrEnum):
    """The tests the analysis engine knows (STATISTICS.md §1–3)."""

    MEAN = "mean"
    TAIL = "tail"
    RATE = "rate"
    LATENCY = "latency"


class Direction(StrEnum):
    """Which way a mean metric should move."""

    HIGHER_IS_BETTER = "higherIsBetter"
    LOWER_IS_BETTER = "lowerIsBetter"


class MarginKind(StrEnum):
    """How a mean guardrail's tolerated change is expressed."""

    RELATIVE = "relative"
    ABSOLUTE = "absolute"


class InconclusivePolicy(StrEnum):
    """What maxDuration reached without PASS on every guardrail leads to."""

    ROLLBACK = "rollback"  # the default: inconclusive means not shown safe
    PROMOTE = "promote"  # opt-in: promote when no guardrail failed ("no harm found")


class PromotionMode(StrEnum):
    """Whether passing the last step promotes on its own or waits for a person."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"


@dataclass(frozen=True)
class Arm:
    """One side of the experiment: the champion or the challenger."""

    name: str
    service: str
    deployment: str


@dataclass(frozen=True)
class GatewayAPIRouter:
    """A Gateway API ``HTTPRoute``; weights are set on the ``backendRefs`` of one rule."""

    http_route: str
    rule_index: int = 0
    kind: Literal[RouterKind.GATEWAY_API] = RouterKind.GATEWAY_API


@dataclass(frozen=True)
class IstioRouter:
    """An Istio ``VirtualService``; weights are set on one HTTP route's destinations."""

    virtual_service: str
    route_index: int = 0
    host: str | None = None
    champion_subset: str | None = None
    challenger_subset: str | None = None
    kind: Literal[RouterKind.ISTIO] = RouterKind.ISTIO


@dataclass(frozen=True)
class KServeRouter:
    """KServe ``InferenceService``: the latest revision gets ``canaryTrafficPercent``."""

    inference_service: str
    kind: Literal[RouterKind.KSERVE] = RouterKind.KSERVE


@dataclass(frozen=True)
class ReplicasRouter:
    """Two Deployments scaled so that their replica ratio approximates the weight."""

    total_replicas: int
    kind: Literal[RouterKind.REPLICAS] = RouterKind.REPLICAS


Router = GatewayAPIRouter | IstioRouter | KServeRouter | ReplicasRouter


@dataclass(frozen=True)
class Step:
    """A constant challenger weight held for at least a duration and a sample count per arm."""

    weight: int
    min_duration: timedelta
    min_samples: int


@dataclass(frozen=True)
class Margin:
    """Tolerated change of a mean: a fraction of the champion (relative) or a value (absolute)."""

    kind: MarginKind
    value: float


@dataclass(frozen=True)
class FromBaseline:
    """A value derived from the champion's baseline period: a quantile, inflated by ``margin``."""

    quantile: float
    margin: float = 0.0


@dataclass(frozen=True)
class MeanGuardrail:
    """Capped revenue per request must not drop by more than ``margin`` (mSPRT, §1)."""

    name: str
    margin: Margin
    direction: Direction = Direction.HIGHER_IS_BETTER
    kind: Literal[GuardrailKind.MEAN] = GuardrailKind.MEAN


@dataclass(frozen=True)
class TailGuardrail:
    """Share of requests slower than a threshold must not grow by more than ``kappa`` (§3)."""

    name: str
    kappa: float
    threshold_ms: float | None = None
    threshold_from_baseline: FromBaseline | None = None
    kind: Literal[GuardrailKind.TAIL] = GuardrailKind.TAIL


@dataclass(frozen=True)
class RateGuardrail:
    """Error rate must not grow by more than ``kappa`` (§3)."""

    name: str
    kappa: float
    kind: Literal[GuardrailKind.RATE] = GuardrailKind.RATE


@dataclass(frozen=True)
class LatencyGuardrail:
    """Geometric-mean latency must not grow by more than ``margin`` (a fraction; mean of log latency, §2).

    Lower is better: 0.05 tolerates a challenger 5 % slower. Tested as a mean of log latency
    with the absolute margin ln(1 + ``margin``), which is the same hypothesis exactly.
    """

    name: str
    margin: float
    kind: Literal[GuardrailKind.LATENCY] = GuardrailKind.LATENCY


Guardrail = MeanGuardrail | TailGuardrail | RateGuardrail | LatencyGuardrail


@dataclass(frozen=True)
class BurnIn:
    """The data each test needs before it may decide (its eligibility; docs/statistics.md).

    ``min_requests`` and ``min_non_zero_revenue``: in a step's smaller arm, for a mean
    (revenue) guardrail (§2); ``min_events``: slow requests or errors, both arms, for a
    tail or rate guardrail; ``min_srm_requests``: requests in the smaller arm for the SRM
    check.
    """

    min_requests: int
    min_non_zero_revenue: int
    min_events: int
    min_srm_requests: int


@dataclass(frozen=True)
class RevenueCap:
    """Per-request revenue cap: an explicit value or a quantile of the champion's baseline."""

    value: float | None = None
    from_baseline: FromBaseline | None = None


@dataclass(frozen=True)
class Baseline:
    """A period with the challenger at 0 % to measure the champion (cap, latency threshold)."""

    duration: timedelta


@dataclass(frozen=True)
class Tuning:
    """Optional tuning of the sequential tests."""

    samples_per_arm: int | None = None


@dataclass(frozen=True)
class Analysis:
    """Settings of the analysis engine; frozen and recorded when Progressing begins."""

    interval: timedelta
    alpha: float
    guardrails: tuple[Guardrail, ...]
    burn_in: BurnIn
    revenue_cap: RevenueCap | None
    baseline: Baseline | None
    srm_enabled: bool
    allowed_lateness: timedelta
    tuning: Tuning
    on_inconclusive: InconclusivePolicy = InconclusivePolicy.ROLLBACK

    @property
    def needs_baseline(self) -> bool:
        """True when the revenue cap or a latency threshold is derived from a baseline."""
        if self.revenue_cap is not None and self.revenue_cap.from_baseline is not None:
            return True
        return any(
            isinstance(g, TailGuardrail) and g.threshold_from_baseline is not None
            for g in self.guardrails
        )


@dataclass(frozen=True)
class FailurePolicy:
    """How long to hold before rolling back when data, the database or the challenger fail."""

    missing_data_grace: timedelta
    database_unreachable_grace: timedelta
    challenger_not_ready_grace: timedelta


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated Experiment: what to release, how to route, step and judge it."""

    champion: Arm
    challenger: Arm
    router: Router
    steps: tuple[Step, ...]
    analysis: Analysis
    promotion: PromotionMode
    failure_policy: FailurePolicy
    max_duration: timedelta
