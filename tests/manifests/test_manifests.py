"""The manifests: built-in kinds valid for Kubernetes, the CRD structural and in sync,
examples valid against the CRD, and RBAC exactly what the operator uses."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from controller.experiment import crd, spec
from controller.operate import permissions

ROOT = Path(__file__).parents[2]
MANIFESTS = ROOT / "manifests"
K8S_VERSION = "1.30.0"
EXAMPLES = sorted((MANIFESTS / "examples").glob("*.yaml"))


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


BUILT_IN = [
    pytest.param(doc, id=f"{name}:{doc['kind']}:{doc['metadata']['name']}")
    for name in ("crd.yaml", "rbac.yaml", "rbac-cluster-wide.yaml", "operator.yaml")
    for doc in _docs(name)
]


@pytest.mark.parametrize("doc", BUILT_IN)
def test_built_in_kinds_are_valid(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_validate_is_strict() -> None:
    (deployment,) = [d for d in _docs("operator.yaml") if d["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_crd_yaml_is_generated() -> None:
    assert (MANIFESTS / "crd.yaml").read_text() == crd.render()


# Short names of the CRDs most often installed next to canaryctl: Argo Rollouts (Rollout,
# Experiment, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate), Flagger (none besides
# its plurals), KServe (InferenceService, TrainedModel, InferenceGraph) and Seldon
# (SeldonDeployment). Ours must clash with none of them, nor with their kinds and plurals.
OTHER_CRD_NAMES = {
    "ro", "rollout", "rollouts", "exp", "experiment", "experiments", "ar", "at", "cat",
    "canary", "canaries", "isvc", "tm", "ig", "sdep",
}  # fmt: skip


def test_the_short_name_clashes_with_no_neighbouring_crd() -> None:
    (doc,) = _docs("crd.yaml")
    assert not set(doc["spec"]["names"]["shortNames"]) & OTHER_CRD_NAMES


def test_crd_names() -> None:
    (doc,) = _docs("crd.yaml")
    assert doc["metadata"]["name"] == "experiments.canaryctl.dev"
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "Experiment",
        "experiments",
        ["cexp"],
    )
    (version,) = doc["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Weight": ".status.challengerWeight",
        "Step": ".status.step",
        "Verdict": ".status.verdict",
        "Age": ".metadata.creationTimestamp",
    }
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for path in columns.values():
        if path.startswith(".status."):
            assert path.removeprefix(".status.") in status


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node (not inside a logical junctor) with its path."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


JUNCTORS = ("oneOf", "anyOf", "allOf", "not")
FORBIDDEN_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")


def _schema() -> dict[str, Any]:
    (doc,) = _docs("crd.yaml")
    return doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_schema_is_structural() -> None:
    """The rules of a structural schema (Kubernetes docs, 'Specifying a structural schema')."""
    for path, node in _walk(_schema()):
        if path == ".metadata":
            assert node == {"type": "object"}
            continue
        assert "type" in node, f"{path}: every node needs a type"
        assert "$ref" not in node and "additionalItems" not in node, path
        if node["type"] == "array":
            assert "items" in node, f"{path}: arrays need items"
        for junctor in JUNCTORS:
            for branch in node.get(junctor, []):
                for key in FORBIDDEN_IN_JUNCTORS:
                    assert key not in branch, f"{path}.{junctor}: {key} is not allowed"
                for key in branch.get("required", []):
                    assert key in node.get("properties", {}), f"{path}.{junctor}: {key}"
        if node["type"] == "string" and path.startswith(".spec"):
            assert "maxLength" in node or "enum" in node, f"{path}: bound strings for CEL cost"
        if node["type"] == "array" and path.startswith(".spec"):
            assert "maxItems" in node, f"{path}: bound arrays for CEL cost"


def _default_nodes() -> Iterator[tuple[str, dict[str, Any]]]:
    for path, node in _walk(_schema()):
        if "default" in node:
            yield path, node


@pytest.mark.parametrize(("path", "node"), list(_default_nodes()), ids=lambda v: str(v)[:40])
def test_defaults_are_valid(path: str, node: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(node).validate(node["default"])


_SELF_FIELD = re.compile(r"\bself\.([A-Za-z]+)")


def test_cel_rules_name_existing_fields() -> None:
    """A cheap guard against typos in CEL: every self.<field> is a property of the node."""
    checked = 0
    for path, node in _walk(_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            props = node.get("properties") or node.get("items", {}).get("properties", {})
            for name in _SELF_FIELD.findall(rule["rule"]):
                if node["type"] == "array" and name in ("map", "all", "exists", "size"):
                    continue
                assert name in props, f"{path}: {rule['rule']!r} uses unknown field {name}"
            assert rule["message"]
            if "fieldPath" in rule:
                first = rule["fieldPath"].split(".")[1]
                assert first in props, f"{path}: fieldPath {rule['fieldPath']}"
            checked += 1
    assert checked >= 10


def test_every_router_kind_is_in_the_schema() -> None:
    router = _schema()["properties"]["spec"]["properties"]["router"]
    assert set(router["properties"]) == {k.value for k in spec.RouterKind}
    assert router["oneOf"] == [{"required": [k.value]} for k in spec.RouterKind]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_validate_against_the_crd(path: Path) -> None:
    body = yaml.safe_load(path.read_text())
    assert body["apiVersion"] == f"{spec.API_GROUP}/{spec.API_VERSION}"
    assert body["kind"] == spec.KIND
    jsonschema.Draft4Validator(_schema()).validate(body)


def test_crd_schema_rejects_a_bad_example() -> None:
    body = yaml.safe_load(EXAMPLES[0].read_text())
    body["spec"]["steps"][0]["weight"] = 150
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(_schema()).validate(body)


def test_one_example_per_router() -> None:
    kinds = set()
    for path in EXAMPLES:
        (router,) = yaml.safe_load(path.read_text())["spec"]["router"]
        kinds.add(router)
    assert kinds == {k.value for k in spec.RouterKind}


# -- RBAC ------------------------------------------------------------------------------


def _rules(
    kind: str, namespace: str | None = None, name: str = "rbac.yaml"
) -> set[tuple[str, str, str]]:
    out = set()
    for doc in _docs(name):
        if doc["kind"] != kind or doc["metadata"].get("namespace") != namespace:
            continue
        for rule in doc["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{kind}: no wildcards"
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
            out |= {
                (g, r, v)
                for g in rule["apiGroups"]
                for r in rule["resources"]
                for v in rule["verbs"]
            }
    return out


def _watched_namespaces() -> list[str]:
    (deployment,) = [d for d in _docs("operator.yaml") if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return [a.split("=", 1)[1] for a in container["args"] if a.startswith("--watch-namespace=")]


def test_a_role_in_each_watched_namespace_grants_exactly_what_the_operator_uses() -> None:
    watched = _watched_namespaces()
    assert watched, "the manifest's operator watches named namespaces (least privilege)"
    for namespace in watched:
        assert _rules("Role", namespace) == permissions.granted(permissions.Scope.WATCHED_NAMESPACE)
    assert not [d for d in _docs("rbac.yaml") if d["kind"].startswith("Cluster")]


def test_leader_election_role_grants_exactly_what_the_operator_uses() -> None:
    assert _rules("Role", "canaryctl-system") == permissions.granted(
        permissions.Scope.OPERATOR_NAMESPACE
    )


def test_cluster_wide_is_an_explicit_option_with_the_same_rules() -> None:
    assert _rules("ClusterRole", name="rbac-cluster-wide.yaml") == permissions.granted(
        permissions.Scope.WATCHED_NAMESPACE
    )


def test_deployments_are_read_only_and_scaled_through_the_subresource() -> None:
    deployments = {(r, v) for g, r, v in permissions.granted() if g == "apps"}
    assert deployments == {
        ("deployments", "get"),
        ("deployments", "list"),
        ("deployments", "watch"),
        ("deployments/scale", "patch"),
    }


def test_rbac_never_touches_secrets_or_escalates() -> None:
    everything = _rules("ClusterRole", name="rbac-cluster-wide.yaml") | {
        rule for ns in [*_watched_namespaces(), "canaryctl-system"] for rule in _rules("Role", ns)
    }
    resources = {r for _, r, _ in everything}
    assert not resources & {"secrets", "pods/exec", "roles", "clusterroles", "rolebindings"}
    assert not {v for _, _, v in everything} & {"escalate", "bind", "impersonate"}
    # nothing of the user's is ever deleted: the one delete is of the operator's own member
    # Leases, in its own namespace (a replica leaving, or one dead for two lease durations)
    deletes = {(g, r) for g, r, v in everything if v == "delete"}
    assert deletes == {("coordination.k8s.io", "leases")}
    assert ("coordination.k8s.io", "leases", "delete") in _rules("Role", "canaryctl-system")
    assert ("coordination.k8s.io", "leases", "delete") not in permissions.granted(
        permissions.Scope.WATCHED_NAMESPACE
    )


def test_bindings_point_at_the_operator_service_account() -> None:
    (deployment,) = [d for d in _docs("operator.yaml") if d["kind"] == "Deployment"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = deployment["metadata"]["namespace"]
    docs = _docs("rbac.yaml") + _docs("rbac-cluster-wide.yaml")
    roles = {
        (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
        for d in docs
        if "rules" in d
    }
    for doc in docs:
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert doc["subjects"] == [
                {"kind": "ServiceAccount", "name": account, "namespace": namespace}
            ]
            ref = doc["roleRef"]
            assert (ref["kind"], ref["name"], doc["metadata"].get("namespace")) in roles
    sa = [d for d in _docs("rbac.yaml") if d["kind"] == "ServiceAccount"]
    assert [(d["metadata"]["name"], d["metadata"]["namespace"]) for d in sa] == [
        (account, namespace)
    ]


# -- operator Deployment ---------------------------------------------------------------


def test_operator_deployment() -> None:
    (deployment,) = [d for d in _docs("operator.yaml") if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe in container
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    env = {e["name"]: e for e in container["env"]}
    secret = env["CANARYCTL_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "canaryctl-database", "key": "url"}
    assert "value" not in env["CANARYCTL_DATABASE_URL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_dockerfile() -> None:
    text = (MANIFESTS / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", text, re.M)
    assert re.search(r"^USER 10001", text, re.M), "run as the non-root user the Deployment expects"
    assert 'ENTRYPOINT ["canaryctl"]' in text
    for path in ("pyproject.toml", "analysis", "controller", "migrations"):
        assert f"COPY {path}" in text


def test_health_and_metrics_listen_on_the_pod_ip_and_prometheus_finds_them() -> None:
    """The binary listens on 127.0.0.1 by default; the manifest gives it the pod IP."""
    (deployment,) = [d for d in _docs("operator.yaml") if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    args = container["args"]
    assert "--bind-address=$(POD_IP)" in args and "--metrics-bind-address=$(POD_IP)" in args
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--metrics-port={ports['metrics']}" in args
    assert f"--health-port={ports['health']}" in args
    (service,) = [d for d in _docs("operator.yaml") if d["kind"] == "Service"]
    (monitor,) = _docs("servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in service_ports


def test_the_operator_binary_listens_on_localhost_by_default() -> None:
    import inspect

    from controller.cli import operator
    from controller.operate import metrics

    defaults = {
        name: p.default.default if hasattr(p.default, "default") else p.default
        for name, p in inspect.signature(operator.run).parameters.items()
    }
    assert defaults["bind_address"] == "127.0.0.1"
    assert defaults["metrics_bind_address"] is None  # the same as --bind-address
    server, _ = metrics.serve(metrics.Metrics(), lambda: True, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
