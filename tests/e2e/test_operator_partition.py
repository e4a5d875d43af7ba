"""An operator replica cut off from the API server by a silent network partition.

Three real ``canaryctl operator run`` replicas share 12 shards; one of them reaches the
emulator through a proxy that is then cut: its packets are dropped both ways, new
connections are never answered, and the connections it had stay dead even after the
network comes back. The other two must take its shards once its Leases lapse and keep its
experiments going; it must write nothing for a shard while the server names another
holder; once the network is back it must give up its dead connections by itself (request
timeouts, watches silent for too long), come back as a member, take its share again and act
on changes made meanwhile.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from canaryctl_demo.world import GROUP, PLURAL, VERSION, experiment_body
from tests.e2e.fleet import (
    AGENT,
    NAMESPACE,
    Fleet,
    balanced,
    balanced_at,
    change_specs,
    check_writes,
    decisions_once,
    fleet_fixture,
    holders,
    observed,
    phases,
    seed_routes,
    wait,
)
from tests.network import Partition

EXPERIMENTS = 60
SHARDS = 12
LEASE = 10.0  # renew deadline 6.7 s
TIMEOUT = 3.0  # --request-timeout; a watch silent for 6 s is opened again
OPTIONS = [
    "--shards",
    str(SHARDS),
    "--lease-duration",
    str(LEASE),
    "--request-timeout",
    str(TIMEOUT),
    "--workers",
    "4",
]


fleet = fleet_fixture(OPTIONS)


def test_a_partitioned_replica_is_fenced_then_rejoins(
    fleet: Fleet, truncating_engine: sa.Engine
) -> None:
    served = fleet.served
    custom = seed_routes(served, EXPERIMENTS)
    network = Partition(served.url)
    try:
        fleet.start("op-0")
        fleet.start("op-1")
        fleet.start("op-2", server=network.url)
        everyone = ["op-0", "op-1", "op-2"]
        wait("three replicas to share the shards", lambda: balanced(served, everyone, SHARDS), 60)
        for i in range(EXPERIMENTS):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, experiment_body(f"e-{i}", route=f"r-{i}")
            )
        wait(
            "every experiment to start",
            lambda: phases(custom)["Progressing"] == EXPERIMENTS,
            120,
            fleet,
        )
        held = {s for s, h in holders(served.emulator.log).items() if h == "op-2"}
        assert held, "op-2 held no shard before the cut"

        network.cut()
        cut_at = time.monotonic()
        cut_index = len(served.emulator.log)
        wait(
            "the two others to take op-2's shards",
            lambda: balanced(served, ["op-0", "op-1"], SHARDS),
            60,
            fleet,
        )
        taken = balanced_at(served.emulator.log, ["op-0", "op-1"], SHARDS, cut_index)
        # op-2's member Lease and shard Leases lapse one lease duration after their last
        # renewal, on the others' clocks; then a round takes them
        assert taken - cut_at <= 2 * LEASE, f"takeover took {taken - cut_at:.1f} s"
        # nothing of op-2's came through after the cut (but what was on its way then)
        late = [
            f"{r.method} {r.path} at cut + {r.at - cut_at:.1f} s"
            for r in served.emulator.log[cut_index:]
            if r.agent == AGENT + "op-2" and r.at > cut_at + 1.0
        ]
        assert not late, late

        # its experiments go on without it: a spec change is observed everywhere
        change_specs(custom, EXPERIMENTS, 23)
        wait(
            "the change observed while op-2 is cut off",
            lambda: observed(custom) == EXPERIMENTS,
            60,
            fleet,
        )
        fleet.check_alive()

        network.heal()
        healed_index = len(served.emulator.log)
        wait("op-2 to take its share again", lambda: balanced(served, everyone, SHARDS), 90, fleet)
        assert {s for s, h in holders(served.emulator.log).items() if h == "op-2"}
        back = [r for r in served.emulator.log[healed_index:] if r.agent == AGENT + "op-2"]
        assert back, "op-2 sent nothing once the network was back"

        # and acts on what changed: its watches were opened again, not left dead
        rejoined_index = len(served.emulator.log)
        change_specs(custom, EXPERIMENTS, 22)
        wait("the change observed by all three", lambda: observed(custom) == EXPERIMENTS, 60, fleet)
        assert any(
            r.agent == AGENT + "op-2" and "/experiments/" in r.path and r.path.endswith("/status")
            for r in served.emulator.log[rejoined_index:]
            if r.is_write and r.status < 400
        ), "op-2 wrote no status after it rejoined"
        for name in everyone:
            fleet.stop(name)
    finally:
        network.close()

    writers, checked = check_writes(served, custom, SHARDS)
    assert checked >= 2 * EXPERIMENTS
    assert any("op-2" in w and len(w) > 1 for w in writers.values())  # they changed hands
    decisions_once(truncating_engine, EXPERIMENTS)
