"""The ingest server's Prometheus counters: rows received, loaded, rejected and duplicated by
experiment, and answers by status code.

The server (``controller.ingest.server``) calls ``count_batch`` after a batch is loaded (or
answered as a duplicate) and ``count_answer`` for every answer; ``/metrics`` renders the
registry. Each server has a registry of its own, so several can live in one process (tests).
The experiment label holds what senders wrote, so it is bounded: a value that is not
``namespace/name``-shaped counts as ``(invalid)`` and, past ``max_experiments`` distinct
labels, as ``(other)``.
"""

from __future__ import annotations

import re
from collections import Counter as Tally

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from controller.ingest import load

PREFIX = "canaryctl_ingest"
CONTENT_TYPE = CONTENT_TYPE_LATEST
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class ServerMetrics:
    """Counters of one ingest server, in a registry of their own."""

    def __init__(self, max_experiments: int = 1_000) -> None:
        self.registry = CollectorRegistry()
        self.max_experiments = max_experiments
        self._labels: set[str] = set()

        def rows(name: str, doc: str) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, ["experiment"], registry=self.registry)

        self.received = rows("rows_received", "Rows received in batches that were read")
        self.loaded = rows("rows_loaded", "Rows stored as observations")
        self.rejected = rows("rows_rejected", "Rows quarantined with a reason")
        self.duplicates = rows(
            "rows_duplicate", "Rows of batches answered as duplicates (stored before)"
        )
        self.answers = Counter(
            f"{PREFIX}_answers",
            "Answers to POST /v1/batches by status code",
            ["code"],
            registry=self.registry,
        )

    def _label(self, experiment: object) -> str:
        text = str(experiment) if experiment is not None else "(none)"
        if experiment is not None and not _NAME.fullmatch(text):
            return "(invalid)"
        if text not in self._labels:
            if len(self._labels) >= self.max_experiments:
                return "(other)"
            self._labels.add(text)
        return text

    def count_batch(self, table: pa.Table, result: load.IngestResult) -> None:
        """Count one batch's rows by experiment (rejects by the experiment their row names)."""
        names = (
            table.column("experiment").to_pylist()
            if "experiment" in table.column_names
            else [None] * table.num_rows
        )
        received = Tally(self._label(n) for n in names)
        if result.duplicate:
            for label, n in received.items():
                self.duplicates.labels(label).inc(n)
            return
        if len(result.rejects) != result.rejected:  # the rejects were not all listed
            received = Tally({"(unattributed)": result.received})
            rejected = Tally({"(unattributed)": result.rejected})
        else:
            rejected = Tally(self._label(names[r.row - 1]) for r in result.rejects)
        for label, n in received.items():
            self.received.labels(label).inc(n)
            self.loaded.labels(label).inc(n - rejected.get(label, 0))
        for label, n in rejected.items():
            self.rejected.labels(label).inc(n)

    def count_answer(self, code: int) -> None:
        self.answers.labels(str(code)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
