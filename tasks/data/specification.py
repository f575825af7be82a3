"""Task specifications: what a task is, independent of how its rows are read.

:class:`TaskSpec` describes one task (text and label columns, problem, metric, where its rows come
from) and survives a JSON round trip, so Task rows store it. :data:`GLUE_TASKS` registers the GLUE
tasks PEFS knows by name; :func:`resolve_task` turns a name, a spec or a stored spec dict into a
:class:`TaskSpec`. Every error in ``tasks.data`` is a :class:`DataError` naming the field at fault.

Example:
    >>> get_task("SST-2").metric
    'accuracy'
    >>> old = {**get_task("rte").to_dict(), "source": "file"}  # as stored before the rename
    >>> TaskSpec.from_dict(old).source
    'upload'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Formatter
from typing import Any, Literal

from tasks.metrics import METRIC_KEYS

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "glue"

#: Share of a task's only labelled file held out for evaluation when no evaluation file exists.
DEFAULT_HOLDOUT_FRACTION = 0.1
#: Share of the training examples held out as the selection set (see tasks.data.roles).
DEFAULT_SELECTION_FRACTION = 0.1
#: A task reads one to three text fields. One is a text, two a text and its pair (the tokenizer joins
#: a pair with its own separator, as for RTE). Three (WiC: word, sentence1, sentence2) become a pair
#: too: the first two joined by :data:`THREE_FIELD_TEMPLATE` as the text, the third as the pair, so
#: "bank", "He sat on the bank.", "She went to the bank." reads as
#: ("bank: He sat on the bank.", "She went to the bank."). The template is recorded in the TaskSpec
#: (``text_template``) and in a result's design JSON, so training and the usage snippet join alike.
MAX_TEXT_COLUMNS = 3
THREE_FIELD_TEMPLATE = "{0}: {1}"

Problem = Literal["classification", "regression"]
#: Where a task's rows come from. "upload" matches the Task model's source; specs stored before
#: the rename say "file", which :meth:`TaskSpec.from_dict` still reads.
Source = Literal["bundled", "upload", "hub"]


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
    #: The report set's file (GLUE dev); None holds the report set out of the training file.
    eval_path: str | None = None
    file_format: str = "tsv"
    #: Column names for header-less files (CoLA); None means the first row is the header.
    file_columns: tuple[str, ...] | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    train_split: str = "train"
    #: The hub split that is the report set.
    eval_split: str = "validation"
    #: Share of a single labelled file held out as the report set.
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    #: An upload's own selection file; None carves the selection set out of the training rows.
    selection_path: str | None = None
    selection_fraction: float = DEFAULT_SELECTION_FRACTION
    available_offline: bool = True
    description: str = ""
    #: With three text columns, how the first two are joined into the text (the third is the pair):
    #: :data:`THREE_FIELD_TEMPLATE` unless given; None with one or two columns.
    text_template: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise DataError("name", "must not be empty")
        if self.source not in ("bundled", "upload", "hub"):
            raise DataError("source", f"must be bundled, upload or hub, got {self.source!r}")
        if not 1 <= len(self.text_columns) <= MAX_TEXT_COLUMNS:
            raise DataError(
                "text_columns", f"choose one to three text columns, got {len(self.text_columns)}"
            )
        if len(self.text_columns) == MAX_TEXT_COLUMNS:
            object.__setattr__(self, "text_template", self.text_template or THREE_FIELD_TEMPLATE)
            _check_template(self.text_template)
        elif self.text_template is not None:
            raise DataError("text_template", "only a task with three text columns joins them")
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
        for name in ("holdout_fraction", "selection_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise DataError(name, f"must be in (0, 1), got {value!r}")

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
        if values["source"] == "file":  # the name specs were stored under before "upload"
            values["source"] = "upload"
        for key in ("text_columns", "labels", "label_names", "file_columns"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def _check_template(template: str) -> None:
    """A join template names the first two fields once each, as {0} and {1}, and nothing else."""
    try:
        fields = [name for _, name, spec, conv in Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise DataError("text_template", f"{template!r} is not a template: {exc}") from None
    if sorted(fields) != ["0", "1"]:
        raise DataError("text_template", f"{template!r} must use {{0}} and {{1}} once each, e.g. "
                                         f"{THREE_FIELD_TEMPLATE!r}")


def text_segments(spec: TaskSpec, columns: Mapping[str, Sequence[Any]]) -> list[list[str]]:
    """The tokenizer's arguments for a batch: [texts] or [texts, pairs], the three-field join applied.

    >>> spec = TaskSpec(name="wic", text_columns=("word", "s1", "s2"), label_column="label",
    ...                 problem="classification", metric="accuracy", source="upload")
    >>> text_segments(spec, {"word": ["bank"], "s1": ["A river bank."], "s2": ["A bank loan."]})
    [['bank: A river bank.'], ['A bank loan.']]
    """
    texts = [[str(value) for value in columns[column]] for column in spec.text_columns]
    if len(texts) < MAX_TEXT_COLUMNS:
        return texts
    template = spec.text_template or THREE_FIELD_TEMPLATE
    return [[template.format(first, second) for first, second in zip(texts[0], texts[1])], texts[2]]


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

