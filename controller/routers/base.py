"""The traffic-router interface: configuration, observed state, errors and the ownership policy.

A router moves traffic between the champion and the challenger and reports the split; it decides
nothing about *when* to move it (that is ``reconcile``'s job). Every implementation — Gateway API,
Istio, KServe, replicas, and the in-memory fake — follows the same contract:

* ``observe()`` reads; the other methods are idempotent writes that return the state re-read after
  the write (verified: a write the server did not keep raises :class:`RouteVerifyError`);
* writes are guarded by ``metadata.resourceVersion``; on a 409 the router re-reads and retries, at
  most ``RouterConfig.max_attempts`` times (then :class:`RouteConflictError`);
* one Experiment per routing object: the annotation ``canaryctl.dev/owner: <namespace>/<name>`` is
  set by ``claim()``/``apply()`` and removed by ``promote()``/``finalize()``; another owner makes
  ``claim``/``apply``/``promote`` raise :class:`RouteOwnedError`. ``finalize`` acts only while this
  Experiment owns the object, so it never undoes a promotion (which released it) nor touches
  another Experiment's route. The operator claims the route when the Baseline starts (at 0 %,
  ``reconcile`` plans ``ClaimRoute``), and the first ``apply()`` claims it otherwise, so a
  rollback always has something to do;
* traffic never goes to a challenger that is not ready: a weight above 0 raises
  :class:`ChallengerNotReadyError` (the replicas router is the exception, see its module).

This module holds only values and pure functions; no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Protocol

from controller.experiment import spec as experiment
from controller.experiment.spec import RouterKind as RouterKind

OWNER_ANNOTATION = "canaryctl.dev/owner"


class Action(enum.StrEnum):
    CLAIM = "claim"
    APPLY = "apply"
    PROMOTE = "promote"
    FINALIZE = "finalize"


@dataclasses.dataclass(frozen=True)
class Backend:
    """One side of the experiment (``spec.champion`` / ``spec.challenger``).

    ``name`` is the model's name; ``service`` the Service that the route points at and
    ``deployment`` the Deployment whose readiness gates traffic (or that the replicas router
    scales). Both default to ``name``.
    """

    name: str
    service: str | None = None
    deployment: str | None = None

    @property
    def service_name(self) -> str:
        return self.service or self.name

    @property
    def deployment_name(self) -> str:
        return self.deployment or self.name


@dataclasses.dataclass(frozen=True)
class RouterConfig:
    """What a router needs; the Experiment spec maps its router and backends onto these fields.

    Fields:
        kind: the router (the single key set under ``spec.router``).
        namespace: namespace of the Experiment and of every object the router touches.
        owner: ``<namespace>/<name>`` of the Experiment; written to the owner annotation.
        champion, challenger: the two backends.
        route: the routing object's name — ``gatewayAPI.httpRoute``, ``istio.virtualService`` or
            ``kserve.inferenceService``; unused by the replicas router.
        index: ``gatewayAPI.ruleIndex`` (into ``spec.rules``) or ``istio.routeIndex`` (into
            ``spec.http``); 0 by default.
        host: ``istio.host``: the destination host when the two sides are subsets of one host.
        champion_subset, challenger_subset: ``istio.championSubset``/``challengerSubset``; when
            set, destinations are matched by subset (and ``host`` if given), else by host equal
            to the backend's service name (or its ``<service>.<...>`` FQDN).
        total_replicas: ``replicas.totalReplicas``: champion + challenger replicas.
        max_attempts: bound on read-modify-write attempts when writes meet 409 conflicts.
    """

    kind: RouterKind
    namespace: str
    owner: str
    champion: Backend
    challenger: Backend
    route: str = ""
    index: int = 0
    host: str | None = None
    champion_subset: str | None = None
    challenger_subset: str | None = None
    total_replicas: int = 0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.kind is not RouterKind.REPLICAS and not self.route:
            raise ValueError(f"route: the {self.kind} router needs the routing object's name")
        if self.kind is RouterKind.REPLICAS and self.total_replicas < 1:
            raise ValueError("total_replicas: the replicas router needs at least 1")
        if self.champion.name == self.challenger.name:
            raise ValueError(f"challenger: must differ from the champion ({self.champion.name!r})")
        if self.index < 0:
            raise ValueError(f"index: must be >= 0, got {self.index}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts: must be >= 1, got {self.max_attempts}")


@dataclasses.dataclass(frozen=True)
class RouteState:
    """The split as the router sees it.

    ``champion_weight + challenger_weight == 100`` is the *configured* split; ``challenger_share``
    is the fraction of traffic that actually reaches the challenger as far as the router can
    observe it (KServe: ``status.components.predictor.traffic``; replicas: the ratio of ready
    replicas; Gateway API/Istio: the configured weight). ``owner`` is the owner annotation's value
    or ``None``; ``resource_version`` is the routing object's (replicas: both Deployments', joined
    by ``/``); ``route`` names the object(s) for messages.
    """

    route: str
    champion_weight: int
    challenger_weight: int
    challenger_ready: bool
    owner: str | None
    resource_version: str
    challenger_share: float


@dataclasses.dataclass(frozen=True)
class Target:
    """What a write must achieve: ``challenger_weight=None`` keeps the weights (a claim)."""

    challenger_weight: int | None
    owner: str | None
    promoted: bool = False


class RouterError(Exception):
    """Base of the router errors; the message names the Kubernetes object."""


class RouteNotFoundError(RouterError):
    """The routing object (or, for the replicas router, a Deployment) does not exist."""


class BackendNotFoundError(RouterError):
    """The routing object has no rule/route/destination for the champion or the challenger."""


class RouteOwnedError(RouterError):
    """Another Experiment owns the routing object."""


class ChallengerNotReadyError(RouterError):
    """Traffic was asked for a challenger whose pods are not ready."""


class RouteConflictError(RouterError):
    """Writes kept meeting 409 conflicts for ``max_attempts`` attempts."""


class RouteVerifyError(RouterError):
    """The object re-read after a successful write does not show the written split."""


class TrafficRouter(Protocol):
    """The interface every router implements; see the module docstring for the contract."""

    config: RouterConfig

    def observe(self) -> RouteState: ...

    def claim(self) -> RouteState: ...

    def apply(self, challenger_weight: int) -> RouteState: ...

    def promote(self) -> RouteState: ...

    def finalize(self) -> RouteState: ...


def config_for(
    namespace: str,
    name: str,
    champion: experiment.Arm,
    challenger: experiment.Arm,
    router: experiment.Router,
) -> RouterConfig:
    """The config of Experiment ``namespace/name`` from its typed arms and router."""
    where: dict[str, Any] = {}
    if isinstance(router, experiment.GatewayAPIRouter):
        where = {"route": router.http_route, "index": router.rule_index}
    elif isinstance(router, experiment.IstioRouter):
        where = {
            "route": router.virtual_service,
            "index": router.route_index,
            "host": router.host,
            "champion_subset": router.champion_subset,
            "challenger_subset": router.challenger_subset,
        }
    elif isinstance(router, experiment.KServeRouter):
        where = {"route": router.inference_service}
    else:
        where = {"total_replicas": router.total_replicas}
    return RouterConfig(
        kind=router.kind,
        namespace=namespace,
        owner=f"{namespace}/{name}",
        champion=Backend(champion.name, champion.service, champion.deployment),
        challenger=Backend(challenger.name, challenger.service, challenger.deployment),
        **where,
    )


_ROUTE_KINDS = {
    RouterKind.GATEWAY_API: "HTTPRoute",
    RouterKind.ISTIO: "VirtualService",
    RouterKind.KSERVE: "InferenceService",
}


def routing_objects(config: RouterConfig) -> frozenset[str]:
    """The objects a router writes, as ``Kind namespace/name``.

    Two Experiments whose sets meet cannot run at once: the first to claim the objects
    owns them, the other holds (``RouteAvailable=False``) until they are released.
    """
    ns = config.namespace
    if config.kind is RouterKind.REPLICAS:
        return frozenset(
            f"Deployment {ns}/{b.deployment_name}" for b in (config.champion, config.challenger)
        )
    return frozenset({f"{_ROUTE_KINDS[config.kind]} {ns}/{config.route}"})


def check_weight(challenger_weight: int) -> int:
    if isinstance(challenger_weight, bool) or not 0 <= challenger_weight <= 100:
        raise ValueError(f"challenger_weight: must be in [0, 100], got {challenger_weight!r}")
    return challenger_weight


def plan(
    action: Action,
    state: RouteState,
    owner: str,
    challenger_weight: int = 0,
    *,
    readiness_gate: bool = True,
) -> Target | None:
    """Decide what a write must achieve, or ``None`` for nothing to do; raises on refusals."""
    if state.owner not in (None, owner):
        if action is Action.FINALIZE:
            return None  # not ours to roll back
        raise RouteOwnedError(f"{state.route} is owned by {state.owner}, not by {owner}")
    if action is Action.FINALIZE:
        return None if state.owner is None else Target(0, None)
    if action is Action.CLAIM:
        return Target(None, owner)
    target = (
        Target(100, None, promoted=True)
        if action is Action.PROMOTE
        else Target(check_weight(challenger_weight), owner)
    )
    if readiness_gate and target.challenger_weight and not state.challenger_ready:
        raise ChallengerNotReadyError(
            f"{state.route}: the challenger is not ready; refusing {target.challenger_weight}%"
        )
    return target


def percent(part: float, whole: float) -> int:
    """``part/whole`` in whole percent, rounded half up; 0 when ``whole`` is 0."""
    return int(100 * part / whole + 0.5) if whole > 0 else 0
