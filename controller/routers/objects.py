"""The Kubernetes routers' storage: reads and guarded merge patches over the official client.

Each router says which objects it reads, how to turn them into a :class:`RouteState`, and which
merge patches reach a :class:`Target` (pure functions of the objects read); the loop that reads,
asks :func:`controller.routers.base.plan`, writes and verifies is ``readwrite``'s. This module
does the I/O of that loop through ``CustomObjectsApi``, and holds the Deployment readiness
helpers. It must not decide weights itself.

Given an ``ObjectCache`` (the operator's informers) a router reads from it instead of sending
a GET per object: a required object the cache does not have is read through, an object a
write met a conflict on is read again, and every write's answer goes into the cache (a
scale write answers with a ``Scale``, so its Deployment is read again).
"""

from __future__ import annotations

from typing import cast

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from controller.routers import base, readwrite

Body = readwrite.Body
Ref = readwrite.Ref
owner_of = readwrite.owner_of
owner_patch = readwrite.owner_patch


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


class KubeRouter(readwrite.ReadModifyWrite):
    """Base of the Kubernetes routers; subclasses fill in ``_refs``, ``_state`` and ``_patches``."""

    def __init__(
        self,
        config: base.RouterConfig,
        api_client: kubernetes.client.ApiClient,
        cache: readwrite.ObjectCache | None = None,
    ) -> None:
        self.config = config
        self._api = kubernetes.client.CustomObjectsApi(api_client)
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._cache = cache
        self._stale: set[Ref] = set()  # met a conflict: read from the server next time

    def _read(self) -> dict[Ref, Body | None]:
        if self._cache is not None:
            return self._read_cached(self._cache)
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

    def _read_cached(self, cache: readwrite.ObjectCache) -> dict[Ref, Body | None]:
        objs: dict[Ref, Body | None] = {}
        for ref, required in self._refs():
            if ref in self._stale:
                self._stale.discard(ref)
                obj = cache.refresh(ref)
            else:
                obj = cache.get(ref)
                if obj is None and required:  # created a moment ago, or really missing
                    obj = cache.refresh(ref)
            if obj is None and required:
                raise base.RouteNotFoundError(f"{ref} not found")
            objs[ref] = obj
        return objs

    def _write(self, ref: Ref, patch: Body) -> None:
        try:
            if ref.subresource == "scale" and (ref.group, ref.plural) == ("apps", "deployments"):
                self._apps.patch_namespaced_deployment_scale(ref.name, ref.namespace, patch)
                if self._cache is not None:  # the answer is a Scale: read the Deployment
                    self._stale.add(ref.main)
            elif ref.subresource is None:
                written = self._api.patch_namespaced_custom_object(
                    ref.group, ref.version, ref.namespace, ref.plural, ref.name, patch
                )
                if self._cache is not None:
                    self._cache.put(ref, cast(Body, written))
            else:
                raise ValueError(f"{ref}: no client call for this subresource")
        except ApiException as exc:
            if exc.status == 404:
                raise base.RouteNotFoundError(f"{ref} not found") from None
            if exc.status == 409:
                self._stale.add(ref.main)
                raise readwrite.WriteConflict(str(ref)) from None
            raise

    def _create(self, ref: Ref, body: Body) -> None:
        try:
            created = self._api.create_namespaced_custom_object(
                ref.group, ref.version, ref.namespace, ref.plural, body
            )
        except ApiException as exc:
            if exc.status == 409:
                self._stale.add(ref.main)
                raise readwrite.WriteConflict(str(ref)) from None
            raise
        if self._cache is not None:
            self._cache.put(ref, cast(Body, created))
