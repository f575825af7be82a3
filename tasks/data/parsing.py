"""Reading a CSV, TSV or JSONL file into columns: streamed, linear in its size, bounded.

Uploads come from strangers, so the reader never trusts a file's shape. It reads physical lines
one at a time (``\\n``, ``\\r\\n`` or ``\\r`` ends a line) and stops at the first line that breaks
one of the limits below, each refused with a :class:`DataError` that names the limit:

=====================  ===========  ==========================================================
limit                  value        why
=====================  ===========  ==========================================================
MAX_USER_FILE_BYTES    200 MiB      a worker's memory; the web passes its own, smaller limit
MAX_LINE_BYTES         1 MiB        one physical line; GLUE's longest is under 4 KiB
MAX_COLUMNS            256          header fields of a CSV/TSV, distinct keys over a JSONL file
MAX_ROWS               1,000,000    data rows; MNLI, the largest GLUE task, has 393k
MAX_JSON_DEPTH         32           nesting of a JSONL line's value (its object counts as 1)
=====================  ===========  ==========================================================

Every step costs time proportional to the bytes read (header duplicates through a set, JSONL
keys through a dict), and only the columns a caller keeps are stored, so memory is bounded by
the kept data rather than by rows x columns.

Example:
    >>> table = read_table("reviews.csv", "csv", keep={"text", "stars"})  # doctest: +SKIP
    >>> table.names, table.n_rows  # doctest: +SKIP
    (('text', 'extra', 'stars'), 30)
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tasks.data.specification import DataError

#: Largest user file accepted, in bytes; big enough for any GLUE-sized task, small enough to keep
#: a worker's memory bounded. The web side passes its own (smaller) limit as ``max_bytes``.
MAX_USER_FILE_BYTES = 200 * 1024 * 1024
#: Longest physical line, in bytes (line end included).
MAX_LINE_BYTES = 1024 * 1024
#: Most columns: header fields of a delimited file, distinct keys over all lines of a JSONL file.
MAX_COLUMNS = 256
#: Most data rows in one file.
MAX_ROWS = 1_000_000
#: Deepest nesting of one JSONL line: ``{"text": "x"}`` is 1, ``{"text": ["x"]}`` is 2.
MAX_JSON_DEPTH = 32
USER_FORMATS = ("csv", "tsv", "jsonl")

_CHUNK_BYTES = 64 * 1024


@dataclass
class Table:
    """The rows of one file: the kept columns' values, and the names of all columns.

    ``columns`` maps each kept column to its values (strings for CSV/TSV, JSON values for JSONL;
    a key missing from a JSONL line reads as None). ``names`` lists every column in file order,
    kept or not; ``head`` holds the first rows in full when the caller asked for them.
    """

    columns: dict[str, list[Any]]
    n_rows: int
    line_numbers: list[int]  # 1-based file line of each row, for error messages
    names: tuple[str, ...] = ()
    head: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = tuple(self.columns)


def detect_format(path: str, fmt: str | None) -> str:
    """``fmt`` checked, or the format the file name's extension says."""
    if fmt is not None:
        if fmt not in USER_FORMATS:
            raise DataError("file_format", f"must be one of {', '.join(USER_FORMATS)}, got {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("json", "ndjson"):
        return "jsonl"
    if suffix in USER_FORMATS:
        return suffix
    raise DataError(
        "path",
        f"{path}: cannot tell the format from {Path(path).suffix or 'no extension'!r}; "
        f"use .csv, .tsv or .jsonl (or pass file_format)",
    )


def read_table(
    path: str,
    fmt: str,
    *,
    header: tuple[str, ...] | None = None,
    keep: Collection[str],
    head_rows: int = 0,
    max_bytes: float = MAX_USER_FILE_BYTES,
) -> Table:
    """Stream ``path`` (format ``fmt``) into a :class:`Table`, enforcing the module's limits.

    ``header`` names the columns of a header-less delimited file. ``keep`` names the columns whose
    values are stored (with each row's line number); ``head_rows`` keeps that many first rows in
    full, for previews.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError("path", f"{path}: file not found")
    size = file.stat().st_size
    if size > max_bytes:
        raise _too_large(path, size, max_bytes)
    sink = _Sink(path, keep, head_rows)
    with file.open("rb") as stream:
        lines = _decoded_lines(stream, path, max_bytes)
        if fmt == "jsonl":
            _read_jsonl(lines, sink)
        else:
            _read_delimited(lines, sink, fmt, header)
    return sink.table()


def _too_large(path: str, size: float, max_bytes: float) -> DataError:
    return DataError(
        "path",
        f"{path}: too large: {size / 2**20:.1f} MiB, the limit is {max_bytes / 2**20:.0f} MiB",
    )


def _physical_lines(stream: BinaryIO, path: str, max_bytes: float) -> Iterator[list[bytes]]:
    """The file's lines with their line ends ("\\n", "\\r\\n" or "\\r"), a chunk's worth at a
    time, never holding more than one partial line beside the chunk."""
    pending = b""
    total = 0
    lines_before = 0
    while True:
        chunk = stream.read(_CHUNK_BYTES)
        total += len(chunk)
        if total > max_bytes:  # the file grew after it was measured
            raise _too_large(path, total, max_bytes)
        lines = (pending + chunk).splitlines(keepends=True)  # bytes: only \n, \r\n and \r
        pending = b""
        # An unfinished last line waits for the next chunk; so does one ending in "\r", which
        # may be the first half of a "\r\n" split across chunks.
        if chunk and lines and not lines[-1].endswith(b"\n"):
            pending = lines.pop()
        if len(pending) > MAX_LINE_BYTES:
            raise _line_too_long(path, lines_before + len(lines) + 1)
        yield lines
        lines_before += len(lines)
        if not chunk:
            return


def _line_too_long(path: str, number: int) -> DataError:
    return DataError(
        "path",
        f"{path}: line {number} is longer than {MAX_LINE_BYTES // 1024} KiB (MAX_LINE_BYTES); "
        "is this a text file with one row per line?",
    )


def _decoded_lines(stream: BinaryIO, path: str, max_bytes: float) -> Iterator[str]:
    number = 0
    for lines in _physical_lines(stream, path, max_bytes):
        if number == 0 and lines and lines[0][:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise DataError("path", f"{path}: the file is UTF-16; save it as UTF-8")
        for raw in lines:
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise _line_too_long(path, number)
            if b"\x00" in raw:
                raise DataError(
                    "path",
                    f"{path}: line {number} holds a NUL byte: not a text file (or UTF-16); "
                    "save it as UTF-8 text",
                )
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    "path",
                    f"{path}: bad encoding: byte 0x{raw[exc.start]:02x} at line {number} is not "
                    "UTF-8; save the file as UTF-8",
                ) from None
            yield line


class _Sink:
    """Collects rows: only the kept columns, the first ``head_rows`` rows, and the count."""

    def __init__(self, path: str, keep: Collection[str], head_rows: int) -> None:
        self.path = path
        self.keep = frozenset(keep)
        self.tracks_lines = bool(self.keep)
        self.head_rows = head_rows
        self.names: dict[str, None] = {}  # an ordered set
        self.columns: dict[str, list[Any]] = {}
        self.lines: list[int] = []
        self.head: list[dict[str, Any]] = []
        self.n_rows = 0
        self.seen_content = False

    def add_name(self, name: str, line: int) -> None:
        if name in self.names:
            return
        if len(self.names) == MAX_COLUMNS:
            raise DataError(
                "path",
                f"{self.path}: line {line}: more than {MAX_COLUMNS} columns (MAX_COLUMNS); "
                "keep only the text and label columns",
            )
        self.names[name] = None
        if name in self.keep:  # a JSONL key first seen late reads as None before
            self.columns[name] = [None] * self.n_rows

    def add_row(self, row: dict[str, Any], line: int) -> None:
        """A JSONL row: its kept keys' values (None where missing)."""
        self._count(line)
        if self.tracks_lines:
            for name, values in self.columns.items():
                values.append(row.get(name))
            self.lines.append(line)
        if len(self.head) < self.head_rows:
            self.head.append(row)

    def add_record(self, record: list[str], names: list[str], line: int) -> None:
        """A delimited row, its fields in the order of ``names``."""
        self._count(line)
        if self.tracks_lines:
            for index, name in enumerate(names):
                values = self.columns.get(name)
                if values is not None:
                    values.append(record[index])
            self.lines.append(line)
        if len(self.head) < self.head_rows:
            self.head.append(dict(zip(names, record)))

    def _count(self, line: int) -> None:
        if self.n_rows == MAX_ROWS:
            raise DataError(
                "path",
                f"{self.path}: line {line}: more than {MAX_ROWS:,} rows (MAX_ROWS); "
                "sub-sample the file before uploading it",
            )
        self.n_rows += 1

    def table(self) -> Table:
        if not self.seen_content:
            raise DataError("path", f"{self.path}: empty file")
        return Table(self.columns, self.n_rows, self.lines, tuple(self.names), self.head)


def _read_delimited(
    lines: Iterator[str], sink: _Sink, fmt: str, header: tuple[str, ...] | None
) -> None:
    # TSV follows the IANA convention (no quoting: fields hold no tabs or newlines); GLUE's files
    # contain stray double quotes that a quoting reader would glue into giant fields.
    if fmt == "tsv":
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines)
    names: list[str] | None = None
    if header:
        names = list(header)
        for name in names:
            sink.add_name(name, 0)
    try:
        for record in reader:
            if not "".join(record).strip():
                continue  # blank lines carry nothing
            sink.seen_content = True
            if names is None:
                names = _header(record, sink, reader.line_num)
                continue
            if len(record) != len(names):
                raise DataError(
                    "path",
                    f"{sink.path}: line {reader.line_num} has {len(record)} fields, the header "
                    f"has {len(names)}",
                )
            sink.add_record(record, names, reader.line_num)
    except csv.Error as exc:
        raise DataError(
            "path", f"{sink.path}: line {reader.line_num}: not valid {fmt.upper()}: {exc}"
        ) from None


def _header(record: list[str], sink: _Sink, line: int) -> list[str]:
    if len(record) > MAX_COLUMNS:
        raise DataError(
            "path",
            f"{sink.path}: line {line}: the header has {len(record):,} columns, more than "
            f"{MAX_COLUMNS} (MAX_COLUMNS); keep only the text and label columns",
        )
    names = [cell.strip() for cell in record]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise DataError("path", f"{sink.path}: header repeats column(s) {duplicates}")
    for name in names:
        sink.add_name(name, line)
    return names


def _read_jsonl(lines: Iterator[str], sink: _Sink) -> None:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        sink.seen_content = True
        record = _json_object(line, number, sink.path)
        # Columns are the union of keys; a key missing from some rows reads as None and is
        # reported by the column checks with its line number.
        for key in record:
            sink.add_name(key, number)
        sink.add_row(record, number)


def _json_object(line: str, number: int, path: str) -> dict[str, Any]:
    too_deep = DataError(
        "path",
        f"{path}: line {number}: nested deeper than {MAX_JSON_DEPTH} levels (MAX_JSON_DEPTH)",
    )
    try:
        record = json.loads(line)
    except RecursionError:
        raise too_deep from None
    except json.JSONDecodeError as exc:
        raise DataError("path", f"{path}: line {number}: not valid JSON: {exc.msg}") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise DataError("path", f"{path}: line {number}: not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        hint = ""
        if number == 1 and line.lstrip().startswith("["):
            hint = " (this looks like one JSON array: write JSON Lines, one object per line)"
        raise DataError("path", f"{path}: line {number}: expected a JSON object per line{hint}")
    # Only a line with more than one bracket can nest; most lines skip the walk.
    if line.count("{") + line.count("[") > 1 and json_depth(record) > MAX_JSON_DEPTH:
        raise too_deep
    return record


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0, [] is 1, [[1]] is 2), level by level
    (no recursion), stopping once it is past ``limit``."""
    depth, level = 0, [value]
    while depth <= limit:
        containers = [v for v in level if isinstance(v, (dict, list))]
        if not containers:
            break
        depth += 1
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return depth
