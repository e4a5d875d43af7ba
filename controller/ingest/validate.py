"""Validation of a delivered batch: an Arrow table in, typed numpy columns and rejects out.

Every ingest path converts its input to an Arrow table and comes through ``prepare``; the
loader trusts what this returns. Checks are vectorised (linear in the rows whatever the mix
of bad values); a bad row gets the first reason that applies. No row can make ``prepare``
raise: a row that cannot be stored exactly as given gets a reason, and only a batch that is
unusable as a whole (a missing or duplicated column, a column of an unusable type) raises
``BatchRefused``. The limits (``TS_MIN``, ``REVENUE_MAX``, ...) are documented in
docs/ingest.md. This module reads no database and no clock: the registry of experiments
and ``now`` are passed in.
"""

from __future__ import annotations

import math
import re
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

TS_MIN = datetime(1970, 1, 1, tzinfo=UTC)  # the earliest accepted event time
_TS_MAX_US = 253_402_300_800_000_000  # 10000-01-01T00:00:00Z: epoch numbers beyond are out of range
REVENUE_MAX = 1e12  # per row; keeps every sum of squares finite
LATENCY_MAX_MS = 1e9  # per row (about 11.6 days)
UNIT_ID_MAX = 1024  # characters
# A column readers add when a row's text could not be represented (a lone surrogate): its
# reason, or null. It is never stored with the row.
PROBLEM_COLUMN = "__canaryctl_problem"
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_SURROGATES = re.compile("[\ud800-\udfff]")


class BatchRefused(ValueError):
    """The batch as a whole is unusable and was refused: nothing of it is stored.

    The CLI prints it as one line (exit code 3); the HTTP endpoint answers 422.
    """


class BatchError(BatchRefused):
    """The batch as a whole is unusable (for example a required column is missing)."""


def without_surrogates(value: str) -> str:
    """``value`` with lone surrogates (not valid Unicode, so not UTF-8 encodable) as U+FFFD."""
    return _SURROGATES.sub("\ufffd", value)


def clean_text(value: str) -> str:
    """``value`` with lone surrogates and NUL bytes replaced by U+FFFD (storable anywhere)."""
    return without_surrogates(value).replace("\x00", "\ufffd")


def show(value: object, limit: int = 100) -> str:
    """A value for a reason: as it is if short and printable, else its (truncated) repr."""
    text = str(value)
    if text.isprintable() and len(text) <= limit:
        return text
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


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


def _text(col: pa.ChunkedArray | pa.Array, name: str) -> pa.Array:
    """The column as one Arrow string array; a type that has no text form refuses the batch."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_string(col.type):
        return col
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise BatchError(f"column {name!r} has type {col.type}, which has no text form") from exc


def _strings(col: pa.ChunkedArray | pa.Array, name: str) -> npt.NDArray[np.object_]:
    return np.asarray(_text(col, name).to_numpy(zero_copy_only=False), dtype=object)


def _encode(
    col: pa.ChunkedArray | pa.Array, name: str
) -> tuple[list[str | None], npt.NDArray[np.int64]]:
    """Distinct values of a text column and each row's index into them."""
    encoded = pc.dictionary_encode(_text(col, name), null_encoding="encode")
    return encoded.dictionary.to_pylist(), np.asarray(
        encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64
    )


def _floats(
    col: pa.ChunkedArray | pa.Array, name: str, limit: float, reasons: npt.NDArray[np.object_]
) -> npt.NDArray[np.float64]:
    """Numbers as float64; unparseable, missing, non-finite, negative or absurd values get a reason."""
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
        raw = _strings(col, name)
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
                except (ValueError, OverflowError):
                    values[i], unparseable[i] = math.nan, True
    _flag(reasons, missing, f"{name} is missing")
    _flag(reasons, unparseable, f"{name} is not a number")
    _flag(reasons, np.isnan(values), f"{name} is NaN")
    _flag(reasons, np.isinf(values), f"{name} is infinite")
    with np.errstate(invalid="ignore"):
        _flag(reasons, values < 0, f"{name} is negative")
        _flag(reasons, values > limit, f"{name} is above {limit:g}")
    return np.where(np.isfinite(values), values, 0.0)


def _flag(reasons: npt.NDArray[np.object_], mask: npt.NDArray[np.bool_], reason: str) -> None:
    """Give ``reason`` to rows in ``mask`` that have no reason yet."""
    if not mask.any():
        return
    target = mask & (reasons == None)  # noqa: E711 - elementwise comparison on an object array
    reasons[target] = reason


def _flag_each(reasons: npt.NDArray[np.object_], row_reasons: npt.NDArray[np.object_]) -> None:
    """Give each row its own reason from ``row_reasons`` (None: no reason) unless it has one."""
    given = row_reasons != None  # noqa: E711
    if not given.any():
        return
    target = given & (reasons == None)  # noqa: E711
    reasons[target] = row_reasons[target]


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
    raw = _strings(col, "error")
    lowered = np.array([("" if v is None else str(v).strip().lower()) for v in raw], dtype=object)
    is_true = np.isin(lowered, list(_TRUE))
    is_false = np.isin(lowered, list(_FALSE))
    _flag(reasons, ~(is_true | is_false), "error is not a boolean (true/false or 1/0)")
    return is_true


_TS_BAD, _TS_RANGE = 1, 2  # codes: not a timestamp; beyond year 9999
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1}


def _timestamps(
    col: pa.ChunkedArray | pa.Array,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    """Event times as UTC µs since the Unix epoch, and a problem code per row (0: none).

    Accepts Arrow timestamps of any unit (finer than µs is truncated), ISO 8601 text and
    epoch seconds as numbers or text. Values that do not fit are codes, never errors.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    out = np.zeros(n, dtype=np.int64)
    code = np.zeros(n, dtype=np.int8)
    if pa.types.is_timestamp(col.type):
        ticks = np.asarray(pc.fill_null(col.cast(pa.int64()), 0).to_numpy(zero_copy_only=False))
        code[np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)] = _TS_BAD
        if col.type.unit == "ns":
            out = ticks // 1_000
        else:
            per = _UNIT_US[col.type.unit]
            fits = np.abs(ticks) < _TS_MAX_US // per
            code[~fits & (code == 0)] = _TS_RANGE
            out = np.where(fits, ticks, 0) * per
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        secs = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
        out, code = _from_seconds(secs)
    elif pa.types.is_date(col.type):
        days = np.asarray(pc.fill_null(col.cast(pa.int32()), 0).to_numpy(zero_copy_only=False))
        out = days.astype(np.int64) * 86_400_000_000
        code[np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)] = _TS_BAD
    else:
        text = _text(col, "ts")
        iso = _iso_vectorised(text)  # every value ISO 8601 (a number never casts): done
        if iso is not None:
            return iso
        numeric = np.asarray(
            pc.fill_null(pc.match_substring_regex(text, _NUMBER), False).to_numpy(
                zero_copy_only=False
            ),
            dtype=bool,
        )
        if numeric.any():
            out[numeric], code[numeric] = _from_seconds(_numbers(text.filter(numeric)))
        rest = ~numeric
        if rest.any():
            out[rest], code[rest] = _iso(text.filter(rest))
    return out, code


def _numbers(text: pa.Array) -> npt.NDArray[np.float64]:
    """Text that matched ``_NUMBER`` as float64 (a huge exponent becomes infinite)."""
    trimmed = pc.utf8_trim_whitespace(text)
    try:
        return np.asarray(pc.cast(trimmed, pa.float64()).to_numpy(zero_copy_only=False), float)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.array([float(v) for v in trimmed.to_pylist()], dtype=float)


def _from_seconds(
    secs: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    code = np.where(np.isfinite(secs), 0, _TS_BAD).astype(np.int8)
    with np.errstate(invalid="ignore"):
        code[(code == 0) & (np.abs(secs) >= _TS_MAX_US / 1e6)] = _TS_RANGE
    ok = code == 0
    out = np.round(np.where(ok, secs, 0.0) * 1e6).astype(np.int64)
    return out, code


def _iso_vectorised(
    text: pa.Array,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]] | None:
    """ISO 8601 text cast by Arrow when every value parses (a null is ``_TS_BAD``), else None."""
    for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            arr = pc.cast(text, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        bad = np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)
        ticks = np.asarray(pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False))
        return ticks.astype(np.int64), np.where(bad, _TS_BAD, 0).astype(np.int8)
    return None


def _iso(text: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    """ISO 8601 text: vectorised when every value parses, else value by value."""
    fast = _iso_vectorised(text)
    if fast is not None:
        return fast
    values = text.to_pylist()
    out = np.zeros(len(values), dtype=np.int64)
    code = np.zeros(len(values), dtype=np.int8)
    for i, v in enumerate(values):
        parsed = _parse_iso(v)
        if parsed is None:
            code[i] = _TS_BAD
        else:
            out[i] = parsed
    return out, code


def _parse_iso(value: str | None) -> int | None:
    """µs since the Unix epoch, or None when ``value`` is not ISO 8601 (or not representable)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        delta = parsed.astimezone(UTC) - TS_MIN
    except (ValueError, OverflowError):
        return None
    return delta // timedelta(microseconds=1)


def experiment_key(name: str) -> str:
    """The key a row naming experiment ``name`` (trimmed) is stored under: a bare name is in
    the default namespace."""
    return name if "/" in name else f"{DEFAULT_NAMESPACE}/{name}"


def _experiment_keys(
    col: pa.ChunkedArray | pa.Array,
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """Unique normalised ``namespace/name`` keys and each row's index into them."""
    uniq, index = _encode(
        pc.utf8_trim_whitespace(pc.fill_null(_text(col, "experiment"), "")), "experiment"
    )
    keys = np.array(
        [u if not u else experiment_key(u) for u in uniq],
        dtype=object,
    )
    return keys, index


def _experiment_reason(key: str | None, known: bool) -> str | None:
    if known:
        return None
    if not key:
        return "experiment is missing"
    return f"experiment {show(key)} is not registered"


def _arms(
    col: pa.ChunkedArray | pa.Array, reasons: npt.NDArray[np.object_]
) -> npt.NDArray[np.int16]:
    """Arm codes (``ARMS``); a missing or unknown arm gets a reason (one per distinct value)."""
    uniq, index = _encode(col, "arm")
    codes = np.array([ARMS.get(u, -1) if u is not None else -1 for u in uniq] + [-1], np.int16)
    why = np.array(
        [
            None
            if u in ARMS
            else "arm is missing"
            if u is None
            else f"unknown arm {u[:100]!r} (expected champion or challenger)"
            for u in uniq
        ]
        + [None],
        dtype=object,
    )
    _flag_each(reasons, why[index])
    return codes[index]


def _unit_ids(
    col: pa.ChunkedArray | pa.Array, reasons: npt.NDArray[np.object_]
) -> npt.NDArray[np.object_]:
    text = _text(col, "unit_id")
    nul = pc.fill_null(pc.match_substring(text, "\x00"), False)
    _flag(
        reasons, np.asarray(nul.to_numpy(zero_copy_only=False), bool), "unit_id contains a NUL byte"
    )
    long = pc.fill_null(pc.greater(pc.utf8_length(text), UNIT_ID_MAX), False)
    _flag(
        reasons,
        np.asarray(long.to_numpy(zero_copy_only=False), bool),
        f"unit_id is longer than {UNIT_ID_MAX} characters",
    )
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)


def prepare(
    table: pa.Table,
    registry: Mapping[str, ExperimentInfo],
    *,
    now: datetime,
    future_tolerance: timedelta = timedelta(minutes=5),
) -> Prepared:
    """Validate ``table`` and split it into typed good rows and rejects with reasons.

    Raises ``BatchRefused`` (``BatchError``) only for a batch unusable as a whole.
    """
    names = table.column_names
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise BatchError(
            ", ".join(f"column {c!r}" for c in twice)
            + (" appears" if len(twice) == 1 else " appear")
            + " more than once"
        )
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise BatchError(f"batch is missing required column(s): {', '.join(missing)}")
    n = table.num_rows
    reasons = np.full(n, None, dtype=object)
    if PROBLEM_COLUMN in names:
        _flag_each(reasons, _strings(table[PROBLEM_COLUMN], PROBLEM_COLUMN))

    keys, key_index = _experiment_keys(table["experiment"])
    infos = [registry.get(k) if k else None for k in keys]
    exp_ids = np.array([-1 if i is None else i.id for i in infos] + [-1], dtype=np.int64)
    why = np.array(
        [_experiment_reason(k, i is not None) for k, i in zip(keys, infos, strict=True)] + [None],
        object,
    )
    _flag_each(reasons, why[key_index])

    arm = _arms(table["arm"], reasons)

    ts_us, ts_code = _timestamps(table["ts"])
    _flag(reasons, ts_code == _TS_BAD, "ts is not a valid timestamp (ISO 8601 or epoch seconds)")
    _flag(reasons, ts_code == _TS_RANGE, "ts is out of range (epoch seconds up to year 9999)")
    _flag(reasons, ts_us < 0, "ts is before 1970-01-01T00:00:00Z (the earliest accepted)")
    limit = (now + future_tolerance - TS_MIN) // timedelta(microseconds=1)
    _flag(reasons, ts_us > limit, f"ts is more than {future_tolerance} in the future")
    revenue = _floats(table["revenue"], "revenue", REVENUE_MAX, reasons)
    latency = _floats(table["latency_ms"], "latency_ms", LATENCY_MAX_MS, reasons)
    error = _errors(table["error"], reasons)
    unit_id = _unit_ids(table["unit_id"], reasons) if "unit_id" in names else None

    fine = reasons == None  # noqa: E711
    good, bad = np.flatnonzero(fine), np.flatnonzero(~fine)
    return Prepared(
        received=n,
        rows=good,
        experiment_id=exp_ids[key_index[good]].astype(np.int32),
        arm=arm[good],
        ts=ts_us[good].astype("datetime64[us]"),
        revenue=revenue[good],
        latency_ms=latency[good],
        error=error[good],
        unit_id=None if unit_id is None else unit_id[good],
        rejects=[Reject(int(i) + 1, str(reasons[i])) for i in bad],
    )
