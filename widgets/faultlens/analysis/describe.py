"""Describing a slice, each description labelled with where it came from.

- :func:`caption_slice` — captions of representative members from an image-to-text model (open_clip
  CoCa by default, :class:`OpenClipCaptioner`), summarised as the words and word pairs frequent in
  the slice's captions and rare in the reference's (``source = "captions (<model>)"``);
- :func:`rank_phrases` — phrases ranked by the CLIP text encoder against the slice (Domino's
  mean-difference) and :meth:`FailureDirections.text_scores` against a failure direction, from a
  built-in offline vocabulary (:func:`vocabulary`) plus user phrases (``source = "phrases (CLIP)"``);
- :func:`imagenet_tags` — ImageNet labels of the offline model over-represented in the slice,
  labelled ``"tags (ImageNet classifier)"``, never as captions;
- :func:`concept_test` / :func:`rank_concepts` — error rate as a function of similarity to a text
  concept (binned, with Wilson CIs) and a Spearman rank correlation with its p-value.

A captioner is anything with ``caption(images) -> list[str]`` and a ``name``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from PIL import Image

from faultlens.analysis.stats import wilson_interval


class Captioner(Protocol):
    """An image-to-text model."""

    name: str

    def caption(self, images: Sequence[Image.Image]) -> list[str]: ...


@dataclass
class Description:
    """Ranked terms describing a slice and where they came from (shown beside them in the UI)."""

    source: str
    terms: list[tuple[str, float]]
    details: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int = 5) -> list[str]:
        return [t for t, _ in self.terms[:k]]


# --------------------------------------------------------------------------- captions


class OpenClipCaptioner:
    """Captions from an open_clip CoCa model (needs ``pip install "faultlens[caption]"``).

    Parameters
    ----------
    model_name, pretrained:
        e.g. ``"coca_ViT-B-32"``, ``"mscoco_finetuned_laion2b_s13b_b90k"`` (downloads once), a local
        checkpoint file, or ``None`` (random weights: tests only).
    generation:
        ``"beam_search"`` (open_clip's default), ``"top_k"`` or ``"top_p"``.
    """

    def __init__(
        self,
        model_name: str = "coca_ViT-B-32",
        pretrained: str | os.PathLike[str] | None = "mscoco_finetuned_laion2b_s13b_b90k",
        *,
        device: str | None = None,
        generation: str = "beam_search",
        seq_len: int = 20,
        batch_size: int = 8,
    ) -> None:
        import open_clip
        import torch

        from faultlens.models.base import resolve_device

        try:
            import transformers  # noqa: F401
        except ImportError as exc:
            msg = 'CoCa captions need transformers<4.56: pip install "faultlens[caption]"'
            raise ImportError(msg) from exc
        self.device = resolve_device(device)
        pre = str(pretrained) if pretrained is not None else None
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pre, device=self.device
            )
        except Exception as exc:
            msg = (
                f"could not load the captioner {model_name!r} / {pre!r}: {exc}. Without a network pass "
                "a local checkpoint file; slices can still be described by phrases and ImageNet tags"
            )
            raise RuntimeError(msg) from exc
        if not hasattr(model, "generate"):
            msg = f"{model_name!r} is not a captioning model (use a coca_* config)"
            raise ValueError(msg)
        self.model = model.eval()
        self.preprocess = preprocess
        self.name = f"open_clip {model_name}" + ("" if pre else " (random weights)")
        self.generation = generation
        self.seq_len = seq_len
        self.batch_size = batch_size
        self._torch = torch

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        import open_clip

        out: list[str] = []
        for i in range(0, len(images), self.batch_size):
            x = self._torch.stack(
                [self.preprocess(im.convert("RGB")) for im in images[i : i + self.batch_size]]
            )
            with self._torch.no_grad():
                tokens = self.model.generate(
                    x.to(self.device), generation_type=self.generation, seq_len=self.seq_len
                )
            for t in tokens:
                text = open_clip.decode(t)
                text = text.replace("<start_of_text>", "").split("<end_of_text>")[0]
                out.append(re.sub(r"\s+", " ", text).strip(" .,"))
        return out


_STOP = {
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "at",
    "with",
    "and",
    "or",
    "to",
    "is",
    "are",
    "its",
    "it",
    "this",
    "that",
    "photo",
    "picture",
    "image",
    "some",
    "there",
    "for",
    "by",
    "from",
    "near",
    "close",
    "up",
}


def _terms(text: str) -> set[str]:
    words = [w for w in re.findall(r"[a-z][a-z'-]+", text.lower()) if w not in _STOP]
    return set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}


def contrast_terms(
    slice_texts: Sequence[str], reference_texts: Sequence[str], k: int = 10
) -> list[tuple[str, float]]:
    """Words and word pairs frequent in ``slice_texts`` and rare in ``reference_texts``.

    Score = document frequency in the slice − in the reference (Laplace-smoothed); ties keep the more
    frequent term first.
    """
    s_counts = Counter(t for x in slice_texts for t in _terms(x))
    r_counts = Counter(t for x in reference_texts for t in _terms(x))
    ns, nr = max(len(slice_texts), 1), max(len(reference_texts), 1)
    scored = [
        (t, (c + 0.5) / (ns + 1) - (r_counts.get(t, 0) + 0.5) / (nr + 1))
        for t, c in s_counts.items()
        if c >= 2
    ]
    scored.sort(key=lambda tc: (-tc[1], -s_counts[tc[0]], tc[0]))
    return [(t, round(float(s), 4)) for t, s in scored[:k] if s > 0]


def representatives(members: np.ndarray, embeddings: np.ndarray, k: int = 8) -> np.ndarray:
    """The ``k`` members nearest the members' centroid (cosine), most central first."""
    members = np.asarray(members)
    if len(members) == 0:
        return members
    Z = embeddings[members]
    c = Z.mean(axis=0)
    sims = Z @ c / (np.linalg.norm(Z, axis=1) * np.linalg.norm(c) + 1e-12)
    return members[np.argsort(-sims, kind="stable")[:k]]


def caption_slice(
    captioner: Captioner,
    images: Any,
    members: np.ndarray,
    reference: np.ndarray,
    embeddings: np.ndarray,
    *,
    correct: np.ndarray | None = None,
    k: int = 8,
) -> Description:
    """Caption representative members and contrast them with a reference group.

    ``images(i) -> PIL`` loads row i. Representatives are taken near the slice centroid, from the
    slice's errors and its correct images separately when ``correct`` is given; ``reference`` rows
    (e.g. the same class's correct images outside the slice) are captioned likewise.
    """
    members = np.asarray(members)
    if correct is not None:
        errs, oks = members[~correct[members]], members[correct[members]]
        picked = np.concatenate(
            [representatives(errs, embeddings, k), representatives(oks, embeddings, k // 2)]
        )
    else:
        picked = representatives(members, embeddings, k)
    ref = representatives(np.asarray(reference), embeddings, k)
    slice_caps = captioner.caption([images(int(i)) for i in picked])
    ref_caps = captioner.caption([images(int(i)) for i in ref]) if len(ref) else []
    return Description(
        source=f"captions ({captioner.name})",
        terms=contrast_terms(slice_caps, ref_caps),
        details={
            "captions": dict(zip([int(i) for i in picked], slice_caps, strict=True)),
            "reference_captions": dict(zip([int(i) for i in ref], ref_caps, strict=True)),
        },
    )


# --------------------------------------------------------------------------- phrases

COLOURS = [
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
]
BACKGROUNDS = [
    "a white background",
    "a black background",
    "a dark background",
    "a bright background",
    "a colourful background",
    "a cluttered background",
    "a plain background",
    "grass",
    "snow",
    "water",
    "sand",
    "the sky",
    "indoors",
    "outdoors",
]
TEXTURES = [
    "striped",
    "checkered",
    "dotted",
    "plain",
    "patterned",
    "furry",
    "shiny",
    "blurry",
    "grainy",
    "faded",
]
ORIENTATIONS = [
    "upside down",
    "rotated",
    "tilted",
    "seen from above",
    "seen from the side",
    "close up",
    "far away",
]
SIZES = ["small", "large", "tiny", "cropped", "partly hidden"]
PARTS = [
    "a logo",
    "a patch in the corner",
    "text",
    "a watermark",
    "a border",
    "a person",
    "a hand",
    "a shadow",
]


def vocabulary(class_names: Sequence[str] = (), extra: Sequence[str] = ()) -> list[str]:
    """The built-in offline phrase vocabulary (colours, backgrounds, textures, orientations, sizes,
    parts, class names) as "a photo of …" phrases, plus ``extra`` user phrases as given."""
    phrases = [f"a photo of a {c} object" for c in COLOURS]
    phrases += [f"a photo of an object on {b}" for b in BACKGROUNDS]
    phrases += [f"a photo of a {t} object" for t in TEXTURES]
    phrases += [f"a photo of an object {o}" for o in ORIENTATIONS]
    phrases += [f"a photo of a {s} object" for s in SIZES]
    phrases += [f"a photo of an object with {p}" for p in PARTS]
    phrases += [f"a photo of a {c}" for c in class_names]
    return list(dict.fromkeys([*phrases, *extra]))


def rank_phrases(
    members: np.ndarray,
    reference: np.ndarray,
    image_embeddings: np.ndarray,
    phrase_embeddings: np.ndarray,
    phrases: Sequence[str],
    *,
    k: int = 10,
) -> Description:
    """Domino's mean-difference scorer: ``text · (mean(slice) − mean(reference))``.

    Image and phrase embeddings must share one space (a CLIP model's image and text towers).
    """
    T = np.asarray(phrase_embeddings, dtype=np.float64)
    if T.shape[0] != len(phrases):
        msg = f"{T.shape[0]} phrase embeddings for {len(phrases)} phrases"
        raise ValueError(msg)
    Z = np.asarray(image_embeddings, dtype=np.float64)
    if Z.shape[1] != T.shape[1]:
        msg = (
            f"image embeddings are {Z.shape[1]}-d but phrase embeddings {T.shape[1]}-d: phrases need "
            "the text tower of the model that embedded the images (e.g. OpenClipEmbedder)"
        )
        raise ValueError(msg)
    if len(members) == 0 or len(reference) == 0:
        msg = "need at least one member and one reference item to rank phrases"
        raise ValueError(msg)
    d = Z[np.asarray(members)].mean(0) - Z[np.asarray(reference)].mean(0)
    s = T @ d
    order = np.argsort(-s, kind="stable")[:k]
    return Description("phrases (CLIP)", [(phrases[i], round(float(s[i]), 4)) for i in order])


# --------------------------------------------------------------------------- ImageNet tags


def imagenet_tags(
    members: np.ndarray,
    reference: np.ndarray,
    imagenet_logits: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    k: int = 8,
) -> Description:
    """ImageNet labels over-represented in the slice vs the reference (mean probability difference)."""
    if class_names is None:
        from faultlens.models.embedders import imagenet_class_names

        class_names = imagenet_class_names()
    L = np.asarray(imagenet_logits, dtype=np.float64)
    L = L - L.max(axis=1, keepdims=True)
    P = np.exp(L)
    P /= P.sum(axis=1, keepdims=True)
    if len(members) == 0 or len(reference) == 0:
        msg = "need at least one member and one reference item for tags"
        raise ValueError(msg)
    d = P[np.asarray(members)].mean(0) - P[np.asarray(reference)].mean(0)
    order = np.argsort(-d, kind="stable")[:k]
    return Description(
        "tags (ImageNet classifier)",
        [(class_names[i], round(float(d[i]), 4)) for i in order if d[i] > 0],
    )


# --------------------------------------------------------------------------- concept tests


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


# --------------------------------------------------------------------------- all of it


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
