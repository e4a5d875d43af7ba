"""The read-decide-write loop the Kubernetes routers share, over the official client.

Each router says which objects it reads, how to turn them into a :class:`RouteState`, and which
merge patches reach a :class:`Target` (pure functions of the objects read). This module does the
I/O: it reads, asks :func:`controller.routers.base.plan` what to do, sends one resourceVersion-
guarded merge patch at a time, re-reads after every write (so the state returned is verified),
and retries on 409. It must not decide weights itself.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, cast

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from controller.routers import base

Body = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Ref:
    """A namespaced object reached through ``CustomObjectsApi`` (any group but the core one)."""

    group: str
    version: str
    plural: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def deployment_ref(namespace: str, name: str) -> Ref:
    return Ref("apps", "v1", "deployments", "Deployment", namespace, name)


def deployment_ready(deployment: Body | None) -> bool:
    """At least one ready replica and the ``Available`` condition true; missing → not ready."""
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    available = any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return (status.get("readyReplicas") or 0) >= 1 and available


def owner_of(obj: Body) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(base.OWNER_ANNOTATION)


def owner_patch(obj: Body, target: base.Target) -> Body:
    """The metadata part of a merge patch that leaves the owner annotation as the target says."""
    if owner_of(obj) == target.owner:
        return {}
    return {"metadata": {"annotations": {base.OWNER_ANNOTATION: target.owner}}}


class KubeRouter(abc.ABC):
    """Base of the Kubernetes routers; subclasses fill in the three hooks below."""

    readiness_gate = True

    def __init__(self, config: base.RouterConfig, api_client: kubernetes.client.ApiClient) -> None:
        self.config = config
        self._api = kubernetes.client.CustomObjectsApi(api_client)

    # -- hooks ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _refs(self) -> list[tuple[Ref, bool]]:
        """The objects to read, each with whether it must exist."""

    @abc.abstractmethod
    def _state(self, objs: dict[Ref, Body | None]) -> base.RouteState:
        """The route state these objects describe."""

    @abc.abstractmethod
    def _patches(self, objs: dict[Ref, Body | None], target: base.Target) -> list[tuple[Ref, Body]]:
        """Merge patches still needed to reach the target, in the order to send them."""

    # -- the interface ----------------------------------------------------------------------------
    def observe(self) -> base.RouteState:
        return self._state(self._read())

    def claim(self) -> base.RouteState:
        return self._run(base.Action.CLAIM)

    def apply(self, challenger_weight: int) -> base.RouteState:
        return self._run(base.Action.APPLY, base.check_weight(challenger_weight))

    def promote(self) -> base.RouteState:
        return self._run(base.Action.PROMOTE)

    def finalize(self) -> base.RouteState:
        return self._run(base.Action.FINALIZE)

    # -- I/O --------------------------------------------------------------------------------------
    def _read(self) -> dict[Ref, Body | None]:
        objs: dict[Ref, Body | None] = {}
        for ref, required in self._refs():
            try:
                objs[ref] = cast(
                    Body,
                    self._api.get_namespaced_custom_object(
                        ref.group, ref.version, ref.namespace, ref.plural, ref.name
                    ),
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                if required:
                    raise base.RouteNotFoundError(f"{ref} not found") from None
                objs[ref] = None
        return objs

    def _run(self, action: base.Action, challenger_weight: int = 0) -> base.RouteState:
        conflicts = 0
        just_written: Ref | None = None
        while True:
            objs = self._read()
            state = self._state(objs)
            target = base.plan(
                action,
                state,
                self.config.owner,
                challenger_weight,
                readiness_gate=self.readiness_gate,
            )
            patches = [] if target is None else self._patches(objs, target)
            if not patches:
                return state
            ref, patch = patches[0]
            if ref == just_written:
                raise base.RouteVerifyError(f"{ref} did not keep the write {patch}")
            current = objs[ref]
            assert current is not None  # patches are only made for objects that exist
            guard = {"resourceVersion": current["metadata"]["resourceVersion"]}
            patch = {**patch, "metadata": {**patch.get("metadata", {}), **guard}}
            try:
                self._api.patch_namespaced_custom_object(
                    ref.group, ref.version, ref.namespace, ref.plural, ref.name, patch
                )
            except ApiException as exc:
                if exc.status == 404:
                    raise base.RouteNotFoundError(f"{ref} not found") from None
                if exc.status != 409:
                    raise
                conflicts += 1
                if conflicts >= self.config.max_attempts:
                    raise base.RouteConflictError(
                        f"{ref}: {conflicts} conflicting writes in a row; giving up"
                    ) from None
                just_written = None
            else:
                just_written = ref
