"""Pre-aggregated cells against raw rows (issue 14): what each path costs per request.

The same requests reach canaryctl two ways in one run: raw rows through the ingest core
(``load.load_table``: validation, binary COPY, rollups) and pre-aggregated cells through
``aggregates.load_cells`` (validation, rollups, the cells' largest revenue values). Two
shapes: the platform's peak rate for a few experiments (1,000,000 requests over 10 minutes,
10 experiments: about 100,000 requests a minute), and many small experiments (1,000
experiments, 5 minutes, 100 requests per cell), where the per-cell cost is what counts.
The senders' own work (``cells.from_rows``, numpy; the Spark job does it on its cluster) is
timed apart. Medians of several runs, the tables emptied before each; writes the section
"cells" of RESULTS.md.

Usage: .venv/bin/python bench/cells.py [--runs 3]
Needs CANARYCTL_DATABASE_URL (or the local server at 127.0.0.1:5432); uses a scratch database.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._results import median_time, table, write_section
from bench.ingest import START, drop_database, scratch_database
from bench.ingest import make_rows as one_experiment
from controller.clock import SimulatedClock
from controller.ingest import aggregates, cells, load
from controller.storage import db, experiments

CLOCK = SimulatedClock(START + timedelta(hours=2))


def make_rows(n: int, experiments_: int, minutes: int, seed: int) -> pa.Table:
    """``bench/ingest.py``'s rows over ``minutes``, spread over ``experiments_`` experiments."""
    rows = one_experiment(n, seed, span_s=minutes * 60)
    names = np.array([f"bench/e{i:05d}" for i in range(experiments_)], dtype=object)
    picked = names[np.random.default_rng(seed + 1).integers(0, experiments_, n)]
    return rows.set_column(0, "experiment", pa.array(picked.tolist()))


def reset(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE observations, rollups_minute, rollups_hour, latency_minute, "
                "latency_hour, ingest_rejects, revenue_tops, ingest_batches"
            )
        )
    with engine.connect() as conn:
        conn.execute(sa.text("CHECKPOINT"))


def measure(
    engine: sa.Engine, name: str, rows: pa.Table, runs: int
) -> tuple[list[str], list[str], float]:
    """One shape: raw rows/s, cells' requests/s, and their ratio."""
    built = cells.from_rows(rows, top=64)
    build_t, _ = median_time(lambda: cells.from_rows(rows, top=64), runs)
    raw_t, _ = median_time(
        lambda: load.load_table(engine, rows, batch_key="raw", source="bench", clock=CLOCK),
        runs,
        setup=lambda: reset(engine),
    )
    cell_t, _ = median_time(
        lambda: aggregates.load_cells(engine, built, batch_key="c", source="bench", clock=CLOCK),
        runs,
        setup=lambda: reset(engine),
    )
    n = rows.num_rows
    ratio = raw_t / cell_t
    return (
        [name + ", raw rows", f"{n:,}", f"{raw_t:.2f} s", f"{n / raw_t:,.0f}", "1.0"],
        [
            name + ", cells",
            f"{n:,} in {built.num_rows:,} cells",
            f"{cell_t:.3f} s (+ {build_t:.2f} s to build them)",
            f"{n / cell_t:,.0f} ({built.num_rows / cell_t:,.0f} cells/s)",
            f"{ratio:.1f}",
        ],
        ratio,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = db.configured_url() or "postgresql://postgres@127.0.0.1:5432/postgres"
    url = scratch_database(server)
    engine = db.make_engine(url)
    try:
        db.upgrade(url)
        with engine.begin() as conn:
            for i in range(1_000):
                experiments.register_experiment(conn, f"bench/e{i:05d}")
        peak = make_rows(1_000_000, 10, 10, seed=1)
        many = make_rows(1_000_000, 1_000, 5, seed=2)
        rows: list[list[str]] = []
        ratios = []
        for name, data in (("10 experiments, 10 min", peak), ("1,000 experiments, 5 min", many)):
            raw_row, cell_row, ratio = measure(engine, name, data, args.runs)
            rows += [raw_row, cell_row]
            ratios.append(ratio)
    finally:
        engine.dispose()
        drop_database(server, url)
    with db.make_engine(server).connect() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar()
    body = "\n".join(
        [
            "## Pre-aggregated cells (`bench/cells.py`)",
            "",
            f"The same requests as raw rows (`load.load_table`) and as per-minute cells "
            f"(`aggregates.load_cells`, 64 top revenue values a cell), median of {args.runs} runs, "
            f"tables emptied before each; Postgres {version}, Python "
            f"{platform.python_version()}, {os.cpu_count()} cores. Requests/s of the cells' "
            "path counts the requests the cells stand for; building the cells "
            "(`cells.from_rows`, numpy) is the sender's work, shown apart.",
            "",
            table(["shape", "requests", "load time", "requests/s", "ratio to raw"], rows),
            "",
            f"Cells cost canaryctl {ratios[0]:.0f}× less than raw rows at the platform's peak "
            f"shape and {ratios[1]:.1f}× with 1,000 small experiments, where each cell stands "
            "for only 100 requests: there the rollup rows (a minute's latency histogram per "
            "arm and experiment) dominate both paths. docs/scale.md says when to switch.",
        ]
    )
    write_section("cells", body)
    print(body)


if __name__ == "__main__":
    main()
