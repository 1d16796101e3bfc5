"""Concept tests: error rate against similarity to a text concept (:func:`concept_test`,
:func:`rank_concepts`), and a concept learned from example images (:class:`ConceptFromExamples`,
after TCAV, Kim et al. 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

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
