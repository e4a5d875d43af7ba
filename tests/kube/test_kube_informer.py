"""The operator's informer against the emulator over HTTP: it lists once, then follows the
watch (bookmarks included); a version the server has compacted away (410 Gone on the
resumed watch) makes it list again; a write's answer goes into the cache."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import kubernetes.client
import pytest

from canaryctl_demo.kube import emulator, seed
from controller.operate import informer
from controller.routers import kubeapi

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def _route(name: str, weight: int) -> dict[str, object]:
    return seed.httproute(name, {"ranker-v1": 100 - weight, "ranker-v2": weight})


@pytest.fixture()
def routes(
    served: emulator.Served, api: kubernetes.client.ApiClient
) -> Iterator[informer.Informer]:
    cluster = seed.Cluster(api, "ml")
    cluster.create_namespace()
    for i in range(3):
        cluster.create((GROUP, VERSION, PLURAL), _route(f"r{i}", 0))
    one = informer.Informer(api, GROUP, VERSION, PLURAL, "ml", watch_seconds=30)
    yield one
    one.stop()


def _names(one: informer.Informer) -> dict[str, int]:
    return {
        o["metadata"]["name"]: o["spec"]["rules"][0]["backendRefs"][1]["weight"]
        for o in one.items()
    }


def _lists(served: emulator.Served) -> list[emulator.LoggedRequest]:
    return [
        r
        for r in served.emulator.log
        if r.method == "GET" and r.path.endswith(f"/{PLURAL}") and "watch" not in r.query
    ]


def test_it_lists_once_then_follows_the_watch(
    served: emulator.Served, api: kubernetes.client.ApiClient, routes: informer.Informer
) -> None:
    assert _names(routes) == {"r0": 0, "r1": 0, "r2": 0}
    custom = kubernetes.client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, _route("r3", 0))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "ml", PLURAL, "r1", {"spec": _route("r1", 30)["spec"]}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, "r2")
    _eventually(lambda: _names(routes) == {"r0": 0, "r1": 30, "r3": 0}, "the watch's changes")
    # a change of another kind moves the server's version on; a bookmark tells the informer
    kubernetes.client.CoreV1Api(api).create_namespaced_config_map(
        "ml", {"metadata": {"name": "other"}}
    )
    assert routes.wait_for(served.emulator.store.resource_version, timeout=10)
    routes.sync()  # caught up already: no list again
    assert routes.lists == 1 and len([r for r in _lists(served) if "limit" not in r.query]) == 1


def test_a_compacted_version_makes_it_list_again(
    served: emulator.Served, api: kubernetes.client.ApiClient, routes: informer.Informer
) -> None:
    routes.start()
    store, kind = served.emulator.store, served.emulator.kind(GROUP, VERSION, PLURAL)
    # the API server restarts: the watch ends and cannot resume for a while, objects change
    # and the history the watch would resume from is compacted away
    served.emulator.refuse_watches = True
    served.emulator.disconnect_watches()
    store.patch(kind, "ml", "r0", {"spec": _route("r0", 50)["spec"]})
    store.delete(kind, "ml", "r2")
    store.compact()
    served.emulator.refuse_watches = False
    _eventually(lambda: routes.lists == 2, "a list after the 410")
    _eventually(lambda: _names(routes) == {"r0": 50, "r1": 0}, "the cache after the re-list")


def test_the_emulator_answers_a_too_old_version_with_410(
    served: emulator.Served, api: kubernetes.client.ApiClient, routes: informer.Informer
) -> None:
    routes.start()
    old = routes.resource_version
    kind = served.emulator.kind(GROUP, VERSION, PLURAL)
    served.emulator.store.patch(kind, "ml", "r0", {"metadata": {"labels": {"a": "b"}}})
    served.emulator.store.compact()
    response = kubeapi.open_request(
        api,
        "GET",
        kubeapi.path(GROUP, VERSION, PLURAL, "ml"),
        query={"watch": "true", "resourceVersion": old, "timeoutSeconds": "5"},
    )
    first = response.read().decode().splitlines()[0]
    assert '"type": "ERROR"' in first and '"code": 410' in first


def test_a_write_answer_goes_into_the_cache_and_an_older_one_does_not(
    api: kubernetes.client.ApiClient, routes: informer.Informer
) -> None:
    routes.start()
    custom = kubernetes.client.CustomObjectsApi(api)
    before = routes.get("ml", "r0")
    assert before is not None
    written = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "ml", PLURAL, "r0", {"metadata": {"labels": {"x": "1"}}}
    )
    routes.put(written)
    assert routes.get("ml", "r0") is written  # at once, whatever the watch has delivered yet
    routes.put(before)  # an older version never replaces a newer one
    assert routes.get("ml", "r0")["metadata"]["labels"] == {"x": "1"}  # type: ignore[index]


def test_the_watch_event_of_its_own_write_is_not_parsed_again_others_are(
    api: kubernetes.client.ApiClient, routes: informer.Informer
) -> None:
    routes.start()
    seen: list[tuple[str, str]] = []
    routes.listeners.append(lambda kind, obj: seen.append((kind, informer._version(obj or {}))))
    written = kubeapi.request(
        api,
        "PATCH",
        kubeapi.path(GROUP, VERSION, PLURAL, "ml", "r0"),
        body={"metadata": {"labels": {"x": "1"}}},
    )
    routes.put(written)
    version = informer._version(written)
    assert routes.wait_for(version, timeout=10)
    _eventually(lambda: ("MODIFIED", version) in seen, "the write's watch event")
    assert routes.get("ml", "r0") is written  # the event handed on the object already held
    # someone else's change to the same object is read from its event as ever
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, "ml", PLURAL, "r0", {"spec": _route("r0", 40)["spec"]}
    )
    _eventually(lambda: _names(routes)["r0"] == 40, "the other change")
    assert routes.get("ml", "r0")["metadata"]["labels"] == {"x": "1"}  # type: ignore[index]
