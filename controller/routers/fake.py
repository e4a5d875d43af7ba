"""An in-memory router with the same contract as the Kubernetes ones, for simulation and tests.

It keeps the split, the owner and a resourceVersion counter in attributes that a test or a
simulation sets directly (``challenger_ready``, ``exists``, ``owner``) and counts its writes.
``conflicts = n`` makes the next ``n`` writes fail as 409s (each one bumps the resourceVersion, as
another writer would), so the retry bound can be exercised. Decisions go through the same
:func:`controller.routers.base.plan` as the real routers.
"""

from __future__ import annotations

from controller.routers import base


class FakeRouter:
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

    @property
    def route(self) -> str:
        return f"fake {self.config.kind} {self.config.namespace}/{self.config.route or 'replicas'}"

    def observe(self) -> base.RouteState:
        if not self.exists:
            raise base.RouteNotFoundError(f"{self.route} not found")
        return base.RouteState(
            route=self.route,
            champion_weight=100 - self.challenger_weight,
            challenger_weight=self.challenger_weight,
            challenger_ready=self.challenger_ready,
            owner=self.owner,
            resource_version=str(self.resource_version),
            challenger_share=self.challenger_weight / 100 if self.share is None else self.share,
        )

    def claim(self) -> base.RouteState:
        return self._run(base.Action.CLAIM)

    def apply(self, challenger_weight: int) -> base.RouteState:
        return self._run(base.Action.APPLY, base.check_weight(challenger_weight))

    def promote(self) -> base.RouteState:
        return self._run(base.Action.PROMOTE)

    def finalize(self) -> base.RouteState:
        return self._run(base.Action.FINALIZE)

    def _run(self, action: base.Action, challenger_weight: int = 0) -> base.RouteState:
        failed = 0
        while True:
            state = self.observe()
            target = base.plan(
                action,
                state,
                self.config.owner,
                challenger_weight,
                readiness_gate=self.readiness_gate,
            )
            if target is None:
                return state
            weight = (
                state.challenger_weight
                if target.challenger_weight is None
                else target.challenger_weight
            )
            if (weight, target.owner) == (state.challenger_weight, state.owner):
                return state
            if self.conflicts > 0:
                self.conflicts -= 1
                self.resource_version += 1
                failed += 1
                if failed >= self.config.max_attempts:
                    raise base.RouteConflictError(
                        f"{self.route}: {failed} conflicting writes in a row; giving up"
                    )
                continue
            self.writes += 1
            self.resource_version += 1
            self.challenger_weight, self.owner = weight, target.owner
            self.promoted = self.promoted or target.promoted
