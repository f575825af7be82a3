"""Successive halving inside a stage (beyond the paper; optional, ``SearchConfig.halving_eta``).

A stage trains all its designs for a few epochs, keeps the best 1/eta of the designs *of each
choice*, trains those further, and so on until the stage's full epoch count. Keeping the same
fraction per choice keeps the comparison fair: each choice is judged by the final scores of its
own best designs, so the stage decides with the same statistics (stats.summarise over the
survivors) while spending fewer trial-epochs.

Rungs end at epochs ``round(E / eta**(K - k))`` for k = 0..K, K the largest integer with
``E / eta**K >= min_epochs`` (E = 3, eta = 3: rungs at 1 and 3 epochs; E = 10: 1, 3, 10). A choice
with n designs keeps ``max(1, ceil(n / eta))`` of them at each rung.

``replay`` measures, on a stage that was trained in full with a score recorded after every epoch,
whether halving would have reached the same decision, and how often it does over bootstrap
resamples of the stage's trials.

>>> plan = plan_halving({"uniform": 20, "spindle": 20}, epochs=3, eta=3)
>>> [r.epochs for r in plan.rungs], plan.trial_epochs, plan.full_trial_epochs
([1, 3], 68, 120)
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from experiments.space.errors import SpaceError


@dataclass(frozen=True)
class Rung:
    """Designs of each choice trained from the previous rung's epoch count to ``epochs``."""

    index: int
    epochs: int
    trials_per_choice: Mapping[str, int]

    @property
    def trials(self) -> int:
        return sum(self.trials_per_choice.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "epochs": self.epochs,
            "trials_per_choice": dict(self.trials_per_choice),
        }


@dataclass(frozen=True)
class HalvingPlan:
    eta: int
    epochs: int
    rungs: tuple[Rung, ...]
    trial_epochs: int  # epochs trained over all trials with halving
    full_trial_epochs: int  # epochs trained if every trial ran all epochs

    @property
    def saved(self) -> int:
        return self.full_trial_epochs - self.trial_epochs

    def to_dict(self) -> dict[str, Any]:
        return {
            "eta": self.eta,
            "epochs": self.epochs,
            "rungs": [r.to_dict() for r in self.rungs],
            "trial_epochs": self.trial_epochs,
            "full_trial_epochs": self.full_trial_epochs,
            "saved_trial_epochs": self.saved,
        }


def _check(epochs: int, eta: int, min_epochs: int) -> None:
    for name, value, minimum in (
        ("epochs", epochs, 1),
        ("eta", eta, 2),
        ("min_epochs", min_epochs, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SpaceError(name, f"must be an integer >= {minimum}, got {value!r}")


def rung_epochs(epochs: int, *, eta: int = 3, min_epochs: int = 1) -> tuple[int, ...]:
    """Cumulative epochs at the end of each rung; the last is ``epochs``. No rung ends before
    ``min_epochs``; where ``epochs`` leaves no room for a rung before the last, there is one rung
    (the stage trains in full).

    >>> rung_epochs(10, eta=3), rung_epochs(3, eta=2), rung_epochs(1, eta=3)
    ((1, 3, 10), (2, 3), (1,))
    >>> rung_epochs(9, eta=3, min_epochs=3), rung_epochs(2, eta=2, min_epochs=3)
    ((3, 9), (2,))
    """
    _check(epochs, eta, min_epochs)
    top = 0
    while epochs / eta ** (top + 1) >= min_epochs:
        top += 1
    ends = sorted({min(epochs, max(min_epochs, round(epochs / eta ** (top - k)))) for k in range(top + 1)})
    return tuple(ends)


def keep_count(n: int, eta: int) -> int:
    """Designs of one choice promoted out of ``n``: the best 1/eta, at least one."""
    return max(1, math.ceil(n / eta))


def plan_halving(
    trials_per_choice: Mapping[str, int], *, epochs: int, eta: int = 3, min_epochs: int = 1
) -> HalvingPlan:
    """Rungs, per-choice survivors and the trial-epochs halving spends versus a full stage."""
    for choice, n in trials_per_choice.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SpaceError(
                f"trials_per_choice.{choice}", f"must be a non-negative integer, got {n!r}"
            )
    rungs: list[Rung] = []
    alive = dict(trials_per_choice)
    spent = previous = 0
    for index, end in enumerate(rung_epochs(epochs, eta=eta, min_epochs=min_epochs)):
        if index:
            alive = {c: keep_count(n, eta) if n else 0 for c, n in alive.items()}
        rungs.append(Rung(index=index, epochs=end, trials_per_choice=dict(alive)))
        spent += sum(alive.values()) * (end - previous)
        previous = end
    return HalvingPlan(
        eta=eta,
        epochs=epochs,
        rungs=tuple(rungs),
        trial_epochs=spent,
        full_trial_epochs=sum(trials_per_choice.values()) * epochs,
    )


# What a rung ranks the designs of a choice by (SearchConfig.halving_rank_by). A stage still decides
# by the survivors' final scores; the ranking only picks the survivors.
RANK_BY = {
    "score": "the selection-set score, as the stage decides (the default)",
    "auc": "the selection set's ranking AUC (tasks.metrics.ranking_auc; the score for regression "
    "tasks): it moves before accuracy leaves the majority class, but on the recorded stages "
    "(bench/halving.py) it did not rank early rungs better than the score",
}


def rank_value(per_task: Mapping[str, Any] | None, score: float | None, rank_by: str) -> float | None:
    """What a rung ranks a finished trial by (higher is better; None: not ranked, e.g. failed).

    ``per_task`` is the trial's ``{task: {"metrics": {...}, "score": s}}`` (tasks.runner); "auc"
    averages ``100 * eval_auc`` over the tasks, a task without one (regression) counting its score,
    and falls back to ``score`` for results without per-task metrics.

    >>> rank_value({"sst2": {"metrics": {"eval_auc": 0.75}, "score": 58.5}}, 58.5, "auc")
    75.0
    >>> rank_value({"sst2": {"metrics": {"eval_auc": 0.75}, "score": 58.5}}, 58.5, "score")
    58.5
    """
    if rank_by not in RANK_BY:
        raise SpaceError("halving_rank_by", f"must be one of {sorted(RANK_BY)}, got {rank_by!r}")
    if score is None or rank_by == "score" or not per_task:
        return score
    values = []
    for entry in per_task.values():
        metrics = (entry or {}).get("metrics") or {}
        value = 100.0 * metrics["eval_auc"] if isinstance(metrics.get("eval_auc"), (int, float)) else entry.get("score")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return score
        values.append(float(value))
    return statistics.fmean(values) if values else score


def promote(
    scores: Mapping[Any, float | None], choice_of: Mapping[Any, str], *, eta: int
) -> set[Any]:
    """Trial ids that go on to the next rung: the best ``keep_count`` of each choice.

    A trial without a score (failed) is never promoted; ties go to the earlier trial id order.
    """
    by_choice: dict[str, list[Any]] = {}
    for trial in scores:
        by_choice.setdefault(choice_of[trial], []).append(trial)
    promoted: set[Any] = set()
    for trials in by_choice.values():
        scored = [t for t in trials if scores[t] is not None]
        scored.sort(key=lambda t: -scores[t])  # stable: earlier ids win ties
        promoted.update(scored[: keep_count(len(trials), eta)])
    return promoted


@dataclass(frozen=True)
class RecordedTrial:
    """A trial of a fully trained stage: its choice, its score after each epoch (None: failed), and
    optionally what rungs rank it by after each epoch (``ranking``, higher is better, e.g. the
    selection set's ranking AUC; None: rank by the score, as the stage decides)."""

    choice: str
    scores: Sequence[float | None]
    ranking: Sequence[float | None] | None = None

    def rank_value(self, epoch: int) -> float | None:
        """What a rung ending after ``epoch`` epochs ranks this trial by (None: failed)."""
        if self.scores[epoch - 1] is None:
            return None
        return self.scores[epoch - 1] if self.ranking is None else self.ranking[epoch - 1]


@dataclass(frozen=True)
class ReplayReport:
    full_decision: str | None
    halving_decision: str | None
    agreement: float  # fraction of bootstrap resamples where halving decides like the full stage
    resamples: int
    plan: HalvingPlan
    # The resamples in which the full stage's decision is itself clear: its best choice's mean final
    # score beats the runner-up's by at least SEPARABLE_Z standard errors (Welch). Halving can only be
    # expected to agree with a decision the stage's own data support.
    separable_resamples: int = 0
    separable_agreement: float | None = None
    # The two parts of a disagreement. ``ceiling``: how often halving with perfect foresight (every
    # rung ranking by the final score itself) decides like the full stage: the survivors' mean is a
    # mean of each choice's best designs, not of all of them, so even perfect ranking can disagree.
    # ``ranking_agreement``: how often halving decides like that perfect-foresight halving, i.e.
    # whether its rungs found the designs that end best.
    ceiling: float | None = None
    ranking_agreement: float | None = None
    # Not halving: how often the mean over *all* of a choice's designs at the first rung's epoch
    # decides like the full stage (every design trained to the first rung only, at rungs[0] / E of
    # the full stage's trial-epochs). A stage decides about a choice's designs as a whole, which a
    # mean over all of them estimates and the survivors' mean does not.
    first_rung_agreement: float | None = None

    @property
    def same_decision(self) -> bool:
        return self.full_decision == self.halving_decision

    def to_dict(self) -> dict[str, Any]:
        return {
            "full_decision": self.full_decision,
            "halving_decision": self.halving_decision,
            "same_decision": self.same_decision,
            "agreement": self.agreement,
            "resamples": self.resamples,
            "separable_resamples": self.separable_resamples,
            "separable_agreement": self.separable_agreement,
            "ceiling": self.ceiling,
            "ranking_agreement": self.ranking_agreement,
            "first_rung_agreement": self.first_rung_agreement,
            "plan": self.plan.to_dict(),
        }


def _best_mean(finals: Mapping[str, list[float]], order: Sequence[str]) -> str | None:
    means = {c: statistics.fmean(v) for c, v in finals.items() if v}
    if not means:
        return None
    return min(means, key=lambda c: (-means[c], order.index(c)))


# One-sided 95%: the runner-up's mean is below the best's with that confidence (normal approximation).
SEPARABLE_Z = 1.645


def _separation(trials: Sequence[RecordedTrial], order: Sequence[str]) -> float:
    """Welch z of the best choice's mean final score over the runner-up's (inf: no variance; 0: fewer
    than two choices with two scores each)."""
    finals = {c: [t.scores[-1] for t in trials if t.choice == c and t.scores[-1] is not None] for c in order}
    finals = {c: v for c, v in finals.items() if len(v) >= 2}
    if len(finals) < 2:
        return 0.0
    means = {c: statistics.fmean(v) for c, v in finals.items()}
    best, runner_up = sorted(finals, key=lambda c: (-means[c], order.index(c)))[:2]
    error = math.sqrt(sum(statistics.variance(finals[c]) / len(finals[c]) for c in (best, runner_up)))
    gap = means[best] - means[runner_up]
    return gap / error if error > 0 else (math.inf if gap > 0 else 0.0)


def _full_decision(trials: Sequence[RecordedTrial], order: Sequence[str], epoch: int = -1) -> str | None:
    """The choice with the best mean score over all its designs after ``epoch`` (-1: the last)."""
    index = epoch if epoch < 0 else epoch - 1
    finals: dict[str, list[float]] = {c: [] for c in order}
    for t in trials:
        if t.scores[index] is not None:
            finals[t.choice].append(t.scores[index])
    return _best_mean(finals, order)


def _halving_decision(
    trials: Sequence[RecordedTrial], rungs: Sequence[int], eta: int, order: Sequence[str]
) -> str | None:
    alive = list(range(len(trials)))
    for end in rungs[:-1]:
        alive = sorted(
            promote(
                {i: trials[i].rank_value(end) for i in alive},
                {i: trials[i].choice for i in alive},
                eta=eta,
            )
        )
    finals: dict[str, list[float]] = {c: [] for c in order}
    for i in alive:
        if trials[i].scores[-1] is not None:
            finals[trials[i].choice].append(trials[i].scores[-1])
    return _best_mean(finals, order)


def replay(
    trials: Sequence[RecordedTrial],
    *,
    eta: int = 3,
    min_epochs: int = 1,
    resamples: int = 200,
    seed: int = 0,
) -> ReplayReport:
    """Would halving have decided this fully trained stage the same way? (module docstring)

    The full decision is the choice with the highest mean final-epoch score; the halving decision
    the choice whose surviving designs have the highest mean final-epoch score, the survivors of
    each rung being the best of their choice by ``RecordedTrial.rank_value``. ``agreement``
    repeats both on ``resamples`` stratified bootstrap resamples (trials redrawn within each
    choice, so every choice keeps its count); ``separable_agreement`` counts only the resamples in
    which the full stage separates its best choice from the runner-up (SEPARABLE_Z).
    """
    if not trials:
        raise SpaceError("trials", "need at least one recorded trial")
    epochs = len(trials[0].scores)
    for i, t in enumerate(trials):
        for name in ("scores", "ranking"):
            values = getattr(t, name)
            if values is not None and len(values) != epochs:
                raise SpaceError(f"trials[{i}].{name}", f"has {len(values)} epochs, trials[0] has {epochs}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise SpaceError("resamples", f"must be a positive integer, got {resamples!r}")
    rungs = rung_epochs(epochs, eta=eta, min_epochs=min_epochs)
    order = list(dict.fromkeys(t.choice for t in trials))
    full = _full_decision(trials, order)
    halved = _halving_decision(trials, rungs, eta, order)

    rng = random.Random(seed)
    by_choice = {c: [t for t in trials if t.choice == c] for c in order}
    agree = separable = agree_separable = ceiling = ranked = early = 0
    for _ in range(resamples):
        resample = [t for c in order for t in rng.choices(by_choice[c], k=len(by_choice[c]))]
        full_choice, halving_choice = _full_decision(resample, order), _halving_decision(resample, rungs, eta, order)
        foresight = _halving_decision(_with_foresight(resample), rungs, eta, order)
        same = full_choice == halving_choice
        agree += same
        ceiling += foresight == full_choice
        ranked += foresight == halving_choice
        early += _full_decision(resample, order, rungs[0]) == full_choice
        if _separation(resample, order) >= SEPARABLE_Z:
            separable += 1
            agree_separable += same
    counts = {c: len(v) for c, v in by_choice.items()}
    return ReplayReport(
        full_decision=full,
        halving_decision=halved,
        agreement=agree / resamples,
        resamples=resamples,
        plan=plan_halving(counts, epochs=epochs, eta=eta, min_epochs=min_epochs),
        separable_resamples=separable,
        separable_agreement=agree_separable / separable if separable else None,
        ceiling=ceiling / resamples,
        ranking_agreement=ranked / resamples,
        first_rung_agreement=early / resamples,
    )


def _with_foresight(trials: Sequence[RecordedTrial]) -> list[RecordedTrial]:
    """The same trials ranked at every rung by their own final score (perfect foresight)."""
    return [RecordedTrial(t.choice, t.scores, [t.scores[-1]] * len(t.scores)) for t in trials]
