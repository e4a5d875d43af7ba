"""The one executor: applies a reconcile ``Plan`` to the router, the store and the cluster.

Reconcile decides; this module acts, in an order chosen for crash safety: the route first
(a rollback is real before anything says so), then the decision log (idempotency keys make
a replayed transition write its row once), then events, then the status as one patch
guarded by the resourceVersion the tick read, and last a deletion's finalizer. A crash at
any point leaves the status behind the world, never ahead of it, so the next tick
re-decides the same transition and every write it repeats is a no-op.

It makes no decisions and reads no clock: what to write, where decisions go while the
database is away (``Plan.hold_decisions``), the cap to freeze and the status fields all
come with the plan. It also owns the tick's two other writes: the finalizer patch and the
flush of held decisions.

With the operator's informer (``cache``) the status patch carries only what changed (no
request at all when nothing did), goes out as raw JSON, and the Experiment the API server
answers with goes into the cache; a 409 re-reads that one Experiment into the cache before
the error ends the tick. Without it (the benchmark's baseline) the whole status goes
through the generated client, as before the informers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeGuard

import kubernetes.client
import sqlalchemy as sa

from controller.decide import actions as p
from controller.decide import status as st
from controller.experiment import frozen, spec
from controller.routers import base as routers
from controller.routers import kubeapi
from controller.storage import decisions as decision_log
from controller.storage import experiments

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = spec.API_GROUP, spec.API_VERSION, spec.PLURAL
FINALIZER = "canaryctl.dev/finalizer"
#: Called with "after_decide", "after_route", "after_log" or "after_status" (crash tests).
FaultHook = Callable[[str], None]
#: Entered around every write; raises when this replica may no longer write (``shards.Fenced``).
Fence = Callable[[], contextlib.AbstractContextManager[None]]


class Cache(Protocol):
    """Where the Experiments are cached (``informer.Informer``): written objects go in."""

    def put(self, obj: dict[str, Any]) -> None: ...

    def refresh(self, namespace: str | None, name: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Target:
    """The Experiment a plan is for, as read at the start of the tick."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    status: Mapping[str, Any]
    experiment_id: int | None  # None when the database was unreachable
    finalizers: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Outcome:
    """What the executor did: route writes, decisions written, whether the status landed."""

    route_actions: list[str] = field(default_factory=list)
    decisions_written: int = 0
    status_written: bool = False
    held_decisions: list[dict[str, Any]] = field(default_factory=list)


def _held(d: p.RecordDecision) -> dict[str, Any]:
    """A decision as kept in status.pendingDecisions (the arguments of ``append_decision``)."""
    return {
        "at": d.at.isoformat(),
        "kind": d.kind.value,
        "actor": d.actor,
        "reason_code": d.reason_code,
        "reason": d.reason,
        "evidence": dict(d.evidence),
        "idempotency_key": d.key,
    }


def apply(
    plan: p.Plan,
    target: Target,
    *,
    router: routers.TrafficRouter | None,
    engine: sa.Engine | None,
    api: kubernetes.client.ApiClient,
    fault: FaultHook | None = None,
    fence: Fence = contextlib.nullcontext,
    now: datetime,
    cache: Cache | None = None,
) -> Outcome:
    """Apply ``plan`` for ``target``; raises on the first failure (nothing after it runs).

    Every write runs inside ``fence()``, which stops the plan when it raises.
    """
    outcome = Outcome()
    hit = fault or (lambda point: None)
    hit("after_decide")
    for action in plan.actions:
        if isinstance(action, p.SetWeight | p.ClaimRoute | p.PromoteRoute | p.FinalizeRoute):
            if router is None:
                raise routers.RouterError(
                    f"{target.key}: no router to apply {type(action).__name__}"
                )
            with fence():
                if isinstance(action, p.SetWeight):
                    router.apply(action.weight)
                elif isinstance(action, p.ClaimRoute):
                    router.claim()
                elif isinstance(action, p.PromoteRoute):
                    router.promote()
                else:
                    router.finalize()
            outcome.route_actions.append(type(action).__name__)
    if outcome.route_actions:
        hit("after_route")
    decisions = plan.of_type(p.RecordDecision)
    freeze = plan.first(p.FreezeSettings)
    phase = plan.first(p.SetPhase)
    if plan.hold_decisions:
        if decisions:
            logger.warning(
                "%s: database unreachable; %d decision(s) held until it is back",
                target.key,
                len(decisions),
            )
        outcome.held_decisions.extend(_held(d) for d in decisions)
    elif decisions or phase is not None or freeze is not None:
        if engine is None or target.experiment_id is None:
            raise ValueError(f"{target.key}: the plan writes to a database the tick did not reach")
        with fence(), engine.begin() as conn:
            for d in decisions:
                row = decision_log.append_decision(
                    conn,
                    target.experiment_id,
                    at=d.at,
                    kind=d.kind.value,
                    actor=d.actor,
                    reason_code=d.reason_code,
                    reason=d.reason,
                    evidence=dict(d.evidence),
                    idempotency_key=d.key,
                )
                outcome.decisions_written += row is not None
            if phase is not None:
                experiments.set_phase(conn, target.experiment_id, phase.phase.value, now=phase.at)
            if freeze is not None:
                settings = freeze.settings
                experiments.freeze_settings(
                    conn,
                    target.key,
                    frozen.to_json(settings),
                    now=settings.frozen_at,
                    revenue_cap=settings.revenue_cap,
                    allowed_lateness_seconds=int(
                        settings.analysis.allowed_lateness.total_seconds()
                    ),
                )
    if decisions:
        hit("after_log")
    core = kubernetes.client.CoreV1Api(api)
    for event in plan.of_type(p.EmitEvent):
        with fence():
            _emit(core, target, event, now, raw=cache is not None)
    if plan.write_status:
        with fence():
            if cache is None:
                _write_whole_status(api, plan, target, outcome)
            else:
                _write_status(api, plan, target, outcome, cache)
        if outcome.status_written:
            hit("after_status")
    if plan.first(p.RemoveFinalizer) is not None:
        remaining = [f for f in target.finalizers if f != FINALIZER]
        with fence():
            written = patch_finalizers(
                api, target.namespace, target.name, target.resource_version, remaining, cache
            )
        if cache is not None:
            cache.put(written)
    return outcome


def merge_patch_to(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``, and nothing more.

    Only what changed is in it (``{}`` when nothing did); keys ``old`` has and ``new`` lacks are
    ``None``, so the API server removes them (a merge patch keeps what it does not mention, and
    a stale ``status.srm.waiting`` or forecast would otherwise stay for good). A ``None`` in
    ``new`` means absent, as it does once stored. Lists are replaced whole, as a merge patch does.
    """
    out: dict[str, Any] = {}
    for key, value in new.items():
        if value is None:
            if key in old:
                out[key] = None
            continue
        if key not in old:
            out[key] = value
            continue
        before = old[key]
        if before == value:  # (a stored status holds no nulls: equal is unchanged)
            continue
        if _is_mapping(value) and _is_mapping(before):
            inner = merge_patch_to(before, value)
            if inner:
                out[key] = inner
        else:
            out[key] = value
    for key in old:
        if key not in new:
            out[key] = None
    return out


_SCALARS = (str, int, float, list, bool, type(None))


def _is_mapping(x: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(x, Mapping)``, quicker for the JSON values a status is made of."""
    return type(x) is dict or (not isinstance(x, _SCALARS) and isinstance(x, Mapping))


def _new_status(plan: p.Plan, target: Target, outcome: Outcome) -> dict[str, Any]:
    new_status: dict[str, Any] = dict(st.apply_plan(plan, dict(target.status)))  # type: ignore[arg-type]
    pending = list(new_status.get("pendingDecisions", [])) + outcome.held_decisions
    if pending or "pendingDecisions" in target.status:
        new_status["pendingDecisions"] = pending
    new_status["observedGeneration"] = target.generation
    return new_status


def _write_status(
    api: kubernetes.client.ApiClient, plan: p.Plan, target: Target, outcome: Outcome, cache: Cache
) -> None:
    """What the plan changes in the status, as one patch guarded by the resourceVersion (none if
    nothing changed); the answer goes into the cache, and a 409 re-reads the Experiment."""
    patch = merge_patch_to(target.status, _new_status(plan, target, outcome))
    if not patch:
        return
    where = kubeapi.path(GROUP, VERSION, PLURAL, target.namespace, target.name, "status")
    body = {"metadata": {"resourceVersion": target.resource_version}, "status": patch}
    try:
        written = kubeapi.request(api, "PATCH", where, body=body)
    except kubernetes.client.ApiException as exc:
        if exc.status == 409:
            cache.refresh(target.namespace, target.name)
        raise
    cache.put(written)
    outcome.status_written = True


def _whole_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` whole, with ``None`` for the keys it drops (the patch before the informers)."""
    out: dict[str, Any] = dict(new)
    for key, before in old.items():
        if key not in new:
            out[key] = None
        elif isinstance(before, Mapping) and isinstance(new[key], Mapping):
            out[key] = _whole_patch(before, new[key])
    return out


def _write_whole_status(
    api: kubernetes.client.ApiClient, plan: p.Plan, target: Target, outcome: Outcome
) -> None:
    """The whole status through the generated client (the benchmark's baseline)."""
    new_status = _new_status(plan, target, outcome)
    if new_status == dict(target.status):
        return
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        target.namespace,
        PLURAL,
        target.name,
        {
            "metadata": {"resourceVersion": target.resource_version},
            "status": _whole_patch(target.status, new_status),
        },
    )
    outcome.status_written = True


def patch_finalizers(
    api: kubernetes.client.ApiClient,
    namespace: str,
    name: str,
    resource_version: str,
    finalizers: list[str],
    cache: Cache | None = None,
) -> dict[str, Any]:
    """Set the Experiment's finalizers (guarded by the resourceVersion); the object after.

    A 409 re-reads the Experiment into ``cache`` (when given) before it is raised."""
    try:
        found: Any = kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}},
        )
    except kubernetes.client.ApiException as exc:
        if exc.status == 409 and cache is not None:
            cache.refresh(namespace, name)
        raise
    return dict(found)


def add_finalizer(
    api: kubernetes.client.ApiClient, body: Mapping[str, Any], cache: Cache | None = None
) -> dict[str, Any]:
    """Protect an Experiment's route from deletion before anything routes; the object after
    (also put into ``cache``, when given)."""
    meta = body["metadata"]
    finalizers = [*(meta.get("finalizers") or []), FINALIZER]
    written = patch_finalizers(
        api, meta["namespace"], meta["name"], meta["resourceVersion"], finalizers, cache
    )
    if cache is not None:
        cache.put(written)
    return written


def flush_held(engine: sa.Engine, experiment_id: int, pending: list[dict[str, Any]]) -> None:
    """Write the decisions held while the database was away (their keys make it once)."""
    with engine.begin() as conn:
        for d in pending:
            decision_log.append_decision(
                conn, experiment_id, **{**d, "at": datetime.fromisoformat(d["at"])}
            )


def _emit(
    core: kubernetes.client.CoreV1Api,
    target: Target,
    event: p.EmitEvent,
    at: datetime,
    *,
    raw: bool = False,
) -> None:
    """Create the Event (``raw``: as JSON straight to the connection pool, with the caches;
    else through the generated client, as before them)."""
    when = spec.k8s_time(at)
    body = {
        "metadata": {"generateName": f"{target.name}.", "namespace": target.namespace},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Experiment",
            "name": target.name,
            "namespace": target.namespace,
            "uid": target.uid,
        },
        "type": event.type.value,
        "reason": event.reason,
        "message": event.message,
        "source": {"component": "canaryctl-operator"},
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
    }
    try:
        if raw:
            where = kubeapi.path("", "v1", "events", target.namespace)
            kubeapi.request(
                core.api_client, "POST", where, body=body, content_type="application/json"
            )
        else:
            core.create_namespaced_event(target.namespace, body)  # type: ignore[arg-type]
    except kubernetes.client.ApiException as exc:  # events are best effort
        logger.warning("%s: could not emit event %s: %s", target.key, event.reason, exc.reason)
