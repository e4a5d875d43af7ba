"""Traffic routers: one module per router behind :class:`base.TrafficRouter`, and a fake."""

from __future__ import annotations

import kubernetes.client

from controller.routers import base, gateway_api, istio, kserve, replicas


def router_for(config: base.RouterConfig,
               api_client: kubernetes.client.ApiClient) -> base.TrafficRouter:
    """The Kubernetes router named by ``config.kind``."""
    cls = {
        base.RouterKind.GATEWAY_API: gateway_api.GatewayAPIRouter,
        base.RouterKind.ISTIO: istio.IstioRouter,
        base.RouterKind.KSERVE: kserve.KServeRouter,
        base.RouterKind.REPLICAS: replicas.ReplicasRouter,
    }[config.kind]
    return cls(config, api_client)


__all__ = ["router_for"]
