"""An ASGI app served by uvicorn in a thread on a free local port, for the HTTP tests."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def running(app: Any, **listen: Any) -> Iterator[str]:
    """Serve ``app`` with ``listen.Listen(**listen)`` in a thread; yields its base URL."""
    import uvicorn

    from controller.ingest import listen as listen_

    tls = listen.get("tls_cert") is not None
    where = listen_.Listen(**{"host": "127.0.0.1", "port": 0, **listen})
    srv = uvicorn.Server(listen_.config(app, where, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def serve(app: Any, **listen: Any) -> tuple[str, Callable[[], None]]:
    """``running`` for a test that stops the server itself: its URL and a stop."""
    stack = contextlib.ExitStack()
    url = stack.enter_context(running(app, **listen))
    return url, stack.close
