"""User files: reading CSV, TSV and JSONL into columns, validating them against a task.

:func:`preview_user_file` shows an upload's columns and first rows so the user can pick the text
and label columns; :func:`user_task` validates the file (and an optional evaluation file) in full
and describes it as a :class:`~tasks.data.specification.TaskSpec` with ``source="upload"``.
Every problem is a :class:`DataError` naming the field and, where it helps, the line.

Example:
    >>> spec = user_task("reviews.csv", text_columns=["text"], label_column="stars")  # doctest: +SKIP
    >>> spec.labels  # doctest: +SKIP
    ('neg', 'pos')
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from tasks.data.specification import DEFAULT_HOLDOUT_FRACTION, DataError, Problem, TaskSpec

#: Largest user file accepted, in bytes; big enough for any GLUE-sized task, small enough to keep
#: a worker's memory bounded.
MAX_USER_FILE_BYTES = 200 * 1024 * 1024
#: More distinct labels than this in a classification file almost always means a numeric score.
MAX_CLASSES = 1000
USER_FORMATS = ("csv", "tsv", "jsonl")


@dataclass
class Table:
    """Rows of one file as columns of strings (JSONL values are stringified later as needed)."""

    columns: dict[str, list[Any]]
    n_rows: int
    line_numbers: list[int]  # 1-based file line of each row, for error messages


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            "path",
            f"{path}: bad encoding: byte 0x{raw[exc.start]:02x} at line {line} is not UTF-8; "
            "save the file as UTF-8",
        ) from None


def _read_delimited(text: str, path: str, fmt: str, header: tuple[str, ...] | None) -> Table:
    # TSV follows the IANA convention (no quoting: fields hold no tabs or newlines); GLUE's files
    # contain stray double quotes that a quoting reader would glue into giant fields.
    if fmt == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    columns_names: list[str] | None = list(header) if header else None
    columns: dict[str, list[Any]] = {}
    lines: list[int] = []
    try:
        for record in reader:
            if not record or all(not cell.strip() for cell in record):
                continue  # blank lines carry nothing
            if columns_names is None:
                columns_names = [cell.strip() for cell in record]
                duplicates = sorted({c for c in columns_names if columns_names.count(c) > 1})
                if duplicates:
                    raise DataError("path", f"{path}: header repeats column(s) {duplicates}")
                columns = {name: [] for name in columns_names}
                continue
            if not columns:
                columns = {name: [] for name in columns_names}
            if len(record) != len(columns_names):
                raise DataError(
                    "path",
                    f"{path}: line {reader.line_num} has {len(record)} fields, the header has "
                    f"{len(columns_names)}",
                )
            for name, cell in zip(columns_names, record):
                columns[name].append(cell)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(
            "path", f"{path}: line {reader.line_num}: not valid {fmt.upper()}: {exc}"
        ) from None
    if columns_names is None:
        raise DataError("path", f"{path}: empty file")
    if not columns:
        columns = {name: [] for name in columns_names}
    return Table(columns, len(lines), lines)


def _read_jsonl(text: str, path: str) -> Table:
    columns: dict[str, list[Any]] = {}
    lines: list[int] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError("path", f"{path}: line {line_no}: not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            hint = ""
            if line_no == 1 and line.lstrip().startswith("["):
                hint = " (this looks like one JSON array: write JSON Lines, one object per line)"
            raise DataError(
                "path", f"{path}: line {line_no}: expected a JSON object per line{hint}"
            )
        # Columns are the union of keys; a key missing from some rows reads as None and is
        # reported by the column checks with its line number.
        for key in record:
            if key not in columns:
                columns[key] = [None] * len(lines)
        for key, values in columns.items():
            values.append(record.get(key))
        lines.append(line_no)
    if not lines:
        raise DataError("path", f"{path}: empty file")
    return Table(columns, len(lines), lines)


def _file_format(path: str, fmt: str | None) -> str:
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
    max_bytes: int = MAX_USER_FILE_BYTES,
) -> Table:
    file = Path(path)
    if not file.is_file():
        raise DataError("path", f"{path}: file not found")
    size = file.stat().st_size
    if size > max_bytes:
        raise DataError(
            "path",
            f"{path}: too large: {size / 2**20:.1f} MiB, the limit is {max_bytes / 2**20:.0f} MiB",
        )
    raw = file.read_bytes()
    if not raw.strip():
        raise DataError("path", f"{path}: empty file")
    text = _decode(raw, path)
    if fmt == "jsonl":
        return _read_jsonl(text, path)
    return _read_delimited(text, path, fmt, header)


def preview_user_file(
    path: str | Path,
    *,
    max_rows: int = 5,
    file_format: str | None = None,
    max_bytes: int = MAX_USER_FILE_BYTES,
) -> dict[str, Any]:
    """Format, columns, first rows and row count of a user file, for an upload form.

    Raises :class:`DataError` for an unreadable file (format, encoding, size, empty) before the
    user picks columns; :func:`user_task` does the full validation once they have.
    """
    path = str(path)
    fmt = _file_format(path, file_format)
    table = read_table(path, fmt, max_bytes=max_bytes)
    columns = list(table.columns)
    rows = [[table.columns[c][i] for c in columns] for i in range(min(max_rows, table.n_rows))]
    return {"format": fmt, "columns": columns, "rows": rows, "row_count": table.n_rows}


def _require_columns(table: Table, spec: TaskSpec, path: str) -> None:
    available = ", ".join(table.columns) or "(none)"
    for column in spec.text_columns:
        if column not in table.columns:
            raise DataError(
                "text_columns", f"{path}: column {column!r} not found; the file has: {available}"
            )
    if spec.label_column not in table.columns:
        raise DataError(
            "label_column",
            f"{path}: column {spec.label_column!r} not found; the file has: {available}",
        )
    if table.n_rows == 0:
        raise DataError("path", f"{path}: empty file: a header but no data rows")
    for column in (*spec.text_columns, spec.label_column):
        for value, line in zip(table.columns[column], table.line_numbers):
            if value is None or (isinstance(value, str) and not value.strip()):
                what = "label_column" if column == spec.label_column else "text_columns"
                raise DataError(what, f"{path}: line {line}: column {column!r} is empty")


def label_text(value: Any) -> str:
    # JSON numbers: 1 and 1.0 are the same class; strings are kept verbatim (stripped).
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _regression_values(table: Table, spec: TaskSpec, path: str) -> list[float]:
    values = []
    for raw, line in zip(table.columns[spec.label_column], table.line_numbers):
        try:
            number = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise DataError(
                "label_column",
                f"{path}: line {line}: label {raw!r} is not a finite number; regression labels "
                "must be numeric",
            )
        values.append(number)
    return values


def table_to_dataset(table: Table, spec: TaskSpec, path: str) -> Dataset:
    """Validate the table against ``spec`` and build a Dataset with an encoded ``label`` column."""
    _require_columns(table, spec, path)
    data: dict[str, list[Any]] = {c: [str(v) for v in table.columns[c]] for c in spec.text_columns}
    if spec.problem == "regression":
        data["label"] = _regression_values(table, spec, path)
    else:
        index = {label: i for i, label in enumerate(spec.labels)}
        encoded = []
        for raw, line in zip(table.columns[spec.label_column], table.line_numbers):
            label = label_text(raw)
            if label not in index:
                raise DataError(
                    "label_column",
                    f"{path}: line {line}: label {label!r} is not one of {list(spec.labels)}",
                )
            encoded.append(index[label])
        data["label"] = encoded
    return Dataset.from_dict(data)


# --- user files -----------------------------------------------------------------------------


def sorted_labels(values: Iterable[str]) -> tuple[str, ...]:
    distinct = set(values)
    try:  # numeric labels in numeric order ("2" before "10"), others alphabetically
        return tuple(sorted(distinct, key=float))
    except ValueError:
        return tuple(sorted(distinct))


def _infer_problem(labels: Sequence[Any]) -> Problem:
    texts = [label_text(v) for v in labels]
    try:
        numbers = [float(t) for t in texts]
    except ValueError:
        return "classification"
    if all(n.is_integer() for n in numbers) and len(set(texts)) <= 20:
        return "classification"
    return "regression"


def user_task(
    path: str | Path,
    *,
    text_columns: Sequence[str],
    label_column: str,
    eval_path: str | Path | None = None,
    problem: Problem | None = None,
    name: str | None = None,
    metric: str | None = None,
    file_format: str | None = None,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    max_bytes: int = MAX_USER_FILE_BYTES,
) -> TaskSpec:
    """Validate a user's labelled file (and optional evaluation file) and describe it as a task.

    ``problem`` None infers it: numeric labels that are not all integers, or more than 20 distinct
    integers, mean regression; anything else is classification. The label set is taken from the
    training file (numeric labels in numeric order) and the evaluation file may only use those
    labels. Raises :class:`DataError` naming the field for a missing file or column, an empty
    file, a non-UTF-8 file, a file over ``max_bytes``, a single-class label column, non-numeric
    regression labels, or too few rows to hold out an evaluation split.

    Example:
        >>> spec = user_task("reviews.csv", text_columns=["text"], label_column="stars")  # doctest: +SKIP
    """
    path = str(path)
    text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    if not text_columns:
        raise DataError("text_columns", "name at least one text column")
    if problem is not None and problem not in ("classification", "regression"):
        raise DataError("problem", f"must be classification or regression, got {problem!r}")
    fmt = _file_format(path, file_format)
    table = read_table(path, fmt, max_bytes=max_bytes)
    # Check columns with a provisional spec before inferring anything from the labels.
    provisional = TaskSpec(
        name=name or Path(path).stem,
        text_columns=text_columns,
        label_column=label_column,
        problem="classification",
        metric="accuracy",
        source="upload",
    )
    _require_columns(table, provisional, path)
    raw_labels = table.columns[label_column]
    problem = problem or _infer_problem(raw_labels)
    labels: tuple[str, ...] = ()
    if problem == "classification":
        labels = sorted_labels(label_text(v) for v in raw_labels)
        if len(labels) < 2:
            raise DataError(
                "label_column",
                f"{path}: every row has the label {labels[0]!r}; classification needs at least two classes",
            )
        if len(labels) > MAX_CLASSES:
            raise DataError(
                "label_column",
                f"{path}: {len(labels)} distinct labels; if this is a score, pass problem='regression'",
            )
    else:
        values = _regression_values(table, provisional, path)
        if min(values) == max(values):
            raise DataError(
                "label_column",
                f"{path}: every row has the score {values[0]}; correlation metrics need varied labels",
            )
    default_metric = "pearson_spearman" if problem == "regression" else "accuracy"
    spec = TaskSpec(
        name=name or Path(path).stem,
        text_columns=text_columns,
        label_column=label_column,
        problem=problem,
        metric=metric or default_metric,
        source="upload",
        labels=labels,
        label_names=labels,
        train_path=str(Path(path).resolve()),
        eval_path=str(Path(eval_path).resolve()) if eval_path is not None else None,
        file_format=fmt,
        holdout_fraction=holdout_fraction,
        description=f"user file {Path(path).name}",
    )
    # Full validation (label encoding) of both files now, so problems surface at upload time.
    table_to_dataset(table, spec, path)
    if eval_path is not None:
        eval_fmt = _file_format(str(eval_path), file_format)
        if eval_fmt != fmt:
            raise DataError(
                "eval_path",
                f"{eval_path}: is {eval_fmt.upper()} but the training file is "
                f"{fmt.upper()}; give both files in the same format",
            )
        table_to_dataset(
            read_table(str(eval_path), eval_fmt, max_bytes=max_bytes), spec, str(eval_path)
        )
    else:
        _check_holdout(table.n_rows, holdout_fraction, path)
    return spec


def _check_holdout(n_rows: int, fraction: float, path: str) -> None:
    n_eval = holdout_size(n_rows, fraction)
    if n_eval < 1 or n_rows - n_eval < 1:
        raise DataError(
            "path",
            f"{path}: {n_rows} rows are too few to hold out {fraction:.0%} for evaluation; "
            "add rows or give an evaluation file",
        )


def holdout_size(n_rows: int, fraction: float) -> int:
    return round(n_rows * fraction)

