"""Traffic routers: one module per router behind :class:`base.TrafficRouter`, and a fake.

``base`` and ``fake`` do not import the Kubernetes client; :func:`router_for` imports the
router modules (and with them the client) only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from controller.routers import base

if TYPE_CHECKING:
    import kubernetes.client

    from controller.routers import readwrite


def router_for(
    config: base.RouterConfig,
    api_client: kubernetes.client.ApiClient,
    cache: readwrite.ObjectCache | None = None,
) -> base.TrafficRouter:
    """The Kubernetes router named by ``config.kind``, talking through ``api_client``
    (reading from ``cache`` when given)."""
    from controller.routers import gateway_api, istio, kserve, replicas

    routers: dict[base.RouterKind, Callable[..., base.TrafficRouter]] = {
        base.RouterKind.GATEWAY_API: gateway_api.GatewayAPIRouter,
        base.RouterKind.ISTIO: istio.IstioRouter,
        base.RouterKind.KSERVE: kserve.KServeRouter,
        base.RouterKind.REPLICAS: replicas.ReplicasRouter,
    }
    return routers[config.kind](config, api_client, cache)


__all__ = ["router_for"]
