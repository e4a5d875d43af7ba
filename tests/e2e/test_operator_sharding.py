"""Operator replicas sharing 300 experiments: real ``canaryctl operator run`` processes.

Three replicas start on 12 shards; one is killed with SIGKILL while the experiments' first
ticks are running; its replacement and two more join (5), then three leave (2). The
emulator's request log (which carries each replica's User-Agent) and the decision log
then show that every experiment went on, that no experiment or route was written by a
replica while the server named another holder of its shard, that no step was applied twice
and that no decision was written twice.
"""

from __future__ import annotations

import signal
import time

import sqlalchemy as sa

from canaryctl_demo.world import GROUP, PLURAL, VERSION, experiment_body
from tests.e2e.fleet import (
    AGENT,
    NAMESPACE,
    SHARD_LEASE,
    Fleet,
    balanced,
    balanced_at,
    change_specs,
    check_writes,
    decisions_once,
    fleet_fixture,
    observed,
    phases,
    seed_routes,
    wait,
)

EXPERIMENTS = 300
SHARDS = 12
LEASE = 10.0  # seconds; renew deadline 6.7 s, a round every 1.3 s
OPTIONS = ["--shards", str(SHARDS), "--lease-duration", str(LEASE), "--workers", "4"]


fleet = fleet_fixture(OPTIONS)


def test_replicas_share_experiments_across_kill_and_scaling(
    fleet: Fleet, truncating_engine: sa.Engine
) -> None:
    served = fleet.served
    custom = seed_routes(served, EXPERIMENTS)

    for name in ("op-0", "op-1", "op-2"):
        fleet.start(name)
    wait(
        "three replicas to share the shards",
        lambda: balanced(served, ["op-0", "op-1", "op-2"], SHARDS),
        60,
        fleet,
    )
    for i in range(EXPERIMENTS):
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, experiment_body(f"e-{i}", route=f"r-{i}")
        )

    def statuses_by(agent: str) -> int:
        return sum(
            1
            for r in served.emulator.writes("/status")
            if r.agent == AGENT + agent and "/experiments/" in r.path
        )

    # kill op-0 in the middle of its first ticks
    wait("op-0 to be mid-pass", lambda: statuses_by("op-0") >= 10, 60, fleet)
    fleet.stop("op-0", signal.SIGKILL)
    killed_at = len(served.emulator.log)

    wait(
        "every experiment to start",
        lambda: phases(custom)["Progressing"] == EXPERIMENTS,
        120,
        fleet,
    )
    assert any(
        r.agent in (AGENT + "op-1", AGENT + "op-2") and SHARD_LEASE in r.path
        for r in served.emulator.log[killed_at:]
        if r.is_write and r.status < 400 and r.method == "PUT"
    )

    # 2 → 3 (the replacement) → 5 → 2
    joined_index = len(served.emulator.log)
    fleet.start("op-3")
    fleet.start("op-4")
    fleet.start("op-5")
    five = ["op-1", "op-2", "op-3", "op-4", "op-5"]
    wait("five replicas to share the shards", lambda: balanced(served, five, SHARDS), 60, fleet)

    def first_member_write(name: str) -> float:
        return min(
            r.at for r in served.emulator.log if r.agent == AGENT + name and "/leases/" in r.path
        )

    joined = max(first_member_write(n) for n in ("op-3", "op-4", "op-5"))
    # all three joined within a second or so; each was balanced in within one lease duration
    assert balanced_at(served.emulator.log, five, SHARDS, joined_index) - joined <= LEASE, (
        "rebalance on join too slow"
    )

    before = len(served.emulator.log)
    left_at = time.monotonic()  # the emulator runs in this process: the same clock
    for name in ("op-3", "op-4", "op-5"):  # scaled down: SIGTERM to all three at once
        fleet.procs[name].send_signal(signal.SIGTERM)
    for name in ("op-3", "op-4", "op-5"):
        fleet.stop(name)  # graceful (a second SIGTERM): each gives its shards back
    wait(
        "two replicas to share the shards",
        lambda: balanced(served, ["op-1", "op-2"], SHARDS),
        60,
        fleet,
    )
    assert balanced_at(served.emulator.log, ["op-1", "op-2"], SHARDS, before) - left_at <= LEASE, (
        "rebalance on leave too slow"
    )
    given_back = [
        r
        for r in served.emulator.log[before:]
        if r.is_write
        and SHARD_LEASE in r.path
        and (r.body.get("spec") or {}).get("holderIdentity") is None
    ]
    assert given_back, "leaving replicas did not give their shards back"

    # every experiment is still served: a spec change reaches observedGeneration everywhere
    change_specs(custom, EXPERIMENTS, 23)
    wait(
        "every experiment to observe its new generation",
        lambda: observed(custom) == EXPERIMENTS,
        120,
        fleet,
    )
    for name in ("op-1", "op-2"):
        fleet.stop(name)
        assert "12 shards" in fleet.output(name)

    # the write log: an experiment or its route is written only by its shard's holder
    writers, checked = check_writes(served, custom, SHARDS)
    assert checked >= 3 * EXPERIMENTS
    assert sum(len(w) > 1 for w in writers.values()) > 0  # experiments did change hands
    decisions_once(truncating_engine, EXPERIMENTS)
