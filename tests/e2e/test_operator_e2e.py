"""The whole operator against the Kubernetes API emulator and real Postgres, in simulated time.

Traffic follows the split the router reports each minute and goes through the real ingest
path; the operator ticks every simulated minute. These tests check what users see: the
phase and reason in status, the route's weights, Events and the decision log.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import kubernetes.client
import pytest
import sqlalchemy as sa

from analysis import Scenario
from canaryctl_demo.world import (
    DECREASING_STEPS,
    GROUP,
    PLURAL,
    VERSION,
    World,
    experiment_body,
)
from controller.decide import manual
from controller.ingest import load
from controller.operate.loop import FINALIZER, OperatorConfig
from controller.storage import db, experiments
from controller.storage import decisions as decision_log
from controller.storage import looks as look_log
from tests.storage.helpers import row, rows_table

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
BASE = Scenario(requests_per_minute=10_000)
DONE = {"Promoted", "RolledBack", "Failed"}


@pytest.fixture
def world(truncating_engine: sa.Engine) -> Iterator[World]:
    with World.start(truncating_engine, start=T0) as w:
        yield w


def _decisions(engine: sa.Engine, key: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        exp = experiments.get_experiment(conn, key)
        return [(d.kind, d.reason_code) for d in decision_log.decisions(conn, exp.id)]


def _events(world: World, name: str) -> list[tuple[str, str]]:
    items = kubernetes.client.CoreV1Api(world.api).list_namespaced_event(world.namespace).items
    return [(e.reason, e.message) for e in items if e.involved_object.name == name]


def test_a_good_canary_is_promoted(world: World, truncating_engine: sa.Engine) -> None:
    world.create(experiment_body("good"))
    status = world.run("good", BASE, until=DONE, max_minutes=240)
    assert status["phase"] == "Promoted", status
    assert world.route_weights() == {"ranker-v1": 0, "ranker-v2": 100}
    kinds = [k for k, _ in _decisions(truncating_engine, "ml/good")]
    assert kinds == ["start", "advance", "promote"]
    assert {g["verdict"] for g in status["guardrails"]} == {"pass"}
    assert status["samples"]["challenger"] > 0 and status["observedGeneration"] == 1
    # one router write per weight change: 0→10 (with the claim), 10→50, 50→100
    assert len(world.served.emulator.writes("/httproutes/ranker")) == 3
    with truncating_engine.connect() as conn:
        looks = look_log.looks(conn, experiments.get_experiment(conn, "ml/good").id)
    minutes = [look["evaluated_until"] for look in looks]
    assert minutes == sorted(set(minutes)) and len(minutes) > 30  # one look per finalised minute
    assert looks[-1]["verdict"] == "pass" and {g["name"] for g in looks[-1]["guardrails"]} == {
        "revenue",
        "latency-p99",
        "errors",
    }


@pytest.mark.parametrize(
    ("effect", "reason"),
    [
        ({"revenue_effect": -0.3}, "guardrail_failed:revenue"),
        ({"latency_factor": 1.3}, "guardrail_failed:latency-p99"),
        ({"error_factor": 4.0}, "guardrail_failed:errors"),
        ({"srm_shortfall": 0.15}, "srm"),
    ],
    ids=["revenue-drop", "latency-regression", "error-spike", "srm"],
)
def test_a_harmful_canary_is_rolled_back(
    world: World, truncating_engine: sa.Engine, effect: dict[str, float], reason: str
) -> None:
    world.create(experiment_body("bad"))
    status = world.run("bad", BASE.with_effect(**effect), until=DONE, max_minutes=240)
    assert (status["phase"], status["reasonCode"]) == ("RolledBack", reason), status["message"]
    assert world.route_weights() == {"ranker-v1": 100, "ranker-v2": 0}
    assert ("rollback", reason) in _decisions(truncating_engine, "ml/bad")
    assert any(r == "RolledBack" for r, _ in _events(world, "bad"))
    with truncating_engine.connect() as conn:
        exp = experiments.get_experiment(conn, "ml/bad")
        rollback = next(d for d in decision_log.decisions(conn, exp.id) if d.kind == "rollback")
    assert rollback.evidence["analysis"]["guardrails"], "the decision carries its evidence"


def test_an_invalid_spec_ends_in_failed_naming_the_field(world: World) -> None:
    world.create(experiment_body("broken", steps=DECREASING_STEPS))
    world.advance(timedelta(0))
    status = world.status("broken")
    assert status["phase"] == "Failed"
    assert "spec.steps[1].weight" in status["message"]
    assert world.route_weights() == {"ranker-v1": 100, "ranker-v2": 0}


def test_manual_rollback_request_is_acted_on_once(
    world: World, truncating_engine: sa.Engine
) -> None:
    world.create(experiment_body("manual"))
    world.run("manual", BASE, until={"never"}, max_minutes=5)
    request = manual.ManualRequest(
        "req-1", manual.RequestAction.ROLLBACK, "alice", "dashboard looks off"
    )
    world.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "ml",
        PLURAL,
        "manual",
        {"metadata": {"annotations": manual.format_request(request)}},
    )
    status = world.run("manual", BASE, until=DONE, max_minutes=3)
    assert (status["phase"], status["reasonCode"]) == ("RolledBack", "manual_rollback")
    world.advance()
    log = _decisions(truncating_engine, "ml/manual")
    assert log.count(("rollback", "manual_rollback")) == 1
    assert world.route_weights() == {"ranker-v1": 100, "ranker-v2": 0}


def test_deleting_an_experiment_in_flight_returns_traffic_first(
    world: World, truncating_engine: sa.Engine
) -> None:
    world.create(experiment_body("gone"))
    world.run("gone", BASE, until={"never"}, max_minutes=3)
    assert FINALIZER in world.get("gone")["metadata"]["finalizers"]
    assert world.route_weights()["ranker-v2"] == 10
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, "gone")
    assert world.get("gone")["metadata"].get("deletionTimestamp")  # held by the finalizer
    world.advance()
    assert world.route_weights() == {"ranker-v1": 100, "ranker-v2": 0}
    with pytest.raises(kubernetes.client.ApiException) as gone:
        world.get("gone")
    assert gone.value.status == 404
    assert ("rollback", "deleted") in _decisions(truncating_engine, "ml/gone")
    with truncating_engine.connect() as conn:
        exp = experiments.get_experiment(conn, "ml/gone")
        actors = [
            d.actor for d in decision_log.decisions(conn, exp.id) if d.reason_code == "deleted"
        ]
    assert actors == ["canaryctl"], "canaryctl decided the rollback, once"


def test_ingest_keeps_the_frozen_lateness_after_an_edit_and_a_restart(
    world: World, truncating_engine: sa.Engine
) -> None:
    """An edit of spec.analysis.allowedLateness after the freeze is refused by reconcile, and a
    restarted operator registering the edited spec does not change ingest's late flag either."""
    world.create(experiment_body("edited", analysis={"allowedLateness": "0s"}))
    world.run("edited", BASE, until={"never"}, max_minutes=3)
    assert world.status("edited")["phase"] == "Progressing"
    world.custom.patch_namespaced_custom_object(
        GROUP, VERSION, "ml", PLURAL, "edited", {"spec": {"analysis": {"allowedLateness": "1h"}}}
    )
    world.restart_operator()  # registers the edited spec again (nothing kept in memory)
    world.advance()
    assert world.status("edited")["phase"] == "Progressing"
    closed_minute = world.clock.now() - timedelta(minutes=3)  # late at 0 s, on time at 1 h
    batch = rows_table([row(experiment="ml/edited", ts=closed_minute.isoformat())])
    result = load.load_table(
        truncating_engine, batch, batch_key="after-edit", source="test", clock=world.clock
    )
    assert (result.loaded, result.late) == (1, 1)
    with truncating_engine.connect() as conn:
        stored = experiments.get_experiment(conn, "ml/edited")
    assert stored.allowed_lateness_seconds == 0
    assert stored.spec["analysis"]["allowedLateness"] == "1h"  # the live spec is recorded


def test_an_unreachable_database_holds_then_rolls_back_and_never_promotes(
    world: World, truncating_engine: sa.Engine
) -> None:
    world.create(
        experiment_body("dbdown", analysis={"burnIn": {"minRequests": 100, "minNonZeroRevenue": 5}})
    )
    world.run("dbdown", BASE, until={"never"}, max_minutes=5)
    weight = world.status("dbdown")["challengerWeight"]
    broken = db.make_engine(
        "postgresql://postgres@127.0.0.1:1/nowhere", connect_args={"connect_timeout": 1}
    )
    world.restart_operator(engine=broken)
    for _ in range(9):  # grace period 10m: hold the weight, never promote
        world.send_minute("dbdown", BASE)
        world.advance()
        status = world.status("dbdown")
        assert status["phase"] == "Progressing" and status["challengerWeight"] == weight
    status = world.run("dbdown", BASE, until=DONE, max_minutes=5)
    assert (status["phase"], status["reasonCode"]) == ("RolledBack", "database_unreachable")
    assert world.route_weights() == {"ranker-v1": 100, "ranker-v2": 0}
    # the database is back: the held decision is written once
    world.restart_operator(engine=truncating_engine)
    world.custom.patch_namespaced_custom_object(
        GROUP, VERSION, "ml", PLURAL, "dbdown", {"metadata": {"annotations": {"touch": "1"}}}
    )
    world.advance()
    world.advance()
    broken.dispose()
    assert (
        _decisions(truncating_engine, "ml/dbdown").count(("rollback", "database_unreachable")) == 1
    )
    # ...and the condition no longer says the database is away (it did, finished or not)
    conditions = {c["type"]: c for c in world.status("dbdown")["conditions"]}
    assert (
        conditions["DatabaseReachable"]["status"],
        conditions["DatabaseReachable"]["reason"],
    ) == (
        "True",
        "Reachable",
    )


@pytest.mark.parametrize("point", ["after_decide", "after_route", "after_log", "after_status"])
def test_a_crash_at_each_fault_point_never_repeats_a_step(
    world: World, truncating_engine: sa.Engine, point: str
) -> None:
    class Crash(Exception):
        pass

    armed = {"on": False}

    def fault(where: str) -> None:
        if armed["on"] and where == point:
            armed["on"] = False
            raise Crash(where)

    world.restart_operator(fault=fault)
    world.create(experiment_body("crashy"))
    crashes: list[str] = []
    for _ in range(240):
        status = world.status("crashy")
        if status.get("phase") in DONE:
            break
        world.send_minute("crashy", BASE)
        # arm the fault once around each transition: the start, the step advance, the promotion
        window = (
            "start"
            if status.get("phase") in (None, "Pending")
            else (
                "advance"
                if status.get("stepIndex") == 0 and world.minute >= 29
                else ("promote" if status.get("stepIndex") == 1 and world.minute >= 45 else None)
            )
        )
        armed["on"] = window is not None and window not in crashes
        try:
            world.advance()
        except Crash:
            crashes.append(window or "?")
            world.restart_operator(fault=fault)
    assert crashes, "the fault point was never reached"
    final = world.status("crashy")
    assert final["phase"] == "Promoted", (
        final.get("stepIndex"),
        final.get("challengerWeight"),
        world.route_weights(),
        world.minute,
        final.get("guardrails"),
        crashes,
    )
    log = _decisions(truncating_engine, "ml/crashy")
    assert [k for k, _ in log] == ["start", "advance", "promote"]
    writes = world.served.emulator.writes("/httproutes/ranker")
    challenger = [
        next(
            r["weight"]
            for r in w.body["spec"]["rules"][0]["backendRefs"]
            if r["name"] == "ranker-v2"
        )
        for w in writes
    ]
    assert challenger == [10, 50, 100], [w.body for w in writes]


def test_two_replicas_elect_one_leader_that_acts(truncating_engine: sa.Engine) -> None:
    import threading
    import time

    from controller.operate.leader import LeaderElector

    with World.start(truncating_engine, start=T0) as world:
        world.create(experiment_body("ha"))
        kubernetes.client.CoreV1Api(world.api).create_namespace(
            {"metadata": {"name": "canaryctl-system"}}
        )
        electors = [
            LeaderElector(
                world.api,
                identity=name,
                namespace="canaryctl-system",
                lease_duration=3,
                renew_deadline=2,
                retry_period=1,
            ).start()
            for name in ("replica-a", "replica-b")
        ]
        try:
            deadline = time.monotonic() + 10
            while not any(e.leading.is_set() for e in electors):
                assert time.monotonic() < deadline, "nobody became leader"
                time.sleep(0.05)
            time.sleep(1.5)
            leaders = [e.identity for e in electors if e.leading.is_set()]
            assert len(leaders) == 1
            lease = kubernetes.client.CoordinationV1Api(world.api).read_namespaced_lease(
                "canaryctl-operator", "canaryctl-system"
            )
            assert lease.spec.holder_identity == leaders[0]
            # the leader steps down; the other takes over within a lease period
            leader = next(e for e in electors if e.leading.is_set())
            leader.stop()
            follower = next(e for e in electors if e is not leader)
            deadline = time.monotonic() + 10
            while not follower.leading.is_set():
                assert time.monotonic() < deadline, "the follower never took over"
                time.sleep(0.1)
        finally:
            for e in electors:
                e.stop()
        assert threading.active_count() < 50


def test_operator_run_acts_only_as_leader(truncating_engine: sa.Engine) -> None:
    import threading
    import time

    with World.start(truncating_engine, start=T0) as world:
        world.create(experiment_body("runner"))
        kubernetes.client.CoreV1Api(world.api).create_namespace(
            {"metadata": {"name": "canaryctl-system"}}
        )
        stops, threads, operators = [], [], []
        for name in ("a", "b"):
            op = world.restart_operator()
            op.config = OperatorConfig(identity=name, resync_seconds=0.2, workers=1)
            operators.append(op)
            stop = threading.Event()
            thread = threading.Thread(target=op.run, args=(stop,), daemon=True)
            stops.append(stop)
            threads.append(thread)
            thread.start()
        try:
            deadline = time.monotonic() + 15
            while world.status("runner").get("phase") != "Progressing":
                assert time.monotonic() < deadline, "no replica started the experiment"
                time.sleep(0.1)
        finally:
            for stop in stops:
                stop.set()
            for thread in threads:
                thread.join(timeout=30)
        acted = [op.passes for op in operators]
        assert sorted(1 if n else 0 for n in acted) == [0, 1], acted


@pytest.mark.parametrize("kind", ["istio", "kserve", "replicas"])
def test_every_router_carries_a_canary_to_promotion_and_a_bad_one_back(
    truncating_engine: sa.Engine, kind: str
) -> None:
    from canaryctl_demo.world import ROUTERS

    with World.start(truncating_engine, start=T0, router_kind=kind) as world:
        world.create(experiment_body("good", router=ROUTERS[kind]))
        status = world.run("good", BASE, until=DONE, max_minutes=240)
        assert status["phase"] == "Promoted", (status.get("reasonCode"), status.get("message"))
        assert world.router("good").observe().challenger_weight == 100
    with World.start(truncating_engine, start=T0, router_kind=kind, namespace="ml2") as world:
        world.create(experiment_body("bad", namespace="ml2", router=ROUTERS[kind]))
        status = world.run("bad", BASE.with_effect(error_factor=4.0), until=DONE, max_minutes=240)
        assert (status["phase"], status["reasonCode"]) == ("RolledBack", "guardrail_failed:errors")
        assert world.router("bad").observe().challenger_weight == 0


def test_a_new_experiment_is_picked_up_by_the_watch_not_the_resync(
    truncating_engine: sa.Engine,
) -> None:
    import threading
    import time

    with World.start(truncating_engine, start=T0) as world:
        op = world.restart_operator()
        op.config = OperatorConfig(identity="w", resync_seconds=60, workers=1)
        stop = threading.Event()
        thread = threading.Thread(
            target=op.run, args=(stop,), kwargs={"leader_election": False}, daemon=True
        )
        thread.start()
        try:
            time.sleep(1.0)  # the first pass is over: the loop now sleeps up to 60 s
            world.create(experiment_body("watched"))
            deadline = time.monotonic() + 15
            while world.status("watched").get("phase") != "Progressing":
                assert time.monotonic() < deadline, "the watch did not wake the operator"
                time.sleep(0.1)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
