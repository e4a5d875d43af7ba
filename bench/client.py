"""Client benchmark (issue 10): what ``Client.record`` costs the service that calls it, and its import.

``time.perf_counter_ns`` around each ``record()`` call, many calls per run, medians over runs
of each percentile, with the server up (answers at once), slow (sleeps before answering)
and down (nothing listens; batches go to a spool directory). The server is a tiny HTTP
server of this script's own, in its own process, answering like ``canaryctl ingest serve``:
what ``record`` costs does not depend on what stores the rows, only on the sender thread
that shares the interpreter with the caller. Calls are paced (the caller sleeps between
calls, as a service waiting on its own I/O does) and also made back to back (the worst
case for the sender's share of the interpreter lock). Then the import time of the client
module: median of 10 fresh interpreters, beside ``python -c pass`` in the same run.

Usage: .venv/bin/python bench/client.py [--calls 100000] [--rate 10000] [--runs 5] [--slow 0.5]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._results import table, write_section
from controller.ingest import client as client_mod

ROOT = Path(__file__).resolve().parents[1]

TOKEN = "bench"
TARGET_P99_US = 20.0
TARGET_IMPORT_S = 0.1


def serve(delay: float) -> None:
    """Run the stand-in ingest server; prints its port, answers every batch after ``delay`` s."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(delay)
            n = body.count(b"\n")
            answer = json.dumps(
                {
                    "batch_id": self.headers.get("idempotency-key"),
                    "received": n,
                    "loaded": n,
                    "rejected": 0,
                    "late": 0,
                    "duplicate": False,
                    "rejects": [],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


def start_server(delay: float) -> tuple[str, subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(delay)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return f"http://127.0.0.1:{port}", proc


def closed_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def one_run(
    url: str, calls: int, rate: float, spool: str | None, collector: bool = True
) -> tuple[list[int], dict[str, int]]:
    """Nanoseconds of each ``record()`` call; ``rate`` calls/s (0: back to back)."""
    client = client_mod.Client(url, TOKEN, retry_budget=1.0, spool_dir=spool)
    deadline = time.monotonic() + 30
    while not client._link.http_ready and time.monotonic() < deadline:  # httpx imported
        time.sleep(0.01)
    if not collector:
        gc.disable()
    try:
        spent = timed_calls(client.record, calls, rate)
    finally:
        gc.enable()
    stats = client.stats()
    client.close(timeout=2.0)
    return spent, stats


def timed_calls(fn: Callable[..., object], calls: int, rate: float) -> list[int]:
    """Nanoseconds of each call of ``fn`` with a row's arguments, after 2,000 untimed."""
    clock, sleep = time.perf_counter_ns, time.sleep
    ts = time.time()
    for _ in range(2_000):
        fn("shop/ranker", "champion", ts, 0.0, 31.5, False)
    spent = [0] * calls
    interval = int(1e9 / rate) if rate else 0
    next_at = clock()
    for i in range(calls):
        if interval:
            next_at += interval
            ahead = next_at - clock()
            if ahead > 0:
                sleep(ahead / 1e9)
        start = clock()
        fn("shop/ranker", "champion", ts, 0.0, 31.5, False)
        spent[i] = clock() - start
    return spent


def nothing(*args: object) -> None:
    """The baseline: an empty function timed the same way (the timer and the call)."""
    return None


def percentiles(ns: list[int]) -> dict[str, float]:
    ordered = sorted(ns)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return {"p50": at(0.50), "p99": at(0.99), "p99.9": at(0.999), "max": ordered[-1] / 1000}


def _cells(med: dict[str, float]) -> list[str]:
    return [
        f"{med['p50']:.2f}",
        f"**{med['p99']:.2f}**",
        f"{med['p99.9']:.1f}",
        f"{med['max']:,.0f}",
    ]


IMPORTS = {
    "python -c pass": "pass",
    "import controller.ingest.client": "import controller.ingest.client",
    "import httpx (once, in the sender thread)": "import httpx",
    "import controller.ingest.writer (the in-process writer)": "import controller.ingest.writer",
}


def import_times(runs: int) -> dict[str, float]:
    """Median wall time of a fresh interpreter running each statement (interleaved runs)."""
    times: dict[str, list[float]] = {label: [] for label in IMPORTS}
    for _ in range(runs):
        for label, statement in IMPORTS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", statement], cwd=ROOT, check=True)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) for label, t in times.items()}


def self_reported_import(runs: int) -> float:
    """Median cumulative time ``python -X importtime`` reports for the client module (s)."""
    times = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import controller.ingest.client"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(
            x
            for x in result.stderr.splitlines()
            if x.rstrip().endswith("| controller.ingest.client")
        )
        times.append(int(line.split("|")[1]) / 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=10_000, help="paced calls per second")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slow", type=float, default=0.5, help="seconds the slow server sleeps")
    parser.add_argument("--serve", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return

    logging.getLogger("controller.ingest.client").setLevel(logging.ERROR)  # expected retries
    paces = ((f"paced, {args.rate:,.0f}/s", args.rate), ("back to back", 0.0))
    rows, verdict_p99 = [], []
    for pace, rate in paces:
        runs = [percentiles(timed_calls(nothing, args.calls, rate)) for _ in range(args.runs)]
        med = {k: statistics.median(p[k] for p in runs) for k in runs[0]}
        rows.append(["(no client: an empty function)", pace, *_cells(med), "–"])
    up_url, up = start_server(0.0)
    slow_url, slow = start_server(args.slow)
    try:
        scenarios = [
            (server, url, pace, rate, True)
            for server, url in (("up", up_url), ("slow", slow_url), ("down", closed_port()))
            for pace, rate in paces
        ]
        scenarios.append(("up, garbage collector paused", up_url, "back to back", 0.0, False))
        for server, url, pace, rate, collector in scenarios:
            runs = []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory() as spool:
                    spent, stats = one_run(url, args.calls, rate, spool, collector)
                runs.append((percentiles(spent), stats))
            med = {k: statistics.median(p[k] for p, _ in runs) for k in runs[0][0]}
            dropped = statistics.median(s["dropped"] for _, s in runs)
            verdict_p99.append(med["p99"])
            rows.append([server, pace, *_cells(med), f"{dropped / args.calls:.1%}"])
            print(rows[-1], flush=True)
    finally:
        up.kill()
        slow.kill()
    imports = import_times(10)
    reported = self_reported_import(10)
    bare = imports["python -c pass"]
    worst = max(verdict_p99)
    client_import = imports["import controller.ingest.client"]

    body = f"""## HTTP ingest client (`bench/client.py`)

What `Client.record()` costs the calling thread: `time.perf_counter_ns()` around each call,
{args.calls:,} calls per run after 2,000 untimed, median over {args.runs} runs of each percentile
(µs). Python {platform.python_version()}, {os.cpu_count()} cores shared with other work (load
average {os.getloadavg()[0]:.1f} at the end). Server up: a stand-in answering at once in its own
process; slow: it sleeps {args.slow} s before each answer; down: nothing listens, batches go to a
spool directory after a 1 s retry budget. Defaults otherwise (queue 100,000 rows, batches of
1,000 or 1 s). "Paced" sleeps between calls as a service waiting on its own I/O does; "back to
back" is the worst case for the sender thread's share of the interpreter lock. The first two
rows time an empty function the same way: the floor of the measurement on this machine.

{table(["server", "calls", "p50", "p99", "p99.9", "max", "dropped (queue full)"], rows)}

Target p99 ≤ {TARGET_P99_US:.0f} µs: **{"met" if worst <= TARGET_P99_US else "not met"}** (worst p99 {worst:.2f} µs).
The rare slow calls (p99.9, max) are mostly Python's garbage collector: each queued row is a
tuple, and one surviving allocation in about 700 starts a young-generation collection in
whichever call makes it (tens of µs; a service's own allocations start the same collections).
The last row pauses the collector during the timed calls and the p99.9 falls to a few µs. The remaining maxima are the caller waiting for the interpreter lock while the
sender thread encodes a batch (CPython hands the lock over every 5 ms) or the thread
descheduled on a busy machine. A server slower than the row rate fills the queue (back to back, 102,000 calls meet a
100,000-row queue), and `record` then drops and counts (the last column) instead of blocking or
growing memory.

Import time, median of 10 fresh interpreters (wall, s):

{table(["statement", "time", "above `python -c pass`"], [[f"`{k}`", f"{v:.3f}", f"{v - bare:+.3f}"] for k, v in imports.items()])}

Target import ≤ {TARGET_IMPORT_S} s: **{"met" if max(reported, client_import - bare) <= TARGET_IMPORT_S else "not met"}**
({client_import - bare:.3f} s above a bare interpreter, {client_import:.3f} s in all; the
interpreter's own `-X importtime` count for the module, median of 10: {reported:.3f} s). httpx is imported by
the sender thread when the client starts, once, off the caller's path; it costs what its row says
because it imports its command-line tool's dependencies (click, rich) when they are installed.
"""
    print(body)
    if not args.no_write:
        write_section("client", body)


if __name__ == "__main__":
    main()
