"""Validation of a delivered batch: an Arrow table in, typed numpy columns and rejects out.

Every ingest path converts its input to an Arrow table and comes through ``prepare``; the
loader trusts what this returns. Checks are vectorised; a bad row gets the first reason
that applies, in the order of ``REASONS``. This module reads no database and no clock:
the registry of experiments and ``now`` are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from controller.storage.experiments import DEFAULT_NAMESPACE

REQUIRED = ("experiment", "arm", "ts", "revenue", "latency_ms", "error")
ARMS = {"champion": 0, "challenger": 1}
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


class BatchError(ValueError):
    """The batch as a whole is unusable (for example a required column is missing)."""


@dataclass(frozen=True)
class ExperimentInfo:
    """What ingestion needs to know of a registered experiment."""

    id: int
    revenue_cap: float | None
    allowed_lateness: timedelta


@dataclass(frozen=True)
class Reject:
    row: int  # 1-based position of the row in the batch (CSV: data rows, header excluded)
    reason: str


@dataclass(frozen=True)
class Prepared:
    """The good rows of a batch, typed, plus the rejected ones with their reasons."""

    received: int
    rows: npt.NDArray[np.int64]  # 0-based positions of the good rows in the batch
    experiment_id: npt.NDArray[np.int32]
    arm: npt.NDArray[np.int16]
    ts: npt.NDArray[np.datetime64]
    revenue: npt.NDArray[np.float64]
    latency_ms: npt.NDArray[np.float64]
    error: npt.NDArray[np.bool_]
    unit_id: npt.NDArray[np.object_] | None
    rejects: list[Reject]

    @property
    def loaded(self) -> int:
        return len(self.rows)


def _strings(col: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.object_]:
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)


def _floats(
    col: pa.ChunkedArray | pa.Array, name: str, reasons: npt.NDArray[np.object_]
) -> npt.NDArray[np.float64]:
    """Numbers as float64; unparseable, missing, NaN, infinite or negative values get a reason."""
    if (
        pa.types.is_integer(col.type)
        or pa.types.is_floating(col.type)
        or pa.types.is_decimal(col.type)
    ):
        arr = pc.cast(col, pa.float64())
        values = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
        missing = np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)
        unparseable = np.zeros(len(values), dtype=bool)
    else:
        raw = _strings(col)
        missing = (
            np.array([v is None or str(v).strip() == "" for v in raw], dtype=bool)
            if len(raw)
            else np.zeros(0, bool)
        )
        try:
            values = np.asarray(
                pc.cast(pa.array(np.where(missing, "0", raw), type=pa.string()), pa.float64()),
                dtype=np.float64,
            )
            unparseable = np.zeros(len(values), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = np.empty(len(raw), dtype=np.float64)
            unparseable = np.zeros(len(raw), dtype=bool)
            for i, v in enumerate(raw):
                try:
                    values[i] = 0.0 if missing[i] else float(str(v).strip())
                except ValueError:
                    values[i], unparseable[i] = math.nan, True
    _flag(reasons, missing, f"{name} is missing")
    _flag(reasons, unparseable, f"{name} is not a number")
    _flag(reasons, np.isnan(values), f"{name} is NaN")
    _flag(reasons, np.isinf(values), f"{name} is infinite")
    with np.errstate(invalid="ignore"):
        _flag(reasons, values < 0, f"{name} is negative")
    return values


def _flag(reasons: npt.NDArray[np.object_], mask: npt.NDArray[np.bool_], reason: str) -> None:
    """Give ``reason`` to rows in ``mask`` that have no reason yet."""
    target = mask & (reasons == None)  # noqa: E711 - elementwise comparison on an object array
    reasons[target] = reason


def _errors(
    col: pa.ChunkedArray | pa.Array, reasons: npt.NDArray[np.object_]
) -> npt.NDArray[np.bool_]:
    if pa.types.is_boolean(col.type):
        values = np.asarray(col.to_numpy(zero_copy_only=False))
        missing = np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)
        _flag(reasons, missing, "error is missing")
        return np.where(missing, False, values).astype(bool)
    if pa.types.is_integer(col.type):
        ints = np.asarray(pc.fill_null(col, -1).to_numpy(zero_copy_only=False))
        _flag(reasons, ~np.isin(ints, (0, 1)), "error is not a boolean (true/false or 1/0)")
        return np.asarray(ints == 1, dtype=bool)
    raw = _strings(col)
    lowered = np.array([("" if v is None else str(v).strip().lower()) for v in raw], dtype=object)
    is_true = np.isin(lowered, list(_TRUE))
    is_false = np.isin(lowered, list(_FALSE))
    _flag(reasons, ~(is_true | is_false), "error is not a boolean (true/false or 1/0)")
    return is_true


def _timestamps(
    col: pa.ChunkedArray | pa.Array, reasons: npt.NDArray[np.object_]
) -> npt.NDArray[np.datetime64]:
    """Event times as UTC ``datetime64[us]``: ISO 8601 strings, Arrow timestamps or epoch seconds."""
    n = len(col)
    bad = np.zeros(n, dtype=bool)
    if pa.types.is_timestamp(col.type):
        arr = pc.cast(col, pa.timestamp("us", tz=col.type.tz))
        out = np.asarray(
            pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy(zero_copy_only=False)
        ).astype("datetime64[us]")
        bad = np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        secs = np.asarray(
            pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        bad = ~np.isfinite(secs)
        out = np.round(np.where(bad, 0.0, secs) * 1e6).astype(np.int64).astype("datetime64[us]")
    else:
        raw = _strings(col)
        strings = pa.array(raw, type=pa.string())
        arr = None
        for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
            try:
                arr = pc.cast(strings, target)
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        if arr is not None:
            bad = np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)
            out = np.asarray(
                pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy(zero_copy_only=False)
            ).astype("datetime64[us]")
        else:
            out = np.zeros(n, dtype="datetime64[us]")
            for i, v in enumerate(raw):
                parsed = _parse_iso(v)
                if parsed is None:
                    bad[i] = True
                else:
                    out[i] = parsed
    _flag(reasons, bad, "ts is not a valid timestamp (ISO 8601 or epoch seconds)")
    return out


def _parse_iso(value: object) -> np.datetime64 | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return np.datetime64(parsed.astimezone(UTC).replace(tzinfo=None), "us")


def _experiment_keys(
    col: pa.ChunkedArray | pa.Array,
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """Unique normalised ``namespace/name`` keys and each row's index into them."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    encoded = pc.dictionary_encode(pc.utf8_trim_whitespace(pc.fill_null(col, "")))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks()
    uniq = encoded.dictionary.to_pylist()
    keys = np.array(
        [u if ("/" in u or not u) else f"{DEFAULT_NAMESPACE}/{u}" for u in uniq], dtype=object
    )
    return keys, np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def prepare(
    table: pa.Table,
    registry: Mapping[str, ExperimentInfo],
    *,
    now: datetime,
    future_tolerance: timedelta = timedelta(minutes=5),
) -> Prepared:
    """Validate ``table`` and split it into typed good rows and rejects with reasons."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise BatchError(f"batch is missing required column(s): {', '.join(missing)}")
    n = table.num_rows
    reasons = np.full(n, None, dtype=object)

    keys, key_index = _experiment_keys(table["experiment"])
    exp_ids = np.full(len(keys), -1, dtype=np.int64)
    caps = np.full(len(keys), np.nan)
    lateness_us = np.zeros(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        info = registry.get(key)
        if info is not None:
            exp_ids[i], lateness_us[i] = info.id, info.allowed_lateness // timedelta(microseconds=1)
            caps[i] = np.nan if info.revenue_cap is None else info.revenue_cap
    for i, key in enumerate(keys):
        if not key:
            _flag(reasons, key_index == i, "experiment is missing")
        elif exp_ids[i] < 0:
            _flag(reasons, key_index == i, f"experiment {key} is not registered")

    arm_raw = _strings(table["arm"])
    arm = np.full(n, -1, dtype=np.int16)
    for name, code in ARMS.items():
        arm[arm_raw == name] = code
    if (arm < 0).any():
        for value in np.unique(np.array([str(v) for v in arm_raw[arm < 0]], dtype=object)):
            _flag(
                reasons,
                (arm < 0) & (arm_raw.astype(str) == value),
                f"unknown arm {value!r} (expected champion or challenger)",
            )

    ts = _timestamps(table["ts"], reasons)
    limit = np.datetime64((now + future_tolerance).astimezone(UTC).replace(tzinfo=None), "us")
    _flag(reasons, ts > limit, f"ts is more than {future_tolerance} in the future")
    revenue = _floats(table["revenue"], "revenue", reasons)
    latency = _floats(table["latency_ms"], "latency_ms", reasons)
    error = _errors(table["error"], reasons)
    unit_id = _strings(table["unit_id"]) if "unit_id" in table.column_names else None

    good = np.flatnonzero(reasons == None)  # noqa: E711
    bad = np.flatnonzero(reasons != None)  # noqa: E711
    return Prepared(
        received=n,
        rows=good,
        experiment_id=exp_ids[key_index[good]].astype(np.int32),
        arm=arm[good],
        ts=ts[good],
        revenue=revenue[good],
        latency_ms=latency[good],
        error=error[good],
        unit_id=None if unit_id is None else unit_id[good],
        rejects=[Reject(int(i) + 1, str(reasons[i])) for i in bad],
    )
