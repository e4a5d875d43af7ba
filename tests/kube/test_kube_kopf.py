"""Kopf (the operator framework) runs against the emulator: discovery, namespace observation,
list+watch, status patches, finalizers and deletion handlers all go over HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client import ApiException

from canaryctl_demo.kube import emulator, seed
from controller.experiment import crd, spec

CRD = crd.build_crd()
GROUP, VERSION, PLURAL = spec.API_GROUP, spec.API_VERSION, spec.PLURAL


def wait_for(condition: Callable[[], bool], deadline: float = 20) -> None:
    """Poll until the condition holds (a bound on waiting, not a timing assertion)."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail("the operator did not get there")
        time.sleep(0.05)


def gone(custom: kubernetes.client.CustomObjectsApi, name: str) -> bool:
    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, name)
    except ApiException as exc:
        return exc.status == 404
    return False


def test_kopf_operator_handles_create_and_delete(
    served: emulator.Served, api: kubernetes.client.ApiClient
) -> None:
    served.emulator.load_crd(CRD)
    seed.Cluster(api, "ml").create_namespace()
    import kopf

    registry = kopf.OperatorRegistry()
    seen: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=served.url, insecure=True)

    @kopf.on.create(GROUP, VERSION, PLURAL, id="created", registry=registry)
    def created(name: str, **_: Any) -> dict[str, str]:
        seen.append(f"created {name}")
        return {"phase": "Running"}

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def deleted(name: str, **_: Any) -> None:
        seen.append(f"deleted {name}")

    stop = threading.Event()
    operator = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(registry=registry, namespaces=["ml"], standalone=True, stop_flag=stop)
        )
    )
    operator.start()
    try:
        custom = kubernetes.client.CustomObjectsApi(api)
        args = (GROUP, VERSION, "ml", PLURAL)
        custom.create_namespaced_custom_object(
            *args,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": spec.KIND,
                "metadata": {"name": "exp-a"},
                "spec": {},
            },
        )
        wait_for(lambda: "status" in custom.get_namespaced_custom_object(*args, "exp-a"))
        obj = custom.get_namespaced_custom_object(*args, "exp-a")
        assert obj["status"] == {"created": {"phase": "Running"}}
        assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        custom.delete_namespaced_custom_object(*args, "exp-a")
        wait_for(lambda: gone(custom, "exp-a"))
        assert seen == ["created exp-a", "deleted exp-a"]
    finally:
        stop.set()
        operator.join(timeout=30)
