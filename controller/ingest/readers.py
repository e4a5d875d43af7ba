"""Readers that turn delivered bytes or files (CSV, JSON lines, Parquet) into Arrow tables.

Readers only parse; they never validate values (``validate`` does) and never touch the
database. A column whose values do not all parse as one type is kept as text, so one bad
value gets its row rejected instead of failing the whole file; a column that parses whole
(every CSV value a number, every JSON value of one type) is handed over typed, which is
what makes validation of text input fast.

JSON lines are parsed by Arrow's vectorised reader; a body it refuses (values of mixed
types in a column, a line that is not an object, invalid JSON) or that is not valid UTF-8 is
parsed again line by line, which keeps the per-row semantics and names the first unreadable
line. Bytes that are not UTF-8 never make a CSV or JSON-lines input unreadable: the row
holding them gets a problem (``validate.PROBLEM_COLUMN``) and keeps them escaped (``\\xff``).

``iter_file`` reads a file in chunks of a fixed number of rows and ``iter_chunks`` hands each
chunk over as the record batches it is read in, so memory stays bounded whatever the file's
size (docs/ingest.md, "Large files").
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import operator
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from controller.ingest import validate

FORMATS = ("csv", "jsonl", "parquet")
CHUNK_ROWS = 200_000  # rows per chunk of a file (``iter_file``); see docs/ingest.md
BATCH_ROWS = 16_384  # largest record batch read from a Parquet file (a chunk holds several)
# Columns that are text whatever they look like (Arrow would read an ISO date as a timestamp).
_TEXT_COLUMNS = ("experiment", "arm", "ts", "unit_id")
# Columns offered a typed reading of CSV text: kept as text unless the whole column parses.
_CSV_TYPED = {"revenue": pa.float64(), "latency_ms": pa.float64(), "error": pa.bool_()}
_JSON_SIMPLE = (pa.types.is_boolean, pa.types.is_integer, pa.types.is_floating, pa.types.is_string)


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


def iter_file(
    path: Path, fmt: str | None = None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pa.Table]:
    """Read a file as consecutive tables of exactly ``chunk_rows`` rows (the last may be shorter).

    Only about one chunk is held at a time: Parquet is read by record batches, CSV by
    Arrow's streaming reader, JSON lines by lines. Chunk boundaries depend only on the row
    count, never on how the reader happens to block the file. A missing file or an unknown
    format raises ``ReadError`` here; a part that is unreadable raises it (naming the file)
    when its chunk is reached.
    """
    fmt, batches = _tagged(path, fmt, chunk_rows)
    typed = _typed_text_csv if fmt == "csv" else _as_is
    return (
        typed(pa.Table.from_batches([batch for _, batch in group]))
        for _, group in itertools.groupby(batches, key=operator.itemgetter(0))
    )


def iter_chunks(
    path: Path, fmt: str | None = None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[Iterator[pa.Table]]:
    """The chunks of ``iter_file``, each as its parts, read only as the parts are consumed.

    A chunk is never held whole: its parts (Parquet record batches of at most
    ``BATCH_ROWS`` rows, CSV blocks, a JSON-lines chunk's table) are read one by one, and
    ``load.load`` takes the chunk as this iterator. Consume each chunk's parts before the
    next chunk. Errors as for ``iter_file``.
    """
    fmt, batches = _tagged(path, fmt, chunk_rows)
    typed = _typed_text_csv if fmt == "csv" else _as_is
    return (
        (typed(pa.Table.from_batches([batch])) for _, batch in group)
        for _, group in itertools.groupby(batches, key=operator.itemgetter(0))
    )


def _as_is(table: pa.Table) -> pa.Table:
    return table


def _typed_text_csv(table: pa.Table) -> pa.Table:
    return _typed_csv(_text_csv(table))


def _tagged(
    path: Path, fmt: str | None, chunk_rows: int
) -> tuple[str, Iterator[tuple[int, pa.RecordBatch]]]:
    """The file's format and its record batches, each with the number of its chunk; a batch
    never straddles two chunks. Opening errors raise here, reading errors when reached."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if not path.exists():
        raise ReadError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ReadError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if fmt == "parquet":
        try:
            source = pq.ParquetFile(path, buffer_size=1 << 16, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ReadError(f"{path}: not a readable Parquet file: {exc}") from exc
        return fmt, _split(_parquet_batches(path, source, chunk_rows), chunk_rows)
    if fmt == "csv":
        return fmt, _split(_csv_batches(path), chunk_rows)
    tables = _jsonl_chunks(path, chunk_rows)
    return fmt, ((n, b) for n, t in enumerate(tables) for b in t.to_batches() if b.num_rows)


def _parquet_batches(
    path: Path, source: pq.ParquetFile, chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    # record batches no larger than the loader's slices, read in one thread: the reader's
    # own buffers stay small and no per-thread allocator caches are filled
    try:
        yield from source.iter_batches(batch_size=min(chunk_rows, BATCH_ROWS), use_threads=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReadError(f"{path}: not a readable Parquet file: {exc}") from exc


def _split(
    batches: Iterable[pa.RecordBatch], chunk_rows: int
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Record batches of any sizes, cut where a chunk of ``chunk_rows`` rows ends (zero-copy
    slices), each with its 0-based chunk number."""
    number = used = 0
    for batch in batches:
        while batch.num_rows:
            take = min(batch.num_rows, chunk_rows - used)
            yield number, batch.slice(0, take)
            batch = batch.slice(take)
            used += take
            if used == chunk_rows:
                number, used = number + 1, 0


def _open_text(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _csv_options(header_line: bytes) -> pacsv.ConvertOptions:
    header = next(csv.reader([header_line.decode("utf-8", "replace").strip()]), [])
    return pacsv.ConvertOptions(  # bytes, made text by ``_text_csv`` (which checks UTF-8)
        column_types={name.strip(): pa.binary() for name in header},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )


def _csv_batches(path: Path) -> Iterator[pa.RecordBatch]:
    with _open_text(path) as handle:
        header = handle.readline()
        if not header.strip():
            raise ReadError(f"{path}: the CSV input is empty (a header line is required)")
        handle.seek(0)
        try:
            reader = pacsv.open_csv(
                handle,
                read_options=pacsv.ReadOptions(block_size=4 << 20),
                convert_options=_csv_options(header),
            )
            yield from reader
        except pa.ArrowInvalid as exc:
            raise ReadError(f"{path}: not a readable CSV file: {exc}") from exc


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    """Runs of lines holding ``chunk_rows`` objects (blank lines kept, so line numbers hold)."""
    lines: list[bytes] = []
    first = 1  # the file line number of lines[0]
    rows = 0
    any_rows = False
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not lines:
                first = number
            lines.append(line)
            if line.strip():
                rows += 1
                if rows == chunk_rows:
                    yield _read_jsonl_of(path, b"".join(lines), first)
                    lines, rows, any_rows = [], 0, True
    if rows or not any_rows:
        yield _read_jsonl_of(path, b"".join(lines), first)


def _read_jsonl_of(path: Path, data: bytes, first_line: int) -> pa.Table:
    try:
        return _read_jsonl(data, first_line=first_line)
    except ReadError as exc:
        raise ReadError(f"{path}: {exc}") from exc


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
    """CSV with numbers and flags typed where a whole column parses (else text); a row with
    another number of fields than the header is kept as an empty row at the end of the
    table, with its problem (line number, fields, text), and the columns stay text."""
    if not data.strip():
        raise ReadError("the CSV input is empty (a header line is required)")
    options = _csv_options(data.split(b"\n", 1)[0])
    ragged: list[str] = []

    def keep(row: pacsv.InvalidRow) -> str:
        where = f"line {row.number}" if row.number is not None else "a line"
        ragged.append(
            f"{where} has {row.actual_columns} field(s) where the header has "
            f"{row.expected_columns}: {validate.show(row.text.replace(_MARK, ''), 60)}"
        )
        return "skip"

    def read(threads: bool) -> pa.Table:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=threads),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=keep),
            convert_options=options,
        )

    # bytes that are not UTF-8 are escaped and marked first (Arrow could not show a ragged
    # row holding them); the marks become the rows' problems (``_unmark``)
    marked = not _is_utf8(data)
    if marked:
        data = _escape_bytes(data)
    try:
        table = read(True)
        if ragged:  # read again in one thread, which knows the line numbers
            ragged.clear()
            table = read(False)
    except pa.ArrowInvalid as exc:
        raise ReadError(f"not a readable CSV file: {_first_line(exc)}") from exc
    if not ragged:
        return _typed_csv(_unmark(_text_csv(table)) if marked else _text_csv(table))
    empty = pa.Table.from_arrays(
        [pa.nulls(len(ragged), f.type) for f in table.schema], schema=table.schema
    )
    problems = [None] * table.num_rows + ragged
    table = pa.concat_tables([table, empty])
    table = table.append_column(validate.PROBLEM_COLUMN, pa.array(problems, type=pa.string()))
    return _unmark(_text_csv(table)) if marked else _text_csv(table)


_MARK = "\ufdd0"  # a Unicode noncharacter: marks where ``_escape_bytes`` escaped a byte


def _is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 (checked by Arrow in place: no copy, no decoding)."""
    offsets = pa.py_buffer(struct.pack("<qq", 0, len(data)))
    text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _escape_bytes(data: bytes) -> bytes:
    """``data`` with each byte that is not part of valid UTF-8 as ``_MARK`` + ``\\xNN``."""
    text = data.decode("utf-8", "surrogateescape")
    return _RAW_BYTE.sub(lambda m: f"{_MARK}\\x{ord(m.group()) - 0xDC00:02x}", text).encode()


_RAW_BYTE = re.compile("[\udc80-\udcff]")


def _unmark(table: pa.Table) -> pa.Table:
    """Text columns with ``_MARK`` removed; each row that held it gets a problem (its value
    was not valid UTF-8) unless it has one."""
    problems: list[str | None] = (
        table[validate.PROBLEM_COLUMN].to_pylist()
        if validate.PROBLEM_COLUMN in table.column_names
        else [None] * table.num_rows
    )
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not pa.types.is_string(column.type) or name == validate.PROBLEM_COLUMN:
            columns.append(column)
            continue
        hit = pc.fill_null(pc.match_substring(column, _MARK), False).to_pylist()
        if any(hit):
            clean = pc.replace_substring(column, _MARK, "")
            for i, value in enumerate(clean.to_pylist()):
                if hit[i] and problems[i] is None:
                    problems[i] = (
                        f"{validate.show(name)} is not valid UTF-8 "
                        f"(kept with the bad bytes escaped: {validate.show(value, 60)})"
                    )
            column = clean
        columns.append(column)
    pairs = [
        (n.replace(_MARK, ""), c)
        for n, c in zip(table.column_names, columns, strict=True)
        if n != validate.PROBLEM_COLUMN
    ]
    if any(p is not None for p in problems):
        pairs.append((validate.PROBLEM_COLUMN, pa.chunked_array([pa.array(problems, pa.string())])))
    return pa.table([c for _, c in pairs], names=[n for n, _ in pairs])


def _text_csv(table: pa.Table) -> pa.Table:
    """The CSV's byte columns as text; a row with a value that is not valid UTF-8 gets a
    problem (so it is quarantined), and the value is kept with its bad bytes escaped
    (``\\xff``), so the stored copy shows them.

    Columns are read as bytes because Arrow refuses a whole CSV with one bad byte when it
    reads text; the cast back to text checks UTF-8 at C speed, and only a column that fails
    it is decoded value by value.
    """
    problems: list[str | None] | None = None
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
            columns.append(column)
            continue
        try:
            columns.append(pc.cast(column, pa.string()))
            continue
        except pa.ArrowInvalid:
            pass
        if problems is None:
            problems = [None] * table.num_rows
        text = []
        for i, value in enumerate(column.to_pylist()):
            if value is not None:
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    value = value.decode("utf-8", "backslashreplace")
                    problems[i] = problems[i] or (
                        f"{validate.show(name)} is not valid UTF-8 "
                        f"(kept with the bad bytes escaped: {validate.show(value, 60)})"
                    )
            text.append(value)
        columns.append(pa.array(text, type=pa.string()))
    table = pa.table(columns, names=table.column_names)
    if problems is None:
        return table
    if validate.PROBLEM_COLUMN in table.column_names:  # a ragged row's problem comes first
        index = table.column_names.index(validate.PROBLEM_COLUMN)
        given = table.column(index).to_pylist()
        merged = [g if g is not None else p for g, p in zip(given, problems, strict=True)]
        return table.set_column(index, validate.PROBLEM_COLUMN, pa.array(merged, pa.string()))
    return table.append_column(validate.PROBLEM_COLUMN, pa.array(problems, type=pa.string()))


def _typed_csv(table: pa.Table) -> pa.Table:
    """Numbers and flags typed where the whole column parses to finite values; else text.

    A column with a NaN or an infinity stays text, so its rejected rows are stored with
    the text as given (a float NaN has no JSON form).
    """
    for name, target in _CSV_TYPED.items():
        if table.column_names.count(name) != 1:
            continue
        index = table.column_names.index(name)
        try:
            typed = pc.cast(table.column(index), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if pa.types.is_floating(target) and pc.all(pc.is_finite(typed)).as_py() is False:
            continue
        table = table.set_column(index, name, typed)
    return table


def _read_jsonl(data: bytes, first_line: int = 1) -> pa.Table:
    # Arrow's JSON reader takes bytes that are not UTF-8 into its text as they are: such a
    # body goes line by line, where each line holding them is quarantined
    fast = _read_jsonl_vectorised(data) if _is_utf8(data) else None
    if fast is not None:
        return fast
    return _read_jsonl_rows(data, first_line)


def _read_jsonl_vectorised(data: bytes) -> pa.Table | None:
    """Arrow's JSON reader, or None when the body needs the line-by-line reader.

    The known text columns are declared as strings (only those whose name occurs in the
    body, so a missing column stays missing); others keep the type Arrow infers when it is
    a plain one (boolean, integer, float, string; a column of nulls becomes text) and, for
    floats, holds no NaN or infinity.
    """
    text = [pa.field(n, pa.string()) for n in _TEXT_COLUMNS if f'"{n}"'.encode() in data]
    try:
        table = pajson.read_json(
            io.BytesIO(data),
            read_options=pajson.ReadOptions(block_size=max(1 << 20, len(data) + 1)),
            parse_options=pajson.ParseOptions(
                explicit_schema=pa.schema(text), unexpected_field_behavior="infer"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_null(field.type):
            column = column.cast(pa.string())
        elif not any(check(field.type) for check in _JSON_SIMPLE):
            return None
        elif pa.types.is_floating(field.type) and pc.all(pc.is_finite(column)).as_py() is False:
            return None  # NaN or Infinity: as text, so a rejected row is stored as written
        if field.name in _TEXT_COLUMNS and column.null_count == len(column):
            return None  # the name occurs, but maybe never as a key: let the rows decide
        columns.append(column)
    if not table.num_rows:
        return None
    return pa.table(columns, names=table.column_names)


def _read_jsonl_rows(data: bytes, first_line: int) -> pa.Table:
    rows = []
    problems: list[str | None] = []
    for number, line in enumerate(data.splitlines(), start=first_line):
        if not line.strip():
            continue
        try:
            text, problem = line.decode("utf-8"), None
        except UnicodeDecodeError:  # parsed with the bad bytes escaped; the row quarantined
            text = line.decode("utf-8", "surrogateescape")
            problem = f"line {number} is not valid UTF-8 (kept with the bad bytes escaped)"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReadError(f"line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(value, dict):
            raise ReadError(f"line {number}: expected a JSON object per line")
        if problem is not None:
            value = {_unescaped(k): _unescaped(v) for k, v in value.items()}
        rows.append({k: _scalar(v) for k, v in value.items()})
        problems.append(problem)
    if not rows:
        raise ReadError("the JSON lines input has no rows")
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {}
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


def _unescaped(value: object) -> object:
    """A value parsed from a line decoded with ``surrogateescape``: each byte that was not
    UTF-8 as ``\\xNN`` text (a lone surrogate the JSON itself wrote is left for ``_cleaned``)."""
    if isinstance(value, str):
        return _RAW_BYTE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", value)
    if isinstance(value, dict):
        return {_unescaped(k): _unescaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescaped(v) for v in value]
    return value


def _scalar(value: object) -> object:
    """JSON values as text (booleans kept), so validation sees one type per column."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
