"""Operator fleet benchmark (issue 14): 2,000 and 10,000 experiments on 1 and 4 replicas.

The real operator (watch-fed caches, shards) against the Kubernetes API emulator in its own
process over HTTP and real Postgres, in simulated time. Each replica is a process of its
own holding the shards ``controller.operate.shards`` gives it (real Leases on the
emulator); every simulated minute each experiment gets a minute of traffic through the
real ingest path (not timed), then every replica makes one pass in which all of its
experiments are due, the replicas at the same time. Reported: the fleet's pass time (the
slowest replica's, p50 and p99 over the measured passes) against the 10 s analysis
interval, operator CPU (the pass's decision forecasts included) and API requests (the
shard Leases and the watches included) per experiment tick, and each replica's memory (peak
resident set). Warm-up passes (registration, first claims) are left out.

All processes share this machine's 2 cores, so with 4 replicas the pass time here is
bounded by the cores, not by the replicas: the CPU and request columns carry over to a real
cluster, the pass column does not (the RESULTS text gives the projection).

Usage: .venv/bin/python bench/operator_fleet.py [--sizes 2000 10000] [--replicas 1 4]
       [--minutes 5] [--workers 8] [--rows 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes.client
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis import Scenario
from bench._results import table, write_section
from bench.ingest import drop_database, scratch_database
from bench.operator import load_minute, seed_fleet
from canaryctl_demo.kube import emulator
from controller.clock import SimulatedClock
from controller.storage import db

T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
SHARDS = 16  # as bench/_fleet_replica.py
LEASE_NS = "canaryctl-system"


def _line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"a replica exited ({child.wait()})"
    return line


def run(
    n: int, replicas: int, minutes: int, workers: int, rows: int, server: str
) -> dict[str, Any]:
    url = scratch_database(server)
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_emulator.py"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    children: list[subprocess.Popen[str]] = []
    try:
        emulator_url = proc.stdout.readline().strip() if proc.stdout else ""
        api = emulator.api_client(emulator_url)
        db.upgrade(url)
        engine = db.make_engine(url, pool_size=4, pool_pre_ping=False)
        t_seed = time.perf_counter()
        seed_fleet(api, n)
        kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": LEASE_NS}})
        print(f"  seeded {n} experiments in {time.perf_counter() - t_seed:.0f} s", flush=True)
        for r in range(replicas):
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).with_name("_fleet_replica.py")),
                        f"replica-{r}",
                        emulator_url,
                        url,
                        str(workers),
                        str(replicas),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        held = [json.loads(_line(c))["held"] for c in children]
        assert sum(held) == SHARDS, held
        clock = SimulatedClock(T0)
        rng = np.random.default_rng(1)
        scenario = Scenario(requests_per_minute=rows)
        passes: list[float] = []
        cpu: list[float] = []
        calls: list[float] = []
        rss = [0] * replicas
        for minute in range(minutes):
            if minute:  # a minute of traffic for every experiment (not timed)
                load_minute(engine, clock, scenario, n, minute, rng)
            t = time.perf_counter()
            for c in children:
                assert c.stdin is not None
                c.stdin.write(clock.now().isoformat() + "\n")
                c.stdin.flush()
            answers = [json.loads(_line(c)) for c in children]
            wall = time.perf_counter() - t
            errors = [e for a in answers for e in a["errors"]]
            assert not errors, errors
            ticks = sum(a["ticks"] for a in answers)
            assert ticks == n, (ticks, n)
            print(f"  minute {minute}: pass {wall:.1f} s", flush=True)
            if minute >= 2:
                passes.append(wall)
                cpu.append(sum(a["cpu"] for a in answers) / ticks)
                calls.append(sum(a["api"] for a in answers) / ticks)
            rss = [max(old, a["rss"]) for old, a in zip(rss, answers, strict=True)]
            clock.advance(timedelta(minutes=1))
        engine.dispose()
        api.close()
    finally:
        for c in children:
            if c.stdin:
                c.stdin.close()  # the replica's signal to stop
            c.wait(timeout=60)
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=60)
        drop_database(server, url)
    q = np.quantile(passes, [0.5, 0.99])
    return {
        "n": n,
        "replicas": replicas,
        "pass_p50": float(q[0]),
        "pass_p99": float(q[1]),
        "cpu_ms": 1000 * statistics.median(cpu),
        "api": statistics.median(calls),
        "rss_mb": [r / 2**20 for r in rss],
        "passes": len(passes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20, help="requests per experiment-minute")
    args = parser.parse_args()
    server = db.configured_url() or "postgresql://postgres@127.0.0.1:5432/postgres"
    started = time.time()
    rows = []
    for n in args.sizes:
        for r in args.replicas:
            print(f"{n} experiments, {r} replica(s)", flush=True)
            m = run(n, r, args.minutes, args.workers, args.rows, server)
            print(m, flush=True)
            rows.append(
                [
                    f"{n:,}",
                    f"{r}",
                    f"{m['pass_p50']:.1f} s",
                    f"{m['pass_p99']:.1f} s",
                    f"{m['pass_p99'] / 10:.2f}",
                    f"{m['cpu_ms']:.2f} ms",
                    f"{m['api']:.2f}",
                    ", ".join(f"{x:.0f}" for x in m["rss_mb"]) + " MB",
                ]
            )
    text = "\n".join(
        [
            "## Operator fleet (`bench/operator_fleet.py`)",
            "",
            f"Generated by `bench/operator_fleet.py --sizes {' '.join(map(str, args.sizes))} "
            f"--replicas {' '.join(map(str, args.replicas))} --minutes {args.minutes} "
            f"--workers {args.workers} --rows {args.rows}` in {(time.time() - started) / 60:.0f} min. "
            f"Every experiment due in every pass; {args.minutes - 2} measured passes after 2 "
            f"warm-up passes; {SHARDS} shards; the emulator in its own process over HTTP; real "
            "Postgres; all on this machine's 2 cores. Pass = the slowest replica's pass (they run "
            "at the same time).",
            "",
            table(
                [
                    "experiments",
                    "replicas",
                    "pass p50",
                    "pass p99",
                    "p99 / 10 s interval",
                    "operator CPU per tick",
                    "API requests per tick",
                    "peak memory per replica",
                ],
                rows,
            ),
        ]
    )
    write_section("operator-fleet", text)
    print(text)


if __name__ == "__main__":
    main()
