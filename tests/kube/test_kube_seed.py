"""The objects the tests and the demo seed are valid Kubernetes objects."""

from __future__ import annotations

import kubernetes_validate

from canaryctl_demo.kube import seed


def test_seeded_deployment_is_valid() -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(seed.deployment("ranker-v1", replicas=3), version, strict=True)
