"""Seed objects into an emulator and play the cluster's controllers, through the official client.

Used by the router tests and by ``canaryctl demo``: it creates the champion/challenger Deployments
and a routing object, and writes the status a Deployment or KServe controller would write (via the
status subresource). It must not be used by the operator itself.
"""

from __future__ import annotations

from typing import Any, cast

import kubernetes.client

Body = dict[str, Any]

GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")
ISTIO = ("networking.istio.io", "v1", "virtualservices")
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")


def deployment(name: str, replicas: int = 1, image: str = "model:1") -> Body:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "model", "image": image}]},
            },
        },
    }


def httproute(name: str, backends: dict[str, int | None], port: int = 8080) -> Body:
    """An HTTPRoute with one rule whose backendRefs are ``{service: weight or None}``."""
    refs = [
        {"name": svc, "port": port} | ({} if w is None else {"weight": w})
        for svc, w in backends.items()
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": refs}
            ],
        },
    }


def virtualservice(name: str, destinations: list[Body]) -> Body:
    """A VirtualService with one HTTP route over ``destinations`` (``{destination, weight?}``)."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": [name], "http": [{"name": "primary", "route": destinations}]},
    }


def inferenceservice(name: str, storage_uri: str, canary_percent: int | None = 0) -> Body:
    predictor: Body = {"model": {"modelFormat": {"name": "xgboost"}, "storageUri": storage_uri}}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": predictor},
    }


class Cluster:
    """Typed-client shortcuts for one namespace."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.apps = kubernetes.client.AppsV1Api(api)

    def create_namespace(self) -> None:
        kubernetes.client.CoreV1Api(self.custom.api_client).create_namespace(
            kubernetes.client.V1Namespace(
                metadata=kubernetes.client.V1ObjectMeta(name=self.namespace)
            )
        )

    def create_deployment(self, name: str, replicas: int = 1, ready: int | None = None) -> None:
        self.custom.create_namespaced_custom_object(
            "apps", "v1", self.namespace, "deployments", deployment(name, replicas)
        )
        self.set_ready(name, replicas if ready is None else ready)

    def set_ready(self, name: str, ready: int) -> None:
        """Play the Deployment controller: ``ready`` ready replicas, Available if any."""
        available = "True" if ready > 0 else "False"
        self.apps.patch_namespaced_deployment_status(
            name,
            self.namespace,
            {
                "status": {
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "conditions": [{"type": "Available", "status": available}],
                }
            },
        )

    def create(self, resource: tuple[str, str, str], body: Body) -> Body:
        group, version, plural = resource
        return cast(
            Body,
            self.custom.create_namespaced_custom_object(
                group, version, self.namespace, plural, body
            ),
        )

    def get(self, resource: tuple[str, str, str], name: str) -> Body:
        group, version, plural = resource
        return cast(
            Body,
            self.custom.get_namespaced_custom_object(group, version, self.namespace, plural, name),
        )

    def set_kserve_status(
        self,
        name: str,
        *,
        created: str,
        ready: str | None,
        traffic: dict[str, tuple[int, bool]] | None = None,
    ) -> None:
        """Play KServe: latest created/ready revisions and ``{revision: (percent, latest)}``."""
        predictor: Body = {"latestCreatedRevision": created, "latestReadyRevision": ready}
        if traffic is not None:
            predictor["traffic"] = [
                {"revisionName": rev, "percent": pct, "latestRevision": latest}
                for rev, (pct, latest) in traffic.items()
            ]
        is_ready = "True" if ready == created else "False"
        group, version, plural = KSERVE
        self.custom.patch_namespaced_custom_object_status(
            group,
            version,
            self.namespace,
            plural,
            name,
            {
                "status": {
                    "components": {"predictor": predictor},
                    "conditions": [{"type": "Ready", "status": is_ready}],
                }
            },
        )
