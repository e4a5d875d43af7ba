"""Reference Spark Structured Streaming job: request logs → per-minute cells → canaryctl.

Reads request outcomes (``experiment, arm, ts, revenue, latency_ms, error``) from a
directory of Parquet files (``--source``) or a Kafka topic of JSON records (``--kafka``),
aggregates them per experiment, arm and event-time minute behind a watermark, and sends
each finished minute to canaryctl's ingest server as pre-aggregated cells
(``POST /v1/cells``, docs/scale.md). It needs only pyspark and the server's URL and token:
the latency edges, the log floor and each experiment's frozen revenue cap and cap
quantile are read from the server (``GET /v1/cells/format``, ``GET /v1/experiments/…``).

Exactly once. Each micro-batch (epoch) is sent under batch ids derived from the query's
id (kept in the checkpoint, the same after a restart) and the epoch id, and split into
parts in a fixed order: an epoch replayed after a crash (Spark re-runs an epoch whose
commit it did not record) sends the same cells under the same ids, which the server
answers as duplicates. The cells of an epoch do not depend on how Spark added them up
beyond rounding, which the server's digest ignores (``controller.ingest.cells.digest``).

How a cell is computed. Spark keeps, per (experiment, arm, minute, latency bucket), the
request count, revenue and log-latency sums and sums of squares, the errors and the list of
non-zero revenues; the watermark closes a minute once event time passes its end by
``--watermark-seconds``, and the append output hands every bucket of that minute to one
epoch. The driver then sums the buckets of each cell, caps revenue with the cap the server
holds now (exactly: every value above it is in the list), keeps the largest values the cap
quantile needs, and sends. Rows canaryctl would reject (unknown arm, negative or non-finite
values, a missing field) are dropped here and counted in the job's log line.

This script is not part of the canaryctl package and does not import it.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from typing import Any

log = logging.getLogger("canaryctl_cells")

ARMS = ("champion", "challenger")
CELLS_PER_REQUEST = 2_000
#: Test hook: exit the process right after this epoch's cells were acknowledged (before
#: Spark records the epoch as done), as a crash would.
CRASH_AFTER_EPOCH_ENV = "CANARYCTL_SPARK_CRASH_AFTER_EPOCH"


class Server:
    """The canaryctl ingest server: settings and cells, retried on 408, 429, 5xx and errors."""

    def __init__(self, url: str, token: str, retry_budget: float = 120.0) -> None:
        self.url, self.token, self.retry_budget = url.rstrip("/"), token, retry_budget

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
        deadline = time.monotonic() + self.retry_budget
        delay = 0.2
        while True:
            request = urllib.request.Request(
                self.url + path,
                data=body,
                method=method,
                headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    return answer.status, json.loads(answer.read() or b"null")
            except urllib.error.HTTPError as exc:
                status, payload = exc.code, json.loads(exc.read() or b"null")
                if status not in (408, 429) and status < 500:
                    return status, payload
                reason = f"HTTP {status}: {payload}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = str(exc)
            if time.monotonic() + delay > deadline:
                raise RuntimeError(f"{method} {path} failed for {self.retry_budget:g} s: {reason}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def cell_format(self) -> dict[str, Any]:
        status, payload = self._request("GET", "/v1/cells/format")
        if status != 200:
            raise RuntimeError(f"GET /v1/cells/format: HTTP {status}: {payload}")
        return payload  # type: ignore[no-any-return]

    def experiment(self, key: str) -> dict[str, Any] | None:
        namespace, _, name = key.partition("/") if "/" in key else ("default", "", key)
        status, payload = self._request("GET", f"/v1/experiments/{namespace}/{name}")
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"GET settings of {key}: HTTP {status}: {payload}")
        return payload  # type: ignore[no-any-return]

    def send(self, batch_id: str, body: bytes) -> dict[str, Any]:
        status, payload = self._request(
            "POST",
            "/v1/cells",
            body,
            {"Idempotency-Key": batch_id, "Content-Type": "application/vnd.apache.parquet"},
        )
        if status == 409:
            # Only a replayed epoch reuses an id, and its requests are stored under it
            # already: cells that differ now (a cap frozen in between) must not be added again.
            log.warning("batch %s was stored before with other cells; kept as stored", batch_id)
            return {"batch_id": batch_id, "duplicate": True, "rejected": 0, "rejects": []}
        if status != 200:
            raise RuntimeError(f"batch {batch_id}: HTTP {status}: {payload.get('error', payload)}")
        return payload  # type: ignore[no-any-return]


def top_count(n: int, quantile: float | None, top_fraction: float, top_max: int) -> int:
    """How many of a cell's largest values to send: twice its share of the values above the
    cap quantile, and some, so that the quantile over all cells is exact unless one minute
    holds more than twice its share of them (canaryctl says so when it happens)."""
    share = 1.0 - quantile if quantile is not None else top_fraction
    return min(n, top_max, 2 * math.ceil(share * n) + 16)


def build_cells(
    rows: list[dict[str, Any]],
    settings: dict[str, dict[str, Any] | None],
    n_buckets: int,
    top_fraction: float,
    top_max: int,
) -> list[dict[str, Any]]:
    """Cells from the (experiment, arm, minute, bucket) rows of one epoch, in a fixed order."""
    grouped: dict[tuple[str, str, Any], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[(row["experiment"], row["arm"], row["minute"])].append(row)
    out = []
    for (experiment, arm, minute), parts in sorted(grouped.items(), key=lambda item: item[0]):
        parts.sort(key=lambda r: r["bucket"])
        hist = [0] * n_buckets
        for r in parts:
            hist[int(r["bucket"])] += int(r["n"])
        n = sum(hist)
        revenues = sorted((v for r in parts for v in r["revenues"]), reverse=True)

        def total(name: str, parts: list[dict[str, Any]] = parts) -> float:
            return math.fsum(r[name] for r in parts)

        cell: dict[str, Any] = {
            "experiment": experiment,
            "arm": arm,
            "minute": minute,
            "n": n,
            "revenue_sum": total("revenue_sum"),
            "revenue_sum_sq": total("revenue_sum_sq"),
            "revenue_nonzero": sum(int(r["revenue_nonzero"]) for r in parts),
            "errors": sum(int(r["errors"]) for r in parts),
            "log_latency_sum": total("log_latency_sum"),
            "log_latency_sum_sq": total("log_latency_sum_sq"),
            "latency_hist": hist,
            "revenue_cap": None,
            "revenue_capped_sum": None,
            "revenue_capped_sum_sq": None,
        }
        found = settings.get(experiment)
        cap = found.get("revenueCap") if found else None
        if cap is not None:
            over = [v for v in revenues if v > cap]
            cell["revenue_cap"] = float(cap)
            cell["revenue_capped_sum"] = cell["revenue_sum"] - math.fsum(v - cap for v in over)
            cell["revenue_capped_sum_sq"] = max(
                cell["revenue_sum_sq"] - math.fsum(v * v - cap * cap for v in over), 0.0
            )
        k = top_count(n, found.get("capQuantile") if found else None, top_fraction, top_max)
        top = revenues[:k]
        top += [0.0] * (k - len(top))  # the rest are zeros: the list then reaches every cap
        cell["revenue_top"] = top
        out.append(cell)
    return out


def cells_parquet(cells: list[dict[str, Any]], edges_id: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(
        [{**c, "latency_edges": edges_id} for c in cells],
        schema=pa.schema(
            [
                ("experiment", pa.string()),
                ("arm", pa.string()),
                ("minute", pa.timestamp("us", tz="UTC")),
                ("n", pa.int64()),
                ("revenue_sum", pa.float64()),
                ("revenue_sum_sq", pa.float64()),
                ("revenue_nonzero", pa.int64()),
                ("errors", pa.int64()),
                ("log_latency_sum", pa.float64()),
                ("log_latency_sum_sq", pa.float64()),
                ("latency_hist", pa.list_(pa.int64())),
                ("revenue_cap", pa.float64()),
                ("revenue_capped_sum", pa.float64()),
                ("revenue_capped_sum_sq", pa.float64()),
                ("revenue_top", pa.list_(pa.float64())),
                ("latency_edges", pa.string()),
            ]
        ),
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


class Sink:
    """The ``foreachBatch`` function: one epoch's finished minutes → cells → the server."""

    def __init__(self, server: Server, fmt: dict[str, Any], args: argparse.Namespace) -> None:
        self.server, self.fmt, self.args = server, fmt, args
        self.query_id: str | None = None
        self.started = threading.Event()

    def __call__(self, frame: Any, epoch_id: int) -> None:
        if not self.started.wait(timeout=300):
            raise RuntimeError("the query's id never became known")
        rows = [r.asDict() for r in frame.collect()]
        experiments = sorted({r["experiment"] for r in rows})
        settings = {e: self.server.experiment(e) for e in experiments}
        cells = build_cells(
            rows,
            settings,
            len(self.fmt["latencyEdgesMs"]) + 1,
            self.args.top_fraction,
            int(self.fmt["topMax"]),
        )
        answers = []
        for part, start in enumerate(range(0, len(cells), CELLS_PER_REQUEST)):
            batch_id = f"spark:{self.query_id}:{epoch_id}:{part}"
            chunk = cells[start : start + CELLS_PER_REQUEST]
            answer = self.server.send(batch_id, cells_parquet(chunk, self.fmt["latencyEdgesId"]))
            answers.append(answer)
            for reject in answer.get("rejects", [])[:5]:
                log.warning("batch %s: cell %s rejected: %s", batch_id, reject["row"],
                            reject["reason"])  # fmt: skip
        print(
            json.dumps(
                {
                    "epoch": epoch_id,
                    "cells": len(cells),
                    "batches": [a["batch_id"] for a in answers],
                    "duplicate": [a["duplicate"] for a in answers],
                    "rejected": sum(a["rejected"] for a in answers),
                }
            ),
            flush=True,
        )
        if os.environ.get(CRASH_AFTER_EPOCH_ENV) == str(epoch_id) and cells:
            os._exit(17)  # a crash after delivery, before Spark commits the epoch


def read_source(spark: Any, args: argparse.Namespace) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("experiment", T.StringType()),
            T.StructField("arm", T.StringType()),
            T.StructField("ts", T.TimestampType()),
            T.StructField("revenue", T.DoubleType()),
            T.StructField("latency_ms", T.DoubleType()),
            T.StructField("error", T.BooleanType()),
        ]
    )
    if args.kafka:
        bootstrap, _, topic = args.kafka.partition("/")
        raw = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", bootstrap)
            .option("subscribe", topic)
            .load()
        )
        return raw.select(F.from_json(F.col("value").cast("string"), schema).alias("r")).select(
            "r.*"
        )
    reader = spark.readStream.schema(schema)
    if args.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", args.max_files_per_trigger)
    return reader.parquet(args.source)


def build_query(spark: Any, args: argparse.Namespace, fmt: dict[str, Any], sink: Sink) -> Any:
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    rows = read_source(spark, args)
    valid = (
        F.col("experiment").isNotNull()
        & (F.length(F.trim(F.col("experiment"))) > 0)
        & F.col("arm").isin(*ARMS)
        & F.col("ts").isNotNull()
        & F.col("error").isNotNull()
        & F.col("revenue").between(0.0, float(fmt["revenueMax"]))
        & F.col("latency_ms").between(0.0, float(fmt["latencyMaxMs"]))
        & ~F.isnan("revenue")
        & ~F.isnan("latency_ms")
    )
    rows = rows.where(valid).withColumn("experiment", F.trim("experiment"))
    rows = Bucketizer(
        splits=[-math.inf, *fmt["latencyEdgesMs"], math.inf],
        inputCol="latency_ms",
        outputCol="bucket",
    ).transform(rows)
    log_latency = F.ln(F.greatest(F.col("latency_ms"), F.lit(float(fmt["logLatencyFloorMs"]))))
    agg = (
        rows.withWatermark("ts", f"{args.watermark_seconds} seconds")
        .groupBy(
            "experiment",
            "arm",
            F.window("ts", "1 minute"),
            F.col("bucket").cast("int").alias("bucket"),
        )
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("revenue").alias("revenue_sum"),
            F.sum(F.col("revenue") * F.col("revenue")).alias("revenue_sum_sq"),
            F.sum((F.col("revenue") > 0).cast("long")).alias("revenue_nonzero"),
            F.sum(F.col("error").cast("long")).alias("errors"),
            F.sum(log_latency).alias("log_latency_sum"),
            F.sum(log_latency * log_latency).alias("log_latency_sum_sq"),
            F.collect_list(F.when(F.col("revenue") > 0, F.col("revenue"))).alias("revenues"),
        )
        .withColumn("minute", F.col("window.start"))
        .drop("window")
    )
    writer = (
        agg.writeStream.outputMode("append")
        .foreachBatch(sink)
        .option("checkpointLocation", args.checkpoint)
        .queryName(args.query_name)
    )
    if args.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{args.trigger_seconds} seconds")
    return writer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--source", help="directory of Parquet request logs")
    source.add_argument("--kafka", help="BOOTSTRAP/TOPIC of JSON request records")
    parser.add_argument("--checkpoint", required=True, help="the query's checkpoint directory")
    parser.add_argument(
        "--url", required=True, help="canaryctl ingest server, e.g. https://canaryctl-ingest"
    )
    parser.add_argument(
        "--token-file", help="file holding the bearer token (else $CANARYCTL_INGEST_TOKEN)"
    )
    parser.add_argument(
        "--watermark-seconds",
        type=int,
        default=60,
        help="event-time delay before a minute is final (keep it below the "
        "experiments' allowed lateness minus the trigger interval)",
    )
    parser.add_argument("--trigger-seconds", type=int, default=10)
    parser.add_argument(
        "--available-now",
        action="store_true",
        help="process what the source holds now, then stop (tests, backfills)",
    )
    parser.add_argument("--max-files-per-trigger", type=int, default=0)
    parser.add_argument(
        "--top-fraction",
        type=float,
        default=0.01,
        help="share of a cell's values sent as revenue_top when the "
        "experiment derives no cap from a quantile",
    )
    parser.add_argument("--shuffle-partitions", type=int, default=0)
    parser.add_argument("--query-name", default="canaryctl-cells")
    parser.add_argument("--master", help="Spark master (default: spark-submit's)")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting for the session (repeatable), e.g. spark.ui.enabled=false",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.token_file:
        with open(args.token_file) as handle:
            token = handle.read().strip()
    else:
        token = os.environ.get("CANARYCTL_INGEST_TOKEN", "")
    if not token:
        raise SystemExit("canaryctl_cells: no token (--token-file or $CANARYCTL_INGEST_TOKEN)")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(args.query_name)
    if args.master:
        builder = builder.master(args.master)
    for setting in args.conf:
        key, _, value = setting.partition("=")
        builder = builder.config(key, value)
    if args.shuffle_partitions:
        builder = builder.config("spark.sql.shuffle.partitions", args.shuffle_partitions)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    server = Server(args.url, token)
    fmt = server.cell_format()
    sink = Sink(server, fmt, args)
    query = build_query(spark, args, fmt, sink).start()
    sink.query_id = str(query.id)
    sink.started.set()
    query.awaitTermination()
    spark.stop()


if __name__ == "__main__":
    main()
