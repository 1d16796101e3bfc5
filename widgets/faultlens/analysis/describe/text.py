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
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image

from faultlens.analysis.describe._common import (
    Description,
    beyond,
    groups,
    held_out_precision,
)


class Captioner(Protocol):
    """An image-to-text model."""

    name: str

    def caption(self, images: Sequence[Image.Image]) -> list[str]: ...


# --------------------------------------------------------------------------- captions


class OpenClipCaptioner:
    """Captions from an open_clip CoCa model, decoded by faultlens's own loop (beam search or greedy
    over the model's next-token logits), so no ``transformers`` is needed.

    Parameters
    ----------
    model_name, pretrained:
        e.g. ``"coca_ViT-B-32"``, ``"mscoco_finetuned_laion2b_s13b_b90k"`` (downloads once), a local
        checkpoint file, or ``None`` (random weights: tests only).
    generation:
        ``"beam_search"`` (``num_beams`` beams, the best by mean token log-probability) or
        ``"greedy"``.
    seq_len:
        The most tokens a caption has, start and end tokens included.
    min_len:
        The end token is not allowed before this many tokens (open_clip's default, 5).
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
        num_beams: int = 4,
        min_len: int = 5,
    ) -> None:
        import open_clip
        import torch

        from faultlens.models.base import resolve_device

        if generation not in ("beam_search", "greedy"):
            msg = f"generation={generation!r}: choose 'beam_search' or 'greedy'"
            raise ValueError(msg)
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
        if not hasattr(model, "text_decoder"):
            msg = f"{model_name!r} is not a captioning model (use a coca_* config)"
            raise ValueError(msg)
        self.model = model.eval()
        self.preprocess = preprocess
        self.name = f"open_clip {model_name}" + ("" if pre else " (random weights)")
        self.generation = generation
        self.seq_len = max(int(seq_len), 2)
        self.min_len = int(min_len)
        self.num_beams = 1 if generation == "greedy" else max(int(num_beams), 1)
        self.batch_size = batch_size
        self._torch = torch

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        import open_clip

        out: list[str] = []
        for i in range(0, len(images), self.batch_size):
            x = self._torch.stack(
                [self.preprocess(im.convert("RGB")) for im in images[i : i + self.batch_size]]
            )
            for t in self.generate(x.to(self.device)):
                text = open_clip.decode(self._torch.tensor(t, dtype=self._torch.long))
                text = text.replace("<start_of_text>", "").split("<end_of_text>")[0]
                out.append(re.sub(r"\s+", " ", text).strip(" .,"))
        return out

    def generate(self, x: Any, sot: int = 49406, eos: int = 49407) -> list[list[int]]:
        """Token ids (without start and end) of each image's caption: beam search over the CoCa
        text decoder's next-token log-probabilities; finished beams are compared by their mean
        token log-probability."""
        torch = self._torch
        model, k = self.model, self.num_beams
        with torch.no_grad():
            latent, embs = model._encode_image(x)
            b = len(x)
            latent, embs = latent.repeat_interleave(k, 0), embs.repeat_interleave(k, 0)
            seqs = torch.full((b * k, 1), sot, dtype=torch.long, device=x.device)
            score = torch.full((b, k), -math.inf, device=x.device)
            score[:, 0] = 0.0  # one live beam per image at the start
            done: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
            for step in range(1, self.seq_len):
                logits = model(
                    None, seqs, image_latent=latent, image_embs=embs, output_labels=False
                )["logits"][:, -1]
                logp = torch.nan_to_num(torch.log_softmax(logits.float(), dim=-1), nan=-math.inf)
                if step < self.min_len:
                    logp[:, eos] = -math.inf
                if step == self.seq_len - 1:  # the last step may only end the caption
                    keep = logp[:, eos].clone()
                    logp[:] = -math.inf
                    logp[:, eos] = keep
                vocab = logp.shape[1]
                cand = (score.reshape(-1, 1) + logp).reshape(b, k * vocab)
                vals, idx = cand.topk(min(2 * k, cand.shape[1]), dim=1)
                new_seqs, new_score = (
                    seqs.new_empty((b * k, step + 1)),
                    torch.full_like(score, -math.inf),
                )
                for i in range(b):
                    slot = 0
                    for v, j in zip(vals[i].tolist(), idx[i].tolist(), strict=True):
                        beam, tok = divmod(j, vocab)
                        if not math.isfinite(v) or slot == k:
                            break
                        prev = seqs[i * k + beam]
                        if tok == eos:
                            if len(done[i]) < k:
                                done[i].append((v / step, prev[1:].tolist()))
                            continue
                        new_seqs[i * k + slot, :-1] = prev
                        new_seqs[i * k + slot, -1] = tok
                        new_score[i, slot] = v
                        slot += 1
                    for s in range(slot, k):  # too few live candidates: pad with dead beams
                        new_seqs[i * k + s] = (
                            new_seqs[i * k]
                            if slot
                            else torch.cat([seqs[i * k], seqs.new_full((1,), eos)])
                        )
                seqs, score = new_seqs, new_score
                if all(len(d) >= k for d in done) or not torch.isfinite(score).any():
                    break
            out = []
            for i in range(b):
                if not done[i]:  # no beam ended: take the best live one
                    done[i].append((0.0, seqs[i * k, 1:].tolist()))
                out.append(max(done[i], key=lambda t: t[0])[1])
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
    check: bool = True,
    random_state: int = 0,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 4,
) -> Description:
    """Caption representative members and contrast them with a reference group.

    ``images(i) -> PIL`` loads row i. Representatives are taken near the slice centroid, from the
    slice's errors and its correct images separately when ``correct`` is given; ``reference`` rows
    (e.g. the same class's correct images outside the slice) are captioned likewise.

    With ``check`` (the generalisation check), ``k`` more members and ``k`` more reference images
    (random, none of those the terms came from) are captioned too; each term's
    ``details["generalisation"]`` precision is the share of members among these held-out images
    whose caption holds it (``base_rate``: the members' share of the held-out images captioned).

    Images go to the captioner ``batch_size`` at a time; ``progress(done, total)`` is called after
    each batch (total: every image this call may caption), and a raise from it stops the call there.
    """
    members, reference = np.asarray(members), np.asarray(reference)
    if correct is not None:
        errs, oks = members[~correct[members]], members[correct[members]]
        picked = np.concatenate(
            [representatives(errs, embeddings, k), representatives(oks, embeddings, k // 2)]
        )
    else:
        picked = representatives(members, embeddings, k)
    ref = representatives(reference, embeddings, k)
    # held out: the members and reference images the terms were not found on
    mb, rb = np.setdiff1d(members, picked), np.setdiff1d(reference, ref)
    n_held = min(k, len(mb)) + min(k, len(rb)) if check and len(mb) and len(rb) else 0
    total, done = len(picked) + len(ref) + n_held, 0

    def caption(rows: np.ndarray) -> list[str]:
        nonlocal done
        out: list[str] = []
        for s in range(0, len(rows), max(1, batch_size)):
            part = rows[s : s + max(1, batch_size)]
            out += captioner.caption([images(int(i)) for i in part])
            done += len(part)
            if progress is not None:
                progress(done, total)
        return out

    slice_caps = caption(picked)
    ref_caps = caption(ref) if len(ref) else []
    terms = contrast_terms(slice_caps, ref_caps)
    said = [_terms(c) for c in slice_caps]
    details: dict[str, Any] = {
        # the captioned members whose caption holds each term
        "rows": {
            t: np.array([int(i) for i, h in zip(picked, said, strict=True) if t in h], np.int64)
            for t, _ in terms
        },
        "captions": dict(zip([int(i) for i in picked], slice_caps, strict=True)),
        "reference_captions": dict(zip([int(i) for i in ref], ref_caps, strict=True)),
    }
    if check and len(mb) and len(rb) and terms:
        # held out: captions of other members and reference images; a term retrieves the images
        # whose caption holds it
        rng = np.random.default_rng(random_state)
        hm, hr = rng.permutation(mb)[:k], rng.permutation(rb)[:k]
        caps = caption(np.concatenate([hm, hr]))
        has = [_terms(c) for c in caps]
        is_m = np.r_[np.ones(len(hm), bool), np.zeros(len(hr), bool)]
        check_out = {}
        for t, _ in terms:
            hit = np.array([t in h for h in has])
            check_out[t] = {
                "precision": float(is_m[hit].mean()) if hit.any() else float("nan"),
                "base_rate": float(is_m.mean()),
                "retrieved": int(hit.sum()),
            }
        details["generalisation"] = check_out
        details["held_out_captions"] = dict(
            zip([int(i) for i in np.concatenate([hm, hr])], caps, strict=True)
        )
    if progress is not None and done < total:
        progress(total, total)  # no held-out check: nothing more to caption
    return Description(source=f"captions ({captioner.name})", terms=terms, details=details)


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
    random_state: int = 0,
) -> Description:
    """Domino's mean-difference scorer: ``text · (mean(slice) − mean(reference))``.

    Image and phrase embeddings must share one space (a CLIP model's image and text towers).
    ``details["generalisation"]``: each phrase's precision retrieving held-out members by
    image–phrase similarity, and whether half the data alone picks it (:func:`held_out_precision`);
    ``details["rows"]``: per phrase, the members that carry it (image–phrase similarity beyond the
    reference's 90th percentile).
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
    members, reference = np.asarray(members), np.asarray(reference)

    def pick(m: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = T @ (Z[m].mean(0) - Z[r].mean(0))
        return np.argsort(-s, kind="stable")[:k], s

    order, s = pick(members, reference)
    chosen = [phrases[i] for i in order]
    check = held_out_precision(
        T[order] @ Z.T,
        members,
        reference,
        chosen,
        select=lambda m, r: [phrases[i] for i in pick(m, r)[0]],
        random_state=random_state,
    )
    # the members that carry each phrase: image-phrase similarity beyond the reference's 90th
    # percentile (so a click on the phrase selects the images it speaks of)
    sims = T[order] @ Z[np.concatenate([members, reference])].T
    carriers = {
        phrases[i]: beyond(members, row[: len(members)], row[len(members) :], True)
        for i, row in zip(order, sims, strict=True)
    }
    return Description(
        "phrases (CLIP)",
        [(phrases[i], round(float(s[i]), 4)) for i in order],
        {"generalisation": check, "rows": carriers},
    )


# --------------------------------------------------------------------------- ImageNet tags


def imagenet_tags(
    members: np.ndarray,
    reference: np.ndarray,
    imagenet_logits: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    k: int = 8,
    top: int = 5,
    alpha: float = 0.05,
    min_count: int = 3,
    random_state: int = 0,
) -> Description:
    """ImageNet labels of the offline model enriched in the slice beyond chance.

    A label counts for an image when it is among the image's ``top`` predictions. Labels that
    count for at least ``min_count`` images of members and reference together are tested (a
    filter blind to which group an image is in), each with Fisher's exact test (one-sided:
    more often in the members); Benjamini–Hochberg at ``alpha`` over the tested labels. Terms:
    ``(label, share of members − share of reference)`` of the enriched labels, largest first;
    none enriched → no terms, and ``details["note"]`` says so.

    ``details``: ``rates`` {label: (members, reference)}, ``lift`` {label: (lift, low, high)},
    ``q`` {label: q-value}, ``tested`` (how many labels), ``generalisation`` (see
    :func:`held_out_precision`: each label's precision retrieving held-out members by its
    probability), ``rows`` {label: the members having it among their top labels}.
    """
    if class_names is None:
        from faultlens.models.embedders import imagenet_class_names

        class_names = imagenet_class_names()
    L = np.asarray(imagenet_logits, dtype=np.float64)
    m, r = groups(len(L), members, reference)
    top_idx = np.argsort(-L, axis=1, kind="stable")[:, :top]
    nm, nr = len(m), len(r)
    hit, a, b, tested, qd = _enriched_tags(top_idx, L.shape[1], m, r, min_count, alpha)
    ra, rb = a / nm, b / nr
    hit = hit[:k]
    names = [str(class_names[j]) for j in hit]
    lift = {}
    for j, name in zip(hit, names, strict=True):
        aa, bb = a[j] + 0.5, b[j] + 0.5  # Katz log interval, Haldane-corrected
        lr = np.log((aa / (nm + 0.5)) / (bb / (nr + 0.5)))
        se = np.sqrt(1 / aa - 1 / (nm + 0.5) + 1 / bb - 1 / (nr + 0.5))
        lift[name] = tuple(float(np.exp(v)) for v in (lr, lr - 1.96 * se, lr + 1.96 * se))
    P = _softmax(L)
    details: dict[str, Any] = {
        "rates": {n: (float(ra[j]), float(rb[j])) for j, n in zip(hit, names, strict=True)},
        "lift": lift,
        "q": {n: float(qd[j]) for j, n in zip(hit, names, strict=True)},
        "tested": len(tested),
        "generalisation": held_out_precision(
            P[:, hit].T,
            m,
            r,
            names,
            select=lambda ma, ra_: [
                str(class_names[j])
                for j in _enriched_tags(top_idx, L.shape[1], ma, ra_, min_count, alpha)[0]
            ],
            random_state=random_state,
        ),
        "words": {
            n: f"{n} (in the top {top} of {ra[j]:.0%} vs {rb[j]:.0%}, q = {qd[j]:.2g})"
            for j, n in zip(hit, names, strict=True)
        },
        "rows": {n: m[(top_idx[m] == j).any(axis=1)] for j, n in zip(hit, names, strict=True)},
    }
    if not names:
        details["note"] = (
            f"no ImageNet tag is enriched beyond chance (Fisher's exact test on the top-{top} "
            f"labels, Benjamini–Hochberg q < {alpha} over {len(tested)} tested labels)"
        )
    return Description(
        "tags (ImageNet classifier)",
        [(n, round(float(ra[j] - rb[j]), 4)) for j, n in zip(hit, names, strict=True)],
        details,
    )


def _enriched_tags(
    top_idx: np.ndarray, c: int, m: np.ndarray, r: np.ndarray, min_count: int, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[int, float]]:
    """Labels enriched in ``m`` against ``r`` (largest share difference first), the counts per
    label in each group, the tested labels and their q-values."""
    from scipy.stats import hypergeom

    from faultlens.analysis.describe._common import benjamini_hochberg

    a = np.bincount(top_idx[m].ravel(), minlength=c)
    b = np.bincount(top_idx[r].ravel(), minlength=c)
    tested = np.flatnonzero(a + b >= min_count)
    nm, nr = len(m), len(r)
    p = hypergeom.sf(a[tested] - 1, nm + nr, a[tested] + b[tested], nm)
    q = benjamini_hochberg(p)
    ra, rb = a / nm, b / nr
    hit = tested[(q < alpha) & (ra[tested] > rb[tested])]
    hit = hit[np.argsort(-(ra[hit] - rb[hit]), kind="stable")]
    return hit, a, b, tested, dict(zip(tested.tolist(), q.tolist(), strict=True))


def _softmax(L: np.ndarray) -> np.ndarray:
    L = L - L.max(axis=1, keepdims=True)
    P = np.exp(L)
    return P / P.sum(axis=1, keepdims=True)
