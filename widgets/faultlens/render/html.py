"""Static HTML fragments: one vocabulary for the Explorer's static copy (``_repr_mimebundle_``)
and the HTML report.

One escaping helper (:func:`esc`, every string that comes from data goes through it) and one
missing-value policy: :func:`pct` and :func:`num` write ``–`` for ``None``, NaN, ±inf and anything
that is not a number.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from faultlens.data.decode import image_mime

MISSING = "–"
#: How many top terms of each description the slice tables show.
TOP_TERMS = 5


def esc(value: Any) -> str:
    """``value`` as text with ``& < > " '`` escaped."""
    return html.escape(str(value), quote=True)


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def pct(v: Any) -> str:
    """A share as a percentage with one decimal (``0.125`` → ``12.5%``), ``–`` when missing."""
    f = _finite(v)
    return MISSING if f is None else f"{f:.1%}"


def num(v: Any, fmt: str = ".2f") -> str:
    """A number in ``fmt``, ``–`` when missing."""
    f = _finite(v)
    return MISSING if f is None else format(f, fmt)


def image_uri(image: Any, *, size: int | None = None) -> str:
    """A ``data:`` URI of a PIL image or RGB/gray array (as PNG), or of encoded PNG/JPEG bytes;
    ``size`` scales an image to that many pixels on its longer side."""
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
        return f"data:{image_mime(data)};base64," + base64.b64encode(data).decode("ascii")
    if not isinstance(image, Image.Image):
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = np.clip(np.asarray(arr, dtype=np.float64) * 255.0, 0, 255).astype(np.uint8)
        image = Image.fromarray(arr)
    if image.mode not in ("RGB", "L", "RGBA"):
        image = image.convert("RGB")
    if size is not None and max(image.size) != size:
        scale = size / max(image.size)
        new = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
        small = max(image.size) < size
        image = image.resize(new, Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def stats_table(s: Mapping[str, Any]) -> str:
    """One row of group statistics: images, errors, error rate, its 95% CI, lift, top classes."""
    mix = s.get("class_mix") or []
    mix_txt = ", ".join(f"{esc(m['name'])} ({int(m['n'])})" for m in mix[:5])
    return (
        "<table><tr><th>images</th><th>errors</th><th>error rate</th><th>95% CI</th>"
        "<th>lift</th><th>classes</th></tr>"
        f"<tr><td class='num'>{int(s.get('n', 0))}</td><td class='num'>{int(s.get('errors', 0))}"
        f"</td><td class='num'>{pct(s.get('error_rate'))}</td><td class='num'>"
        f"{pct(s.get('ci_low'))}–{pct(s.get('ci_high'))}</td><td class='num'>"
        f"{num(s.get('lift'))}×</td><td>{mix_txt}</td></tr></table>"
    )


def description_parts(descs: Any) -> tuple[list[Any], list[str]]:
    """``(descriptions, notes)`` of whatever holds descriptions: ``(list, notes)`` as
    :meth:`Analysis.describe` returns, a discovered slice's ``{"items", "notes"}``, a dict keyed
    by source, or a list."""
    if not descs:
        return [], []
    if isinstance(descs, tuple) and len(descs) == 2 and isinstance(descs[1], list):
        return list(descs[0] or []), [str(n) for n in descs[1]]
    if isinstance(descs, Mapping):
        if "items" in descs:
            return list(descs.get("items") or []), [str(n) for n in descs.get("notes") or []]
        return list(descs.values()), []
    return list(descs), []


def descriptions_html(descs: Any) -> str:
    """Descriptions (see :func:`description_parts`) as HTML: the one-sentence summary on top, a
    list of the others, each labelled with its source, the notes, then the pictures that back
    them (where the model looks: members, reference, difference), each with its caption."""
    items, notes = description_parts(descs)
    head, parts = summary_html(items), []
    for d in items:
        source = getattr(d, "source", None)
        terms = getattr(d, "terms", None)
        if source is None and isinstance(d, Mapping):
            source, terms = d.get("source"), d.get("terms")
        if source is None:
            source, terms = "description", [(str(d), math.nan)]
        if source == "summary" and head:
            continue  # said on top
        words = ", ".join(
            esc(term[0] if isinstance(term, (tuple, list)) else term) for term in (terms or [])[:8]
        )
        parts.append(f"<li><span class='src'>{esc(source)}</span> {words or '(none)'}</li>")
    parts.extend(f"<li class='muted'>{esc(n)}</li>" for n in notes)
    listed = f"<ul>{''.join(parts)}</ul>" if parts else ""
    return head + listed + evidence_html(items)


def summary_html(descriptions: Any) -> str:
    """The summary's one sentence (``details["sentence"]`` of the ``"summary"`` description) as a
    paragraph; nothing when there is none."""
    for d in description_items(descriptions):
        sentence = (d.details or {}).get("sentence") if d.source == "summary" else None
        if sentence:
            return f"<p class='summary'><b>{esc(sentence)}</b></p>"
    return ""


#: What each picture of a where-the-model-looks description shows (``{n}``: its image count).
PICTURE_CAPTIONS = {
    "members": "slice: mean map of {n} members",
    "reference": "reference: mean map of {n} images (same scale)",
    "difference": "difference: red = more of the model's evidence in the slice, blue = less",
}


def evidence_pictures(descriptions: Any) -> list[dict[str, Any]]:
    """Every picture the descriptions hold (``details["pictures"]``, PNG bytes), in their order:
    ``{source, kind, caption, png}``; the caption says what it shows."""
    out = []
    for d in description_items(descriptions):
        det = d.details or {}
        pics = det.get("pictures") or {}
        n = det.get("n") or (None, None)
        for kind, png in pics.items():
            if not isinstance(png, (bytes, bytearray)) or not png:
                continue
            count = {"members": n[0], "reference": n[1]}.get(kind)
            cap = PICTURE_CAPTIONS.get(kind, kind).format(n="?" if count is None else count)
            out.append({"source": str(d.source), "kind": str(kind), "caption": cap,
                        "png": bytes(png)})  # fmt: skip
    return out


def evidence_html(descriptions: Any) -> str:
    """The descriptions' pictures as captioned figures (nothing when they have none)."""
    figs = [
        f"<figure><img src='{image_uri(p['png'])}' width='160' height='160' "
        f"style='image-rendering:pixelated' alt='{esc(p['caption'])}'/>"
        f"<figcaption>{esc(p['caption'])}</figcaption></figure>"
        for p in evidence_pictures(descriptions)
    ]
    return f"<div class='evidence'>{''.join(figs)}</div>" if figs else ""


def description_items(descriptions: Any) -> list[Any]:
    """The Description objects in a Slice's ``descriptions`` (a dict with ``items``, a dict keyed
    by source, or a list)."""
    items, _notes = description_parts(descriptions)
    return [d for d in items if hasattr(d, "source") and hasattr(d, "terms")]


def selection_description_html(d: Mapping[str, Any]) -> str:
    """The Explorer's last description of a selection (its ``descriptions`` trait): the terms per
    source, the captions under each, the notes, and whether it describes an earlier selection."""
    if not d:
        return "<p>no description yet</p>"
    parts = [
        f'<div class="faultlens-descriptions"><p>description of {int(d.get("n", 0))} images</p>'
    ]
    if d.get("stale"):
        parts.append("<p><i>described an earlier selection</i></p>")
    if d.get("error"):
        parts.append(f"<p>error: {esc(d['error'])}</p>")
    for item in d.get("items", []):
        terms = ", ".join(esc(term) for term, _ in item["terms"][:TOP_TERMS])
        parts.append(f"<p><b>{esc(item['source'])}</b>: {terms or '(no contrasting terms)'}</p>")
        if item["captions"]:
            parts.append("<ul>")
            parts.extend(f"<li>{esc(c['id'])}: {esc(c['caption'])}</li>" for c in item["captions"])
            parts.append("</ul>")
    parts.extend(f"<p><i>{esc(note)}</i></p>" for note in d.get("notes", []))
    parts.append("</div>")
    return "\n".join(parts)


def discovered_table_html(discovered: Sequence[Mapping[str, Any]]) -> str:
    """A table of discovered slices (the Explorer's ``discovered`` rows)."""
    if not discovered:
        return "<p>no discovered slices</p>"
    rows = [
        "<table><tr><th>discovered slice</th><th>method</th><th>images</th>"
        "<th>error rate (95% CI)</th><th>lift</th><th>description</th></tr>"
    ]
    for sl in discovered:
        desc = "; ".join(
            f"{esc(d['source'])}: {esc(', '.join(d['terms']))}" for d in sl["descriptions"]
        )
        rows.append(
            f"<tr><td>{esc(sl['name'])}</td><td>{esc(sl['method'])}</td><td>{int(sl['size'])}</td>"
            f"<td>{pct(sl['error_rate'])} ({pct(sl['ci_low'])}–{pct(sl['ci_high'])})</td>"
            f"<td>{num(sl['lift'])}</td><td>{desc}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def saved_table_html(saved: Sequence[Mapping[str, Any]]) -> str:
    """A table of saved slices (``{name, n, created}`` each)."""
    if not saved:
        return "<p>no saved slices</p>"
    rows = ["<table><tr><th>saved slice</th><th>images</th><th>created</th></tr>"]
    rows.extend(
        f"<tr><td>{esc(sl['name'])}</td><td>{int(sl['n'])}</td><td>{esc(sl['created'])}</td></tr>"
        for sl in saved
    )
    rows.append("</table>")
    return "\n".join(rows)


def thumbs_html(analysis: Any, rows: Iterable[int], k: int, size: int = 80) -> str:
    """Up to ``k`` thumbnails of ``rows``, each captioned by its label (``label → pred`` and a
    red border when wrong); an unreadable image becomes a note in its place."""
    t = analysis.table
    names = [str(c) for c in analysis.class_names]
    figs = []
    for r in list(rows)[:k]:
        r = int(r)
        try:
            uri = image_uri(analysis.thumbnail(r, size))
        except Exception as exc:  # one unreadable image must not lose the page
            figs.append(f"<figure><div class='muted'>no image: {esc(exc)}</div></figure>")
            continue
        ok = bool(t["correct"].iat[r])
        label, pred = names[int(t["label"].iat[r])], names[int(t["pred"].iat[r])]
        cap = esc(label) if ok else f"{esc(label)} → {esc(pred)}"
        figs.append(
            f"<figure><img class='{'ok' if ok else 'wrong'}' src='{uri}' "
            f"alt='{esc(t['id'].iat[r])}'/><figcaption>{cap}</figcaption></figure>"
        )
    return f"<div class='thumbs'>{''.join(figs)}</div>" if figs else ""


def explorer_html(
    *,
    png: bytes,
    n_points: int,
    class_names: Sequence[str],
    color_by: str,
    selection: Mapping[str, Any],
    saved: Sequence[Mapping[str, Any]],
    discovered: Sequence[Mapping[str, Any]],
    description: Mapping[str, Any],
    described: Sequence[tuple[str, Any]] = (),
) -> str:
    """The Explorer's static copy: the map image, the selection's statistics, the saved and the
    discovered slices, the summary and pictures of each described discovered slice
    (``described``: ``(name, descriptions)``) and the last description."""
    parts = [
        '<div class="faultlens-static">',
        f"<p><b>faultlens Explorer</b> — {int(n_points)} images, {len(class_names)} classes: "
        f"{esc(', '.join(class_names[:20]))}</p>",
        f'<img alt="faultlens map coloured by {esc(color_by)}" src="{image_uri(png)}"/>',
    ]
    s = selection.get("selection", {})
    if s.get("n"):
        parts.append(
            f"<p>selection: {int(s['n'])} images, error rate {pct(s.get('error_rate'))} "
            f"(95% CI {pct(s.get('ci_low'))}–{pct(s.get('ci_high'))})</p>"
        )
    parts.append(saved_table_html(saved))
    if discovered:
        parts.append(discovered_table_html(discovered))
    for name, descs in described:
        shown = summary_html(descs) + evidence_html(descs)
        if shown:
            parts.append(f"<div class='slice-evidence'><p>{esc(name)}</p>{shown}</div>")
    if description:
        parts.append(selection_description_html(description))
    parts.append("</div>")
    return "\n".join(parts)
