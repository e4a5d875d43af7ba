"""Fixtures: an emulator served over HTTP, the official client for it, and router configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes.client
import pytest

from canaryctl_demo.kube import seed
from controller.routers import base
from tests import emulated

served = emulated.served  # fixtures
api = emulated.api
MakeConfig = Callable[..., base.RouterConfig]


@pytest.fixture()
def kube(api: kubernetes.client.ApiClient) -> seed.Cluster:
    return seed.Cluster(api, "ml")


@pytest.fixture()
def make_config() -> MakeConfig:
    def make(kind: base.RouterKind, **fields: Any) -> base.RouterConfig:
        defaults: dict[str, Any] = dict(
            namespace="ml",
            owner="ml/exp-a",
            champion=base.Backend("ranker-v1"),
            challenger=base.Backend("ranker-v2"),
            route="ranker",
        )
        return base.RouterConfig(kind, **{**defaults, **fields})

    return make
