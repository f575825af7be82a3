"""GLUE metrics and the PEFS 0-100 task score.

Each task names one metric *kind*; :func:`compute_metrics` turns predictions and gold labels into a
dict of raw metric values (fractions and correlations, as GLUE reports them before scaling) and
:func:`task_score` folds that dict into one number on a 0-100 scale, as ../shared/PAPER.md fixes:

    accuracy          -> accuracy * 100                      (SST-2, RTE, QNLI, WNLI, user tasks)
    f1_accuracy       -> (F1 + accuracy) / 2 * 100           (MRPC; F1 of the positive class 1)
    matthews          -> Matthews correlation * 100          (CoLA; may be negative)
    pearson_spearman  -> (Pearson + Spearman) / 2 * 100      (STS-B and regression user tasks)

Example:
    >>> m = compute_metrics("f1_accuracy", [1, 0, 1, 1], [1, 0, 0, 1])
    >>> m["accuracy"], round(m["f1"], 4), round(task_score("f1_accuracy", m), 2)
    (0.75, 0.8, 77.5)

Degenerate inputs follow the usual conventions (scikit-learn's for MCC and F1): a correlation whose
denominator is zero (constant predictions, e.g. a model that always answers the majority class) is
0.0 rather than NaN, so a collapsed model scores 0 and never poisons a search's averages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from scipy.stats import rankdata

MetricKind = Literal["accuracy", "f1_accuracy", "matthews", "pearson_spearman"]

#: The metric kinds a task may name, with the keys compute_metrics returns for each.
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "accuracy": ("accuracy",),
    "f1_accuracy": ("f1", "accuracy"),
    "matthews": ("matthews_correlation",),
    "pearson_spearman": ("pearson", "spearman"),
}


class MetricError(ValueError):
    """Bad metric input; ``field`` names the offending argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _as_arrays(
    predictions: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(predictions)
    gold = np.asarray(labels)
    if pred.ndim != 1:
        raise MetricError("predictions", f"expected a 1-D sequence, got shape {pred.shape}")
    if gold.ndim != 1:
        raise MetricError("labels", f"expected a 1-D sequence, got shape {gold.shape}")
    if len(pred) != len(gold):
        raise MetricError(
            "predictions", f"has {len(pred)} items but labels has {len(gold)}; they must match"
        )
    if len(gold) == 0:
        raise MetricError("labels", "is empty; metrics need at least one example")
    return pred, gold


def accuracy(predictions: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Fraction of predictions equal to the label."""
    pred, gold = _as_arrays(predictions, labels)
    return float(np.mean(pred == gold))


def f1_binary(
    predictions: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    positive: int = 1,
) -> float:
    """F1 of the ``positive`` class; 0.0 when there are no true positives (scikit-learn's rule)."""
    pred, gold = _as_arrays(predictions, labels)
    tp = float(np.sum((pred == positive) & (gold == positive)))
    fp = float(np.sum((pred == positive) & (gold != positive)))
    fn = float(np.sum((pred != positive) & (gold == positive)))
    if tp == 0.0:
        return 0.0
    return 2.0 * tp / (2.0 * tp + fp + fn)


def matthews_correlation(
    predictions: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin's R_K, as scikit-learn).

    For two classes it equals (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)).
    """
    pred, gold = _as_arrays(predictions, labels)
    classes, inverse = np.unique(np.concatenate([gold, pred]), return_inverse=True)
    k = len(classes)
    gold_idx, pred_idx = inverse[: len(gold)], inverse[len(gold) :]
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (gold_idx, pred_idx), 1.0)
    t_sum = confusion.sum(axis=1)
    p_sum = confusion.sum(axis=0)
    n_correct = np.trace(confusion)
    n = confusion.sum()
    cov_ytyp = n_correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n * n - np.dot(p_sum, p_sum)
    cov_ytyt = n * n - np.dot(t_sum, t_sum)
    denominator = cov_ytyt * cov_ypyp
    if denominator == 0.0:
        return 0.0
    return float(cov_ytyp / np.sqrt(denominator))


def pearson(
    predictions: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray
) -> float:
    """Pearson correlation; 0.0 when either side is constant (undefined otherwise)."""
    pred, gold = _as_arrays(predictions, labels)
    x = pred.astype(np.float64) - pred.mean(dtype=np.float64)
    y = gold.astype(np.float64) - gold.mean(dtype=np.float64)
    denominator = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if denominator == 0.0:
        return 0.0
    # Clip: rounding can push a perfect correlation a hair past 1.
    return float(np.clip(np.dot(x, y) / denominator, -1.0, 1.0))


def spearman(
    predictions: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray
) -> float:
    """Spearman rank correlation (Pearson of average ranks, so ties are handled as scipy does)."""
    pred, gold = _as_arrays(predictions, labels)
    return pearson(rankdata(pred), rankdata(gold))


def compute_metrics(
    kind: str,
    predictions: Sequence[float] | np.ndarray,
    labels: Sequence[float] | np.ndarray,
) -> dict[str, float]:
    """Raw metric values for ``kind`` (one of :data:`METRIC_KEYS`), e.g. ``{"f1": .., "accuracy": ..}``.

    Classification kinds expect integer class predictions (argmax already taken); the regression
    kind expects real-valued predictions.
    """
    if kind == "accuracy":
        return {"accuracy": accuracy(predictions, labels)}
    if kind == "f1_accuracy":
        return {"f1": f1_binary(predictions, labels), "accuracy": accuracy(predictions, labels)}
    if kind == "matthews":
        return {"matthews_correlation": matthews_correlation(predictions, labels)}
    if kind == "pearson_spearman":
        return {"pearson": pearson(predictions, labels), "spearman": spearman(predictions, labels)}
    raise MetricError("kind", f"unknown metric {kind!r}; known: {', '.join(METRIC_KEYS)}")


def task_score(kind: str, metrics: Mapping[str, float]) -> float:
    """The task's score on a 0-100 scale (PAPER.md): the mean of the kind's metrics, times 100."""
    if kind not in METRIC_KEYS:
        raise MetricError("kind", f"unknown metric {kind!r}; known: {', '.join(METRIC_KEYS)}")
    keys = METRIC_KEYS[kind]
    missing = [key for key in keys if key not in metrics]
    if missing:
        raise MetricError("metrics", f"missing {', '.join(missing)} needed for {kind!r}")
    return float(100.0 * sum(float(metrics[key]) for key in keys) / len(keys))


def ranking_auc(
    probabilities: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> float:
    """Macro one-vs-rest ROC AUC of class probabilities (n x k), over the classes present with both
    positives and negatives (binary: the AUC of the positive class). 0.5 when no class qualifies.

    It measures how well the model *orders* examples, so it moves before accuracy does while a
    barely trained model still predicts the majority class everywhere (successive halving's early
    rungs rank by it, experiments.space.halving). Ties count half, as scikit-learn's roc_auc_score.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    gold = np.asarray(labels)
    if probs.ndim != 2 or probs.shape[0] != gold.shape[0]:
        raise MetricError("probabilities", f"need shape (n, k) with n = {gold.shape[0]}, got {probs.shape}")
    aucs = []
    for k in range(probs.shape[1]):
        positive = gold == k
        n_pos = int(positive.sum())
        n_neg = positive.size - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = rankdata(probs[:, k])
        aucs.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else 0.5
