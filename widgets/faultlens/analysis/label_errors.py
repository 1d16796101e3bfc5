"""Likely label errors, ranked from the classifier's own probabilities.

An image whose given label the classifier finds improbable, while it is confident of another class,
is more likely mislabelled than misclassified. Three scores (higher = more likely a label error):

- ``"self_confidence"``: ``1 - p[label]``, the probability the model gives to the other classes;
- ``"margin"``: ``max_{k≠label} p[k] - p[label]`` (in [-1, 1]);
- ``"confident_learning"`` (default): the same margin after dividing each class's probability by
  that class's *threshold* ``t_k``, the mean probability the model gives class ``k`` on images
  labelled ``k``. A class the model is never very sure of (low ``t_k``) then counts as confident at
  a lower probability, as in confident learning (Northcutt et al., 2021); written here, not taken
  from cleanlab (whose licence is AGPL).

:func:`label_issues` also returns the *confident joint* flag: an image is flagged when some other
class ``k`` reaches its threshold (``p[k] >= t_k``) and, among the classes that do, the most
probable is not the given label. Use the probabilities of images the model was not trained on
(a held-out split or cross-validated predictions): on its own training images a model has
memorised the wrong labels too.

``table["label_issue"] = label_issues(probs, labels).score`` gives a column to colour the
Explorer's map by and to sort its grid by (``sort_by="label_issue", descending=True``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faultlens._checks import finite_matrix

METHODS = ("confident_learning", "self_confidence", "margin")


@dataclass(frozen=True)
class LabelIssues:
    """Per-image label-error evidence; every array has one entry per image.

    Attributes
    ----------
    score:
        (N,) float: higher = more likely a label error (see the module docstring for ``method``).
    flagged:
        (N,) bool: the confident joint puts the image off its label's diagonal.
    suggested:
        (N,) int: the most probable class among those at or above their threshold (the label
        itself when no class is), i.e. the label the model would give it.
    thresholds:
        (C,) float: per class, the mean probability of that class on images labelled with it.
    method:
        The score's name.
    """

    score: np.ndarray
    flagged: np.ndarray
    suggested: np.ndarray
    thresholds: np.ndarray
    method: str

    @property
    def ranking(self) -> np.ndarray:
        """Row indices, most likely label error first (ties: lower row first)."""
        return np.lexsort((np.arange(len(self.score)), -self.score))


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class ``k``: the mean of ``probs[:, k]`` over the images labelled ``k``.

    A class with no image gets threshold 1 (it can never be confidently suggested).
    """
    n_classes = probs.shape[1]
    sums = np.zeros(n_classes, dtype=np.float64)
    np.add.at(sums, labels, probs[np.arange(len(labels)), labels])
    counts = np.bincount(labels, minlength=n_classes)
    t = np.ones(n_classes, dtype=np.float64)
    has = counts > 0
    t[has] = sums[has] / counts[has]
    return np.clip(t, 1e-6, 1.0)


def _validate(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    p = finite_matrix(probs, "probs", rows=len(y)).astype(np.float64)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        msg = f"labels must be a 1-D array of class indices, got dtype {y.dtype} shape {y.shape}"
        raise ValueError(msg)
    bad = np.flatnonzero((y < 0) | (y >= p.shape[1]))
    if len(bad):
        msg = f"label {y[bad[0]]} at row {bad[0]} is not a class index in 0..{p.shape[1] - 1}"
        raise ValueError(msg)
    if (p < 0).any():
        msg = f"probs row {np.flatnonzero((p < 0).any(axis=1))[0]} has negative values"
        raise ValueError(msg)
    if p.shape[1] < 2:
        msg = "label errors need at least 2 classes"
        raise ValueError(msg)
    return p, y.astype(np.intp)


def _margin(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = np.arange(len(y))
    given = p[rows, y]
    other = p.copy()
    other[rows, y] = -np.inf
    return other.max(axis=1) - given


def label_issues(
    probs: np.ndarray, labels: np.ndarray, *, method: str = "confident_learning"
) -> LabelIssues:
    """Score every image for a likely label error (see the module docstring).

    Parameters
    ----------
    probs:
        (N, C) class probabilities of held-out images (rows sum to 1).
    labels:
        (N,) the given labels, as class indices.
    method:
        ``"confident_learning"`` (default), ``"self_confidence"`` or ``"margin"``.
    """
    if method not in METHODS:
        msg = f"method {method!r} is not one of {list(METHODS)}"
        raise ValueError(msg)
    p, y = _validate(probs, labels)
    t = class_thresholds(p, y)
    rows = np.arange(len(y))
    if method == "self_confidence":
        score = 1.0 - p[rows, y]
    elif method == "margin":
        score = _margin(p, y)
    else:
        score = _margin(p / t[None, :], y)
    above = p >= t[None, :]
    masked = np.where(above, p, -np.inf)
    suggested = np.where(above.any(axis=1), masked.argmax(axis=1), y)
    flagged = suggested != y
    return LabelIssues(
        score=score.astype(np.float64),
        flagged=flagged,
        suggested=suggested.astype(np.int64),
        thresholds=t,
        method=method,
    )
