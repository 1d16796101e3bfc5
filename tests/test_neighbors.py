""" "More like this": exact cosine neighbours, batched, against a brute-force reference; a planted
cluster is found from a few of its members."""

from __future__ import annotations

import numpy as np
import pytest

from faultlens.analysis.neighbors import more_like_this, nearest


def _brute(emb: np.ndarray, q: np.ndarray, k: int, exclude=(), combine: str = "max"):
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-30)
    e[np.linalg.norm(emb, axis=1) == 0] = 0
    qq = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = e @ qq.T
    s = sims.max(axis=1) if combine == "max" else sims.mean(axis=1)
    rows = np.array([r for r in range(len(emb)) if r not in set(exclude)])
    order = sorted(rows, key=lambda r: (-round(float(s[r]), 5), r))
    return np.array(order[:k]), s


@pytest.mark.parametrize("batch_size", [1, 7, 64, 100_000])
@pytest.mark.parametrize("combine", ["max", "mean"])
@pytest.mark.parametrize("n_query", [1, 3])
def test_nearest_matches_brute_force(batch_size: int, combine: str, n_query: int) -> None:
    rng = np.random.default_rng(batch_size + n_query)
    emb = rng.normal(size=(500, 16)).astype(np.float32)
    emb[10] = 0  # an all-zero row: similarity 0, never NaN
    emb[20] = emb[21] * 3  # the same direction: the same similarity
    q = rng.normal(size=(n_query, 16)).astype(np.float32)
    got = nearest(emb, q, 25, combine=combine, exclude=[3, 4], batch_size=batch_size)
    want, s = _brute(emb.astype(np.float64), q.astype(np.float64), 25, (3, 4), combine)
    assert np.allclose(got.similarity, s[got.rows], atol=1e-5)
    assert np.allclose(np.sort(got.similarity)[::-1], got.similarity)
    assert np.allclose(np.sort(s[want]), np.sort(got.similarity), atol=1e-5)
    assert got.rows.tolist() == want.tolist()
    assert not {3, 4} & set(got.rows.tolist())
    assert np.isfinite(got.similarity).all()


def test_ties_are_broken_by_row_and_k_caps_at_what_is_left() -> None:
    emb = np.tile(np.array([[1.0, 0.0]]), (6, 1))
    got = nearest(emb, [1.0, 0.0], 10, exclude=np.array([1, 0, 0, 0, 0, 1], dtype=bool))
    assert got.rows.tolist() == [1, 2, 3, 4]
    assert np.allclose(got.similarity, 1.0)


def test_more_like_this_finds_the_rest_of_a_planted_cluster() -> None:
    """40 points of a tight cluster among 5000 random ones: 5 of them select the other 35."""
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5000, 32)).astype(np.float32)
    members = rng.choice(5000, 40, replace=False)
    center = rng.normal(size=32) * 3
    emb[members] = center + rng.normal(scale=0.3, size=(40, 32))
    picked = members[:5]
    for query in ("mean", "any"):
        got = more_like_this(emb, picked, k=35, query=query, batch_size=333)
        assert set(got.rows) == set(members[5:]), query
    mask = np.zeros(5000, dtype=bool)
    mask[picked] = True
    assert set(more_like_this(emb, mask, k=35).rows) == set(members[5:])
    with_sel = more_like_this(emb, picked, k=40, include_selection=True)
    assert set(with_sel.rows) == set(members)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: nearest(e, np.ones(3)), "query vectors have 3 dimensions but the embeddings have 4"),
        (lambda e: nearest(e, np.ones(4), 0), "k must be at least 1"),
        (lambda e: nearest(e, [np.nan] * 4), "query"),
        (lambda e: more_like_this(e, []), "needs a selection of at least one row"),
        (lambda e: more_like_this(e, [99]), "selected rows must be in 0..9"),
        (lambda e: more_like_this(np.zeros((10, 4)), [1]), "all zero"),
    ],
)  # fmt: skip
def test_bad_inputs_are_named(call, message: str) -> None:
    emb = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ValueError, match=message):
        call(emb)


def test_non_finite_embedding_rows_are_named() -> None:
    emb = np.ones((10, 4))
    emb[7, 2] = np.inf
    with pytest.raises(ValueError, match="embeddings row 7 has non-finite values"):
        nearest(emb, np.ones(4), batch_size=3)
