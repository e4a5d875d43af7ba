"""HTTP ingest endpoint for services in other languages (``canaryctl ingest serve``).

``POST /v1/batches`` with ``Authorization: Bearer <token>``, a batch id in the
``Idempotency-Key`` header (or ``?batch_id=``), and a body of JSON lines
(``application/x-ndjson``), CSV (``text/csv``) or Parquet. The answer is JSON with the
counts (``received``, ``loaded``, ``rejected``, ``late``, ``duplicate``) and the first
rejects; every other answer, 404 and 500 included, is ``{"error": "..."}``. Status codes:
200 loaded (rejected rows are quarantined and listed), 400 no or bad batch id, 401 bad token,
403 an experiment (or arm) outside the sender's scope (nothing stored), 408 the body was not
received in time, 413 body or row count over the limit, 415 unknown content type, 422 the
batch as a whole is unreadable (nothing stored), 503 the database (or the TokenReview) is
unreachable: retry with the same id.

``POST /v1/cells`` takes pre-aggregated cells the same way (``controller.ingest.aggregates``);
``GET /v1/cells/format`` and ``GET /v1/experiments/{namespace}/{name}`` tell their senders
the latency edges and an experiment's frozen cap and lateness (``controller.ingest.settings``).

The event loop only receives bytes: authentication (which may call the API server), parsing,
the scope check, validation and the load run in worker threads, so ``/healthz`` answers while
a large batch loads. Connection-level limits (header and idle timeouts, header size, TLS) are
uvicorn's and ``controller.ingest.listen``'s. Who may write what is ``controller.ingest.auth``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.clock import SYSTEM_CLOCK, Clock
from controller.ingest import (
    aggregates,
    auth,
    load,
    readers,
    servermetrics,
    settings,
    tokenreview,
    validate,
)

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json": "jsonl",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
}
MAX_BATCH_ID = 200


@dataclass(frozen=True)
class Limits:
    """What requests may cost: body bytes, rows and seconds to receive the body, and how many
    batches are received, parsed and loaded at once (the others wait before their body is read,
    so memory stays about ``max_inflight`` × (``max_bytes`` + its parsed table))."""

    max_bytes: int = 32 << 20
    max_rows: int = 250_000
    body_timeout: float = 30.0
    max_inflight: int = 4

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_rows", "body_timeout", "max_inflight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")


class Refused(Exception):
    """A request answered with an error status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _scope_pairs(table: pa.Table) -> list[tuple[str | None, str | None]]:
    """The distinct (experiment, arm) pairs a batch would write, named as the core names them.

    Experiments are trimmed and keyed by ``validate.experiment_key``, as validation does, so the scope is checked against the key a row is stored under;
    rows without an experiment, and arms that are not an arm, write nothing and are left to
    validation (which quarantines them).
    """
    if "experiment" not in table.column_names:
        return []
    try:
        experiment = pc.utf8_trim_whitespace(pc.cast(table["experiment"], pa.string()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return []  # no row can name a registered experiment: validation rejects them all
    arm: Any = pa.nulls(table.num_rows, pa.string())
    if "arm" in table.column_names:
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            arm = pc.cast(table["arm"], pa.string())
    names = pa.table({"experiment": experiment, "arm": arm})
    distinct = names.group_by(["experiment", "arm"]).aggregate([]).to_pylist()
    out = set()
    for item in distinct:
        exp, arm_name = item["experiment"], item["arm"]
        if not exp:
            continue
        out.add((validate.experiment_key(exp), arm_name if arm_name in validate.ARMS else None))
    return sorted(out, key=lambda p: (p[0], p[1] or ""))


def create_app(
    engine: sa.Engine,
    *,
    token: str | None = None,
    authenticator: auth.Authenticator | None = None,
    max_bytes: int | None = None,
    limits: Limits | None = None,
    clock: Clock = SYSTEM_CLOCK,
    metrics: servermetrics.ServerMetrics | None = None,
) -> Starlette:
    """The ASGI app serving the ingest endpoint against ``engine``.

    Give ``token`` (one shared secret that may write every experiment) or ``authenticator``
    (scoped credentials, see ``controller.ingest.auth``). ``max_bytes`` overrides
    ``limits.max_bytes``.
    """
    if (token is None) == (authenticator is None):
        raise ValueError("create_app: give exactly one of token and authenticator")
    authn: auth.Authenticator = authenticator or auth.SharedToken(token or "")
    limits = limits or Limits()
    if max_bytes is not None:
        limits = dataclasses.replace(limits, max_bytes=max_bytes)
    counters = metrics or servermetrics.ServerMetrics()
    inflight = anyio.CapacityLimiter(limits.max_inflight)

    def identify(header: str) -> auth.Identity:
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Refused(401, "missing or wrong bearer token")
        try:
            identity = authn.authenticate(given.strip())
        except tokenreview.ReviewUnavailable as exc:
            raise Refused(503, f"cannot check the token now ({exc}); retry") from exc
        if identity is None:
            raise Refused(401, "missing or wrong bearer token")
        return identity

    def ingest(
        body: bytes, fmt: str, batch_key: str, identity: auth.Identity, cells: bool = False
    ) -> dict[str, Any]:
        """Read, check the scope and the row limit, load (in a worker thread).

        ``cells``: the body holds pre-aggregated cells (``POST /v1/cells``), not raw rows.
        """
        try:
            table = readers.read_bytes(body, fmt)
        except ValueError as exc:
            raise Refused(422, f"batch {batch_key} refused whole, nothing stored: {exc}") from exc
        if table.num_rows > limits.max_rows:
            raise Refused(
                413,
                f"batch of {table.num_rows} rows exceeds the limit of {limits.max_rows} rows; "
                "split it",
            )
        refusal = identity.refusal(_scope_pairs(table))
        if refusal is not None:
            raise Refused(403, f"batch {batch_key} refused whole, nothing stored: {refusal}")
        try:
            loader = aggregates.load_cells if cells else load.load_table
            result = loader(
                engine, table, batch_key=batch_key, source=f"http:{identity.name}", clock=clock
            )
        except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
            raise Refused(503, "the database is unreachable; retry with the same batch id") from exc
        except load.BatchConflict as exc:  # a known id with another body
            raise Refused(409, str(exc)) from exc
        except ValueError as exc:  # the core's whole-batch refusals
            raise Refused(422, f"batch {batch_key} refused whole, nothing stored: {exc}") from exc
        try:
            if not cells:
                counters.count_batch(table, result)
        except Exception:  # the batch is stored: a counting bug must not turn it into a 500
            log.exception("counting batch %s failed", batch_key)
        return result.as_dict()

    async def receive(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
            raise Refused(413, f"body of {declared} bytes exceeds the limit of {limits.max_bytes}")
        body = bytearray()
        try:
            with anyio.fail_after(limits.body_timeout):
                async for chunk in request.stream():
                    body.extend(chunk)
                    if len(body) > limits.max_bytes:
                        raise Refused(413, f"body exceeds the limit of {limits.max_bytes} bytes")
        except TimeoutError as exc:
            raise Refused(
                408,
                f"the body was not received within {limits.body_timeout:g} s "
                f"({len(body)} bytes arrived); send it faster or in smaller batches",
            ) from exc
        return bytes(body)

    async def batches(request: Request, cells: bool = False) -> Response:
        body: bytes | None = None
        try:
            identity = await anyio.to_thread.run_sync(
                identify, request.headers.get("authorization", "")
            )
            batch_key = request.headers.get("idempotency-key") or request.query_params.get(
                "batch_id"
            )
            if not batch_key:
                raise Refused(
                    400, "every batch needs an id: send an Idempotency-Key header or ?batch_id="
                )
            if len(batch_key) > MAX_BATCH_ID or not batch_key.isprintable():
                raise Refused(
                    400, f"the batch id must be at most {MAX_BATCH_ID} printable characters"
                )
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            fmt = CONTENT_TYPES.get(media)
            if fmt is None:
                raise Refused(
                    415,
                    f"content type {media or '(none)'!r} is not one of {', '.join(CONTENT_TYPES)}",
                )
            async with inflight:
                body = await receive(request)
                answer = await anyio.to_thread.run_sync(
                    ingest, body, fmt, batch_key, identity, cells
                )
        except Refused as refused:
            counters.count_answer(refused.status)
            # an unread or half-read body: the connection is not reused
            close = {"connection": "close"} if body is None else None
            return _error(refused.status, refused.message, close)
        counters.count_answer(200)
        return JSONResponse(answer)

    async def cell_batches(request: Request) -> Response:
        return await batches(request, cells=True)

    def read_settings(header: str, key: str) -> dict[str, Any]:
        identity = identify(header)
        refusal = identity.refusal([(key, None)])
        if refusal is not None:
            raise Refused(403, refusal)
        try:
            with engine.connect() as conn:
                found = settings.experiment_settings(conn, key)
        except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
            raise Refused(503, "the database is unreachable; retry") from exc
        if found is None:
            raise Refused(404, f"experiment {key} is not registered")
        return found

    async def experiment_settings(request: Request) -> Response:
        key = f"{request.path_params['namespace']}/{request.path_params['name']}"
        try:
            answer = await anyio.to_thread.run_sync(
                read_settings, request.headers.get("authorization", ""), key
            )
        except Refused as refused:
            return _error(refused.status, refused.message)
        return JSONResponse(answer)

    async def cell_format(request: Request) -> Response:
        try:
            await anyio.to_thread.run_sync(identify, request.headers.get("authorization", ""))
        except Refused as refused:
            return _error(refused.status, refused.message)
        return JSONResponse(settings.cell_format())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    async def readyz(request: Request) -> Response:
        try:
            with anyio.fail_after(5):
                await anyio.to_thread.run_sync(ping, abandon_on_cancel=True)
        except (TimeoutError, sa.exc.SQLAlchemyError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            return _error(503, f"the database does not answer ({reason})")
        return JSONResponse({"ok": True})

    async def metrics_page(request: Request) -> Response:
        body = await anyio.to_thread.run_sync(counters.render)
        return Response(body, media_type=servermetrics.CONTENT_TYPE)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: f"no such path: {request.url.path}", 405: None}.get(exc.status_code)
        if message is None:
            message = f"{exc.detail}: {request.method} {request.url.path}"
        return _error(exc.status_code, message, dict(exc.headers or {}))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("ingest request failed: %r", exc)
        return _error(500, f"internal error ({type(exc).__name__}); retry with the same batch id")

    return Starlette(
        routes=[
            Route("/v1/batches", batches, methods=["POST"]),
            Route("/v1/cells", cell_batches, methods=["POST"]),
            Route("/v1/experiments/{namespace}/{name}", experiment_settings, methods=["GET"]),
            Route("/v1/cells/format", cell_format, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
