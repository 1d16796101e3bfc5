"""A static, self-contained HTML report of an analysis: one file to mail, attach to an issue or
archive beside a model.

:func:`write_report` writes ONE ``.html`` file: inline CSS, every image a base64 PNG ``data:`` URI, no
network request. It holds the map (coloured by correctness, drawn as the Explorer's
static image is), the overall statistics and per-class accuracy, charts (accuracy per class with its
intervals, the confusion matrix, and any plotly figures you add, e.g. the spurious gap or a
mitigation's before/after from :mod:`faultlens.render.plots`), the slices saved from the Explorer
(``<analysis folder>/slices.json``) and the discovered slices with their statistics, descriptions
(the one-sentence summary on top, then each describer's terms labelled with its source, and the
pictures of where the model looks: the members' and the reference's mean maps and their
difference) and thumbnails, and any activation maps you pass. Every string that comes from data
(class names, slice names, ids, descriptions) is escaped with :func:`faultlens.render.html.esc` (in the charts, by
:mod:`faultlens.render.plots`).

The charts are PNG images when plotly can export them (``kaleido`` installed): the file then holds
no script at all. Without kaleido they are interactive plotly charts with plotly.js inlined once
(about 4.6 MB more; still no network); the page's Content-Security-Policy then allows inline
scripts and nothing else more.

The report draws on :mod:`faultlens.render` and the saved slices' store; it never builds a widget.
"""

from __future__ import annotations

import html
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faultlens._version import __version__
from faultlens.analysis.record_views import SavedSlices
from faultlens.render import plots
from faultlens.render.colors import encode_color
from faultlens.render.html import descriptions_html, esc, image_uri, pct, stats_table, thumbs_html
from faultlens.render.mapimage import render_map_png
from faultlens.store import atomic_path

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
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.chart{max-width:100%}
.summary{font-weight:600;margin:.4em 0}.evidence{display:flex;flex-wrap:wrap;gap:10px}
.evidence figure{margin:0;width:168px;font-size:.75em;color:#444}
.evidence img{border:1px solid #ddd}
"""


def _stats(analysis: Any, rows: np.ndarray) -> dict[str, Any]:
    from faultlens.analysis.slices import slice_stats

    t = analysis.table
    return slice_stats(
        np.asarray(rows, dtype=np.intp),
        t["correct"].to_numpy(dtype=bool),
        t["label"].to_numpy(dtype=np.int64),
        [str(c) for c in analysis.class_names],
    )


def _auto_describe(analysis: Any, rows: np.ndarray) -> Any:
    """Offline descriptions (ImageNet tags) when the analysis has the offline model's logits."""
    if "imagenet_logits" not in getattr(analysis, "arrays", {}) or len(rows) == 0:
        return None
    try:
        return analysis.describe(rows)
    except Exception as exc:  # a description failing must not lose the report
        return ([], [f"descriptions unavailable: {type(exc).__name__}: {exc}"])


def _saved_slices(analysis: Any) -> list[tuple[str, np.ndarray, str]]:
    """``(name, rows, created)`` of each saved slice; a slice that cannot be read gets no rows and
    says why instead of its date."""
    saved = SavedSlices(analysis)
    out = []
    for entry in saved.listing():
        name = str(entry["name"])
        try:
            rows = saved.rows(name).astype(np.intp)
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
                f"<figure><img src='{image_uri(img, size=80)}' alt='{esc(cap)}'/>"
                f"<figcaption>{esc(cap)}</figcaption></figure>"
            )
        parts.append(f"<h3>{esc(title)}</h3><div class='thumbs'>{''.join(figs)}</div>")
    return "\n".join(parts)


def _map_png(analysis: Any, color_by: str) -> bytes:
    """The map coloured by ``color_by``: the Explorer's static image (nothing filtered or
    selected)."""
    t = analysis.table
    if color_by not in t.columns:
        msg = f"cannot colour the report's map by {color_by!r}: it is not a column of the table"
        raise ValueError(msg)
    with np.errstate(over="ignore"):
        x, y = (t[c].to_numpy(dtype=np.float32, na_value=np.nan) if c in t.columns else None
                for c in ("x", "y"))  # fmt: skip
    if x is None or y is None or not (np.isfinite(x) & np.isfinite(y)).any():
        msg = "this analysis has no 2-D map (no finite 'x'/'y'): make it with faultlens.analyze()"
        raise ValueError(msg)
    codes, legend = encode_color(t, color_by, [str(c) for c in analysis.class_names])
    return render_map_png(x, y, codes, legend, title=color_by, width=900, height=560)


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
    charts: str | bool = "auto",
    figures: Sequence[Any] = (),
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
    charts:
        ``"auto"`` (default): PNG images with kaleido, else interactive; ``"png"`` (an error
        without kaleido), ``"html"`` (interactive plotly, plotly.js inlined once) or ``False``
        (none).
    figures:
        More plotly figures for the charts section, after accuracy per class and the confusion
        matrix: e.g. ``faultlens.render.plots.spurious_gap(gap)``, ``plots.mitigation(result)``,
        ``plots.concept_curve(test, concept="snow")``.
    """
    path = Path(path)
    found = _as_slices(slices, len(analysis.table))  # checked before any work
    mode = _chart_mode(charts)
    map_png = _map_png(analysis, color_by)
    chart_html, scripts = _charts_section(analysis, mode, figures)

    def describe_for(name: str, rows: np.ndarray, obj: Any) -> Any:
        if descriptions is False:
            return None
        if isinstance(descriptions, Mapping) and name in descriptions:
            return descriptions[name]
        own = getattr(obj, "descriptions", None)
        if own:  # a list, or the {"items", "notes"} the Explorer's slice panel keeps
            return own
        if descriptions is None:
            return _auto_describe(analysis, rows)
        return None

    body = [
        *_overview(analysis, title, map_png, color_by),
        *chart_html,
        *_saved_section(analysis, describe_for, thumbnails),
        *_discovered_section(analysis, found, describe_for, thumbnails),
        _feature_maps_html(feature_maps),
    ]
    doc = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'/>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        f"img-src data:; style-src 'unsafe-inline'{SCRIPT_CSP if scripts else ''}\"/>"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(p for p in body if p)
        + "\n</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(doc, encoding="utf-8")
    return path


#: What the page's Content-Security-Policy adds for interactive charts: their inline scripts.
SCRIPT_CSP = "; script-src 'unsafe-inline'"


def _chart_mode(charts: str | bool) -> str:
    if charts is False or charts == "none":
        return "none"
    if charts is True or charts == "auto":
        return "png" if plots.has_kaleido() else "html"
    if charts not in ("png", "html"):
        msg = f"charts={charts!r}: choose 'auto', 'png', 'html' or False"
        raise ValueError(msg)
    if charts == "png" and not plots.has_kaleido():
        msg = (
            "charts='png' needs kaleido to draw the charts: pip install kaleido (or charts='html')"
        )
        raise ValueError(msg)
    return charts


def _charts_section(analysis: Any, mode: str, figures: Sequence[Any]) -> tuple[list[str], bool]:
    """The charts as ``<img>`` PNGs (``mode="png"``) or offline plotly (``"html"``); and whether
    the page runs scripts."""
    if mode == "none":
        return [], False
    figs = [plots.class_accuracy(analysis), plots.confusion_matrix(analysis), *figures]
    for i, fig in enumerate(figs):
        if not hasattr(fig, "to_plotly_json"):
            msg = f"figures[{i - 2}] is a {type(fig).__name__}, not a plotly figure"
            raise TypeError(msg)
    body = ["<h2>Charts</h2>", "<div class='charts'>"]
    if mode == "png":
        for fig in figs:
            title = html.unescape(str(fig.layout.title.text or "chart"))
            body.append(
                f"<img class='chart' alt='{esc(title)}' src='{image_uri(plots.to_png(fig))}'/>"
            )
    else:
        body.append(plots.figures_html(figs, full_html=False))
    body.append("</div>")
    return body, mode == "html"


def _overview(analysis: Any, title: str, map_png: bytes, color_by: str) -> list[str]:
    """The title, accuracy with the error rate's CI, the map and the accuracy per class."""
    t = analysis.table
    n = len(t)
    names = [str(c) for c in analysis.class_names]
    correct = t["correct"].to_numpy(dtype=bool)
    overall = _stats(analysis, np.arange(n))
    body = [
        f"<h1>{esc(title)}</h1>",
        f"<p class='muted'>{n} images, {len(names)} classes; made "
        f"{esc(time.strftime('%Y-%m-%d %H:%M'))} with faultlens {esc(__version__)}.</p>",
        "<h2>Overview</h2>",
        f"<p>Accuracy <b>{pct(correct.mean() if n else math.nan)}</b> "
        f"({int((~correct).sum())} errors of {n}; 95% CI of the error rate "
        f"{pct(overall['ci_low'])}–{pct(overall['ci_high'])}).</p>",
        f"<img class='map' id='map' alt='map of the images coloured by {esc(color_by)}' "
        f"src='{image_uri(map_png)}'/>",
        "<p class='muted'>Map: the images' embeddings projected to 2-D; similar images lie close "
        "together. Colour: whether the classifier got each image right.</p>",
    ]
    acc = analysis.group_accuracy("label_name").sort_values("accuracy")
    body.append("<h3>Accuracy per class (worst first)</h3><table><tr><th>class</th>"
                "<th>images</th><th>errors</th><th>accuracy</th></tr>")  # fmt: skip
    body.extend(
        f"<tr><td>{esc(name)}</td><td class='num'>{int(r.n)}</td>"
        f"<td class='num'>{int(r.errors)}</td><td class='num'>{pct(r.accuracy)}</td></tr>"
        for name, r in acc.iterrows()
    )
    body.append("</table>")
    return body


def _saved_section(analysis: Any, describe_for: Any, thumbnails: int) -> list[str]:
    """The saved slices: statistics, descriptions and the highest-loss members of each."""
    saved = _saved_slices(analysis)
    body = ["<h2>Saved slices</h2>"]
    if not saved:
        body.append("<p class='muted'>No slices saved (save one from the Explorer's slice panel "
                    "or with <code>explorer.save_slice(name)</code>).</p>")  # fmt: skip
    loss = analysis.table["loss"].to_numpy()
    for name, rows, created in saved:
        body.append(f"<div class='slice'><h3>{esc(name)}</h3>")
        if created:
            body.append(f"<p class='muted'>saved {esc(created)}</p>")
        if len(rows):
            body.append(stats_table(_stats(analysis, rows)))
            body.append(descriptions_html(describe_for(name, rows, None)))
            order = rows[np.argsort(-loss[rows], kind="stable")]
            body.append(thumbs_html(analysis, order, thumbnails))
        body.append("</div>")
    return body


def _discovered_section(
    analysis: Any, found: list[tuple[str, np.ndarray, str, Any]], describe_for: Any,
    thumbnails: int,
) -> list[str]:  # fmt: skip
    """The discovered slices in the method's order: statistics, descriptions, typical members."""
    if not found:
        return []
    body = [
        "<h2>Discovered slices</h2>",
        "<p class='muted'>Found automatically, in the order the method ranks them (Domino's "
        "mixture: by how far predictions depart from labels; the others: most errors first); "
        "thumbnails are the most typical members. Descriptions say where they come from.</p>",
    ]
    for name, rows, method, obj in found:
        how = f" <span class='muted'>({esc(method)})</span>" if method else ""
        body.append(f"<div class='slice'><h3>{esc(name)}{how}</h3>")
        body.append(stats_table(getattr(obj, "stats", None) or _stats(analysis, rows)))
        body.append(descriptions_html(describe_for(name, rows, obj)))
        body.append(thumbs_html(analysis, rows, thumbnails))
        body.append("</div>")
    return body
