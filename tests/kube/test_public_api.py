"""The public names of the emulator and router packages, pinned."""

from __future__ import annotations

import controller.kube
import controller.routers


def test_kube_exports() -> None:
    assert controller.kube.__all__ == [
        "BUILTIN_KINDS", "ApiError", "Emulator", "Kind", "LoggedRequest", "Served", "Store",
        "api_client", "serve",
    ]


def test_routers_exports() -> None:
    assert controller.routers.__all__ == ["router_for"]
