"""manifests/ingest.yaml: valid built-in kinds, wired together, admitting only labelled clients,
with arguments the real ``canaryctl ingest serve`` accepts; the Dockerfile's ``ingest`` target."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import typer.main
import yaml

from controller.cli.main import app

MANIFESTS = Path(__file__).parents[2] / "manifests"
K8S_VERSION = "1.30.0"
DOCS = [d for d in yaml.safe_load_all((MANIFESTS / "ingest.yaml").read_text()) if d]


def _one(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in DOCS if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("doc", DOCS, ids=[f"{d['kind']}:{d['metadata']['name']}" for d in DOCS])
def test_built_in_kinds_are_valid(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kinds() -> None:
    assert sorted(d["kind"] for d in DOCS) == [
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]


def _pod_labels() -> dict[str, str]:
    deployment = _one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    return dict(labels)


def test_the_deployment_args_are_what_the_command_accepts() -> None:
    (container,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["ingest", "serve"]
    group = typer.main.get_command(app)
    with typer.Context(group) as root:
        ingest = group.get_command(root, "ingest")  # type: ignore[attr-defined]
        with typer.Context(ingest, parent=root) as parent:
            serve = ingest.get_command(parent, "serve")
            context = serve.make_context("serve", list(args[2:]), parent=parent)  # raises if bad
    params = context.params
    assert params["token_review"] is True and params["token"] is None
    assert list(params["audience"]) == ["canaryctl-ingest"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for path in (params["token_file"], params["tls_cert"], params["tls_key"]):
        assert str(Path(path).parent) in mounts
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["https"]
    assert params["port"] == port and params["host"] == "0.0.0.0"


def test_the_deployment_is_hardened_and_probed_over_tls() -> None:
    spec = _one("Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["CANARYCTL_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
        "canaryctl-database"
    )
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["serviceAccountName"] == _one("ServiceAccount")["metadata"]["name"]


def test_the_network_policy_admits_only_labelled_pods() -> None:
    policy = _one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == _pod_labels()
    assert policy["policyTypes"] == ["Ingress"]
    peers = [peer for rule in policy["ingress"] for peer in rule["from"]]
    labels = set()
    for peer in peers:
        assert "ipBlock" not in peer, "no address ranges: only labelled pods"
        selector = peer["podSelector"]["matchLabels"]
        assert all(key.startswith("canaryctl.dev/") for key in selector), selector
        labels |= {f"{k}={v}" for k, v in selector.items()}
    assert "canaryctl.dev/ingest-client=true" in labels
    for rule in policy["ingress"]:
        assert [p["port"] for p in rule["ports"]] == ["https"]


def test_service_and_disruption_budget_select_the_pods() -> None:
    assert _one("Service")["spec"]["selector"] == _pod_labels()
    assert [p["targetPort"] for p in _one("Service")["spec"]["ports"]] == ["https"]
    budget = _one("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"] == _pod_labels()
    assert budget["minAvailable"] < _one("Deployment")["spec"]["replicas"]


def test_token_review_is_the_only_cluster_permission() -> None:
    binding = _one("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:auth-delegator",
    }
    account = _one("ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]


def test_dockerfile_ingest_target_installs_the_serve_extra() -> None:
    text = (MANIFESTS / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)
    assert [name for _, name in stages] == ["base", "ingest", "operator"]  # operator: the default
    ingest = text.split("FROM base AS ingest", 1)[1].split("FROM base AS operator", 1)[0]
    assert 'pip install --editable ".[serve]"' in ingest
    assert re.search(r"^USER 10001:10001$", ingest, re.M)
    operator = text.split("FROM base AS operator", 1)[1]
    assert re.search(r"^USER 10001:10001$", operator, re.M)
    assert 'CMD ["operator", "run"]' in operator
