"""``canaryctl ingest load FILE`` and ``canaryctl ingest serve``: the file and HTTP ingest paths.

Both load through ``controller.ingest`` (readers, validation, the loader) into the store;
those modules (pyarrow, SQLAlchemy, starlette, uvicorn) are imported inside the commands.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.common import (
    EXIT_USAGE,
    DatabaseUrl,
    database_error,
    emit_json,
    fail,
    require_url,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import date

    import pyarrow as pa
    import sqlalchemy as sa

    from controller.ingest import auth, load

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


#: The options ``ingest load`` and ``ingest cells`` share.
FileFormat = Annotated[
    str | None,
    typer.Option("--format", help="csv, jsonl or parquet (default: from the extension)."),
]
BatchId = Annotated[
    str | None,
    typer.Option(
        help="Batch id; default: the file's SHA-256, so loading a file twice loads it once."
    ),
]
TextOrJson = Annotated[str, typer.Option("-o", "--output", help="text or json")]


@app.command("load")
def load_file(
    path: Annotated[
        Path, typer.Argument(help="CSV, JSON lines or Parquet file.", show_default=False)
    ],
    fmt: FileFormat = None,
    batch_id: BatchId = None,
    chunk_rows: Annotated[
        int,
        typer.Option(
            min=1,
            help="Rows recorded as one batch of the file (chunk n under <batch id>:n); "
            "memory does not depend on it (docs/ingest.md, Large files).",
        ),
    ] = 200_000,
    output: TextOrJson = "text",
    database_url: DatabaseUrl = None,
) -> None:
    """Load one file of request outcomes (columns: experiment, arm, ts, revenue, latency_ms, error[, unit_id]).

    `canaryctl ingest load outcomes.csv`

    The file is read in chunks of --chunk-rows rows and loaded in one transaction: all of
    it or, when a part is unreadable, none of it (docs/ingest.md, "Large files").

    Exit codes: 0 loaded (or already loaded), 1 a row was rejected (the others loaded) or
    other errors, 3 the file was refused whole and nothing was stored (unreadable, a
    missing or duplicated column, or its --batch-id already used for another body).
    """
    from controller.ingest import allocator

    # glibc's allocator for all of Arrow, set before pyarrow loads: it hands a freed buffer
    # back at once, where mimalloc keeps freed pages cached (controller/ingest/allocator.py)
    system_allocator = allocator.use_system_allocator()

    import pyarrow as pa
    import sqlalchemy as sa

    from controller.ingest import load, readers, validate
    from controller.storage import db

    if system_allocator:
        pa.set_memory_pool(pa.system_memory_pool())
    url = require_url(database_url)
    try:
        if not path.exists():
            raise readers.ReadError(f"{path}: no such file")
        chunks = readers.iter_chunks(path, fmt, chunk_rows)
    except readers.ReadError as exc:
        fail(str(exc))
    digest = "sha256:" + _file_sha256(path)
    key = batch_id or digest
    engine = db.make_engine(url)
    try:
        result = load_chunks(
            engine, chunks, key, source=f"cli:{path.name}", chunk_rows=chunk_rows, digest=digest
        )
    except readers.ReadError as exc:
        fail(f"batch refused whole, nothing stored: {exc}", EXIT_REFUSED)
    except (validate.BatchRefused, load.BatchConflict) as exc:
        fail(f"{path}: batch refused whole, nothing stored: {exc}", EXIT_REFUSED)
    except sa.exc.OperationalError as exc:
        fail(database_error(exc))
    finally:
        engine.dispose()
    if output == "json":
        emit_json(result.as_dict())
    elif result.loaded or not result.rejected or result.duplicate:
        typer.echo(summarise(result))
    if result.rejected and not result.duplicate:  # a re-run: its rows were judged the first time
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
    chunks: Iterable[pa.Table | Iterable[pa.Table]],
    batch_key: str,
    *,
    source: str,
    chunk_rows: int,
    digest: str | None = None,
) -> load.IngestResult:
    """Load a file's chunks in one transaction; the totals, with file-wide row numbers.

    A chunk is a table or its parts (``readers.iter_chunks``: then ``digest`` is required).
    Chunk n is recorded under ``chunk_key(batch_key, n)``; with ``digest`` (the whole file's
    hash) chunk n's content hash is ``chunk_key(digest, n)``, so a re-run cut in other chunks
    is the same body (a duplicate) and another file under the same id is a conflict. When
    chunk 1 is already stored the file was loaded before (a transaction holds all of its
    chunks): nothing more is read and the stored counts of chunk 1 are answered with
    ``duplicate``. Rejects are stored and answered with their row in the file; only the
    first 100 are kept for the answer, all of them are stored.

    Until the file's first row is copied, the partitions its rows need are created in short
    transactions of their own (``load.load``'s ``precreate``), so the file's transaction
    does not hold the lock that creating one takes on ``observations``; a day first seen
    later is created inside it (another transaction could not: this one holds a lock on
    ``observations`` by then). When the file is refused, the partitions made beforehand
    that are still empty are dropped.
    """
    from controller.ingest import load, validate
    from controller.storage import partitions

    received = loaded = rejected = late = 0
    rejects: list[validate.Reject] = []
    created: list[str] = []

    def precreate(days: frozenset[date]) -> None:
        with engine.begin() as own:
            created.extend(partitions.ensure_partitions(own, days))

    try:
        with engine.begin() as conn:
            for number, chunk in enumerate(chunks, start=1):
                result = load.load(
                    conn,
                    chunk,
                    batch_key=chunk_key(batch_key, number),
                    source=source,
                    digest=None if digest is None else chunk_key(digest, number),
                    row_offset=(number - 1) * chunk_rows,
                    precreate=None if loaded else precreate,
                )
                del chunk
                if result.duplicate and number == 1:
                    return result  # loaded before: this transaction wrote nothing of it
                received += result.received
                loaded += result.loaded
                rejected += result.rejected
                late += result.late
                rejects += result.rejects[: max(0, 100 - len(rejects))]
    except BaseException:
        _drop_if_empty(engine, created)
        raise
    return load.IngestResult(batch_key, received, loaded, rejected, late, False, tuple(rejects))


def _drop_if_empty(engine: sa.Engine, names: list[str]) -> None:
    """Drop the partitions in ``names`` that hold no row (locked first, so none arrives)."""
    import sqlalchemy as sa

    for name in names:
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
                conn.execute(sa.text(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE'))
                if conn.execute(sa.text(f'SELECT NOT EXISTS (SELECT 1 FROM "{name}")')).scalar():
                    conn.execute(sa.text(f'DROP TABLE "{name}"'))
        except sa.exc.SQLAlchemyError:
            continue  # an empty partition left behind is harmless: the next load uses it


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@app.command("serve")
def serve(
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CANARYCTL_INGEST_TOKEN",
            help="One shared bearer token that may write every experiment "
            "(scoped credentials are recommended: --token-file, --token-review).",
            show_envvar=True,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="YAML file of tokens and service accounts, each scoped to experiments "
            "(and arms); re-read when it changes. See docs/ingest.md, Credentials."
        ),
    ] = None,
    token_review: Annotated[
        bool,
        typer.Option(
            "--token-review",
            help="Accept Kubernetes ServiceAccount tokens, checked by a TokenReview; "
            "their scope is the token file's serviceAccounts.",
        ),
    ] = False,
    kube_api: Annotated[
        str | None,
        typer.Option(help="API server for --token-review (default: in-cluster)."),
    ] = None,
    kube_ca: Annotated[
        Path | None, typer.Option(help="CA bundle of --kube-api (default: system CAs).")
    ] = None,
    kube_token_file: Annotated[
        Path | None,
        typer.Option(help="This server's own bearer token file for --kube-api."),
    ] = None,
    audience: Annotated[
        list[str] | None,
        typer.Option(help="Audience a ServiceAccount token must carry (repeatable)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8710,
    max_bytes: Annotated[int, typer.Option(help="Largest accepted request body.")] = 32 << 20,
    max_rows: Annotated[int, typer.Option(help="Most rows in one batch.")] = 250_000,
    max_inflight: Annotated[
        int, typer.Option(help="Batches received and loaded at once; others wait.")
    ] = 4,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds to receive a whole body (else 408).")
    ] = 30.0,
    header_timeout: Annotated[
        float, typer.Option(help="Seconds to receive a request's headers (else 408).")
    ] = 10.0,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds a kept-alive connection may stay idle.")
    ] = 5.0,
    max_connections: Annotated[
        int, typer.Option(help="Concurrent connections and requests before 503.")
    ] = 1_000,
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate file (PEM); with --tls-key.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key file (PEM).")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Serve the HTTP ingest endpoint (POST /v1/batches) for services in any language.

    Also /healthz (the process is up), /readyz (the database answers) and /metrics.
    """
    try:
        import uvicorn

        from controller.ingest import listen, server
    except ModuleNotFoundError as missing:
        fail(
            f"canaryctl ingest serve needs the serve extra ({missing.name} is not installed): "
            "pip install 'canaryctl[serve]'",
            EXIT_USAGE,
        )
    from controller.ingest import auth
    from controller.storage import db

    url = require_url(database_url)
    try:
        authenticator = _authenticator(
            token, token_file, token_review, kube_api, kube_ca, kube_token_file, audience
        )
        limits = server.Limits(max_bytes, max_rows, body_timeout, max_inflight)
        where = listen.Listen(
            host, port, header_timeout, idle_timeout, 16 << 10, max_connections, tls_cert, tls_key
        )
    except ValueError as exc:  # auth.CredentialsError included
        fail(str(exc), EXIT_USAGE)
    engine = db.make_engine(url)
    api = server.create_app(engine, authenticator=authenticator, limits=limits)
    if isinstance(authenticator, auth.SharedToken):
        typer.echo(
            "warning: --token lets its holder write every experiment; "
            "prefer --token-file or --token-review (docs/ingest.md, Credentials)",
            err=True,
        )
    uvicorn.Server(listen.config(api, where)).run()


def _authenticator(
    token: str | None,
    token_file: Path | None,
    token_review: bool,
    kube_api: str | None,
    kube_ca: Path | None,
    kube_token_file: Path | None,
    audience: list[str] | None,
) -> auth.Authenticator:
    """The authenticator the options ask for; a ValueError names a bad combination."""
    from controller.ingest import auth, tokenreview

    if token is not None and (token_file is not None or token_review):
        raise ValueError("--token is one shared secret: use it alone, or use --token-file")
    if token is not None:
        if not token:
            raise ValueError(
                "--token: an empty token would let anyone write; set CANARYCTL_INGEST_TOKEN"
            )
        return auth.SharedToken(token)
    if token_file is None:
        raise ValueError(
            "give --token-file (scoped credentials), --token-review with --token-file, or --token"
        )
    scoped = auth.TokenFile(token_file)
    if not token_review:
        if kube_api or kube_ca or kube_token_file or audience:
            raise ValueError(
                "--kube-api, --kube-ca, --kube-token-file and --audience need --token-review"
            )
        return scoped
    if kube_api is None:
        if kube_ca or kube_token_file:
            raise ValueError("--kube-ca and --kube-token-file go with --kube-api")
        api = tokenreview.KubeApi.in_cluster()
    else:
        api = tokenreview.KubeApi(kube_api, kube_token_file, kube_ca)
    reviewer = tokenreview.TokenReviewer(api, scoped, audiences=tuple(audience or ()))
    return auth.AnyOf(scoped, reviewer)


@app.command("cells")
def load_cells_file(
    path: Annotated[
        Path, typer.Argument(help="CSV, JSON lines or Parquet file of cells.", show_default=False)
    ],
    fmt: FileFormat = None,
    batch_id: BatchId = None,
    output: TextOrJson = "text",
    database_url: DatabaseUrl = None,
) -> None:
    """Load pre-aggregated cells: per experiment, arm and minute, the sums of the requests.

    `canaryctl ingest cells cells.parquet`

    Columns: experiment, arm, minute, n, revenue_sum, revenue_sum_sq, revenue_nonzero, errors,
    log_latency_sum, log_latency_sum_sq, latency_hist[, revenue_cap, revenue_capped_sum,
    revenue_capped_sum_sq, revenue_top, latency_edges] (docs/scale.md). Counts are in cells.

    Exit codes: 0 loaded (or already loaded), 1 a cell was rejected (the others loaded) or
    other errors, 3 the file was refused whole and nothing was stored.
    """
    import sqlalchemy as sa

    from controller.ingest import aggregates, load, readers, validate
    from controller.storage import db

    url = require_url(database_url)
    try:
        table = readers.read_file(path, fmt)
    except readers.ReadError as exc:
        fail(f"batch refused whole, nothing stored: {exc}", EXIT_REFUSED)
    key = batch_id or "sha256:" + _file_sha256(path)
    engine = db.make_engine(url)
    try:
        result = aggregates.load_cells(engine, table, batch_key=key, source=f"cli:{path.name}")
    except (validate.BatchRefused, load.BatchConflict) as exc:
        fail(f"{path}: batch refused whole, nothing stored: {exc}", EXIT_REFUSED)
    except sa.exc.OperationalError as exc:
        fail(f"cannot reach the database: {exc.orig}")
    finally:
        engine.dispose()
    if output == "json":
        emit_json(result.as_dict())
    elif result.duplicate:
        typer.echo(summarise(result))
    elif result.loaded or not result.rejected:
        typer.echo(
            f"batch {result.batch_key}: received {result.received} cells, loaded "
            f"{result.loaded}, rejected {result.rejected}, late {result.late}"
        )
    if result.rejected and not result.duplicate:
        first = result.rejects[0]
        fail(
            f"{result.rejected} of {result.received} cells rejected (first: cell {first.row}: "
            f"{first.reason}); they are kept with their reasons in ingest_rejects"
        )
