"""How the ingest server listens: uvicorn's configuration with header, idle and body limits, TLS.

``config`` builds the ``uvicorn.Config`` that ``canaryctl ingest serve`` runs and the tests
start in a thread, so both exercise the same limits:

- **header timeout**: the request line and headers must arrive within ``header_timeout``
  seconds of the connection opening (or of the previous answer); otherwise the server answers
  408 and closes. uvicorn has no such limit (its keep-alive timer is cancelled by every byte,
  so a client trickling a header byte every second held a connection for ever): the
  ``H11Protocol`` subclass below adds it.
- **idle timeout**: uvicorn's ``timeout_keep_alive`` closes a kept-alive connection that sends
  nothing.
- **header size**: h11's incomplete-event limit (uvicorn answers 400 beyond it).
- **body timeout** and the byte and row limits: the app's (``server.Limits``).
- **connections**: uvicorn's ``limit_concurrency`` answers 503 beyond it.
- **TLS**: a certificate and key file handed to uvicorn.

It imports uvicorn and h11 (the ``serve`` extra) and nothing of the store.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class Listen:
    """Where and how the server listens (see the module docstring for each limit)."""

    host: str = "127.0.0.1"
    port: int = 8710
    header_timeout: float = 10.0
    idle_timeout: float = 5.0
    max_header_bytes: int = 16 << 10
    max_connections: int | None = 1_000
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        for name in ("header_timeout", "idle_timeout", "max_header_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both or neither")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"{path}: no such file")


def _timeout_answer(seconds: float) -> bytes:
    body = json.dumps(
        {"error": f"the request headers did not arrive within {seconds:g} s"}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head."""

    header_timeout = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the head is in (or the connection is done)
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm_head_timer()  # for the next request; a pipelined one cancels it at once
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self.transport.write(_timeout_answer(self.header_timeout))
        self.transport.close()


def config(app: Any, listen: Listen, *, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration serving ``app`` with ``listen``'s limits."""
    protocol = type(
        "HeaderTimeoutProtocol",
        (_HeaderTimeoutProtocol,),
        {"header_timeout": listen.header_timeout},
    )
    options: dict[str, Any] = {
        "host": listen.host,
        "port": listen.port,
        "http": protocol,
        "timeout_keep_alive": listen.idle_timeout,
        "h11_max_incomplete_event_size": listen.max_header_bytes,
        "limit_concurrency": listen.max_connections,
        "log_level": log_level,
        "lifespan": "off",
        "server_header": False,
    }
    if listen.tls_cert is not None:
        options["ssl_certfile"] = str(listen.tls_cert)
        options["ssl_keyfile"] = str(listen.tls_key)
    return uvicorn.Config(app, **options)
