"""The operator's RBAC is exactly what it does: every request it makes, read from the
emulator's log, is granted, and every grant is used by some request.

The requests are derived by running the operator, not listed by hand: each router carries
a canary through a step to a promotion, another Experiment is deleted mid-flight (the finalizer, the route
restored), and the full ``Operator.run`` (shard Leases, the watch) runs for a moment. Another
writer changes each object the operator patches just before its first patch, so that the
re-read after a conflict (the only GET of a watched object) is among the requests.
Requests in the operator's namespace are the shards' (``Scope.OPERATOR_NAMESPACE``);
all others are in the watched namespace (``Scope.WATCHED_NAMESPACE``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import kubernetes.client
import sqlalchemy as sa

from analysis import Scenario
from canaryctl_demo.kube.emulator import LoggedRequest
from canaryctl_demo.world import GROUP, PLURAL, ROUTERS, VERSION, World, experiment_body
from controller.decide import manual
from controller.operate import permissions
from controller.operate.loop import OperatorConfig

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
BASE = Scenario(requests_per_minute=10_000)
LEASE_NAMESPACE = "rbac-system"
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
Used = set[tuple[permissions.Scope, str, str, str]]
PROMOTE = manual.format_request(
    manual.ManualRequest("p-1", manual.RequestAction.PROMOTE, "sre", "rbac test", full=True)
)


def _request(req: LoggedRequest) -> tuple[permissions.Scope, str, str, str]:
    match = _PATH.match(req.path)
    assert match, req.path
    group = match["group"] or ""
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    if req.method == "GET":
        verb = (
            "get"
            if match["name"]
            else ("watch" if req.query.get("watch") in ("true", "1") else "list")
        )
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[req.method]
    scope = (
        permissions.Scope.OPERATOR_NAMESPACE
        if match["ns"] == LEASE_NAMESPACE
        else permissions.Scope.WATCHED_NAMESPACE
    )
    return scope, group, resource, verb


_OBJECT = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/namespaces/(?P<ns>[^/]+)/"
    r"(?P<plural>[^/]+)/(?P<name>[^/]+)"
)


def _conflict_once_per_object(world: World) -> None:
    """Before the first PATCH to each object, another writer changes it (the PATCH gets 409)."""
    seen: set[str] = set()

    def hook(req: LoggedRequest) -> None:
        match = _OBJECT.match(req.path)
        if req.method != "PATCH" or match is None:
            return
        obj = (match["group"] or "", match["version"] or match["core"], match["plural"])
        if req.path in seen:  # an object and its subresources each once
            return
        seen.add(req.path)
        emulator = world.served.emulator
        emulator.store.patch(
            emulator.kind(*obj),
            match["ns"],
            match["name"],
            {"metadata": {"annotations": {"rbac-test/another-writer": str(len(seen))}}},
        )

    world.served.emulator.hooks.append(hook)


def _captured(world: World, during: Callable[[], None]) -> Used:
    """Every request the emulator served while ``during`` ran, minus the test's own writes."""
    start = len(world.served.emulator.log)
    during()
    return {_request(r) for r in world.served.emulator.log[start:]}


def _operator_requests(world: World, run: Callable[[], None]) -> Used:
    """Run ``run`` with only the operator passes' requests captured."""
    used: Used = set()
    original = world.operator.run_once

    def run_once(**kwargs):  # type: ignore[no-untyped-def]
        start = len(world.served.emulator.log)
        try:
            return original(**kwargs)
        finally:
            used.update(_request(r) for r in world.served.emulator.log[start:])

    world.operator.run_once = run_once  # type: ignore[method-assign]
    run()
    return used


def _run_the_loop(world: World) -> Used:
    """``Operator.run`` with shards and the watch, until it has made two passes."""
    kubernetes.client.CoreV1Api(world.api).create_namespace({"metadata": {"name": LEASE_NAMESPACE}})
    world.operator.config.lease_namespace = LEASE_NAMESPACE
    world.operator.config.shards = 4  # as the manifest runs it: replicas share shards
    world.operator.config.retry_period = 0.2
    stop = threading.Event()

    def run() -> None:
        thread = threading.Thread(target=world.operator.run, args=(stop,), daemon=True)
        passes = world.operator.passes
        thread.start()
        deadline = time.monotonic() + 30
        while world.operator.passes < passes + 2:
            assert time.monotonic() < deadline, "the operator never led a pass"
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=30)

    return _captured(world, run)


def test_the_operator_rbac_is_exactly_the_requests_it_makes(truncating_engine: sa.Engine) -> None:
    used: Used = set()
    for kind in ROUTERS:
        ns = f"rbac-{kind.lower()}"
        config = OperatorConfig(namespaces=(ns,), workers=1)
        with World.start(
            truncating_engine, start=T0, router_kind=kind, namespace=ns, operator_config=config
        ) as world:

            def scenario(world: World = world, ns: str = ns, kind: str = kind) -> None:
                _conflict_once_per_object(world)
                world.create(experiment_body("good", namespace=ns, router=ROUTERS[kind]))
                world.run("good", BASE, until={"never"}, max_minutes=3)
                world.custom.patch_namespaced_custom_object(  # promote --full: fast
                    GROUP, VERSION, ns, PLURAL, "good", {"metadata": {"annotations": PROMOTE}}
                )
                world.run("good", BASE, until={"Promoted"}, max_minutes=3)
                assert world.status("good")["phase"] == "Promoted"
                world.create(experiment_body("gone", namespace=ns, router=ROUTERS[kind]))
                world.run("gone", BASE, until={"never"}, max_minutes=2)
                world.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "gone")
                world.advance()

            used |= _operator_requests(world, scenario)
            if kind == "gatewayAPI":
                used |= _run_the_loop(world)
    needed = {(scope, g, r, v) for scope, g, r, v in used}
    granted = {
        (scope, g, r, v) for scope in permissions.Scope for g, r, v in permissions.granted(scope)
    }
    assert needed - granted == set(), "requests the operator makes that its RBAC does not grant"
    assert granted - needed == set(), "grants the operator never uses"
