"""Per-choice statistics of a stage and the recommendation the stage makes.

For the component a stage decides, the successful trials are grouped by their choice of that
component and each group is described by: n, mean, median, sample standard deviation (n - 1 in the
denominator), a 95% confidence interval of the mean, and the empirical distribution function (EDF)
of the scores.

The interval is the wider of two: a seeded percentile bootstrap, and the Student-t interval (mean
± t(0.975, n - 1) · s / sqrt(n)). The bootstrap alone is far too narrow for the few designs a stage
gives each choice: with two scores it is their range, which covers the mean only half the time
(the study in docs/study/ called a stage "separable" on two scores per choice that way). With
many scores the two intervals nearly coincide.

EDF: ``F(x)`` = fraction of designs scoring *at most* x, evaluated at each distinct score, so the
curve is a non-decreasing step function ending at 1. PEFS scores are "higher is better" (GLUE
0-100), so a better space's EDF lies to the *right* (RegNet plots error, where better is left).

Recommendation: the choice with the highest mean, once *every* open choice has at least
``min_successes`` successful trials (ties: higher median, then canonical order). It is
"separable" when its 95% CI lies strictly above the runner-up's, else "not_separable" (still
named, a person decides). A choice with a single score has no CI, so with ``min_successes=1``
(allowed here, refused by every SearchConfig) such comparisons are "not_separable".

Insufficient evidence: when some open choice has fewer than ``min_successes`` successes (its
trials failed, or it was never sampled) or fewer than two choices are comparable, the stage is
"insufficient": ``choice`` is None, so nothing is approved automatically (``auto_approvable``
False) and the stage waits for a person, whose options are to retry the failed trials or choose
by hand with a reason; ``leader`` names the best comparable choice so far for that person. A
choice of which no design meets the budget (``infeasible``) cannot be trained at all; it is
listed in ``not_compared`` and does not hold the stage back. Failed trials (score None) are
excluded from every statistic and counted, per choice and in total.

Aliases: on a space built for a backbone an open choice may stand for several patterns
(aliases.py). ``summarise(..., aliases=space.aliases(component))`` attaches them to each choice's
statistics (``aliases`` and ``label`` in the JSON, ``"uniform = decreasing"``) and counts a trial
recorded under any alias for its choice.

>>> summary = summarise(
...     [TrialOutcome({"allocation": "uniform"}, score) for score in (80.0, 81.0, 82.0)]
...     + [TrialOutcome({"allocation": "increasing"}, score) for score in (60.0, 61.0, 62.0, None)],
...     component="allocation", open_choices=["increasing", "uniform"])
>>> summary.recommendation.choice, summary.recommendation.status, summary.failed
('uniform', 'separable', 1)
>>> summarise([TrialOutcome({"allocation": c}, x) for c, x in
...            [("uniform", 80.0), ("uniform", 82.0), ("increasing", 60.0), ("increasing", 62.0)]],
...           component="allocation", open_choices=["increasing", "uniform"]).recommendation.status
'not_separable'
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from experiments.space.errors import SpaceError

DEFAULT_RESAMPLES = 2000
CI_LEVEL = 0.95


@dataclass(frozen=True)
class TrialOutcome:
    """What a stage's statistics need from one trial: its choices and its score.

    ``score`` is None for a trial that failed (or finished without a score); such trials are
    counted, never averaged. ``trial_id`` is free for the caller (the platform's Trial pk).
    """

    choices: Mapping[str, str | None]
    score: float | None
    trial_id: Any = None


@dataclass(frozen=True)
class ChoiceStats:
    """Description of the successful scores of one choice (``choice`` None: all trials)."""

    choice: str | None
    n: int
    failed: int
    mean: float | None
    median: float | None
    std: float | None  # sample standard deviation; None when n < 2
    ci95: tuple[float, float] | None  # CI of the mean (bootstrap widened to Student-t); None when n < 2
    edf: tuple[tuple[float, float], ...]
    aliases: tuple[str, ...] = ()  # patterns this choice stands for, itself first (aliases.py)

    @property
    def label(self) -> str | None:
        if self.choice is None:
            return None
        return " = ".join(self.aliases) if self.aliases else self.choice

    def to_dict(self) -> dict[str, Any]:
        return {
            "choice": self.choice,
            "aliases": list(self.aliases or ([self.choice] if self.choice is not None else [])),
            "label": self.label,
            "n": self.n,
            "failed": self.failed,
            "mean": self.mean,
            "median": self.median,
            "std": self.std,
            "ci95": list(self.ci95) if self.ci95 is not None else None,
            "edf": [list(p) for p in self.edf],
        }


RecommendationStatus = Literal["separable", "not_separable", "insufficient"]


@dataclass(frozen=True)
class Recommendation:
    choice: str | None
    status: RecommendationStatus
    runner_up: str | None
    not_compared: tuple[str, ...]  # open choices with fewer than min_successes successes
    reason: str
    # The best-scoring choice with enough successes, also when nothing is recommended (shown to
    # the person who decides an "insufficient" stage; never applied automatically).
    leader: str | None = None

    @property
    def auto_approvable(self) -> bool:
        """May a search's auto-approve apply this recommendation without a person?"""
        return self.choice is not None and self.status != "insufficient"

    def to_dict(self) -> dict[str, Any]:
        return {
            "choice": self.choice,
            "status": self.status,
            "runner_up": self.runner_up,
            "not_compared": list(self.not_compared),
            "reason": self.reason,
            "leader": self.leader,
            "auto_approvable": self.auto_approvable,
        }


@dataclass(frozen=True)
class StageSummary:
    """Everything a stage shows and decides from: per-choice statistics and a recommendation.

    ``component`` None (the S0 reference stage) describes only ``overall``.
    """

    stage: str | None
    component: str | None
    total: int
    succeeded: int
    failed: int
    not_applicable: int  # trials for which the component does not apply (untuned group)
    choices: tuple[ChoiceStats, ...]
    overall: ChoiceStats
    recommendation: Recommendation | None
    resamples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "component": self.component,
            "trials": {
                "total": self.total,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "not_applicable": self.not_applicable,
            },
            "choices": [c.to_dict() for c in self.choices],
            "overall": self.overall.to_dict(),
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "level": CI_LEVEL,
                          "interval": "the wider of the percentile bootstrap and Student-t"},
        }


def edf_points(scores: Iterable[float]) -> tuple[tuple[float, float], ...]:
    """``(x, F(x))`` at each distinct score, ascending; F(x) = fraction of scores <= x.

    >>> edf_points([3.0, 1.0, 3.0, 2.0])
    ((1.0, 0.25), (2.0, 0.5), (3.0, 1.0))
    """
    ordered = sorted(scores)
    n = len(ordered)
    points: list[tuple[float, float]] = []
    for i, x in enumerate(ordered):
        if i + 1 < n and ordered[i + 1] == x:
            continue  # the step at x includes every tie
        points.append((x, (i + 1) / n))
    return tuple(points)


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted data (numpy's default "linear" method)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bootstrap_ci(
    scores: Sequence[float],
    *,
    seed: int | str,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = CI_LEVEL,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean, reproducible by ``seed``.

    >>> bootstrap_ci([5.0, 5.0, 5.0], seed=0)
    (5.0, 5.0)
    """
    if len(scores) < 1:
        raise SpaceError("scores", "need at least one score")
    rng = random.Random(seed)
    n = len(scores)
    means = sorted(sum(rng.choices(scores, k=n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return quantile(means, tail), quantile(means, 1 - tail)


def t_interval(scores: Sequence[float], *, level: float = CI_LEVEL) -> tuple[float, float]:
    """Student-t confidence interval of the mean (at least two scores).

    >>> [round(x, 2) for x in t_interval([68.0, 69.0])]
    [62.15, 74.85]
    """
    from scipy.stats import t  # a well-kept quantile function; imported on first use

    n = len(scores)
    if n < 2:
        raise SpaceError("scores", "need at least two scores")
    mean = statistics.fmean(scores)
    half = float(t.ppf(1 - (1 - level) / 2, n - 1)) * statistics.stdev(scores) / math.sqrt(n)
    return mean - half, mean + half


def mean_ci(
    scores: Sequence[float], *, seed: int | str, resamples: int = DEFAULT_RESAMPLES, level: float = CI_LEVEL
) -> tuple[float, float]:
    """The wider of the percentile-bootstrap and the Student-t interval (module docstring)."""
    low, high = bootstrap_ci(scores, seed=seed, resamples=resamples, level=level)
    t_low, t_high = t_interval(scores, level=level)
    return min(low, t_low), max(high, t_high)


def describe(
    scores: Sequence[float],
    *,
    choice: str | None = None,
    failed: int = 0,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    aliases: Sequence[str] = (),
) -> ChoiceStats:
    """Statistics of one group of successful scores (see the module docstring)."""
    n = len(scores)
    # The bootstrap stream depends on the choice, not on the order choices are described in.
    stream = f"{seed}:{choice}"
    return ChoiceStats(
        choice=choice,
        n=n,
        failed=failed,
        mean=statistics.fmean(scores) if n else None,
        median=statistics.median(scores) if n else None,
        std=statistics.stdev(scores) if n >= 2 else None,
        ci95=mean_ci(scores, seed=stream, resamples=resamples) if n >= 2 else None,
        edf=edf_points(scores),
        aliases=tuple(aliases) if len(aliases) > 1 else (),
    )


def _recommend(
    described: Sequence[ChoiceStats],
    open_choices: Sequence[str],
    min_successes: int,
    infeasible: Collection[str] = (),
) -> Recommendation:
    comparable = [c for c in described if c.n >= min_successes]
    not_compared = tuple(c.choice for c in described if c.n < min_successes)
    # A choice without enough evidence because its trials failed (or were never sampled) is not
    # a losing choice: recommending around it would discard it untried.
    lacking = [c for c in described if c.n < min_successes and c.choice not in infeasible]
    order = {c: i for i, c in enumerate(open_choices)}
    ranked = sorted(comparable, key=lambda c: (-c.mean, -c.median, order[c.choice]))
    if lacking or len(comparable) < 2:
        counts = ", ".join(
            f"{c.label}: {c.n}" + (f" ({c.failed} failed)" if c.failed else "") for c in described
        )
        leader = ranked[0] if ranked else None
        reason = (
            f"only {len(comparable)} of {len(described)} choices have at least {min_successes} "
            f"successful trials ({counts}); insufficient evidence, so nothing is recommended or "
            "approved automatically: retry the failed trials, or choose by hand with a reason"
        )
        if leader is not None:
            reason += f"; leading so far: {leader.label} (mean {leader.mean:.2f}, n={leader.n})"
        if infeasible:
            reason += f"; no design meets the budget for: {', '.join(infeasible)}"
        return Recommendation(
            choice=None,
            status="insufficient",
            runner_up=None,
            not_compared=not_compared,
            reason=reason,
            leader=leader.choice if leader else None,
        )
    best, runner = ranked[0], ranked[1]
    lead = (
        f"{best.label} has the highest mean score ({best.mean:.2f}, n={best.n}) ahead of "
        f"{runner.label} ({runner.mean:.2f}, n={runner.n})"
    )
    if best.ci95 is None or runner.ci95 is None:
        # Only reachable with min_successes = 1: a mean without a CI.
        separable = False
        reason = f"{lead}; one of them has a single score, too few for a confidence interval"
    else:
        separable = best.ci95[0] > runner.ci95[1]
        reason = f"{lead}; their 95% confidence intervals " + (
            "do not overlap" if separable else "overlap, so the data do not separate them"
        )
    if not_compared:
        reason += f"; not compared (no design meets the budget): {', '.join(not_compared)}"
    return Recommendation(
        choice=best.choice,
        status="separable" if separable else "not_separable",
        runner_up=runner.choice,
        not_compared=not_compared,
        reason=reason,
        leader=best.choice,
    )


def summarise(
    outcomes: Iterable[TrialOutcome],
    *,
    component: str | None,
    open_choices: Sequence[str] = (),
    stage: str | None = None,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    min_successes: int = 2,
    aliases: Mapping[str, Sequence[str]] | None = None,
    infeasible: Collection[str] = (),
) -> StageSummary:
    """Summarise a stage's trials for ``component`` over its ``open_choices`` (canonical order).

    Every open choice is listed, with n = 0 when no trial drew it. ``aliases`` maps an open choice
    to the patterns it stands for (``DesignSpace.aliases(component)``; module docstring).
    ``infeasible`` names open choices of which no design meets the budget (the sample batch's
    ``untried`` with that reason): they cannot be trained, so they do not hold the stage back.
    """
    if isinstance(min_successes, bool) or not isinstance(min_successes, int) or min_successes < 1:
        raise SpaceError("min_successes", f"must be a positive integer, got {min_successes!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise SpaceError("resamples", f"must be a positive integer, got {resamples!r}")
    if component is not None and len(open_choices) < 2:
        raise SpaceError("open_choices", f"{component} needs at least two open choices to compare")
    outcomes = list(outcomes)
    aliases = {c: tuple(names) for c, names in (aliases or {}).items() if c in open_choices}
    choice_of = {alias: c for c, names in aliases.items() for alias in names}
    scores: dict[str, list[float]] = {c: [] for c in open_choices}
    failures: dict[str, int] = {c: 0 for c in open_choices}
    all_scores: list[float] = []
    failed = not_applicable = 0
    for i, outcome in enumerate(outcomes):
        score = outcome.score
        if score is not None and (isinstance(score, bool) or not math.isfinite(score)):
            raise SpaceError(
                f"outcomes[{i}].score", f"must be a finite number or None, got {score!r}"
            )
        if score is None:
            failed += 1
        else:
            all_scores.append(float(score))
        if component is None:
            continue
        choice = outcome.choices.get(component)
        choice = choice_of.get(choice, choice)
        if choice is None:
            not_applicable += 1
            continue
        if choice not in scores:
            raise SpaceError(
                f"outcomes[{i}].choices.{component}",
                f"{choice!r} is not one of the open choices {list(open_choices)}",
            )
        if score is None:
            failures[choice] += 1
        else:
            scores[choice].append(float(score))
    described = tuple(
        describe(
            scores[c],
            choice=c,
            failed=failures[c],
            seed=seed,
            resamples=resamples,
            aliases=aliases.get(c, ()),
        )
        for c in open_choices
    )
    return StageSummary(
        stage=stage,
        component=component,
        total=len(outcomes),
        succeeded=len(all_scores),
        failed=failed,
        not_applicable=not_applicable,
        choices=described,
        overall=describe(all_scores, failed=failed, seed=seed, resamples=resamples),
        recommendation=(
            _recommend(described, open_choices, min_successes, tuple(infeasible))
            if component
            else None
        ),
        resamples=resamples,
        seed=seed,
    )
