"""Task data for PEFS: bundled GLUE files, user files and hub datasets, tokenised and cached.

Three kinds of task, all described by one frozen :class:`TaskSpec`:

* **bundled** GLUE tasks shipped in ``tasks/glue`` (see ``tasks/glue/MANIFEST.tsv`` for provenance,
  checksums, licences and quirks): cola, sst2, mrpc, rte, stsb, qnli, wnli. GLUE test labels are not
  public, so the GLUE dev set is the evaluation split and what PEFS reports. QNLI's train file is
  not available offline: its dev file is split deterministically into train and eval halves, and
  the result notes say so.
* **file** tasks from a user's CSV, TSV or JSONL with named text column(s) and a label column,
  validated up front by :func:`user_task` with errors that name the problem (:class:`DataError`).
  Without a separate evaluation file, a deterministic 10% of the rows is held out for evaluation.
* **hub** tasks loaded with ``datasets.load_dataset`` when the Hugging Face Hub is reachable
  (:func:`hub_task`). MNLI and QQP are registered this way: their GLUE files are too large for
  every offline snapshot, so without hub access they raise a :class:`DataError` that says to upload
  a user file or allow hub access.

Loading (:func:`load_task`) gives ``datasets.Dataset`` splits with the text columns plus an integer
(classification) or float (regression) ``label`` column; :func:`encode_task` tokenises them with
the backbone's tokenizer (single sentences or pairs, truncated to ``max_length``, unpadded: the
trainer pads per batch) and keeps the result in a small in-memory LRU cache keyed by
(task, tokenizer, max_length, train_examples, sample_seed), so the trials of a search that share a
task and backbone tokenise once per worker process.

Example:
    >>> data = load_task("rte", train_examples=100)
    >>> len(data.train), len(data.eval), data.spec.labels
    (100, 277, ('entailment', 'not_entailment'))
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
from datasets import Dataset

from tasks.metrics import METRIC_KEYS

BUNDLED_DIR = Path(__file__).resolve().parent / "glue"

#: Largest user file accepted, in bytes; big enough for any GLUE-sized task, small enough to keep
#: a worker's memory bounded.
MAX_USER_FILE_BYTES = 200 * 1024 * 1024
#: Share of a task's only labelled file held out for evaluation when no evaluation file exists.
DEFAULT_HOLDOUT_FRACTION = 0.1
#: Seed for the deterministic train/eval split of a single labelled file. Fixed (not the trial
#: seed) so that every trial of a search is scored on the same held-out rows.
SPLIT_SEED = 0
#: More distinct labels than this in a classification file almost always means a numeric score.
MAX_CLASSES = 1000
USER_FORMATS = ("csv", "tsv", "jsonl")

Problem = Literal["classification", "regression"]
Source = Literal["bundled", "file", "hub"]


class DataError(ValueError):
    """Unusable task data; ``field`` names what is wrong (e.g. ``label_column``, ``path``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to load, encode and score one task. JSON-safe via :meth:`to_dict`.

    ``labels`` lists the raw label values (as strings) in class-id order; empty for regression and
    for hub tasks whose label set is read from the hub at load time.
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    problem: Problem
    metric: str
    source: Source
    labels: tuple[str, ...] = ()
    label_names: tuple[str, ...] = ()
    train_path: str | None = None
    eval_path: str | None = None
    file_format: str = "tsv"
    #: Column names for header-less files (CoLA); None means the first row is the header.
    file_columns: tuple[str, ...] | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    available_offline: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise DataError("name", "must not be empty")
        if not 1 <= len(self.text_columns) <= 2:
            raise DataError(
                "text_columns", f"need one or two columns, got {list(self.text_columns)}"
            )
        if self.label_column in self.text_columns:
            raise DataError("label_column", f"{self.label_column!r} is also a text column")
        if self.problem not in ("classification", "regression"):
            raise DataError(
                "problem", f"must be classification or regression, got {self.problem!r}"
            )
        if self.metric not in METRIC_KEYS:
            raise DataError(
                "metric", f"unknown metric {self.metric!r}; known: {', '.join(METRIC_KEYS)}"
            )
        if (self.metric == "pearson_spearman") != (self.problem == "regression"):
            raise DataError("metric", f"{self.metric!r} does not fit a {self.problem} task")
        if self.problem == "regression" and self.labels:
            raise DataError("labels", "a regression task has no label set")
        if self.labels and len(set(self.labels)) != len(self.labels):
            raise DataError("labels", f"repeated values in {list(self.labels)}")
        if self.metric == "f1_accuracy" and self.labels and len(self.labels) != 2:
            raise DataError("metric", "f1_accuracy needs a binary task")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise DataError("holdout_fraction", f"must be in (0, 1), got {self.holdout_fraction!r}")

    @property
    def num_labels(self) -> int:
        """Head outputs: the number of classes, or 1 for regression."""
        return 1 if self.problem == "regression" else len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (tuples become lists); :meth:`from_dict` inverts it."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSpec:
        """Inverse of :meth:`to_dict`; unknown or missing fields raise DataError naming them."""
        if not isinstance(d, Mapping):
            raise DataError("task", f"a task spec must be an object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        for required in ("name", "text_columns", "label_column", "problem", "metric", "source"):
            if required not in d:
                raise DataError(required, "is required in a task spec")
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(unknown[0], "unknown TaskSpec field")
        values = dict(d)
        for key in ("text_columns", "labels", "label_names", "file_columns"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def _glue(
    name: str,
    *,
    directory: str,
    text_columns: tuple[str, ...],
    label_column: str,
    metric: str,
    labels: tuple[str, ...],
    label_names: tuple[str, ...],
    description: str,
    train: bool = True,
    file_columns: tuple[str, ...] | None = None,
    holdout: float = 0.1,
) -> TaskSpec:
    return TaskSpec(
        name=name,
        text_columns=text_columns,
        label_column=label_column,
        problem="regression" if metric == "pearson_spearman" else "classification",
        metric=metric,
        source="bundled",
        labels=labels,
        label_names=label_names,
        train_path=f"{directory}/train.tsv" if train else None,
        eval_path=f"{directory}/dev.tsv",
        file_columns=file_columns,
        holdout_fraction=holdout,
        description=description,
    )


#: The GLUE tasks PEFS knows by name. MNLI and QQP need the hub (not available offline).
# One task per block reads better than one argument per line:
# fmt: off
GLUE_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue(
            "cola", directory="CoLA", text_columns=("sentence",), label_column="label",
            metric="matthews", labels=("0", "1"), label_names=("unacceptable", "acceptable"),
            description="CoLA: grammatical acceptability (Matthews corr.)",
            file_columns=("source", "label", "original_label", "sentence"),
        ),
        _glue(
            "sst2", directory="SST-2", text_columns=("sentence",), label_column="label",
            metric="accuracy", labels=("0", "1"), label_names=("negative", "positive"),
            description="SST-2: movie review sentiment (accuracy)",
        ),
        _glue(
            "mrpc", directory="MRPC", text_columns=("#1 String", "#2 String"),
            label_column="Quality", metric="f1_accuracy", labels=("0", "1"),
            label_names=("not_equivalent", "equivalent"),
            description="MRPC: paraphrase pairs (F1 and accuracy)",
        ),
        _glue(
            "rte", directory="RTE", text_columns=("sentence1", "sentence2"), label_column="label",
            metric="accuracy", labels=("entailment", "not_entailment"),
            label_names=("entailment", "not_entailment"),
            description="RTE: textual entailment (accuracy)",
        ),
        _glue(
            "stsb", directory="STS-B", text_columns=("sentence1", "sentence2"),
            label_column="score", metric="pearson_spearman", labels=(), label_names=(),
            description="STS-B: sentence similarity 0-5 (Pearson and Spearman)",
        ),
        # Only QNLI's dev file is available offline; half of it becomes the training split.
        _glue(
            "qnli", directory="QNLI", text_columns=("question", "sentence"), label_column="label",
            metric="accuracy", labels=("entailment", "not_entailment"),
            label_names=("entailment", "not_entailment"),
            description="QNLI: question/answer-sentence entailment (accuracy; dev split in halves)",
            train=False, holdout=0.5,
        ),
        _glue(
            "wnli", directory="WNLI", text_columns=("sentence1", "sentence2"),
            label_column="label", metric="accuracy", labels=("0", "1"),
            label_names=("not_entailment", "entailment"),
            description="WNLI: Winograd pronoun entailment (accuracy)",
        ),
        TaskSpec(
            name="mnli",
            text_columns=("premise", "hypothesis"),
            label_column="label",
            problem="classification",
            metric="accuracy",
            source="hub",
            labels=("0", "1", "2"),
            label_names=("entailment", "neutral", "contradiction"),
            hub_id="nyu-mll/glue",
            hub_config="mnli",
            eval_split="validation_matched",
            available_offline=False,
            description="MNLI: multi-genre NLI (accuracy, matched dev); needs hub access",
        ),
        TaskSpec(
            name="qqp",
            text_columns=("question1", "question2"),
            label_column="label",
            problem="classification",
            metric="f1_accuracy",
            source="hub",
            labels=("0", "1"),
            label_names=("not_duplicate", "duplicate"),
            hub_id="nyu-mll/glue",
            hub_config="qqp",
            available_offline=False,
            description="QQP: duplicate questions (F1 and accuracy); needs hub access",
        ),
    )
}
# fmt: on


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def task_names(*, offline_only: bool = False) -> list[str]:
    """Registered GLUE task names, optionally only those whose data ships with PEFS."""
    return [n for n, s in GLUE_TASKS.items() if s.available_offline or not offline_only]


def get_task(name: str) -> TaskSpec:
    """The registered task ``name`` (case, ``-`` and ``_`` ignored: "SST-2" finds sst2)."""
    spec = GLUE_TASKS.get(_normalise_name(name))
    if spec is None:
        raise DataError(
            "task",
            f"unknown task {name!r}; known: {', '.join(GLUE_TASKS)} "
            "(or describe a user file with user_task / a hub dataset with hub_task)",
        )
    return spec


def resolve_task(task: str | TaskSpec | Mapping[str, Any]) -> TaskSpec:
    """A TaskSpec for a registered name, a spec, or a spec's ``to_dict()`` (as stored on Task rows)."""
    if isinstance(task, TaskSpec):
        return task
    if isinstance(task, str):
        return get_task(task)
    if isinstance(task, Mapping):
        return TaskSpec.from_dict(task)
    raise DataError(
        "task", f"expected a task name, TaskSpec or spec dict, got {type(task).__name__}"
    )


# --- reading files ---------------------------------------------------------------------------


@dataclass
class _Table:
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


def _read_delimited(text: str, path: str, fmt: str, header: tuple[str, ...] | None) -> _Table:
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
    return _Table(columns, len(lines), lines)


def _read_jsonl(text: str, path: str) -> _Table:
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
    return _Table(columns, len(lines), lines)


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


def _read_table(
    path: str,
    fmt: str,
    *,
    header: tuple[str, ...] | None = None,
    max_bytes: int = MAX_USER_FILE_BYTES,
) -> _Table:
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
    table = _read_table(path, fmt, max_bytes=max_bytes)
    columns = list(table.columns)
    rows = [[table.columns[c][i] for c in columns] for i in range(min(max_rows, table.n_rows))]
    return {"format": fmt, "columns": columns, "rows": rows, "row_count": table.n_rows}


def _require_columns(table: _Table, spec: TaskSpec, path: str) -> None:
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


def _label_text(value: Any) -> str:
    # JSON numbers: 1 and 1.0 are the same class; strings are kept verbatim (stripped).
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _regression_values(table: _Table, spec: TaskSpec, path: str) -> list[float]:
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


def _to_dataset(table: _Table, spec: TaskSpec, path: str) -> Dataset:
    """Validate the table against ``spec`` and build a Dataset with an encoded ``label`` column."""
    _require_columns(table, spec, path)
    data: dict[str, list[Any]] = {c: [str(v) for v in table.columns[c]] for c in spec.text_columns}
    if spec.problem == "regression":
        data["label"] = _regression_values(table, spec, path)
    else:
        index = {label: i for i, label in enumerate(spec.labels)}
        encoded = []
        for raw, line in zip(table.columns[spec.label_column], table.line_numbers):
            label = _label_text(raw)
            if label not in index:
                raise DataError(
                    "label_column",
                    f"{path}: line {line}: label {label!r} is not one of {list(spec.labels)}",
                )
            encoded.append(index[label])
        data["label"] = encoded
    return Dataset.from_dict(data)


# --- user files -----------------------------------------------------------------------------


def _sorted_labels(values: Iterable[str]) -> tuple[str, ...]:
    distinct = set(values)
    try:  # numeric labels in numeric order ("2" before "10"), others alphabetically
        return tuple(sorted(distinct, key=float))
    except ValueError:
        return tuple(sorted(distinct))


def _infer_problem(labels: Sequence[Any]) -> Problem:
    texts = [_label_text(v) for v in labels]
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
    table = _read_table(path, fmt, max_bytes=max_bytes)
    # Check columns with a provisional spec before inferring anything from the labels.
    provisional = TaskSpec(
        name=name or Path(path).stem,
        text_columns=text_columns,
        label_column=label_column,
        problem="classification",
        metric="accuracy",
        source="file",
    )
    _require_columns(table, provisional, path)
    raw_labels = table.columns[label_column]
    problem = problem or _infer_problem(raw_labels)
    labels: tuple[str, ...] = ()
    if problem == "classification":
        labels = _sorted_labels(_label_text(v) for v in raw_labels)
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
        source="file",
        labels=labels,
        label_names=labels,
        train_path=str(Path(path).resolve()),
        eval_path=str(Path(eval_path).resolve()) if eval_path is not None else None,
        file_format=fmt,
        holdout_fraction=holdout_fraction,
        description=f"user file {Path(path).name}",
    )
    # Full validation (label encoding) of both files now, so problems surface at upload time.
    _to_dataset(table, spec, path)
    if eval_path is not None:
        eval_fmt = _file_format(str(eval_path), file_format)
        if eval_fmt != fmt:
            raise DataError(
                "eval_path",
                f"{eval_path}: is {eval_fmt.upper()} but the training file is "
                f"{fmt.upper()}; give both files in the same format",
            )
        _to_dataset(
            _read_table(str(eval_path), eval_fmt, max_bytes=max_bytes), spec, str(eval_path)
        )
    else:
        _check_holdout(table.n_rows, holdout_fraction, path)
    return spec


def _check_holdout(n_rows: int, fraction: float, path: str) -> None:
    n_eval = _holdout_size(n_rows, fraction)
    if n_eval < 1 or n_rows - n_eval < 1:
        raise DataError(
            "path",
            f"{path}: {n_rows} rows are too few to hold out {fraction:.0%} for evaluation; "
            "add rows or give an evaluation file",
        )


def _holdout_size(n_rows: int, fraction: float) -> int:
    return round(n_rows * fraction)


# --- hub datasets -------------------------------------------------------------------------


def hub_task(
    hub_id: str,
    *,
    text_columns: Sequence[str],
    label_column: str = "label",
    config: str | None = None,
    train_split: str = "train",
    eval_split: str = "validation",
    problem: Problem = "classification",
    metric: str | None = None,
    name: str | None = None,
) -> TaskSpec:
    """Describe a Hugging Face Hub dataset as a task; it is downloaded by :func:`load_task`.

    The label set is read from the dataset at load time (``ClassLabel`` names or distinct values).
    """
    if not hub_id or not isinstance(hub_id, str):
        raise DataError("hub_id", "must be a dataset id such as 'nyu-mll/glue'")
    text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    return TaskSpec(
        name=name or (f"{hub_id}:{config}" if config else hub_id),
        text_columns=text_columns,
        label_column=label_column,
        problem=problem,
        metric=metric or ("pearson_spearman" if problem == "regression" else "accuracy"),
        source="hub",
        hub_id=hub_id,
        hub_config=config,
        train_split=train_split,
        eval_split=eval_split,
        available_offline=False,
        description=f"hub dataset {hub_id}",
    )


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No datasets progress bars inside (they would flood a worker's log once per trial)."""
    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        if bars_were_on:
            datasets.utils.enable_progress_bars()


def _load_hub(spec: TaskSpec) -> tuple[TaskSpec, Dataset, Dataset]:
    where = spec.hub_id + (f" (config {spec.hub_config})" if spec.hub_config else "")
    unavailable = (
        f"{spec.name} is not available offline and the hub dataset {where} could not be loaded"
    )
    advice = (
        "; upload a CSV/TSV/JSONL file with columns "
        f"{', '.join(spec.text_columns)} and {spec.label_column} instead, or run with Hugging Face "
        "Hub access"
    )
    if datasets.config.HF_HUB_OFFLINE:
        raise DataError(
            "task", f"{unavailable}: hub access is switched off (HF_HUB_OFFLINE){advice}"
        )
    try:
        loaded = datasets.load_dataset(spec.hub_id, spec.hub_config)
    # Network, auth, a missing dataset or config: the datasets library raises many kinds.
    except Exception as exc:  # noqa: BLE001
        raise DataError("task", f"{unavailable}: {type(exc).__name__}: {exc}{advice}") from None
    for split in (spec.train_split, spec.eval_split):
        if split not in loaded:
            raise DataError(
                "eval_split" if split == spec.eval_split else "train_split",
                f"{where} has no split {split!r}; it has {', '.join(loaded)}",
            )
    train, evaluation = loaded[spec.train_split], loaded[spec.eval_split]
    feature = train.features.get(spec.label_column)
    if spec.problem == "classification" and not spec.labels:
        names = getattr(feature, "names", None)
        if names:
            spec = replace(
                spec, labels=tuple(str(i) for i in range(len(names))), label_names=tuple(names)
            )
        else:
            found = _sorted_labels(_label_text(v) for v in train[spec.label_column][:])
            spec = replace(spec, labels=found, label_names=found)
    # GLUE's hub copies mark unlabelled rows with -1; they cannot be trained or scored on.
    if spec.problem == "classification":
        with _quiet_progress():
            train = train.filter(lambda row: row[spec.label_column] != -1)
            evaluation = evaluation.filter(lambda row: row[spec.label_column] != -1)
    return spec, _hub_split(train, spec, "train"), _hub_split(evaluation, spec, "eval")


def _hub_split(split: Dataset, spec: TaskSpec, which: str) -> Dataset:
    columns = {name: split[name][:] for name in split.column_names}  # [:]: one Arrow read
    table = _Table(columns, len(split), list(range(1, len(split) + 1)))
    return _to_dataset(table, spec, f"{spec.hub_id}[{which}]")


# --- loading and splitting ----------------------------------------------------------------


@dataclass(frozen=True)
class TaskData:
    """A task's splits: ``train`` and ``eval`` Datasets with text columns and ``label``.

    ``spec`` is resolved (hub label sets filled in); ``notes`` explain anything a reader of the
    results must know (held-out splits, sub-sampling, dev-as-evaluation).
    """

    spec: TaskSpec
    train: Dataset
    eval: Dataset
    notes: tuple[str, ...] = field(default_factory=tuple)


def _split_single(dataset: Dataset, fraction: float, what: str) -> tuple[Dataset, Dataset, str]:
    n = len(dataset)
    n_eval = _holdout_size(n, fraction)
    if n_eval < 1 or n - n_eval < 1:
        raise DataError(
            "holdout_fraction", f"{what} has {n} rows, too few to hold out {fraction:.0%}"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    eval_idx, train_idx = np.sort(order[:n_eval]), np.sort(order[n_eval:])
    note = (
        f"{what} has no separate evaluation split: {n_eval} of its {n} rows were held out for "
        f"evaluation and the other {n - n_eval} used for training (fixed split, seed {SPLIT_SEED})"
    )
    return dataset.select(train_idx), dataset.select(eval_idx), note


def _subsample(dataset: Dataset, n: int | None, seed: int, name: str,
               split: str = "training") -> tuple[Dataset, str | None]:
    if n is None or n >= len(dataset):
        return dataset, None
    # Sorted indices: the subset is a deterministic function of (n, seed), in file order; the
    # trainer shuffles per epoch with its own seed.
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    note = f"{name}: {split} set sub-sampled to {n} of {len(dataset)} examples (seed {seed})"
    return dataset.select(chosen), note


_RAW_CACHE: OrderedDict[tuple[Any, ...], TaskData] = OrderedDict()
_ENCODED_CACHE: OrderedDict[tuple[Any, ...], EncodedTask] = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: Entries kept per cache; a worker usually cycles through a handful of tasks.
CACHE_SIZE = 8


def _cache_get(cache: OrderedDict, key: tuple[Any, ...]) -> Any:
    with _CACHE_LOCK:
        value = cache.get(key)
        if value is not None:
            cache.move_to_end(key)
        return value


def _cache_put(cache: OrderedDict, key: tuple[Any, ...], value: Any) -> None:
    with _CACHE_LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)


def clear_caches() -> None:
    """Forget loaded and tokenised tasks (tests; or to free memory in a long-lived worker)."""
    with _CACHE_LOCK:
        _RAW_CACHE.clear()
        _ENCODED_CACHE.clear()


def _file_key(path: str | None) -> tuple[Any, ...]:
    if path is None:
        return (None,)
    stat = Path(path).stat() if Path(path).is_file() else None
    return (path, stat.st_size if stat else None, stat.st_mtime_ns if stat else None)


def _task_key(spec: TaskSpec) -> tuple[Any, ...]:
    # File size and mtime are part of the key so a re-uploaded user file is re-read.
    files = ()
    if spec.source != "hub":
        files = _file_key(_spec_path(spec, spec.train_path)) + _file_key(
            _spec_path(spec, spec.eval_path)
        )
    return (json.dumps(spec.to_dict(), sort_keys=True), files)


def _spec_path(spec: TaskSpec, path: str | None) -> str | None:
    if path is None:
        return None
    return str(BUNDLED_DIR / path) if spec.source == "bundled" else path


def _load_full(spec: TaskSpec) -> TaskData:
    """All labelled rows of ``spec`` as train/eval Datasets, before sub-sampling."""
    key = _task_key(spec)
    cached = _cache_get(_RAW_CACHE, key)
    if cached is not None:
        return cached
    notes: list[str] = []
    if spec.source == "hub":
        spec, train, evaluation = _load_hub(spec)
        notes.append(f"{spec.name}: evaluated on the hub split {spec.eval_split!r}")
    else:
        # Bundled files are trusted (checksummed in MANIFEST.tsv), so no size limit applies.
        limit = MAX_USER_FILE_BYTES if spec.source == "file" else math.inf
        fmt = spec.file_format
        read = {
            which: _to_dataset(
                _read_table(path, fmt, header=spec.file_columns, max_bytes=limit), spec, path
            )
            for which, path in (
                ("train", _spec_path(spec, spec.train_path)),
                ("eval", _spec_path(spec, spec.eval_path)),
            )
            if path is not None
        }
        if "train" in read and "eval" in read:
            train, evaluation = read["train"], read["eval"]
            if spec.source == "bundled":
                notes.append(
                    f"{spec.name}: evaluated on the GLUE dev set ({len(evaluation)} examples); "
                    "GLUE test labels are not public"
                )
            else:
                notes.append(
                    f"{spec.name}: evaluated on {Path(spec.eval_path or '').name} "
                    f"({len(evaluation)} examples)"
                )
        else:
            only = read["train"] if "train" in read else read.get("eval")
            if only is None:
                raise DataError("train_path", f"{spec.name}: no data file given")
            what = f"{spec.name} (only {Path(spec.eval_path or spec.train_path or '').name})"
            if spec.source == "bundled":
                what = f"{spec.name} (train file not available offline; GLUE dev file only)"
            train, evaluation, note = _split_single(only, spec.holdout_fraction, what)
            notes.append(note)
    data = TaskData(spec, train, evaluation, tuple(notes))
    _cache_put(_RAW_CACHE, key, data)
    return data


def load_task(
    task: str | TaskSpec, *, train_examples: int | None = None, sample_seed: int = 0,
    eval_examples: int | None = None,
) -> TaskData:
    """Load a task's train and evaluation splits, sub-sampling train to ``train_examples`` and
    the evaluation split to ``eval_examples`` (cheap search stages; reported in the notes).

    Sub-sampling is deterministic in ``sample_seed`` (default 0, not the trial seed, so every
    trial of a search trains and is scored on the same subsets and scores stay comparable).
    """
    for name, value in (("train_examples", train_examples), ("eval_examples", eval_examples)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise DataError(name, f"must be a positive integer or None, got {value!r}")
    full = _load_full(resolve_task(task))
    train, note = _subsample(full.train, train_examples, sample_seed, full.spec.name)
    evaluation, eval_note = _subsample(full.eval, eval_examples, sample_seed, full.spec.name, split="evaluation")
    notes = full.notes + tuple(n for n in (note, eval_note) if n)
    return replace(full, train=train, eval=evaluation, notes=notes)


# --- tokenisation -------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedTask:
    """A tokenised task: ``train``/``eval`` Datasets with model inputs and ``labels``.

    The input columns are ``input_ids``, ``attention_mask`` and, when the tokenizer makes them,
    ``token_type_ids``; sequences are unpadded (``pad_token_id`` is for the batch collator).
    """

    spec: TaskSpec
    train: Dataset
    eval: Dataset
    input_columns: tuple[str, ...]
    pad_token_id: int
    notes: tuple[str, ...]


_TOKENIZER_FINGERPRINTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A content hash of a tokenizer, so caches survive reloading the same tokenizer."""
    try:
        return _TOKENIZER_FINGERPRINTS[tokenizer]
    except (KeyError, TypeError):
        pass
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        content = backend.to_str()
    else:
        content = json.dumps(sorted(tokenizer.get_vocab().items()))
    digest = hashlib.sha256(
        f"{type(tokenizer).__name__}|{tokenizer.padding_side}|{tokenizer.truncation_side}|{content}".encode()
    ).hexdigest()
    try:
        _TOKENIZER_FINGERPRINTS[tokenizer] = digest
    except TypeError:
        pass  # not weak-referenceable: recompute next time
    return digest


def _encode_split(dataset: Dataset, spec: TaskSpec, tokenizer: Any, max_length: int) -> Dataset:
    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts = [batch[column] for column in spec.text_columns]
        encoded = tokenizer(
            *texts,
            truncation=True,
            max_length=max_length,
            padding=False,
            return_attention_mask=True,
        )
        out = dict(encoded)
        out["labels"] = batch["label"]
        return out

    # In-memory Datasets (from_dict/select) stay in memory through map: no cache files written.
    with _quiet_progress():
        return dataset.map(
            tokenize, batched=True, batch_size=1000, remove_columns=dataset.column_names
        )


def encode_task(
    task: str | TaskSpec | TaskData,
    tokenizer: Any,
    *,
    max_length: int = 128,
    train_examples: int | None = None,
    sample_seed: int = 0,
    eval_examples: int | None = None,
) -> EncodedTask:
    """Load (unless given :class:`TaskData`) and tokenise a task, cached in memory.

    Pairs are truncated longest-first to ``max_length`` tokens in total, including special tokens.
    """
    if not isinstance(max_length, int) or max_length < 8:
        raise DataError("max_length", f"must be an integer >= 8, got {max_length!r}")
    if tokenizer is None:
        raise DataError("tokenizer", "the backbone has no tokenizer; pass one to encode text")
    if isinstance(task, TaskData):
        data = task
        # TaskData given directly: identify it by content, not by a spec that may hide a subset.
        task_key: tuple[Any, ...] = (data.train._fingerprint, data.eval._fingerprint)
    else:
        spec = resolve_task(task)
        task_key = (_task_key(spec), train_examples, sample_seed, eval_examples)
        data = None
    key = (task_key, tokenizer_fingerprint(tokenizer), max_length)
    cached = _cache_get(_ENCODED_CACHE, key)
    if cached is not None:
        return cached
    if data is None:
        data = load_task(task, train_examples=train_examples, sample_seed=sample_seed,
                         eval_examples=eval_examples)
    train = _encode_split(data.train, data.spec, tokenizer, max_length)
    evaluation = _encode_split(data.eval, data.spec, tokenizer, max_length)
    input_columns = tuple(
        c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train.column_names
    )
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise DataError("tokenizer", "has no pad token; set tokenizer.pad_token before training")
    encoded = EncodedTask(data.spec, train, evaluation, input_columns, int(pad_id), data.notes)
    _cache_put(_ENCODED_CACHE, key, encoded)
    return encoded
