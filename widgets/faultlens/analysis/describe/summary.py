"""Every describer the available inputs allow (:func:`describe_members`) and one ranked summary of
their findings (:func:`summarize`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from faultlens.analysis.describe._common import Description, z_of, z_of_p
from faultlens.analysis.describe.pixels import evidence_location, image_properties, property_effects
from faultlens.analysis.describe.tabular import columns
from faultlens.analysis.describe.text import (
    Captioner,
    caption_slice,
    imagenet_tags,
    rank_phrases,
    vocabulary,
)
from faultlens.data.properties import PROPERTY_COLUMNS

#: Columns of an analysis table that are not the user's (left out of :func:`columns`).
TABLE_COLUMNS = frozenset(
    ["id", "path", "label", "label_name", "pred", "pred_name", "confidence", "loss", "correct",
     "x", "y", "source_index", *PROPERTY_COLUMNS.values()]
)  # fmt: skip
#: A finding enters the summary when its interval excludes no effect and it is at least this big.
MIN_REGION_SHARE = 0.02
MIN_EFFECT_SD = 0.2


# --------------------------------------------------------------------------- summary


def findings(d: Description) -> list[dict[str, Any]]:
    """The findings of one description that hold up (interval excluding no effect, or a corrected
    test passed, or a text term that generalised): ``{"text", "evidence", "source", "term",
    "estimate", "rows"}``, evidence = |estimate| / standard error (or the normal quantile of a
    p-value); ``rows``: the members that carry the finding (int64 rows, see each describer's
    ``details["rows"]``), or None where the description cannot say which; ``among``: how many
    members were examined when only a sample was (where the model looks), else None."""
    out: list[dict[str, Any]] = []
    det = d.details or {}

    # maps are computed for a sample of the members: the rows are among those
    among = int(det["n"][0]) if d.source.startswith("where the model looks") else None

    def add(text: str, evidence: float, term: str, estimate: float) -> None:
        out.append({"text": text, "evidence": float(evidence), "source": d.source,
                    "term": term, "estimate": float(estimate), "rows": term_rows(d, term),
                    "among": among})  # fmt: skip

    if d.source.startswith("where the model looks"):
        ends = [d.terms[0], d.terms[-1]] if len(d.terms) > 1 else d.terms[:1]
        for reg, diff in ends:  # where the evidence gathers most, and where it is missing most
            lo, hi = det["ci"][reg]
            if (lo > 0 or hi < 0) and abs(diff) >= MIN_REGION_SHARE:
                add(det["words"][reg], z_of(diff, lo, hi), reg, diff)
    elif d.source == "image properties":
        for name, g in d.terms:
            lo, hi = det["ci"][name]
            if (lo > 0 or hi < 0) and abs(g) >= MIN_EFFECT_SD:
                add(det["words"][name], z_of(g, lo, hi), name, g)
    elif d.source == "columns":
        for t, est in d.terms:
            info = det["terms"][t]
            add(info["words"], info["evidence"], t, est)
    elif d.source.startswith("tags"):
        for t, est in d.terms:
            gen = det.get("generalisation", {}).get(t, {})
            words = det["words"][t]
            if gen:
                words += (
                    f"; held-out precision {gen['precision']:.2f} vs base {gen['base_rate']:.2f}"
                )
            add(f"ImageNet tag {words}", z_of_p(det["q"][t]), t, est)
    elif d.source.startswith("concept"):
        for t, est in d.terms:
            res = det[t]
            if res["p_value"] < 0.05:
                way = "aligns with" if est > 0.5 else "lacks"
                add(f"{way} the concept {t!r} (score {est:.2f}, p = {res['p_value']:.2g})",
                    z_of_p(res["p_value"]), t, est)  # fmt: skip
    else:  # captions, phrases: a term counts when it retrieves held-out members above chance
        for t, est in d.terms:
            gen = det.get("generalisation", {}).get(t)
            if not gen or gen.get("selected_on_half") is False:
                continue
            p, base = gen["precision"], gen["base_rate"]
            k = gen.get("retrieved") or max(1, round(base * 40))
            if not (math.isfinite(p) and p > base):
                continue
            z = (p - base) / math.sqrt(base * (1 - base) / k) if 0 < base < 1 else 0.0
            kind = "captions say" if d.source.startswith("captions") else "CLIP phrase"
            add(f"{kind} {t!r} (held-out precision {p:.2f} vs base {base:.2f})", z, t, est)
    return out


def term_rows(d: Description, term: str) -> np.ndarray | None:
    """The members that carry ``term`` of description ``d`` (int64 rows), or None where the
    description does not say (e.g. captions: only a few members are captioned)."""
    det = d.details or {}
    if d.source == "columns":
        rows = det.get("terms", {}).get(term, {}).get("rows")
    elif d.source.startswith("concept"):
        rows = (det.get(term) or {}).get("rows")
    else:
        rows = (det.get("rows") or {}).get(term)
    return None if rows is None else np.asarray(rows, dtype=np.int64)


def summarize(
    descriptions: Sequence[Description],
    *,
    header: str | None = None,
    k: int = 3,
    header_rows: np.ndarray | None = None,
) -> Description:
    """One ranked summary of every description's findings (:func:`findings`), strongest evidence
    first. ``details["sentence"]``: the header and the ``k`` strongest findings joined by " · "
    (e.g. "Coat read as Shirt · the model's evidence sits top-left (54 % of map mass vs 9 %) ·
    brighter: …"); ``details["parts"]``: every finding with the ``source`` and ``term`` of the
    description that backs it and the ``rows`` that carry it (None where unknown). Terms:
    ``(finding, evidence)``, the header first (evidence inf); ``header_rows``: the rows the
    header speaks of (e.g. the members read as the wrong class), when given."""
    parts = [f for d in descriptions for f in findings(d)]
    parts.sort(key=lambda f: -f["evidence"])
    head = [header] if header else []
    texts = head + [f["text"] for f in parts[:k]]
    sentence = (
        " · ".join(texts)
        if parts
        else " · ".join([*head, "no describer found a difference that holds up"])
    )
    terms = [(header, math.inf)] if header else []
    terms += [(f["text"], round(f["evidence"], 2)) for f in parts]
    hr = None if header_rows is None else np.asarray(header_rows, dtype=np.int64)
    return Description(
        "summary",
        terms,
        {"sentence": sentence, "parts": parts, "header": header, "header_rows": hr},
    )


def header_rows(
    members: np.ndarray, labels: Sequence[str], preds: Sequence[str] | None
) -> np.ndarray:
    """The members :func:`slice_header` speaks of: those read as its wrong class when it says
    "… read as …", else those of its main class (``labels``/``preds`` align with ``members``)."""
    members = np.asarray(members, np.int64)
    lab = pd.Series(np.asarray(labels, dtype=object))
    if preds is not None:
        pred = pd.Series(np.asarray(preds, dtype=object))
        wrong = lab != pred
        counts = pred[wrong].value_counts()  # as slice_header reads it
        if len(counts) and counts.iloc[0] >= 0.5 * len(lab):
            return members[(wrong & (pred == counts.index[0])).to_numpy()]
    return members[(lab == lab.value_counts().index[0]).to_numpy()]


def slice_header(labels: Sequence[str], preds: Sequence[str] | None) -> str:
    """ "Coat read as Shirt" (or "Pullover, Coat, T-shirt/top read as Shirt") when most members are
    read as one wrong class, else the main class (with its share when under 90 %)."""
    lab = pd.Series(np.asarray(labels, dtype=object))
    if preds is not None:
        pred = pd.Series(np.asarray(preds, dtype=object))
        wrong = lab != pred
        counts = pred[wrong].value_counts()
        if len(counts) and counts.iloc[0] >= 0.5 * len(lab):
            p = counts.index[0]
            sources = lab[wrong & (pred == p)].value_counts()
            keep = sources[sources >= 0.1 * sources.sum()].index[:3]
            share = counts.iloc[0] / len(lab)
            text = f"{', '.join(map(str, keep))} read as {p}"
            return text if share > 0.9 else f"{text} ({share:.0%})"
    top, share = lab.value_counts().index[0], lab.value_counts().iloc[0] / len(lab)
    return str(top) if share > 0.9 else f"mostly {top} ({share:.0%})"


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
    images: Any = None,
    maps: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
    table: pd.DataFrame | None = None,
    concepts: Mapping[str, Any] | None = None,
    reference: Any = None,
    summary: bool | None = None,
    max_images: int = 400,
    max_maps: int = 64,
    random_state: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Description], list[str]]:
    """Every description the available inputs allow, and notes on what could not be made.

    The reference group (unless ``reference`` rows are given) is the correct images of the
    slice's most common class outside the slice (or, when there are none, everything outside the
    slice). Captions need ``captioner`` and ``load_image``; phrases need ``text_encoder`` (with
    ``encode_text``) sharing the image embeddings' space; tags need the offline model's
    ``imagenet_logits`` and are shown only when enriched beyond chance. A captioner that fails is
    reported in the notes and the other descriptions still come.

    Offline describers: ``maps`` ((n, H, W) activation or Grad-CAM maps, or a function
    ``rows -> maps``) give :func:`evidence_location`; the property columns of ``table`` (the
    analysis table of ``analyze(image_properties=True)``) or ``images`` (a function ``row ->
    image`` or a sequence) give the image properties; the other columns of ``table`` (the
    user's) give :func:`columns`; ``concepts`` ({name: fitted :class:`ConceptFromExamples`}, with
    ``embeddings``) give the concept tests. Images and maps are read for the members and at most
    ``max_images`` reference images (a seeded sample); a function ``maps`` is asked for at most
    ``max_maps`` members and ``max_maps`` reference images (each a seeded sample: computing a
    map costs a forward and a backward pass).

    With ``summary`` (default: when any offline input is given) a :func:`summarize` description
    comes first: one sentence over every finding, ranked by evidence.

    ``progress(done, total)`` follows the captioning (the slow part), batch by batch. To stop the
    call there, raise from it something that is not an ``Exception`` (``KeyboardInterrupt``, the
    widgets' ``Cancelled``); an ``Exception`` becomes a note like any captioner failure.
    """
    members = np.asarray(members, dtype=np.int64)
    if len(members) == 0:
        msg = "the selection is empty: select some images to describe"
        raise ValueError(msg)
    ref = _reference(members, labels, correct, reference)
    notes: list[str] = []
    out: list[Description] = []
    if len(ref) == 0:
        notes.append("everything is selected: there is no reference group to contrast with")
        return out, notes
    text = {"captioner": captioner, "load_image": load_image, "text_encoder": text_encoder,
            "phrases": phrases, "class_names": class_names, "imagenet_logits": imagenet_logits}  # fmt: skip
    _describe_in_words(out, notes, members, ref, embeddings, correct, progress, **text)
    rng = np.random.default_rng(random_state)
    ref_s = _sample(ref, max_images, rng)  # the reference first: the same draws as before
    mem_s = _sample(members, max_images, rng)
    if maps is not None:
        _describe_maps(out, notes, maps, mem_s, ref_s, max_maps, rng, random_state)
    _describe_images(out, notes, members, ref, mem_s, ref_s, table, images)
    if table is not None:
        user = table[[c for c in table.columns if c not in TABLE_COLUMNS]]
        if len(user.columns):
            out.append(columns(user, members, ref))
    if concepts:
        if embeddings is None:
            notes.append("concepts need the images' embeddings")
        else:
            out.append(_concept_tests(concepts, embeddings, members, ref))
    offline = any(x is not None for x in (images, maps, table, concepts))
    if summary or (summary is None and offline):
        out.insert(0, _summary_of(out, members, labels, class_names, table))
    if not out:
        notes.append(
            "no description source: give a captioner, a CLIP text encoder, or use the offline embedder"
        )
    return out, notes


def _reference(
    members: np.ndarray, labels: np.ndarray, correct: np.ndarray, reference: Any
) -> np.ndarray:
    """The rows to contrast ``members`` with: ``reference`` when given, else the correct images
    of the members' most common class outside them (or everything outside them)."""
    if reference is not None:
        return np.asarray(reference, dtype=np.int64)
    outside = np.ones(len(labels), dtype=bool)
    outside[members] = False
    modal = int(np.bincount(labels[members]).argmax())
    ref = np.flatnonzero(outside & (labels == modal) & correct)
    return ref if len(ref) else np.flatnonzero(outside)


def _describe_in_words(
    out: list[Description], notes: list[str], members: np.ndarray, ref: np.ndarray,
    embeddings: np.ndarray | None, correct: np.ndarray, progress: Any, *, captioner: Any,
    load_image: Any, text_encoder: Any, phrases: Sequence[str], class_names: Sequence[str],
    imagenet_logits: np.ndarray | None,
) -> None:  # fmt: skip
    """The text describers: captions, CLIP phrases and ImageNet tags, where their inputs are."""
    if captioner is not None and load_image is not None and embeddings is not None:
        try:
            captions = caption_slice(
                captioner, load_image, members, ref, embeddings, correct=correct, progress=progress
            )
            out.append(captions)
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
        tags = imagenet_tags(members, ref, imagenet_logits)
        out.append(tags)
        if "note" in tags.details:
            notes.append(f"tags: {tags.details['note']}")


def _describe_maps(
    out: list[Description], notes: list[str], maps: Any, mem_s: np.ndarray, ref_s: np.ndarray,
    max_maps: int, rng: np.random.Generator, random_state: int,
) -> None:  # fmt: skip
    """Where the model looks: the maps of the sampled members against the reference's (a
    function ``maps`` is asked for at most ``max_maps`` of each)."""
    mm, mr = mem_s, ref_s
    if callable(maps):
        mm, mr = _sample(mem_s, max_maps, rng), _sample(ref_s, max_maps, rng)
    rows = np.concatenate([mm, mr])
    try:
        M = maps(rows) if callable(maps) else np.asarray(maps)[rows]
        d = evidence_location(
            M, np.arange(len(mm)), np.arange(len(mm), len(rows)), random_state=random_state,
            label=str(getattr(maps, "label", "activation maps")),
        )  # fmt: skip
        out.append(_global_rows(d, rows))
    except Exception as exc:
        notes.append(f"where the model looks: unavailable ({type(exc).__name__}: {exc})")


def _describe_images(
    out: list[Description], notes: list[str], members: np.ndarray, ref: np.ndarray,
    mem_s: np.ndarray, ref_s: np.ndarray, table: pd.DataFrame | None, images: Any,
) -> None:  # fmt: skip
    """How the images differ: from the table's property columns (every member), else measured
    on the sampled images."""
    prop_cols = list(PROPERTY_COLUMNS.values())
    if table is not None and all(c in table.columns for c in prop_cols):
        out.append(property_effects(table[prop_cols], members, ref))
    elif images is not None:
        both = np.concatenate([mem_s, ref_s])
        try:
            get = images if callable(images) else np.asarray(images).__getitem__
            d = image_properties(
                [get(int(i)) for i in both], np.arange(len(mem_s)), np.arange(len(mem_s), len(both))
            )
            out.append(_global_rows(d, both))
        except Exception as exc:
            notes.append(f"image properties: unavailable ({type(exc).__name__}: {exc})")


def _concept_tests(
    concepts: Mapping[str, Any], embeddings: np.ndarray, members: np.ndarray, ref: np.ndarray
) -> Description:
    """Each concept learned from examples, tested on the members against the reference; the
    strongest alignment (either way from 0.5) first."""
    res = {name: c.test(embeddings, members, ref) for name, c in concepts.items()}
    terms = sorted(
        ((k, round(v["score"], 3)) for k, v in res.items()), key=lambda t: -abs(t[1] - 0.5)
    )
    return Description("concepts (from examples)", terms, dict(res))


def _summary_of(
    out: list[Description], members: np.ndarray, labels: np.ndarray,
    class_names: Sequence[str], table: pd.DataFrame | None,
) -> Description:  # fmt: skip
    """The one-sentence summary over ``out``, headed by what the members are read as."""
    names = list(class_names) if len(class_names) else None
    lab = (
        table["label_name"].to_numpy()[members]
        if table is not None and "label_name" in table.columns
        else [names[i] if names else str(i) for i in labels[members]]
    )
    pred = (
        table["pred_name"].to_numpy()[members]
        if table is not None and "pred_name" in table.columns
        else None
    )
    return summarize(
        out, header=slice_header(list(lab), pred), header_rows=header_rows(members, list(lab), pred)
    )


def _sample(rows: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``k`` of ``rows`` (a seeded sample, sorted)."""
    if k < 1:
        msg = f"max_maps and max_images must be at least 1, got {k}"
        raise ValueError(msg)
    return np.sort(rng.choice(rows, k, replace=False)) if len(rows) > k else rows


def _global_rows(d: Description, rows: np.ndarray) -> Description:
    """``d`` whose ``details["rows"]`` (positions into ``rows``) become the table's rows."""
    local = (d.details or {}).get("rows")
    if local:
        d.details["rows"] = {t: rows[np.asarray(v, dtype=np.int64)] for t, v in local.items()}
    return d
