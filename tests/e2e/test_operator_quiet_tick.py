"""What an experiment tick costs in API requests, read from the emulator's log: with the
informers a tick that moves no weight (and emits no Event) sends at most the status patch
(only what changed), and one at which nothing changed sends nothing."""

from __future__ import annotations

from datetime import timedelta

from canaryctl_demo.kube import seed
from canaryctl_demo.world import HTTPROUTE, World, experiment_body
from tests.e2e.test_operator_e2e import BASE, world

__all__ = ["world"]


def test_a_tick_that_moves_no_weight_sends_at_most_the_status_patch(world: World) -> None:
    world.create(experiment_body("quiet"))
    status = world.run("quiet", BASE, until={"Progressing"}, max_minutes=60)
    assert status["phase"] == "Progressing"
    for _ in range(2):  # past the step's first analysis (its forecast comes with an Event)
        world.send_minute("quiet", BASE)
        world.advance()
    world.send_minute("quiet", BASE)
    world.clock.advance(timedelta(minutes=1))
    operator, log = world.operator, world.served.emulator.log
    operator.informers.sync()  # caught up with the world's writes, then a pass as in production
    operator.config.consistent_reads = False

    start = len(log)
    (result,) = operator.run_once()
    sent = log[start:]
    assert result.error is None and result.outcome is not None
    assert not result.outcome.route_actions  # no weight moved
    assert len(sent) <= 1, sent
    assert all(r.method == "PATCH" and r.path.endswith("/quiet/status") for r in sent)
    if sent:  # only what changed: never the frozen settings, which did not
        assert "frozenSettings" not in sent[0].body["status"]
        assert sent[0].body["metadata"]["resourceVersion"]  # guarded

    start = len(log)
    (again,) = operator.run_once(force=True)  # the same moment again: nothing changed
    assert again.error is None
    assert log[start:] == []


def test_a_pass_ticks_every_due_experiment_batch_by_batch(world: World) -> None:
    world.operator.config.batch = 2  # five experiments: batches of 2, 2 and 1
    names = [f"b-{i}" for i in range(5)]
    for i, name in enumerate(names):
        assert world.cluster is not None
        world.cluster.create(
            HTTPROUTE, seed.httproute(f"route-{i}", {"ranker-v1": 100, "ranker-v2": 0})
        )
        world.create(experiment_body(name, route=f"route-{i}"))
    results = world.operator.run_once(force=True)
    assert sorted(r.key for r in results) == sorted(f"ml/{n}" for n in names)
    assert all(r.error is None for r in results)
    assert {world.status(n)["phase"] for n in names} == {"Progressing"}
