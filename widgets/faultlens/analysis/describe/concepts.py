"""Concept tests: error rate against similarity to a text concept (:func:`concept_test`,
:func:`rank_concepts`), and a concept learned from example images (:class:`ConceptFromExamples`,
after TCAV, Kim et al. 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from faultlens.analysis.describe._common import beyond, groups
from faultlens.analysis.stats import wilson_interval


def concept_test(similarity: np.ndarray, errors: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Error rate as a function of similarity to a concept.

    Returns ``table`` (per quantile bin: similarity range, n, error rate, Wilson CI), ``spearman``
    (rank correlation of similarity and error) and ``p_value``.
    """
    from scipy.stats import spearmanr

    s = np.asarray(similarity, dtype=np.float64)
    e = np.asarray(errors).astype(bool)
    if len(s) != len(e):
        msg = f"{len(s)} similarities but {len(e)} error flags"
        raise ValueError(msg)
    if len(s) < 3:
        msg = "a concept test needs at least 3 items"
        raise ValueError(msg)
    edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in range(max(len(edges) - 1, 1)):
        sel = idx == b
        n, k = int(sel.sum()), int(e[sel].sum())
        lo, hi = wilson_interval(k, n)
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[min(b + 1, len(edges) - 1)]),
                "n": n,
                "error_rate": k / n if n else np.nan,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    if e.all() or not e.any() or np.ptp(s) == 0:
        rho, p = np.nan, np.nan
    else:
        rho, p = spearmanr(s, e)
    return {"table": pd.DataFrame(rows), "spearman": float(rho), "p_value": float(p)}


def rank_concepts(
    image_embeddings: np.ndarray,
    concept_embeddings: np.ndarray,
    concepts: Sequence[str],
    errors: np.ndarray,
) -> pd.DataFrame:
    """Every concept's Spearman correlation between image–concept similarity and error, strongest first."""
    Z = np.asarray(image_embeddings, dtype=np.float64)
    T = np.asarray(concept_embeddings, dtype=np.float64)
    Zn = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    Tn = T / np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
    sims = Zn @ Tn.T
    rows = []
    for j, c in enumerate(concepts):
        r = concept_test(sims[:, j], errors, bins=5)
        rows.append({"concept": c, "spearman": r["spearman"], "p_value": r["p_value"]})
    return (
        pd.DataFrame(rows)
        .sort_values("spearman", ascending=False, key=lambda v: v.fillna(-2))
        .reset_index(drop=True)
    )


class ConceptFromExamples:
    """A concept shown by example images, tested against random concepts (after TCAV, Kim et al.
    2018), in an embedding space (the analysis's embeddings, or a layer's pooled activations).

    ``fit(concept_embeddings, counter_embeddings=None)`` keeps the examples;
    ``test(embeddings, members, reference=None)`` then, ``n_runs`` times, learns the concept's
    direction (L2-regularised logistic regression) against as many random counter-examples
    (drawn from ``counter_embeddings``, or else from ``embeddings``) and scores the slice by the
    AUROC of its projection against the reference's: the chance that a member lies further along
    the concept than a reference image (0.5: no alignment; below: the slice lacks the concept).
    The same is done for ``n_random`` random concepts (random images against random images); the
    two-sided p-value is the share of random concepts whose score is at least as far from 0.5
    (with the usual +1 correction). A random concept is scored with one run and the concept with
    the mean of ``n_runs``, which makes the test conservative.
    """

    def __init__(
        self, random_state: int = 0, *, n_runs: int = 10, n_random: int = 100, C: float = 1.0
    ) -> None:
        self.random_state = random_state
        self.n_runs = int(n_runs)
        self.n_random = int(n_random)
        self.C = float(C)

    def fit(
        self, concept_embeddings: np.ndarray, counter_embeddings: np.ndarray | None = None
    ) -> ConceptFromExamples:
        P = np.asarray(concept_embeddings, dtype=np.float64)
        if P.ndim != 2 or len(P) < 2:
            msg = f"concept_embeddings must be (n_examples >= 2, dim), got shape {P.shape}"
            raise ValueError(msg)
        if not np.isfinite(P).all():
            msg = "concept_embeddings hold NaN or inf"
            raise ValueError(msg)
        N = None if counter_embeddings is None else np.asarray(counter_embeddings, np.float64)
        if N is not None and (N.ndim != 2 or N.shape[1] != P.shape[1] or len(N) < len(P)):
            msg = (
                f"counter_embeddings must be (n >= {len(P)}, {P.shape[1]}), got shape {N.shape}: "
                "at least as many random images as concept examples, in the same space"
            )
            raise ValueError(msg)
        self.concept_, self.counter_ = P, N
        return self

    def _direction(self, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        X = np.concatenate([pos, neg])
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        w = LogisticRegression(C=self.C, max_iter=2000).fit(X, y).coef_[0]
        return w / (np.linalg.norm(w) or 1.0)

    def test(self, embeddings: np.ndarray, members: Any, reference: Any = None) -> dict[str, Any]:
        """``score`` (mean AUROC over the runs), ``p_value``, ``runs`` (each run's score),
        ``random_scores``, ``effect`` (Hedges' g of the projections along the mean direction, with
        ``ci``), ``direction`` and ``rows`` (the members that carry the finding: further along
        the mean direction than 90 % of the reference when the score is above 0.5, less far than
        90 % of it when below)."""
        from scipy.stats import rankdata

        from faultlens.analysis.describe._common import hedges_g

        if not hasattr(self, "concept_"):
            msg = "call fit(concept_embeddings) before test()"
            raise RuntimeError(msg)
        Z = np.asarray(embeddings, dtype=np.float64)
        P = self.concept_
        if Z.ndim != 2 or Z.shape[1] != P.shape[1]:
            msg = (
                f"embeddings must be (n, {P.shape[1]}) like the concept's examples, got {Z.shape}: "
                "embed the examples with the model that embedded the images"
            )
            raise ValueError(msg)
        m, r = groups(len(Z), members, reference)
        pool = self.counter_ if self.counter_ is not None else Z
        k = len(P)
        if len(pool) < 2 * k:
            msg = f"need at least {2 * k} random images for counter-examples, have {len(pool)}"
            raise ValueError(msg)
        rng = np.random.default_rng(self.random_state)
        rows = np.concatenate([m, r])
        Zs = Z[rows]

        def auc(w: np.ndarray) -> float:
            rk = rankdata(Zs @ w)
            return float((rk[: len(m)].sum() - len(m) * (len(m) + 1) / 2) / (len(m) * len(r)))

        dirs = [self._direction(P, pool[rng.choice(len(pool), k, replace=False)])
                for _ in range(self.n_runs)]  # fmt: skip
        runs = np.array([auc(w) for w in dirs])
        rand = []
        for _ in range(self.n_random):
            pick = rng.choice(len(pool), 2 * k, replace=False)
            rand.append(auc(self._direction(pool[pick[:k]], pool[pick[k:]])))
        rand_a = np.array(rand)
        score = float(runs.mean())
        p = (1 + int((np.abs(rand_a - 0.5) >= abs(score - 0.5) - 1e-12).sum())) / (len(rand_a) + 1)
        w = np.mean(dirs, axis=0)
        g, lo, hi = hedges_g(Z[m] @ w, Z[r] @ w)
        carriers = beyond(m, Z[m] @ w, Z[r] @ w, score > 0.5)
        return {
            "score": score,
            "p_value": float(p),
            "runs": runs,
            "random_scores": rand_a,
            "effect": g,
            "ci": (lo, hi),
            "direction": w,
            "n": (len(m), len(r)),
            "rows": carriers,
        }
