"""Every hold is a condition people see: the operator against the API emulator and Postgres.

The review's findings reproduced: a second Experiment on a route another one owns looked
healthy in ``status`` (only the operator's log said why it waited), and a Failed
experiment named only its first spec problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import kubernetes.client
import pytest
import sqlalchemy as sa

from analysis import Scenario
from canaryctl_demo.world import HTTPROUTE, World, experiment_body
from controller.cli import output
from controller.storage import decisions as decision_log
from controller.storage import experiments

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
BASE = Scenario(requests_per_minute=10_000)


@pytest.fixture
def world(truncating_engine: sa.Engine) -> Iterator[World]:
    with World.start(truncating_engine, start=T0) as w:
        yield w


def _events(world: World, name: str) -> list[tuple[str, str, str]]:
    items = kubernetes.client.CoreV1Api(world.api).list_namespaced_event(world.namespace).items
    return [(e.type, e.reason, e.message) for e in items if e.involved_object.name == name]


def _condition(world: World, name: str, type_: str) -> dict[str, str]:
    (found,) = [c for c in world.status(name).get("conditions", []) if c["type"] == type_]
    return dict(found)


def test_a_second_experiment_on_a_taken_route_shows_it_is_blocked_and_by_whom(
    world: World,
) -> None:
    world.create(experiment_body("ranker-bad"))
    world.run("ranker-bad", BASE, until={"Progressing"}, max_minutes=3)
    world.create(experiment_body("ranker-third"))
    for _ in range(3):
        world.send_minute("ranker-bad", BASE)
        world.advance()
    held = _condition(world, "ranker-third", "RouteAvailable")
    assert (held["status"], held["reason"]) == ("False", "OwnedByAnotherExperiment")
    assert "HTTPRoute ml/ranker is owned by ml/ranker-bad" in held["message"]
    assert world.status("ranker-third").get("phase", "Pending") == "Pending"
    warnings = [e for e in _events(world, "ranker-third") if e[1] == "OwnedByAnotherExperiment"]
    assert len(warnings) == 1 and warnings[0][0] == "Warning" and "ml/ranker-bad" in warnings[0][2]
    # no failed ticks: the wait is an observation, not an error
    assert not [t for t in world.ticks if t.key == "ml/ranker-third" and t.error]
    # what people see
    view = output.status_view(world.get("ranker-third"), world.clock.now())
    assert (
        "Held:         OwnedByAnotherExperiment: holding; HTTPRoute ml/ranker is owned by " in view
    )
    listed = output.list_table(
        [world.get("ranker-bad"), world.get("ranker-third")], world.clock.now()
    )
    assert listed.splitlines()[2].split()[:3] == [
        "ranker-third",
        "Pending",
        "OwnedByAnotherExperiment",
    ]
    # the owner finishes: the hold clears with a Normal event, and only then does it start
    world.custom.patch_namespaced_custom_object(
        "canaryctl.dev",
        "v1alpha1",
        "ml",
        "experiments",
        "ranker-bad",
        {
            "metadata": {
                "annotations": {
                    "canaryctl.dev/request": '{"id": "rb-1", "action": "rollback", "actor": "sre", "reason": "make room"}'
                }
            }
        },
    )
    world.advance()
    world.advance()
    assert world.status("ranker-bad")["phase"] == "RolledBack"
    assert _condition(world, "ranker-third", "RouteAvailable")["status"] == "True"
    assert world.status("ranker-third")["phase"] == "Progressing"
    assert [
        e[0] for e in _events(world, "ranker-third") if e[2].startswith("no longer holding")
    ] == ["Normal"]
    assert "Held" not in output.status_view(world.get("ranker-third"), world.clock.now())


def test_a_missing_route_is_a_condition_not_a_failed_tick(world: World) -> None:
    world.create(experiment_body("lost", route="nowhere"))
    world.advance(timedelta(0))
    missing = _condition(world, "lost", "RouteFound")
    assert (missing["status"], missing["reason"]) == ("False", "RouteNotFound")
    assert "HTTPRoute ml/nowhere not found" in missing["message"]
    assert not [t for t in world.ticks if t.error]
    # the route appears: the hold clears and the experiment starts
    route = world.custom.get_namespaced_custom_object(*HTTPROUTE[:2], "ml", HTTPROUTE[2], "ranker")
    copy = {
        "apiVersion": route["apiVersion"],
        "kind": route["kind"],
        "spec": route["spec"],
        "metadata": {"name": "nowhere", "namespace": "ml"},
    }
    world.custom.create_namespaced_custom_object(*HTTPROUTE[:2], "ml", HTTPROUTE[2], copy)
    world.advance()
    assert _condition(world, "lost", "RouteFound")["status"] == "True"
    assert world.status("lost")["phase"] == "Progressing"


def test_a_failed_experiment_names_every_spec_problem(
    world: World, truncating_engine: sa.Engine
) -> None:
    world.create(experiment_body("broken", analysis={"alpha": 2}, max_duration="1d"))
    world.advance(timedelta(0))
    status = world.status("broken")
    assert status["phase"] == "Failed"
    for where in ("spec.analysis.alpha", "spec.maxDuration"):
        assert where in status["message"]
        assert any(where in e[2] for e in _events(world, "broken") if e[1] == "InvalidSpec")
    assert "more)" not in status["message"]
    with truncating_engine.connect() as conn:
        exp = experiments.get_experiment(conn, "ml/broken")
        (fail,) = [d for d in decision_log.decisions(conn, exp.id) if d.kind == "fail"]
    assert "spec.maxDuration" in fail.reason and "spec.analysis.alpha" in fail.reason
    assert {i["field"] for i in fail.evidence["issues"]} >= {
        "spec.analysis.alpha",
        "spec.maxDuration",
    }
