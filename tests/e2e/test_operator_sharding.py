"""Operator replicas sharing 300 experiments: real ``canaryctl operator run`` processes.

Three replicas start on 12 shards; one is killed with SIGKILL while the experiments' first
ticks are running; its replacement and two more join (5), then three leave (2). The
emulator's request log (which carries each replica's User-Agent) and the decision log
then show that every experiment went on, that no experiment or route was written by a
replica while the server named another holder of its shard, that no step was applied twice
and that no decision was written twice.
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import sqlalchemy as sa
import yaml

from canaryctl_demo.kube import emulator, seed
from canaryctl_demo.world import GROUP, HTTPROUTE, PLURAL, VERSION, experiment_body
from controller.experiment import crd
from controller.operate import shards as sh

EXPERIMENTS = 300
SHARDS = 12
LEASE = 10.0  # seconds; renew deadline 6.7 s, a round every 1.3 s
AGENT = "canaryctl-operator/"
SHARD_LEASE = "/leases/canaryctl-operator-shard-"


class Fleet:
    """Operator processes against one emulator."""

    def __init__(self, served: emulator.Served, database_url: str, tmp: Path) -> None:
        self.served = served
        self.config = tmp / "kubeconfig"
        self.config.write_text(yaml.safe_dump(served.kubeconfig("ml")))
        # PYTHONFAULTHANDLER: a replica that will not stop is sent SIGABRT, which prints
        # every thread's stack to its log
        self.env = {
            "CANARYCTL_DATABASE_URL": database_url,
            "PATH": "/usr/bin:/bin",
            "PYTHONFAULTHANDLER": "1",
        }
        if "PYTHONPATH" in os.environ:  # a checkout other than the installed one
            self.env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.logs = tmp

    def start(self, name: str) -> None:
        canaryctl = str(Path(sys.executable).with_name("canaryctl"))
        with (self.logs / f"{name}.log").open("w") as out:  # the child keeps its own copy
            self.procs[name] = self._popen(canaryctl, name, out)

    def _popen(self, canaryctl: str, name: str, out: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                canaryctl,
                "operator",
                "run",
                "--kubeconfig",
                str(self.config),
                "--watch-namespace",
                "ml",
                "--identity",
                name,
                "--shards",
                str(SHARDS),
                "--lease-duration",
                str(LEASE),
                "--workers",
                "4",
                "--health-port",
                "0",
                "--metrics-port",
                "0",
            ],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # its threads' stacks, then the end
            proc.wait(timeout=10)
            del self.procs[name]
            pytest.fail(f"{name} did not stop in 60 s; its log ends:\n{self.output(name)[-6000:]}")
        del self.procs[name]

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited: {self.output(name)[-2000:]}"

    def output(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()


@pytest.fixture()
def fleet(database_url: str, tmp_path: Path) -> Iterator[Fleet]:
    with emulator.serve() as served:
        f = Fleet(served, database_url, tmp_path)
        try:
            yield f
        finally:
            for name in list(f.procs):
                f.stop(name, signal.SIGKILL)


def _holders(log: list[emulator.LoggedRequest]) -> dict[int, str | None]:
    """Each shard's holder on the server after ``log`` (its successful Lease writes)."""
    holder: dict[int, str | None] = {}
    for r in log:
        if r.is_write and r.status < 400 and SHARD_LEASE in r.path and r.method != "DELETE":
            holder[int(r.path.rsplit("-", 1)[1])] = (r.body.get("spec") or {}).get("holderIdentity")
    return holder


def _wait(what: str, check: Any, timeout: float, fleet: Fleet | None = None) -> float:
    started = time.monotonic()
    while not check():
        if fleet is not None:
            fleet.check_alive()
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def _balanced_at(log: list[emulator.LoggedRequest], members: list[str], since: int) -> float:
    """When (emulator clock) the shards' holders first matched the members' assignment,
    looking at the requests from index ``since`` on."""
    want = sh.assignment(SHARDS, members)
    holder = _holders(log[:since])
    for r in log[since:]:
        holder |= _holders([r])
        if holder == want:
            return r.at
    raise AssertionError(f"never balanced over {members}")


def _balanced(served: emulator.Served, members: list[str]) -> bool:
    want = sh.assignment(SHARDS, members)
    return _holders(served.emulator.log) == want


def test_replicas_share_experiments_across_kill_and_scaling(
    fleet: Fleet, truncating_engine: sa.Engine
) -> None:
    served = fleet.served
    api = served.api_client()
    served.emulator.load_crd(crd.build_crd())
    cluster = seed.Cluster(api, "ml")
    cluster.create_namespace()
    for name in ("ranker-v1", "ranker-v2"):
        cluster.create_deployment(name, replicas=2)
    for i in range(EXPERIMENTS):
        cluster.create(HTTPROUTE, seed.httproute(f"r-{i}", {"ranker-v1": 100, "ranker-v2": 0}))
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": "canaryctl-system"}})
    custom = kubernetes.client.CustomObjectsApi(api)

    for name in ("op-0", "op-1", "op-2"):
        fleet.start(name)
    _wait(
        "three replicas to share the shards",
        lambda: _balanced(served, ["op-0", "op-1", "op-2"]),
        60,
        fleet,
    )
    for i in range(EXPERIMENTS):
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "ml", PLURAL, experiment_body(f"e-{i}", route=f"r-{i}")
        )

    def statuses_by(agent: str) -> int:
        return sum(
            1
            for r in served.emulator.writes("/status")
            if r.agent == AGENT + agent and "/experiments/" in r.path
        )

    # kill op-0 in the middle of its first ticks
    _wait("op-0 to be mid-pass", lambda: statuses_by("op-0") >= 10, 60, fleet)
    fleet.stop("op-0", signal.SIGKILL)
    killed_at = len(served.emulator.log)

    def phases() -> collections.Counter[str]:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL)["items"]
        return collections.Counter((b.get("status") or {}).get("phase") for b in items)

    _wait("every experiment to start", lambda: phases()["Progressing"] == EXPERIMENTS, 120, fleet)
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
    _wait("five replicas to share the shards", lambda: _balanced(served, five), 60, fleet)

    def first_member_write(name: str) -> float:
        return min(
            r.at for r in served.emulator.log if r.agent == AGENT + name and "/leases/" in r.path
        )

    joined = max(first_member_write(n) for n in ("op-3", "op-4", "op-5"))
    # all three joined within a second or so; each was balanced in within one lease duration
    assert _balanced_at(served.emulator.log, five, joined_index) - joined <= LEASE, (
        "rebalance on join too slow"
    )

    before = len(served.emulator.log)
    left_at = time.monotonic()  # the emulator runs in this process: the same clock
    for name in ("op-3", "op-4", "op-5"):  # scaled down: SIGTERM to all three at once
        fleet.procs[name].send_signal(signal.SIGTERM)
    for name in ("op-3", "op-4", "op-5"):
        fleet.stop(name)  # graceful: each gives its shards back
    _wait(
        "two replicas to share the shards", lambda: _balanced(served, ["op-1", "op-2"]), 60, fleet
    )
    assert _balanced_at(served.emulator.log, ["op-1", "op-2"], before) - left_at <= LEASE, (
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
    for i in range(EXPERIMENTS):
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "ml", PLURAL, f"e-{i}", {"spec": {"maxDuration": "23h"}}
        )

    def observed() -> int:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL)["items"]
        return sum(
            (b.get("status") or {}).get("observedGeneration") == b["metadata"]["generation"]
            for b in items
        )

    _wait(
        "every experiment to observe its new generation",
        lambda: observed() == EXPERIMENTS,
        120,
        fleet,
    )
    for name in ("op-1", "op-2"):
        fleet.stop(name)
        assert "12 shards" in fleet.output(name)

    # the write log: an experiment or its route is written only by its shard's holder
    items = custom.list_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL)["items"]
    shard_of = {b["metadata"]["name"]: sh.shard_of(b["metadata"]["uid"], SHARDS) for b in items}
    holder: dict[int, str | None] = {}
    writers: dict[str, set[str]] = collections.defaultdict(set)
    weights: dict[str, list[int]] = collections.defaultdict(list)
    checked = 0
    for r in served.emulator.log:
        if not (r.is_write and r.status < 400):
            continue
        if SHARD_LEASE in r.path and r.method != "DELETE":
            holder[int(r.path.rsplit("-", 1)[1])] = (r.body.get("spec") or {}).get("holderIdentity")
            continue
        if not r.agent.startswith(AGENT):
            continue
        name = None
        if "/experiments/" in r.path:
            name = r.path.split("/experiments/")[1].split("/")[0]
        elif "/httproutes/r-" in r.path:
            name = "e-" + r.path.rsplit("/r-", 1)[1]
            rules = (r.body.get("spec") or {}).get("rules") or [{}]
            refs = rules[0].get("backendRefs", [])
            weights[name] += [b.get("weight") for b in refs if b["name"] == "ranker-v2"]
        elif r.path.endswith("/events"):
            name = r.body["involvedObject"]["name"]
        if name is None:
            continue
        replica = r.agent.removeprefix(AGENT)
        assert holder.get(shard_of[name]) == replica, (
            f"{replica} wrote {r.method} {r.path} while the server named "
            f"{holder.get(shard_of[name])} holder of shard {shard_of[name]}"
        )
        writers[name].add(replica)
        checked += 1
    assert checked >= 3 * EXPERIMENTS
    assert sum(len(w) > 1 for w in writers.values()) > 0  # experiments did change hands
    for name, ws in weights.items():
        assert all(a != b for a, b in itertools.pairwise(ws)), f"{name}: a step applied twice: {ws}"
    with truncating_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT e.name, d.kind, count(*) FROM decisions d JOIN experiments e "
                "ON e.id = d.experiment_id GROUP BY e.name, d.kind"
            )
        ).all()
    starts = {name: n for name, kind, n in rows if kind == "start"}
    assert len(starts) == EXPERIMENTS
    assert set(starts.values()) == {1}, "a decision was written twice"
