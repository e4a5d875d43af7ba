"""Prometheus metrics of the operator and the small HTTP server for probes and scraping.

One ``Metrics`` per operator (its own registry, so several operators in one test process
do not collide). ``serve`` answers ``/healthz`` (the process is alive), ``/readyz`` (the
operator can reach the Kubernetes API and has finished a pass, or is a healthy follower)
and ``/metrics``. Nothing here decides anything.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class Metrics:
    """The operator's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.experiments = Gauge(
            "canaryctl_experiments", "Experiments by phase", ["phase"], registry=self.registry
        )
        self.ticks = Counter(
            "canaryctl_ticks_total", "Experiment ticks", ["result"], registry=self.registry
        )
        self.decisions = Counter(
            "canaryctl_decisions_total",
            "Decisions logged, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "canaryctl_tick_duration_seconds",
            "Time to reconcile one experiment",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.pass_seconds = Histogram(
            "canaryctl_pass_duration_seconds",
            "Time of one pass over every due experiment",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 20, 60),
            registry=self.registry,
        )
        self.rollback_seconds = Histogram(
            "canaryctl_rollback_latency_seconds",
            "From the analysis showing a failure to all traffic back on the champion",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.leader = Gauge(
            "canaryctl_leader", "1 while this replica holds the Lease", registry=self.registry
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve(
    metrics: Metrics, ready: Callable[[], bool], host: str = "127.0.0.1", port: int = 8080
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve /healthz, /readyz and /metrics in a background thread; returns the server.

    Unauthenticated, so it listens on localhost unless told otherwise (the manifest gives
    the pod IP, where the kubelet's probes and Prometheus reach it; IPv6 addresses work).
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                ok = ready()
                self._answer(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
            elif self.path == "/metrics":
                self._answer(200, metrics.render(), CONTENT_TYPE_LATEST)
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
    server = server_class((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="canaryctl-http", daemon=True)
    thread.start()
    return server, thread
