"""Every describer the available inputs allow (:func:`describe_members`) and one ranked summary of
their findings (:func:`summarize`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faultlens.analysis.describe._common import Description
from faultlens.analysis.describe.text import (
    Captioner,
    caption_slice,
    imagenet_tags,
    rank_phrases,
    vocabulary,
)


def describe_members(
    members: np.ndarray,
    *,
    labels: np.ndarray,
    correct: np.ndarray,
    embeddings: np.ndarray | None = None,
    imagenet_logits: np.ndarray | None = None,
    load_image: Any = None,
    captioner: Captioner | None = None,
    text_encoder: Any = None,
    phrases: Sequence[str] = (),
    class_names: Sequence[str] = (),
) -> tuple[list[Description], list[str]]:
    """Every description the available models allow, and notes on what could not be made.

    The reference group is the correct images of the slice's most common class outside the slice
    (or, when there are none, everything outside the slice). Captions need ``captioner`` and
    ``load_image``; phrases need ``text_encoder`` (with ``encode_text``) sharing the image
    embeddings' space; tags need the offline model's ``imagenet_logits``. A captioner that fails
    is reported in the notes and the other descriptions still come.
    """
    members = np.asarray(members, dtype=np.int64)
    if len(members) == 0:
        msg = "the selection is empty: select some images to describe"
        raise ValueError(msg)
    n = len(labels)
    outside = np.ones(n, dtype=bool)
    outside[members] = False
    modal = int(np.bincount(labels[members]).argmax())
    ref = np.flatnonzero(outside & (labels == modal) & correct)
    if len(ref) == 0:
        ref = np.flatnonzero(outside)
    notes: list[str] = []
    out: list[Description] = []
    if len(ref) == 0:
        notes.append("everything is selected: there is no reference group to contrast with")
        return out, notes
    if captioner is not None and load_image is not None and embeddings is not None:
        try:
            out.append(
                caption_slice(captioner, load_image, members, ref, embeddings, correct=correct)
            )
        except Exception as exc:
            notes.append(
                f"captions unavailable ({type(exc).__name__}: {exc}); showing phrases/tags"
            )
    elif captioner is None:
        notes.append(
            "no captioner given: pass OpenClipCaptioner() (needs CoCa weights) for captions"
        )
    if text_encoder is not None and embeddings is not None:
        vocab = vocabulary(class_names, phrases)
        try:
            T = text_encoder.encode_text(vocab)
            out.append(rank_phrases(members, ref, embeddings, T, vocab))
        except ValueError as exc:
            notes.append(f"phrases unavailable: {exc}")
    if imagenet_logits is not None:
        out.append(imagenet_tags(members, ref, imagenet_logits))
    if not out:
        notes.append(
            "no description source: give a captioner, a CLIP text encoder, or use the offline embedder"
        )
    return out, notes
