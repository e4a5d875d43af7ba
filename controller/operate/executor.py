"""The one executor: applies a reconcile ``Plan`` to the router, the store and the cluster.

Reconcile decides; this module acts, in an order chosen for crash safety: the route first
(a rollback is real before anything says so), then the database in one transaction: the
decision log (idempotency keys make a replayed transition write its row once), the phase
and the settings freeze; then events, then the status as one patch
guarded by the resourceVersion the tick read. A crash at any point leaves the status
behind the world, never ahead of it, so the next tick re-decides the same transition and
every write it repeats is a no-op. It makes no decisions and reads no clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
import sqlalchemy as sa

from controller.decide import actions as p
from controller.decide import status as st
from controller.experiment import frozen
from controller.routers import base as routers
from controller.storage import decisions as decision_log
from controller.storage import experiments

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "canaryctl.dev", "v1alpha1", "experiments"
FAULT_POINTS = ("after_decide", "after_route", "after_log", "after_status")
FaultHook = Callable[[str], None]


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


def _decision_evidence(action: p.RecordDecision, extra: Mapping[str, Any]) -> dict[str, Any]:
    evidence = dict(action.evidence)
    if extra:
        evidence.setdefault("analysis", dict(extra))
    return evidence


def apply(
    plan: p.Plan,
    target: Target,
    *,
    router: routers.TrafficRouter | None,
    engine: sa.Engine | None,
    api: kubernetes.client.ApiClient,
    extra_status: Mapping[str, Any] | None = None,
    evidence: Mapping[str, Any] | None = None,
    fault: FaultHook | None = None,
    now: datetime,
) -> Outcome:
    """Apply ``plan`` for ``target``; raises on the first failure (nothing after it runs)."""
    outcome = Outcome()
    hit = fault or (lambda point: None)
    hit("after_decide")
    for action in plan.actions:
        if isinstance(action, p.SetWeight | p.PromoteRoute | p.FinalizeRoute):
            if router is None:
                raise routers.RouterError(
                    f"{target.key}: no router to apply {type(action).__name__}"
                )
            if isinstance(action, p.SetWeight):
                router.apply(action.weight)
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
    if engine is not None and target.experiment_id is not None:
        with engine.begin() as conn:  # one unit of work: the log, the phase, the freeze
            for d in decisions:
                row = decision_log.append_decision(
                    conn,
                    target.experiment_id,
                    at=d.at,
                    kind=d.kind.value,
                    actor=d.actor,
                    reason_code=d.reason_code,
                    reason=d.reason,
                    evidence=_decision_evidence(d, evidence or {}),
                    idempotency_key=d.key,
                )
                outcome.decisions_written += row is not None
            if phase is not None:
                experiments.set_phase(conn, target.experiment_id, phase.phase.value, now=phase.at)
            if freeze is not None:
                snapshot = freeze.settings.snapshot
                experiments.freeze_settings(
                    conn,
                    target.key,
                    snapshot,
                    now=freeze.settings.frozen_at,
                    revenue_cap=_cap(snapshot, snapshot.get("derived", {})),
                    allowed_lateness_seconds=_lateness_seconds(snapshot),
                )
    elif decisions:
        logger.warning(
            "%s: database unreachable; %d decision(s) held until it is back",
            target.key,
            len(decisions),
        )
        outcome.held_decisions.extend(
            {
                "at": d.at.isoformat(),
                "kind": d.kind.value,
                "actor": d.actor,
                "reason_code": d.reason_code,
                "reason": d.reason,
                "evidence": _decision_evidence(d, evidence or {}),
                "idempotency_key": d.key,
            }
            for d in decisions
        )
    if decisions:
        hit("after_log")
    core = kubernetes.client.CoreV1Api(api)
    for event in plan.of_type(p.EmitEvent):
        _emit(core, target, event, now)
    new_status: dict[str, Any] = dict(st.apply_plan(plan, dict(target.status)))  # type: ignore[arg-type]
    new_status.update(extra_status or {})
    pending = list(new_status.get("pendingDecisions", [])) + outcome.held_decisions
    if pending or "pendingDecisions" in target.status:
        new_status["pendingDecisions"] = pending
    new_status["observedGeneration"] = target.generation
    if new_status != dict(target.status):
        kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            target.namespace,
            PLURAL,
            target.name,
            {"metadata": {"resourceVersion": target.resource_version}, "status": new_status},
        )
        outcome.status_written = True
        hit("after_status")
    return outcome


def _cap(snapshot: Mapping[str, Any], derived: Mapping[str, Any]) -> float | None:
    """The revenue cap in force: explicit in the analysis settings, or derived from the baseline."""
    cap = snapshot.get("analysis", {}).get("revenueCap") or {}
    if cap.get("value") is not None:
        return float(cap["value"])
    value = derived.get("revenueCap")
    return None if value is None else float(value)


def _lateness_seconds(snapshot: Mapping[str, Any]) -> int:
    """The allowed lateness of the frozen analysis settings, in whole seconds (for ingest)."""
    return int(frozen.analysis_from_snapshot(snapshot).allowed_lateness.total_seconds())


def _emit(
    core: kubernetes.client.CoreV1Api, target: Target, event: p.EmitEvent, at: datetime
) -> None:
    when = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
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
        core.create_namespaced_event(target.namespace, body)
    except kubernetes.client.ApiException as exc:  # events are best effort
        logger.warning("%s: could not emit event %s: %s", target.key, event.reason, exc.reason)
