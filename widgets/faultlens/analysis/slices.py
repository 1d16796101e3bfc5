"""Slice discovery: coherent groups of images where the classifier fails.

Methods (``discover(..., method=...)``):

- ``"mixture"``: Domino's error-aware Gaussian mixture (Eyuboglu et al., ICLR 2022) — a diagonal
  Gaussian mixture over PCA-reduced embeddings whose components also model the label and the
  prediction, weighted by γ and γ̂; components are ranked by how far predictions depart from labels.
- ``"failure_directions"``: per class, the images the failure-direction SVM flags (score ≤ 0).
- ``"kmeans"``: k-means on the embeddings, clusters ranked by error count (a baseline).
- ``"confusion"``: confusion-matrix cells ``(y == t) · p̂[:, p]`` (a baseline).

Every slice carries a soft membership per item, its members (most typical first) and its stats.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faultlens._checks import finite_matrix
from faultlens.analysis.failure_directions import FailureDirections
from faultlens.analysis.stats import group_stats

METHODS = ("mixture", "failure_directions", "kmeans", "confusion")


class SliceWarning(UserWarning):
    """Fewer slices than asked for could be found; the message says why."""


@dataclass
class Slice:
    """One discovered slice.

    ``membership`` is (n,) in [0, 1]; ``indices`` are the members (membership ≥ ``threshold``, else
    the hard-assigned items) ordered most typical first; ``stats`` holds size, errors, error rate,
    its 95 % Wilson interval, lift over the overall error rate and the class mix.
    """

    name: str
    method: str
    membership: np.ndarray
    indices: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    descriptions: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Slice {self.name!r} ({self.method}): {len(self.indices)} images, error rate "
            f"{s.get('error_rate', float('nan')):.1%}, lift {s.get('lift', float('nan')):.2f}>"
        )


def slice_stats(
    members: np.ndarray,
    correct: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """The slice's :func:`~faultlens.analysis.stats.group_stats` against every row: ``n``,
    ``errors``, ``error_rate`` with its Wilson CI, ``lift`` over the overall rate, ``class_mix``."""
    return group_stats(correct, members, labels=labels, class_names=class_names)


# --------------------------------------------------------------------------- Domino's mixture


def _onehot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), n_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out


class ErrorAwareMixture:
    """Domino's error-aware mixture. ``fit`` on one split, ``predict_proba`` on any other.

    Parameters
    ----------
    n_slices:
        Components kept as slices (ranked by ``|max_j (p̂_kj − p_kj)|``).
    n_components:
        Mixture components K (at least ``n_slices``; clamped to the number of items).
    gamma, gamma_hat:
        Weights of the label and prediction log-likelihoods (γ, γ̂). Domino's examples use 10–40.
    pca_dims:
        PCA dimension of the embeddings before the mixture.
    """

    def __init__(
        self,
        n_slices: int = 5,
        *,
        n_components: int = 25,
        gamma: float = 10.0,
        gamma_hat: float = 10.0,
        pca_dims: int = 128,
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        init: str = "confusion",
        random_state: int = 0,
    ) -> None:
        self.n_slices = n_slices
        self.n_components = n_components
        self.gamma = gamma
        self.gamma_hat = gamma_hat
        self.pca_dims = pca_dims
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init = init
        self.random_state = random_state

    # log-likelihood of every item under every component, (n, K)
    def _log_resp(self, X: np.ndarray, Y: np.ndarray | None, P: np.ndarray | None) -> np.ndarray:
        eps = np.finfo(np.float64).eps
        inv = 1.0 / self.var_
        # sum_d (x_d - m_kd)^2 / v_kd, expanded into three (n, K) products: never an (n, K, d)
        # temporary (at 1e5 items, 25 components and 128 dims that was 2.6 GB, several times).
        sq = (X**2) @ inv.T - 2.0 * (X @ (self.means_ * inv).T) + (self.means_**2 * inv).sum(axis=1)
        log_gauss = -0.5 * (np.log(2 * np.pi * self.var_).sum(axis=1)[None] + np.maximum(sq, 0.0))
        log_r = np.log(self.weights_ + eps)[None] + log_gauss
        if Y is not None:
            log_r = log_r + self.gamma * np.log(Y @ self.y_probs_.T + eps)
        if P is not None:
            log_r = log_r + self.gamma_hat * np.log(P @ self.yhat_probs_.T + eps)
        return log_r

    def _m_step(self, X: np.ndarray, Y: np.ndarray, P: np.ndarray, R: np.ndarray) -> None:
        nk = R.sum(axis=0) + 10 * np.finfo(np.float64).eps
        self.weights_ = nk / nk.sum()
        self.means_ = (R.T @ X) / nk[:, None]
        self.var_ = (R.T @ X**2) / nk[:, None] - self.means_**2 + self.reg_covar
        self.var_ = np.maximum(self.var_, self.reg_covar)
        self.y_probs_ = (R.T @ Y) / nk[:, None]
        self.yhat_probs_ = (R.T @ P) / nk[:, None]

    def fit(
        self, embeddings: np.ndarray, labels: np.ndarray, probs: np.ndarray
    ) -> ErrorAwareMixture:
        from sklearn.decomposition import PCA

        Z, y, P = _inputs(embeddings, labels, probs)
        n, C = P.shape
        rng = np.random.default_rng(self.random_state)
        dims = min(self.pca_dims, Z.shape[1], max(1, n - 1))
        self.pca_ = PCA(n_components=dims, random_state=self.random_state).fit(Z)
        X = self.pca_.transform(Z)
        Y = _onehot(y, C)
        K = max(self.n_slices, min(self.n_components, n))
        self.K_ = K
        if self.init == "confusion":
            R = self._confusion_init(X, Y, P, K, rng)
        else:
            from sklearn.cluster import KMeans

            km = KMeans(K, n_init=1, random_state=self.random_state).fit(X)
            R = _onehot(km.labels_, K) + 1e-3 * rng.random((n, K))
        R = R / R.sum(axis=1, keepdims=True)
        prev = -np.inf
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            self.n_iter_ += 1
            self._m_step(X, Y, P, R)
            log_r = self._log_resp(X, Y, P)
            top = log_r.max(axis=1, keepdims=True)
            lse = top + np.log(np.exp(log_r - top).sum(axis=1, keepdims=True))
            R = np.exp(log_r - lse)
            ll = float(lse.mean())
            if abs(ll - prev) < self.tol:
                break
            prev = ll
        diff = self.yhat_probs_ - self.y_probs_
        self.slice_scores_ = np.abs(diff.max(axis=1))
        self.slice_components_ = np.argsort(-self.slice_scores_)[: self.n_slices]
        return self

    def _confusion_init(
        self, X: np.ndarray, Y: np.ndarray, P: np.ndarray, K: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Tie components to confusion cells (label, prediction), the fullest cells first.

        Domino tiles the cells across the components, which makes identical copies when there are
        fewer cells than components; here a cell given m components splits its items by k-means
        into m parts, so the copies start apart.
        """
        from sklearn.cluster import KMeans

        n, C = Y.shape
        # The confusion cell (label, prediction) of each item, and its weight P[item, prediction];
        # the (n, C * C) one-hot-times-probabilities matrix is never built (C may be 1000).
        y = Y.argmax(axis=1)
        pred = P.argmax(axis=1)
        hard = y * C + pred
        order = [
            c
            for c in np.argsort(-np.bincount(hard, minlength=C * C), kind="stable")
            if (hard == c).any()
        ]
        share = dict.fromkeys(order, 0)
        for k in range(K):  # round robin over the occupied cells, fullest first
            share[order[k % len(order)]] += 1
        R = np.full((n, K), 1e-3) * rng.random((n, K))
        k0 = 0
        for c, m in share.items():
            if m == 0:
                continue
            rows = np.flatnonzero(hard == c)
            m_eff = min(m, len(rows))
            parts = (
                KMeans(m_eff, n_init=1, random_state=self.random_state).fit_predict(X[rows])
                if m_eff > 1
                else np.zeros(len(rows), dtype=int)
            )
            R[rows, k0 + parts] += P[rows, c % C]
            k0 += m
        return R

    def predict_proba(
        self,
        embeddings: np.ndarray,
        labels: np.ndarray | None = None,
        probs: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n, n_slices) responsibilities of the kept components (rows need not sum to 1).

        Without ``labels``/``probs`` the γ/γ̂ terms are dropped.
        """
        Z = np.asarray(embeddings, dtype=np.float64)
        X = self.pca_.transform(Z)
        C = self.y_probs_.shape[1]
        Y = _onehot(np.asarray(labels, dtype=np.int64), C) if labels is not None else None
        P = np.asarray(probs, dtype=np.float64) if probs is not None else None
        log_r = self._log_resp(X, Y, P)
        top = log_r.max(axis=1, keepdims=True)
        R = np.exp(log_r - top)
        R = R / R.sum(axis=1, keepdims=True)
        return R[:, self.slice_components_]


def _inputs(embeddings: Any, labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64)
    Z = finite_matrix(embeddings, "embeddings", rows=len(y), hint=": drop those items first")
    P = finite_matrix(probs, "probs", rows=len(y))
    if len(y) and (y.min() < 0 or y.max() >= P.shape[1]):
        msg = f"labels must be class indices in 0..{P.shape[1] - 1}"
        raise ValueError(msg)
    return Z, y, P


# --------------------------------------------------------------------------- discover


def discover(
    embeddings: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    n_slices: int = 5,
    method: str = "mixture",
    random_state: int = 0,
    fitted: Any = None,
    class_names: list[str] | None = None,
    threshold: float = 0.5,
    **options: Any,
) -> list[Slice]:
    """Find up to ``n_slices`` failure slices. Order: ``"mixture"`` keeps Domino's ranking (how
    far the component's mean prediction departs from its mean label, see
    :class:`ErrorAwareMixture`); the other methods put the most errors first (then the highest
    error rate).

    ``fitted``: a slicer fitted on another split (an :class:`ErrorAwareMixture` for ``"mixture"``,
    :class:`~faultlens.analysis.failure_directions.FailureDirections` for ``"failure_directions"``); without it
    the method is fitted on these items. ``options`` go to the slicer (e.g. ``gamma=``).

    With ``fitted``, ``n_slices`` still caps the result: a mixture fitted with more slices gives
    its top ``n_slices`` by its own ranking, skipping components without members here (one
    fitted with fewer gives at most its own count, with a :class:`SliceWarning`).
    """
    if method not in METHODS:
        msg = f"unknown method {method!r}: use one of {METHODS}"
        raise ValueError(msg)
    if n_slices < 1:
        msg = f"n_slices must be >= 1, got {n_slices}"
        raise ValueError(msg)
    Z, y, P = _inputs(embeddings, labels, probs)
    n = len(y)
    if n == 0:
        msg = "no items to slice"
        raise ValueError(msg)
    pred = P.argmax(axis=1)
    correct = pred == y
    if method == "mixture":
        model = fitted or ErrorAwareMixture(n_slices, random_state=random_state, **options).fit(
            Z, y, P
        )
        M = model.predict_proba(Z, y, P)
        columns = [(f"mixture-{k}", M[:, k]) for k in range(M.shape[1])]
    elif method == "failure_directions":
        fd = fitted
        if fd is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fd = FailureDirections(random_state=random_state, **options).fit(Z, y, pred)
        score = fd.score(Z, y)
        columns = []
        for c in np.unique(y):
            sel = (y == c) & np.isfinite(score)
            if not sel.any():
                continue
            m = np.zeros(n)
            m[sel] = 1.0 / (1.0 + np.exp(np.clip(4.0 * score[sel], -50, 50)))  # score ≤ 0 → ≥ 0.5
            columns.append((f"failure-direction-{int(c)}", m))
    elif method == "kmeans":
        from sklearn.cluster import KMeans

        k = min(max(n_slices * 3, 8), n)
        km = KMeans(k, n_init=3, random_state=random_state).fit(Z)
        dist = km.transform(Z)
        columns = []
        for j in range(k):
            m = (km.labels_ == j).astype(float)
            m[m > 0] = 1.0 / (1.0 + dist[m > 0, j] / (dist[m > 0, j].mean() + 1e-12))
            m[m > 0] = 0.5 + 0.5 * m[m > 0]  # members ≥ 0.5, nearer the centre → higher
            columns.append((f"kmeans-{j}", m))
    else:  # confusion
        C = P.shape[1]
        columns = []
        for t in range(C):
            for p in range(C):
                if t == p:
                    continue
                m = (y == t) * P[:, p]
                columns.append((f"confusion-{t}->{p}", m))

    found = []
    for name, m in columns:
        members = np.flatnonzero(m >= threshold)
        if len(members) == 0:
            continue
        members = members[np.argsort(-m[members], kind="stable")]
        stats = slice_stats(members, correct, y, class_names)
        found.append(Slice(name, method, m.astype(np.float32), members, stats))
    found.sort(key=lambda s: (-s.stats["errors"], -s.stats["error_rate"]))
    if method == "mixture":  # keep Domino's own ranking among components that have members
        order = {name: k for k, (name, _) in enumerate(columns)}  # one per fitted component
        found.sort(key=lambda s: order[s.name])
    found = found[:n_slices]
    if len(found) < n_slices:
        warnings.warn(
            f"found {len(found)} slice(s) with members, fewer than n_slices={n_slices}",
            SliceWarning,
            stacklevel=2,
        )
    for i, s in enumerate(found):
        s.name = f"slice {i + 1} ({s.name})"
    return found


def memberships(found: list[Slice], n: int) -> np.ndarray:
    """(n, len(found)) soft memberships, the input of :func:`faultlens.analysis.evaluate.slice_metrics`."""
    return np.stack([s.membership for s in found], axis=1) if found else np.zeros((n, 0))
