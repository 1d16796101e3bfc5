"""Likely label errors: planted flipped labels are found from out-of-sample probabilities, far
better than the plain confidence baseline, on a seeded synthetic task and on sklearn's digits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from faultlens.analysis.label_errors import METHODS, label_issues


def _flip(y: np.ndarray, frac: float, n_classes: int, rng: np.random.Generator):
    flipped = rng.random(len(y)) < frac
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, flipped.sum())) % n_classes
    return noisy, flipped


def _aurocs(probs: np.ndarray, noisy: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    out = {"confidence": roc_auc_score(flipped, 1 - probs.max(axis=1))}
    for m in METHODS:
        out[m] = roc_auc_score(flipped, label_issues(probs, noisy, method=m).score)
    return out


def _synthetic(seed: int = 0):
    """6 Gaussian classes in 8-D (two of them overlapping), 10 % of the labels flipped."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (6, 8))
    centers[1] = centers[0] + 1.2
    y = rng.integers(0, 6, 3000)
    X = centers[y] + rng.normal(0, 1, (3000, 8))
    noisy, flipped = _flip(y, 0.1, 6, rng)
    probs = cross_val_predict(
        LogisticRegression(max_iter=2000), X, noisy, cv=5, method="predict_proba"
    )
    return probs, y, noisy, flipped


def test_planted_flips_on_a_synthetic_task() -> None:
    probs, truth, noisy, flipped = _synthetic()
    auc = _aurocs(probs, noisy, flipped)
    # the model's own confidence cannot tell a flipped label from a kept one ...
    assert 0.4 < auc["confidence"] < 0.6
    # ... the probability of the given label can (measured 0.997-0.998)
    for m in METHODS:
        assert auc[m] > 0.97, (m, auc)
    li = label_issues(probs, noisy)
    assert flipped[li.flagged].mean() > 0.8  # precision of the confident-joint flag (0.90)
    assert li.flagged[flipped].mean() > 0.65  # recall (0.79)
    top = li.ranking[: int(flipped.sum())]
    assert flipped[top].mean() > 0.85
    hit = li.flagged & flipped
    assert (li.suggested[hit] == truth[hit]).mean() > 0.9  # it names the true class
    assert (li.suggested[~li.flagged] == noisy[~li.flagged]).all()


def test_planted_flips_on_digits() -> None:
    rng = np.random.default_rng(1)
    d = load_digits()
    noisy, flipped = _flip(d.target, 0.1, 10, rng)
    probs = cross_val_predict(
        LogisticRegression(max_iter=3000), d.data / 16, noisy, cv=5, method="predict_proba"
    )
    auc = _aurocs(probs, noisy, flipped)
    assert auc["confidence"] < 0.65
    for m in METHODS:
        assert auc[m] > 0.95, (m, auc)  # measured 0.989-0.991
    li = label_issues(probs, noisy)
    hit = li.flagged & flipped
    assert (li.suggested[hit] == d.target[hit]).mean() > 0.9  # it names the true digit


def test_per_class_thresholds_separate_label_errors_from_model_errors() -> None:
    """Class 0 is one the model is never sure of (0.40-0.50 on its images); classes 1 and 2 get
    0.9. Planted: 5 class-0 images labelled 1 (label errors: [0.48, 0.35, 0.17]) and 20 class-1
    images the model gets wrong (model errors, labels right: [0.02, 0.30, 0.68]). Self-confidence
    ranks the model errors first (0.70 > 0.65); confident learning, which weighs each class
    against its own threshold, ranks the 5 label errors first and flags only them."""
    rows = (
        [[0.40, 0.30, 0.30]] * 48  # class 0, labelled 0
        + [[0.50, 0.30, 0.20]] * 47
        + [[0.48, 0.35, 0.17]] * 5  # class 0, labelled 1: the label errors
        + [[0.05, 0.90, 0.05]] * 80  # class 1, labelled 1
        + [[0.02, 0.30, 0.68]] * 20  # class 1, labelled 1, predicted 2: model errors
        + [[0.05, 0.05, 0.90]] * 100  # class 2
    )
    probs = np.array(rows)
    labels = np.array([0] * 95 + [1] * 105 + [2] * 100)
    errors = np.zeros(len(labels), dtype=bool)
    errors[95:100] = True
    sc = label_issues(probs, labels, method="self_confidence")
    cl = label_issues(probs, labels, method="confident_learning")
    assert set(sc.ranking[:20]) == set(range(180, 200))  # the model errors come first
    assert not errors[sc.ranking[:20]].any()
    assert set(cl.ranking[:5]) == set(range(95, 100))
    assert roc_auc_score(errors, cl.score) == pytest.approx(1.0)
    assert np.flatnonzero(cl.flagged).tolist() == list(range(95, 100))
    assert (cl.suggested[95:100] == 0).all()
    assert cl.thresholds[0] == pytest.approx((48 * 0.4 + 47 * 0.5) / 95)


def test_bad_inputs_are_named() -> None:
    p = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match=r"label 2 at row 1 is not a class index in 0\.\.1"):
        label_issues(p, np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="method 'best' is not one of"):
        label_issues(p, np.array([0, 1, 1]), method="best")
    with pytest.raises(ValueError, match="rows of probs"):
        label_issues(p, np.array([0, 1]))
