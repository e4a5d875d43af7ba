"""Fixtures for tests that talk to the Kubernetes API emulator over HTTP with the official client.

Import them into a directory's ``conftest.py`` (``from tests.emulated import api, served``).
"""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes.client
import pytest

from canaryctl_demo.kube import emulator


@pytest.fixture()
def served() -> Iterator[emulator.Served]:
    with emulator.serve() as served:
        yield served


@pytest.fixture()
def api(served: emulator.Served) -> Iterator[kubernetes.client.ApiClient]:
    client = served.api_client()
    yield client
    client.close()
