"""A client for services that log request outcomes over HTTP, cheap enough for a ranking service.

Where it sits: inside the serving process, in front of ``canaryctl ingest serve``
(``POST /v1/batches``, see ``controller.ingest.server``). This module is the caller's side:
``Client.record`` only appends a tuple to a bounded in-memory queue, and a background
thread (``controller.ingest.sender``, imported by that thread) turns the queue into batches
of JSON lines, each sent under one id, retried, and spooled to disk while the server is
away. ``docs/ingest.md`` ("The client") is the user's guide.

What it must not do: block or raise in ``record`` (a full queue drops the row and counts
it), hold a lock on the recording path, or import anything heavy: no numpy, scipy,
SQLAlchemy or Arrow here, and httpx, json, logging and the rest of the sender come with the
sender thread.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from controller.ingest import spool as spool_mod

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

PATH = "/v1/batches"
COUNTERS = (
    "recorded",  # record() calls
    "sent_rows",  # rows in batches the server answered 2xx (new or duplicate)
    "sent_batches",
    "duplicate_batches",  # answered "duplicate": an earlier attempt had stored them
    "quarantined_rows",  # rows the server stored in ingest_rejects with a reason
    "retries",  # attempts after the first, over all batches
    "dropped",  # rows refused by record() because the queue was full (or the client closed)
    "spooled",  # rows written to the spool directory
    "lost_rows",  # rows given up: spool full or unwritable, or no spool when the server was away
    "rejected_batches",  # batches refused with a 4xx other than 408/429
    "rejected_rows",
)
GAUGES = ("queue_depth", "spool_batches", "spool_bytes")
EXIT_TIMEOUT = 5.0  # seconds an unclosed client may take to flush when the interpreter exits

Row = tuple[Any, Any, Any, Any, Any, Any, Any]


class Options:
    """The sender's validated settings (see ``Client``; a plain class: dataclasses cost an import)."""

    __slots__ = (
        "backoff",
        "batch_rows",
        "endpoint",
        "max_backoff",
        "max_delay",
        "retry_budget",
        "timeout",
        "token",
        "verify",
    )

    def __init__(
        self,
        *,
        endpoint: str,
        token: str,
        batch_rows: int,
        max_delay: float,
        timeout: float,
        retry_budget: float,
        backoff: float,
        max_backoff: float,
        verify: bool | str,
    ) -> None:
        self.endpoint = endpoint
        self.token = token
        self.batch_rows = batch_rows
        self.max_delay = max_delay
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.verify = verify


class Link:
    """What the caller's side and the sender thread share: the queue, signals and counters.

    The sender alone writes ``taken``, ``handled`` and ``counts``; the caller reads them.
    """

    def __init__(self) -> None:
        self.queue: deque[Row] = deque()
        self.wake = threading.Event()  # a full batch waits, or flush/close asked
        self.stop = threading.Event()  # close: give up retrying, spool what is left
        self.progress = threading.Condition()  # notified after each batch is handled
        self.taken = 0  # rows moved out of the queue by the sender
        self.handled = 0  # of those, rows sent, spooled, refused or lost
        self.flush_target = 0  # send partial batches until ``taken`` reaches this
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.http_ready = False  # the sender has imported httpx and opened its connection pool


class _CloseAtExit:
    """Closes a client the program never closed, when the interpreter exits."""

    def __init__(self, client: Client) -> None:
        self.client = weakref.ref(client)

    def __call__(self) -> None:
        client = self.client()
        if client is not None:
            client.close(EXIT_TIMEOUT)


class Client:
    """Log request outcomes to the canaryctl ingest endpoint without blocking the caller.

    Parameters
    ----------
    url
        The ingest server, ``http(s)://host:port`` (``/v1/batches`` is appended unless given).
    token
        The bearer token of ``canaryctl ingest serve``.
    max_queue
        Rows held in memory at most; ``record`` drops (and counts) beyond it.
    batch_rows, max_delay
        A batch is sent when ``batch_rows`` rows wait, or within ``max_delay`` seconds.
    timeout
        Seconds for one HTTP request (connect, write, read).
    retry_budget
        Seconds one batch is retried before it goes to the spool (or is lost without one).
    backoff, max_backoff
        First and largest retry delay in seconds (doubling, with jitter); ``max_backoff`` is
        also the interval at which a server found away is probed again.
    spool_dir, spool_max_bytes
        Optional directory keeping batches while the server is away, and its size bound;
        one client process per directory.
    verify
        TLS verification for ``https``: True, False or a CA bundle path (as httpx takes it).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        max_queue: int = 100_000,
        batch_rows: int = 1_000,
        max_delay: float = 1.0,
        timeout: float = 10.0,
        retry_budget: float = 30.0,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 256 << 20,
        verify: bool | str = True,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected http://host:port or https://host:port, got {url!r}")
        if not token:
            raise ValueError("token: the ingest endpoint needs a bearer token")
        for name, value in (("max_queue", max_queue), ("batch_rows", batch_rows)):
            if value < 1:
                raise ValueError(f"{name}: must be ≥ 1, got {value}")
        for name, number in (("max_delay", max_delay), ("timeout", timeout)):
            if not number > 0:
                raise ValueError(f"{name}: must be > 0 seconds, got {number}")
        for name, number in (
            ("retry_budget", retry_budget),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
        ):
            if not number >= 0:
                raise ValueError(f"{name}: must be ≥ 0 seconds, got {number}")
        if isinstance(verify, str) and not os.path.exists(verify):
            raise ValueError(f"verify: no CA bundle at {verify}")
        if importlib.util.find_spec("httpx") is None:
            raise ModuleNotFoundError("the canaryctl client needs httpx: pip install httpx")
        base = url.rstrip("/")
        self.endpoint = base if base.endswith(PATH) else base + PATH
        self._options = Options(
            endpoint=self.endpoint,
            token=token,
            batch_rows=batch_rows,
            max_delay=max_delay,
            timeout=timeout,
            retry_budget=retry_budget,
            backoff=backoff,
            max_backoff=max_backoff,
            verify=verify,
        )
        self._spool = spool_mod.Spool(spool_dir, spool_max_bytes) if spool_dir else None
        self._link = link = Link()
        self._queue = link.queue  # bound here: one attribute lookup less per record()
        self._wake = link.wake
        self._max_queue = max_queue
        self._batch_rows = batch_rows
        self._closed = False
        self._drop_lock = threading.Lock()  # taken only on the (rare) drop path
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="canaryctl-client", daemon=True)
        self._thread.start()
        self._at_exit = _CloseAtExit(self)
        atexit.register(self._at_exit)

    def record(
        self,
        experiment: str,
        arm: str,
        ts: datetime | float | str | None,
        revenue: float,
        latency_ms: float,
        error: bool,
        unit_id: str | None = None,
    ) -> bool:
        """Queue one outcome; never blocks, never raises. False when dropped (queue full or closed).

        ``ts`` is the event time: an aware ``datetime`` (a naive one is taken as UTC), epoch
        seconds, an ISO 8601 string, or None for now. Values are checked by the server, which
        quarantines a bad row with its reason (see ``docs/ingest.md``).
        """
        queue = self._queue
        if len(queue) >= self._max_queue or self._closed:
            with self._drop_lock:
                self._dropped += 1
            return False
        if ts is None:
            ts = time.time()
        queue.append((experiment, arm, ts, revenue, latency_ms, error, unit_id))
        if len(queue) >= self._batch_rows and not self._wake.is_set():
            self._wake.set()
        return True

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters since start (``COUNTERS``) and the queue and spool sizes."""
        link = self._link
        counts = dict(link.counts)
        depth = len(link.queue)
        counts["dropped"] = self._dropped
        counts["recorded"] = link.taken + depth + self._dropped
        counts["queue_depth"] = depth
        counts["spool_batches"] = len(self._spool) if self._spool else 0
        counts["spool_bytes"] = self._spool.bytes if self._spool else 0
        return counts

    def flush(self, timeout: float | None = None) -> bool:
        """Send every row recorded so far (or spool it); False if ``timeout`` ran out first."""
        link = self._link
        target = link.taken + len(link.queue)
        with link.progress:
            link.flush_target = max(link.flush_target, target)
            link.wake.set()
            link.progress.wait_for(
                lambda: link.handled >= target or not self._thread.is_alive(), timeout
            )
            return link.handled >= target

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush (up to ``timeout`` seconds), then spool or count as lost what is left, and stop.

        Returns once the sender has stopped: at most ``timeout`` plus one request's timeout.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._at_exit)
        self.flush(timeout)
        self._link.stop.set()
        self._link.wake.set()
        self._thread.join()
        if self._spool is not None:
            self._spool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register_metrics(self, registry: Any = None, *, prefix: str = "canaryctl_client") -> Any:
        """Expose ``stats()`` to prometheus_client (its default registry unless given).

        Counters are named ``<prefix>_<counter>_total``, gauges ``<prefix>_<gauge>``. Returns the
        collector, for ``registry.unregister`` when the client goes away.
        """
        try:
            from prometheus_client import REGISTRY
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        except ImportError as exc:
            raise RuntimeError(
                "register_metrics needs prometheus_client: pip install prometheus-client"
            ) from exc
        client = self

        class _Collector:
            def collect(self) -> Iterable[Any]:
                stats = client.stats()
                for name in COUNTERS:
                    yield CounterMetricFamily(
                        f"{prefix}_{name}", f"canaryctl client: {name}", value=stats[name]
                    )
                for name in GAUGES:
                    yield GaugeMetricFamily(
                        f"{prefix}_{name}", f"canaryctl client: {name}", value=stats[name]
                    )

        collector = _Collector()
        (registry if registry is not None else REGISTRY).register(collector)
        return collector

    def _run(self) -> None:
        try:
            from controller.ingest import sender  # with httpx: about 0.2 s, off the caller's path

            loop = sender.Sender(self._options, self._link, self._spool)
        except Exception:
            import logging

            logging.getLogger(__name__).exception("canaryctl client: the sender cannot start")
            with self._link.progress:
                self._link.progress.notify_all()
            return
        loop.run()
