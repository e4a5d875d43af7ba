"""Every Kubernetes API request the operator makes, listed once.

``manifests/rbac.yaml`` grants exactly these and nothing more (a Role in each watched
namespace and one in the operator's; ``rbac-cluster-wide.yaml`` the same as a ClusterRole,
for an operator that watches every namespace); a test compares the manifests with this
list, and another runs the operator and fails on a request not listed here or a grant no
request uses. A new request (a router that patches something new, say) is added here
first, with a reason. Values only; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controller.experiment import spec

_GROUP, _PLURAL = spec.API_GROUP, spec.PLURAL


class Scope(StrEnum):
    """Where a permission is granted."""

    # A Role in each namespace the operator watches (rbac.yaml), or, as an explicit option
    # for an operator watching every namespace, a ClusterRole (rbac-cluster-wide.yaml).
    WATCHED_NAMESPACE = "watched-namespace"
    OPERATOR_NAMESPACE = "operator-namespace"  # Role in the operator's own namespace


@dataclass(frozen=True)
class Permission:
    """Verbs on one resource of one API group, and why the operator needs them."""

    group: str
    resource: str
    verbs: frozenset[str]
    why: str
    scope: Scope = Scope.WATCHED_NAMESPACE


_PATCH = frozenset({"patch"})
_READ = frozenset({"get", "list", "watch"})  # watched by an informer; one re-read after a 409
_OPERATOR_NS = Scope.OPERATOR_NAMESPACE

OPERATOR_PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        _GROUP,
        _PLURAL,
        _READ | _PATCH,
        "list and watch Experiments (the informer), get one again after a conflicting write; "
        "patch metadata (the finalizer)",
    ),
    Permission(_GROUP, f"{_PLURAL}/status", _PATCH, "write status"),
    Permission("", "events", frozenset({"create"}), "events on Experiments (core/v1)"),
    Permission(
        "coordination.k8s.io",
        "leases",
        frozenset({"list", "create", "update", "delete"}),
        "shards shared by operator replicas (operate.shards, as the manifest runs it): "
        "listed by label each round, renewed with PUT, a member's deleted when it leaves "
        "(with --shards=1 the leader Lease needs get, create and update instead)",
        _OPERATOR_NS,
    ),
    Permission(
        "gateway.networking.k8s.io", "httproutes", _READ | _PATCH, "gatewayAPI router: weights"
    ),
    Permission("networking.istio.io", "virtualservices", _READ | _PATCH, "istio router: weights"),
    Permission(
        "serving.kserve.io",
        "inferenceservices",
        _READ | _PATCH,
        "kserve router: canaryTrafficPercent; traffic and readiness from its status",
    ),
    Permission(
        "apps",
        "deployments",
        _READ,
        "challenger readiness; the replicas router reads replicas (read-only: a write could "
        "change the pod template)",
    ),
    Permission(
        "apps", "deployments/scale", _PATCH, "replicas router: spec.replicas and nothing else"
    ),
    Permission(
        "coordination.k8s.io",
        "leases",
        _READ | frozenset({"create", "patch"}),
        "replicas router: a Lease per Deployment records the Experiment that owns it",
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
