"""The Explorer: one anywidget with a 2-D map, filters, lasso/box selection, an image grid of the
selection, live statistics, saved slices and discovered slices.

Data flow
---------
Python sends the map once as binary traits (``_x``, ``_y`` float32, ``_color`` uint8 code,
``_visible`` uint8 filter mask: 10 bytes per point). The front end draws it into a canvas
``ImageData`` buffer and, on a lasso or box, sends the selected row indices as one uint32 buffer
in a ``select`` message — a message, not a trait update, because ipywidgets merges the trait
updates a view makes while the kernel is busy, and Python must see every selection. Python applies
each in order: it writes ``_selection`` (uint32 bytes), ``_selection_source`` and an incremented
``_selection_counter`` for every view, exposes the rows as the typed ``selection`` trait and
answers with ``stats`` and ``_grid`` (the page of tiles); thumbnails and the inspector image are
pulled by the front end with custom messages and returned as JPEG/PNG buffers (read from the
analysis's pre-rendered thumbnail store, else rendered; LRU-cached). Commands from the front end
(``select``, ``thumbs``, ``inspect``, ``slice``, ``select_slice``, ``describe``, ``find_slices``)
are messages handled by one dispatcher.

The widget only syncs, wires and validates: colours, the static map image and HTML come from
:mod:`faultlens.render`, statistics from :mod:`faultlens.analysis.stats`; the selection, saved and
discovered slices and descriptions, text search and the map's zoom are the mixins
``SelectionSync``, ``SlicePanel``, ``TextSearch`` and ``MapViewport``. Every statistic is computed
on the full data in Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import pandas as pd
import traitlets as t

from faultlens.analysis.stats import selection_stats
from faultlens.render.colors import SLICE_COLOR, encode_color, encode_slices
from faultlens.render.html import explorer_html
from faultlens.render.mapimage import render_map_png
from faultlens.ui.images import ImageServer
from faultlens.ui.kernel import warn_kernel_fault
from faultlens.ui.rows import coerce_rows, page_of
from faultlens.ui.search import TextSearch
from faultlens.ui.selection import SelectionSync
from faultlens.ui.slice_panel import SlicePanel
from faultlens.ui.state import (
    check_analysis,
    class_indices,
    column_options,
    grid_tile,
    map_notes,
    read_columns,
)
from faultlens.ui.static_copy import with_static_copy
from faultlens.ui.traits import (
    Binary,
    Choice,
    FloatRange,
    IndexList,
    IntWithin,
)
from faultlens.ui.viewport import MapViewport

if TYPE_CHECKING:
    from faultlens.analysis.result import Analysis

_STATIC = Path(__file__).parent / "static"


class Explorer(SelectionSync, SlicePanel, TextSearch, MapViewport, anywidget.AnyWidget):
    """Map, filters, selection, image grid, statistics, saved and discovered slices of an
    :class:`Analysis`.

    Parameters
    ----------
    analysis:
        The analysis to explore (its table needs ``x``/``y`` map coordinates).
    color_by:
        ``"correct"`` (default), ``"loss"``, ``"confidence"``, ``"label"``, ``"pred"`` or any other
        column of ``analysis.table`` but the identifiers and positions (``id``, ``path``, ``x``,
        ``y``, ``source_index``; ``label_name``/``pred_name`` are ``label``/``pred``); the choices
        are in ``color_options``.
    classes, correct, confidence:
        The initial filter: class indices or names to show (default all), ``"all"``, ``"correct"``
        or ``"incorrect"``, and a ``(low, high)`` confidence range.
    sort_by, descending, page_size:
        How the image grid of the selection is ordered and paged. By default by ``failure_score``
        ascending (most likely errors first) when the table has it, else by ``loss`` descending.
    discovered:
        Discovered slices (``analysis.find_slices(...)``) to show in the slice panel; or call
        :meth:`find_slices`. Clicking a row selects the slice's members; colour ``"slice"`` shows
        them on the map.
    captioner, text_encoder, phrases:
        Used by :meth:`describe_selection` (the view's "Describe selection" button) and to describe
        discovered slices: an image captioner (``name`` + ``caption(images)``), a CLIP text encoder
        (``encode_text``; also for :meth:`search`, the toolbar's search box) and extra phrases.
        Without them, ImageNet tags are used when the analysis has ``imagenet_logits``, and the
        notes say what is missing.
    height:
        Height of the map in CSS pixels.
    aggregate_above:
        Above this many points the map is drawn aggregated: each pixel shows the mean colour of
        the points under it, so a region half full of errors looks half red instead of whichever
        point was drawn last. Selected points are always drawn on top, one by one. Statistics
        always use every point.
    thumb_size, cache_size:
        Pixels a side of the grid's thumbnails (read from the analysis's thumbnail store when it
        holds that size, else rendered), and how many encoded thumbnails stay in memory (LRU).

    The selection
    -------------
    ``selection`` is a trait holding a sorted, unique, read-only uint32 numpy array, so
    ``explorer.observe(cb, names="selection")`` and ``ipywidgets.dlink`` work on it; assigning to
    it is the same as :meth:`select`. ``observe`` fires when the rows change;
    :meth:`observe_selection` fires on every selection, also a repeat of the same rows. To link two
    views both ways use two ``dlink``s (``ipywidgets.link`` compares values with ``!=``, which a
    numpy array does not answer with one bool). On the wire Python writes ``_selection`` (uint32
    bytes) and bumps ``_selection_counter``; the public trait is not synced itself (that would send
    every selection twice), so ``ipywidgets.jslink`` does not apply to it. A view sends its
    selections as messages, which Python applies one by one even while it is busy.

    Examples
    --------
    >>> ex = faultlens.explore(analysis)          # doctest: +SKIP
    >>> ex.select(ex.analysis.table.index[~ex.analysis.table.correct])  # doctest: +SKIP
    >>> ex.stats["selection"]["error_rate"]  # doctest: +SKIP
    1.0
    """

    _esm = _STATIC / "explorer.js"
    _css = _STATIC / "explorer.css"

    # --- the map (written by Python) ------------------------------------------------------------
    _x = Binary(
        help="Python writes: float32 little-endian map x per row (NaN, with y NaN too: not placed, "
        "not drawn; never ±inf)."
    ).tag(sync=True)
    _y = Binary(help="Python writes: float32 little-endian map y per row (NaN: not placed).").tag(
        sync=True
    )
    _color = Binary(help="Python writes: uint8 colour code per row (see _color_info).").tag(
        sync=True
    )
    _color_info = t.Dict(help="Python writes: legend of the colour codes.").tag(sync=True)
    _visible = Binary(help="Python writes: uint8 per row, 1 = passes the filter.").tag(sync=True)
    n_points = t.Int(0, read_only=True, help="Python writes: number of rows.").tag(sync=True)
    class_names = t.List(t.Unicode(), read_only=True, help="Python writes: class names.").tag(
        sync=True
    )
    color_options = t.List(t.Unicode(), help="Python writes: colour-by choices.").tag(sync=True)
    sort_options = t.List(t.Unicode(), help="Python writes: grid sort choices.").tag(sync=True)
    height = t.Int(440, help="Python writes: map height in CSS pixels.").tag(sync=True)
    aggregate_above = t.Int(
        200_000,
        help="Python writes: above this many points each map pixel shows the mean colour of its "
        "points (selected points are still drawn one by one, on top).",
    ).tag(sync=True)

    # --- view state (written by both) -----------------------------------------------------------
    color_by = Choice(
        "correct", options="color_options", action="colour by",
        help="Both write: the column the map is coloured by (one of color_options).",
    ).tag(sync=True)  # fmt: skip
    filter_classes = IndexList(
        lambda ex: len(ex.class_names), "label",
        help="Both write: label indices shown; empty = all classes.",
    ).tag(sync=True)  # fmt: skip
    filter_correct = Choice(
        "all", choices=("all", "correct", "incorrect"),
        help="Both write: 'all', 'correct' or 'incorrect'.",
    ).tag(sync=True)  # fmt: skip
    filter_confidence = FloatRange(
        [0.0, 1.0], help="Both write: [low, high] confidence range shown (inclusive)."
    ).tag(sync=True)
    grid_sort = Choice(
        "loss", options="sort_options", extra=("index",), action="sort the grid by",
        help="Both write: the column the image grid is sorted by (sort_options or 'index').",
    ).tag(sync=True)  # fmt: skip
    grid_descending = t.Bool(True, help="Both write: grid sort order (True = largest first).").tag(
        sync=True
    )
    grid_page = IntWithin(0, 0, clamp=True, help="Both write: 0-based page of the image grid.").tag(
        sync=True
    )
    page_size = IntWithin(24, 1, 500, help="Both write: tiles per grid page (1-500).").tag(
        sync=True
    )

    # --- results (written by Python) ------------------------------------------------------------
    stats = t.Dict(help="Python writes: statistics of the selection inside the filter.").tag(
        sync=True
    )
    _grid = t.Dict(help="Python writes: the current grid page (rows and tile metadata).").tag(
        sync=True
    )
    status = t.Unicode("", help="Python writes: the last message or error for the status bar.").tag(
        sync=True
    )

    def __init__(
        self,
        analysis: Analysis,
        *,
        color_by: str = "correct",
        classes: Iterable[int | str] | None = None,
        correct: str = "all",
        confidence: tuple[float, float] = (0.0, 1.0),
        sort_by: str | None = None,
        descending: bool | None = None,
        page_size: int = 24,
        height: int = 440,
        aggregate_above: int = 200_000,
        thumb_size: int = 96,
        cache_size: int = 4096,
        discovered: Sequence[Any] | None = None,
        captioner: Any = None,
        text_encoder: Any = None,
        phrases: Sequence[str] = (),
    ) -> None:
        cols = check_analysis(analysis)
        warn_kernel_fault()
        table, n = analysis.table, len(analysis.table)

        self.analysis = analysis
        self._cols = cols
        self._visible_mask = np.ones(n, dtype=bool)
        self._visible_rows = np.arange(n, dtype=np.intp)
        self._init_selection()
        # the grid's thumbnails and the inspector's images (LRU-cached)
        self._images = ImageServer(analysis, thumb_size, cache_size)
        self._color_cache: dict[str, tuple[np.ndarray, dict]] = {}
        self._init_slice_panel(captioner, text_encoder, phrases)
        self._slice_option = SLICE_COLOR if SLICE_COLOR not in table.columns else "discovered slice"
        if sort_by is None:
            sort_by = "failure_score" if "failure_score" in table.columns else "loss"
        if descending is None:
            descending = sort_by != "failure_score"  # low failure score = likely error: first

        super().__init__()
        with self.hold_sync():
            self.set_trait("n_points", n)
            self.set_trait("class_names", [str(c) for c in analysis.class_names])
            self._set_column_options()
            if discovered:
                self.set_discovered(discovered)
            self._x, self._y = cols["x"].tobytes(), cols["y"].tobytes()
            self.height = int(height)
            self.aggregate_above = int(aggregate_above)
            self.page_size = page_size
            self.grid_sort = sort_by
            self.grid_descending = bool(descending)
            self.color_by = color_by
            self._apply_color()
            self.set_filter(classes=classes, correct=correct, confidence=confidence)
            self._show_saved()
            self.status = "; ".join(map_notes(analysis, cols["placed"]))
        self._watch_saved()
        self._watch_selection()
        self.observe(lambda _c: self._apply_color(), names=["color_by"])
        filters = ["filter_classes", "filter_correct", "filter_confidence"]
        self.observe(lambda _c: self._refilter(reset_page=True), names=filters)
        self.observe(self._on_grid, names=["grid_sort", "grid_descending", "page_size"])
        self.observe(lambda _c: self._update_grid(), names=["grid_page"])
        self.on_msg(self._on_custom_msg)

    def __repr__(self) -> str:
        n, k = self.n_points, len(self.selection)
        return f"<faultlens.Explorer: {n} points, {k} selected, coloured by {self.color_by!r}>"

    # ------------------------------------------------------------------ selection API

    @property
    def selected_frame(self) -> pd.DataFrame:
        """The table rows of the selection (a copy)."""
        return self.analysis.table.iloc[self.selection.astype(np.intp)].copy()

    @property
    def visible(self) -> np.ndarray:
        """Row indices that pass the current filter."""
        return self._visible_rows

    def more_like_this(self, rows: Any = None, k: int = 50) -> np.ndarray:
        """Select ``rows`` (default: the selection) and the ``k`` images nearest to them in
        embedding space (cosine, to their mean; :func:`faultlens.analysis.neighbors.more_like_this`).
        Returns the new selection."""
        from faultlens.analysis.neighbors import more_like_this

        query = self.selection if rows is None else coerce_rows(rows, self.n_points)
        if self.analysis.embeddings is None:
            msg = "this analysis has no embeddings to search"
            raise ValueError(msg)
        self.select(np.union1d(query, more_like_this(self.analysis.embeddings, query, k).rows))
        n_sel = len(self.selection)
        self.status = f"selected {n_sel} images: {len(query)} and their nearest in embedding space"
        return self.selection

    # ------------------------------------------------------------------ filter & colour

    def set_filter(
        self,
        *,
        classes: Iterable[int | str] | None = None,
        correct: str | None = None,
        confidence: tuple[float, float] | None = None,
    ) -> None:
        """Change the filter: ``classes`` (indices or names; ``None`` or empty = all), ``correct``
        (``"all"``, ``"correct"``, ``"incorrect"``), ``confidence`` (``(low, high)``)."""
        with self.hold_sync():
            if classes is not None:
                self.filter_classes = class_indices(self.class_names, classes)
            if correct is not None:
                self.filter_correct = correct
            if confidence is not None:
                self.filter_confidence = list(confidence)
            self._refilter(reset_page=True)

    def _refilter(self, *, reset_page: bool) -> None:
        c = self._cols
        mask = np.ones(self.n_points, dtype=bool)
        if self.filter_classes:
            keep = np.zeros(len(self.class_names), dtype=bool)
            keep[self.filter_classes] = True
            mask &= keep[c["labels"]]
        if self.filter_correct != "all":
            mask &= c["correct"] == (self.filter_correct == "correct")
        lo, hi = self.filter_confidence
        if lo > 0.0 or hi < 1.0:
            mask &= (c["conf"] >= lo) & (c["conf"] <= hi)
        self._visible_mask = mask
        self._visible_rows = np.flatnonzero(mask)
        with self.hold_sync():
            self._visible = mask.astype(np.uint8).tobytes()
            if reset_page:
                self.grid_page = 0
            self.stats = self._compute_stats()
            self._update_grid()

    def _encoding(self) -> tuple[np.ndarray, dict]:
        col = self.color_by
        if col not in self._color_cache:
            if col == self._slice_option and self._found:
                self._color_cache[col] = encode_slices(self._found, self.n_points)
            else:
                self._color_cache[col] = encode_color(self.analysis.table, col, self.class_names)
        return self._color_cache[col]

    def _apply_color(self) -> None:
        codes, info = self._encoding()
        with self.hold_sync():
            self._color = codes.tobytes()
            self._color_info = info

    # ------------------------------------------------------------------ stats & grid

    def _selected_visible(self) -> np.ndarray:
        sel = self.selection.astype(np.intp)
        return sel[self._visible_mask[sel]] if len(sel) else sel

    def _compute_stats(self) -> dict[str, Any]:
        """Statistics of the selection inside the filter against everything inside the filter."""
        rows, c = self._selected_visible(), self._cols
        out = selection_stats(
            rows, self._visible_rows, labels=c["labels"], preds=c["preds"], correct=c["correct"],
            class_names=self.class_names,
        )  # fmt: skip
        n_sel = len(self.selection)
        return {**out, "n_selected": n_sel, "n_hidden": n_sel - len(rows), "n_total": self.n_points}

    def _grid_rows(self, page: int | None = None) -> np.ndarray:
        """Row indices on grid page ``page`` (default: the current page) of the sorted selection."""
        rows = self._selected_visible()
        page = self.grid_page if page is None else page
        key = None
        if self.grid_sort != "index":
            column = self.analysis.table[self.grid_sort]
            key = column.to_numpy(dtype=np.float64, na_value=np.nan)[rows]
        return page_of(rows, key, descending=self.grid_descending, start=page * self.page_size,
                       size=self.page_size)  # fmt: skip

    def _update_grid(self) -> None:
        total = len(self._selected_visible())
        n_pages = max(1, math.ceil(total / self.page_size))
        if self.grid_page >= n_pages:
            self.grid_page = n_pages - 1
        self._grid = {
            "page": self.grid_page, "n_pages": n_pages, "total": total, "sort": self.grid_sort,
            "descending": self.grid_descending,
            "tiles": [
                grid_tile(self.analysis.table, self._cols, self.class_names, int(r),
                          self.grid_sort, self._captions.get(int(r), ""))
                for r in self._grid_rows()
            ],
        }  # fmt: skip

    def _on_grid(self, _change: dict) -> None:
        with self.hold_sync():
            self.grid_page = 0
            self._update_grid()

    # ------------------------------------------------------------------ columns

    def _set_column_options(self) -> None:
        colour, sort = column_options(
            self.analysis.table, self._slice_option if self._found else None
        )
        self.color_options, self.sort_options = colour, sort

    def refresh_columns(self) -> None:
        """Re-read the table after it changed (e.g. ``analysis.failure_scores()`` added
        ``failure_score``, or labels were corrected): refreshes the cached labels, predictions,
        correctness, confidence and map positions, the colour and sort choices, the map colours,
        the filter, the statistics and the grid (the selection is kept)."""
        table = self.analysis.table
        if len(table) != self.n_points:
            msg = (
                f"the table now has {len(table)} rows, not {self.n_points}: make a new Explorer "
                "(refresh_columns only re-reads columns of the same rows)"
            )
            raise ValueError(msg)
        cols = read_columns(table, len(self.class_names))  # checked before anything changes
        with self.hold_sync():
            self._cols = cols
            self._x, self._y = cols["x"].tobytes(), cols["y"].tobytes()
            self._color_cache.clear()
            self._set_column_options()
            if self.color_by not in self.color_options:
                self.color_by = "correct"
            if self.grid_sort not in (*self.sort_options, "index"):
                self.grid_sort = "loss"
            self._apply_color()
            self._refilter(reset_page=False)

    def compute_failure_scores(self, **options: Any) -> np.ndarray:
        """Run ``analysis.failure_scores(**options)`` (adds the ``failure_score`` column), offer it
        as a colour, and sort the grid by it, most likely errors (lowest scores) first."""
        self.status = "computing failure scores…"
        try:
            scores = self.analysis.failure_scores(**options)
        except Exception as exc:
            self.status = f"failure scores failed: {exc}"
            raise
        with self.hold_sync():
            self.refresh_columns()
            self.grid_descending = False
            self.grid_sort = "failure_score"
            self.status = (
                "failure scores added: colour or sort by 'failure_score' (low = likely error)"
            )
        return scores

    def _slices_recoloured(self, found: Sequence[Any]) -> str:
        """The map's slice colour follows the discovered slices ``found`` (SlicePanel's hook);
        returns the status bar's text."""
        self._color_cache.pop(self._slice_option, None)
        self._set_column_options()
        note = ""
        if self.color_by == self._slice_option:
            if found:
                self._apply_color()
            else:  # no slice left to colour by: back to the default colour
                self.color_by = "correct"  # runs _apply_color
                note = "; colour reset to 'correct'"
        if not found:
            return f"found no slices{note}"
        return (
            f"found {len(found)} slice(s): click a row to select it; colour by "
            f"'{self._slice_option}' to see them on the map"
        )

    # ------------------------------------------------------------------ messages from JS

    def _on_custom_msg(self, _widget: Any, content: Any, buffers: list[bytes]) -> None:
        """The one dispatcher of the front end's commands: ``{type, …}`` → its handler; an error
        goes to the status bar instead of being lost."""
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        handler = {
            "select": lambda c: self._select_from_view(c, buffers),
            "thumbs": self._send_thumbs,
            "inspect": lambda c: self.send(*self._images.inspect_reply(c)),
            "more_like_this": lambda c: self.more_like_this(
                None if c.get("row") is None else [int(c["row"])]
            ),
            **self._slice_panel_commands(),
            **self._search_commands(),
        }.get(kind)
        if handler is None:
            return
        try:
            handler(content)
        except Exception as exc:  # report to the status bar instead of losing it
            self.status = f"{kind}: {exc}"

    def _send_thumbs(self, content: dict) -> None:
        reply, buffers = self._images.thumbs_reply(list(content.get("rows", [])))
        self.send(reply, buffers=buffers)
        bad = [e for e in reply["errors"] if e]
        if bad:
            self.status = f"thumbs: {len(bad)} of {len(buffers)} image(s) not sent ({bad[0]})"

    # ------------------------------------------------------------------ static output

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        def render() -> tuple[bytes, str]:
            codes, legend = self._encoding()
            png = render_map_png(
                self._cols["x"], self._cols["y"], codes, legend, title=self.color_by,
                shown=self._visible_mask, selected=self.selection,
            )  # fmt: skip
            return png, explorer_html(
                png=png, n_points=self.n_points, class_names=self.class_names,
                color_by=self.color_by, selection=self.stats, saved=self.saved_slices,
                discovered=self.discovered, description=self.descriptions,
                described=[(sl.name, sl.descriptions) for sl in self._found if sl.descriptions],
            )  # fmt: skip

        return with_static_copy(super()._repr_mimebundle_(**kwargs), render)
