"""Hugging Face Hub datasets as tasks (MNLI and QQP, or any dataset a user names).

:func:`hub_task` describes a hub dataset; :func:`load_hub` downloads it when the hub is reachable
and otherwise raises a :class:`DataError` that says to upload a file instead.

Example:
    >>> hub_task("nyu-mll/glue", config="mnli", text_columns=["premise", "hypothesis"]).name
    'nyu-mll/glue:mnli'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace

import datasets
from datasets import Dataset

from tasks.data.files import label_text, sorted_labels, table_to_dataset
from tasks.data.parsing import Table
from tasks.data.specification import DataError, Problem, TaskSpec


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
def quiet_progress() -> Iterator[None]:
    """No datasets progress bars inside (they would flood a worker's log once per trial)."""
    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        if bars_were_on:
            datasets.utils.enable_progress_bars()


def load_hub(spec: TaskSpec) -> tuple[TaskSpec, Dataset, Dataset]:
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
            found = sorted_labels(label_text(v) for v in train[spec.label_column][:])
            spec = replace(spec, labels=found, label_names=found)
    # GLUE's hub copies mark unlabelled rows with -1; they cannot be trained or scored on.
    if spec.problem == "classification":
        with quiet_progress():
            train = train.filter(lambda row: row[spec.label_column] != -1)
            evaluation = evaluation.filter(lambda row: row[spec.label_column] != -1)
    return spec, _hub_split(train, spec, "train"), _hub_split(evaluation, spec, "eval")


def _hub_split(split: Dataset, spec: TaskSpec, which: str) -> Dataset:
    columns = {name: split[name][:] for name in split.column_names}  # [:]: one Arrow read
    table = Table(columns, len(split), list(range(1, len(split) + 1)))
    return table_to_dataset(table, spec, f"{spec.hub_id}[{which}]")

