"""Readers that turn delivered bytes or files (CSV, JSON lines, Parquet) into Arrow tables.

Readers only parse; they never validate values (``validate`` does) and never touch the
database. Values are read as text where the format has no types, so one bad value gets
its row rejected instead of failing the whole file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from controller.ingest import validate

FORMATS = ("csv", "jsonl", "parquet")


class ReadError(validate.BatchRefused):
    """The input cannot be parsed as the named format (the batch is refused whole)."""


def _first_line(exc: Exception) -> str:
    """An Arrow error's message as one line (they may list a whole schema)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def detect_format(path: Path) -> str:
    """The format implied by a file name (``.csv``, ``.jsonl``/``.ndjson``/``.json``, ``.parquet``)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ReadError(
        f"{path}: cannot tell the format from the extension; pass --format csv|jsonl|parquet"
    )


def read_bytes(data: bytes, fmt: str) -> pa.Table:
    """Parse ``data`` in format ``fmt`` into a table."""
    if fmt == "csv":
        return _read_csv(data)
    if fmt == "jsonl":
        return _read_jsonl(data)
    if fmt == "parquet":
        try:
            return pq.ParquetFile(io.BytesIO(data)).read()
        except (pa.ArrowException, OSError) as exc:
            raise ReadError(f"not a readable Parquet file: {_first_line(exc)}") from exc
    raise ReadError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def read_file(path: Path, fmt: str | None = None) -> pa.Table:
    """Read a file (format from its extension unless given)."""
    if not path.exists():
        raise ReadError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt == "parquet":
        try:
            return pq.ParquetFile(path).read()
        except (pa.ArrowException, OSError) as exc:
            raise ReadError(f"{path}: not a readable Parquet file: {_first_line(exc)}") from exc
    return read_bytes(path.read_bytes(), fmt)


def _read_csv(data: bytes) -> pa.Table:
    """CSV as text columns; a row with another number of fields than the header is kept as
    an empty row at the end of the table, with its problem (line number, fields, text)."""
    if not data.strip():
        raise ReadError("the CSV input is empty (a header line is required)")
    header = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",")
    types = {name.strip(): pa.string() for name in header}
    ragged: list[str] = []

    def keep(row: pacsv.InvalidRow) -> str:
        where = f"line {row.number}" if row.number is not None else "a line"
        ragged.append(
            f"{where} has {row.actual_columns} field(s) where the header has "
            f"{row.expected_columns}: {validate.show(row.text, 60)}"
        )
        return "skip"

    def read(threads: bool) -> pa.Table:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=threads),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=keep),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        table = read(True)
        if ragged:  # read again in one thread, which knows the line numbers
            ragged.clear()
            table = read(False)
    except pa.ArrowInvalid as exc:
        raise ReadError(f"not a readable CSV file: {_first_line(exc)}") from exc
    if not ragged:
        return table
    empty = pa.Table.from_arrays(
        [pa.nulls(len(ragged), f.type) for f in table.schema], schema=table.schema
    )
    problems = [None] * table.num_rows + ragged
    table = pa.concat_tables([table, empty])
    return table.append_column(validate.PROBLEM_COLUMN, pa.array(problems, type=pa.string()))


def _read_jsonl(data: bytes) -> pa.Table:
    rows = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReadError(f"line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(value, dict):
            raise ReadError(f"line {number}: expected a JSON object per line")
        rows.append({k: _scalar(v) for k, v in value.items()})
    if not rows:
        raise ReadError("the JSON lines input has no rows")
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {}
    problems: list[str | None] = [None] * len(rows)
    for name in names:
        values = [row.get(name) for row in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds == {bool}:
            columns[name] = pa.array(values, type=pa.bool_())
            continue
        values = [str(v).lower() if isinstance(v, bool) else v for v in values]
        try:
            columns[name] = pa.array(values, type=pa.string())
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): the row is quarantined
            columns[name] = pa.array(_cleaned(values, name, problems), type=pa.string())
    columns = {validate.without_surrogates(k): v for k, v in columns.items()}
    if any(p is not None for p in problems):
        columns[validate.PROBLEM_COLUMN] = pa.array(problems, type=pa.string())
    return pa.table(columns)


def _cleaned(values: list[object], name: str, problems: list[str | None]) -> list[object]:
    """``values`` with lone surrogates replaced; each such row gets its problem noted."""
    out = []
    for i, v in enumerate(values):
        if isinstance(v, str):
            clean = validate.without_surrogates(v)
            if clean != v and problems[i] is None:
                problems[i] = f"{validate.show(name)} is not valid Unicode (a lone surrogate)"
            v = clean
        out.append(v)
    return out


def _scalar(value: object) -> object:
    """JSON values as text (booleans kept), so validation sees one type per column."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
