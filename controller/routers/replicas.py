"""Replicas router: split traffic by scaling the champion and challenger Deployments.

For setups with one Service selecting the pods of both Deployments: each pod gets about the same
share, so the challenger's share is its fraction of the ready replicas. With ``T`` total replicas
and challenger weight ``w`` the challenger gets ``round_half_up(T * w / 100)`` replicas, at least 1
when ``w > 0`` and at most ``T - 1`` when ``w < 100`` (so both sides serve while the experiment
runs, if ``T >= 2``); the champion gets the rest (see :func:`split`). ``observe`` reports as
weights the split of ``spec.replicas`` (rounded to whole percent) and as ``challenger_share`` the
ratio actually achieved, ``ready_challenger / (ready_challenger + ready_champion)`` from
``status.readyReplicas`` — the number the sample-ratio check needs.

Unlike the other routers this one does not refuse weights for a challenger that is not ready:
scaling it up is how it becomes ready, and the Service sends traffic only to ready pods. A
challenger scaled to zero counts as ready (nothing was asked of it yet); once scaled up, it is
ready when its Deployment is. Scaling
up goes first (the challenger when its share grows, else the champion) so capacity never dips.
Both Deployments carry the owner annotation.
"""

from __future__ import annotations

from typing import Any

from controller.routers import base, objects

Body = dict[str, Any]
Ref = objects.Ref


def split(total: int, challenger_weight: int) -> tuple[int, int]:
    """(champion, challenger) replicas for a weight; a pure table-tested function."""
    challenger = int(total * challenger_weight / 100 + 0.5)
    if challenger_weight > 0:
        challenger = max(challenger, 1)
    if challenger_weight < 100 and total >= 2:
        challenger = min(challenger, total - 1)
    challenger = min(challenger, total)
    return total - challenger, challenger


def _replicas(deployment: Body) -> int:
    return int((deployment.get("spec") or {}).get("replicas", 1))


def _ready(deployment: Body) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


class ReplicasRouter(objects.KubeRouter):
    """Traffic split by the replica counts of two Deployments (apps/v1)."""

    readiness_gate = False

    @property
    def _champion(self) -> Ref:
        return objects.deployment_ref(self.config.namespace, self.config.champion.deployment_name)

    @property
    def _challenger(self) -> Ref:
        return objects.deployment_ref(self.config.namespace, self.config.challenger.deployment_name)

    def _refs(self) -> list[tuple[Ref, bool]]:
        return [(self._champion, True), (self._challenger, True)]

    def _pair(self, objs: dict[Ref, Body | None]) -> tuple[Body, Body]:
        champion, challenger = objs[self._champion], objs[self._challenger]
        assert champion is not None and challenger is not None
        return champion, challenger

    def _state(self, objs: dict[Ref, Body | None]) -> base.RouteState:
        champion, challenger = self._pair(objs)
        n_champion, n_challenger = _replicas(champion), _replicas(challenger)
        weight = base.percent(n_challenger, n_champion + n_challenger)
        ready_champion, ready_challenger = _ready(champion), _ready(challenger)
        ready_total = ready_champion + ready_challenger
        owners = [o for o in map(objects.owner_of, (champion, challenger)) if o is not None]
        foreign = [o for o in owners if o != self.config.owner]
        return base.RouteState(
            route=f"Deployments {self.config.namespace}/{self._champion.name} and "
            f"{self.config.namespace}/{self._challenger.name}",
            champion_weight=100 - weight,
            challenger_weight=weight,
            # scaled to zero there is nothing to wait for: scaling up is how it becomes ready
            challenger_ready=n_challenger == 0 or objects.deployment_ready(challenger),
            owner=foreign[0] if foreign else owners[0] if owners else None,
            resource_version="/".join(
                d["metadata"]["resourceVersion"] for d in (champion, challenger)
            ),
            challenger_share=ready_challenger / ready_total if ready_total else weight / 100,
        )

    def _patches(self, objs: dict[Ref, Body | None], target: base.Target) -> list[tuple[Ref, Body]]:
        champion, challenger = self._pair(objs)
        if target.challenger_weight is None:
            wanted = (_replicas(champion), _replicas(challenger))
        else:
            wanted = split(self.config.total_replicas, target.challenger_weight)
        patches: list[tuple[Ref, Body]] = []
        for ref, obj, replicas in (
            (self._champion, champion, wanted[0]),
            (self._challenger, challenger, wanted[1]),
        ):
            patch = objects.owner_patch(obj, target)
            if _replicas(obj) != replicas:
                patch = {**patch, "spec": {"replicas": replicas}}
            if patch:
                patches.append((ref, patch))
        if wanted[1] > _replicas(challenger):
            patches.reverse()  # grow the challenger before shrinking the champion
        return patches
