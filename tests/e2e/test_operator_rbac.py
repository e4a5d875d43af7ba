"""The operator's RBAC covers every request it really makes, read from the emulator's log."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa

from analysis import Scenario
from canaryctl_demo.kube.emulator import LoggedRequest
from canaryctl_demo.world import GROUP, PLURAL, ROUTERS, VERSION, World, experiment_body
from controller.operate import permissions

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
BASE = Scenario(requests_per_minute=10_000)
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/[^/]+)?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)


def _verb(req: LoggedRequest) -> tuple[str, str, str]:
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
    return group, resource, verb


def _operator_requests(world: World, run) -> set[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """Run ``run`` with every operator pass's requests captured from the emulator's log."""
    used: set[tuple[str, str, str]] = set()
    original = world.operator.run_once

    def run_once(**kwargs):  # type: ignore[no-untyped-def]
        start = len(world.served.emulator.log)
        try:
            return original(**kwargs)
        finally:
            used.update(_verb(r) for r in world.served.emulator.log[start:])

    world.operator.run_once = run_once  # type: ignore[method-assign]
    run()
    return used


def test_every_request_the_operator_makes_is_granted_by_its_rbac(
    truncating_engine: sa.Engine,
) -> None:
    used: set[tuple[str, str, str]] = set()
    for kind in ("gatewayAPI", "kserve", "replicas"):
        with World.start(
            truncating_engine, start=T0, router_kind=kind, namespace=f"rbac-{kind.lower()}"
        ) as world:
            ns = world.namespace

            def scenario(world: World = world, ns: str = ns, kind: str = kind) -> None:
                world.create(experiment_body("good", namespace=ns, router=ROUTERS[kind]))
                world.run("good", BASE, until={"Promoted"}, max_minutes=240)
                world.create(experiment_body("gone", namespace=ns, router=ROUTERS[kind]))
                world.run("gone", BASE, until={"never"}, max_minutes=2)
                world.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "gone")
                world.advance()

            used |= _operator_requests(world, scenario)
    assert ("canaryctl.dev", "experiments/status", "patch") in used  # the capture saw the operator
    missing = used - permissions.granted()
    assert not missing, f"the operator makes requests its RBAC does not grant: {sorted(missing)}"
