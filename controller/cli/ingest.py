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
    from controller.ingest import load

EXIT_REFUSED = 3  # the batch was refused whole: nothing stored

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
    output: Annotated[str, typer.Option("-o", "--output", help="text or json")] = "text",
    database_url: DatabaseUrl = None,
) -> None:
    """Load one file of request outcomes (columns: experiment, arm, ts, revenue, latency_ms, error[, unit_id]).

    `canaryctl ingest load outcomes.csv`

    Exit codes: 0 loaded (or already loaded), 1 a row was rejected (the others loaded) or
    other errors, 3 the batch was refused whole and nothing was stored (unreadable, a
    missing or duplicated column, or its --batch-id already used for another body).
    """
    import sqlalchemy as sa

    from controller.ingest import load, readers, validate
    from controller.storage import db

    url = require_url(database_url)
    try:
        if not path.exists():
            raise readers.ReadError(f"{path}: no such file")
        fmt = fmt or readers.detect_format(path)
    except readers.ReadError as exc:
        fail(str(exc))
    try:
        table = readers.read_file(path, fmt)
    except readers.ReadError as exc:
        fail(f"batch refused whole, nothing stored: {exc}", EXIT_REFUSED)
    key = batch_id or "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    engine = db.make_engine(url)
    try:
        result = load.load_table(engine, table, batch_key=key, source=f"cli:{path.name}")
    except (validate.BatchRefused, load.BatchConflict) as exc:
        fail(f"{path}: batch refused whole, nothing stored: {exc}", EXIT_REFUSED)
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
