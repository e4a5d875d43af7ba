"""Real ``canaryctl operator run`` replicas against one emulator, and what to check of them.

Shared by the sharding tests: the processes (``Fleet``) and readings of the emulator's
request log, which carries each replica's User-Agent and the time each request came in.
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
from canaryctl_demo.world import GROUP, HTTPROUTE, PLURAL, VERSION
from controller.experiment import crd
from controller.operate import shards as sh

AGENT = "canaryctl-operator/"
SHARD_LEASE = "/leases/canaryctl-operator-shard-"
NAMESPACE = "ml"


class Fleet:
    """Operator processes against one emulator, all with the same options."""

    def __init__(
        self, served: emulator.Served, database_url: str, tmp: Path, options: list[str]
    ) -> None:
        self.served = served
        self.options = options
        self.logs = tmp
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

    def start(self, name: str, server: str | None = None) -> None:
        """Start replica ``name``, talking to the emulator (or to ``server``, a proxy)."""
        config = self.served.kubeconfig(NAMESPACE)
        if server is not None:
            config["clusters"][0]["cluster"]["server"] = server
        path = self.logs / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        canaryctl = str(Path(sys.executable).with_name("canaryctl"))
        command = [canaryctl, "operator", "run", "--kubeconfig", str(path)]
        command += ["--watch-namespace", NAMESPACE, "--identity", name, *self.options]
        command += ["--health-port", "0", "--metrics-port", "0"]
        with (self.logs / f"{name}.log").open("w") as out:  # the child keeps its own copy
            self.procs[name] = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, text=True
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


def fleet_fixture(options: list[str]) -> Any:
    """A ``fleet`` fixture: replicas run with ``options`` against a new emulator, and are
    killed at the end, whatever happened."""

    @pytest.fixture()
    def fleet(database_url: str, tmp_path: Path) -> Iterator[Fleet]:
        with emulator.serve() as served:
            one = Fleet(served, database_url, tmp_path, options)
            try:
                yield one
            finally:
                for name in list(one.procs):
                    one.stop(name, signal.SIGKILL)

    return fleet


def seed_routes(served: emulator.Served, experiments: int) -> kubernetes.client.CustomObjectsApi:
    """The CRD, the namespaces, two Deployments and a route ``r-<i>`` per experiment."""
    api = served.api_client()
    served.emulator.load_crd(crd.build_crd())
    cluster = seed.Cluster(api, NAMESPACE)
    cluster.create_namespace()
    for name in ("ranker-v1", "ranker-v2"):
        cluster.create_deployment(name, replicas=2)
    for i in range(experiments):
        cluster.create(HTTPROUTE, seed.httproute(f"r-{i}", {"ranker-v1": 100, "ranker-v2": 0}))
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": "canaryctl-system"}})
    return kubernetes.client.CustomObjectsApi(api)


# ---------------------------------------------------------------------------- the request log


def holders(log: list[emulator.LoggedRequest]) -> dict[int, str | None]:
    """Each shard's holder on the server after ``log`` (its successful Lease writes)."""
    holder: dict[int, str | None] = {}
    for r in log:
        if r.is_write and r.status < 400 and SHARD_LEASE in r.path and r.method != "DELETE":
            holder[int(r.path.rsplit("-", 1)[1])] = (r.body.get("spec") or {}).get("holderIdentity")
    return holder


def balanced(served: emulator.Served, members: list[str], shards: int) -> bool:
    return holders(served.emulator.log) == sh.assignment(shards, members)


def balanced_at(
    log: list[emulator.LoggedRequest], members: list[str], shards: int, since: int
) -> float:
    """When (the emulator's clock) the shards' holders first matched the members'
    assignment, looking at the requests from index ``since`` on."""
    want = sh.assignment(shards, members)
    holder = holders(log[:since])
    for r in log[since:]:
        holder |= holders([r])
        if holder == want:
            return r.at
    raise AssertionError(f"never balanced over {members}")


def wait(what: str, check: Any, timeout: float, fleet: Fleet | None = None) -> float:
    started = time.monotonic()
    while not check():
        if fleet is not None:
            fleet.check_alive()
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def change_specs(custom: kubernetes.client.CustomObjectsApi, experiments: int, hours: int) -> None:
    """Edit every experiment's spec (its ``maxDuration``): a new generation to observe."""
    for i in range(experiments):
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, f"e-{i}", {"spec": {"maxDuration": f"{hours}h"}}
        )


def observed(custom: kubernetes.client.CustomObjectsApi) -> int:
    """Experiments whose status has observed their present generation."""
    items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    return sum(
        (b.get("status") or {}).get("observedGeneration") == b["metadata"]["generation"]
        for b in items
    )


def phases(custom: kubernetes.client.CustomObjectsApi) -> collections.Counter[str]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    return collections.Counter((b.get("status") or {}).get("phase") for b in items)


def check_writes(
    served: emulator.Served, custom: kubernetes.client.CustomObjectsApi, shards: int
) -> tuple[dict[str, set[str]], int]:
    """Every write for an Experiment, its route or its events was made by the replica the
    server then named holder of its shard, and no step was applied twice; returns each
    experiment's writers and the number of writes checked."""
    items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    shard_of = {b["metadata"]["name"]: sh.shard_of(b["metadata"]["uid"], shards) for b in items}
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
    for name, ws in weights.items():
        assert all(a != b for a, b in itertools.pairwise(ws)), f"{name}: a step applied twice: {ws}"
    return writers, checked


def decisions_once(engine: sa.Engine, experiments: int) -> None:
    """Every experiment has exactly one ``start`` decision row."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT e.name, count(*) FROM decisions d JOIN experiments e "
                "ON e.id = d.experiment_id WHERE d.kind = 'start' GROUP BY e.name"
            )
        ).all()
    assert len(rows) == experiments
    assert {n for _, n in rows} == {1}, "a decision was written twice"
