"""The read-modify-write loop every router shares, the Kubernetes ones and the fake alike.

A router says which objects it reads (``_refs``), how to turn them into a
:class:`~controller.routers.base.RouteState` (``_state``) and which merge patches reach a
:class:`~controller.routers.base.Target` (``_patches``); the storage under it says how to
read the objects and how to send one patch guarded by the object's ``resourceVersion``
(``_read``, ``_write``). ``_run`` reads, asks :func:`controller.routers.base.plan` what to
do, sends one patch at a time, re-reads after every write (so the state returned is
verified) and retries on a conflict, at most ``RouterConfig.max_attempts`` times. It
must not decide weights itself, and imports no Kubernetes client (the fake uses it too).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Protocol

from controller.routers import base

Body = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Ref:
    """A namespaced object (any group but the core one), or one of its subresources.

    A patch to a subresource (``scale``) is guarded and verified through the object it
    belongs to (``main``), which is the one read.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespace: str
    name: str
    subresource: str | None = None

    def __str__(self) -> str:
        where = f"{self.kind} {self.namespace}/{self.name}"
        return where if self.subresource is None else f"{where} ({self.subresource})"

    @property
    def main(self) -> Ref:
        return dataclasses.replace(self, subresource=None)


def owner_of(obj: Body) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(base.OWNER_ANNOTATION)


def owner_patch(obj: Body, target: base.Target) -> Body:
    """The metadata part of a merge patch that leaves the owner annotation as the target says."""
    if owner_of(obj) == target.owner:
        return {}
    return {"metadata": {"annotations": {base.OWNER_ANNOTATION: target.owner}}}


class ObjectCache(Protocol):
    """Objects kept up to date by a watch (the operator's informers), read instead of a GET.

    ``get`` answers None for an object the server does not have; ``put`` keeps the object a
    write returned; ``refresh`` reads one object from the server again (after a conflict).
    """

    def get(self, ref: Ref) -> Body | None: ...

    def put(self, ref: Ref, obj: Body) -> None: ...

    def refresh(self, ref: Ref) -> Body | None: ...


class WriteConflict(Exception):
    """A guarded write met a newer ``resourceVersion`` (HTTP 409): read again and retry."""


class ReadModifyWrite(abc.ABC):
    """A router as hooks over one read-modify-write loop; see the module docstring."""

    readiness_gate = True
    config: base.RouterConfig

    # -- the router's hooks -----------------------------------------------------------------------
    @abc.abstractmethod
    def _refs(self) -> list[tuple[Ref, bool]]:
        """The objects to read, each with whether it must exist."""

    @abc.abstractmethod
    def _state(self, objs: dict[Ref, Body | None]) -> base.RouteState:
        """The route state these objects describe."""

    @abc.abstractmethod
    def _patches(self, objs: dict[Ref, Body | None], target: base.Target) -> list[tuple[Ref, Body]]:
        """Merge patches still needed to reach the target, in the order to send them."""

    # -- the storage's hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _read(self) -> dict[Ref, Body | None]:
        """Every object of ``_refs`` (None when missing; a missing required one raises)."""

    @abc.abstractmethod
    def _write(self, ref: Ref, patch: Body) -> None:
        """Send one merge patch (it carries the resourceVersion guard); 409: ``WriteConflict``."""

    def _create(self, ref: Ref, body: Body) -> None:
        """Create a missing object of ``_refs`` (a "patch" to an object read as None);
        409 (someone created it first): ``WriteConflict``."""
        raise NotImplementedError(f"{type(self).__name__} creates no objects ({ref})")

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
            current = objs[ref.main]
            try:
                if current is None:  # a patch to an object that does not exist creates it
                    self._create(ref, patch)
                else:
                    guard = {"resourceVersion": current["metadata"]["resourceVersion"]}
                    patch = {**patch, "metadata": {**patch.get("metadata", {}), **guard}}
                    self._write(ref, patch)
            except WriteConflict:
                conflicts += 1
                if conflicts >= self.config.max_attempts:
                    raise base.RouteConflictError(
                        f"{ref}: {conflicts} conflicting writes in a row; giving up"
                    ) from None
                just_written = None
            else:
                just_written = ref
