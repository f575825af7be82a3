from __future__ import annotations

import pytest

from experiments.space.errors import SpaceError
from experiments.space.halving import (
    RecordedTrial,
    keep_count,
    plan_halving,
    promote,
    rank_value,
    replay,
    rung_epochs,
)


def test_rungs() -> None:
    assert rung_epochs(3, eta=3) == (1, 3)
    assert rung_epochs(10, eta=3) == (1, 3, 10)
    assert rung_epochs(9, eta=3) == (1, 3, 9)
    assert rung_epochs(8, eta=2) == (1, 2, 4, 8)
    assert rung_epochs(1, eta=2) == (1,)
    assert rung_epochs(10, eta=3, min_epochs=2) == (3, 10)


def test_plan_counts_trial_epochs_saved() -> None:
    # 5 choices of 20 designs, 3 epochs, eta 3: 100 designs x 1 epoch, then 7 per choice x 2 epochs
    plan = plan_halving({c: 20 for c in "abcde"}, epochs=3, eta=3)
    assert [r.trials for r in plan.rungs] == [100, 35]
    assert (plan.trial_epochs, plan.full_trial_epochs, plan.saved) == (170, 300, 130)
    assert plan.to_dict()["saved_trial_epochs"] == 130
    # a single epoch cannot be halved: nothing saved
    assert plan_halving({"a": 4}, epochs=1, eta=3).saved == 0


def test_keep_count_keeps_at_least_one() -> None:
    assert [keep_count(n, 3) for n in (1, 2, 3, 4, 7)] == [1, 1, 1, 2, 3]


def test_promote_keeps_best_per_choice_and_never_failed() -> None:
    scores = {1: 50.0, 2: 70.0, 3: 60.0, 4: None, 5: 10.0, 6: 20.0, 7: None}
    choice_of = {1: "a", 2: "a", 3: "a", 4: "a", 5: "b", 6: "b", 7: "b"}
    # a: 4 designs keep 2 (70, 60); b: 3 designs keep 2, and only 20 and 10 have scores
    assert promote(scores, choice_of, eta=2) == {2, 3, 5, 6}
    assert promote({1: None, 2: None}, {1: "a", 2: "a"}, eta=2) == set()


def trial(choice: str, *scores: float | None) -> RecordedTrial:
    return RecordedTrial(choice, scores)


def test_replay_agrees_when_early_scores_predict_late_ones() -> None:
    trials = [trial("good", 60 + i, 70 + i, 80 + i) for i in range(6)]
    trials += [trial("bad", 50 + i, 55 + i, 60 + i) for i in range(6)]
    report = replay(trials, eta=3, resamples=50, seed=1)
    assert report.full_decision == report.halving_decision == "good"
    assert report.same_decision and report.agreement == 1.0
    assert report.plan.saved == 12 * 3 - (12 * 1 + 4 * 2)


def test_replay_detects_a_different_decision() -> None:
    # "a": one excellent design among poor ones (final mean 54.5); "b": uniformly decent (60).
    # The full stage picks b; halving (eta 3: rungs at 1 and 3 epochs) keeps 2 designs of each
    # choice and compares (95 + 41) / 2 = 68 with 60, so it picks a.
    trials = [trial("a", 90, 95, 95)] + [trial("a", 40, 40, 41) for _ in range(3)]
    trials += [trial("b", 60, 60, 60) for _ in range(4)]
    report = replay(trials, eta=3, resamples=20, seed=0)
    assert (report.full_decision, report.halving_decision) == ("b", "a")
    assert not report.same_decision and report.agreement < 1.0


def test_replay_ranks_rungs_by_the_trials_ranking_when_it_has_one() -> None:
    # After the first epoch every score ties at the majority class (58.5); the ranking signal (an AUC)
    # already orders the designs as their final scores will. Ranked by score, the tie goes to the
    # earlier trials: choice "a" keeps its two worst designs and halving picks "b"; ranked by the AUC
    # it keeps "a"'s best and agrees with the full stage.
    finals = {"a": [60, 62, 93], "b": [70, 71, 72]}  # means: a 71.67, b 71
    aucs = {"a": [0.60, 0.61, 0.80], "b": [0.70, 0.71, 0.72]}
    by_score = [RecordedTrial(c, [58.5, f]) for c in finals for f in finals[c]]
    by_auc = [RecordedTrial(c, [58.5, f], [a, a]) for c in finals for f, a in zip(finals[c], aucs[c])]
    assert replay(by_score, eta=2, resamples=1).halving_decision == "b"  # rungs 1, 2: each choice keeps 2 of 3
    assert replay(by_auc, eta=2, resamples=1).halving_decision == replay(by_auc, eta=2, resamples=1).full_decision == "a"
    assert by_auc[2].rank_value(1) == 0.80 and by_score[2].rank_value(1) == 58.5
    failed = RecordedTrial("a", [None, None], [0.9, 0.9])
    assert failed.rank_value(1) is None  # a failed trial is never promoted, whatever its ranking says


def test_rank_value_of_a_trial_result() -> None:
    per_task = {"sst2": {"metrics": {"accuracy": 0.585, "eval_auc": 0.72}, "score": 58.5},
                "stsb": {"metrics": {"pearson": 0.3, "spearman": 0.2}, "score": 25.0}}  # regression: no AUC
    assert rank_value(per_task, 41.75, "auc") == pytest.approx((72.0 + 25.0) / 2)
    assert rank_value(per_task, 41.75, "score") == 41.75
    assert rank_value(None, 41.75, "auc") == 41.75  # no per-task metrics: the score
    assert rank_value(per_task, None, "auc") is None  # failed
    with pytest.raises(SpaceError) as info:
        rank_value(per_task, 41.75, "loss")
    assert info.value.field == "halving_rank_by"


def test_replay_separates_the_ceiling_of_the_survivors_rule_from_the_ranking() -> None:
    # Where the early epochs predict the final ones, the ranking decides as perfect foresight would
    good = [trial("g", 60 + i, 70 + i, 80 + i) for i in range(6)] + [trial("h", 50 + i, 55 + i, 60 + i) for i in range(6)]
    report = replay(good, eta=3, resamples=50, seed=1)
    assert report.ranking_agreement == 1.0 and report.ceiling == 1.0
    # "a": one excellent design among poor ones; "b" uniformly decent. Perfect foresight keeps a's
    # excellent design and compares its survivors' mean with b's, so it can disagree with the full
    # stage's mean of all designs: the ceiling is below 1 whatever the ranking.
    spiky = [trial("a", 90, 95, 95)] + [trial("a", 40, 40, 41) for _ in range(3)] + [trial("b", 60, 60, 60)] * 4
    spiky_report = replay(spiky, eta=3, resamples=200, seed=0)
    assert 0 < spiky_report.ceiling < 1
    # The first epoch ranks "a"'s designs backwards: the ranking keeps a's worst, foresight its best
    backwards = [trial("a", 60 - i, 60 + 10 * i) for i in range(4)] + [trial("b", 60, 70)] * 4
    report = replay(backwards, eta=2, resamples=200, seed=0)
    assert report.halving_decision == "b" and report.full_decision == "a"
    assert report.ranking_agreement < 1 and report.to_dict()["ceiling"] == report.ceiling


def test_replay_validates_input() -> None:
    with pytest.raises(SpaceError) as info:
        replay([trial("a", 1.0, 2.0), trial("b", 1.0)])
    assert info.value.field == "trials[1].scores"
    with pytest.raises(SpaceError) as info:
        replay([trial("a", 1.0)], eta=1)
    assert info.value.field == "eta"


def test_replay_counts_the_resamples_where_the_full_stage_itself_separates() -> None:
    # "good" beats "bad" by 20 points with spread 1: every resample separates, and halving agrees
    trials = [trial("good", 60 + i, 70 + i, 80 + i % 2) for i in range(6)]
    trials += [trial("bad", 50 + i, 55 + i, 60 + i % 2) for i in range(6)]
    clear = replay(trials, eta=3, resamples=50, seed=1)
    assert clear.separable_resamples == 50 and clear.separable_agreement == 1.0
    # Two choices with the same final scores never separate: no separable resample, no figure
    tied = [trial("x", 60 + i, 70, 70) for i in range(4)] + [trial("y", 60 + i, 70, 70) for i in range(4)]
    report = replay(tied, eta=2, resamples=30, seed=0)
    assert report.separable_resamples == 0 and report.separable_agreement is None
    assert report.to_dict()["separable_resamples"] == 0


def test_separation_is_the_welch_z_of_the_best_over_the_runner_up() -> None:
    from experiments.space.halving import _separation

    trials = [trial("a", 10.0), trial("a", 12.0), trial("b", 5.0), trial("b", 7.0), trial("c", 0.0), trial("c", 1.0)]
    # a: mean 11, variance 2; b: mean 6, variance 2; se = sqrt(2/2 + 2/2) = sqrt(2)
    assert _separation(trials, ["a", "b", "c"]) == pytest.approx(5 / 2 ** 0.5)
    assert _separation([trial("a", 1.0), trial("a", 2.0)], ["a"]) == 0.0


def test_replay_measures_deciding_by_every_designs_mean_at_the_first_rung() -> None:
    # "a": one excellent design among poor ones; "b" uniformly decent. The survivors' mean picks a,
    # the full stage's mean of all designs picks b, and so does the mean of all designs after the first
    # epoch (a's first-epoch mean 52.5 < 60): that rule agrees where halving cannot.
    spiky = [trial("a", 90, 95, 95)] + [trial("a", 40, 40, 41) for _ in range(3)] + [trial("b", 60, 60, 60)] * 4
    report = replay(spiky, eta=3, resamples=1, seed=0)
    assert (report.full_decision, report.halving_decision) == ("b", "a")
    assert report.first_rung_agreement == 1.0 and report.to_dict()["first_rung_agreement"] == 1.0
    # When the first epoch orders the choices the other way round, it disagrees every time
    crossing = [trial("a", 70, 50) for _ in range(3)] + [trial("b", 50, 70) for _ in range(3)]
    assert replay(crossing, eta=2, resamples=20, seed=0).first_rung_agreement == 0.0
