"""Peak memory of `canaryctl ingest load` on a large Parquet file (issue 10, bounded memory).

Writes a Parquet file of 5 M rows (in a temporary directory, a slice at a time), loads it
through the CLI into a scratch database and reads the CLI process's peak RSS from GNU time
(`/usr/bin/time -v`). Beside it: the Arrow size of one chunk (`--chunk-rows` rows as the
reader hands them over), the peak RSS of the same CLI loading a one-row file (the
interpreter with the ingest modules imported and a database connection: the fixed cost)
and of a bare `python -c pass`, and the peak of only reading the big and the one-row
file (what pyarrow's Parquet reader holds). Target: peak ≤ 2 × one chunk + the one-row run. Writes a
section of RESULTS.md.

Usage: .venv/bin/python bench/ingest_memory.py [--rows 5000000] [--chunk-rows 200000]
Needs CANARYCTL_DATABASE_URL (or the local server at 127.0.0.1:5432) and /usr/bin/time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._results import table, write_section
from bench.ingest import drop_database, make_rows, scratch_database
from controller.ingest import allocator, load, readers
from controller.storage import db, experiments

BIN = Path(sys.executable).parent
# the CLI's reading alone, nothing validated or loaded: what pyarrow's Parquet reader costs
READ_ONLY = (
    "import sys; from pathlib import Path; from controller.ingest import allocator; "
    "allocator.use_system_allocator(); import pyarrow as pa; "
    "pa.set_memory_pool(pa.system_memory_pool()); "
    "from controller.ingest import readers\n"
    "for chunk in readers.iter_chunks(Path(sys.argv[1])):\n"
    "    for part in chunk: pass"
)
GNU_TIME = Path("/usr/bin/time")
MB = 1 << 20


def peak_rss(cmd: list[str], env: dict[str, str]) -> tuple[int, float, str]:
    """Peak RSS in bytes, wall seconds and stdout of ``cmd`` run under GNU time."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(GNU_TIME), "-v", *cmd], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no peak RSS from {GNU_TIME}: {done.stderr[-500:]}")
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr[-1000:]}")
    return int(found.group(1)) * 1024, wall, done.stdout.strip()


def write_parquet(path: Path, rows: int, slice_rows: int = 500_000) -> None:
    writer = None
    for start in range(0, rows, slice_rows):
        part = make_rows(min(slice_rows, rows - start), seed=start, span_s=3_600)
        if writer is None:
            writer = pq.ParquetWriter(path, part.schema)
        writer.write_table(part, row_group_size=1 << 20)
    assert writer is not None
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--chunk-rows", type=int, default=readers.CHUNK_ROWS)
    args = parser.parse_args()
    if not GNU_TIME.exists():
        raise SystemExit("needs GNU time: apt-get install -y time")
    server = db.configured_url() or "postgresql://postgres@127.0.0.1:5432/postgres"
    url = scratch_database(server)
    env = {**os.environ, db.ENV_DATABASE_URL: url}
    cli = [str(BIN / "canaryctl"), "ingest", "load"]
    try:
        db.upgrade(url)
        engine = db.make_engine(url)
        with engine.begin() as conn:
            experiments.register_experiment(conn, "bench/ranker")
        with tempfile.TemporaryDirectory() as tmp:
            big, one = Path(tmp) / "outcomes.parquet", Path(tmp) / "one.parquet"
            write_parquet(big, args.rows)
            pq.write_table(make_rows(1, seed=99, span_s=1), one)
            file_mb = big.stat().st_size / MB
            chunk = next(readers.iter_file(big, chunk_rows=args.chunk_rows))
            chunk_bytes, chunk_n = chunk.nbytes, chunk.num_rows
            del chunk
            bare, _, _ = peak_rss([sys.executable, "-c", "pass"], env)
            read_one, _, _ = peak_rss([sys.executable, "-c", READ_ONLY, str(one)], env)
            read_big, _, _ = peak_rss([sys.executable, "-c", READ_ONLY, str(big)], env)
            base, _, _ = peak_rss([*cli, str(one)], env)
            peak, wall, said = peak_rss([*cli, str(big), "--chunk-rows", str(args.chunk_rows)], env)
            with engine.connect() as conn:
                stored = conn.execute(sa.text("SELECT count(*) FROM observations")).scalar_one()
            # the same file again (another batch id) with Arrow's own default pool (mimalloc)
            # and glibc's dynamic thresholds: what ``allocator.use_system_allocator`` saves
            arrow_default, _, _ = peak_rss(
                [*cli, str(big), "--chunk-rows", str(args.chunk_rows), "--batch-id", "default"],
                {**env, allocator.POOL_VARIABLE: "mimalloc"},
            )
        engine.dispose()
    finally:
        drop_database(server, url)
    assert stored == args.rows + 1, f"{stored} rows stored, expected {args.rows + 1}"
    target = 2 * chunk_bytes + base
    met = peak <= target
    rows = [
        ["bare interpreter (`python -c pass`)", f"{bare / MB:.0f} MB", "—"],
        [
            "reading the 1-row file only (`readers.iter_chunks`, nothing loaded)",
            f"{read_one / MB:.0f} MB",
            "—",
        ],
        [
            f"reading the {args.rows:,}-row file only (pyarrow's Parquet reader)",
            f"{read_big / MB:.0f} MB",
            f"+{(read_big - read_one) / MB:.0f} MB",
        ],
        [
            "CLI loading a 1-row file (interpreter + ingest modules + connection)",
            f"{base / MB:.0f} MB",
            "—",
        ],
        [f"one chunk as Arrow ({chunk_n:,} rows)", f"{chunk_bytes / MB:.1f} MB", "—"],
        [
            f"**CLI loading {args.rows:,} rows** ({file_mb:.0f} MB of Parquet)",
            f"**{peak / MB:.0f} MB**",
            f"{wall:.1f} s ({args.rows / wall:,.0f} rows/s)",
        ],
        ["target: 2 × one chunk + the 1-row run", f"{target / MB:.0f} MB", "—"],
        [
            f"CLI loading {args.rows:,} rows with Arrow's default pool "
            f"(`{allocator.POOL_VARIABLE}=mimalloc`, glibc's dynamic thresholds)",
            f"{arrow_default / MB:.0f} MB",
            f"+{(arrow_default - peak) / MB:.0f} MB",
        ],
    ]
    body = "\n".join(
        [
            "## Ingest memory (`bench/ingest_memory.py`)",
            "",
            f"`canaryctl ingest load` on a Parquet file of {args.rows:,} rows, "
            f"`--chunk-rows {args.chunk_rows:,}`; peak RSS from `/usr/bin/time -v`; "
            f"Python {platform.python_version()}, {os.cpu_count()} cores. "
            f"All {args.rows:,} rows stored ({said.splitlines()[-1] if said else ''}).",
            "",
            table(["process", "peak RSS", "wall time / reader's share"], rows),
            "",
            f"Target peak ≤ 2 × one chunk's Arrow size + the interpreter with the ingest modules "
            f"= {target / MB:.0f} MB: **{'met' if met else 'NOT met'}** ({peak / MB:.0f} MB, "
            f"{(peak - base) / MB:.0f} MB above the 1-row run, "
            f"{(peak - base) / chunk_bytes:.1f} chunks). "
            "Before chunked loading 5 M rows took 2.36 GB; chunks loaded whole (validated "
            "columns, COPY payload and rollup groups of 200,000 rows at once, Arrow on "
            "mimalloc) 323 MB (issue 10). Now a chunk is never held whole: the reader hands it "
            f"over in record batches of {readers.BATCH_ROWS:,} rows and the loader validates, "
            f"encodes, copies and sums {load.SLICE_ROWS:,} rows at a time (a chunk's rollups are "
            "merged from its slices' sums and upserted once). The CLI gives all of Arrow glibc's "
            "allocator before pyarrow loads (`ARROW_DEFAULT_MEMORY_POOL=system`; "
            "`pa.set_memory_pool` alone left the Parquet reader's own buffers on mimalloc, which "
            "kept its freed pages: the reader seemed to hold 38 MB) and fixes glibc's thresholds "
            "so freed blocks of 128 KiB or more go back at once (controller/ingest/allocator.py); "
            "the last row is the same load with Arrow's defaults. Iterating the big file's "
            "record batches and loading nothing now peaks "
            f"{(read_big - read_one) / MB:.0f} MB above reading the 1-row file (Arrow's pool "
            "holds a few MB of it; about as much with row groups of 100,000 or 1,000,000 rows "
            "as with these of 500,000); loading on top of that reading (validation, COPY, "
            f"rollups) adds {max(0.0, (peak - base) - (read_big - read_one)) / MB:.0f} MB more. "
            "The peak depends on neither the file's length nor the chunk size.",
        ]
    )
    print(body)
    write_section("ingest-memory", body)


if __name__ == "__main__":
    main()
