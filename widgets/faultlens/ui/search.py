"""Text search in the Explorer: a phrase's CLIP text embedding ranks the images by cosine
similarity to their image embeddings; the ``k`` most similar become the selection.

:class:`TextSearch` is a mixin of the Explorer. What it needs of its host is small: ``analysis``
(its ``embeddings`` and ``meta["models"]["embedder"]``), ``text_encoder`` (anything with
``encode_text(texts) -> (n, D)``, e.g. :class:`~faultlens.models.embedders.OpenClipEmbedder`),
``n_points``, ``status`` and ``_push_selection(rows, source=)``.

Search works only when the text and the images share one space: the analysis must hold image
embeddings of the encoder's width and, when both name their model (the analysis's embedder id and
the encoder's ``id``), the same model. Otherwise :func:`search_availability` says why, the search
box is disabled with that reason as its tooltip, and :meth:`TextSearch.search` raises it.
The ranking is :func:`faultlens.analysis.neighbors.nearest` (exact cosine, batched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import traitlets as t

from faultlens.analysis.neighbors import Neighbors, nearest

#: How many images a search selects unless told otherwise.
DEFAULT_K = 50

_HOW = (
    "pass Explorer(analysis, text_encoder=OpenClipEmbedder(...)) with the CLIP model that embedded "
    "the images (analyze(..., embedder=OpenClipEmbedder(...)))"
)


def search_availability(analysis: Any, text_encoder: Any) -> str:
    """``""`` when ``text_encoder`` can search ``analysis``'s images, else the reason it cannot
    (one sentence naming the fix)."""
    if text_encoder is None:
        return f"text search needs a CLIP text encoder: {_HOW}"
    if not callable(getattr(text_encoder, "encode_text", None)):
        return f"the text encoder {type(text_encoder).__name__} has no encode_text(texts): {_HOW}"
    emb = getattr(analysis, "embeddings", None)
    if emb is None or np.ndim(emb) != 2:
        return (
            "this analysis has no image embeddings to search: make it with "
            "analyze(..., embedder=OpenClipEmbedder(...))"
        )
    image_model = (getattr(analysis, "meta", None) or {}).get("models", {}).get("embedder")
    text_model = getattr(text_encoder, "id", None)
    if image_model and text_model and image_model != text_model:
        return (
            f"the images were embedded by {image_model!r} but the text encoder is {text_model!r}: "
            "text and images must come from one CLIP model"
        )
    dim = getattr(text_encoder, "dim", None)
    if dim is None:
        dim = np.shape(text_encoder.encode_text(["a photo"]))[-1]
    if int(dim) != emb.shape[1]:
        return (
            f"the image embeddings are {emb.shape[1]}-d but the text encoder's are {int(dim)}-d: "
            "they come from different models"
        )
    return ""


def rank_by_text(embeddings: np.ndarray, text_encoder: Any, text: str, k: int) -> Neighbors:
    """The ``k`` rows of ``embeddings`` most cosine-similar to ``text``'s embedding, most similar
    first (ties: lower row first)."""
    vec = np.asarray(text_encoder.encode_text([text]), dtype=np.float32)
    if vec.ndim != 2 or len(vec) != 1:
        msg = f"encode_text returned shape {vec.shape} for one text; expected (1, dim)"
        raise ValueError(msg)
    return nearest(embeddings, vec[0], k)


class TextSearch(t.HasTraits):
    """The Explorer's text search (see the module's docstring for what it needs of its host)."""

    search_info = t.Dict(
        help="Python writes: {enabled, reason (why search is off, shown as the box's tooltip), k "
        "(images a search selects), query (the last one)}."
    ).tag(sync=True)

    #: The last search's result: rows most similar first and their cosine similarity (or None).
    last_search: Neighbors | None = None

    @t.default("search_info")
    def _search_info_default(self) -> dict[str, Any]:
        return self._search_state("")

    def _search_state(self, query: str) -> dict[str, Any]:
        try:
            reason = search_availability(self.analysis, self.text_encoder)
        except Exception as exc:  # a broken encoder: say so instead of failing the widget
            reason = f"the text encoder failed: {type(exc).__name__}: {exc}"
        return {"enabled": not reason, "reason": reason, "k": DEFAULT_K, "query": query}

    def refresh_search(self) -> None:
        """Re-check whether text search is possible (after ``explorer.text_encoder`` changed)."""
        self.search_info = self._search_state(self.search_info.get("query", ""))

    def search(self, text: str, k: int = DEFAULT_K) -> Neighbors:
        """Select the ``k`` images whose embeddings are most cosine-similar to the CLIP text
        embedding of ``text`` (selection source ``"search"``); the status bar says how many and
        the range of similarities. Returns the ranking (rows most similar first, similarity)."""
        if not isinstance(text, str) or not text.strip():
            msg = f"search needs a non-empty text, got {text!r}"
            raise ValueError(msg)
        k = int(k)
        if not 1 <= k <= max(self.n_points, 1):
            msg = f"k={k}: choose 1..{self.n_points} images"
            raise ValueError(msg)
        text = text.strip()
        state = self._search_state(text)
        self.search_info = state
        if not state["enabled"]:
            raise ValueError(state["reason"])
        found = rank_by_text(self.analysis.embeddings, self.text_encoder, text, k)
        self.last_search = found
        self._push_selection(found.rows, source="search")
        sims = found.similarity
        self.status = (
            f"search {text!r}: selected the {len(found)} images most similar to the text "
            f"(cosine similarity {float(sims.min()):.3f} to {float(sims.max()):.3f})"
            if len(found)
            else f"search {text!r}: no images to rank"
        )
        return found

    def _search_commands(self) -> dict[str, Callable[[dict], Any]]:
        """The front end's commands this part answers (``{type: handler}``)."""
        return {"search": lambda c: self.search(str(c.get("text", "")), int(c.get("k", DEFAULT_K)))}
