"""HTTP ingest endpoint for services in other languages (``canaryctl ingest serve``).

``POST /v1/batches`` with ``Authorization: Bearer <token>``, a batch id in the
``Idempotency-Key`` header (or ``?batch_id=``), and a body of JSON lines
(``application/x-ndjson``) or CSV (``text/csv``). The answer is JSON with the counts
(``received``, ``loaded``, ``rejected``, ``late``, ``duplicate``) and the first rejects.
Status codes: 200 loaded (rejected rows are quarantined and listed), 400 no batch id,
401 bad token, 413 body too large, 415 unknown content type, 422 the batch as a whole
is unreadable (nothing stored), 503 the database is unreachable (retry with the same id).
"""

from __future__ import annotations

import hmac

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from controller.clock import SYSTEM_CLOCK, Clock
from controller.ingest import load, readers, validate

CONTENT_TYPES = {
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json": "jsonl",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    engine: sa.Engine, *, token: str, max_bytes: int = 32 << 20, clock: Clock = SYSTEM_CLOCK
) -> Starlette:
    """The ASGI app serving the ingest endpoint against ``engine``."""
    if not token:
        raise ValueError("token: the ingest endpoint needs a bearer token")
    expected = f"Bearer {token}".encode()

    async def batches(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _error(401, "missing or wrong bearer token")
        batch_key = request.headers.get("idempotency-key") or request.query_params.get("batch_id")
        if not batch_key:
            return _error(
                400, "every batch needs an id: send an Idempotency-Key header or ?batch_id="
            )
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fmt = CONTENT_TYPES.get(media)
        if fmt is None:
            return _error(
                415, f"content type {media or '(none)'!r} is not one of {', '.join(CONTENT_TYPES)}"
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return _error(413, f"body of {declared} bytes exceeds the limit of {max_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                return _error(413, f"body exceeds the limit of {max_bytes} bytes")
        try:
            table = readers.read_bytes(bytes(body), fmt)
            result = await run_in_threadpool(
                load.load_table, engine, table, batch_key=batch_key, source="http", clock=clock
            )
        except (readers.ReadError, validate.BatchError) as exc:
            return _error(422, f"batch {batch_key} refused whole, nothing stored: {exc}")
        except sa.exc.OperationalError:
            return _error(503, "the database is unreachable; retry with the same batch id")
        return JSONResponse(result.as_dict())

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/v1/batches", batches, methods=["POST"]), Route("/healthz", healthz)]
    )
