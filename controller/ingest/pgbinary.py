"""Vectorised encoder for PostgreSQL's binary COPY format, built from numpy columns.

Only encoding lives here; the loader decides what to write. Rows with the same text
length share one fixed-width numpy record type, so each group is encoded in a single
numpy assignment (COPY does not care about row order). No per-row Python loop runs
unless a text column is present, and then only to encode the strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in µs since the Unix epoch

_FIXED = {
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float8": ">f8",
    "bool": "u1",
    "timestamptz": ">i8",
}


@dataclass(frozen=True)
class Column:
    """One column to encode: a PostgreSQL type name and its values.

    ``timestamptz`` values are ``datetime64[us]`` (UTC); ``text`` values are an object
    array of ``str`` or ``None`` (NULL). Fixed-width columns never hold NULLs.
    """

    pg_type: str
    values: npt.NDArray[np.generic]


def _encode_text(
    values: npt.NDArray[np.object_],
) -> tuple[list[bytes | None], npt.NDArray[np.int64]]:
    encoded = [None if v is None else str(v).encode() for v in values]
    lengths = np.fromiter(
        (-1 if b is None else len(b) for b in encoded), dtype=np.int64, count=len(encoded)
    )
    return encoded, lengths


def encode(columns: Sequence[Column]) -> bytearray:
    """Encode the rows of ``columns`` (equal lengths) as one binary COPY payload."""
    n = len(columns[0].values)
    if any(len(c.values) != n for c in columns):
        raise ValueError("columns: all columns must have the same length")
    text_cols = [i for i, c in enumerate(columns) if c.pg_type == "text"]
    for c in columns:
        if c.pg_type != "text" and c.pg_type not in _FIXED:
            raise ValueError(f"columns: unsupported type {c.pg_type!r}")
    encoded = {i: _encode_text(np.asarray(columns[i].values, dtype=object)) for i in text_cols}
    if text_cols:
        shape = np.stack([encoded[i][1] for i in text_cols], axis=1)
        groups, inverse = np.unique(shape, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    else:
        groups, inverse = np.zeros((1, 0), dtype=np.int64), np.zeros(n, dtype=np.int64)
    # one buffer of the payload's final size, each group's records written into it in place:
    # the peak is the payload plus one column's temporary, not three copies of the payload
    plan = []
    for g, lengths in enumerate(groups):
        rows = np.flatnonzero(inverse == g)
        if len(rows) == 0:
            continue
        text_len = dict(zip(text_cols, (int(x) for x in lengths), strict=True))
        fields: list[tuple[str, str]] = [("nfields", ">i2")]
        for i, c in enumerate(columns):
            fields.append((f"l{i}", ">i4"))
            if c.pg_type == "text":
                if text_len[i] > 0:
                    fields.append((f"v{i}", f"S{text_len[i]}"))
            else:
                fields.append((f"v{i}", _FIXED[c.pg_type]))
        plan.append((rows, text_len, np.dtype(fields)))
    size = len(HEADER) + sum(len(rows) * dtype.itemsize for rows, _, dtype in plan) + len(TRAILER)
    out = bytearray(size)
    out[: len(HEADER)] = HEADER
    offset = len(HEADER)
    for rows, text_len, dtype in plan:
        rec = np.ndarray((len(rows),), dtype=dtype, buffer=out, offset=offset)
        rec["nfields"] = len(columns)
        for i, c in enumerate(columns):
            if c.pg_type == "text":
                rec[f"l{i}"] = text_len[i]
                if text_len[i] > 0:
                    strings = encoded[i][0]
                    rec[f"v{i}"] = np.array([strings[r] for r in rows], dtype=f"S{text_len[i]}")
                continue
            width = np.dtype(_FIXED[c.pg_type]).itemsize
            rec[f"l{i}"] = width
            values = c.values[rows]
            if c.pg_type == "timestamptz":
                values = values.astype("datetime64[us]").astype(np.int64) - PG_EPOCH_US
            rec[f"v{i}"] = values
            del values
        offset += rec.nbytes
        del rec
    out[offset:] = TRAILER
    return out
