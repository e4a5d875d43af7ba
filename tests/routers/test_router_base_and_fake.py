"""The in-memory fake keeps the routers' contract; the pure policy and config checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.routers import base, fake

MakeConfig = Callable[..., base.RouterConfig]


@pytest.fixture()
def router(make_config: MakeConfig) -> fake.FakeRouter:
    return fake.FakeRouter(make_config(base.RouterKind.GATEWAY_API))


def test_steps_promote(router: fake.FakeRouter) -> None:
    for weight in (5, 25, 50):
        state = router.apply(weight)
        assert (state.champion_weight, state.challenger_weight, state.owner) == (
            100 - weight,
            weight,
            "ml/exp-a",
        )
    state = router.promote()
    assert (state.challenger_weight, state.owner) == (100, None)
    assert router.finalize() == state
    assert router.writes == 4


def test_idempotent(router: fake.FakeRouter) -> None:
    router.apply(25)
    router.apply(25)
    assert router.writes == 1


def test_finalize_rolls_back(router: fake.FakeRouter) -> None:
    router.apply(50)
    state = router.finalize()
    assert (state.challenger_weight, state.owner) == (0, None)


def test_not_ready_refused(router: fake.FakeRouter) -> None:
    router.challenger_ready = False
    with pytest.raises(base.ChallengerNotReadyError):
        router.apply(5)
    assert router.apply(0).challenger_weight == 0


def test_missing(router: fake.FakeRouter) -> None:
    router.exists = False
    with pytest.raises(base.RouteNotFoundError, match="ml/ranker not found"):
        router.observe()


def test_other_owner(router: fake.FakeRouter) -> None:
    router.owner = "ml/exp-b"
    with pytest.raises(base.RouteOwnedError, match="owned by ml/exp-b"):
        router.claim()
    assert router.finalize().owner == "ml/exp-b"
    assert router.writes == 0


def test_conflicts_are_retried_then_bounded(router: fake.FakeRouter) -> None:
    router.conflicts = 2
    assert router.apply(5).challenger_weight == 5
    router.conflicts = 5
    with pytest.raises(base.RouteConflictError):
        router.apply(25)


def test_replicas_fake_has_no_readiness_gate(make_config: MakeConfig) -> None:
    router = fake.FakeRouter(
        make_config(base.RouterKind.REPLICAS, total_replicas=4), challenger_ready=False
    )
    assert router.apply(25).challenger_weight == 25


def state(owner: str | None = None, ready: bool = True) -> base.RouteState:
    return base.RouteState("HTTPRoute ml/r", 100, 0, ready, owner, "1", 0.0)


@pytest.mark.parametrize(
    ("action", "current", "weight", "expected"),
    [
        (base.Action.CLAIM, state(), 0, base.Target(None, "ml/a")),
        (base.Action.APPLY, state(), 25, base.Target(25, "ml/a")),
        (base.Action.APPLY, state("ml/a"), 0, base.Target(0, "ml/a")),
        (base.Action.APPLY, state(ready=False), 0, base.Target(0, "ml/a")),
        (base.Action.PROMOTE, state("ml/a"), 0, base.Target(100, None, promoted=True)),
        (base.Action.FINALIZE, state("ml/a"), 0, base.Target(0, None)),
        (base.Action.FINALIZE, state(), 0, None),
        (base.Action.FINALIZE, state("ml/b"), 0, None),
    ],
)
def test_plan_table(
    action: base.Action, current: base.RouteState, weight: int, expected: base.Target | None
) -> None:
    assert base.plan(action, current, "ml/a", weight) == expected


@pytest.mark.parametrize(
    ("action", "current", "weight", "error"),
    [
        (base.Action.CLAIM, state("ml/b"), 0, base.RouteOwnedError),
        (base.Action.PROMOTE, state("ml/b"), 0, base.RouteOwnedError),
        (base.Action.APPLY, state(ready=False), 5, base.ChallengerNotReadyError),
        (base.Action.PROMOTE, state(ready=False), 0, base.ChallengerNotReadyError),
        (base.Action.APPLY, state(), 101, ValueError),
    ],
)
def test_plan_refusals(
    action: base.Action, current: base.RouteState, weight: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        base.plan(action, current, "ml/a", weight)


def test_config_validation() -> None:
    backends = (base.Backend("a"), base.Backend("b"))
    with pytest.raises(ValueError, match="route"):
        base.RouterConfig(base.RouterKind.ISTIO, "ml", "ml/x", *backends)
    with pytest.raises(ValueError, match="total_replicas"):
        base.RouterConfig(base.RouterKind.REPLICAS, "ml", "ml/x", *backends)
    with pytest.raises(ValueError, match="challenger: must differ"):
        base.RouterConfig(base.RouterKind.KSERVE, "ml", "ml/x", backends[0], backends[0], "r")
    backend = base.Backend("ranker-v2", service="ranker-v2-svc")
    assert (backend.service_name, backend.deployment_name) == ("ranker-v2-svc", "ranker-v2")


@pytest.mark.parametrize(
    ("router", "expected"),
    [
        (
            {"gatewayAPI": {"httpRoute": "ranker", "ruleIndex": 1}},
            {"kind": base.RouterKind.GATEWAY_API, "route": "ranker", "index": 1},
        ),
        (
            {
                "istio": {
                    "virtualService": "vs",
                    "routeIndex": 2,
                    "host": "ranker",
                    "championSubset": "v1",
                    "challengerSubset": "v2",
                }
            },
            {
                "kind": base.RouterKind.ISTIO,
                "route": "vs",
                "index": 2,
                "host": "ranker",
                "champion_subset": "v1",
                "challenger_subset": "v2",
            },
        ),
        (
            {"kserve": {"inferenceService": "isvc"}},
            {"kind": base.RouterKind.KSERVE, "route": "isvc"},
        ),
        (
            {"replicas": {"totalReplicas": 4}},
            {"kind": base.RouterKind.REPLICAS, "total_replicas": 4},
        ),
    ],
)
def test_config_from_the_typed_spec(router: dict[str, Any], expected: dict[str, Any]) -> None:
    from controller.experiment import spec, validation

    config = base.config_for(
        "ml",
        "exp-a",
        spec.Arm("ranker-v1", "ranker-v1", "ranker-v1"),
        spec.Arm("ranker-v2", "svc-v2", "dep-v2"),
        validation.router_from_raw(router),
    )
    assert config == base.RouterConfig(
        **{
            "namespace": "ml",
            "owner": "ml/exp-a",
            "champion": base.Backend("ranker-v1", "ranker-v1", "ranker-v1"),
            "challenger": base.Backend("ranker-v2", "svc-v2", "dep-v2"),
            **expected,
        }
    )
