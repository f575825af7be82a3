"""Statistics against values worked by hand on small fixed inputs."""

from __future__ import annotations

import math

import pytest

from experiments.space.errors import SpaceError
from experiments.space.stats import (
    TrialOutcome,
    bootstrap_ci,
    describe,
    edf_points,
    quantile,
    summarise,
)


def outcomes(component: str, data: dict[str, list[float | None]]) -> list[TrialOutcome]:
    return [
        TrialOutcome({component: choice}, score)
        for choice, scores in data.items()
        for score in scores
    ]


def test_describe_by_hand() -> None:
    stats = describe([70.0, 72.0, 74.0, 80.0], choice="spindle", failed=1)
    assert stats.n == 4 and stats.failed == 1
    assert stats.mean == 74.0
    assert stats.median == 73.0
    # deviations -4, -2, 0, 6 -> squares 16 + 4 + 0 + 36 = 56; sample variance 56 / 3
    assert stats.std == pytest.approx(math.sqrt(56 / 3))
    assert stats.edf == ((70.0, 0.25), (72.0, 0.5), (74.0, 0.75), (80.0, 1.0))


def test_single_score_has_no_spread_and_no_interval() -> None:
    stats = describe([50.0], choice="uniform")
    assert (stats.mean, stats.median, stats.std, stats.ci95) == (50.0, 50.0, None, None)
    empty = describe([], choice="uniform")
    assert (empty.n, empty.mean, empty.edf) == (0, None, ())


def test_bootstrap_of_two_values_spans_them() -> None:
    # Resampled means of {a, b} are a, (a + b) / 2 or b with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles of 2000 resamples are a and b.
    assert bootstrap_ci([10.0, 20.0], seed=3) == (10.0, 20.0)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    scores = [61.0, 64.5, 70.0, 71.5, 73.0, 80.0]
    low, high = bootstrap_ci(scores, seed=1)
    assert bootstrap_ci(scores, seed=1) == (low, high)
    assert bootstrap_ci(scores, seed=2) != (low, high)
    assert min(scores) < low < sum(scores) / len(scores) < high < max(scores)


def test_quantile_matches_linear_interpolation() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.25) == 1.75
    assert quantile([5.0], 0.975) == 5.0


def test_edf_is_monotone_and_ends_at_one() -> None:
    scores = [3.0, 1.0, 2.0, 2.0, 9.5, -1.0, 2.0]
    points = edf_points(scores)
    xs = [x for x, _ in points]
    fs = [f for _, f in points]
    assert xs == sorted(set(scores))
    assert fs == sorted(fs) and fs[-1] == 1.0
    assert dict(points)[2.0] == pytest.approx(5 / 7)  # -1, 1, 2, 2, 2 are <= 2


def test_clear_winner_is_separable() -> None:
    summary = summarise(
        outcomes("grouping", {"spindle": [80.0, 81.0, 82.0], "uniform": [60.0, 61.0, 62.0, None]}),
        component="grouping",
        open_choices=["uniform", "spindle"],
        stage="S1",
    )
    rec = summary.recommendation
    assert (rec.choice, rec.status, rec.runner_up) == ("spindle", "separable", "uniform")
    assert (summary.total, summary.succeeded, summary.failed) == (7, 6, 1)
    by_choice = {c.choice: c for c in summary.choices}
    assert by_choice["uniform"].failed == 1 and by_choice["uniform"].n == 3
    assert by_choice["uniform"].mean == 61.0
    assert summary.overall.n == 6 and summary.overall.mean == 71.0


def test_overlapping_intervals_are_not_separable() -> None:
    summary = summarise(
        outcomes(
            "allocation",
            {
                "uniform": [70.0, 75.0, 80.0],
                "increasing": [69.0, 74.0, 79.0],
                "decreasing": [50.0, 51.0],
            },
        ),
        component="allocation",
        open_choices=["increasing", "uniform", "decreasing"],
    )
    rec = summary.recommendation
    assert (rec.choice, rec.status, rec.runner_up) == ("uniform", "not_separable", "increasing")
    assert "overlap" in rec.reason


def test_too_few_successes_recommends_nothing() -> None:
    summary = summarise(
        outcomes("groups", {"G1": [70.0, None], "G2": [None, None], "G1+G2": [71.0, 72.0]}),
        component="groups",
        open_choices=["G1", "G2", "G1+G2"],
    )
    rec = summary.recommendation
    assert rec.choice is None and rec.status == "insufficient"
    assert "only 1 of 3 choices" in rec.reason
    assert summary.failed == 3


def test_a_choice_below_the_minimum_holds_the_stage_for_a_person() -> None:
    # Given G2 lacks a second success (its other trial failed)
    summary = summarise(
        outcomes("groups", {"G1": [70.0, 71.0], "G2": [50.0, None], "G1+G2": [60.0, 61.0]}),
        component="groups",
        open_choices=["G1", "G2", "G1+G2"],
    )
    rec = summary.recommendation
    # Then nothing is recommended (G2 would be discarded untried), the leader is named for the
    # person who decides, and auto-approve may not apply anything.
    assert (rec.choice, rec.status, rec.leader) == (None, "insufficient", "G1")
    assert rec.not_compared == ("G2",) and not rec.auto_approvable
    assert "G2: 1 (1 failed)" in rec.reason and "leading so far: G1" in rec.reason
    assert rec.to_dict()["auto_approvable"] is False


def test_a_choice_no_design_can_meet_the_budget_does_not_hold_the_stage() -> None:
    summary = summarise(
        outcomes("assignment.G2", {"A": [70.0, 71.0, 72.0], "L": [60.0, 61.0, 62.0]}),
        component="assignment.G2",
        open_choices=["A", "B", "L"],
        infeasible=["B"],
    )
    rec = summary.recommendation
    assert (rec.choice, rec.status, rec.auto_approvable) == ("A", "separable", True)
    assert rec.not_compared == ("B",) and "no design meets the budget" in rec.reason


def test_every_choice_with_enough_successes_is_auto_approvable() -> None:
    summary = summarise(
        outcomes("groups", {"G1": [70.0, 71.0], "G2": [50.0, 52.0], "G1+G2": [60.0, 61.0]}),
        component="groups",
        open_choices=["G1", "G2", "G1+G2"],
    )
    rec = summary.recommendation
    assert rec.choice == rec.leader == "G1" and rec.auto_approvable and rec.not_compared == ()


def test_not_applicable_trials_are_counted_apart() -> None:
    data = [
        TrialOutcome({"assignment.G2": None}, 70.0),
        TrialOutcome({"assignment.G2": "A"}, 71.0),
        TrialOutcome({"assignment.G2": "A"}, 72.0),
        TrialOutcome({"assignment.G2": "P"}, 60.0),
        TrialOutcome({"assignment.G2": "P"}, 61.0),
    ]
    summary = summarise(data, component="assignment.G2", open_choices=["A", "P"])
    assert summary.not_applicable == 1 and summary.overall.n == 5
    assert [c.n for c in summary.choices] == [2, 2]


def test_reference_stage_summarises_everything() -> None:
    summary = summarise([TrialOutcome({}, 1.0), TrialOutcome({}, 3.0)], component=None, stage="S0")
    assert summary.recommendation is None and summary.choices == ()
    data = summary.to_dict()
    assert data["overall"]["mean"] == 2.0 and data["recommendation"] is None


def test_summary_json_shape() -> None:
    summary = summarise(
        outcomes("grouping", {"spindle": [80.0, 81.0], "uniform": [60.0, 61.0]}),
        component="grouping",
        open_choices=["uniform", "spindle"],
        stage="S1",
        seed=4,
    )
    data = summary.to_dict()
    assert set(data) == {
        "stage",
        "component",
        "trials",
        "choices",
        "overall",
        "recommendation",
        "bootstrap",
    }
    assert data["trials"] == {"total": 4, "succeeded": 4, "failed": 0, "not_applicable": 0}
    assert [c["choice"] for c in data["choices"]] == ["uniform", "spindle"]
    assert set(data["choices"][0]) == {
        "choice",
        "aliases",
        "label",
        "n",
        "failed",
        "mean",
        "median",
        "std",
        "ci95",
        "edf",
    }
    assert data["bootstrap"] == {"resamples": 2000, "seed": 4, "level": 0.95,
                                 "interval": "the wider of the percentile bootstrap and Student-t"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"component": "grouping", "open_choices": ["uniform"]}, "open_choices"),
        (
            {"component": "grouping", "open_choices": ["uniform", "spindle"], "min_successes": 0},
            "min_successes",
        ),
        (
            {"component": "grouping", "open_choices": ["uniform", "spindle"], "resamples": 0},
            "resamples",
        ),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(SpaceError) as info:
        summarise([], **kwargs)
    assert info.value.field == field


def test_unknown_choice_and_bad_score_name_the_trial() -> None:
    with pytest.raises(SpaceError) as info:
        summarise(
            [TrialOutcome({"grouping": "zigzag"}, 1.0)],
            component="grouping",
            open_choices=["uniform", "spindle"],
        )
    assert info.value.field == "outcomes[0].choices.grouping"
    with pytest.raises(SpaceError) as info:
        summarise(
            [TrialOutcome({"grouping": "uniform"}, float("nan"))],
            component="grouping",
            open_choices=["uniform", "spindle"],
        )
    assert info.value.field == "outcomes[0].score"


def test_single_scores_compare_only_when_allowed() -> None:
    data = outcomes("groups", {"G1": [70.0], "G2": [50.0], "G1+G2": [60.0, None]})
    strict = summarise(data, component="groups", open_choices=["G1", "G2", "G1+G2"])
    assert strict.recommendation.status == "insufficient"
    lenient = summarise(
        data, component="groups", open_choices=["G1", "G2", "G1+G2"], min_successes=1
    )
    rec = lenient.recommendation
    assert (rec.choice, rec.status, rec.runner_up) == ("G1", "not_separable", "G1+G2")
    assert "too few for a confidence interval" in rec.reason


def test_two_scores_per_choice_rarely_separate_the_interval_is_at_least_student_t() -> None:
    # The percentile bootstrap of two scores is their range; the interval used is at least the
    # Student-t one (t(0.975, 1) = 12.71): 68 and 69 give 68.5 +- 6.35, not [68, 69].
    from experiments.space.stats import bootstrap_ci, describe, t_interval

    assert bootstrap_ci([68.0, 69.0], seed=0) == (68.0, 69.0)
    low, high = describe([68.0, 69.0], choice="a").ci95
    assert (low, high) == pytest.approx(t_interval([68.0, 69.0]))
    assert (low, high) == pytest.approx((62.147, 74.853), abs=1e-3)
    # The study's S3 (G1 71.41 against G1+G2 68.46 on two designs each) would not be separable
    summary = summarise(outcomes("groups", {"G1": [70.86, 71.95], "G1+G2": [66.48, 70.45], "G2": [67.65, 68.97]}),
                        component="groups", open_choices=["G1", "G2", "G1+G2"])
    assert (summary.recommendation.choice, summary.recommendation.status) == ("G1", "not_separable")
    # With many scores the two intervals nearly agree, and the bootstrap may be the wider one
    many = [float(x % 7) for x in range(200)]
    boot, student = bootstrap_ci(many, seed="0:a"), t_interval(many)  # describe's stream: "<seed>:<choice>"
    assert describe(many, choice="a").ci95 == (min(boot[0], student[0]), max(boot[1], student[1]))
    assert abs((boot[1] - boot[0]) - (student[1] - student[0])) < 0.1 * (student[1] - student[0])
