"""The client's pure parts: the JSON lines encoder, the Retry-After reader, the spool directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from controller.ingest import client as client_mod
from controller.ingest import sender, spool


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            ("a/b", "champion", 1_764_147_600.25, 0.5, 31.25, False, None),
            {
                "experiment": "a/b",
                "arm": "champion",
                "ts": "2025-11-26T09:00:00.250000Z",
                "revenue": 0.5,
                "latency_ms": 31.25,
                "error": False,
            },
        ),
        (
            ("a/b", "champion", -0.5, 1, 2, True, 'u"\\\u00e9\x00'),
            {
                "experiment": "a/b",
                "arm": "champion",
                "ts": "1969-12-31T23:59:59.500000Z",
                "revenue": 1,
                "latency_ms": 2,
                "error": True,
                "unit_id": 'u"\\\u00e9\x00',
            },
        ),
        (
            (None, 7, datetime(2026, 1, 2, 3, 4, 5), float("nan"), float("inf"), "true", 5),
            {
                "experiment": None,
                "arm": 7,
                "ts": "2026-01-02T03:04:05Z",
                "revenue": "NaN",
                "latency_ms": "Infinity",
                "error": "true",
                "unit_id": 5,
            },
        ),
        (
            ("a/b", "x", 1e300, "0.1", True, 1, None),
            {
                "experiment": "a/b",
                "arm": "x",
                "ts": "1e+300",
                "revenue": "0.1",
                "latency_ms": True,
                "error": 1,
            },
        ),
        (
            ("a/b", "x", datetime(2026, 1, 2, tzinfo=UTC), object, -0.0, None, None),
            {
                "experiment": "a/b",
                "arm": "x",
                "ts": "2026-01-02T00:00:00+00:00",
                "revenue": "<class 'object'>",
                "latency_ms": -0.0,
                "error": None,
            },
        ),
    ],
)
def test_encode_writes_one_json_object_per_row(
    row: client_mod.Row, expected: dict[str, Any]
) -> None:
    body = sender.encode([row, row])
    lines = body.decode().splitlines()
    assert body.endswith(b"\n") and len(lines) == 2
    decoded = json.loads(lines[0], parse_constant=str)
    assert decoded == expected and json.loads(lines[1], parse_constant=str) == expected


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert sender.parse_retry_after("7") == 7.0
    assert sender.parse_retry_after(None) is None
    assert sender.parse_retry_after("soon") is None
    assert sender.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    assert 3_500 < (sender.parse_retry_after(later) or 0) <= 3_600


def test_a_spool_ignores_half_written_files(tmp_path: Path) -> None:
    (tmp_path / f"{'0' * 20}-abc.ndjson.tmp").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("not ours")
    box = spool.Spool(tmp_path, 10_000)
    try:
        assert len(box) == 0 and box.oldest() is None
        assert box.put("b1", b"{}\n") and box.put("b2", b"{}\n{}\n")
        name, batch_id, body = box.oldest() or ("", "", b"")
        assert (batch_id, body) == ("b1", b"{}\n")
        box.remove(name)
        assert len(box) == 1 and box.bytes == 6
    finally:
        box.close()
    assert not list(tmp_path.glob("*.tmp")) and (tmp_path / "notes.txt").exists()
