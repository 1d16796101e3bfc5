"""An evaluation harness for slice discovery on planted truth (after dcbench / the Domino paper).

- :func:`planted_problem` builds a problem over given or synthetic embeddings: a ``rare`` slice, a
  ``correlation`` slice or a ``noisy_label`` slice, with predictions synthesised at set sensitivity
  and specificity inside and outside the slice (:func:`synthesize_preds`); :func:`planted_split`
  gives a validation and a test problem over one embedding space;
- :func:`informative_problem` is the *informative* protocol: the model is right 80 % of the time
  outside the slice and 40 % inside, with confidences Beta(4, 1.5) when right and Beta(1.5, 2.5)
  when wrong, 2 or 4 classes, d = 128 (:func:`informative_grid` lists its 36 settings);
- :func:`slice_metrics` is dcbench's metric: for each true slice, over predicted slice scores and
  their complements, the column with the best average precision, and its precision at 10 and 25.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class PlantedProblem:
    """A binary task with one planted slice: embeddings, labels, probs (n, 2) and the truth."""

    embeddings: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    true_slices: np.ndarray  # (n, 1) bool
    kind: str
    setting: float


def synthetic_embeddings(
    n: int, *, dim: int = 64, n_attributes: int = 5, noise: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings = sum of the active attributes' random unit directions + isotropic noise.

    Returns (embeddings (n, dim), attributes (n, n_attributes) bool); attribute 0 is the target.
    """
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(n_attributes, dim))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    attrs = rng.random((n, n_attributes)) < 0.5
    Z = (
        attrs.astype(float) @ dirs * 3.0
        + rng.normal(0, noise / np.sqrt(dim), (n, dim)) * np.sqrt(dim) / 3
    )
    return Z.astype(np.float32), attrs


def synthesize_preds(
    labels: np.ndarray,
    in_slice: np.ndarray,
    *,
    sensitivity: float = 0.8,
    specificity: float = 0.8,
    slice_sensitivity: float = 0.5,
    slice_specificity: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Positive-class scores: positives ~ Beta(s, 1 − s), negatives ~ Beta(1 − t, t).

    Inside the slice ``slice_sensitivity``/``slice_specificity`` replace s/t (0.5: uninformative).
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(labels).astype(bool)
    s = np.where(in_slice, slice_sensitivity, sensitivity)
    t = np.where(in_slice, slice_specificity, specificity)
    eps = 1e-3
    pos = rng.beta(np.clip(s, eps, 1 - eps), np.clip(1 - s, eps, 1 - eps))
    neg = rng.beta(np.clip(1 - t, eps, 1 - eps), np.clip(t, eps, 1 - eps))
    return np.where(y, pos, neg)


def planted_problem(
    kind: str,
    setting: float,
    *,
    embeddings: np.ndarray | None = None,
    attributes: np.ndarray | None = None,
    n: int = 4000,
    noise: float = 1.0,
    seed: int = 0,
    **pred_kw: float,
) -> PlantedProblem:
    """One planted problem. ``embeddings``/``attributes`` default to :func:`synthetic_embeddings`.

    - ``rare``: the slice (target = 1 and attribute 1) keeps only ``setting`` of its positives;
    - ``correlation``: attribute 1 is subsampled to correlate with the target at ``setting``; the
      slice is target = 1 and attribute 1 = 0 (the minority the correlation leaves);
    - ``noisy_label``: labels inside the slice (attribute 1) flip with probability ``setting``.
    """
    rng = np.random.default_rng(seed)
    if embeddings is None or attributes is None:
        embeddings, attributes = synthetic_embeddings(n * 2, noise=noise, seed=seed)
    Z, A = np.asarray(embeddings), np.asarray(attributes).astype(bool)
    if A.shape[1] < 2 or len(A) != len(Z):
        msg = "attributes must be (n, >= 2) bool aligned with embeddings (target, slice attribute)"
        raise ValueError(msg)
    y, a = A[:, 0], A[:, 1]
    if kind == "rare":
        sl = y & a
        keep_sl = rng.permutation(np.flatnonzero(sl))[: max(1, round(setting * sl.sum()))]
        rows = np.sort(np.concatenate([np.flatnonzero(~sl), keep_sl]))
        rows = rng.permutation(rows)[:n]
        labels, truth = y[rows], sl[rows]
    elif kind == "correlation":
        rows = _induce_correlation(y, a, setting, n, rng)
        labels, truth = y[rows], (y & ~a)[rows]
    elif kind == "noisy_label":
        rows = rng.permutation(len(y))[:n]
        labels = y[rows].copy()
        truth = a[rows] & (rng.random(len(rows)) < setting)
        labels[truth] = ~labels[truth]
    else:
        msg = f"unknown kind {kind!r}: rare, correlation or noisy_label"
        raise ValueError(msg)
    score = synthesize_preds(labels, truth, seed=seed, **pred_kw)
    probs = np.stack([1 - score, score], axis=1)
    return PlantedProblem(
        Z[rows].astype(np.float32), labels.astype(np.int64), probs, truth[:, None], kind, setting
    )


def planted_split(
    kind: str, setting: float, *, n: int = 4000, noise: float = 1.0, seed: int = 0, **pred_kw: float
) -> tuple[PlantedProblem, PlantedProblem]:
    """A validation and a test problem from one embedding space, as dcbench splits one dataset.

    One :func:`synthetic_embeddings` draw of ``4·n`` items (the same attribute directions for
    both) is split into two disjoint halves; each half is a :func:`planted_problem` of ``n`` items
    with its own predictions. A slicer fitted on the validation problem can then be scored on the
    test problem: drawing the two with different seeds would give them unrelated embedding spaces.
    """
    Z, A = synthetic_embeddings(4 * n, noise=noise, seed=seed)
    half = np.random.default_rng(seed).permutation(4 * n)
    parts = (half[: 2 * n], half[2 * n :])
    return tuple(  # type: ignore[return-value]
        planted_problem(
            kind,
            setting,
            embeddings=Z[rows],
            attributes=A[rows],
            n=n,
            seed=seed + 1000 * i,
            **pred_kw,
        )
        for i, rows in enumerate(parts)
    )


def _induce_correlation(a: np.ndarray, b: np.ndarray, corr: float, n: int, rng) -> np.ndarray:
    """Rows so that two binary columns reach Pearson ``corr`` at their means (dcbench's rule)."""
    mu_a = mu_b = min(a.mean(), b.mean())
    var_a, var_b = mu_a * (1 - mu_a), mu_b * (1 - mu_b)
    n_a1, n_b1 = mu_a * n, mu_b * n
    n11 = n_a1 * n_b1 / n + corr * np.sqrt(var_a * var_b) * (n - 1)
    cells = {
        (1, 1): n11,
        (1, 0): n_a1 - n11,
        (0, 1): n_b1 - n11,
        (0, 0): n - (n_a1 + n_b1 - n11),
    }
    rows = []
    for (va, vb), count in cells.items():
        pool = np.flatnonzero((a == va) & (b == vb))
        k = round(count)
        if k < 0 or k > len(pool):
            msg = f"cannot reach correlation {corr} with n={n}: cell {(va, vb)} needs {k} rows, has {len(pool)}"
            raise ValueError(msg)
        rows.append(rng.choice(pool, k, replace=False))
    return rng.permutation(np.concatenate(rows))


#: The informative protocol's grid: 3 kinds × 3 settings × {2, 4} classes × 2 noise levels = 36.
INFORMATIVE_SETTINGS = {
    "rare": (0.05, 0.1, 0.2),
    "correlation": (0.4, 0.6, 0.8),
    "noisy_label": (0.1, 0.2, 0.4),
}
INFORMATIVE_CLASSES = (2, 4)
INFORMATIVE_NOISE = (1.0, 2.0)


def informative_grid() -> list[tuple[str, float, int, float]]:
    """The 36 (kind, setting, n_classes, noise) settings of the informative protocol."""
    return [
        (kind, setting, c, noise)
        for kind, settings in INFORMATIVE_SETTINGS.items()
        for setting in settings
        for c in INFORMATIVE_CLASSES
        for noise in INFORMATIVE_NOISE
    ]


def synthesize_informative_probs(
    labels: np.ndarray,
    in_slice: np.ndarray,
    n_classes: int,
    *,
    accuracy: float = 0.8,
    slice_accuracy: float = 0.4,
    seed: int = 0,
) -> np.ndarray:
    """(n, C) probabilities of a model that is right with probability ``accuracy`` outside the slice
    and ``slice_accuracy`` inside.

    A right prediction is the label, a wrong one another class drawn uniformly. The confidence
    ``c`` is drawn from Beta(4, 1.5) when right and Beta(1.5, 2.5) when wrong; the predicted class
    gets ``1/C + (1 − 1/C)·c`` and the other classes share the rest evenly, so the prediction is
    always the arg-max.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(labels).astype(np.int64)
    n, C = len(y), int(n_classes)
    right = rng.random(n) < np.where(in_slice, slice_accuracy, accuracy)
    other = (y + rng.integers(1, C, n)) % C  # a uniformly drawn other class
    pred = np.where(right, y, other)
    conf = np.where(right, rng.beta(4.0, 1.5, n), rng.beta(1.5, 2.5, n))
    top = 1.0 / C + (1.0 - 1.0 / C) * conf
    P = np.repeat(((1.0 - top) / (C - 1))[:, None], C, axis=1)
    P[np.arange(n), pred] = top
    return P


def informative_problem(
    kind: str,
    setting: float,
    *,
    n_classes: int = 2,
    noise: float = 1.0,
    n: int = 3000,
    dim: int = 128,
    seed: int = 0,
) -> PlantedProblem:
    """One setting of the informative protocol: the test half (``n`` items) of 2·``n`` drawn.

    Embeddings are :func:`synthetic_embeddings` (``dim``, six attributes, ``noise``). The class is
    attribute 0 (2 classes) or attributes 0 and 2 read as two bits (4 classes); attribute 1 is the
    slice attribute and class 1 the slice's class.

    - ``rare``: class 1 with attribute 1 keeps only ``setting`` of its items;
    - ``correlation``: attribute 1 is subsampled to correlate with class 1 at ``setting``; the slice
      is class 1 without attribute 1;
    - ``noisy_label``: items with attribute 1 get another class (uniformly drawn) as label with
      probability ``setting``; the model predicts the true class as everywhere else (80 % right),
      so inside the slice it disagrees with the label, usually with confidence.

    In ``rare`` and ``correlation`` the model is right 80 % of the time outside the slice and 40 %
    inside (:func:`synthesize_informative_probs`).
    """
    if n_classes not in (2, 4):
        msg = f"n_classes must be 2 or 4, got {n_classes}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    Z, A = synthetic_embeddings(4 * n, dim=dim, n_attributes=6, noise=noise, seed=seed)
    cls = A[:, 0].astype(np.int64) + (2 * A[:, 2].astype(np.int64) if n_classes == 4 else 0)
    a = A[:, 1]
    target = cls == 1
    if kind == "rare":
        sl = target & a
        keep_sl = rng.permutation(np.flatnonzero(sl))[: max(1, round(setting * sl.sum()))]
        rows = rng.permutation(np.concatenate([np.flatnonzero(~sl), keep_sl]))[: 2 * n]
        truth = sl[rows]
    elif kind == "correlation":
        rows = _induce_correlation(target, a, setting, 2 * n, rng)
        truth = (target & ~a)[rows]
    elif kind == "noisy_label":
        rows = rng.permutation(len(cls))[: 2 * n]
        truth = a[rows] & (rng.random(len(rows)) < setting)
    else:
        msg = f"unknown kind {kind!r}: rare, correlation or noisy_label"
        raise ValueError(msg)
    rows = rows[n:]  # the test half
    truth = truth[n:]
    clean = cls[rows]
    if kind == "noisy_label":
        probs = synthesize_informative_probs(clean, np.zeros(n, bool), n_classes, seed=seed + 1)
        labels = np.where(truth, (clean + rng.integers(1, n_classes, n)) % n_classes, clean)
    else:
        probs = synthesize_informative_probs(clean, truth, n_classes, seed=seed + 1)
        labels = clean
    return PlantedProblem(
        Z[rows].astype(np.float32), labels.astype(np.int64), probs, truth[:, None], kind, setting
    )


def precision_at(truth: np.ndarray, score: np.ndarray, k: int) -> float:
    order = np.argsort(-score, kind="stable")[:k]
    return float(truth[order].mean()) if len(order) else float("nan")


def slice_metrics(true_slices: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """dcbench's metric. ``true_slices`` (n, k) bool, ``predicted`` (n, m) scores.

    For each true slice, over the m predicted columns and their complements (1 − s), the column with
    the best average precision; returns its ``ap``, ``p_at_10``, ``p_at_25`` and which column it was.
    """
    from sklearn.metrics import average_precision_score

    T = np.asarray(true_slices).astype(bool)
    S = np.asarray(predicted, dtype=np.float64)
    if T.ndim == 1:
        T = T[:, None]
    if S.ndim == 1:
        S = S[:, None]
    if len(T) != len(S):
        msg = f"{len(T)} rows of true slices but {len(S)} rows of predictions"
        raise ValueError(msg)
    rows = []
    for j in range(T.shape[1]):
        t = T[:, j]
        best = None
        if t.any():
            for col in range(S.shape[1]):
                for comp, s in ((False, S[:, col]), (True, 1 - S[:, col])):
                    ap = float(average_precision_score(t, s))
                    if best is None or ap > best["ap"]:
                        best = {
                            "ap": ap,
                            "p_at_10": precision_at(t, s, 10),
                            "p_at_25": precision_at(t, s, 25),
                            "column": col,
                            "complement": comp,
                        }
        rows.append(
            {
                "true_slice": j,
                **(
                    best
                    or {
                        "ap": np.nan,
                        "p_at_10": np.nan,
                        "p_at_25": np.nan,
                        "column": -1,
                        "complement": False,
                    }
                ),
            }
        )
    return pd.DataFrame(rows)
