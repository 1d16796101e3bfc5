""" "More like this": the nearest neighbours of a selection or an image in embedding space.

Cosine similarity, exact (every row is scored; no approximate index), computed in batches so the
memory is bounded by ``batch_size × len(query)`` floats whatever the number of rows; fast enough
for the up to ~2e5 rows an analysis holds (one matrix product per batch).

- :func:`nearest` — the ``k`` rows most similar to one or more query vectors;
- :func:`more_like_this` — the ``k`` rows most similar to a selection of rows, the selection left
  out: the rows to hand to ``explorer.select``.

A selection is summarised by ``query="mean"`` (default: the rows most similar to the selection's
mean direction, what "more of this group" means) or ``query="any"`` (the rows nearest to any one
member: the union of each member's neighbourhood, better for a selection of several clusters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from faultlens._checks import finite_matrix, row_indices


@dataclass(frozen=True)
class Neighbors:
    """The result of a search: ``rows`` (int64, most similar first; ties: lower row first) and
    their cosine ``similarity`` (float32, same order)."""

    rows: np.ndarray
    similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero (similarity 0 to everything)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _matrix(embeddings: Any) -> np.ndarray:
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        msg = f"embeddings must be 2-D (n, dim), got shape {emb.shape}"
        raise ValueError(msg)
    return emb


def _as_query(query: Any, dim: int) -> np.ndarray:
    q = np.asarray(query, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    q = finite_matrix(q, "query").astype(np.float32)
    if q.shape[1] != dim:
        msg = f"query vectors have {q.shape[1]} dimensions but the embeddings have {dim}"
        raise ValueError(msg)
    return q


def nearest(
    embeddings: np.ndarray,
    query: Any,
    k: int = 50,
    *,
    combine: str = "max",
    exclude: Any = None,
    batch_size: int = 16384,
) -> Neighbors:
    """The ``k`` rows of ``embeddings`` most cosine-similar to ``query``.

    Parameters
    ----------
    embeddings:
        (N, D) one vector per row (e.g. ``analysis.embeddings``).
    query:
        One vector (D,) or several (M, D): e.g. an image's embedding from the analysis's embedder.
    k:
        How many rows to return (fewer when fewer are left).
    combine:
        With several query vectors: a row's score is its ``"max"`` similarity to any of them
        (default) or the ``"mean"`` of its similarities.
    exclude:
        Rows never returned (indices or a bool mask of length N), e.g. the query's own rows.
    batch_size:
        Rows scored per step (memory ≈ ``batch_size × M`` floats).
    """
    if k < 1:
        msg = f"k must be at least 1, got {k}"
        raise ValueError(msg)
    if combine not in ("max", "mean"):
        msg = f"combine must be 'max' or 'mean', got {combine!r}"
        raise ValueError(msg)
    emb = _matrix(embeddings)
    n, dim = emb.shape
    q = _unit(_as_query(query, dim))
    keep = np.ones(n, dtype=bool)
    if exclude is not None:
        keep[row_indices(exclude, n, "excluded rows")] = False
    step = max(1, int(batch_size) // len(q))
    best_rows = np.zeros(0, dtype=np.int64)
    best_sim = np.zeros(0, dtype=np.float32)
    for start in range(0, n, step):
        block = emb[start : start + step].astype(np.float32, copy=False)
        # cosine without a normalised copy of the block: one pass for the norms, one product
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        if not np.isfinite(norms).all():  # NaN/inf in a row, or values too large for float32
            bad_rows = ~np.isfinite(block).all(axis=1)
            if bad_rows.any():
                msg = f"embeddings row {start + int(np.flatnonzero(bad_rows)[0])} has non-finite values"
                raise ValueError(msg)
            norms = np.linalg.norm(block.astype(np.float64), axis=1)
        sims = (block @ q.T) / np.where(norms > 0, norms, 1.0)[:, None]
        sim = sims.max(axis=1) if combine == "max" else sims.mean(axis=1)
        rows = np.arange(start, start + len(block), dtype=np.int64)
        mask = keep[start : start + len(block)]
        rows, sim = rows[mask], sim[mask].astype(np.float32)
        if len(sim) > k:  # only rows that can enter the top k (every tie of the k-th kept)
            kth = np.partition(sim, len(sim) - k)[len(sim) - k]
            cand = sim >= kth
            rows, sim = rows[cand], sim[cand]
        if not len(rows):
            continue
        all_rows = np.concatenate([best_rows, rows])
        all_sim = np.concatenate([best_sim, sim])
        order = np.lexsort((all_rows, -all_sim))[:k]
        best_rows, best_sim = all_rows[order], all_sim[order]
    return Neighbors(best_rows, best_sim)


def more_like_this(
    embeddings: np.ndarray,
    rows: Any,
    k: int = 50,
    *,
    query: str = "mean",
    include_selection: bool = False,
    batch_size: int = 16384,
) -> Neighbors:
    """The ``k`` rows most similar to the selected ``rows`` (indices or a bool mask).

    ``query="mean"``: similarity to the mean of the selection's unit vectors; ``"any"``: the
    highest similarity to any one selected row. The selection itself is left out unless
    ``include_selection``. ``explorer.select(more_like_this(a.embeddings, explorer.selection).rows)``
    selects the result.
    """
    emb = _matrix(embeddings)
    sel = np.unique(row_indices(rows, len(emb), "selected rows"))
    if not len(sel):
        msg = "more_like_this needs a selection of at least one row"
        raise ValueError(msg)
    if query not in ("mean", "any"):
        msg = f"query must be 'mean' or 'any', got {query!r}"
        raise ValueError(msg)
    members = _unit(np.asarray(emb[sel], dtype=np.float32))
    q = members.mean(axis=0, keepdims=True) if query == "mean" else members
    if not np.linalg.norm(q, axis=1).any():
        msg = "the selection's embeddings are all zero: there is no direction to search along"
        raise ValueError(msg)
    return nearest(
        emb,
        q,
        k,
        combine="max",
        exclude=None if include_selection else sel,
        batch_size=batch_size,
    )
