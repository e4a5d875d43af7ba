"""An in-memory router with the same contract as the Kubernetes ones, for simulation and tests.

It keeps the split, the owner and a resourceVersion counter in attributes that a test or a
simulation sets directly (``challenger_ready``, ``exists``, ``owner``) and counts its writes.
``conflicts = n`` makes the next ``n`` writes fail as 409s (each one bumps the resourceVersion, as
another writer would), so the retry bound can be exercised. Only the storage is faked: the
attributes stand for one routing object, and the read-modify-write loop, its decisions
(:func:`controller.routers.base.plan`) and its retries are the real routers'
(:class:`controller.routers.readwrite.ReadModifyWrite`).
"""

from __future__ import annotations

from controller.routers import base, readwrite

Body = readwrite.Body


class FakeRouter(readwrite.ReadModifyWrite):
    """A traffic router that routes nothing; see the module docstring."""

    def __init__(
        self,
        config: base.RouterConfig,
        *,
        challenger_weight: int = 0,
        challenger_ready: bool = True,
        owner: str | None = None,
        exists: bool = True,
    ) -> None:
        self.config = config
        self.challenger_weight = base.check_weight(challenger_weight)
        self.challenger_ready = challenger_ready
        self.owner = owner
        self.exists = exists
        self.promoted = False
        self.share: float | None = None  # observed challenger share; None: the configured weight
        self.resource_version = 1
        self.writes = 0
        self.conflicts = 0
        self.readiness_gate = config.kind is not base.RouterKind.REPLICAS
        self._ref = readwrite.Ref(
            "fake", "v1", "routes", "Route", config.namespace, config.route or "replicas"
        )

    @property
    def route(self) -> str:
        return f"fake {self.config.kind} {self.config.namespace}/{self.config.route or 'replicas'}"

    # -- the in-memory object -----------------------------------------------------------------
    def _refs(self) -> list[tuple[readwrite.Ref, bool]]:
        return [(self._ref, True)]

    def _read(self) -> dict[readwrite.Ref, Body | None]:
        if not self.exists:
            raise base.RouteNotFoundError(f"{self.route} not found")
        annotations = {} if self.owner is None else {base.OWNER_ANNOTATION: self.owner}
        return {
            self._ref: {
                "metadata": {
                    "resourceVersion": str(self.resource_version),
                    "annotations": annotations,
                },
                "spec": {"challengerWeight": self.challenger_weight},
            }
        }

    def _write(self, ref: readwrite.Ref, patch: Body) -> None:
        meta = patch.get("metadata", {})
        if self.conflicts > 0:  # another writer got there first
            self.conflicts -= 1
            self.resource_version += 1
            raise readwrite.WriteConflict(str(ref))
        if meta.get("resourceVersion") != str(self.resource_version):
            raise readwrite.WriteConflict(str(ref))
        spec = patch.get("spec", {})
        self.writes += 1
        self.resource_version += 1
        self.challenger_weight = spec.get("challengerWeight", self.challenger_weight)
        if base.OWNER_ANNOTATION in meta.get("annotations", {}):
            self.owner = meta["annotations"][base.OWNER_ANNOTATION]
        self.promoted = self.promoted or bool(spec.get("promoted"))

    # -- the router's view of it ----------------------------------------------------------------
    def _state(self, objs: dict[readwrite.Ref, Body | None]) -> base.RouteState:
        obj = objs[self._ref]
        assert obj is not None
        weight = int(obj["spec"]["challengerWeight"])
        return base.RouteState(
            route=self.route,
            champion_weight=100 - weight,
            challenger_weight=weight,
            challenger_ready=self.challenger_ready,
            owner=readwrite.owner_of(obj),
            resource_version=obj["metadata"]["resourceVersion"],
            challenger_share=weight / 100 if self.share is None else self.share,
        )

    def _patches(
        self, objs: dict[readwrite.Ref, Body | None], target: base.Target
    ) -> list[tuple[readwrite.Ref, Body]]:
        obj = objs[self._ref]
        assert obj is not None
        current = int(obj["spec"]["challengerWeight"])
        weight = current if target.challenger_weight is None else target.challenger_weight
        if (weight, target.owner) == (current, readwrite.owner_of(obj)):
            return []
        spec: Body = {"challengerWeight": weight}
        if target.promoted:
            spec["promoted"] = True
        return [(self._ref, {"spec": spec, **readwrite.owner_patch(obj, target)})]
