"""The replicas router: the rounding table, and scaling two Deployments over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import kubernetes.client
import pytest

from canaryctl_demo.kube import emulator, seed
from controller import routers
from controller.routers import base, replicas

MakeConfig = Callable[..., base.RouterConfig]


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (10, 0, (10, 0)),
        (10, 5, (9, 1)),  # 0.5 rounds half up
        (10, 25, (7, 3)),  # 2.5 rounds half up
        (10, 50, (5, 5)),
        (10, 95, (1, 9)),  # 9.5 would be 10: keep one champion below 100 %
        (10, 100, (0, 10)),
        (4, 5, (3, 1)),  # 0.2 → at least one challenger
        (4, 25, (3, 1)),
        (4, 50, (2, 2)),
        (4, 90, (1, 3)),
        (3, 50, (1, 2)),  # 1.5 rounds half up
        (2, 1, (1, 1)),
        (1, 5, (0, 1)),  # one replica cannot be split
        (1, 0, (1, 0)),
    ],
)
def test_split_table(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert replicas.split(total, weight) == expected


@pytest.fixture()
def router(
    kube: seed.Cluster, api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> base.TrafficRouter:
    kube.create_deployment("ranker-v1", replicas=10)
    kube.create_deployment("ranker-v2", replicas=0)
    return routers.router_for(make_config(base.RouterKind.REPLICAS, total_replicas=10), api)


def spec_replicas(kube: seed.Cluster) -> tuple[int, int]:
    v1, v2 = (kube.apps.read_namespaced_deployment(n, "ml") for n in ("ranker-v1", "ranker-v2"))
    assert v1.spec is not None and v2.spec is not None
    return v1.spec.replicas or 0, v2.spec.replicas or 0


def test_steps_promote(kube: seed.Cluster, router: base.TrafficRouter) -> None:
    for weight, expected in ((5, (9, 1)), (25, (7, 3)), (50, (5, 5))):
        state = router.apply(weight)
        assert spec_replicas(kube) == expected
        assert state.challenger_weight == expected[1] * 10
        assert state.owner == "ml/exp-a"
    state = router.promote()
    assert spec_replicas(kube) == (0, 10)
    assert (state.challenger_weight, state.owner) == (100, None)


def test_effective_share_comes_from_ready_replicas(
    kube: seed.Cluster, router: base.TrafficRouter
) -> None:
    state = router.apply(25)  # 7 + 3 in spec, but nothing ready on the challenger yet
    assert (state.challenger_weight, state.challenger_share) == (30, 0)
    assert state.challenger_ready is False  # reported, not refused: see the module docstring
    kube.set_ready("ranker-v2", 2)
    kube.set_ready("ranker-v1", 8)
    state = router.observe()
    assert (state.challenger_weight, state.challenger_share, state.challenger_ready) == (
        30,
        0.2,
        True,
    )


def scale_writes(served: emulator.Served) -> list[str]:
    """Names of the Deployments scaled, in order (through their ``scale`` subresource)."""
    return [
        w.path.removesuffix("/scale").rsplit("/", 1)[-1]
        for w in served.emulator.writes("/deployments/ranker")
        if w.path.endswith("/scale")
    ]


def test_deployments_are_only_scaled_never_written(
    served: emulator.Served, kube: seed.Cluster, router: base.TrafficRouter
) -> None:
    """Least privilege: ``deployments/scale`` reaches spec.replicas only; the Deployment
    itself (its pod template) is never written, and ownership lives in Leases."""
    router.apply(25)
    router.promote()
    router.finalize()
    deployment_writes = [
        (w.method, w.path) for w in served.emulator.writes("/deployments/") if w.status < 400
    ]
    test_writes = [p for m, p in deployment_writes if p.endswith("/status")]  # the test's own
    assert deployment_writes and all(
        p.endswith("/scale") or p in test_writes for _, p in deployment_writes
    )
    assert {m for m, p in deployment_writes if p.endswith("/scale")} == {"PATCH"}
    leases = [w for w in served.emulator.writes("/leases")]
    assert [w.method for w in leases][:2] == ["POST", "POST"]  # one Lease per Deployment
    for name in ("ranker-v1", "ranker-v2"):
        annotations = kube.apps.read_namespaced_deployment(name, "ml").metadata.annotations
        assert base.OWNER_ANNOTATION not in (annotations or {})


def test_ownership_is_the_holder_of_a_lease_per_deployment(
    api: kubernetes.client.ApiClient, router: base.TrafficRouter
) -> None:
    coordination = kubernetes.client.CoordinationV1Api(api)
    router.claim()
    for name in ("ranker-v1", "ranker-v2"):
        lease = coordination.read_namespaced_lease(f"canaryctl-deployment-{name}", "ml")
        assert lease.spec.holder_identity == "ml/exp-a"
    router.finalize()
    lease = coordination.read_namespaced_lease("canaryctl-deployment-ranker-v2", "ml")
    assert lease.spec.holder_identity is None
    assert router.observe().owner is None


def test_scale_up_goes_first(served: emulator.Served, router: base.TrafficRouter) -> None:
    router.apply(50)
    router.finalize()
    writes = scale_writes(served)
    assert writes == ["ranker-v2", "ranker-v1", "ranker-v1", "ranker-v2"]


def test_idempotent(served: emulator.Served, router: base.TrafficRouter) -> None:
    router.apply(25)
    router.apply(25)
    assert len(scale_writes(served)) == 2  # one per Deployment


def test_finalize(kube: seed.Cluster, router: base.TrafficRouter) -> None:
    router.apply(50)
    state = router.finalize()
    assert spec_replicas(kube) == (10, 0)
    assert (state.challenger_weight, state.owner) == (0, None)


def test_owner_on_either_deployment_is_refused(
    kube: seed.Cluster,
    api: kubernetes.client.ApiClient,
    make_config: MakeConfig,
    router: base.TrafficRouter,
) -> None:
    router.claim()
    kube.create_deployment("ranker-v3", replicas=0)
    other = routers.router_for(
        make_config(
            base.RouterKind.REPLICAS,
            total_replicas=10,
            owner="ml/exp-b",
            challenger=base.Backend("ranker-v3"),
        ),
        api,
    )
    with pytest.raises(base.RouteOwnedError, match="owned by ml/exp-a"):
        other.apply(5)


def test_missing_deployment(
    kube: seed.Cluster, api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> None:
    kube.create_deployment("ranker-v1", replicas=10)
    router = routers.router_for(make_config(base.RouterKind.REPLICAS, total_replicas=10), api)
    with pytest.raises(base.RouteNotFoundError, match="Deployment ml/ranker-v2 not found"):
        router.apply(5)


def test_a_challenger_scaled_to_zero_counts_as_ready_until_it_is_scaled_up(
    kube: seed.Cluster, router: base.TrafficRouter
) -> None:
    assert router.observe().challenger_ready  # nothing asked of it yet
    router.apply(10)
    kube.set_ready("ranker-v2", 0)  # scaled up, its pod never becomes ready
    assert not router.observe().challenger_ready
    kube.set_ready("ranker-v2", 1)
    assert router.observe().challenger_ready
