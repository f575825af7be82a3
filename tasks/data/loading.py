"""Loading a task's rows in their evaluation roles, sub-sampled and cached.

:func:`load_task` gives ``datasets.Dataset`` splits with the text columns, an integer
(classification) or float (regression) ``label`` column and an ``example_id`` column. With
``role="selection"`` or ``role="report"`` it gives the training examples and the evaluation set of
that role, disjoint by construction (see :mod:`tasks.data.roles`); without a role it gives what
PEFS has always given (the whole training split and the report set), until every caller names
its role. :func:`example_sets` says how big each role is before anything trains.

Example:
    >>> data = load_task("rte", train_examples=100)
    >>> len(data.train), len(data.eval), data.spec.labels
    (100, 277, ('entailment', 'not_entailment'))
    >>> stage = load_task("rte", train_examples=100, eval_examples=50, role="selection")
    >>> stage.eval_set.describe()
    'selection: 50 of 249 examples held out of GLUE train (split seed 0), sub-sampled with seed 0'
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from tasks.data.files import table_to_dataset
from tasks.data.hub import load_hub
from tasks.data.parsing import MAX_USER_FILE_BYTES, read_table
from tasks.data.roles import (
    EXAMPLE_ID,
    ROLES,
    SPLIT_SEED,
    ExampleSet,
    Role,
    carve,
    carve_size,
)
from tasks.data.specification import BUNDLED_DIR, DataError, TaskSpec, resolve_task


@dataclass(frozen=True)
class TaskData:
    """A task's splits: ``train`` and ``eval`` Datasets with text columns, ``label`` and
    ``example_id``.

    ``spec`` is resolved (hub label sets filled in); ``notes`` explain anything a reader of the
    results must know (held-out splits, sub-sampling, dev-as-evaluation). ``role`` is the role
    ``eval`` plays (None: loaded without one); ``train_set`` and ``eval_set`` say which examples
    each split holds.
    """

    spec: TaskSpec
    train: Dataset
    eval: Dataset
    notes: tuple[str, ...] = field(default_factory=tuple)
    role: Role | None = None
    train_set: ExampleSet | None = None
    eval_set: ExampleSet | None = None


@dataclass(frozen=True)
class _Pool:
    """The examples one role may draw from, and where they come from."""

    rows: Dataset
    split: str
    held_out: bool


@dataclass(frozen=True)
class _Pools:
    """Every labelled row of a task, partitioned into its roles, before sub-sampling."""

    spec: TaskSpec
    whole_train: _Pool  # training rows before the selection carve: what a role-less load trains on
    train: _Pool
    selection: _Pool | None  # None: too few training rows to hold out a selection set
    report: _Pool
    notes: tuple[str, ...]  # what a role-less load says about its evaluation set


class LruCache:
    """A small thread-safe LRU map; every instance is emptied by :func:`clear_caches`."""

    instances: list[LruCache] = []

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.lock = threading.Lock()
        LruCache.instances.append(self)

    def get(self, key: tuple[Any, ...]) -> Any:
        with self.lock:
            value = self.entries.get(key)
            if value is not None:
                self.entries.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


#: Entries kept per cache; a worker usually cycles through a handful of tasks.
CACHE_SIZE = 8
_POOLS = LruCache(CACHE_SIZE)


def clear_caches() -> None:
    """Forget loaded and tokenised tasks (tests; or to free memory in a long-lived worker)."""
    for cache in LruCache.instances:
        cache.clear()


def _file_key(path: str | None) -> tuple[Any, ...]:
    if path is None:
        return (None,)
    stat = Path(path).stat() if Path(path).is_file() else None
    return (path, stat.st_size if stat else None, stat.st_mtime_ns if stat else None)


def task_key(spec: TaskSpec) -> tuple[Any, ...]:
    """What identifies a task's rows: its spec and, for files, their size and mtime (so a
    re-uploaded file is re-read)."""
    files: tuple[Any, ...] = ()
    if spec.source != "hub":
        for path in (spec.train_path, spec.eval_path, spec.selection_path):
            files += _file_key(_spec_path(spec, path))
    return (json.dumps(spec.to_dict(), sort_keys=True), files)


def _spec_path(spec: TaskSpec, path: str | None) -> str | None:
    if path is None:
        return None
    return str(BUNDLED_DIR / path) if spec.source == "bundled" else path


def _with_ids(dataset: Dataset, which: str) -> Dataset:
    return dataset.add_column(EXAMPLE_ID, [f"{which}:{i}" for i in range(len(dataset))])


def _read_files(spec: TaskSpec) -> dict[str, Dataset]:
    # Bundled files are trusted (checksummed in MANIFEST.tsv), so no size limit applies.
    limit = MAX_USER_FILE_BYTES if spec.source == "upload" else math.inf
    read = {}
    for which in ("train", "eval", "selection"):
        path = _spec_path(spec, getattr(spec, f"{which}_path"))
        if path is None:
            continue
        table = read_table(
            path,
            spec.file_format,
            header=spec.file_columns,
            keep=(*spec.text_columns, spec.label_column),
            max_bytes=limit,
        )
        read[which] = _with_ids(table_to_dataset(table, spec, path), which)
    return read


def _split_name(spec: TaskSpec, which: str) -> str:
    if spec.source == "bundled":
        return "GLUE dev" if which == "eval" else "GLUE train"
    if spec.source == "hub":
        return f"hub split {spec.eval_split if which == 'eval' else spec.train_split!r}"
    return Path(getattr(spec, f"{which}_path") or "").name


def _carve(pool: _Pool, fraction: float, *, at_least_one: bool) -> tuple[_Pool, _Pool] | None:
    """(kept, carved) parts of ``pool``, or None when it is too small to give both a row."""
    size = carve_size(len(pool.rows), fraction, at_least_one=at_least_one)
    if size is None:
        return None
    kept, carved = carve(len(pool.rows), size)
    return (
        _Pool(pool.rows.select(kept), pool.split, pool.held_out),
        _Pool(pool.rows.select(carved), pool.split, True),
    )


def _load_pools(spec: TaskSpec) -> _Pools:
    """All labelled rows of ``spec`` in their roles, before sub-sampling."""
    key = task_key(spec)
    cached = _POOLS.get(key)
    if cached is not None:
        return cached
    notes: list[str] = []
    if spec.source == "hub":
        spec, train_rows, eval_rows = load_hub(spec)
        read = {"train": _with_ids(train_rows, "train"), "eval": _with_ids(eval_rows, "eval")}
        notes.append(f"{spec.name}: evaluated on the hub split {spec.eval_split!r}")
    else:
        read = _read_files(spec)
    pools = {which: _Pool(rows, _split_name(spec, which), False) for which, rows in read.items()}
    if "train" in pools and "eval" in pools:
        train, report = pools["train"], pools["eval"]
        if spec.source == "bundled":
            notes.append(
                f"{spec.name}: evaluated on the GLUE dev set ({len(report.rows)} examples); "
                "GLUE test labels are not public"
            )
        elif spec.source == "upload":
            notes.append(f"{spec.name}: evaluated on {report.split} ({len(report.rows)} examples)")
    else:
        only = pools.get("train") or pools.get("eval")
        if only is None:
            raise DataError("train_path", f"{spec.name}: no data file given")
        what = f"{spec.name} (only {only.split})"
        if spec.source == "bundled":
            what = f"{spec.name} (train file not available offline; GLUE dev file only)"
        parts = _carve(only, spec.holdout_fraction, at_least_one=False)
        if parts is None:
            raise DataError(
                "holdout_fraction",
                f"{what} has {len(only.rows)} rows, too few to hold out "
                f"{spec.holdout_fraction:.0%}",
            )
        train, report = parts
        notes.append(
            f"{what} has no separate evaluation split: {len(report.rows)} of its "
            f"{len(only.rows)} rows were held out for evaluation and the other "
            f"{len(train.rows)} used for training (fixed split, seed {SPLIT_SEED})"
        )
    if "selection" in pools:
        training, selection = train, pools["selection"]
    else:
        parts = _carve(train, spec.selection_fraction, at_least_one=True)
        training, selection = parts if parts is not None else (train, None)
    loaded = _Pools(spec, train, training, selection, report, tuple(notes))
    _POOLS.put(key, loaded)
    return loaded


def _subsample(pool: _Pool, role: str, n: int | None, seed: int) -> tuple[Dataset, ExampleSet]:
    rows = pool.rows
    drawn = n is not None and n < len(rows)
    if drawn:
        # Sorted indices: the subset is a deterministic function of (n, seed), in file order;
        # the trainer shuffles per epoch with its own seed.
        rows = rows.select(np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False)))
    described = ExampleSet(
        role=role,
        split=pool.split,
        pool=len(pool.rows),
        count=len(rows),
        seed=seed if drawn else None,
        held_out=pool.held_out,
    )
    return rows, described


def _check_counts(**counts: int | None) -> None:
    for name, value in counts.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise DataError(name, f"must be a positive integer or None, got {value!r}")


def _role_pools(pools: _Pools, role: Role | None) -> tuple[_Pool, _Pool]:
    """(training pool, evaluation pool) of a role; without one, what PEFS always used."""
    if role is None:
        return pools.whole_train, pools.report
    if role not in ROLES:
        raise DataError("role", f"must be one of {', '.join(ROLES)} or None, got {role!r}")
    if role == "report":
        return pools.train, pools.report
    if pools.selection is None:
        raise DataError(
            "selection",
            f"{pools.spec.name}: {len(pools.whole_train.rows)} training rows are too few to hold "
            "out a selection set; add rows or give a selection file",
        )
    return pools.train, pools.selection


def load_task(
    task: str | TaskSpec,
    *,
    train_examples: int | None = None,
    sample_seed: int = 0,
    eval_examples: int | None = None,
    role: Role | None = None,
) -> TaskData:
    """Load a task's training examples and the evaluation set of ``role``, sub-sampling them to
    ``train_examples`` and ``eval_examples`` (cheap search stages; reported in the notes).

    ``role="selection"`` scores on the selection set (stage trials), ``role="report"`` on the
    report set (the final comparison); both train on the same examples, which neither evaluation
    set shares. ``role=None`` trains on the whole training split and scores on the report set.
    Sub-sampling is deterministic in ``sample_seed`` (default 0, not the trial seed, so every
    trial of a search trains and is scored on the same subsets and scores stay comparable).
    """
    _check_counts(train_examples=train_examples, eval_examples=eval_examples)
    pools = _load_pools(resolve_task(task))
    train_pool, eval_pool = _role_pools(pools, role)
    train, train_set = _subsample(train_pool, "train", train_examples, sample_seed)
    evaluation, eval_set = _subsample(eval_pool, role or "report", eval_examples, sample_seed)
    name = pools.spec.name
    if role is None:
        notes = list(pools.notes)
        if train_set.seed is not None:
            notes.append(f"{name}: training set sub-sampled to {train_set.count} of "
                         f"{train_set.pool} examples (seed {sample_seed})")
        if eval_set.seed is not None:
            notes.append(f"{name}: evaluation set sub-sampled to {eval_set.count} of "
                         f"{eval_set.pool} examples (seed {sample_seed})")
    else:
        notes = [f"{name}: {train_set.describe()}", f"{name}: scored on {eval_set.describe()}"]
        if pools.spec.source == "bundled" and role == "report":
            notes.append(f"{name}: the report set is the GLUE dev set (test labels are not public)")
    return TaskData(pools.spec, train, evaluation, tuple(notes), role, train_set, eval_set)


def example_sets(
    task: str | TaskSpec,
    *,
    train_examples: int | None = None,
    selection_examples: int | None = None,
    report_examples: int | None = None,
    sample_seed: int = 0,
) -> dict[str, ExampleSet]:
    """The three roles' examples (split, pool, count, seed) as a search would load them, e.g. to
    show the sizes before the search starts. ``selection`` is absent when the task is too small
    to hold one out."""
    _check_counts(train_examples=train_examples, selection_examples=selection_examples,
                  report_examples=report_examples)
    pools = _load_pools(resolve_task(task))
    sets = {
        "train": _subsample(pools.train, "train", train_examples, sample_seed)[1],
        "report": _subsample(pools.report, "report", report_examples, sample_seed)[1],
    }
    if pools.selection is not None:
        sets["selection"] = _subsample(
            pools.selection, "selection", selection_examples, sample_seed
        )[1]
    return sets
