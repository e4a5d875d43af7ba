"""KServe router: ``spec.predictor.canaryTrafficPercent`` of an ``InferenceService``.

In KServe the challenger is the predictor's latest revision and the champion the previously rolled
out one; the Experiment starts once the predictor spec points at the challenger model (with
``canaryTrafficPercent: 0`` so nothing moves before the first step). ``apply(w)`` sets the percent,
``finalize()`` sets it to 0 (all traffic back on the previous revision), ``promote()`` removes it
(KServe then rolls the latest revision out to 100 %). Without the field the configured challenger
share is 100. Readiness and the observed split come from ``status`` written by KServe's controller:
ready means ``status.components.predictor.latestReadyRevision == latestCreatedRevision`` and the
``Ready`` condition is ``True``; ``challenger_share`` is the ``percent`` of the ``traffic`` entries
with ``latestRevision: true`` (the configured share until KServe reports traffic).
"""

from __future__ import annotations

from typing import Any

from controller.routers import base, objects

Body = dict[str, Any]
Ref = objects.Ref


def _predictor_status(isvc: Body) -> Body:
    return ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}


def canary_percent(isvc: Body) -> int | None:
    return ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")


def latest_ready(isvc: Body) -> bool:
    predictor = _predictor_status(isvc)
    created = predictor.get("latestCreatedRevision")
    conditions = (isvc.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return bool(created) and created == predictor.get("latestReadyRevision") and ready


def observed_share(isvc: Body) -> float | None:
    """Fraction of traffic on the latest revision per ``status``, or ``None`` if not reported."""
    traffic = _predictor_status(isvc).get("traffic")
    if not traffic:
        return None
    return sum(t.get("percent") or 0 for t in traffic if t.get("latestRevision")) / 100


def patch_for(isvc: Body, target: base.Target) -> Body:
    patch = objects.owner_patch(isvc, target)
    if target.challenger_weight is None:
        return patch
    predictor = isvc["spec"]["predictor"]
    wanted = None if target.promoted else target.challenger_weight
    if predictor.get("canaryTrafficPercent") == wanted and (
        wanted is None or "canaryTrafficPercent" in predictor
    ):
        return patch
    return {**patch, "spec": {"predictor": {"canaryTrafficPercent": wanted}}}


class KServeRouter(objects.KubeRouter):
    """Canary split of an ``InferenceService`` (serving.kserve.io/v1beta1)."""

    @property
    def _isvc(self) -> Ref:
        c = self.config
        return Ref(
            "serving.kserve.io",
            "v1beta1",
            "inferenceservices",
            "InferenceService",
            c.namespace,
            c.route,
        )

    def _refs(self) -> list[tuple[Ref, bool]]:
        return [(self._isvc, True)]

    def _state(self, objs: dict[Ref, Body | None]) -> base.RouteState:
        isvc = objs[self._isvc]
        assert isvc is not None
        if "predictor" not in (isvc.get("spec") or {}):
            raise base.BackendNotFoundError(f"{self._isvc} has no spec.predictor")
        percent = canary_percent(isvc)
        challenger = 100 if percent is None else int(percent)
        share = observed_share(isvc)
        return base.RouteState(
            route=str(self._isvc),
            champion_weight=100 - challenger,
            challenger_weight=challenger,
            challenger_ready=latest_ready(isvc),
            owner=objects.owner_of(isvc),
            resource_version=isvc["metadata"]["resourceVersion"],
            challenger_share=challenger / 100 if share is None else share,
        )

    def _patches(self, objs: dict[Ref, Body | None], target: base.Target) -> list[tuple[Ref, Body]]:
        isvc = objs[self._isvc]
        assert isvc is not None
        patch = patch_for(isvc, target)
        return [(self._isvc, patch)] if patch else []
