"""The readers: vectorised parsing that still leaves every bad value to its own row.

No database: a table read here goes through ``validate.prepare`` with a registry in memory.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from controller.ingest import readers, validate
from tests.storage.helpers import T0, row

REGISTRY = {"default/ranker": validate.ExperimentInfo(1, None, timedelta(minutes=5))}
NOW = T0 + timedelta(hours=1)


def _jsonl(rows: list[dict[str, object]]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def _typed(**overrides: object) -> dict[str, object]:
    """A row as a JSON client writes it: numbers and booleans, not strings."""
    base: dict[str, object] = {**row(), "revenue": 0.5, "latency_ms": 31.5, "error": False}
    base.update(overrides)
    return base


def _prepare(table: pa.Table) -> validate.Prepared:
    return validate.prepare(table, REGISTRY, now=NOW)


def test_json_lines_of_one_type_per_column_are_read_typed_by_arrow() -> None:
    table = readers.read_bytes(_jsonl([_typed(), _typed(latency_ms=12)]), "jsonl")
    assert table.schema.field("revenue").type == pa.float64()
    assert table.schema.field("error").type == pa.bool_()
    assert table.schema.field("ts").type == pa.string()  # never guessed as a timestamp
    assert _prepare(table).loaded == 2


def test_a_value_of_another_type_rejects_its_row_only() -> None:
    body = _jsonl([_typed(), _typed(revenue="abc"), _typed(latency_ms={"ms": 3}), _typed()])
    prep = _prepare(readers.read_bytes(body, "jsonl"))
    assert prep.loaded == 2
    assert [(r.row, r.reason) for r in prep.rejects] == [
        (2, "revenue is not a number"),
        (3, "latency_ms is not a number"),
    ]


def test_the_vectorised_and_the_line_by_line_readers_agree() -> None:
    rows = [_typed(latency_ms=10.0 + i, error=i % 3 == 0, unit_id=f"u{i}") for i in range(50)]
    body = _jsonl(rows)
    fast = _prepare(readers.read_bytes(body, "jsonl"))
    slow = _prepare(readers._read_jsonl_rows(body, first_line=1))
    assert fast.loaded == slow.loaded == 50
    for name in ("ts", "revenue", "latency_ms", "error", "arm", "unit_id"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name


def test_an_experiment_named_like_a_date_stays_text() -> None:
    table = readers.read_bytes(_jsonl([_typed(experiment="2026-01-01")]), "jsonl")
    assert table["experiment"].to_pylist() == ["2026-01-01"]


def test_a_column_named_only_in_a_value_is_still_missing() -> None:
    rows = [{k: v for k, v in _typed(arm="ts").items() if k != "ts"}]
    table = readers.read_bytes(_jsonl(rows), "jsonl")
    with pytest.raises(validate.BatchError, match="missing required column"):
        _prepare(table)


def test_an_unreadable_line_refuses_the_body_and_names_the_line() -> None:
    body = _jsonl([_typed(), _typed()]) + b"\n\n{nope\n"
    with pytest.raises(readers.ReadError, match="line 4: not valid JSON"):
        readers.read_bytes(body, "jsonl")


def test_csv_numbers_are_typed_when_the_whole_column_parses_and_text_otherwise() -> None:
    header = "experiment,arm,ts,revenue,latency_ms,error\n"
    line = f"default/ranker,champion,{(T0 + timedelta(minutes=5)).isoformat()},{{}},31.5,false\n"
    clean = readers.read_bytes((header + line.format("0.5") * 3).encode(), "csv")
    assert clean.schema.field("revenue").type == pa.float64()
    mixed = readers.read_bytes((header + line.format("0.5") + line.format("x1")).encode(), "csv")
    assert mixed.schema.field("revenue").type == pa.string()
    prep = _prepare(mixed)
    assert prep.loaded == 1 and [r.reason for r in prep.rejects] == ["revenue is not a number"]
    nan = readers.read_bytes((header + line.format("0.5") + line.format("nan")).encode(), "csv")
    assert nan.schema.field("revenue").type == pa.string()  # stored as given if rejected
    assert [r.reason for r in _prepare(nan).rejects] == ["revenue is NaN"]


def test_quoted_csv_header_names_are_unquoted() -> None:
    body = b'"experiment","arm","ts"\nx,champion,2026-11-20 10:00:00Z\n'
    assert readers.read_bytes(body, "csv").schema.types == [pa.string()] * 3


def test_json_nan_is_read_as_text_and_rejects_its_row() -> None:
    body = _jsonl([_typed(), _typed()]).replace(b'"revenue": 0.5', b'"revenue": NaN', 1)
    table = readers.read_bytes(body, "jsonl")
    assert table.schema.field("revenue").type == pa.string()
    assert [r.reason for r in _prepare(table).rejects] == ["revenue is NaN"]
