"""One operator replica for bench/operator_fleet.py, in a process of its own.

It imports what ``canaryctl operator run`` imports (not the benchmark's traffic and ingest
code), so its resident memory is an operator's. Arguments: identity, emulator URL, database
URL, workers, replicas. It takes its shards (real Leases), prints ``{"held": k}``, then for
each ISO time on stdin sets its clock, makes one pass with every experiment due and prints
the pass's figures as one JSON line; it stops when stdin closes.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

import kubernetes.client
import psutil
import urllib3

from controller.clock import SimulatedClock
from controller.operate.loop import Operator, OperatorConfig, tune_gc
from controller.operate.shards import Shards
from controller.storage import db

SHARDS = 16
LEASE_NS = "canaryctl-system"


def count_requests() -> list[int]:
    """Count every HTTP request this process sends, whichever way it goes (the generated
    client or straight to a connection pool; the shard Leases and the watches included): a
    measurement wrapper around the connection pools' ``urlopen``, not a mock."""
    counter = [0]
    pool = urllib3.connectionpool.HTTPConnectionPool
    original = pool.urlopen

    def urlopen(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counter[0] += 1
        return original(self, *args, **kwargs)

    pool.urlopen = urlopen  # type: ignore[method-assign]
    return counter


def main(name: str, emulator_url: str, url: str, workers: int, members: int) -> None:
    configuration = kubernetes.client.Configuration(host=emulator_url)  # no auth, no TLS
    api = kubernetes.client.ApiClient(configuration)
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = workers * 2
    engine = db.make_engine(url, pool_size=workers + 2, max_overflow=workers, pool_pre_ping=False)
    clock = SimulatedClock(datetime.fromisoformat("2026-11-26T00:00:00+00:00"))
    operator = Operator(
        api, engine, clock=clock, config=OperatorConfig(workers=workers, identity=name)
    )
    # long leases: a pass over thousands of experiments on shared cores keeps its shards
    shards = Shards(
        api,
        identity=name,
        namespace=LEASE_NS,
        shards=SHARDS,
        lease_duration=600,
        renew_deadline=400,
        retry_period=0.5,
    ).start()
    while len(shards.members) < members or len(shards.held()) < SHARDS // members:
        time.sleep(0.2)
    time.sleep(2)  # let the others settle too
    operator.shards = shards
    operator._assembler.fence = shards.writing
    requests = count_requests()
    tune_gc()  # as `canaryctl operator run` does
    me = psutil.Process()
    print(json.dumps({"held": len(shards.held())}), flush=True)
    for line in sys.stdin:
        clock.set(datetime.fromisoformat(line.strip()))
        cpu, calls, t = time.process_time(), requests[0], time.perf_counter()
        results = operator.run_once(force=True)
        answer = {
            "wall": time.perf_counter() - t,
            "ticks": len(results),
            "cpu": time.process_time() - cpu,
            "api": requests[0] - calls,
            "errors": [r.error for r in results if r.error][:3],
            "rss": me.memory_info().rss,
        }
        print(json.dumps(answer), flush=True)
    shards.stop(release=False)
    operator.close()
    engine.dispose()
    api.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
