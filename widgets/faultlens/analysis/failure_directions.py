"""Failure directions (Jain, Lawrence, Moitra, Madry, ICLR 2023): per class, a linear SVM on whitened,
L2-normalised embeddings predicts correct vs error. Its decision value is a per-image failure score
(lower = more likely an error) and its normal is the class's failure direction.

Fit on one split (e.g. validation), score another (e.g. test).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from faultlens._checks import finite_matrix


class FailureDirectionWarning(UserWarning):
    """A class was skipped (too few errors or correct images); ``skipped_`` says why."""


def _check(Z: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    Z = finite_matrix(
        Z,
        f"{what}: embeddings",
        rows=len(y),
        hint="; drop the items that could not be embedded first",
    )
    return Z, y.astype(np.int64)


class FailureDirections:
    """Per-class linear SVMs that predict whether the classifier is right.

    Parameters
    ----------
    Cs:
        Regularisation strengths searched by cross-validation (balanced accuracy).
    cv:
        Folds of the search; a class needs at least ``cv`` errors and ``cv`` correct images.
    random_state:
        Seed of the fold split.

    Attributes (after ``fit``)
    --------------------------
    directions_:
        ``{class: unit vector}`` in the whitened, L2-normalised embedding space; errors lie along
        ``-direction``.
    C_:
        ``{class: chosen C}``; ``cv_score_``: its balanced accuracy.
    skipped_:
        ``{class: reason}`` for classes without an SVM (their scores are NaN).
    """

    def __init__(
        self,
        *,
        Cs: Sequence[float] = tuple(np.logspace(-6, 0, 7)),
        cv: int = 2,
        random_state: int = 0,
    ) -> None:
        self.Cs = tuple(float(c) for c in Cs)
        self.cv = int(cv)
        self.random_state = random_state

    def _prep(self, Z: np.ndarray) -> np.ndarray:
        X = (Z - self.mean_) / self.std_
        return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)

    def fit(
        self,
        embeddings: np.ndarray,
        labels: np.ndarray,
        preds: np.ndarray,
        *,
        whiten_on: np.ndarray | None = None,
    ) -> FailureDirections:
        """Fit one SVM per class. ``whiten_on``: embeddings whose mean/std whiten (default: these)."""
        from sklearn.model_selection import StratifiedKFold, cross_val_score
        from sklearn.svm import LinearSVC

        Z, y = _check(embeddings, labels, "fit")
        pred = np.asarray(preds)
        if len(pred) != len(y):
            msg = f"fit: {len(y)} labels but {len(pred)} predictions"
            raise ValueError(msg)
        ref = (
            Z if whiten_on is None else _check(whiten_on, np.zeros(len(whiten_on)), "whiten_on")[0]
        )
        self.mean_ = ref.mean(axis=0)
        self.std_ = np.where(ref.std(axis=0) > 1e-8, ref.std(axis=0), 1.0)
        X = self._prep(Z)
        ok = pred == y
        self.models_: dict[int, LinearSVC] = {}
        self.directions_: dict[int, np.ndarray] = {}
        self.C_: dict[int, float] = {}
        self.cv_score_: dict[int, float] = {}
        self.skipped_: dict[int, str] = {}
        for c in np.unique(y):
            sel = y == c
            n_err, n_ok = int((~ok[sel]).sum()), int(ok[sel].sum())
            if min(n_err, n_ok) < self.cv:
                self.skipped_[int(c)] = (
                    f"class {int(c)} has {n_err} errors and {n_ok} correct images; "
                    f"need at least {self.cv} of each"
                )
                continue
            folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
            best = (-np.inf, self.Cs[0])
            for C in self.Cs:
                svm = LinearSVC(C=C, class_weight="balanced", dual="auto", max_iter=5000)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    s = cross_val_score(svm, X[sel], ok[sel], cv=folds, scoring="balanced_accuracy")
                if s.mean() > best[0] + 1e-9:
                    best = (float(s.mean()), C)
            svm = LinearSVC(C=best[1], class_weight="balanced", dual="auto", max_iter=5000)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                svm.fit(X[sel], ok[sel])
            self.models_[int(c)] = svm
            w = svm.coef_[0]
            self.directions_[int(c)] = w / max(np.linalg.norm(w), 1e-12)
            self.C_[int(c)] = best[1]
            self.cv_score_[int(c)] = best[0]
        if self.skipped_:
            warnings.warn(
                "failure directions skipped " + "; ".join(self.skipped_.values()),
                FailureDirectionWarning,
                stacklevel=2,
            )
        return self

    def score(self, embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per-image failure score (the SVM decision value): lower = more likely an error.

        Items of classes without an SVM get NaN.
        """
        if not hasattr(self, "models_"):
            msg = "call fit(embeddings, labels, preds) before score()"
            raise RuntimeError(msg)
        Z, y = _check(embeddings, labels, "score")
        X = self._prep(Z)
        out = np.full(len(y), np.nan)
        for c, svm in self.models_.items():
            sel = y == c
            if sel.any():
                out[sel] = svm.decision_function(X[sel])
        return out

    def predict(self, embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Predicted correctness (score > 0); NaN scores count as correct."""
        s = self.score(embeddings, labels)
        return ~(s <= 0)

    def text_scores(
        self, text_embeddings: np.ndarray, cls: int, reference: np.ndarray
    ) -> np.ndarray:
        """Score phrases against class ``cls``'s direction: ``w·prep(t) − w·prep(r)``.

        ``text_embeddings`` (m, D) and ``reference`` (D,) (e.g. "a photo of a <class>") come from the
        text encoder paired with the image embedder. Most negative = the failure mode's description.
        """
        if cls not in self.directions_:
            msg = f"class {cls} has no failure direction: {self.skipped_.get(cls, 'not fitted')}"
            raise KeyError(msg)
        w = self.directions_[cls]
        T = self._prep(np.asarray(text_embeddings, dtype=np.float64))
        r = self._prep(np.asarray(reference, dtype=np.float64)[None])
        return T @ w - float((r @ w)[0])


def cross_fitted_scores(
    embeddings: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    *,
    folds: int = 2,
    random_state: int = 0,
    **options,
) -> np.ndarray:
    """Failure scores of every item from SVMs that never saw it (``folds``-fold cross-fitting).

    Scored on the items it was fitted on, a class's SVM in a high-dimensional embedding space
    separates that class's errors almost perfectly, so its flagged set is the errors themselves
    rather than the coherent group behind them; scores from the other folds' SVMs are honest.
    Items of a class skipped in a fold (too few errors there) get NaN.
    """
    Z, y = _check(embeddings, labels, "cross_fitted_scores")
    pred = np.asarray(preds)
    fold = np.random.default_rng(random_state).permutation(len(y)) % max(2, int(folds))
    out = np.full(len(y), np.nan)
    for k in np.unique(fold):
        fit_rows, score_rows = fold != k, fold == k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FailureDirectionWarning)
            fd = FailureDirections(random_state=random_state, **options).fit(
                Z[fit_rows], y[fit_rows], pred[fit_rows], whiten_on=Z
            )
        out[score_rows] = fd.score(Z[score_rows], y[score_rows])
    return out
