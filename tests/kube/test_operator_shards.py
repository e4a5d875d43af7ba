"""Shard Leases shared by operator replicas (``controller.operate.shards``) against the emulator.

Rounds are driven by hand and time by a fake monotonic clock, so each test states exactly
when a Lease lapses; the real-process test with kill -9 is in tests/e2e.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import kubernetes.client
import pytest

from canaryctl_demo.kube import emulator
from controller.operate import shards as sh

NS = "canaryctl-system"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def api(served: emulator.Served) -> Iterator[kubernetes.client.ApiClient]:
    client = served.api_client()
    kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": NS}})
    yield client
    client.close()


def replica(
    api: kubernetes.client.ApiClient, name: str, clock: Clock, shards: int = 12
) -> sh.Shards:
    return sh.Shards(
        api,
        identity=name,
        namespace=NS,
        shards=shards,
        lease_duration=15,
        renew_deadline=10,
        retry_period=0.05,  # rounds are driven by hand; this bounds a wait for idle writes
        monotonic=clock,
    )


def settle(replicas: list[sh.Shards], clock: Clock, rounds: int = 4) -> None:
    for _ in range(rounds):
        for r in replicas:
            r.round()
        clock.t += 1  # a round a second


def holders(api: kubernetes.client.ApiClient) -> dict[str, str | None]:
    leases = kubernetes.client.CoordinationV1Api(api).list_namespaced_lease(
        NS, label_selector=f"{sh.ROLE}=shard"
    )
    return {lease.metadata.name: lease.spec.holder_identity for lease in leases.items}


def test_shard_of_is_stable_and_spreads_experiments() -> None:
    assert sh.shard_of("0b8f6a3e-uid", 16) == sh.shard_of("0b8f6a3e-uid", 16)
    counts = collections.Counter(sh.shard_of(f"uid-{i}", 16) for i in range(16_000))
    assert set(counts) == set(range(16))
    assert max(counts.values()) < 1.1 * 1000 and min(counts.values()) > 0.9 * 1000


def test_assignment_is_balanced_and_moves_few_shards() -> None:
    three = sh.assignment(32, ["a", "b", "c"])
    assert sorted(collections.Counter(three.values()).values()) == [10, 11, 11]
    four = sh.assignment(32, ["a", "b", "c", "d"])
    assert collections.Counter(four.values()) == {"a": 8, "b": 8, "c": 8, "d": 8}
    moved = sum(three[s] != four[s] for s in range(32))
    assert moved <= 12  # d takes its 8, and the cap moves a few more (mod: about 24)
    assert sh.assignment(32, ["c", "a", "b"]) == three  # order of discovery does not matter


def test_replicas_share_every_shard_without_overlap(api: kubernetes.client.ApiClient) -> None:
    clock = Clock()
    a, b, c = (replica(api, n, clock) for n in "abc")
    settle([a, b, c], clock)
    held = [a.held(), b.held(), c.held()]
    assert set().union(*held) == set(range(12))
    assert sum(len(h) for h in held) == 12  # disjoint
    assert [len(h) for h in held] == [4, 4, 4]
    on_server = holders(api)
    for r in (a, b, c):
        assert {on_server[r.shard_lease(s)] for s in r.held()} == {r.identity}


def test_a_new_replica_gets_its_share_and_a_leaving_one_gives_back(
    api: kubernetes.client.ApiClient,
) -> None:
    clock = Clock()
    a, b = replica(api, "a", clock), replica(api, "b", clock)
    settle([a, b], clock)
    assert len(a.held()) == len(b.held()) == 6
    c = replica(api, "c", clock)
    settle([a, b, c], clock, rounds=3)  # 3 s: well inside one lease duration
    assert [len(r.held()) for r in (a, b, c)] == [4, 4, 4]
    c.stop()  # graceful: releases its shards and deletes its member Lease
    assert not c.held()
    settle([a, b], clock, rounds=2)
    assert [len(r.held()) for r in (a, b)] == [6, 6]


def test_a_shard_is_given_back_only_when_no_write_is_under_way(
    api: kubernetes.client.ApiClient,
) -> None:
    clock = Clock()
    a = replica(api, "a", clock, shards=2)
    settle([a], clock)
    uids = {
        s: next(f"uid-{i}" for i in range(100) if sh.shard_of(f"uid-{i}", 2) == s) for s in (0, 1)
    }
    assert a.mine(list(uids.values())) == set(uids.values())
    b = replica(api, "b", clock, shards=2)
    b.round()
    moving = next(s for s in (0, 1) if sh.assignment(2, ["a", "b"])[s] == "b")
    with a.writing(uids[moving]):
        a.round()  # wants to give it back, but a write is under way: keeps (renews) it
        assert moving in a._valid_until
        assert uids[moving] not in a.mine(list(uids.values()))  # no new ticks on it
        with pytest.raises(sh.Fenced), a.writing(uids[moving]):  # and no new writes
            pass
    a.round()  # now idle: given back
    assert moving not in a._valid_until
    b.round()
    assert b.held() == {moving} and a.held() == {1 - moving}


def test_a_crashed_replica_loses_its_shards_after_a_lease_duration(
    api: kubernetes.client.ApiClient,
) -> None:
    clock = Clock()
    a, b = replica(api, "a", clock), replica(api, "b", clock)
    settle([a, b], clock)
    lost = set(a.held())
    # a stops renewing (crashed or cut off); b keeps going
    for _ in range(14):
        b.round()
        clock.t += 1
    assert not lost & b.held(), "taken before the lease duration passed"
    for _ in range(4):
        b.round()
        clock.t += 1
    assert b.held() == frozenset(range(12))


def test_a_replica_cut_off_stops_writing_before_another_may_take_over(
    api: kubernetes.client.ApiClient,
) -> None:
    clock = Clock()
    a = replica(api, "a", clock)
    a.round()
    uid = "some-experiment-uid"
    a.check(uid)
    clock.t += 9.9
    a.check(uid)  # renewed 9.9 s ago: still inside renew_deadline
    clock.t += 0.2
    with pytest.raises(sh.Fenced):
        a.check(uid)  # past the renew deadline, 4.9 s before anyone may take it
    assert not a.owns(uid)
    b = replica(api, "b", clock)
    b.round()
    assert not b.held()  # b first sees the Lease now and must watch it lapse on its own clock
