"""A client for services that log request outcomes over HTTP, cheap enough for a ranking service.

Where it sits: inside the serving process, in front of ``canaryctl ingest serve``
(``POST /v1/batches``, see ``controller.ingest.server``). ``Client.record`` only appends a
tuple to a bounded in-memory queue; a background sender thread turns the queue into
batches of JSON lines (by size, or after ``max_delay``), gives each batch a uuid sent as
the ``Idempotency-Key`` and POSTs it. Network errors, 408, 429 (honouring ``Retry-After``)
and 5xx are retried with exponential backoff and jitter under the SAME id, so a retry is
never counted twice; any other 4xx refuses the batch for good (counted, one log line).
When the server stays away longer than ``retry_budget`` seconds, batches go to an
optional on-disk spool (``controller.ingest.spool``) and are re-sent, oldest first, once
the server answers again, also after a restart of the process.

What it must not do: block or raise in ``record`` (a full queue drops the row and counts
it), hold a lock on the recording path, or import anything heavy: no numpy, scipy,
SQLAlchemy or Arrow, and httpx (about 0.2 s to import with its command line) is imported
by the sender thread, not by this module.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from enum import Enum
from json.encoder import encode_basestring_ascii as _quote
from typing import TYPE_CHECKING, Any

from controller.ingest import spool as spool_mod

if TYPE_CHECKING:
    from collections.abc import Iterable

    import httpx

logger = logging.getLogger(__name__)

PATH = "/v1/batches"
RETRYABLE_4XX = frozenset({408, 429})
COUNTERS = (
    "recorded",
    "sent_rows",
    "sent_batches",
    "duplicate_batches",
    "quarantined_rows",
    "retries",
    "dropped",
    "spooled",
    "lost_rows",
    "rejected_batches",
    "rejected_rows",
)
GAUGES = ("queue_depth", "spool_batches", "spool_bytes")

Row = tuple[Any, Any, Any, Any, Any, Any, Any]


class _Outcome(Enum):
    SENT = "sent"  # stored (or known to the server already)
    REFUSED = "refused"  # a 4xx that retrying cannot fix
    FAILED = "failed"  # the server stayed away for the whole budget


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
        A batch is sent when ``batch_rows`` rows wait, or ``max_delay`` seconds after the
        previous send, whichever comes first.
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
        if isinstance(verify, str) and not os.path.exists(verify):
            raise ValueError(f"verify: no CA bundle at {verify}")
        if importlib.util.find_spec("httpx") is None:
            raise ModuleNotFoundError("the canaryctl client needs httpx: pip install httpx")
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
        self.endpoint = (
            url.rstrip("/") if url.rstrip("/").endswith(PATH) else url.rstrip("/") + PATH
        )
        self._token = token
        self._max_queue = max_queue
        self._batch_rows = batch_rows
        self._max_delay = max_delay
        self._timeout = timeout
        self._retry_budget = retry_budget
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._verify = verify
        self._spool = spool_mod.Spool(spool_dir, spool_max_bytes) if spool_dir else None

        self._queue: deque[Row] = deque()
        self._closed = False
        self._wake = threading.Event()  # a full batch waits, or flush/close asked
        self._stop = threading.Event()  # close: give up retrying, spool what is left
        self._progress = threading.Condition()  # notified after each batch is handled
        self._drop_lock = threading.Lock()  # taken only on the (rare) drop path
        self._dropped = 0
        self._taken = 0  # rows moved out of the queue by the sender (sender only)
        self._handled = 0  # of those, rows sent, spooled, refused or lost (sender only)
        self._flush_target = 0
        self._away_until: float | None = None  # the server is away: spool, probe at this time
        self._spool_full_logged = False
        self._counts = dict.fromkeys(COUNTERS, 0)  # written by the sender thread only
        self._httpx: Any = None  # the module, imported by the sender thread
        self._http: httpx.Client | None = None
        self._thread = threading.Thread(target=self._run, name="canaryctl-client", daemon=True)
        self._thread.start()

    # -- the caller's side ------------------------------------------------------------------

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
        queue.append(
            (
                experiment,
                arm,
                time.time() if ts is None else ts,
                revenue,
                latency_ms,
                error,
                unit_id,
            )
        )
        if len(queue) >= self._batch_rows and not self._wake.is_set():
            self._wake.set()
        return True

    def stats(self) -> dict[str, int]:
        """Counters since start (see ``COUNTERS``) and the current queue and spool sizes."""
        counts = dict(self._counts)
        depth = len(self._queue)
        counts["dropped"] = self._dropped
        counts["recorded"] = self._taken + depth + self._dropped
        counts["queue_depth"] = depth
        counts["spool_batches"] = len(self._spool) if self._spool else 0
        counts["spool_bytes"] = self._spool.bytes if self._spool else 0
        return counts

    def flush(self, timeout: float | None = None) -> bool:
        """Send every row recorded so far (or spool it); False if ``timeout`` ran out first."""
        target = self._taken + len(self._queue)
        with self._progress:
            self._flush_target = max(self._flush_target, target)
            self._wake.set()
            return self._progress.wait_for(
                lambda: self._handled >= target or not self._thread.is_alive(), timeout
            ) and (self._handled >= target)

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush (up to ``timeout`` seconds), then spool or count as lost what is left, and stop."""
        if self._closed:
            return
        self._closed = True
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join()
        if self._spool is not None:
            self._spool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register_metrics(self, registry: Any = None, *, prefix: str = "canaryctl_client") -> Any:
        """Expose ``stats()`` to prometheus_client (default registry unless given); returns the collector."""
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

    # -- the sender thread -------------------------------------------------------------------

    def _run(self) -> None:
        import httpx  # here, not at module level: it costs ~0.2 s to import

        self._httpx = httpx
        http = self._http = httpx.Client(
            timeout=self._timeout,
            verify=self._verify,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/x-ndjson",
            },
        )
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception:  # a bug must not kill the sender: log it and go on
                    logger.exception("canaryctl client: the sender failed; continuing")
                    self._stop.wait(self._max_backoff)
            self._drain_on_stop()
        finally:
            http.close()
            with self._progress:
                self._progress.notify_all()

    def _step(self) -> None:
        """Send what is due (full batches, or all after ``max_delay``/flush), then wait."""
        woke = self._wake.wait(self._max_delay)
        self._wake.clear()
        spool_turn = True  # a due probe goes first; then spool and queue take turns
        while not self._stop.is_set():
            depth = len(self._queue)
            everything = not woke or self._taken < self._flush_target
            queue_due = depth >= self._batch_rows or (depth > 0 and everything)
            spool_due = self._spool is not None and len(self._spool) > 0 and not self._away()
            if spool_due and (spool_turn or not queue_due):
                self._resend_oldest()
                spool_turn = False
            elif queue_due:
                self._handle(self._take(min(depth, self._batch_rows)))
                spool_turn = True
            else:
                return

    def _take(self, n: int) -> list[Row]:
        self._taken += n  # before popping, so that flush never undercounts
        pop = self._queue.popleft
        return [pop() for _ in range(n)]

    def _handle(self, rows: list[Row]) -> None:
        batch_id = uuid.uuid4().hex
        body = encode(rows)
        if self._spool is not None and self._away():
            self._to_spool(batch_id, body, len(rows))
        else:
            outcome = self._deliver(batch_id, body, len(rows), self._retry_budget)
            if outcome is _Outcome.FAILED:
                if self._spool is not None:
                    self._away_until = time.monotonic() + self._max_backoff
                    self._to_spool(batch_id, body, len(rows))
                else:
                    self._counts["lost_rows"] += len(rows)
                    logger.error(
                        "canaryctl client: batch %s of %d rows lost: the server at %s stayed "
                        "away for %.0f s and there is no spool_dir",
                        batch_id,
                        len(rows),
                        self.endpoint,
                        self._retry_budget,
                    )
        self._done(len(rows))

    def _done(self, n: int) -> None:
        with self._progress:
            self._handled += n
            self._progress.notify_all()

    def _away(self) -> bool:
        """The server was found away; True until the next probe is due."""
        return self._away_until is not None and time.monotonic() < self._away_until

    def _to_spool(self, batch_id: str, body: bytes, n: int) -> None:
        assert self._spool is not None
        try:
            stored = self._spool.put(batch_id, body)
        except OSError as exc:
            stored, reason = False, f"cannot write to the spool ({exc.strerror})"
        else:
            reason = f"the spool is full ({self._spool.max_bytes} bytes)"
        if stored:
            self._counts["spooled"] += n
            self._spool_full_logged = False
            return
        self._counts["lost_rows"] += n
        if not self._spool_full_logged:  # once per episode, not once per batch
            logger.error("canaryctl client: batch %s of %d rows lost: %s", batch_id, n, reason)
            self._spool_full_logged = True

    def _resend_oldest(self) -> None:
        """One attempt at the oldest spooled batch; a failure marks the server away again."""
        assert self._spool is not None
        oldest = self._spool.oldest()
        if oldest is None:
            return
        name, batch_id, body = oldest
        n = body.count(b"\n")
        outcome = self._deliver(batch_id, body, n, budget=0.0)
        if outcome is _Outcome.FAILED:
            self._away_until = time.monotonic() + self._max_backoff
            return
        if self._away_until is not None:
            logger.warning(
                "canaryctl client: the server at %s answers again; re-sending %d spooled batches",
                self.endpoint,
                len(self._spool),
            )
            self._away_until = None
        self._spool.remove(name)

    def _deliver(self, batch_id: str, body: bytes, n: int, budget: float) -> _Outcome:
        """POST one batch, retrying under the same id for up to ``budget`` seconds."""
        httpx = self._httpx
        assert httpx is not None and self._http is not None
        start = time.monotonic()
        attempt = 0
        while True:
            retry_after = None
            try:
                answer = self._http.post(
                    self.endpoint, content=body, headers={"Idempotency-Key": batch_id}
                )
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                status = answer.status_code
                if 200 <= status < 300:
                    self._count_sent(answer, n)
                    return _Outcome.SENT
                if status < 500 and status not in RETRYABLE_4XX:
                    self._counts["rejected_batches"] += 1
                    self._counts["rejected_rows"] += n
                    logger.error(
                        "canaryctl client: batch %s of %d rows refused with %d: %s",
                        batch_id,
                        n,
                        status,
                        _error_text(answer),
                    )
                    return _Outcome.REFUSED
                reason = f"HTTP {status}"
                retry_after = _retry_after(answer.headers.get("retry-after"))
            delay = min(self._max_backoff, self._backoff * 2**attempt)
            delay = delay / 2 + random.uniform(0, delay / 2)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if self._stop.is_set() or time.monotonic() - start + delay > budget:
                logger.log(
                    logging.WARNING if budget > 0 else logging.DEBUG,
                    "canaryctl client: batch %s not delivered after %d attempts (%s)",
                    batch_id,
                    attempt + 1,
                    reason,
                )
                return _Outcome.FAILED
            attempt += 1
            self._counts["retries"] += 1
            if self._stop.wait(delay):
                return _Outcome.FAILED

    def _count_sent(self, answer: httpx.Response, n: int) -> None:
        self._counts["sent_batches"] += 1
        self._counts["sent_rows"] += n
        try:
            result = answer.json()
        except ValueError:
            return
        if isinstance(result, dict):
            self._counts["duplicate_batches"] += bool(result.get("duplicate"))
            rejected = result.get("rejected")
            self._counts["quarantined_rows"] += rejected if isinstance(rejected, int) else 0

    def _drain_on_stop(self) -> None:
        """After close: what is still queued goes to the spool, or is counted as lost."""
        while self._queue:
            rows = self._take(min(len(self._queue), self._batch_rows))
            if self._spool is not None:
                self._to_spool(uuid.uuid4().hex, encode(rows), len(rows))
            else:
                self._counts["lost_rows"] += len(rows)
            self._done(len(rows))


def encode(rows: Iterable[Row]) -> bytes:
    """Rows as the JSON lines body of one batch; ``ts`` as ISO 8601 (UTC unless it says otherwise).

    Hand-formatted (about 3× faster than ``json.dumps`` per row), because the sender thread
    shares the interpreter lock with the service; any value of an unexpected type goes
    through ``json.dumps(default=str)``, so the server sees it and quarantines its row.
    """
    quoted: dict[object, str] = {}  # experiment and arm names repeat: quote each once
    seconds: dict[int, str] = {}  # so do the seconds of the event times
    lines = []
    for experiment, arm, ts, revenue, latency_ms, error, unit_id in rows:
        exp = quoted.get(experiment) if type(experiment) is str else None
        if exp is None:
            exp = quoted[experiment] = _json(experiment)
        arm_ = quoted.get(arm) if type(arm) is str else None
        if arm_ is None:
            arm_ = quoted[arm] = _json(arm)
        unit = "" if unit_id is None else f',"unit_id":{_json(unit_id)}'
        lines.append(
            f'{{"experiment":{exp},"arm":{arm_},"ts":{_ts(ts, seconds)},'
            f'"revenue":{_number(revenue)},"latency_ms":{_number(latency_ms)},'
            f'"error":{_flag(error)}{unit}}}\n'
        )
    return "".join(lines).encode()


def _json(value: object) -> str:
    if type(value) is str:
        return _quote(value)
    return json.dumps(value, default=str)


def _number(value: object) -> str:
    if type(value) is float and -_BIG < value < _BIG:  # finite: repr is valid JSON
        return repr(value)
    if type(value) is int:
        return str(value)
    return json.dumps(value, default=str)  # NaN, ±Infinity, bools, strings, others


def _flag(value: object) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return _json(value)


def _ts(ts: object, seconds: dict[int, str]) -> str:
    """Event time as a JSON string; anything unreadable is passed on for the server to reject."""
    if type(ts) is float or type(ts) is int:
        if _MIN_EPOCH <= ts < _MAX_EPOCH:
            whole = math.floor(ts)
            prefix = seconds.get(whole)
            if prefix is None:
                prefix = seconds[whole] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            micros = min(999_999, int((ts - whole) * 1e6 + 0.5))
            return f'"{prefix}.{micros:06d}Z"'
        return _json(str(ts))
    if isinstance(ts, datetime):
        return f'"{ts.isoformat()}"' if ts.tzinfo else f'"{ts.isoformat()}Z"'
    return _json(ts)


_BIG = float("inf")
_MIN_EPOCH = -62_135_596_800  # 0001-01-01 and 10000-01-01: ISO 8601 years have four digits
_MAX_EPOCH = 253_402_300_800


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_text(answer: httpx.Response) -> str:
    try:
        payload = answer.json()
    except ValueError:
        return answer.text[:200]
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return answer.text[:200]
