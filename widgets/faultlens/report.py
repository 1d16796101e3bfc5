"""A static, self-contained HTML report of an analysis: one file to mail, attach to an issue or
archive beside a model.

:func:`write_report` writes ONE ``.html`` file: inline CSS, every image a base64 PNG ``data:`` URI, no
script and no network request. It holds the map (the Explorer's own PIL renderer, coloured by
correctness), the overall statistics and per-class accuracy, the slices saved from the Explorer
(``<analysis folder>/slices.json``) and the discovered slices with their statistics, descriptions
(each labelled with its source: captions, CLIP phrases or ImageNet tags) and thumbnails, and any
activation maps you pass. Every string that comes from data (class names, slice names, ids,
descriptions) is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from faultlens._version import __version__
from faultlens.data.decode import image_mime

__all__ = ["write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1100px;color:#1d1d1f;line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;
margin-top:1.6em}h3{margin-bottom:.3em}.muted{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;font-size:.92em}th{background:#f4f4f6}td.num{text-align:right;
font-variant-numeric:tabular-nums}.thumbs{display:flex;flex-wrap:wrap;gap:6px;margin:.4em 0}
.thumbs figure{margin:0;text-align:center;font-size:.75em;color:#444;width:84px}
.thumbs img{width:80px;height:80px;image-rendering:pixelated;border:2px solid #2a9d8f}
.thumbs img.wrong{border-color:#e63946}.slice{border:1px solid #e4e4e8;border-radius:6px;
padding:8px 14px;margin:12px 0}.src{display:inline-block;background:#eef;border-radius:4px;
padding:0 6px;font-size:.8em;color:#334}.map{max-width:100%;border:1px solid #ddd}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _image_uri(image: Any, *, size: int | None = None) -> str:
    """A ``data:`` URI of a PIL image or RGB/gray array (as PNG), or of encoded PNG/JPEG bytes."""
    mime = "image/png"
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
        mime = image_mime(data)
    else:
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
            image = image.resize(
                new, Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS
            )
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _pct(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(f) else f"{f:.1%}"


def _num(v: Any, fmt: str = ".2f") -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(f) else format(f, fmt)


def _stats(analysis: Any, rows: np.ndarray) -> dict[str, Any]:
    from faultlens.analysis.slices import slice_stats

    t = analysis.table
    return slice_stats(
        np.asarray(rows, dtype=np.intp),
        t["correct"].to_numpy(dtype=bool),
        t["label"].to_numpy(dtype=np.int64),
        [str(c) for c in analysis.class_names],
    )


def _stats_table(s: Mapping[str, Any]) -> str:
    mix = s.get("class_mix") or []
    mix_txt = ", ".join(f"{_esc(m['name'])} ({int(m['n'])})" for m in mix[:5])
    return (
        "<table><tr><th>images</th><th>errors</th><th>error rate</th><th>95% CI</th>"
        "<th>lift</th><th>classes</th></tr>"
        f"<tr><td class='num'>{int(s.get('n', 0))}</td><td class='num'>{int(s.get('errors', 0))}"
        f"</td><td class='num'>{_pct(s.get('error_rate'))}</td><td class='num'>"
        f"{_pct(s.get('ci_low'))}–{_pct(s.get('ci_high'))}</td><td class='num'>"
        f"{_num(s.get('lift'))}×</td><td>{mix_txt}</td></tr></table>"
    )


def _thumbs(analysis: Any, rows: Iterable[int], k: int) -> str:
    t = analysis.table
    names = [str(c) for c in analysis.class_names]
    figs = []
    for r in list(rows)[:k]:
        r = int(r)
        try:
            uri = _image_uri(analysis.thumbnail(r, 80))
        except Exception as exc:  # one unreadable image must not lose the report
            figs.append(f"<figure><div class='muted'>no image: {_esc(exc)}</div></figure>")
            continue
        ok = bool(t["correct"].iat[r])
        label, pred = names[int(t["label"].iat[r])], names[int(t["pred"].iat[r])]
        cap = _esc(label) if ok else f"{_esc(label)} → {_esc(pred)}"
        figs.append(
            f"<figure><img class='{'ok' if ok else 'wrong'}' src='{uri}' "
            f"alt='{_esc(t['id'].iat[r])}'/><figcaption>{cap}</figcaption></figure>"
        )
    return f"<div class='thumbs'>{''.join(figs)}</div>" if figs else ""


def _descriptions_html(descs: Any) -> str:
    """Descriptions (a list of :class:`Description`, or ``(descriptions, notes)``) as HTML."""
    if descs is None:
        return ""
    notes: list[str] = []
    if isinstance(descs, tuple) and len(descs) == 2 and isinstance(descs[1], list):
        descs, notes = descs
    parts = []
    for d in descs or []:
        source = getattr(d, "source", None)
        terms = getattr(d, "terms", None)
        if source is None and isinstance(d, Mapping):
            source, terms = d.get("source"), d.get("terms")
        if source is None:
            source, terms = "description", [(str(d), math.nan)]
        words = ", ".join(
            _esc(term[0] if isinstance(term, (tuple, list)) else term) for term in (terms or [])[:8]
        )
        parts.append(f"<li><span class='src'>{_esc(source)}</span> {words or '(none)'}</li>")
    parts.extend(f"<li class='muted'>{_esc(n)}</li>" for n in notes)
    return f"<ul>{''.join(parts)}</ul>" if parts else ""


def _auto_describe(analysis: Any, rows: np.ndarray) -> Any:
    """Offline descriptions (ImageNet tags) when the analysis has the offline model's logits."""
    if "imagenet_logits" not in getattr(analysis, "arrays", {}) or len(rows) == 0:
        return None
    try:
        return analysis.describe(rows)
    except Exception as exc:  # a description failing must not lose the report
        return ([], [f"descriptions unavailable: {type(exc).__name__}: {exc}"])


def _saved_slices(analysis: Any, explorer: Any) -> list[tuple[str, np.ndarray, str]]:
    if explorer.slices_path is None and not explorer.slices:
        return []
    out = []
    for entry in explorer.slices:
        name = str(entry["name"])
        try:
            rows = explorer.slice_rows(name).astype(np.intp)
        except (KeyError, ValueError) as exc:
            out.append((name, np.zeros(0, np.intp), f"cannot read: {exc}"))
            continue
        out.append((name, rows, str(entry.get("created", ""))))
    return out


def _as_slices(slices: Any, n: int) -> list[tuple[str, np.ndarray, str, Any]]:
    """Discovered slices: :class:`Slice` objects, or ``{name: rows}``; each slice's rows must
    be table rows (whole numbers in ``0..n-1``), else a ValueError names the slice."""
    if slices is None:
        return []
    if isinstance(slices, Mapping):
        items = [(str(name), rows, "", None) for name, rows in slices.items()]
    else:
        items = [
            (str(getattr(s, "name", f"slice {i}")), getattr(s, "indices", s),
             str(getattr(s, "method", "")), s)
            for i, s in enumerate(slices)
        ]  # fmt: skip
    out = []
    for name, raw, method, obj in items:
        rows = np.asarray(raw)
        if rows.size and (rows.ndim != 1 or rows.dtype.kind not in "iu"):
            msg = (
                f"slice {name!r}: rows must be a 1-D list of table row numbers, got "
                f"{rows.dtype} of shape {rows.shape}"
            )
            raise ValueError(msg)
        rows = rows.astype(np.intp).reshape(-1)
        outside = rows[(rows < 0) | (rows >= n)]
        if len(outside):
            msg = (
                f"slice {name!r}: row {int(outside[0])} is outside the table's rows 0..{n - 1} "
                f"({len(outside)} such rows)"
            )
            raise ValueError(msg)
        out.append((name, rows, method, obj))
    return out


def _feature_maps_html(feature_maps: Any) -> str:
    """``{title: [image, ...]}`` or ``{title: [(caption, image), ...]}`` → rows of tiles."""
    if not feature_maps:
        return ""
    parts = ["<h2>Activation maps</h2>"]
    for title, items in feature_maps.items():
        figs = []
        for j, item in enumerate(items):
            cap, img = item if isinstance(item, tuple) and len(item) == 2 else (str(j), item)
            figs.append(
                f"<figure><img src='{_image_uri(img, size=80)}' alt='{_esc(cap)}'/>"
                f"<figcaption>{_esc(cap)}</figcaption></figure>"
            )
        parts.append(f"<h3>{_esc(title)}</h3><div class='thumbs'>{''.join(figs)}</div>")
    return "\n".join(parts)


def write_report(
    analysis: Any,
    path: str | os.PathLike[str],
    *,
    slices: Sequence[Any] | Mapping[str, Any] | None = None,
    descriptions: Mapping[str, Any] | bool | None = None,
    feature_maps: Mapping[str, Sequence[Any]] | None = None,
    title: str = "faultlens report",
    thumbnails: int = 12,
    color_by: str = "correct",
) -> Path:
    """Write a self-contained HTML report of ``analysis`` to ``path`` and return the path.

    Parameters
    ----------
    analysis:
        A :class:`faultlens.Analysis` with a 2-D map. Its saved slices (``<folder>/slices.json``,
        written by the Explorer) are always included.
    slices:
        Discovered slices: the list :meth:`Analysis.find_slices` returns, or ``{name: rows}``.
    descriptions:
        ``{slice name: descriptions}`` where descriptions is what :meth:`Analysis.describe`
        returns (``(list, notes)``) or a list of :class:`~faultlens.analysis.describe.Description`.
        ``None`` (default): a discovered slice's own ``descriptions``, else the offline ImageNet tags
        when the analysis has them (fast; no model is run). ``False``: no descriptions.
    feature_maps:
        ``{title: [image or (caption, image), ...]}``: e.g. activation-map overlays
        (:func:`faultlens.analysis.spurious.overlay`) of the top images of a feature.
    thumbnails:
        Images shown per slice (most typical / first rows first).
    """
    from faultlens.ui.explorer import Explorer

    path = Path(path)
    t = analysis.table
    found = _as_slices(slices, len(t))  # checked before any work
    names = [str(c) for c in analysis.class_names]
    explorer = Explorer(analysis, color_by=color_by)
    map_png = explorer.render_png(width=900, height=560)
    n = len(t)
    correct = t["correct"].to_numpy(dtype=bool)
    overall = _stats(analysis, np.arange(n))

    body = [
        f"<h1>{_esc(title)}</h1>",
        f"<p class='muted'>{n} images, {len(names)} classes; made "
        f"{_esc(time.strftime('%Y-%m-%d %H:%M'))} with faultlens {_esc(__version__)}.</p>",
        "<h2>Overview</h2>",
        f"<p>Accuracy <b>{_pct(correct.mean() if n else math.nan)}</b> "
        f"({int((~correct).sum())} errors of {n}; 95% CI of the error rate "
        f"{_pct(overall['ci_low'])}–{_pct(overall['ci_high'])}).</p>",
        f"<img class='map' id='map' alt='map of the images coloured by {_esc(color_by)}' "
        f"src='{_image_uri(map_png)}'/>",
        "<p class='muted'>Map: the images' embeddings projected to 2-D; similar images lie close "
        "together. Colour: whether the classifier got each image right.</p>",
    ]
    acc = analysis.group_accuracy("label_name").sort_values("accuracy")
    body.append("<h3>Accuracy per class (worst first)</h3><table><tr><th>class</th>"
                "<th>images</th><th>errors</th><th>accuracy</th></tr>")  # fmt: skip
    body.extend(
        f"<tr><td>{_esc(name)}</td><td class='num'>{int(r.n)}</td>"
        f"<td class='num'>{int(r.errors)}</td><td class='num'>{_pct(r.accuracy)}</td></tr>"
        for name, r in acc.iterrows()
    )
    body.append("</table>")

    def describe_for(name: str, rows: np.ndarray, obj: Any) -> Any:
        if descriptions is False:
            return None
        if isinstance(descriptions, Mapping) and name in descriptions:
            return descriptions[name]
        own = getattr(obj, "descriptions", None)
        if own:
            return own if not isinstance(own, Mapping) else list(own.values())
        if descriptions is None:
            return _auto_describe(analysis, rows)
        return None

    saved = _saved_slices(analysis, explorer)
    body.append("<h2>Saved slices</h2>")
    if not saved:
        body.append("<p class='muted'>No slices saved (save one from the Explorer's slice panel "
                    "or with <code>explorer.save_slice(name)</code>).</p>")  # fmt: skip
    for name, rows, created in saved:
        body.append(f"<div class='slice'><h3>{_esc(name)}</h3>")
        if created:
            body.append(f"<p class='muted'>saved {_esc(created)}</p>")
        if len(rows):
            body.append(_stats_table(_stats(analysis, rows)))
            body.append(_descriptions_html(describe_for(name, rows, None)))
            order = rows[np.argsort(-t["loss"].to_numpy()[rows], kind="stable")]
            body.append(_thumbs(analysis, order, thumbnails))
        body.append("</div>")

    if found:
        body.append("<h2>Discovered slices</h2>")
        body.append("<p class='muted'>Found automatically, in the order the method ranks them "
                    "(Domino's mixture: by how far predictions depart from labels; the others: most "
                    "errors first); thumbnails are the most typical members. Descriptions say where "
                    "they come from.</p>")  # fmt: skip
    for name, rows, method, obj in found:
        how = f" <span class='muted'>({_esc(method)})</span>" if method else ""
        body.append(f"<div class='slice'><h3>{_esc(name)}{how}</h3>")
        s = getattr(obj, "stats", None) or _stats(analysis, rows)
        body.append(_stats_table(s))
        body.append(_descriptions_html(describe_for(name, rows, obj)))
        body.append(_thumbs(analysis, rows, thumbnails))
        body.append("</div>")

    body.append(_feature_maps_html(feature_maps))
    doc = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'/>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\"/>"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(p for p in body if p)
        + "\n</body></html>\n"
    )
    from faultlens.store import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(doc, encoding="utf-8")
    return path
