"""GLUE metrics against hand-computed values and against scikit-learn / scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

from tasks.metrics import (
    METRIC_KEYS,
    MetricError,
    accuracy,
    compute_metrics,
    f1_binary,
    matthews_correlation,
    pearson,
    ranking_auc,
    spearman,
    task_score,
)


def test_hand_computed_binary_metrics():
    # Given TP=2, TN=1, FP=1, FN=0
    pred, gold = [1, 1, 0, 1], [1, 0, 0, 1]
    assert accuracy(pred, gold) == 0.75
    assert f1_binary(pred, gold) == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))  # 0.8
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 2 / sqrt(3*2*2*1)
    assert matthews_correlation(pred, gold) == pytest.approx(2 / math.sqrt(12))


def test_hand_computed_correlations():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.5]
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman(x, y) == pytest.approx(1.0)  # monotone, not linear
    assert pearson(x, y) < 1.0


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn_and_scipy(seed):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, size=200)
    pred = np.where(rng.random(200) < 0.7, gold, 1 - gold)
    assert accuracy(pred, gold) == pytest.approx(accuracy_score(gold, pred))
    assert f1_binary(pred, gold) == pytest.approx(f1_score(gold, pred))
    assert matthews_correlation(pred, gold) == pytest.approx(matthews_corrcoef(gold, pred))
    multi_gold = rng.integers(0, 3, size=200)
    multi_pred = np.where(rng.random(200) < 0.5, multi_gold, rng.integers(0, 3, size=200))
    assert matthews_correlation(multi_pred, multi_gold) == pytest.approx(
        matthews_corrcoef(multi_gold, multi_pred)
    )
    scores = rng.uniform(0, 5, size=200).round(1)  # rounding makes ties for Spearman
    noisy = scores + rng.normal(0, 1, size=200)
    assert pearson(noisy, scores) == pytest.approx(pearsonr(noisy, scores).statistic)
    assert spearman(noisy.round(0), scores) == pytest.approx(
        spearmanr(noisy.round(0), scores).statistic
    )


@pytest.mark.parametrize("seed", range(5))
def test_ranking_auc_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, size=300)
    p1 = np.clip(0.5 + 0.2 * (gold - 0.5) + rng.normal(0, 0.2, size=300), 0, 1).round(2)  # ties
    binary = np.stack([1 - p1, p1], axis=1)
    assert ranking_auc(binary, gold) == pytest.approx(roc_auc_score(gold, p1))
    multi_gold = rng.integers(0, 3, size=300)
    logits = rng.normal(0, 1, size=(300, 3)) + np.eye(3)[multi_gold]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert ranking_auc(probs, multi_gold) == pytest.approx(
        roc_auc_score(multi_gold, probs, multi_class="ovr", average="macro")
    )


def test_ranking_auc_of_a_majority_class_model_still_orders_examples():
    # Every example predicted class 0 (accuracy = majority share), yet class-1 examples get more
    # probability: the AUC sees it, accuracy does not.
    gold = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.85, 0.15], [0.7, 0.3], [0.6, 0.4]])
    assert accuracy(probs.argmax(axis=1), gold) == 0.6
    assert ranking_auc(probs, gold) == 1.0
    assert ranking_auc([[0.5, 0.5]] * 3, [1, 1, 1]) == 0.5  # one class only: undefined, neutral
    with pytest.raises(MetricError, match="probabilities"):
        ranking_auc([0.1, 0.2], [0, 1])


def test_degenerate_inputs_score_zero_not_nan():
    # A collapsed model that always predicts the majority class.
    assert matthews_correlation([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0
    assert f1_binary([0, 0, 0], [1, 0, 1]) == 0.0
    assert pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0
    assert spearman([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0


def test_scores_follow_paper_definitions():
    mrpc = compute_metrics("f1_accuracy", [1, 1, 0, 1], [1, 0, 0, 1])
    assert task_score("f1_accuracy", mrpc) == pytest.approx((0.8 + 0.75) / 2 * 100)
    stsb = {"pearson": 0.8, "spearman": 0.7}
    assert task_score("pearson_spearman", stsb) == pytest.approx(75.0)
    cola = compute_metrics("matthews", [1, 1, 0, 1], [1, 0, 0, 1])
    assert task_score("matthews", cola) == pytest.approx(100 * 2 / math.sqrt(12))
    assert task_score("accuracy", {"accuracy": 0.9}) == pytest.approx(90.0)
    assert set(compute_metrics("pearson_spearman", [1.0, 2.0], [1.0, 3.0])) == set(
        METRIC_KEYS["pearson_spearman"]
    )


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: accuracy([1, 0], [1]), "predictions"),
        (lambda: accuracy([], []), "labels"),
        (lambda: accuracy([[1]], [1]), "predictions"),
        (lambda: compute_metrics("bleu", [1], [1]), "kind"),
        (lambda: task_score("f1_accuracy", {"f1": 0.5}), "metrics"),
    ],
)
def test_bad_input_names_the_field(call, field):
    with pytest.raises(MetricError) as info:
        call()
    assert info.value.field == field
