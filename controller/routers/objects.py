"""The Kubernetes routers' storage: reads and guarded merge patches over the official client.

Each router says which objects it reads, how to turn them into a :class:`RouteState`, and which
merge patches reach a :class:`Target` (pure functions of the objects read); the loop that reads,
asks :func:`controller.routers.base.plan`, writes and verifies is ``readwrite``'s. This module
does the I/O of that loop through ``CustomObjectsApi``, and holds the Deployment readiness
helpers. It must not decide weights itself.
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

    def __init__(self, config: base.RouterConfig, api_client: kubernetes.client.ApiClient) -> None:
        self.config = config
        self._api = kubernetes.client.CustomObjectsApi(api_client)
        self._apps = kubernetes.client.AppsV1Api(api_client)

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

    def _write(self, ref: Ref, patch: Body) -> None:
        try:
            if ref.subresource == "scale" and (ref.group, ref.plural) == ("apps", "deployments"):
                self._apps.patch_namespaced_deployment_scale(ref.name, ref.namespace, patch)
            elif ref.subresource is None:
                self._api.patch_namespaced_custom_object(
                    ref.group, ref.version, ref.namespace, ref.plural, ref.name, patch
                )
            else:
                raise ValueError(f"{ref}: no client call for this subresource")
        except ApiException as exc:
            if exc.status == 404:
                raise base.RouteNotFoundError(f"{ref} not found") from None
            if exc.status == 409:
                raise readwrite.WriteConflict(str(ref)) from None
            raise

    def _create(self, ref: Ref, body: Body) -> None:
        try:
            self._api.create_namespaced_custom_object(
                ref.group, ref.version, ref.namespace, ref.plural, body
            )
        except ApiException as exc:
            if exc.status == 409:
                raise readwrite.WriteConflict(str(ref)) from None
            raise
