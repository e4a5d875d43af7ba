"""Replicas router: split traffic by scaling the champion and challenger Deployments.

For setups with one Service selecting the pods of both Deployments: each pod gets about the same
share, so the challenger's share is its fraction of the ready replicas. With ``T`` total replicas
and challenger weight ``w`` the challenger gets ``round_half_up(T * w / 100)`` replicas, at least 1
when ``w > 0`` and at most ``T - 1`` when ``w < 100`` (so both sides serve while the experiment
runs, if ``T >= 2``); the champion gets the rest (see :func:`split`). ``observe`` reports as
weights the split of ``spec.replicas`` (rounded to whole percent) and as ``challenger_share`` the
ratio actually achieved, ``ready_challenger / (ready_challenger + ready_champion)`` from
``status.readyReplicas`` — the number the sample-ratio check needs.

Least privilege: the Deployments are read, and their replicas written only through the
``deployments/scale`` subresource, which reaches ``spec.replicas`` and nothing else (a
write to a Deployment itself could change its pod template, i.e. run any code). So the
owner cannot be an annotation on the Deployments: each Deployment's owner is the holder of
a ``coordination.k8s.io`` Lease named ``canaryctl-deployment-<name>`` in the namespace
(created on the first claim, its ``holderIdentity`` cleared on release).

Unlike the other routers this one does not refuse weights for a challenger that is not ready:
scaling it up is how it becomes ready, and the Service sends traffic only to ready pods. A
challenger scaled to zero counts as ready (nothing was asked of it yet); once scaled up, it is
ready when its Deployment is. Scaling
up goes first (the challenger when its share grows, else the champion) so capacity never dips.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from controller.routers import base, objects

Body = dict[str, Any]
Ref = objects.Ref
LEASE_PREFIX = "canaryctl-deployment-"


def lease_ref(namespace: str, deployment: str) -> Ref:
    """The Lease whose holder owns a Deployment for the replicas router."""
    name = (LEASE_PREFIX + deployment)[:253]
    return Ref("coordination.k8s.io", "v1", "leases", "Lease", namespace, name)


def _holder(lease: Body | None) -> str | None:
    return None if lease is None else (lease.get("spec") or {}).get("holderIdentity") or None


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

    @property
    def _leases(self) -> tuple[Ref, Ref]:
        ns, c = self.config.namespace, self.config
        return lease_ref(ns, c.champion.deployment_name), lease_ref(
            ns, c.challenger.deployment_name
        )

    def _refs(self) -> list[tuple[Ref, bool]]:
        return [(self._champion, True), (self._challenger, True)] + [
            (lease, False) for lease in self._leases
        ]

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
        owners = [o for o in (_holder(objs[lease]) for lease in self._leases) if o is not None]
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
        scales: list[tuple[Ref, Body]] = [
            (dataclasses.replace(ref, subresource="scale"), {"spec": {"replicas": replicas}})
            for ref, obj, replicas in (
                (self._champion, champion, wanted[0]),
                (self._challenger, challenger, wanted[1]),
            )
            if _replicas(obj) != replicas
        ]
        if wanted[1] > _replicas(challenger):
            scales.reverse()  # grow the challenger before shrinking the champion
        owners: list[tuple[Ref, Body]] = []
        for lease in self._leases:
            current = objs[lease]
            if _holder(current) == target.owner:
                continue
            if current is None:
                owners.append((lease, self._new_lease(lease, target.owner)))
            else:
                owners.append((lease, {"spec": {"holderIdentity": target.owner}}))
        # claimed before any replica moves; released once they are where they should be
        return owners + scales if target.owner is not None else scales + owners

    def _new_lease(self, lease: Ref, owner: str | None) -> Body:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": lease.name,
                "namespace": lease.namespace,
                "labels": {"app.kubernetes.io/managed-by": "canaryctl"},
            },
            "spec": {"holderIdentity": owner},
        }
