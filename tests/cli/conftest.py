"""Fixtures: the Kubernetes API emulator with the Experiment CRD, a kubeconfig for it, the CLI.

``cli(...)`` runs ``canaryctl`` in-process with ``CliRunner`` against the emulator, as a user
would with ``--kubeconfig``; ``cluster`` seeds Experiments and writes their status straight
into the emulator's store, playing the operator.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from canaryctl_demo.kube import emulator
from controller.cli.main import app
from controller.experiment import spec

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "manifests" / "crd.yaml").read_text())
EXAMPLE = ROOT / "manifests" / "examples" / "gateway-api.yaml"
NAMESPACE = "ml"

Run = Callable[..., Result]


def experiment(name: str = "exp-a", **spec_changes: Any) -> dict[str, Any]:
    """A valid Experiment (automatic promotion, two steps, one guardrail per kind)."""
    body: dict[str, Any] = {
        "apiVersion": f"{spec.API_GROUP}/{spec.API_VERSION}",
        "kind": spec.KIND,
        "metadata": {"name": name},
        "spec": {
            "champion": {"name": "ranker-v1"},
            "challenger": {"name": "ranker-v2"},
            "router": {"gatewayAPI": {"httpRoute": "ranker"}},
            "steps": [
                {"weight": 10, "minDuration": "1h", "minSamples": 20000},
                {"weight": 50, "minDuration": "2h", "minSamples": 50000},
            ],
            "analysis": {
                "revenueCap": {"value": 100},
                "guardrails": [
                    {"name": "revenue", "kind": "mean", "margin": {"relative": 0.02}},
                    {"name": "latency", "kind": "tail", "thresholdMs": 250, "kappa": 1.2},
                    {"name": "errors", "kind": "rate", "kappa": 1.5},
                ],
            },
        },
    }
    body["spec"].update(copy.deepcopy(spec_changes))
    return body


class Cluster:
    """The emulator's store, used directly to seed objects and to play the operator."""

    def __init__(self, served: emulator.Served) -> None:
        self.emulator = served.emulator
        self.store = served.emulator.store
        self.kind = served.emulator.kind(spec.API_GROUP, spec.API_VERSION, spec.PLURAL)

    def create(self, body: dict[str, Any], namespace: str = NAMESPACE) -> dict[str, Any]:
        return self.store.create(self.kind, namespace, body)

    def get(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        return self.store.get(self.kind, namespace, name)

    def set_status(self, name: str, status: dict[str, Any], namespace: str = NAMESPACE) -> None:
        self.store.patch(self.kind, namespace, name, {"status": status}, subresource="status")

    def writes(self) -> list[emulator.LoggedRequest]:
        return self.emulator.writes("/experiments")


@pytest.fixture()
def served() -> Iterator[emulator.Served]:
    with emulator.serve() as served:
        served.emulator.load_crd(CRD)
        yield served


@pytest.fixture()
def cluster(served: emulator.Served) -> Cluster:
    return Cluster(served)


@pytest.fixture()
def kubeconfig(served: emulator.Served, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(served.kubeconfig(NAMESPACE)))
    return path


@pytest.fixture()
def cli(kubeconfig: Path) -> Run:
    """Run ``canaryctl ARGS --kubeconfig <the emulator's>``; stdout and stderr kept apart."""

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, [*args, "--kubeconfig", str(kubeconfig)], input=input)

    return run
