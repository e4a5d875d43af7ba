"""The Istio router against the emulator over HTTP, through the official client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes.client
import pytest

from canaryctl_demo.kube import emulator, seed
from controller import routers
from controller.routers import base, istio

MakeConfig = Callable[..., base.RouterConfig]


def dest(host: str, weight: int | None = None, subset: str | None = None) -> dict[str, Any]:
    destination = {"host": host} | ({} if subset is None else {"subset": subset})
    return {"destination": destination} | ({} if weight is None else {"weight": weight})


@pytest.fixture()
def by_host(
    kube: seed.Cluster, api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> base.TrafficRouter:
    kube.create_deployment("ranker-v1")
    kube.create_deployment("ranker-v2")
    kube.create(
        seed.ISTIO,
        seed.virtualservice(
            "ranker", [dest("ranker-v1.ml.svc.cluster.local", 100), dest("ranker-v2", 0)]
        ),
    )
    return routers.router_for(make_config(base.RouterKind.ISTIO), api)


def route_weights(kube: seed.Cluster) -> list[int]:
    return [r["weight"] for r in kube.get(seed.ISTIO, "ranker")["spec"]["http"][0]["route"]]


def test_steps_promote_by_host(
    served: emulator.Served, kube: seed.Cluster, by_host: base.TrafficRouter
) -> None:
    for weight in (5, 25, 50):
        assert by_host.apply(weight).challenger_weight == weight
        assert route_weights(kube) == [100 - weight, weight]
    by_host.apply(50)
    assert len(served.emulator.writes("/virtualservices/ranker")) == 3  # once per new weight
    state = by_host.promote()
    assert (state.champion_weight, state.challenger_weight, state.owner) == (0, 100, None)
    assert route_weights(kube) == [0, 100]


def test_finalize(kube: seed.Cluster, by_host: base.TrafficRouter) -> None:
    by_host.apply(25)
    assert by_host.finalize().challenger_weight == 0
    assert route_weights(kube) == [100, 0]
    assert by_host.observe().owner is None


def test_subsets(
    kube: seed.Cluster, api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> None:
    kube.create_deployment("ranker-v2")
    kube.create(
        seed.ISTIO,
        seed.virtualservice(
            "ranker", [dest("ranker", subset="v2"), dest("ranker", 100, subset="v1")]
        ),
    )
    config = make_config(
        base.RouterKind.ISTIO, host="ranker", champion_subset="v1", challenger_subset="v2"
    )
    router = routers.router_for(config, api)
    assert router.observe().challenger_weight == 0  # a missing weight is 0 beside others
    router.apply(25)
    assert route_weights(kube) == [25, 75]  # the challenger's destination comes first here


def test_not_ready_challenger_is_refused(kube: seed.Cluster, by_host: base.TrafficRouter) -> None:
    kube.set_ready("ranker-v2", 0)
    with pytest.raises(base.ChallengerNotReadyError, match="VirtualService ml/ranker"):
        by_host.apply(25)


def test_missing_destination(
    kube: seed.Cluster, api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> None:
    kube.create(seed.ISTIO, seed.virtualservice("ranker", [dest("ranker-v1")]))
    router = routers.router_for(make_config(base.RouterKind.ISTIO), api)
    with pytest.raises(base.BackendNotFoundError, match="no destination with host 'ranker-v2'"):
        router.observe()
    with pytest.raises(base.BackendNotFoundError, match=r"no spec.http\[1\]"):
        routers.router_for(make_config(base.RouterKind.ISTIO, index=1), api).observe()


def test_missing_virtualservice(api: kubernetes.client.ApiClient, make_config: MakeConfig) -> None:
    with pytest.raises(base.RouteNotFoundError, match="VirtualService ml/ranker not found"):
        routers.router_for(make_config(base.RouterKind.ISTIO), api).apply(0)


def test_second_owner_is_refused(
    api: kubernetes.client.ApiClient, make_config: MakeConfig, by_host: base.TrafficRouter
) -> None:
    by_host.claim()
    other = routers.router_for(make_config(base.RouterKind.ISTIO, owner="ml/exp-b"), api)
    with pytest.raises(base.RouteOwnedError, match="VirtualService ml/ranker is owned by ml/exp-a"):
        other.promote()


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ([dest("ranker-v1"), dest("ranker-v2")], (100, 0)),  # no weights: 0 and 0
        ([dest("ranker-v1", 90), dest("ranker-v2", 10)], (90, 10)),
        ([dest("ranker-v2.ml", 1), dest("ranker-v1", 2)], (67, 33)),
    ],
)
def test_weights_table(
    routes: list[dict[str, Any]], expected: tuple[int, int], make_config: MakeConfig
) -> None:
    vs = seed.virtualservice("ranker", routes)
    assert istio.weights(vs, make_config(base.RouterKind.ISTIO), "VS") == expected
