"""Evaluation roles: which examples train a design, which choose it, which report it.

A task's labelled examples play three disjoint roles:

* **train**: the examples designs are trained on;
* **selection**: the examples stage trials are scored on, so the search chooses by them;
* **report**: the examples only the final comparison is scored on, never seen by the choice.

Where they come from (carving is deterministic, seed :data:`SPLIT_SEED`, so every trial of every
search sees the same partition):

====================================  ============================  ===========================
task                                  selection                     report
====================================  ============================  ===========================
bundled GLUE with a train file        held out of train             the GLUE dev set
QNLI (dev file only)                  held out of the train half    the other half of dev
hub dataset                           held out of the train split   the evaluation split
upload with evaluation file(s)        its selection file, else      its evaluation file
                                      held out of the upload
upload alone                          held out of the upload        held out of the upload
====================================  ============================  ===========================

A report set is carved first (``TaskSpec.holdout_fraction``, the split PEFS has always used), then
the selection set out of what is left (``TaskSpec.selection_fraction``), so the report set of a
single-file task is the evaluation set of earlier versions. Sub-sampling (``train_examples``,
``eval_examples``) draws inside each role's pool, so no seed can make two roles overlap.

Each set is described by an :class:`ExampleSet` (role, split, pool, count, seeds) for reports.

Example:
    >>> ExampleSet(role="selection", split="train", pool=6735, count=300, seed=0,
    ...            held_out=True).describe()
    'selection: 300 of 6,735 examples held out of train (split seed 0), sub-sampled with seed 0'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from tasks.data.specification import DataError

#: The roles a loaded task's evaluation set can play; "train" is always the training examples.
Role = Literal["selection", "report"]
ROLES: tuple[str, ...] = ("selection", "report")
#: Seed of every carve (report out of a single file, selection out of training). Fixed, not the
#: trial seed, so that every trial of a search is scored on the same held-out rows.
SPLIT_SEED = 0
#: Name of the column that identifies each example: "<file>:<row>", where file is "train",
#: "eval" (the evaluation file or split) or "selection" and row counts from 0 in that file.
EXAMPLE_ID = "example_id"


@dataclass(frozen=True)
class ExampleSet:
    """Which examples one role used: enough to say, beside a number, what it was scored on.

    ``split`` names where the examples come from (a file or hub split); ``held_out`` says they
    were carved out of it with :data:`SPLIT_SEED`; ``pool`` is how many the role has, ``count``
    how many were used, drawn with ``seed`` (None: the whole pool, no draw).
    """

    role: str
    split: str
    pool: int
    count: int
    seed: int | None = None
    held_out: bool = False
    split_seed: int = SPLIT_SEED

    def describe(self) -> str:
        """One line for notes and reports."""
        where = (
            f"held out of {self.split} (split seed {self.split_seed})"
            if self.held_out
            else f"from {self.split}"
        )
        text = f"{self.role}: {self.count:,} of {self.pool:,} examples {where}"
        if self.seed is not None:
            text += f", sub-sampled with seed {self.seed}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def carve_size(n_rows: int, fraction: float, *, at_least_one: bool) -> int | None:
    """How many of ``n_rows`` a carve of ``fraction`` takes (rounded; optionally at least 1), or
    None when the carve or what it leaves would be empty."""
    size = round(n_rows * fraction)
    if at_least_one and n_rows >= 2:
        size = max(size, 1)
    return size if 1 <= size < n_rows else None


def carve(n_rows: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, carved) of a deterministic random carve of ``size`` rows, each sorted."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n_rows)
    return np.sort(order[size:]), np.sort(order[:size])


def check_carves(
    n_rows: int, *, report_fraction: float | None, selection_fraction: float | None, what: str
) -> None:
    """Refuse a file too small to carve the roles it lacks (None: that role has its own file).

    ``what`` names the file in the message.
    """
    left = n_rows
    if report_fraction is not None:
        n_report = carve_size(left, report_fraction, at_least_one=False)
        if n_report is None:
            raise DataError(
                "path",
                f"{what}: {n_rows} rows are too few to hold out {report_fraction:.0%} for "
                "evaluation; add rows or give an evaluation file",
            )
        left -= n_report
    if selection_fraction is None:
        return
    if carve_size(left, selection_fraction, at_least_one=True) is None:
        raise DataError(
            "path",
            f"{what}: {n_rows} rows are too few to hold out a selection set as well as an "
            "evaluation set; add rows or give a selection file",
        )
