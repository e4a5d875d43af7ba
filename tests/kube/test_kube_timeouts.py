"""A silent network never stalls the operator: requests and watches give up by themselves.

A server that accepts connections and never answers stands for a partition that drops
packets: the generated client and the raw-request path both fail after the default timeout
``set_default_timeout`` gives them, and an informer whose watch stays silent for longer than
its ``idle_seconds`` opens it again from the last version.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import kubernetes.client
import pytest
import urllib3

from canaryctl_demo.kube import emulator, seed
from controller.operate import informer
from controller.routers import kubeapi

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


@pytest.fixture()
def silent() -> Iterator[str]:
    """The URL of a server that accepts connections (the kernel does) and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _client(host: str) -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    config.host = host
    config.retries = 0
    return kubernetes.client.ApiClient(config)


def test_generated_and_raw_requests_give_up_on_a_silent_server(silent: str) -> None:
    api = _client(silent)
    kubeapi.set_default_timeout(api, connect=1.0, read=0.5)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.HTTPError):
        kubernetes.client.CoreV1Api(api).list_namespace()
    with pytest.raises(urllib3.exceptions.HTTPError):
        kubeapi.request(api, "GET", "/api/v1/namespaces")
    assert time.monotonic() - started < 30  # both gave up; without a timeout, never


def test_a_call_that_names_its_own_timeout_keeps_it(silent: str) -> None:
    api = _client(silent)
    kubeapi.set_default_timeout(api, connect=1.0, read=60.0)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.HTTPError):
        kubernetes.client.CoreV1Api(api).list_namespace(_request_timeout=0.3)
    assert time.monotonic() - started < 30  # not the default's 60 s


def test_the_connections_send_keepalive_probes(served: emulator.Served) -> None:
    api = served.api_client()
    kubeapi.set_default_timeout(api)
    pool = api.rest_client.pool_manager.connection_from_url(served.url)
    response = pool.urlopen("GET", "/api/v1/namespaces", preload_content=False)
    try:
        sock = response.connection.sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 15
    finally:
        response.release_conn()


def test_a_silent_watch_is_opened_again_from_the_last_version(
    served: emulator.Served, api: kubernetes.client.ApiClient
) -> None:
    cluster = seed.Cluster(api, "ml")
    cluster.create_namespace()
    cluster.create((GROUP, VERSION, PLURAL), seed.httproute("r0", {"a": 100, "b": 0}))
    one = informer.Informer(api, GROUP, VERSION, PLURAL, "ml", watch_seconds=300, idle_seconds=0.5)
    try:
        assert len(one.items()) == 1
        deadline = time.monotonic() + 20
        while len(_watches(served)) < 3:
            assert time.monotonic() < deadline, "the silent watch was never opened again"
            time.sleep(0.05)
        versions = {r.query.get("resourceVersion") for r in _watches(served)}
        assert versions == {one.resource_version}  # resumed, not listed again
        assert one.lists == 1
        cluster.create((GROUP, VERSION, PLURAL), seed.httproute("r1", {"a": 100, "b": 0}))
        deadline = time.monotonic() + 10
        while len(one.items()) < 2:  # and still follows the server
            assert time.monotonic() < deadline, "the re-opened watch missed an event"
            time.sleep(0.05)
    finally:
        one.stop()


def _watches(served: emulator.Served) -> list[emulator.LoggedRequest]:
    return [r for r in served.emulator.log if r.query.get("watch") == "true"]
