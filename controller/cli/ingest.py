"""``canaryctl ingest load FILE`` and ``canaryctl ingest serve``: the file and HTTP ingest paths.

Both load through ``controller.ingest`` (readers, validation, the loader) into the store;
those modules (pyarrow, SQLAlchemy, starlette, uvicorn) are imported inside the commands.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller.cli.common import EXIT_USAGE, DatabaseUrl, emit_json, fail, require_url

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pyarrow as pa
    import sqlalchemy as sa

    from controller.ingest import load

app = typer.Typer(
    help="Load request outcomes: `canaryctl ingest load FILE` or `canaryctl ingest serve`.",
    no_args_is_help=True,
)


def summarise(result: load.IngestResult) -> str:
    """One line describing what happened to a batch."""
    if result.duplicate:
        return (
            f"batch {result.batch_key} was already ingested "
            f"({result.loaded} loaded, {result.rejected} rejected); nothing loaded again "
            "(pass --batch-id to load it as a new batch)"
        )
    return (
        f"batch {result.batch_key}: received {result.received}, loaded {result.loaded}, "
        f"rejected {result.rejected}, late {result.late}"
    )


@app.command("load")
def load_file(
    path: Annotated[
        Path, typer.Argument(help="CSV, JSON lines or Parquet file.", show_default=False)
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl or parquet (default: from the extension)."),
    ] = None,
    batch_id: Annotated[
        str | None,
        typer.Option(
            help="Batch id; default: the file's SHA-256, so loading a file twice loads it once."
        ),
    ] = None,
    chunk_rows: Annotated[
        int,
        typer.Option(
            min=1, help="Rows read, validated and copied at a time (bounds the memory used)."
        ),
    ] = 200_000,
    output: Annotated[str, typer.Option("-o", "--output", help="text or json")] = "text",
    database_url: DatabaseUrl = None,
) -> None:
    """Load one file of request outcomes (columns: experiment, arm, ts, revenue, latency_ms, error[, unit_id]).

    `canaryctl ingest load outcomes.csv`

    The file is read in chunks of --chunk-rows rows and loaded in one transaction: all of
    it or, when a part is unreadable, none of it (docs/ingest.md, "Large files").

    Exit codes: 0 loaded (or already loaded), 1 a row was rejected or other errors.
    """
    import sqlalchemy as sa

    from controller.ingest import readers, validate
    from controller.storage import db

    url = require_url(database_url)
    try:
        chunks = readers.iter_file(path, fmt, chunk_rows)
    except readers.ReadError as exc:
        fail(str(exc))
    key = batch_id or "sha256:" + _file_sha256(path)
    engine = db.make_engine(url)
    try:
        result = load_chunks(engine, chunks, key, source=f"cli:{path.name}", chunk_rows=chunk_rows)
    except readers.ReadError as exc:
        fail(f"{exc}; nothing was loaded")
    except validate.BatchError as exc:
        fail(f"{path}: {exc}; nothing was loaded")
    except sa.exc.OperationalError as exc:
        fail(f"cannot reach the database: {exc.orig}")
    finally:
        engine.dispose()
    if output == "json":
        emit_json(result.as_dict())
    elif result.loaded or not result.rejected:
        typer.echo(summarise(result))
    if result.rejected:
        first = result.rejects[0]
        if result.rejected == 1:
            fail(f"row {first.row}: {first.reason}")
        fail(
            f"{result.rejected} of {result.received} rows rejected (first: row {first.row}: "
            f"{first.reason}); they are kept with their reasons in ingest_rejects"
        )


def chunk_key(batch_key: str, number: int) -> str:
    """The batch key of chunk ``number`` (1-based) of a file loaded as ``batch_key``.

    Chunk 1 carries the file's own key, so a file of one chunk is recorded exactly as a
    single batch is, and a re-run is recognised from chunk 1 alone.
    """
    return batch_key if number == 1 else f"{batch_key}:{number}"


def load_chunks(
    engine: sa.Engine,
    chunks: Iterable[pa.Table],
    batch_key: str,
    *,
    source: str,
    chunk_rows: int,
) -> load.IngestResult:
    """Load a file's chunks in one transaction; the totals, with file-wide row numbers.

    Chunk n is recorded under ``chunk_key(batch_key, n)``. When chunk 1 is already
    stored the file was loaded before (a transaction holds all of its chunks): nothing
    more is read and the stored counts of chunk 1 are answered with ``duplicate``. Only
    the first 100 rejects are kept for the answer; all of them are stored.
    """
    from controller.ingest import load, validate

    received = loaded = rejected = late = 0
    rejects: list[validate.Reject] = []
    with engine.begin() as conn:
        for number, chunk in enumerate(chunks, start=1):
            result = load.load(conn, chunk, batch_key=chunk_key(batch_key, number), source=source)
            del chunk
            if result.duplicate and number == 1:
                return result  # loaded before: this transaction wrote nothing of it
            offset = (number - 1) * chunk_rows
            received += result.received
            loaded += result.loaded
            rejected += result.rejected
            late += result.late
            rejects += [
                validate.Reject(r.row + offset, r.reason)
                for r in result.rejects[: max(0, 100 - len(rejects))]
            ]
    return load.IngestResult(batch_key, received, loaded, rejected, late, False, tuple(rejects))


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@app.command("serve")
def serve(
    token: Annotated[
        str,
        typer.Option(
            envvar="CANARYCTL_INGEST_TOKEN",
            help="Bearer token clients must send.",
            show_envvar=True,
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8710,
    max_bytes: Annotated[int, typer.Option(help="Largest accepted request body.")] = 32 << 20,
    database_url: DatabaseUrl = None,
) -> None:
    """Serve the HTTP ingest endpoint (POST /v1/batches) for services in any language."""
    try:
        import uvicorn

        from controller.ingest import server
    except ModuleNotFoundError as missing:
        fail(
            f"canaryctl ingest serve needs the serve extra ({missing.name} is not installed): "
            "pip install 'canaryctl[serve]'",
            EXIT_USAGE,
        )
    from controller.storage import db

    url = require_url(database_url)
    if not token:
        fail("--token: an empty token would let anyone write; set CANARYCTL_INGEST_TOKEN")
    engine = db.make_engine(url)
    api = server.create_app(engine, token=token, max_bytes=max_bytes)
    config: dict[str, Any] = {"host": host, "port": port, "log_level": "info"}
    uvicorn.run(api, **config)
