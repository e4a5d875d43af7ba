"""The reference Spark job (scripts/spark/canaryctl_cells.py) in Spark's local mode, end to end.

A million generated requests go both ways: raw rows through the ingest core into one
experiment, Parquet files through the Spark job and the HTTP server's ``POST /v1/cells``
into another. The job is killed right after its second epoch was delivered (before Spark
commits it) and restarted from its checkpoint: the replayed epoch is answered as a
duplicate, and the two experiments hold the same rollups and reach the same verdicts.
It needs the ``spark`` extra and Java (``scripts/setup`` installs both).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from controller.clock import SimulatedClock
from controller.ingest import load, server
from controller.storage import experiments
from tests.serving import running
from tests.storage.helpers import T0, evaluate_window, histogram_rows, outcomes, rollup_rows

JOB = Path(__file__).resolve().parents[2] / "scripts" / "spark" / "canaryctl_cells.py"
RAW, SPARK = "default/raw", "default/spark"
MINUTES = 30
NOW = T0 + timedelta(minutes=MINUTES + 30)
END = T0 + timedelta(minutes=MINUTES)
TOKEN = "spark-token"


def _write_logs(directory: Path, table: pa.Table, files: int) -> None:
    import pyarrow.parquet as pq

    directory.mkdir()
    rows = table.set_column(0, "experiment", pa.array([SPARK] * table.num_rows))
    size = math.ceil(rows.num_rows / files)
    for i in range(files):
        pq.write_table(rows.slice(i * size, size), directory / f"part-{i:02d}.parquet")
    # one request 10 minutes after the others moves the watermark past every minute
    last = rows.slice(rows.num_rows - 1, 1)
    ts = pa.array([T0 + timedelta(minutes=MINUTES + 10)], type=rows.schema.field("ts").type)
    pq.write_table(last.set_column(2, "ts", ts), directory / f"part-{files:02d}.parquet")


def _run(args: list[str], crash_after: int | None = None) -> list[dict[str, Any]]:
    env = {**os.environ, "CANARYCTL_INGEST_TOKEN": TOKEN, "PYSPARK_PYTHON": sys.executable}
    env.pop("CANARYCTL_SPARK_CRASH_AFTER_EPOCH", None)
    if crash_after is not None:
        env["CANARYCTL_SPARK_CRASH_AFTER_EPOCH"] = str(crash_after)
    done = subprocess.run(
        [sys.executable, str(JOB), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    expected = 17 if crash_after is not None else 0
    assert done.returncode == expected, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_spark_job_matches_the_raw_path_and_a_restart_never_double_counts(
    truncating_engine: sa.Engine, tmp_path: Path
) -> None:
    engine = truncating_engine
    table = outcomes(1_000_000, seed=11, experiment=RAW, seconds=MINUTES * 60)
    with engine.begin() as conn:
        ids = {k: experiments.register_experiment(conn, k) for k in (RAW, SPARK)}
        cap = float(np.quantile(table["revenue"].to_numpy(), 0.995))
        for key in (RAW, SPARK):
            experiments.freeze_settings(
                conn, key, {"cap": cap}, now=T0, revenue_cap=cap, allowed_lateness_seconds=120
            )
    clock = SimulatedClock(NOW)
    raw = load.load_table(engine, table, batch_key="raw", source="test", clock=clock)
    assert raw.loaded == table.num_rows
    logs = tmp_path / "logs"
    _write_logs(logs, table, files=4)
    app = server.create_app(engine, token=TOKEN, clock=clock)
    with running(app) as url:
        args = [
            "--source", str(logs), "--checkpoint", str(tmp_path / "checkpoint"), "--url", url,
            "--available-now", "--max-files-per-trigger", "3", "--watermark-seconds", "60",
            "--shuffle-partitions", "2", "--master", "local[2]", "--conf", "spark.ui.enabled=false",
        ]  # fmt: skip
        first = _run(args, crash_after=1)
        second = _run(args)
    delivered = [e for e in first + second if e["cells"]]
    replayed = [e for e in second if e["epoch"] == 1]
    assert [e["epoch"] for e in first][-1] == 1
    assert replayed and replayed[0]["batches"] == first[-1]["batches"]
    assert all(replayed[0]["duplicate"])
    assert all(e["rejected"] == 0 for e in delivered)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT batch_key FROM ingest_batches WHERE batch_key LIKE 'spark:%'")
        ).scalars()
        assert len(set(stored)) == len({b for e in delivered for b in e["batches"]})

    left, right = (rollup_rows(engine, ids[k], end=END) for k in (RAW, SPARK))
    assert len(left) == len(right) == 2 * MINUTES
    for x, y in zip(left, right, strict=True):
        for field in ("arm", "period", "n", "revenue_nonzero", "errors", "late_n"):
            assert x[field] == y[field], (field, x["period"])
        for field in ("revenue_sum", "revenue_sum_sq", "revenue_capped_sum",
                      "revenue_capped_sum_sq", "log_latency_sum", "log_latency_sum_sq"):  # fmt: skip
            assert math.isclose(x[field], y[field], rel_tol=1e-11), (field, x[field], y[field])
    assert histogram_rows(engine, ids[RAW], END) == histogram_rows(engine, ids[SPARK], END)
    a, b = (evaluate_window(engine, ids[k], T0, END) for k in (RAW, SPARK))
    assert a.verdict == b.verdict
    for x, y in zip(a.guardrails, b.guardrails, strict=True):
        assert x.verdict == y.verdict
        assert math.isclose(x.estimate, y.estimate, rel_tol=1e-9, abs_tol=1e-15)
