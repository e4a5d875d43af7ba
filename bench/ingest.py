"""Ingest and fetch benchmark (issue 2): canaryctl's whole ingest path against a raw COPY.

Rows/s of ``load.load_table`` (validation, binary COPY into the partitioned table, exact
minute/hour rollups and histograms, all in one transaction) for 2 M rows, against a raw
binary COPY through psycopg 3 of the same columns into a bare table without indexes, in
the same run. Then the time to fetch one experiment's per-arm sufficient statistics and
latency histograms for a 24-hour window from rollups, against computing the same from a
scan of 10 M raw observations. Medians of several runs; writes a section of RESULTS.md.

Usage: .venv/bin/python bench/ingest.py [--rows 2000000] [--fetch-rows 10000000] [--runs 3]
Needs CANARYCTL_DATABASE_URL (or the local server at 127.0.0.1:5432); uses a scratch database.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._results import median_time, table, write_section
from controller.clock import SimulatedClock
from controller.ingest import load, pgbinary
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
                "TRUNCATE observations, rollups_minute, rollups_hour, latency_minute, latency_hour, ingest_rejects, ingest_batches"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--fetch-rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
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
            f"Ingest runs: {', '.join(f'{t:.2f} s' for t in ingest_all)}.",
            "",
            table(["path", "rows/s", "ratio to the fastest raw COPY"], ingest_rows),
            "",
            f"Target ≥ 0.50 of the raw COPY rate at production rate: **{'met' if ratio >= 0.5 else 'NOT met'}** ({ratio:.2f}). "
            "Rollup work grows with the number of distinct (minute, arm, latency bucket) cells a batch touches, "
            "so a batch spread thinly over a whole day costs more per row (second canaryctl row).",
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
