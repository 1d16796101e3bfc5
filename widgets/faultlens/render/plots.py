"""Static plotly figures of an analysis, for reports and notebooks (no widget needed).

Each function returns a ``plotly.graph_objects.Figure``:

- :func:`class_accuracy` — accuracy per class with 95 % Wilson intervals (optionally, the same for
  a selection of rows beside it);
- :func:`confusion_matrix` — label × prediction counts, coloured by the share of each label's row;
- :func:`concept_curve` — error rate against similarity to a concept, per bin with its interval
  (what :func:`faultlens.analysis.describe.concept_test` returns);
- :func:`spurious_gap` — per class, accuracy of the images a feature fires on most minus least,
  with its 95 % interval (:func:`faultlens.analysis.spurious.spurious_gap`);
- :func:`mitigation` — before / after a head retraining, per metric
  (:class:`faultlens.analysis.mitigation.MitigationResult`).

Output: :func:`figures_html` writes one offline HTML page or fragment with plotly.js inlined once
(no network needed to view it); :func:`to_png` gives PNG bytes when kaleido is installed, else
``None`` (the report then uses the HTML). The ``customdata`` of the class and confusion traces
carries the class indices a click refers to; :mod:`faultlens.ui.plots` turns a click into rows.
"""

from __future__ import annotations

import html
import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from faultlens._checks import row_indices
from faultlens.analysis.stats import wilson_interval

#: Colours: correct / accuracy (blue), errors / selection (orange), the same pair as the map.
BLUE = "#3b6fb6"
ORANGE = "#e07b00"
GREY = "#8c8c8c"
#: Interval whiskers and reference lines: dark on the light template; the chart widget redraws
#: this colour in the theme's text colour (``faultlens.ui.plots``), so it stays visible in Dark.
INK = "#444444"
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"


def _tilt(names: Sequence[str]) -> int:
    """Tick label angle: tilted when the labels would run into each other."""
    return -30 if sum(len(n) for n in names) > 36 or len(names) > 6 else 0


def _layout(fig: go.Figure, title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        title={"text": html.escape(title), "x": 0.01, "font": {"size": 15}},
        template="plotly_white",
        font={"family": FONT, "size": 12},
        margin={"l": 60, "r": 20, "t": 50, "b": 60},
        **kwargs,
    )
    return fig


def _table(analysis: Any) -> pd.DataFrame:
    table = analysis.table if hasattr(analysis, "table") else analysis
    if not isinstance(table, pd.DataFrame):
        msg = f"expected an Analysis or its table (a DataFrame), got {type(analysis).__name__}"
        raise TypeError(msg)
    missing = [c for c in ("label", "pred") if c not in table.columns]
    if missing:
        msg = f"the table has no column(s) {missing}: it needs integer 'label' and 'pred'"
        raise ValueError(msg)
    return table


def _names(analysis: Any, class_names: Sequence[str] | None, n: int) -> list[str]:
    names = class_names if class_names is not None else getattr(analysis, "class_names", None)
    # plotly reads labels as a small HTML subset (links included): escape, it shows the text
    names = (
        [html.escape(str(c)) for c in names] if names is not None else [str(i) for i in range(n)]
    )
    if len(names) < n:
        msg = f"{len(names)} class names for {n} classes"
        raise ValueError(msg)
    return names


def _classes(
    analysis: Any, class_names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The table's labels and predictions (int64) and a name for every class either mentions."""
    table = _table(analysis)
    labels = table["label"].to_numpy(dtype=np.int64)
    preds = table["pred"].to_numpy(dtype=np.int64)
    n_classes = max(int(labels.max(initial=-1)), int(preds.max(initial=-1))) + 1
    return labels, preds, _names(analysis, class_names, n_classes)


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> pd.DataFrame:
    """Per class: ``n``, ``correct``, ``accuracy`` and its 95 % Wilson ``ci_low``/``ci_high``."""
    labels = np.asarray(labels, dtype=np.int64)
    ok = labels == np.asarray(preds, dtype=np.int64)
    n = np.bincount(labels, minlength=n_classes)
    k = np.bincount(labels, weights=ok, minlength=n_classes).astype(np.int64)
    ci = [wilson_interval(int(ki), int(ni)) for ki, ni in zip(k, n, strict=True)]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    return pd.DataFrame(
        {
            "class": np.arange(n_classes),
            "n": n,
            "correct": k,
            "accuracy": acc,
            "ci_low": [c[0] for c in ci],
            "ci_high": [c[1] for c in ci],
        }
    )


def _acc_trace(stats: pd.DataFrame, names: list[str], label: str, color: str) -> go.Bar:
    acc = stats["accuracy"].to_numpy(dtype=float)
    return go.Bar(
        x=names,
        y=100 * acc,
        name=label,
        marker_color=color,
        customdata=np.stack([stats["class"], stats["n"], stats["correct"]], axis=1).tolist(),
        error_y={
            "type": "data",
            "symmetric": False,
            "array": 100 * (stats["ci_high"].to_numpy(dtype=float) - acc),
            "arrayminus": 100 * (acc - stats["ci_low"].to_numpy(dtype=float)),
            "color": INK,
            "thickness": 1,
        },
        hovertemplate="%{x}: %{y:.1f} % correct (%{customdata[2]} of %{customdata[1]})"
        "<extra>" + html.escape(label) + "</extra>",
    )


def class_accuracy(
    analysis: Any,
    *,
    class_names: Sequence[str] | None = None,
    rows: Any = None,
    title: str = "Accuracy per class",
) -> go.Figure:
    """Accuracy per class (bars, %) with 95 % Wilson intervals; with ``rows`` (a selection), the
    selection's accuracy per class beside it. ``customdata[0]`` of each bar is the class index."""
    labels, preds, names = _classes(analysis, class_names)
    n_classes = len(names)
    fig = go.Figure(
        _acc_trace(per_class_accuracy(labels, preds, n_classes), names, "all images", BLUE)
    )
    if rows is not None:
        r = row_indices(rows, len(labels))
        sel = per_class_accuracy(labels[r], preds[r], n_classes)
        fig.add_trace(_acc_trace(sel, names, f"selection ({len(r)})", ORANGE))
    return _layout(
        fig,
        title,
        barmode="group",
        yaxis={"title": "accuracy (%)", "range": [0, 105]},
        xaxis={"title": "class (the given label)", "tickangle": _tilt(names)},
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
        width=min(1000, max(440, 90 * n_classes + 180)),
        height=400,
    )


def confusion_counts(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = label, column = prediction."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return m


def confusion_matrix(
    analysis: Any,
    *,
    class_names: Sequence[str] | None = None,
    rows: Any = None,
    title: str = "Confusion matrix",
) -> go.Figure:
    """Counts of each (label, prediction) pair; colour = the count's share of its label's row, so
    a small class's confusions show as clearly as a large one's. With ``rows``, only those rows
    are counted. ``customdata`` of cell (i, j) is ``[i, j, count]``."""
    labels, preds, names = _classes(analysis, class_names)
    n_classes = len(names)
    if rows is not None:
        r = row_indices(rows, len(labels))
        labels, preds = labels[r], preds[r]
    counts = confusion_counts(labels, preds, n_classes)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ii, jj = np.meshgrid(np.arange(n_classes), np.arange(n_classes), indexing="ij")
    custom = np.stack([ii, jj, counts], axis=-1)
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=names,
            y=names,
            customdata=custom.tolist(),
            text=counts,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            xgap=1,
            ygap=1,
            colorbar={"title": {"text": "share of<br>the label"}, "tickformat": ".0%"},
            hovertemplate="label %{y}, predicted %{x}: %{customdata[2]} images "
            "(%{z:.1%} of the label)<extra></extra>",
        )
    )
    side = max(380, 56 * n_classes + 160)
    return _layout(
        fig,
        title,
        xaxis={"title": "predicted", "side": "bottom", "tickangle": _tilt(names)},
        yaxis={"title": "label", "autorange": "reversed"},
        height=side,
        width=side + 120,
    )


def concept_curve(
    result: Mapping[str, Any], *, concept: str = "the concept", title: str | None = None
) -> go.Figure:
    """Error rate (%) per similarity bin with its 95 % Wilson interval, from
    :func:`~faultlens.analysis.describe.concept_test`'s result (its ``table`` and ``spearman``)."""
    table = result["table"] if isinstance(result, Mapping) else result
    need = {"low", "high", "n", "error_rate", "ci_low", "ci_high"}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        msg = f"concept_curve needs concept_test's result: a table with columns {sorted(need)}"
        raise ValueError(msg)
    t = table[table["n"] > 0]
    mid = (t["low"].to_numpy(dtype=float) + t["high"].to_numpy(dtype=float)) / 2
    rate = 100 * t["error_rate"].to_numpy(dtype=float)
    fig = go.Figure(
        go.Scatter(
            x=mid,
            y=rate,
            mode="lines+markers",
            line={"color": ORANGE},
            marker={"size": 8},
            customdata=np.stack([t["low"], t["high"], t["n"]], axis=1).tolist(),
            error_y={
                "type": "data",
                "symmetric": False,
                "array": 100 * t["ci_high"].to_numpy(dtype=float) - rate,
                "arrayminus": rate - 100 * t["ci_low"].to_numpy(dtype=float),
                "color": ORANGE,
                "thickness": 1,
            },
            name="error rate",
            hovertemplate="similarity %{customdata[0]:.3f}–%{customdata[1]:.3f}: "
            "%{y:.1f} % errors (n=%{customdata[2]})<extra></extra>",
        )
    )
    rho = result.get("spearman") if isinstance(result, Mapping) else None
    sub = f" (Spearman ρ = {rho:.2f})" if rho is not None and np.isfinite(rho) else ""
    return _layout(
        fig,
        title or f"Error rate vs similarity to {concept}{sub}",
        xaxis={"title": f"similarity to {html.escape(concept)} (bin middle)"},
        yaxis={"title": "error rate (%)", "rangemode": "tozero"},
        showlegend=False,
    )


def spurious_gap(
    gap: Any, *, class_names: Sequence[str] | None = None, title: str = "Spurious gap per class"
) -> go.Figure:
    """Per class: accuracy of the top-k minus the bottom-k images by a feature's activation, in
    points, with its 95 % interval (a :class:`~faultlens.analysis.spurious.SpuriousGap` or its
    ``table``). A bar whose interval stays above 0 means the class is right more often when the
    feature fires: the model leans on it."""
    t = getattr(gap, "table", gap)
    need = {"class", "gap", "ci_low", "ci_high", "k"}
    if not isinstance(t, pd.DataFrame) or not need <= set(t.columns):
        msg = f"spurious_gap needs a SpuriousGap or a table with columns {sorted(need)}"
        raise ValueError(msg)
    cls = t["class"].to_numpy(dtype=np.int64)
    names = (
        [html.escape(str(class_names[c])) for c in cls]
        if class_names is not None
        else [str(c) for c in cls]
    )
    g = t["gap"].to_numpy(dtype=float)
    fig = go.Figure(
        go.Bar(
            x=names,
            y=g,
            marker_color=[ORANGE if lo > 0 else GREY for lo in t["ci_low"]],
            customdata=np.stack([cls, t["k"], t["ci_low"], t["ci_high"]], axis=1).tolist(),
            error_y={
                "type": "data",
                "symmetric": False,
                "array": t["ci_high"].to_numpy(dtype=float) - g,
                "arrayminus": g - t["ci_low"].to_numpy(dtype=float),
                "color": INK,
                "thickness": 1,
            },
            hovertemplate="%{x}: %{y:.1f} points (95 % interval %{customdata[2]:.1f} to "
            "%{customdata[3]:.1f}; k=%{customdata[1]})<extra></extra>",
        )
    )
    fig.add_hline(y=0, line_color=INK, line_width=1)
    return _layout(
        fig,
        title,
        yaxis={"title": "accuracy top-k − bottom-k (points)"},
        xaxis={"title": "class", "tickangle": _tilt(names)},
        showlegend=False,
    )


def mitigation(result: Any, *, title: str = "Before and after the head retraining") -> go.Figure:
    """Before / after per metric of a :class:`~faultlens.analysis.mitigation.MitigationResult`
    (or its ``summary``): accuracies (%) on the left, spurious gaps (points) on the right."""
    s = getattr(result, "summary", result)
    need = {"metric", "before", "after"}
    if not isinstance(s, pd.DataFrame) or not need <= set(s.columns):
        msg = f"mitigation needs a MitigationResult or a summary with columns {sorted(need)}"
        raise ValueError(msg)
    is_gap = s["metric"].str.contains("(points)", regex=False).to_numpy()
    parts = [("accuracy (%)", s[~is_gap]), ("spurious gap (points)", s[is_gap])]
    parts = [(name, part) for name, part in parts if len(part)]
    fig = make_subplots(
        rows=1,
        cols=len(parts),
        subplot_titles=[p[0] for p in parts],
        horizontal_spacing=0.35 if len(parts) > 1 else 0.1,
    )
    for col, (_, part) in enumerate(parts, start=1):
        names = [
            html.escape(str(m).replace(" (%)", "").replace(" (points)", "")) for m in part["metric"]
        ]
        for when, color in (("before", GREY), ("after", BLUE)):
            fig.add_trace(
                go.Bar(
                    y=names,
                    x=part[when].to_numpy(dtype=float),
                    orientation="h",
                    name=when,
                    marker_color=color,
                    legendgroup=when,
                    showlegend=col == 1,
                    hovertemplate="%{y}: %{x:.1f} (" + when + ")<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    return _layout(
        fig,
        title,
        barmode="group",
        height=max(300, 60 + 46 * int(max(len(p) for _, p in parts))),
        legend={"orientation": "h", "y": 1.15, "x": 1, "xanchor": "right"},
    )


# --------------------------------------------------------------------------- output


def figures_html(
    figures: Sequence[go.Figure],
    path: str | os.PathLike[str] | None = None,
    *,
    full_html: bool = True,
    include_plotlyjs: bool = True,
) -> str:
    """The figures as HTML that needs no network: plotly.js inlined once (before the first
    figure; ``include_plotlyjs=False`` when the page already has it), each figure in its own
    ``<div>``. ``full_html=False`` gives a fragment to embed in a page. Written to ``path`` too
    when given (UTF-8)."""
    parts = []
    for i, fig in enumerate(figures):
        parts.append(
            fig.to_html(
                full_html=False,
                include_plotlyjs=include_plotlyjs and i == 0,
                config={"displaylogo": False, "responsive": True},
            )
        )
    body = "\n".join(parts)
    out = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>faultlens charts</title>"
        f"</head><body>\n{body}\n</body></html>\n"
        if full_html
        else body
    )
    if path is not None:
        Path(path).write_text(out, encoding="utf-8")
    return out


def has_kaleido() -> bool:
    """Whether plotly can export images here (the ``kaleido`` package is installed)."""
    return importlib.util.find_spec("kaleido") is not None


def to_png(fig: go.Figure, *, scale: float = 2.0) -> bytes | None:
    """PNG bytes of ``fig`` through kaleido, or ``None`` when kaleido is not installed (use
    :func:`figures_html` then)."""
    if not has_kaleido():
        return None
    return fig.to_image(format="png", scale=scale)
