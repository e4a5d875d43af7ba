"""The Gateway API router against the emulator over HTTP, through the official client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes.client
import pytest

from canaryctl_demo.kube import emulator, seed
from controller import routers
from controller.routers import base, gateway_api

MakeConfig = Callable[..., base.RouterConfig]


@pytest.fixture()
def router(
    kube: seed.Cluster, api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> base.TrafficRouter:
    kube.create_deployment("ranker-v1")
    kube.create_deployment("ranker-v2")
    kube.create(seed.GATEWAY, seed.httproute("ranker", {"ranker-v1": 100, "ranker-v2": 0}))
    return routers.router_for(make_config(base.RouterKind.GATEWAY_API), api)


def backend_weights(kube: seed.Cluster) -> list[int]:
    rule = kube.get(seed.GATEWAY, "ranker")["spec"]["rules"][0]
    return [ref["weight"] for ref in rule["backendRefs"]]


def test_steps_then_promote(kube: seed.Cluster, router: base.TrafficRouter) -> None:
    assert router.observe().challenger_weight == 0
    for weight in (5, 25, 50):
        state = router.apply(weight)
        assert (state.champion_weight, state.challenger_weight) == (100 - weight, weight)
        assert state.owner == "ml/exp-a"
        assert backend_weights(kube) == [100 - weight, weight]
    state = router.promote()
    assert (state.challenger_weight, state.owner) == (100, None)
    assert backend_weights(kube) == [0, 100]  # both refs kept
    assert router.finalize() == state  # released: finalize after promotion changes nothing


def test_finalize_rolls_back_and_releases(kube: seed.Cluster, router: base.TrafficRouter) -> None:
    router.apply(25)
    state = router.finalize()
    assert (state.challenger_weight, state.owner) == (0, None)
    assert backend_weights(kube) == [100, 0]
    assert "annotations" not in kube.get(seed.GATEWAY, "ranker")["metadata"]


def test_same_weight_twice_writes_once(served: emulator.Served, router: base.TrafficRouter) -> None:
    router.apply(25)
    router.apply(25)
    assert len(served.emulator.writes("/httproutes/ranker")) == 1


def test_conflict_is_reread_and_retried(
    served: emulator.Served, kube: seed.Cluster, router: base.TrafficRouter
) -> None:
    kind = served.emulator.kind(*seed.GATEWAY)

    def other_writer(request: emulator.LoggedRequest) -> None:
        if request.method == "PATCH" and request.path.endswith("/httproutes/ranker"):
            served.emulator.hooks.clear()  # only once
            served.emulator.store.patch(kind, "ml", "ranker", {"metadata": {"labels": {"x": "y"}}})

    served.emulator.hooks.append(other_writer)
    assert router.apply(25).challenger_weight == 25
    route_writes = [
        r.status for r in served.emulator.log if r.method == "PATCH" and "/httproutes/" in r.path
    ]
    assert route_writes == [409, 200]
    assert kube.get(seed.GATEWAY, "ranker")["metadata"]["labels"] == {"x": "y"}  # kept
    assert backend_weights(kube) == [75, 25]


def test_endless_conflicts_give_up(
    served: emulator.Served,
    make_config: MakeConfig,
    api: kubernetes.client.ApiClient,
    router: base.TrafficRouter,
) -> None:
    kind = served.emulator.kind(*seed.GATEWAY)
    bumps = iter(range(100))

    def other_writer(request: emulator.LoggedRequest) -> None:
        if request.method == "PATCH" and "/httproutes/" in request.path:
            labels = {"bump": str(next(bumps))}
            served.emulator.store.patch(kind, "ml", "ranker", {"metadata": {"labels": labels}})

    served.emulator.hooks.append(other_writer)
    router = routers.router_for(make_config(base.RouterKind.GATEWAY_API, max_attempts=3), api)
    with pytest.raises(base.RouteConflictError, match="HTTPRoute ml/ranker: 3 conflicting"):
        router.apply(25)


def test_not_ready_challenger_is_refused(kube: seed.Cluster, router: base.TrafficRouter) -> None:
    kube.set_ready("ranker-v2", 0)
    assert router.observe().challenger_ready is False
    with pytest.raises(base.ChallengerNotReadyError, match="HTTPRoute ml/ranker"):
        router.apply(5)
    assert router.apply(0).challenger_weight == 0  # weight 0 is always allowed
    assert backend_weights(kube) == [100, 0]


def test_missing_challenger_deployment_is_not_ready(
    kube: seed.Cluster, api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> None:
    kube.create(seed.GATEWAY, seed.httproute("ranker", {"ranker-v1": 100, "ranker-v2": 0}))
    router = routers.router_for(make_config(base.RouterKind.GATEWAY_API), api)
    assert router.observe().challenger_ready is False
    with pytest.raises(base.ChallengerNotReadyError):
        router.apply(5)


def test_missing_route(api: kubernetes.client.ApiClient, make_config: MakeConfig) -> None:
    router = routers.router_for(make_config(base.RouterKind.GATEWAY_API), api)
    with pytest.raises(base.RouteNotFoundError, match="HTTPRoute ml/ranker not found"):
        router.observe()


def test_missing_backend(
    kube: seed.Cluster, api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> None:
    kube.create(seed.GATEWAY, seed.httproute("ranker", {"ranker-v1": None}))
    router = routers.router_for(make_config(base.RouterKind.GATEWAY_API), api)
    with pytest.raises(base.BackendNotFoundError, match="no backendRef to Service 'ranker-v2'"):
        router.observe()


def test_second_owner_is_refused(
    kube: seed.Cluster,
    api: kubernetes.client.ApiClient,
    make_config: MakeConfig,
    router: base.TrafficRouter,
) -> None:
    router.apply(5)
    other = routers.router_for(make_config(base.RouterKind.GATEWAY_API, owner="ml/exp-b"), api)
    with pytest.raises(base.RouteOwnedError, match="owned by ml/exp-a, not by ml/exp-b"):
        other.claim()
    with pytest.raises(base.RouteOwnedError):
        other.apply(50)
    assert other.finalize().challenger_weight == 5  # not its route: finalize leaves it alone
    assert backend_weights(kube) == [95, 5]


def test_claim_writes_only_the_annotation(kube: seed.Cluster, router: base.TrafficRouter) -> None:
    state = router.claim()
    assert (state.owner, state.challenger_weight) == ("ml/exp-a", 0)
    annotations = kube.get(seed.GATEWAY, "ranker")["metadata"]["annotations"]
    assert annotations == {base.OWNER_ANNOTATION: "ml/exp-a"}


@pytest.mark.parametrize(
    ("backends", "expected"),
    [
        ({"ranker-v1": None, "ranker-v2": None}, (50, 50)),  # a missing weight is 1
        ({"ranker-v1": 3, "ranker-v2": 1}, (75, 25)),
        ({"ranker-v1": 0, "ranker-v2": 0}, (100, 0)),
        ({"other": 10, "ranker-v2": 1, "ranker-v1": 9}, (90, 10)),
    ],
)
def test_weights_table(
    backends: dict[str, int | None], expected: tuple[int, int], make_config: MakeConfig
) -> None:
    route: dict[str, Any] = seed.httproute("ranker", backends)
    config = make_config(base.RouterKind.GATEWAY_API)
    assert gateway_api.weights(route, config, "HTTPRoute ml/ranker") == expected
