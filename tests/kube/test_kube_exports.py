"""The public names of the emulator and router packages, pinned."""

from __future__ import annotations

import subprocess
import sys

import canaryctl_demo.kube
import controller.routers


def test_kube_exports() -> None:
    assert canaryctl_demo.kube.__all__ == [
        "BUILTIN_KINDS",
        "ApiError",
        "Emulator",
        "Kind",
        "LoggedRequest",
        "Served",
        "Store",
        "api_client",
        "serve",
    ]


def test_routers_exports() -> None:
    assert controller.routers.__all__ == ["router_for"]


def test_the_fake_does_not_import_the_kubernetes_client() -> None:
    code = "import sys; import controller.routers.fake; sys.exit('kubernetes' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
