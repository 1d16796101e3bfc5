"""Charts linked to an :class:`~faultlens.Explorer`: click a bar or a cell and the Explorer selects
those images; select on the map and the charts show the selection.

- :class:`PlotlyChart` — any plotly figure as a widget whose clicks reach Python reliably: they
  travel in their own trait (``clicked``), never through plotly's shared hover/click channel,
  where a hover right after a click can replace it (plotly ``FigureWidget``'s known weakness).
- :func:`class_accuracy_chart` — accuracy per class, the selection's beside it; click a class →
  select its images.
- :func:`confusion_chart` — the confusion matrix; click a cell → select the images with that label
  and that prediction.
- :func:`concept_chart` — error rate against similarity to a concept; click a bin → select its
  images.
- :func:`spurious_chart` — the spurious gap per class; click a class → select its top-k images by
  the feature's score (where the model leans on it).
- :func:`linked_charts` — the first two side by side, as one ipywidgets box.

They use the Explorer's public API only: ``explorer.analysis``, ``explorer.select(rows)``,
``explorer.selection`` and ``explorer.observe_selection(callback)``. The figures come from
:mod:`faultlens.render.plots`, the same ones the static report shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from faultlens.render import plots

_ESM = r"""// A plotly chart whose clicks reach Python through their own trait (`clicked`), never through
// the hover channel: plotly's FigureWidget sends hover, unhover, click and selection through one
// synced value, and a hover right after a click can replace the click before Python reads it.
// plotly.js comes from the Python package (the `_plotly_js` trait), loaded once per page.
// Colours follow the host's theme: where JupyterLab's --jp-* variables are defined, the figure's
// background, text, grid and axis lines take them (redrawn live when the theme switches).

function loadPlotly(source) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__faultlensPlotly) {
    window.__faultlensPlotly = new Promise((resolve, reject) => {
      // plotly.min.js is UMD: with an AMD loader on the page it would register there instead
      const amd = window.define;
      window.define = undefined;
      const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
      const script = document.createElement("script");
      script.src = url;
      script.onload = () => {
        window.define = amd;
        resolve(window.Plotly);
      };
      script.onerror = (err) => {
        window.define = amd;
        window.__faultlensPlotly = null;
        reject(err);
      };
      document.head.appendChild(script);
    });
  }
  return window.__faultlensPlotly;
}

function pointsOf(event) {
  return (event.points || []).map((p) => ({
    curve: p.curveNumber,
    index: Array.isArray(p.pointIndex) ? p.pointIndex : (p.pointIndex ?? p.pointNumber ?? null),
    customdata: p.customdata ?? null,
    x: typeof p.x === "number" || typeof p.x === "string" ? p.x : null,
    y: typeof p.y === "number" || typeof p.y === "string" ? p.y : null,
  }));
}

const INK = "__INK__";

/** The figure's layout in the page's theme: JupyterLab's colours where its variables exist. */
function themed(node, layout) {
  const cs = getComputedStyle(node);
  const v = (name) => cs.getPropertyValue(name).trim();
  const bg = v("--jp-layout-color0");
  if (!bg) return layout;  // not in JupyterLab: the figure's own (light) template
  const fg = v("--jp-ui-font-color1") || v("--jp-content-font-color1");
  const grid = v("--jp-border-color2") || v("--jp-layout-color3");
  const line = v("--jp-border-color1") || grid;
  const out = { ...layout, paper_bgcolor: bg, plot_bgcolor: bg, font: { ...(layout.font || {}), color: fg } };
  out.legend = { ...(layout.legend || {}), bgcolor: "rgba(0,0,0,0)" };
  for (const key of ["xaxis", "yaxis", ...Object.keys(layout).filter((k) => /^[xy]axis\d+$/.test(k))]) {
    out[key] = { ...(layout[key] || {}), gridcolor: grid, linecolor: line, zerolinecolor: line };
  }
  // whiskers and reference lines drawn in the light template's ink take the theme's text colour
  const ink = (o) => (o && o.color === INK ? { ...o, color: fg } : o);
  if (Array.isArray(layout.shapes)) out.shapes = layout.shapes.map((sh) => ({ ...sh, line: ink(sh.line) }));
  return out;
}

/** The traces with their whiskers in the theme's text colour (see `themed`). */
function themedData(node, data) {
  const fg = getComputedStyle(node).getPropertyValue("--jp-ui-font-color1").trim();
  if (!fg) return data;
  const ink = (o) => (o && o.color === INK ? { ...o, color: fg } : o);
  return data.map((tr) => ({ ...tr, error_x: ink(tr.error_x), error_y: ink(tr.error_y) }));
}

/** Calls `fn` when JupyterLab switches theme (the attributes it sets on <body>); returns a stop. */
function onThemeChange(fn) {
  const obs = new MutationObserver(fn);
  obs.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
  return () => obs.disconnect();
}

export default {
  async render({ model, el }) {
    el.classList.add("faultlens-chart");
    const div = document.createElement("div");
    el.appendChild(div);
    let Plotly;
    try {
      Plotly = await loadPlotly(model.get("_plotly_js"));
    } catch (err) {
      div.textContent = "faultlens: plotly.js could not be loaded in this page";
      return;
    }
    const draw = () => {
      const fig = model.get("figure") || {};
      Plotly.react(div, themedData(el, fig.data || []), themed(el, fig.layout || {}), {
        displaylogo: false,
        responsive: true,
      });
    };
    draw();
    div.on("plotly_click", (event) => {
      // the last clicks travel together, so one that waits behind a busy kernel and is then
      // replaced by the next still reaches Python (in order, each once: by `seq`)
      const prev = model.get("clicked") || {};
      const seq = (prev.seq || 0) + 1;
      const points = pointsOf(event);
      const log = [...(prev.log || []), { seq, points }].slice(-32);
      model.set("clicked", { seq, points, log });
      model.save_changes();
    });
    model.on("change:figure", draw);
    // the stylesheet of a new theme applies a moment after the attributes change
    const offTheme = onThemeChange(() => requestAnimationFrame(draw));
    return () => {
      offTheme();
      model.off("change:figure", draw);
      Plotly.purge(div);
    };
  },
};
"""


@cache
def _plotly_js() -> str:
    """plotly.js from the installed plotly package (offline; the same version as its figures)."""
    import plotly

    return (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text(
        encoding="utf-8"
    )


class PlotlyChart(anywidget.AnyWidget):
    """A plotly figure as a widget; ``on_click(callback)`` hears every click.

    Parameters
    ----------
    figure:
        A ``plotly.graph_objects.Figure`` (or its dict). Assign :attr:`figure` a new one (via
        :meth:`show`) to redraw.
    """

    _esm = _ESM.replace("__INK__", plots.INK)
    figure = t.Dict(help="The figure as plotly JSON ({'data': [...], 'layout': {...}}).").tag(
        sync=True
    )
    clicked = t.Dict(
        help="Written by the browser on each click: {'seq': n, 'points': [{'curve', 'index', "
        "'customdata', 'x', 'y'}], 'log': the last 32 clicks as {'seq', 'points'}}."
    ).tag(sync=True)
    _plotly_js = t.Unicode(help="plotly.js, loaded once per page.").tag(sync=True)

    def __init__(self, figure: Any, **kwargs: Any) -> None:
        super().__init__(_plotly_js=_plotly_js(), **kwargs)
        self._click_callbacks: list[Callable[[list[dict[str, Any]]], Any]] = []
        self._seen_seq = 0
        self.click_errors: list[BaseException] = []
        self.observe(self._on_clicked, names=["clicked"])
        self.show(figure)

    def show(self, figure: Any) -> None:
        """Draw ``figure`` (a plotly Figure or its dict) in place of the current one."""
        if hasattr(figure, "to_json"):
            self.figure = json.loads(figure.to_json())
        elif isinstance(figure, dict):
            self.figure = json.loads(json.dumps(figure, default=_jsonable))
        else:
            msg = f"expected a plotly Figure or its dict, got {type(figure).__name__}"
            raise TypeError(msg)

    def on_click(self, callback: Callable[[list[dict[str, Any]]], Any]) -> Callable[[], None]:
        """Call ``callback(points)`` on every click; returns a function that removes it. An error
        in the callback is kept in :attr:`click_errors` (a widget callback's errors are otherwise
        lost)."""
        self._click_callbacks.append(callback)

        def remove() -> None:
            if callback in self._click_callbacks:
                self._click_callbacks.remove(callback)

        return remove

    def _on_clicked(self, change: dict[str, Any]) -> None:
        new = change["new"] or {}
        log = new.get("log") or [{"seq": new.get("seq", 0), "points": new.get("points") or []}]
        for entry in sorted(log, key=lambda e: int(e.get("seq") or 0)):
            seq = int(entry.get("seq") or 0)
            if seq and seq <= self._seen_seq:
                continue  # already handled (it came again with a later click)
            self._seen_seq = max(self._seen_seq, seq)
            for cb in list(self._click_callbacks):
                try:
                    cb(entry.get("points") or [])
                except Exception as exc:  # shown to the user through click_errors
                    self.click_errors.append(exc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    msg = f"{type(value).__name__} is not JSON serialisable"
    raise TypeError(msg)


def _first_custom(points: list[dict[str, Any]]) -> list[Any] | None:
    for p in points:
        if p.get("customdata") is not None:
            c = p["customdata"]
            return c if isinstance(c, list) else [c]
    return None


def _table_arrays(explorer: Any) -> tuple[np.ndarray, np.ndarray]:
    table = explorer.analysis.table
    return table["label"].to_numpy(dtype=np.int64), table["pred"].to_numpy(dtype=np.int64)


def class_accuracy_chart(explorer: Any, *, class_names: Sequence[str] | None = None) -> PlotlyChart:
    """Accuracy per class, with the Explorer's selection beside it (redrawn on every selection);
    a click on a class's bar selects that class's images in the Explorer."""
    analysis = explorer.analysis
    labels, _ = _table_arrays(explorer)

    def figure() -> Any:
        sel = np.asarray(explorer.selection, dtype=np.int64)
        return plots.class_accuracy(
            analysis, class_names=class_names, rows=sel if len(sel) else None
        )

    chart = PlotlyChart(figure())

    def clicked(points: list[dict[str, Any]]) -> None:
        custom = _first_custom(points)
        if custom is not None:
            explorer.select(np.flatnonzero(labels == int(custom[0])))

    chart.on_click(clicked)
    chart._unlink = explorer.observe_selection(lambda _sel: chart.show(figure()))
    return chart


def confusion_chart(explorer: Any, *, class_names: Sequence[str] | None = None) -> PlotlyChart:
    """The confusion matrix of all images; a click on cell (label i, prediction j) selects
    exactly those images in the Explorer."""
    labels, preds = _table_arrays(explorer)
    chart = PlotlyChart(plots.confusion_matrix(explorer.analysis, class_names=class_names))

    def clicked(points: list[dict[str, Any]]) -> None:
        custom = _first_custom(points)
        if custom is not None:
            i, j = int(custom[0]), int(custom[1])
            explorer.select(np.flatnonzero((labels == i) & (preds == j)))

    chart.on_click(clicked)
    return chart


def concept_chart(
    explorer: Any, similarity: np.ndarray, *, concept: str = "the concept", bins: int = 10
) -> PlotlyChart:
    """Error rate against ``similarity`` (one value per row of the analysis, e.g. image–text
    similarity to a concept); a click on a bin selects the images in it."""
    from faultlens.analysis.describe import concept_test

    table = explorer.analysis.table
    s = np.asarray(similarity, dtype=np.float64)
    if s.shape != (len(table),):
        msg = f"similarity needs one value per row ({len(table)}), got shape {s.shape}"
        raise ValueError(msg)
    errors = ~table["correct"].to_numpy(dtype=bool)
    result = concept_test(s, errors, bins=bins)
    chart = PlotlyChart(plots.concept_curve(result, concept=concept))
    bin_table = result["table"]
    bin_table = bin_table[bin_table["n"] > 0].reset_index(drop=True)
    last = float(bin_table["high"].max()) if len(bin_table) else np.inf

    def clicked(points: list[dict[str, Any]]) -> None:
        if not points or points[0].get("index") is None:
            return
        row = bin_table.iloc[int(points[0]["index"])]
        lo, hi = float(row["low"]), float(row["high"])
        inside = (s >= lo) & ((s < hi) | ((hi >= last) & (s <= hi)))
        explorer.select(np.flatnonzero(inside))

    chart.on_click(clicked)
    return chart


def spurious_chart(
    explorer: Any,
    score: np.ndarray,
    *,
    k: int = 50,
    class_names: Sequence[str] | None = None,
) -> PlotlyChart:
    """The spurious gap per class of a feature's ``score`` (one value per row, e.g. its pooled
    activation); a click on a class selects that class's ``k`` highest-scoring images."""
    import warnings

    from faultlens.analysis.spurious import SpuriousWarning, spurious_gap

    table = explorer.analysis.table
    sc = np.asarray(score, dtype=np.float64)
    if sc.shape != (len(table),):
        msg = f"score needs one value per row ({len(table)}), got shape {sc.shape}"
        raise ValueError(msg)
    labels = table["label"].to_numpy(dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpuriousWarning)
        gap = spurious_gap(sc, table["correct"].to_numpy(dtype=bool), labels, k)
    names = class_names if class_names is not None else explorer.analysis.class_names
    chart = PlotlyChart(plots.spurious_gap(gap, class_names=names))

    def clicked(points: list[dict[str, Any]]) -> None:
        custom = _first_custom(points)
        if custom is None:
            return
        c, kk = int(custom[0]), int(custom[1])
        members = np.flatnonzero((labels == c) & np.isfinite(sc))
        top = members[np.argsort(sc[members], kind="stable")][-kk:]
        explorer.select(np.sort(top))

    chart.on_click(clicked)
    return chart


def linked_charts(explorer: Any, *, class_names: Sequence[str] | None = None) -> Any:
    """Accuracy per class and the confusion matrix side by side, both linked to ``explorer``."""
    import ipywidgets as w

    return w.HBox(
        [
            class_accuracy_chart(explorer, class_names=class_names),
            confusion_chart(explorer, class_names=class_names),
        ],
        layout=w.Layout(flex_flow="row wrap", gap="12px"),
    )
