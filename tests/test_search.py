"""Text search in the Explorer (``ui/search.py``) and the map viewport trait (``ui/viewport.py``).

The search tests use a tiny randomly initialised open_clip model and PLANT the answer: the image
embeddings of some rows are the text embedding of a phrase (plus a little noise that fixes their
order), so those rows must come first, in that order; every ranking is checked against a
brute-force cosine ranking."""

from __future__ import annotations

import re

import numpy as np
import pytest
import traitlets

from faultlens.ui.explorer import Explorer
from faultlens.ui.search import search_availability
from tests.helpers import analysis_from

PHRASE = "a red double-decker bus"


@pytest.fixture(scope="module")
def encoder(tiny_clip_name: str):
    pytest.importorskip("open_clip")
    from faultlens.models.embedders import OpenClipEmbedder

    return OpenClipEmbedder(tiny_clip_name, pretrained=None, device="cpu")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_force(emb: np.ndarray, vec: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference ranking: cosine of every row, most similar first, ties by lower row."""
    sims = _unit(emb.astype(np.float64)) @ _unit(vec.astype(np.float64))
    order = np.lexsort((np.arange(len(sims)), -sims))[:k]
    return order, sims[order]


def planted(encoder, n: int = 400, seed: int = 0):
    """An analysis whose rows ``rows`` (in this order of similarity) embed ``PHRASE``."""
    rng = np.random.default_rng(seed)
    t = encoder.encode_text([PHRASE])[0].astype(np.float64)
    emb = _unit(rng.normal(size=(n, len(t))))
    rows = rng.choice(n, 12, replace=False)
    u = _unit(t)
    for rank, r in enumerate(rows):  # noise grows with the rank: the order is planted too
        noise = rng.normal(size=len(t))
        noise = _unit(noise - (noise @ u) * u)  # orthogonal to the phrase: cosine falls with rank
        emb[r] = _unit(u + (0.02 + 0.02 * rank) * noise)
    label = np.arange(n) % 3
    a = analysis_from(
        label, label, ["a", "b", "c"], xy=rng.normal(size=(n, 2)).astype(np.float32),
        embeddings=emb.astype(np.float32),
    )  # fmt: skip
    a.meta["models"] = {"embedder": encoder.id}
    return a, rows, t


def test_search_selects_the_planted_rows_first_in_order(encoder) -> None:
    a, rows, t = planted(encoder)
    ex = Explorer(a, text_encoder=encoder)
    assert ex.search_info["enabled"] and ex.search_info["reason"] == ""
    found = ex.search(PHRASE, k=12)
    np.testing.assert_array_equal(found.rows, rows)  # the planted rows, in the planted order
    ref_rows, ref_sims = brute_force(a.embeddings, t, 12)
    np.testing.assert_array_equal(found.rows, ref_rows)
    np.testing.assert_allclose(found.similarity, ref_sims, atol=1e-5)
    np.testing.assert_array_equal(ex.selection, np.sort(rows))
    assert ex._selection_source == "search"
    assert ex.last_search is found
    assert ex.stats["n_selected"] == 12
    lo, hi = found.similarity.min(), found.similarity.max()
    assert "selected the 12 images" in ex.status
    assert f"{lo:.3f} to {hi:.3f}" in ex.status
    assert ex.search_info["query"] == PHRASE


def test_search_from_the_view_and_a_larger_k_match_brute_force(encoder) -> None:
    a, rows, t = planted(encoder, n=3000, seed=3)
    ex = Explorer(a, text_encoder=encoder)
    ex._on_custom_msg(ex, {"type": "search", "text": f"  {PHRASE} ", "k": 200}, [])
    ref_rows, _ = brute_force(a.embeddings, t, 200)
    np.testing.assert_array_equal(ex.last_search.rows, ref_rows)
    np.testing.assert_array_equal(ex.selection, np.sort(ref_rows))
    assert set(rows) <= set(ex.selection.tolist())
    # another phrase ranks by its own embedding
    other = "a photo of a cat"
    found = ex.search(other, k=30)
    ref_rows, _ = brute_force(a.embeddings, encoder.encode_text([other])[0], 30)
    np.testing.assert_array_equal(found.rows, ref_rows)


def test_bad_search_requests_are_clear_errors(encoder) -> None:
    a, _rows, _t = planted(encoder)
    ex = Explorer(a, text_encoder=encoder)
    with pytest.raises(ValueError, match="non-empty text"):
        ex.search("   ")
    with pytest.raises(ValueError, match=r"choose 1\.\.400"):
        ex.search(PHRASE, k=0)
    ex._on_custom_msg(ex, {"type": "search", "text": ""}, [])
    assert ex.status.startswith("search: search needs a non-empty text")
    assert len(ex.selection) == 0


class _Encoder:
    """A text encoder of a given width and model id (no open_clip needed)."""

    def __init__(self, dim: int, id: str | None = None) -> None:
        self.dim, self.width, self.calls = dim, dim, 0
        if id is not None:
            self.id = id

    def encode_text(self, texts):
        self.calls += 1
        return np.ones((len(texts), self.width), dtype=np.float32)


def _plain(dim: int | None = 16, embedder: str | None = None):
    n = 60
    label = np.arange(n) % 2
    emb = None if dim is None else np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    a = analysis_from(label, label, ["x", "y"], embeddings=emb)
    if embedder:
        a.meta["models"] = {"embedder": embedder}
    return a


@pytest.mark.parametrize(
    ("analysis_args", "text_encoder", "reason"),
    [
        ((16,), None, r"needs a CLIP text encoder: pass Explorer\(analysis, text_encoder="),
        ((16,), object(), "has no encode_text"),
        ((None,), _Encoder(16), "no image embeddings"),
        ((16,), _Encoder(32), "16-d but the text encoder's are 32-d"),
        ((16, "efficientnet-lite0"), _Encoder(16, "open_clip-ViT-B-32"),
         "embedded by 'efficientnet-lite0' but the text encoder is 'open_clip-ViT-B-32'"),
    ],
)  # fmt: skip
def test_search_is_off_with_the_reason_when_it_cannot_work(analysis_args, text_encoder, reason):
    ex = Explorer(_plain(*analysis_args), text_encoder=text_encoder)
    assert not ex.search_info["enabled"]

    assert re.search(reason, ex.search_info["reason"]), ex.search_info["reason"]
    with pytest.raises(ValueError, match=reason):
        ex.search("anything")
    ex._on_custom_msg(ex, {"type": "search", "text": "anything", "k": 3}, [])
    assert re.search(reason, ex.status)
    assert len(ex.selection) == 0


def test_search_turns_on_when_an_encoder_is_given_later() -> None:
    ex = Explorer(_plain(16, "clip-x"))
    assert not ex.search_info["enabled"]
    ex.text_encoder = _Encoder(16, "clip-x")
    ex.refresh_search()
    assert ex.search_info["enabled"]
    assert len(ex.search("x", k=5).rows) == 5
    # an encoder without `dim` is probed once with a phrase
    enc = _Encoder(16)
    del enc.dim
    assert search_availability(_plain(16), enc) == ""
    assert enc.calls == 1
    enc.width = 8
    assert "16-d but the text encoder's are 8-d" in search_availability(_plain(16), enc)


def test_viewport_trait_is_validated_and_written_by_the_view() -> None:
    ex = Explorer(_plain(16))
    assert ex.view == []
    ex.set_state({"view": [-1.5, -2.0, 3.0, 4.5]})  # as the front end writes it
    assert ex.view == [-1.5, -2.0, 3.0, 4.5]
    assert ex.get_state(["view"])["view"] == [-1.5, -2.0, 3.0, 4.5]  # what a new view reads
    ex.view = []
    for bad in ([1, 0, 0, 1], [0, 0, 1, float("nan")], [0, 0, 1], [0, 0, 0, 1]):
        with pytest.raises(traitlets.TraitError, match=r"\[x0, y0, x1, y1\]"):
            ex.view = bad


def test_ranking_with_parallel_rows_huge_values_and_a_bad_row() -> None:
    from faultlens.analysis.neighbors import nearest

    rng = np.random.default_rng(5)
    emb = rng.normal(size=(5000, 16)).astype(np.float32)
    q = rng.normal(size=16).astype(np.float32)
    emb[[4001, 17, 2500, 3999]] = 3 * q  # parallel to the query, spread over several batches
    emb[123] = 1e30 * q  # finite, but its squared norm overflows float32
    got = nearest(emb, q, 7, batch_size=1000)
    ref_rows, ref_sims = brute_force(emb, q, 7)
    # the five parallel rows first (equal up to float32 rounding, which may order them), then
    # the brute-force order
    assert set(got.rows[:5].tolist()) == {17, 123, 2500, 3999, 4001}
    np.testing.assert_array_equal(got.rows[5:], ref_rows[5:])
    np.testing.assert_allclose(got.similarity, ref_sims, atol=1e-5)
    emb[2222, 3] = np.nan
    with pytest.raises(ValueError, match="embeddings row 2222 has non-finite values"):
        nearest(emb, q, 7, batch_size=1000)
