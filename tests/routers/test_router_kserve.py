"""The KServe router; the test plays KServe's controller by writing status (status subresource)."""

from __future__ import annotations

from collections.abc import Callable

import kubernetes.client
import pytest

from canaryctl_demo.kube import emulator, seed
from controller import routers
from controller.routers import base, kserve, objects

MakeConfig = Callable[..., base.RouterConfig]


@pytest.fixture()
def router(
    kube: seed.Cluster, api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> base.TrafficRouter:
    kube.create(seed.KSERVE, seed.inferenceservice("ranker", "gs://models/ranker/v2"))
    kube.set_kserve_status(
        "ranker",
        created="ranker-predictor-00002",
        ready="ranker-predictor-00002",
        traffic={"ranker-predictor-00001": (100, False)},
    )
    return routers.router_for(make_config(base.RouterKind.KSERVE), api)


def canary_percent(kube: seed.Cluster) -> int | None:
    percent: int | None = kube.get(seed.KSERVE, "ranker")["spec"]["predictor"].get(
        "canaryTrafficPercent"
    )
    return percent


def test_steps_with_status_split(kube: seed.Cluster, router: base.TrafficRouter) -> None:
    state = router.observe()
    assert (state.challenger_weight, state.challenger_ready, state.challenger_share) == (0, True, 0)
    for weight in (5, 25, 50):
        state = router.apply(weight)
        assert (state.challenger_weight, canary_percent(kube)) == (weight, weight)
    assert state.challenger_share == 0  # KServe has not moved traffic yet
    kube.set_kserve_status(
        "ranker",
        created="ranker-predictor-00002",
        ready="ranker-predictor-00002",
        traffic={"ranker-predictor-00002": (50, True), "ranker-predictor-00001": (50, False)},
    )
    assert router.observe().challenger_share == 0.5


def test_promote_removes_the_percent(
    served: emulator.Served, kube: seed.Cluster, router: base.TrafficRouter
) -> None:
    router.apply(50)
    state = router.promote()
    assert (state.challenger_weight, state.owner) == (100, None)
    assert canary_percent(kube) is None
    writes = len(served.emulator.writes("/inferenceservices/ranker"))
    router.promote()
    assert len(served.emulator.writes("/inferenceservices/ranker")) == writes  # idempotent


def test_finalize_sets_zero(kube: seed.Cluster, router: base.TrafficRouter) -> None:
    router.apply(25)
    state = router.finalize()
    assert (state.challenger_weight, state.owner, canary_percent(kube)) == (0, None, 0)


def test_latest_revision_not_ready_is_refused(
    kube: seed.Cluster, router: base.TrafficRouter
) -> None:
    kube.set_kserve_status(
        "ranker", created="ranker-predictor-00003", ready="ranker-predictor-00002"
    )
    assert router.observe().challenger_ready is False
    with pytest.raises(base.ChallengerNotReadyError, match="InferenceService ml/ranker"):
        router.apply(5)
    with pytest.raises(base.ChallengerNotReadyError):
        router.promote()
    assert router.apply(0).challenger_weight == 0


def test_status_is_not_writable_through_the_main_resource(
    kube: seed.Cluster, router: base.TrafficRouter
) -> None:
    router.apply(5)
    isvc = kube.get(seed.KSERVE, "ranker")
    assert (
        isvc["status"]["components"]["predictor"]["latestReadyRevision"] == "ranker-predictor-00002"
    )  # the router's merge patches did not touch status
    assert isvc["metadata"]["generation"] == 2


def test_missing_inferenceservice(
    api: kubernetes.client.ApiClient, make_config: MakeConfig
) -> None:
    with pytest.raises(base.RouteNotFoundError, match="InferenceService ml/ranker not found"):
        routers.router_for(make_config(base.RouterKind.KSERVE), api).observe()


def test_second_owner_is_refused(
    api: kubernetes.client.ApiClient, make_config: MakeConfig, router: base.TrafficRouter
) -> None:
    router.apply(5)
    other = routers.router_for(make_config(base.RouterKind.KSERVE, owner="ml/exp-b"), api)
    with pytest.raises(base.RouteOwnedError):
        other.apply(5)


class StatusWritingRouter(kserve.KServeRouter):
    """A buggy router that writes its split into status through the main resource."""

    def _patches(
        self, objs: dict[objects.Ref, objects.Body | None], target: base.Target
    ) -> list[tuple[objects.Ref, objects.Body]]:
        return [(self._isvc, {"status": {"canaryTrafficPercent": target.challenger_weight}})]


def test_a_write_the_server_drops_fails_verification(
    served: emulator.Served,
    router: base.TrafficRouter,
    make_config: MakeConfig,
    api: kubernetes.client.ApiClient,
) -> None:
    buggy = StatusWritingRouter(make_config(base.RouterKind.KSERVE), api)
    with pytest.raises(base.RouteVerifyError, match="InferenceService ml/ranker did not keep"):
        buggy.apply(5)
    patches = [
        r
        for r in served.emulator.writes("/inferenceservices/ranker")
        if not r.path.endswith("/status")
    ]
    assert len(patches) == 1  # verified after the first write, not retried
