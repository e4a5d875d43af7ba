"""The ingest client's sender thread: batches, delivery under one id, retries, and the spool.

Where it sits: imported and run by the thread that ``controller.ingest.client.Client``
starts, never by the caller's code path. It takes rows from the shared queue as batches
(``batch_rows`` rows, or whatever waits after ``max_delay`` or on flush), encodes them as
JSON lines, and POSTs each under a uuid sent as the ``Idempotency-Key``. Network errors,
408, 429 (honouring ``Retry-After``) and 5xx are retried with exponential backoff and jitter
under the SAME id, so the server never stores a batch twice; any other 4xx refuses the
batch for good (counted, one log line). After ``retry_budget`` seconds the batch goes to the
spool, if there is one, and the server counts as away: new batches go straight to the
spool and the oldest spooled batch probes the server every ``max_backoff`` seconds; once it
answers, the spool is re-sent oldest first, taking turns with fresh batches.

What it must not do: touch the caller's state other than through ``client.Link``, or let
an exception end the thread (it logs and carries on).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import Enum
from json.encoder import encode_basestring_ascii as _quote

import httpx

from controller.ingest.client import Link, Options, Row
from controller.ingest.spool import Spool

logger = logging.getLogger("controller.ingest.client")

RETRYABLE_4XX = frozenset({408, 429})


class Outcome(Enum):
    SENT = "sent"  # stored, or known to the server already
    REFUSED = "refused"  # a 4xx that retrying cannot fix
    FAILED = "failed"  # the server stayed away for the whole budget (or the client closed)


class Sender:
    """The loop of the sender thread (see the module docstring)."""

    def __init__(self, options: Options, link: Link, spool: Spool | None) -> None:
        self.o, self.link, self.spool = options, link, spool
        self.counts = link.counts
        self.away_until: float | None = None  # the server is away: spool, probe at this time
        self.spool_trouble_logged = False
        self.http = httpx.Client(
            timeout=options.timeout,
            verify=options.verify,
            headers={
                "Authorization": f"Bearer {options.token}",
                "Content-Type": "application/x-ndjson",
            },
        )
        link.http_ready = True

    def run(self) -> None:
        link = self.link
        try:
            while not link.stop.is_set():
                try:
                    self.step()
                except Exception:  # a bug must not silence the client: log it and go on
                    logger.exception("canaryctl client: the sender failed; carrying on")
                    link.stop.wait(self.o.max_backoff)
            self.drain_on_stop()
        finally:
            self.http.close()
            with link.progress:
                link.progress.notify_all()

    def step(self) -> None:
        """Wait for work, then send what is due: full batches, or everything after a delay."""
        link = self.link
        woke = link.wake.wait(self.o.max_delay)
        link.wake.clear()
        spool_turn = True  # a due probe goes first; then spool and queue take turns
        while not link.stop.is_set():
            depth = len(link.queue)
            everything = not woke or link.taken < link.flush_target
            queue_due = depth >= self.o.batch_rows or (depth > 0 and everything)
            spool_due = self.spool is not None and len(self.spool) > 0 and not self.away()
            if spool_due and (spool_turn or not queue_due):
                self.resend_oldest()
                spool_turn = False
            elif queue_due:
                self.handle(self.take(min(depth, self.o.batch_rows)))
                spool_turn = True
            else:
                return

    def take(self, n: int) -> list[Row]:
        self.link.taken += n  # before popping, so that a flush never undercounts
        pop = self.link.queue.popleft
        return [pop() for _ in range(n)]

    def handle(self, rows: list[Row]) -> None:
        """Deliver one batch from the queue, or spool it, or count it as lost; never raise."""
        n = len(rows)
        try:
            self._handle(uuid.uuid4().hex, encode(rows), n)
        except Exception:  # a bug: count the rows instead of losing them silently
            self.counts["lost_rows"] += n
            logger.exception("canaryctl client: a batch of %d rows lost to an unexpected error", n)
        finally:
            self.done(n)

    def _handle(self, batch_id: str, body: bytes, n: int) -> None:
        if self.spool is not None and self.away():
            self.to_spool(batch_id, body, n)
        elif self.deliver(batch_id, body, n, self.o.retry_budget) is Outcome.FAILED:
            if self.spool is not None:
                self.away_until = time.monotonic() + self.o.max_backoff
                self.to_spool(batch_id, body, n)
            else:
                self.counts["lost_rows"] += n
                logger.error(
                    "canaryctl client: batch %s of %d rows lost: the server at %s stayed away "
                    "for %.0f s and there is no spool_dir",
                    batch_id,
                    n,
                    self.o.endpoint,
                    self.o.retry_budget,
                )

    def done(self, n: int) -> None:
        with self.link.progress:
            self.link.handled += n
            self.link.progress.notify_all()

    def away(self) -> bool:
        """The server was found away; True until the next probe is due."""
        return self.away_until is not None and time.monotonic() < self.away_until

    def to_spool(self, batch_id: str, body: bytes, n: int) -> None:
        assert self.spool is not None
        try:
            stored = self.spool.put(batch_id, body)
        except OSError as exc:
            stored, reason = False, f"cannot write to the spool ({exc.strerror})"
        else:
            reason = f"the spool is full ({self.spool.max_bytes} bytes)"
        if stored:
            self.counts["spooled"] += n
            self.spool_trouble_logged = False
            return
        self.counts["lost_rows"] += n
        if not self.spool_trouble_logged:  # once per episode, not once per batch
            logger.error("canaryctl client: batch %s of %d rows lost: %s", batch_id, n, reason)
            self.spool_trouble_logged = True

    def resend_oldest(self) -> None:
        """One attempt at the oldest spooled batch; a failure marks the server away again."""
        assert self.spool is not None
        oldest = self.spool.oldest()
        if oldest is None:
            return
        name, batch_id, body = oldest
        if self.deliver(batch_id, body, body.count(b"\n"), budget=0.0) is Outcome.FAILED:
            self.away_until = time.monotonic() + self.o.max_backoff
            return
        if self.away_until is not None:
            logger.warning(
                "canaryctl client: the server at %s answers again; re-sending %d spooled batches",
                self.o.endpoint,
                len(self.spool),
            )
            self.away_until = None
        self.spool.remove(name)

    def deliver(self, batch_id: str, body: bytes, n: int, budget: float) -> Outcome:
        """POST one batch, retrying under the same id for up to ``budget`` seconds."""
        start = time.monotonic()
        attempt = 0
        while True:
            retry_after = None
            try:
                answer = self.http.post(
                    self.o.endpoint, content=body, headers={"Idempotency-Key": batch_id}
                )
            except httpx.RequestError as exc:  # network, timeout, decoding, redirects
                reason = f"{type(exc).__name__}: {exc}"
            else:
                status = answer.status_code
                if 200 <= status < 300:
                    self.count_sent(answer, n)
                    return Outcome.SENT
                if status < 500 and status not in RETRYABLE_4XX:
                    self.counts["rejected_batches"] += 1
                    self.counts["rejected_rows"] += n
                    logger.error(
                        "canaryctl client: batch %s of %d rows refused with %d: %s",
                        batch_id,
                        n,
                        status,
                        error_text(answer),
                    )
                    return Outcome.REFUSED
                reason = f"HTTP {status}"
                retry_after = parse_retry_after(answer.headers.get("retry-after"))
            delay = min(self.o.max_backoff, self.o.backoff * 2**attempt)
            delay = delay / 2 + random.uniform(0, delay / 2)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if self.link.stop.is_set() or time.monotonic() - start + delay > budget:
                logger.log(
                    logging.WARNING if budget > 0 else logging.DEBUG,
                    "canaryctl client: batch %s not delivered after %d attempts (%s)",
                    batch_id,
                    attempt + 1,
                    reason,
                )
                return Outcome.FAILED
            attempt += 1
            self.counts["retries"] += 1
            if self.link.stop.wait(delay):
                return Outcome.FAILED

    def count_sent(self, answer: httpx.Response, n: int) -> None:
        self.counts["sent_batches"] += 1
        self.counts["sent_rows"] += n
        try:
            result = answer.json()
        except ValueError:
            return
        if isinstance(result, dict):
            self.counts["duplicate_batches"] += bool(result.get("duplicate"))
            rejected = result.get("rejected")
            self.counts["quarantined_rows"] += rejected if isinstance(rejected, int) else 0

    def drain_on_stop(self) -> None:
        """After close: what is still queued goes to the spool, or is counted as lost."""
        link = self.link
        while link.queue:
            rows = self.take(min(len(link.queue), self.o.batch_rows))
            if self.spool is not None:
                self.to_spool(uuid.uuid4().hex, encode(rows), len(rows))
            else:
                self.counts["lost_rows"] += len(rows)
            self.done(len(rows))


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
        return str(_quote(value))
    return json.dumps(value, default=str)


def _number(value: object) -> str:
    if type(value) is float and -math.inf < value < math.inf:  # finite: repr is valid JSON
        return repr(value)
    if type(value) is int:
        return str(value)
    return json.dumps(value, default=str)  # NaN, ±Infinity, bools, strings, others


def _flag(value: object) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return _json(value)


_MIN_EPOCH = -62_135_596_800  # 0001-01-01 and 10000-01-01: ISO 8601 years have four digits
_MAX_EPOCH = 253_402_300_800


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


def parse_retry_after(value: str | None) -> float | None:
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


def error_text(answer: httpx.Response) -> str:
    """The server's one-line ``error`` (JSON bodies), or the start of the body."""
    try:
        payload = answer.json()
    except ValueError:
        return answer.text[:200]
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return answer.text[:200]
