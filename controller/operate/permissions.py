"""Every Kubernetes API request the operator makes, listed once.

``manifests/rbac.yaml`` grants exactly these and nothing more; a test compares the two,
so a new request (a router that patches something new, say) must be added here first,
with a reason. The operator's own code should not reach for anything not listed. Values
only; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controller.experiment import spec

_GROUP, _PLURAL = spec.API_GROUP, spec.PLURAL


class Scope(StrEnum):
    """Where a permission is granted."""

    CLUSTER = "cluster"  # ClusterRole: every namespace that holds Experiments
    OPERATOR_NAMESPACE = "operator-namespace"  # Role in the operator's own namespace


@dataclass(frozen=True)
class Permission:
    """Verbs on one resource of one API group, and why the operator needs them."""

    group: str
    resource: str
    verbs: frozenset[str]
    why: str
    scope: Scope = Scope.CLUSTER


_READ = frozenset({"get", "list", "watch"})
_WRITE = frozenset({"patch", "update"})

OPERATOR_PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        _GROUP,
        _PLURAL,
        _READ | _WRITE,
        "watch Experiments; patch metadata (the finalizer)",
    ),
    Permission(_GROUP, f"{_PLURAL}/status", frozenset({"get", "patch", "update"}), "write status"),
    Permission(
        _GROUP,
        f"{_PLURAL}/finalizers",
        frozenset({"update"}),
        "set the finalizer that restores the route on delete",
    ),
    Permission("", "events", frozenset({"create", "patch"}), "events on Experiments (core/v1)"),
    Permission(
        "events.k8s.io", "events", frozenset({"create", "patch"}), "events on Experiments (v1)"
    ),
    Permission(
        "coordination.k8s.io",
        "leases",
        _READ | frozenset({"create"}) | _WRITE,
        "leader election between operator replicas",
        Scope.OPERATOR_NAMESPACE,
    ),
    Permission(
        "gateway.networking.k8s.io", "httproutes", _READ | _WRITE, "gatewayAPI router: backendRefs"
    ),
    Permission("networking.istio.io", "virtualservices", _READ | _WRITE, "istio router: weights"),
    Permission(
        "serving.kserve.io",
        "inferenceservices",
        _READ | _WRITE,
        "kserve router: canaryTrafficPercent",
    ),
    Permission(
        "serving.kserve.io",
        "inferenceservices/status",
        frozenset({"get"}),
        "kserve router: traffic split and readiness of the latest revision",
    ),
    Permission(
        "apps",
        "deployments",
        _READ | _WRITE,
        "challenger readiness; replicas router scales the two Deployments",
    ),
)


def granted(scope: Scope | None = None) -> frozenset[tuple[str, str, str]]:
    """(group, resource, verb) triples the operator needs, optionally in one scope."""
    return frozenset(
        (perm.group, perm.resource, verb)
        for perm in OPERATOR_PERMISSIONS
        if scope is None or perm.scope is scope
        for verb in perm.verbs
    )
