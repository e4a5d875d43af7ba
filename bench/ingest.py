"""Ingest and fetch benchmark (issue 2): canaryctl's whole ingest path against a raw COPY.

Rows/s of ``load.load_table`` (validation, binary COPY into the partitioned table, exact
minute/hour rollups and histograms, all in one transaction) for 2 M rows, against a raw
binary COPY through psycopg 3 of the same columns into a bare table without indexes, in
the same run: from typed Arrow columns, and from CSV and JSON lines text (parsing
included). Then the HTTP endpoint (`canaryctl ingest serve` in a subprocess, 4 client
threads posting 10k-row JSON lines or CSV bodies) against the core loading the same
10k-row batches. Then the time to fetch one experiment's per-arm sufficient statistics and
latency histograms for a 24-hour window from rollups, against computing the same from a
scan of 10 M raw observations. Medians of several runs; writes a section of RESULTS.md.
Over 400 lines because every ratio it reports must come from one run against one baseline.

Usage: .venv/bin/python bench/ingest.py [--rows 2000000] [--fetch-rows 10000000] [--runs 3]
                                        [--http-batches 60]
Needs CANARYCTL_DATABASE_URL (or the local server at 127.0.0.1:5432); uses a scratch database.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._results import median_time, table, write_section
from controller.clock import SimulatedClock
from controller.ingest import load, pgbinary, readers
from controller.storage import db, experiments, rollups

START = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
BARE = (
    "CREATE TABLE bare (experiment_id int4, arm int2, ts timestamptz, unit_id text, revenue float8, "
    "latency_ms float8, error bool, late bool, batch_id int8)"
)


def make_rows(
    n: int, seed: int, experiment: str = "bench/ranker", span_s: float = 86_400
) -> pa.Table:
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, int(span_s * 1e6), n))
    return pa.table(
        {
            "experiment": pa.array([experiment] * n),
            "arm": pa.array(np.where(rng.random(n) < 0.5, "champion", "challenger")),
            "ts": pa.array(
                np.datetime64(START.replace(tzinfo=None), "us") + offsets.astype("timedelta64[us]"),
                type=pa.timestamp("us", tz="UTC"),
            ),
            "revenue": np.where(rng.random(n) < 0.08, rng.lognormal(-1.0, 1.0, n), 0.0),
            "latency_ms": rng.lognormal(np.log(30.0), 0.35, n),
            "error": rng.random(n) < 0.002,
        }
    )


def as_csv(rows: pa.Table) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(rows, out)
    return out.getvalue()


def as_jsonl(rows: pa.Table) -> bytes:
    """JSON lines as a client writes them: ISO 8601 timestamps in UTC, numbers, booleans."""
    ts = pc.strftime(rows["ts"], "%Y-%m-%dT%H:%M:%SZ").to_pylist()
    columns = zip(
        rows["experiment"].to_pylist(),
        rows["arm"].to_pylist(),
        ts,
        rows["revenue"].to_pylist(),
        rows["latency_ms"].to_pylist(),
        rows["error"].to_pylist(),
        strict=True,
    )
    return "".join(
        f'{{"experiment":"{e}","arm":"{a}","ts":"{t}","revenue":{r!r},'
        f'"latency_ms":{lat!r},"error":{"true" if err else "false"}}}\n'
        for e, a, t, r, lat, err in columns
    ).encode()


def scratch_database(server: str) -> str:
    name = f"canaryctl_bench_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return str(
        sa.engine.make_url(db.sqlalchemy_url(server))
        .set(database=name)
        .render_as_string(hide_password=False)
    ).replace("postgresql+psycopg://", "postgresql://")


def drop_database(server: str, url: str) -> None:
    name = sa.engine.make_url(db.sqlalchemy_url(url)).database
    admin = db.make_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def reset(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE observations, rollups_minute, rollups_hour, latency_minute, latency_hour, "
                "revenue_tops, ingest_rejects, ingest_batches"
            )
        )
        conn.execute(sa.text("DROP TABLE IF EXISTS bare"))
        conn.execute(sa.text(BARE))
    with engine.connect() as conn:
        conn.execute(sa.text("CHECKPOINT"))


def bench_ingest(
    engine: sa.Engine, rows: pa.Table, day: pa.Table, runs: int
) -> tuple[list[list[str]], float, float, list[float]]:
    n = rows.num_rows
    clock = SimulatedClock(START + timedelta(days=1, minutes=10))
    counter = iter(range(10**6))
    ingest_t, ingest_all = median_time(
        lambda: load.load_table(
            engine, rows, batch_key=f"bench-{next(counter)}", source="bench", clock=clock
        ),
        runs,
        setup=lambda: reset(engine),
    )
    day_t, _ = median_time(
        lambda: load.load_table(
            engine, day, batch_key=f"bench-{next(counter)}", source="bench", clock=clock
        ),
        runs,
        setup=lambda: reset(engine),
    )
    # the baseline: the same columns, already typed, straight into a bare table
    cols = {
        "experiment_id": np.full(n, 1, dtype=np.int32),
        "arm": (rows["arm"].to_numpy(zero_copy_only=False) == "challenger").astype(np.int16),
        "ts": rows["ts"].to_numpy().astype("datetime64[us]"),
        "revenue": rows["revenue"].to_numpy(),
        "latency_ms": rows["latency_ms"].to_numpy(),
        "error": rows["error"].to_numpy(zero_copy_only=False),
        "late": np.zeros(n, bool),
        "batch": np.full(n, 1, dtype=np.int64),
    }
    types = ["int4", "int2", "timestamptz", "text", "float8", "float8", "bool", "bool", "int8"]

    def raw_write_row() -> None:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy("COPY bare FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for r in zip(
                    cols["experiment_id"].tolist(),
                    cols["arm"].tolist(),
                    rows["ts"].to_pylist(),
                    [None] * n,
                    cols["revenue"].tolist(),
                    cols["latency_ms"].tolist(),
                    cols["error"].tolist(),
                    cols["late"].tolist(),
                    cols["batch"].tolist(),
                    strict=True,
                ):
                    copy.write_row(r)

    def raw_buffer() -> None:
        payload = pgbinary.encode(
            [
                pgbinary.Column(t, v)
                for t, v in zip(
                    types,
                    [
                        cols["experiment_id"],
                        cols["arm"],
                        cols["ts"],
                        np.full(n, None, dtype=object),
                        cols["revenue"],
                        cols["latency_ms"],
                        cols["error"],
                        cols["late"],
                        cols["batch"],
                    ],
                    strict=True,
                )
            ]
        )
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy("COPY bare FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(payload)

    row_t, _ = median_time(raw_write_row, runs, setup=lambda: reset(engine))
    buf_t, _ = median_time(raw_buffer, runs, setup=lambda: reset(engine))
    best = min(row_t, buf_t)
    text_rows = []
    for fmt, body in (("csv", as_csv(rows)), ("jsonl", as_jsonl(rows))):
        text_t, _ = median_time(
            lambda fmt=fmt, body=body: load.load_table(
                engine,
                readers.read_bytes(body, fmt),
                batch_key=f"bench-{next(counter)}",
                source="bench",
                clock=clock,
            ),
            runs,
            setup=lambda: reset(engine),
        )
        label = "CSV" if fmt == "csv" else "JSON lines"
        text_rows.append(
            [
                f"**canaryctl ingest from {label} text** ({len(body) / 2**20:.0f} MB, parsing "
                "included), production rate",
                f"{n / text_t:,.0f}",
                f"**{best / text_t:.2f}**",
            ]
        )
    return (
        [
            [
                "raw binary COPY, psycopg `write_row` (bare table, no indexes)",
                f"{n / row_t:,.0f}",
                f"{best / row_t:.2f}",
            ],
            [
                "raw binary COPY, pre-encoded buffer (bare table, no indexes)",
                f"{n / buf_t:,.0f}",
                f"{best / buf_t:.2f}",
            ],
            [
                "**canaryctl ingest**, events over 22 min (1,500 req/s, production rate)",
                f"{n / ingest_t:,.0f}",
                f"**{best / ingest_t:.2f}**",
            ],
            *text_rows,
            [
                "canaryctl ingest, the same count spread over 24 h",
                f"{n / day_t:,.0f}",
                f"{best / day_t:.2f}",
            ],
        ],
        best,
        ingest_t,
        ingest_all,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_http(
    engine: sa.Engine, url: str, batches: int, runs: int, batch_rows: int = 10_000, clients: int = 4
) -> tuple[list[list[str]], float]:
    """Rows/s through the HTTP endpoint (JSON lines and CSV) against the core, 10k-row batches."""
    tables = [
        make_rows(batch_rows, seed=1000 + i, span_s=batch_rows / 1_500) for i in range(batches)
    ]
    total = batches * batch_rows
    counter = iter(range(10**6))
    core_t, _ = median_time(
        lambda: [
            load.load_table(engine, t, batch_key=f"core-{next(counter)}", source="bench")
            for t in tables
        ],
        runs,
        setup=lambda: reset(engine),
    )
    port = free_port()
    env = {**os.environ, db.ENV_DATABASE_URL: url, "CANARYCTL_INGEST_TOKEN": "bench"}
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "canaryctl"), "ingest", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    rows_out: list[list[str]] = [
        [
            f"core (`load.load_table`), {batch_rows:,}-row Arrow batches, one at a time",
            f"{total / core_t:,.0f}",
            "1.00",
        ],
    ]
    ratio_jsonl = 0.0
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the ingest server did not start") from None
                time.sleep(0.2)
        for fmt, media, encode in (
            ("jsonl", "application/x-ndjson", as_jsonl),
            ("csv", "text/csv", as_csv),
        ):
            bodies = [encode(t) for t in tables]
            warm = httpx.post(  # the server's first request imports and connects: not timed
                f"{base}/v1/batches",
                content=bodies[0],
                headers={
                    "Authorization": "Bearer bench",
                    "Idempotency-Key": f"warm-{fmt}",
                    "Content-Type": media,
                },
                timeout=120,
            )
            warm.raise_for_status()

            def send_all(bodies: list[bytes] = bodies, media: str = media) -> None:
                run = next(counter)

                def post(item: tuple[int, bytes]) -> None:
                    i, body = item
                    answer = client.post(
                        f"{base}/v1/batches",
                        content=body,
                        headers={
                            "Authorization": "Bearer bench",
                            "Idempotency-Key": f"http-{run}-{i}",
                            "Content-Type": media,
                        },
                    )
                    answer.raise_for_status()
                    assert answer.json()["loaded"] == batch_rows, answer.text

                with httpx.Client(timeout=120) as client, ThreadPoolExecutor(clients) as pool:
                    list(pool.map(post, enumerate(bodies)))

            http_t, _ = median_time(send_all, runs, setup=lambda: reset(engine))
            ratio = core_t / http_t
            if fmt == "jsonl":
                ratio_jsonl = ratio
            label = "**HTTP JSON lines**" if fmt == "jsonl" else "HTTP CSV"
            rows_out.append(
                [
                    f"{label}, {batch_rows:,}-row bodies "
                    f"({sum(map(len, bodies)) / batches / 2**20:.1f} MB), {clients} clients",
                    f"{total / http_t:,.0f}",
                    f"**{ratio:.2f}**" if fmt == "jsonl" else f"{ratio:.2f}",
                ]
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows_out, ratio_jsonl


def bench_fetch(engine: sa.Engine, total: int, runs: int) -> list[list[str]]:
    reset(engine)
    clock = SimulatedClock(START + timedelta(days=1, minutes=10))
    chunk = 2_000_000
    for i in range(0, total, chunk):
        load.load_table(
            engine,
            make_rows(min(chunk, total - i), seed=100 + i, experiment="bench/ranker"),
            batch_key=f"fetch-{i}",
            source="bench",
            clock=clock,
        )
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))
    start, end = START, START + timedelta(days=1)
    with engine.connect() as conn:
        exp = experiments.experiment_id(conn, "bench/ranker")
        window = lambda: rollups.window_totals(conn, exp, start, end)  # noqa: E731
        window()
        fetch_t, _ = median_time(window, runs * 10)
        ragged_start, ragged_end = (
            START + timedelta(minutes=17),
            START + timedelta(hours=23, minutes=43),
        )
        ragged_t, _ = median_time(
            lambda: rollups.window_totals(conn, exp, ragged_start, ragged_end), runs * 10
        )
        scan_sql = sa.text(
            "SELECT arm, count(*), sum(revenue), sum(revenue*revenue), count(*) FILTER (WHERE revenue > 0), "
            "sum(ln(latency_ms)), sum(ln(latency_ms)^2), count(*) FILTER (WHERE error), "
            "(SELECT array_agg(c) FROM (SELECT count(*) c FROM observations o2 WHERE o2.experiment_id = :e "
            " AND o2.ts >= :s AND o2.ts < :t AND o2.arm = o.arm GROUP BY width_bucket(latency_ms, CAST(:edges AS float8[]))) x) "
            "FROM observations o WHERE experiment_id = :e AND ts >= :s AND ts < :t GROUP BY arm"
        )
        from analysis import buckets

        params = {"e": exp, "s": start, "t": end, "edges": list(buckets.LATENCY_EDGES_MS)}
        scan_t, _ = median_time(lambda: conn.execute(scan_sql, params).all(), max(2, runs))
        check = window()
    assert check["champion"].n + check["challenger"].n == total
    return [
        ["rollups (hour + minute), aligned 24 h window", f"{fetch_t * 1000:.1f} ms", "1.00"],
        [
            "rollups, ragged 23 h 26 min window",
            f"{ragged_t * 1000:.1f} ms",
            f"{ragged_t / fetch_t:.2f}",
        ],
        [
            f"scan of {total:,} raw observations",
            f"{scan_t * 1000:.0f} ms",
            f"{scan_t / fetch_t:.0f}",
        ],
    ], fetch_t


def text_verdict(rows: list[list[str]], best: float) -> str:
    """'met'/'NOT met' for the text-input rows (their ratio is the last column, in bold)."""
    ratios = [float(r[2].strip("*")) for r in rows if "text" in r[0]]
    worst = min(ratios)
    return f"**{'met' if worst >= 0.5 else 'NOT met'}** (lowest {worst:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--fetch-rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--http-batches", type=int, default=60)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    server = db.configured_url() or "postgresql://postgres@127.0.0.1:5432/postgres"
    url = scratch_database(server)
    engine = db.make_engine(url)
    try:
        db.upgrade(url)
        with engine.begin() as conn:
            experiments.register_experiment(conn, "bench/ranker")
        rows = make_rows(args.rows, seed=1, span_s=args.rows / 1_500)
        day = make_rows(args.rows, seed=2)
        ingest_rows, best, ingest_t, ingest_all = bench_ingest(engine, rows, day, args.runs)
        load_after = os.getloadavg()[0]
        http_rows, http_ratio = bench_http(engine, url, args.http_batches, args.runs)
        fetch_rows, fetch_t = bench_fetch(engine, args.fetch_rows, args.runs)
    finally:
        engine.dispose()
        drop_database(server, url)
    with db.make_engine(server).connect() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar()
    ratio = best / ingest_t
    body = "\n".join(
        [
            "## Ingest and fetch (`bench/ingest.py`)",
            "",
            f"{args.rows:,} rows (one experiment, no unit ids), median of {args.runs} runs; "
            f"Postgres {version}, Python {platform.python_version()}, {os.cpu_count()} cores. "
            f"Ingest runs: {', '.join(f'{t:.2f} s' for t in ingest_all)}. The machine is shared: "
            f"1-minute load average {load_before:.1f} before the ingest rows and "
            f"{load_after:.1f} after them, on {os.cpu_count()} cores.",
            "",
            table(["path", "rows/s", "ratio to the fastest raw COPY"], ingest_rows),
            "",
            f"Target ≥ 0.50 of the raw COPY rate at production rate: **{'met' if ratio >= 0.5 else 'NOT met'}** ({ratio:.2f}); "
            f"from text: {text_verdict(ingest_rows, best)}. "
            "Rollup work grows with the number of distinct (minute, arm, latency bucket) cells a batch touches, "
            "so a batch spread thinly over a whole day costs more per row (last canaryctl row). "
            "Text is read by Arrow's vectorised CSV and JSON readers; columns that parse whole are handed "
            "to validation typed.",
            "",
            f"The HTTP endpoint against the core, {args.http_batches} batches of 10,000 rows at production "
            f"rate, median of {args.runs} runs (the server in its own process; ratio: HTTP rows/s over the core's):",
            "",
            table(["path", "rows/s", "ratio to the core"], http_rows),
            "",
            f"Target HTTP JSON lines ≥ 0.50 of the core for 10k-row batches: "
            f"**{'met' if http_ratio >= 0.5 else 'NOT met'}** ({http_ratio:.2f}).",
            "",
            f"Fetching one experiment's per-arm sufficient statistics and latency histograms "
            f"({args.fetch_rows:,} observations over 24 h; median of {args.runs * 10} fetches):",
            "",
            table(["source", "time", "ratio"], fetch_rows),
            "",
            f"Target ≤ 20 ms: **{'met' if fetch_t <= 0.020 else 'NOT met'}** ({fetch_t * 1000:.1f} ms).",
        ]
    )
    print(body)
    write_section("ingest", body)


if __name__ == "__main__":
    main()
