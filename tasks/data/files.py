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

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from tasks.data.parsing import MAX_USER_FILE_BYTES, Table, detect_format, read_table
from tasks.data.roles import check_carves
from tasks.data.specification import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_SELECTION_FRACTION,
    MAX_TEXT_COLUMNS,
    DataError,
    Problem,
    TaskSpec,
)

#: More distinct labels than this in a classification file almost always means a numeric score.
MAX_CLASSES = 1000


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
    fmt = detect_format(path, file_format)
    table = read_table(path, fmt, keep=(), head_rows=max_rows, max_bytes=max_bytes)
    columns = list(table.names)
    rows = [[row.get(c) for c in columns] for row in table.head]
    return {"format": fmt, "columns": columns, "rows": rows, "row_count": table.n_rows}


def _require_columns(table: Table, spec: TaskSpec, path: str) -> None:
    available = ", ".join(table.names) or "(none)"
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
    selection_path: str | Path | None = None,
    problem: Problem | None = None,
    name: str | None = None,
    metric: str | None = None,
    file_format: str | None = None,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    selection_fraction: float = DEFAULT_SELECTION_FRACTION,
    max_bytes: float = MAX_USER_FILE_BYTES,
) -> TaskSpec:
    """Validate a user's labelled file (and optional evaluation files) and describe it as a task.

    ``eval_path`` is the report set's file and ``selection_path`` the selection set's (see
    :mod:`tasks.data.roles`); each set without a file is held out of the labelled file
    (``holdout_fraction`` of it for the report set, then ``selection_fraction`` of the rest).

    ``problem`` None infers it: numeric labels that are not all integers, or more than 20 distinct
    integers, mean regression; anything else is classification. The label set is taken from the
    training file (numeric labels in numeric order) and the evaluation file may only use those
    labels. Raises :class:`DataError` naming the field for a missing file or column, an empty
    file, a non-UTF-8 file, a file over ``max_bytes``, a single-class label column, non-numeric
    regression labels, or too few rows to hold out the evaluation sets it lacks.

    Example:
        >>> spec = user_task("reviews.csv", text_columns=["text"], label_column="stars")  # doctest: +SKIP
    """
    path = str(path)
    text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    if not 1 <= len(text_columns) <= MAX_TEXT_COLUMNS:
        raise DataError("text_columns", f"choose one to three text columns, got {len(text_columns)}")
    if problem is not None and problem not in ("classification", "regression"):
        raise DataError("problem", f"must be classification or regression, got {problem!r}")
    fmt = detect_format(path, file_format)
    table = read_table(path, fmt, keep=(*text_columns, label_column), max_bytes=max_bytes)
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
        selection_path=str(Path(selection_path).resolve()) if selection_path is not None else None,
        file_format=fmt,
        holdout_fraction=holdout_fraction,
        selection_fraction=selection_fraction,
        description=f"user file {Path(path).name}",
    )
    # Full validation (label encoding) of every file now, so problems surface at upload time.
    table_to_dataset(table, spec, path)
    for field_name, other in (("eval_path", eval_path), ("selection_path", selection_path)):
        if other is not None:
            _check_other_file(str(other), field_name, spec, fmt, file_format, max_bytes)
    check_carves(
        table.n_rows,
        report_fraction=holdout_fraction if eval_path is None else None,
        selection_fraction=spec.selection_fraction if selection_path is None else None,
        what=path,
    )
    return spec


def _check_other_file(
    path: str, field_name: str, spec: TaskSpec, fmt: str, fmt_given: str | None, max_bytes: float
) -> None:
    """An evaluation or selection file: same format and columns as the training file, only known
    labels. Every problem is a DataError on ``field_name``, so the user learns which file it is."""
    try:
        other_fmt = detect_format(path, fmt_given)
    except DataError as exc:
        raise DataError(field_name, exc.message) from None
    if other_fmt != fmt:
        raise DataError(
            field_name,
            f"{path}: is {other_fmt.upper()} but the training file is {fmt.upper()}; give "
            "every file in the same format",
        )
    keep = (*spec.text_columns, spec.label_column)
    try:
        table_to_dataset(read_table(path, other_fmt, keep=keep, max_bytes=max_bytes), spec, path)
    except DataError as exc:
        raise DataError(field_name, exc.message) from None
