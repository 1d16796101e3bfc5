"""The Explorer: one anywidget with a 2-D map, filters, lasso/box selection, an image grid of the
selection, live statistics and named slices.

Data flow
---------
Python sends the map once as binary traits (``_x``, ``_y`` float32, ``_color`` uint8 code,
``_visible`` uint8 filter mask: 10 bytes per point). The front end draws it into a canvas
``ImageData`` buffer and, on a lasso or box, writes the selected row indices as uint32 bytes into
``_selection`` together with an incremented ``_selection_counter`` — one dedicated trait, so no
selection is ever replaced by a hover event. Python answers with ``stats`` and ``_grid`` (the page
of tiles); thumbnails and the inspector image are pulled by the front end with custom messages and
returned as JPEG/PNG buffers (read from the analysis's pre-rendered thumbnail store, else rendered;
LRU-cached).

Every statistic is computed on the full data in Python, never on what the map shows.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import pandas as pd
import traitlets as t
from PIL import Image, ImageDraw

from faultlens.analysis.stats import selection_stats
from faultlens.store import read_json, write_json
from faultlens.ui._validate import one_of, within

if TYPE_CHECKING:
    from faultlens.analysis.result import Analysis

_STATIC = Path(__file__).parent / "static"

#: Categorical palette (Tableau 10 + 10 lighter tones), as RGB.
CATEGORICAL = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
]  # fmt: skip
#: correct / incorrect: a muted blue and a strong orange (tells apart for common colour blindness).
CORRECT_COLORS = [(120, 150, 190), (230, 85, 13)]
#: Code 255 of a continuous encoding means "no value" (NaN); drawn grey.
MISSING_CODE = 255
MISSING_COLOR = (190, 190, 190)
_VIRIDIS_ANCHORS = [
    (68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
    (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37),
]  # fmt: skip

_SLICE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9 _.\-]{0,63}$")
_CORE_NEEDED = ["id", "label", "pred", "confidence", "loss", "correct", "x", "y"]


def _check_core_columns(table: Any) -> None:
    """Raise a ValueError naming what the explorer needs and the table lacks, and how to get it."""
    missing = [c for c in _CORE_NEEDED if c not in table.columns]
    if "x" in missing or "y" in missing:
        msg = (
            "this analysis has no 2-D map (no 'x'/'y' columns): make it with "
            "faultlens.analyze(), or set analysis.table['x'] and analysis.table['y'] yourself"
        )
        raise ValueError(msg)
    if missing:
        msg = f"the analysis table lacks column(s) {missing}: is it a faultlens Analysis table?"
        raise ValueError(msg)


_NOT_COLOURS = {"id", "path", "x", "y", "source_index", "label_name", "pred_name"}
_FILTER_CORRECT = ("all", "correct", "incorrect")
#: The colour option that colours by discovered slice (argmax membership >= 0.5, else "none").
SLICE_COLOR = "slice"
#: How many top terms of each description the slice table and the static HTML show.
_TOP_TERMS = 5


def _viridis(n: int = 255) -> list[tuple[int, int, int]]:
    anchors = np.asarray(_VIRIDIS_ANCHORS, dtype=np.float64)
    pos = np.linspace(0, len(anchors) - 1, n)
    lo = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    frac = (pos - lo)[:, None]
    rgb = anchors[lo] * (1 - frac) + anchors[lo + 1] * frac
    return [tuple(round(c) for c in row) for row in rgb]


CONTINUOUS = _viridis(255)


def check_slice_name(name: object) -> str:
    """Return ``name`` if it is a valid slice name, else raise ``ValueError`` saying why.

    Slice names become file names on export, so they are 1–64 characters of letters, digits,
    space, ``_``, ``-`` and ``.``, not starting with ``.``, ``-`` or a space (no path traversal).
    """
    if not isinstance(name, str):
        msg = f"a slice name must be a str, got {type(name).__name__}"
        raise TypeError(msg)
    if not _SLICE_NAME.match(name) or ".." in name or name != name.strip():
        msg = (
            f"invalid slice name {name!r}: use 1-64 letters, digits, spaces, '_', '-' or '.', "
            "starting with a letter, digit or '_' (no '/', '\\' or '..'), e.g. 'dark_shirts'"
        )
        raise ValueError(msg)
    return name


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def encode_color(
    table: pd.DataFrame, column: str, class_names: Sequence[str]
) -> tuple[np.ndarray, dict]:
    """One uint8 code per row for colouring by ``column`` and a legend describing the codes.

    Categorical columns get one code per category (at most 254; the rest share "other"); numeric
    columns are scaled between their 1st and 99th percentile into codes 0–254 (255 = missing).
    """
    n = len(table)
    if column == "correct":
        codes = (~table["correct"].to_numpy(dtype=bool)).astype(np.uint8)
        info = {"kind": "category", "labels": ["correct ✓", "incorrect ✗"],
                "colors": [_hex(c) for c in CORRECT_COLORS]}  # fmt: skip
        return codes, {**info, "column": column}
    if column in ("label", "pred"):
        values = table[column].to_numpy()
        if len(class_names) <= 254:
            palette = [CATEGORICAL[i % len(CATEGORICAL)] for i in range(len(class_names))]
            return values.astype(np.uint8), {
                "kind": "category", "column": column, "labels": [str(c) for c in class_names],
                "colors": [_hex(c) for c in palette],
            }  # fmt: skip
        series = pd.Series(np.asarray(class_names, dtype=object)[values])
    else:
        series = table[column]
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        cats = series.astype(str).where(series.notna(), "(missing)")
        counts = cats.value_counts(sort=True)
        keep = list(counts.index[:254]) if len(counts) > 255 else list(counts.index)
        if pd.api.types.is_bool_dtype(series) or set(keep) <= {"True", "False"}:
            keep = sorted(keep)
        lookup = {k: i for i, k in enumerate(keep)}
        other = len(keep)
        codes = cats.map(lookup).fillna(other).to_numpy(dtype=np.uint8)
        labels = [str(k) for k in keep] + (["(other)"] if len(counts) > len(keep) else [])
        colors = [_hex(CATEGORICAL[i % len(CATEGORICAL)]) for i in range(len(keep))]
        if len(labels) > len(keep):
            colors.append(_hex(MISSING_COLOR))
        return codes, {"kind": "category", "column": column, "labels": labels, "colors": colors}
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    codes = np.full(n, MISSING_CODE, dtype=np.uint8)
    vmin = vmax = math.nan
    if finite.any():
        vmin, vmax = (float(v) for v in np.percentile(values[finite], [1, 99]))
        if vmax <= vmin:
            vmin, vmax = float(values[finite].min()), float(values[finite].max())
        span = vmax - vmin if vmax > vmin else 1.0
        scaled = np.clip((values[finite] - vmin) / span, 0.0, 1.0)
        codes[finite] = np.round(scaled * 254).astype(np.uint8)
    return codes, {
        "kind": "continuous", "column": column, "vmin": vmin if finite.any() else None,
        "vmax": vmax if finite.any() else None, "colors": [_hex(c) for c in CONTINUOUS],
        "missing": int((~finite).sum()),
    }  # fmt: skip


def _palette_rgb(info: dict) -> np.ndarray:
    """(256, 3) uint8 RGB per code of an encoding."""
    pal = np.tile(np.asarray(MISSING_COLOR, dtype=np.uint8), (256, 1))
    for i, c in enumerate(info["colors"][:256]):
        pal[i] = [int(c[k : k + 2], 16) for k in (1, 3, 5)]
    return pal


def _bytes_from_json(js: Any, _obj: Any) -> bytes:
    if js is None:
        return b""
    if isinstance(js, memoryview):
        return js.tobytes()
    return bytes(js)


_BYTES = {"from_json": _bytes_from_json}


class Explorer(anywidget.AnyWidget):
    """Map, filters, selection, image grid, statistics and named slices of an :class:`Analysis`.

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
    slices:
        Discovered slices (``analysis.find_slices(...)``) to show in the slice panel; or call
        :meth:`find_slices`. Clicking a row selects the slice's members; colour ``"slice"`` shows
        them on the map.
    captioner, text_encoder, phrases:
        Used by :meth:`describe_selection` (the view's "Describe selection" button) and to describe
        discovered slices: an image captioner (``name`` + ``caption(images)``), a CLIP text encoder
        and extra phrases. Without them, ImageNet tags are used when the analysis has
        ``imagenet_logits``, and the notes say what is missing.
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
    _x = t.Bytes(
        b"",
        help="Python writes: float32 little-endian map x per row (NaN, with y NaN too: not placed, "
        "not drawn; never ±inf).",
    ).tag(sync=True, **_BYTES)
    _y = t.Bytes(
        b"", help="Python writes: float32 little-endian map y per row (NaN: not placed)."
    ).tag(sync=True, **_BYTES)
    _color = t.Bytes(b"", help="Python writes: uint8 colour code per row (see _color_info).").tag(
        sync=True, **_BYTES
    )
    _color_info = t.Dict(help="Python writes: legend of the colour codes.").tag(sync=True)
    _visible = t.Bytes(b"", help="Python writes: uint8 per row, 1 = passes the filter.").tag(
        sync=True, **_BYTES
    )
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
    color_by = t.Unicode("correct", help="Both write: the column the map is coloured by.").tag(
        sync=True
    )
    filter_classes = t.List(
        t.Int(), help="Both write: label indices shown; empty = all classes."
    ).tag(sync=True)
    filter_correct = t.Unicode("all", help="Both write: 'all', 'correct' or 'incorrect'.").tag(
        sync=True
    )
    filter_confidence = t.List(
        t.Float(), default_value=[0.0, 1.0], minlen=2, maxlen=2,
        help="Both write: [low, high] confidence range shown (inclusive).",
    ).tag(sync=True)  # fmt: skip
    grid_sort = t.Unicode("loss", help="Both write: the column the image grid is sorted by.").tag(
        sync=True
    )
    grid_descending = t.Bool(True, help="Both write: grid sort order (True = largest first).").tag(
        sync=True
    )
    grid_page = t.Int(0, help="Both write: 0-based page of the image grid.").tag(sync=True)
    page_size = t.Int(24, help="Both write: tiles per grid page (1-500).").tag(sync=True)

    # --- the selection (written by JS on lasso/box, by Python on select()) ----------------------
    _selection = t.Bytes(
        b"", help="Both write: selected row indices as uint32 little-endian bytes (sorted, unique)."
    ).tag(sync=True, echo_update=False, **_BYTES)
    _selection_counter = t.Int(
        0, help="Both write: incremented with every selection, so identical re-selections fire."
    ).tag(sync=True, echo_update=False)
    _selection_source = t.Unicode(
        "", help="Both write: what made the last selection ('box', 'lasso', 'python', 'slice')."
    ).tag(sync=True, echo_update=False)

    # --- results (written by Python) ------------------------------------------------------------
    stats = t.Dict(help="Python writes: statistics of the selection inside the filter.").tag(
        sync=True
    )
    _grid = t.Dict(help="Python writes: the current grid page (rows and tile metadata).").tag(
        sync=True
    )
    slices = t.List(t.Dict(), help="Python writes: saved slices (name, n, created).").tag(sync=True)
    discovered = t.List(
        t.Dict(),
        help="Python writes: discovered slices, one dict each (index, name, method, size, errors, "
        "error_rate, ci_low, ci_high, lift, color, descriptions: [{source, terms}]).",
    ).tag(sync=True)
    active_slice = t.Int(
        -1, help="Python writes: index into `discovered` of the slice now selected, -1 for none."
    ).tag(sync=True)
    _slice_clicked = t.Int(
        -1, help="JS writes: index into `discovered` of the slice row the user clicked."
    ).tag(sync=True, echo_update=False)
    _slice_click_counter = t.Int(
        0, help="JS writes: incremented with every slice-row click, so a re-click fires again."
    ).tag(sync=True, echo_update=False)
    descriptions = t.Dict(
        help="Python writes: the last description of a selection: {n, rows_hash (of the described "
        "rows), stale (True once the selection no longer is those rows), items: [{source, terms: "
        "[[term, score]], captions: [{row, id, caption}]}], notes, error}."
    ).tag(sync=True)
    describing = t.Bool(
        False, help="Python writes: True while a description is being computed (JS shows progress)."
    ).tag(sync=True)
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
        slices: Sequence[Any] | None = None,
        captioner: Any = None,
        text_encoder: Any = None,
        phrases: Sequence[str] = (),
    ) -> None:
        table = analysis.table
        _check_core_columns(table)
        n = len(table)
        if n == 0:
            msg = "the analysis has no rows: there is nothing to explore"
            raise ValueError(msg)
        if n >= 2**32 - 1:
            msg = f"{n} rows is more than the explorer's uint32 selection can index"
            raise ValueError(msg)
        for name, arr in (("probs", analysis.probs), ("embeddings", analysis.embeddings)):
            if arr is not None and len(arr) != n:
                msg = f"analysis.{name} has {len(arr)} rows but the table has {n}: they must align"
                raise ValueError(msg)
        cols = _read_columns(table, len(analysis.class_names))
        placed = cols["placed"]

        self.analysis = analysis
        self._set_columns(cols)
        self._visible_mask = np.ones(n, dtype=bool)
        self._visible_rows = np.arange(n, dtype=np.intp)
        self._sel = np.zeros(0, dtype=np.uint32)
        self._callbacks: list[Callable[[np.ndarray], Any]] = []
        #: Messages of selection callbacks that raised (newest last).
        self.callback_errors: list[str] = []
        self._thumb_size = int(thumb_size)
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._cache_size = int(cache_size)
        self._color_cache: dict[str, tuple[np.ndarray, dict]] = {}
        self._memory_slices: dict[str, dict[str, Any]] = {}
        self._slice_note = ""  # what moving the in-memory slices into the folder did, once
        self.last_latency_ms = math.nan
        #: Captioner / CLIP text encoder / extra phrases used by :meth:`describe_selection`.
        self.captioner = captioner
        self.text_encoder = text_encoder
        self.phrases = tuple(phrases)
        self._found: list[Any] = []
        self._captions: dict[int, str] = {}  # row -> caption of the last description
        #: The (descriptions, notes) of the last :meth:`describe_selection`.
        self.last_description: tuple[list[Any], list[str]] | None = None
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
            if slices:
                self.set_slices(slices)
            self._x = cols["x"].tobytes()
            self._y = cols["y"].tobytes()
            self.height = int(height)
            self.aggregate_above = int(aggregate_above)
            self.page_size = page_size
            self.grid_sort = sort_by
            self.grid_descending = bool(descending)
            self.color_by = color_by
            self._apply_color()
            self.set_filter(classes=classes, correct=correct, confidence=confidence)
            self._refresh_slices()
            notes = []
            if not placed.all():
                notes.append(
                    f"{int((~placed).sum())} point(s) have no map position: not drawn, but counted "
                    "in the statistics"
                )
            fit = analysis.meta.get("projection_fit") or {}
            if fit.get("fitted_on", 0) < fit.get("placed", 0):
                notes.append(
                    f"map fitted on a seeded sample of {fit['fitted_on']:,} of {fit['placed']:,} "
                    "points; the others placed with UMAP.transform"
                )
            self.status = "; ".join(notes)
        self.observe(self._on_selection_trait, names=["_selection_counter"])
        self.observe(self._on_color, names=["color_by"])
        filters = ["filter_classes", "filter_correct", "filter_confidence"]
        self.observe(self._on_filter, names=filters)
        self.observe(self._on_grid, names=["grid_sort", "grid_descending", "page_size"])
        self.observe(self._on_page, names=["grid_page"])
        self.observe(self._on_slice_click, names=["_slice_click_counter"])
        self.on_msg(self._on_custom_msg)

    def _set_columns(self, cols: dict[str, np.ndarray]) -> None:
        self._labels = cols["labels"]
        self._preds = cols["preds"]
        self._correct = cols["correct"]
        self._conf = cols["conf"]
        self._placed = cols["placed"]

    def __repr__(self) -> str:
        return (
            f"<faultlens.Explorer: {self.n_points} points, {len(self._sel)} selected, "
            f"coloured by {self.color_by!r}>"
        )

    # ------------------------------------------------------------------ validation

    @t.validate("color_by")
    def _valid_color(self, proposal: dict) -> str:
        return one_of("color_by", proposal["value"], self.color_options, action="colour by")

    @t.validate("grid_sort")
    def _valid_sort(self, proposal: dict) -> str:
        return one_of(
            "grid_sort", proposal["value"], [*self.sort_options, "index"], action="sort the grid by"
        )

    @t.validate("filter_correct")
    def _valid_correct(self, proposal: dict) -> str:
        return one_of("filter_correct", proposal["value"], _FILTER_CORRECT)

    @t.validate("filter_classes")
    def _valid_classes(self, proposal: dict) -> list[int]:
        value = [int(v) for v in proposal["value"]]
        bad = [v for v in value if not 0 <= v < len(self.class_names)]
        if bad:
            msg = f"filter_classes has unknown label(s) {bad}: use 0..{len(self.class_names) - 1}"
            raise t.TraitError(msg)
        return sorted(set(value))

    @t.validate("filter_confidence")
    def _valid_conf(self, proposal: dict) -> list[float]:
        lo, hi = (float(v) for v in proposal["value"])
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            msg = f"filter_confidence must be [low, high] with low <= high, got {[lo, hi]}"
            raise t.TraitError(msg)
        return [lo, hi]

    @t.validate("page_size")
    def _valid_page_size(self, proposal: dict) -> int:
        return int(within("page_size", int(proposal["value"]), 1, 500))

    @t.validate("grid_page")
    def _valid_page(self, proposal: dict) -> int:
        return max(0, int(proposal["value"]))

    @t.validate("_selection")
    def _valid_selection(self, proposal: dict) -> bytes:
        value = proposal["value"]
        if len(value) % 4:
            msg = f"_selection must be uint32 bytes (a multiple of 4 long), got {len(value)} bytes"
            raise t.TraitError(msg)
        return value

    # ------------------------------------------------------------------ selection API

    @property
    def selection(self) -> np.ndarray:
        """The selected row indices (sorted, unique, read-only uint32 array; rows of ``table``)."""
        view = self._sel.view()
        view.flags.writeable = False
        return view

    @property
    def selected_frame(self) -> pd.DataFrame:
        """The table rows of the selection (a copy)."""
        return self.analysis.table.iloc[self._sel.astype(np.intp)].copy()

    @property
    def visible(self) -> np.ndarray:
        """Row indices that pass the current filter."""
        return self._visible_rows

    def select(self, rows: Any) -> np.ndarray:
        """Select ``rows`` (row indices, a bool mask of length ``n_points``, or a pandas index/mask
        of the table); the map and grid show it. Returns the selection."""
        sel = self._coerce_rows(rows)
        self._set_selection(sel, source="python", push=True)
        return self.selection

    def clear_selection(self) -> None:
        """Select nothing."""
        self.select(np.zeros(0, dtype=np.intp))

    def observe_selection(self, callback: Callable[[np.ndarray], Any]) -> Callable[[], None]:
        """Call ``callback(selection)`` after every selection (from the map or from code).

        Returns a function that removes the callback. Errors raised by the callback are shown in
        the widget's status bar and kept in :attr:`callback_errors` (they would be lost otherwise).
        """
        if not callable(callback):
            msg = f"observe_selection needs a callable, got {type(callback).__name__}"
            raise TypeError(msg)
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    on_select = observe_selection

    def _coerce_rows(self, rows: Any) -> np.ndarray:
        n = self.n_points
        if isinstance(rows, (pd.Series, pd.Index)):
            rows = rows.to_numpy()
        arr = np.asarray(rows)
        if arr.ndim != 1:
            if arr.ndim == 0:
                arr = arr.reshape(1)
            else:
                msg = f"select() takes 1-D row indices or a bool mask, got shape {arr.shape}"
                raise ValueError(msg)
        if arr.dtype == bool:
            if len(arr) != n:
                msg = (
                    f"a bool mask must have one entry per row: got {len(arr)}, the table has {n} "
                    "(pass row indices instead, or a mask over analysis.table)"
                )
                raise ValueError(msg)
            return np.flatnonzero(arr).astype(np.uint32)
        if arr.size == 0:
            return np.zeros(0, dtype=np.uint32)
        if not np.issubdtype(arr.dtype, np.integer):
            msg = (
                f"select() takes integer row indices or a bool mask, got dtype {arr.dtype}: "
                "use analysis.table.index[mask] or np.flatnonzero(mask)"
            )
            raise TypeError(msg)
        bad = arr[(arr < 0) | (arr >= n)]
        if len(bad):
            msg = f"row index(es) {bad[:5].tolist()} out of range: the table has rows 0..{n - 1}"
            raise IndexError(msg)
        return _sorted_unique(arr, n)

    def _set_selection(self, sel: np.ndarray, *, source: str, push: bool) -> None:
        self._sel = np.ascontiguousarray(sel, dtype=np.uint32)
        self._sel.flags.writeable = False
        if push:
            with self.hold_sync():
                self._selection_source = source
                self._selection = self._sel.astype("<u4").tobytes()
                self._selection_counter += 1  # runs _on_selection_trait, as JS does
        else:
            self._after_selection()

    def _on_selection_trait(self, _change: dict) -> None:
        raw = np.frombuffer(self._selection, dtype="<u4")
        if len(raw) and int(raw.max()) >= self.n_points:
            self.status = f"ignored a selection with row indices beyond {self.n_points - 1}"
            return
        self._sel = _sorted_unique(raw, self.n_points)
        self._sel.flags.writeable = False
        self._after_selection()

    def _after_selection(self) -> None:
        start = time.perf_counter()
        with self.hold_sync():
            if self._selection_source != "discovered":
                self.active_slice = -1
            self.grid_page = 0
            self._update_stats()
            self._update_grid()
            self._mark_description_stale()
        self.last_latency_ms = (time.perf_counter() - start) * 1e3
        sel = self.selection
        for cb in list(self._callbacks):
            try:
                cb(sel)
            except Exception as exc:  # user callbacks: report, never lose the selection
                text = f"selection callback {getattr(cb, '__name__', cb)!r} failed: {exc!r}"
                self.callback_errors.append(text)
                self.status = text

    def _mark_description_stale(self) -> None:
        """Flag the shown description ``stale`` when the selection is no longer the rows it
        described (and unflag it when the user selects those rows again)."""
        d = self.descriptions
        if not d or "rows_hash" not in d:
            return
        same = d.get("n") == len(self._sel) and d["rows_hash"] == _rows_hash(self._sel)
        if bool(d.get("stale")) == (not same):
            return
        self.descriptions = {**d, "stale": not same}

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
                self.filter_classes = self._class_indices(classes)
            if correct is not None:
                self.filter_correct = correct
            if confidence is not None:
                self.filter_confidence = list(confidence)
            self._on_filter(None)

    def _class_indices(self, classes: Iterable[int | str]) -> list[int]:
        if isinstance(classes, (str, int, np.integer)):
            classes = [classes]
        out = []
        for c in classes:
            if isinstance(c, str):
                if c not in self.class_names:
                    msg = f"unknown class {c!r}: classes are {self.class_names}"
                    raise ValueError(msg)
                out.append(self.class_names.index(c))
            else:
                out.append(int(c))
        return out

    def _filter_mask(self) -> np.ndarray:
        mask = np.ones(self.n_points, dtype=bool)
        if self.filter_classes:
            keep = np.zeros(len(self.class_names), dtype=bool)
            keep[self.filter_classes] = True
            mask &= keep[self._labels]
        if self.filter_correct == "correct":
            mask &= self._correct
        elif self.filter_correct == "incorrect":
            mask &= ~self._correct
        lo, hi = self.filter_confidence
        if lo > 0.0 or hi < 1.0:
            mask &= (self._conf >= lo) & (self._conf <= hi)
        return mask

    def _on_filter(self, _change: dict | None) -> None:
        self._refilter(reset_page=True)

    def _refilter(self, *, reset_page: bool) -> None:
        mask = self._filter_mask()
        self._visible_mask = mask
        self._visible_rows = np.flatnonzero(mask)
        with self.hold_sync():
            self._visible = mask.astype(np.uint8).tobytes()
            if reset_page:
                self.grid_page = 0
            self._update_stats()
            self._update_grid()

    def _apply_color(self) -> None:
        col = self.color_by
        if col not in self._color_cache:
            if col == self._slice_option and self._found:
                self._color_cache[col] = encode_slices(self._found, self.n_points)
            else:
                self._color_cache[col] = encode_color(self.analysis.table, col, self.class_names)
        codes, info = self._color_cache[col]
        with self.hold_sync():
            self._color = codes.tobytes()
            self._color_info = info

    def _on_color(self, _change: dict) -> None:
        self._apply_color()

    # ------------------------------------------------------------------ stats & grid

    def _selected_visible(self) -> np.ndarray:
        sel = self._sel.astype(np.intp)
        return sel[self._visible_mask[sel]] if len(sel) else sel

    def compute_stats(self) -> dict[str, Any]:
        """Statistics of the selection inside the filter against everything inside the filter."""
        rows = self._selected_visible()
        out = selection_stats(
            rows, self._visible_rows, labels=self._labels, preds=self._preds,
            correct=self._correct, class_names=self.class_names,
        )  # fmt: skip
        out["n_selected"] = len(self._sel)
        out["n_hidden"] = len(self._sel) - len(rows)
        out["n_total"] = self.n_points
        return out

    def _update_stats(self) -> None:
        self.stats = self.compute_stats()

    def grid_rows(self, page: int | None = None) -> np.ndarray:
        """Row indices on grid page ``page`` (default: the current page) of the sorted selection."""
        rows = self._selected_visible()
        size = self.page_size
        page = self.grid_page if page is None else page
        start = page * size
        if start >= len(rows):
            return np.zeros(0, dtype=np.intp)
        if self.grid_sort == "index":
            ordered = rows[::-1] if self.grid_descending else rows
            return ordered[start : start + size]
        key = self.analysis.table[self.grid_sort].to_numpy(dtype=np.float64, na_value=np.nan)[rows]
        # the order: by value (largest first when descending), ties by row, NaN last either way
        missing = np.isnan(key)
        key = np.where(missing, 0.0, -key if self.grid_descending else key)
        stop = min(start + size, len(rows))
        n_known = len(rows) - int(missing.sum())
        if stop <= n_known and stop < len(rows) // 4:
            # partial sort of the first `stop` rows: every row whose key is <= the stop-th smallest
            # known key (ties included, so the cut never picks an arbitrary subset of equal keys),
            # then the same (key, row) order as the full sort
            known = np.flatnonzero(~missing)
            kth = np.partition(key[known], stop - 1)[stop - 1]
            cand = known[key[known] <= kth]
            order = cand[np.lexsort((rows[cand], key[cand]))]
        else:
            order = np.lexsort((rows, key, missing))
        return rows[order[start:stop]]

    def _tile(self, row: int) -> dict[str, Any]:
        tab = self.analysis.table
        return {
            "row": row,
            "id": str(tab["id"].iat[row]),
            "label": self.class_names[self._labels[row]],
            "pred": self.class_names[self._preds[row]],
            "confidence": float(self._conf[row]),
            "correct": bool(self._correct[row]),
            "sort_value": (
                None if self.grid_sort == "index"
                else _jsonable(tab[self.grid_sort].iat[row])
            ),
            "caption": self._captions.get(row, ""),
        }  # fmt: skip

    def _update_grid(self) -> None:
        rows = self.grid_rows()
        total = len(self._selected_visible())
        n_pages = max(1, math.ceil(total / self.page_size))
        if self.grid_page >= n_pages:
            self.grid_page = n_pages - 1
            rows = self.grid_rows()
        self._grid = {
            "page": self.grid_page,
            "n_pages": n_pages,
            "total": total,
            "sort": self.grid_sort,
            "descending": self.grid_descending,
            "tiles": [self._tile(int(r)) for r in rows],
        }

    def _on_grid(self, _change: dict) -> None:
        with self.hold_sync():
            self.grid_page = 0
            self._update_grid()

    def _on_page(self, _change: dict) -> None:
        self._update_grid()

    # ------------------------------------------------------------------ images

    def thumbnail(self, row: int, size: int | None = None) -> bytes:
        """Encoded bytes (JPEG or PNG) of row ``row``'s image, at most ``size`` pixels a side: read
        from the analysis's pre-rendered thumbnail store when it holds this size, else rendered
        (see :meth:`Analysis.thumbnail`); LRU-cached either way."""
        size = self._thumb_size if size is None else int(size)
        key = (int(row), size)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        data = self.analysis.thumbnail(int(row), size)
        self._cache[key] = data
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return data

    def row_info(self, row: int) -> list[list[str]]:
        """``[[column, value-as-text], …]`` of one row, for the inspector."""
        rec = self.analysis.table.iloc[int(row)]
        out = [["row", str(int(row))]]
        for k, v in rec.items():
            if k in ("x", "y", "source_index"):
                continue
            text = f"{float(v):.4g}" if isinstance(v, (float, np.floating)) else str(v)
            out.append([str(k), text])
        return out

    # ------------------------------------------------------------------ columns, discovered slices

    def _set_column_options(self) -> None:
        table = self.analysis.table
        numeric = [
            c for c in table.columns
            if c not in _NOT_COLOURS and pd.api.types.is_numeric_dtype(table[c])
            and not pd.api.types.is_bool_dtype(table[c])
        ]  # fmt: skip
        colour_cols = ["correct", "loss", "confidence", "label", "pred"]
        if "failure_score" in table.columns:
            colour_cols.append("failure_score")
        colour_cols += [c for c in table.columns if c not in _NOT_COLOURS and c not in colour_cols]
        if self._found:
            colour_cols.append(self._slice_option)
        first = [c for c in ("failure_score", "loss", "confidence") if c in table.columns]
        sort_cols = first + [c for c in numeric if c not in first]
        self.color_options = colour_cols
        self.sort_options = sort_cols

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
        _check_core_columns(table)
        cols = _read_columns(table, len(self.class_names))  # checked before anything changes
        with self.hold_sync():
            self._set_columns(cols)
            self._x = cols["x"].tobytes()
            self._y = cols["y"].tobytes()
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

    @property
    def discovered_slices(self) -> list[Any]:
        """The discovered :class:`~faultlens.analysis.slices.Slice` objects shown in the panel."""
        return list(self._found)

    def find_slices(
        self, n_slices: int = 5, method: str = "mixture", *, describe: bool = True, **opts: Any
    ) -> list[Any]:
        """Discover failure slices with ``analysis.find_slices(n_slices, method, **opts)``, show them
        in the slice panel and offer ``"slice"`` as a colour; returns the slices.

        With ``describe`` each slice is described (``analysis.describe`` with this explorer's
        captioner / text encoder; ImageNet tags when the analysis has ``imagenet_logits``) unless it
        already carries descriptions.
        """
        self.status = f"finding {n_slices} slices ({method})…"
        try:
            found = self.analysis.find_slices(n_slices, method, **opts)
        except Exception as exc:
            self.status = f"finding slices failed: {exc}"
            raise
        self.set_slices(found, describe=describe)
        return found

    def set_slices(self, found: Sequence[Any], *, describe: bool = False) -> None:
        """Show ``found`` (discovered :class:`Slice` objects) in the slice panel."""
        found = list(found)
        for i, sl in enumerate(found):
            m = np.asarray(getattr(sl, "membership", ()))
            if m.shape != (self.n_points,):
                msg = (
                    f"slice {i} ({getattr(sl, 'name', '?')!r}) has membership of shape {m.shape}, "
                    f"expected ({self.n_points},): was it found on another analysis?"
                )
                raise ValueError(msg)
        if describe:
            for i, sl in enumerate(found):
                if sl.descriptions:
                    continue
                self.status = f"describing slice {i + 1}/{len(found)}…"
                try:
                    descs, notes = self.analysis.describe(
                        np.asarray(sl.indices), captioner=self.captioner,
                        text_encoder=self.text_encoder, phrases=self.phrases,
                    )  # fmt: skip
                    sl.descriptions = {"items": descs, "notes": notes}
                except Exception as exc:  # a description is a bonus: keep the slice
                    sl.descriptions = {"items": [], "notes": [f"description failed: {exc}"]}
        self._found = found
        with self.hold_sync():
            self._color_cache.pop(self._slice_option, None)
            self._set_column_options()
            self.active_slice = -1
            self.discovered = [self._slice_row(i, sl) for i, sl in enumerate(found)]
            note = ""
            if self.color_by == self._slice_option:
                if found:
                    self._apply_color()
                else:  # no slice left to colour by: back to the default colour
                    self.color_by = "correct"  # runs _apply_color
                    note = "; colour reset to 'correct'"
            if found:
                self.status = (
                    f"found {len(found)} slice(s): click a row to select it; colour by "
                    f"'{self._slice_option}' to see them on the map"
                )
            else:
                self.status = f"found no slices{note}"

    def _slice_row(self, i: int, sl: Any) -> dict[str, Any]:
        st = getattr(sl, "stats", {}) or {}
        palette = CATEGORICAL[i % len(CATEGORICAL)]
        return {
            "index": i,
            "name": str(sl.name),
            "method": str(sl.method),
            "size": int(st.get("n", len(sl.indices))),
            "errors": _jsonable(st.get("errors")),
            "error_rate": _jsonable(st.get("error_rate")),
            "ci_low": _jsonable(st.get("ci_low")),
            "ci_high": _jsonable(st.get("ci_high")),
            "lift": _jsonable(st.get("lift")),
            "color": _hex(palette),
            "descriptions": [
                {"source": str(d.source), "terms": [str(term) for term, *_ in d.terms[:_TOP_TERMS]]}
                for d in _description_items(sl.descriptions)
            ],
        }

    def slice_members(self, which: int | str) -> np.ndarray:
        """Member rows (sorted) of the discovered slice ``which`` (its index or name)."""
        sl = self._discovered(which)
        return _sorted_unique(np.asarray(sl.indices, dtype=np.int64), self.n_points)

    def _discovered(self, which: int | str) -> Any:
        if isinstance(which, str):
            names = [s.name for s in self._found]
            if which not in names:
                msg = f"no discovered slice named {which!r}; found: {names}"
                raise KeyError(msg)
            return self._found[names.index(which)]
        i = int(which)
        if not 0 <= i < len(self._found):
            msg = (
                f"no discovered slice {i}: there are {len(self._found)} "
                "(run explorer.find_slices() first)"
            )
            raise IndexError(msg)
        return self._found[i]

    def select_discovered(self, which: int | str) -> np.ndarray:
        """Select the members of the discovered slice ``which`` (index or name), as a row click
        does; returns the selection."""
        sl = self._discovered(which)
        i = self._found.index(sl)
        rows = self.slice_members(i)
        self._set_selection(rows, source="discovered", push=True)
        self.active_slice = i
        self.status = f"selected {sl.name} ({len(rows)} images)"
        return self.selection

    def _on_slice_click(self, _change: dict) -> None:
        try:
            self.select_discovered(self._slice_clicked)
        except Exception as exc:  # report to the status bar
            self.status = f"slice: {exc}"

    # ------------------------------------------------------------------ describing

    def describe_selection(
        self,
        captioner: Any = None,
        text_encoder: Any = None,
        phrases: Sequence[str] = (),
        *,
        rows: Any = None,
    ) -> tuple[list[Any], list[str]]:
        """Describe the selection (or ``rows``) with ``analysis.describe``: captions from
        ``captioner`` (default: the explorer's), phrases from ``text_encoder``, ImageNet tags when
        the analysis has ``imagenet_logits``. The view shows each description beside its source
        label, the notes, and the captions under their images. Returns ``(descriptions, notes)``.

        ``status`` says "describing…" while it runs; an error goes to ``status`` and
        ``descriptions["error"]`` and is raised; the selection is kept.
        """
        captioner = self.captioner if captioner is None else captioner
        text_encoder = self.text_encoder if text_encoder is None else text_encoder
        phrases = tuple(phrases) or self.phrases
        sel = self._sel if rows is None else self._coerce_rows(rows)
        n = len(sel)
        described = {"n": n, "rows_hash": _rows_hash(sel),
                     "stale": not np.array_equal(sel, self._sel)}  # fmt: skip
        # sent to the view at once (not held), so the front end shows progress first
        self.describing = True
        what = (
            f" with {captioner.name}"
            if captioner is not None and hasattr(captioner, "name")
            else ""
        )
        self.status = f"describing {n} images{what}…"
        try:
            descs, notes = self.analysis.describe(
                sel.astype(np.int64), captioner=captioner, text_encoder=text_encoder,
                phrases=phrases,
            )  # fmt: skip
        except Exception as exc:
            with self.hold_sync():
                self.describing = False
                self.descriptions = {**described, "items": [], "notes": [], "error": str(exc)}
                self.status = f"describe failed: {exc}"
            raise
        self.last_description = (descs, notes)
        items, captions = [], {}
        for d in descs:
            caps = (d.details or {}).get("captions", {}) if hasattr(d, "details") else {}
            caps = {int(r): str(c) for r, c in caps.items()}
            captions.update(caps)
            items.append({
                "source": str(d.source),
                "terms": [[str(term), _jsonable(score)] for term, score in d.terms[:10]],
                "captions": [
                    {"row": r, "id": str(self.analysis.table["id"].iat[r]), "caption": c}
                    for r, c in caps.items()
                ],
            })  # fmt: skip
        self._captions = captions
        with self.hold_sync():
            self.descriptions = {**described, "items": items,
                                 "notes": [str(x) for x in notes], "error": ""}  # fmt: skip
            self.describing = False
            self._update_grid()
            sources = ", ".join(d["source"] for d in items) or "no description"
            self.status = f"described {n} images: {sources}"
        return descs, notes

    def description_html(self) -> str:
        """Static HTML of the last description (every string escaped)."""
        e = html.escape
        d = self.descriptions or {}
        if not d:
            return "<p>no description yet</p>"
        parts = [f"<div class=\"faultlens-descriptions\"><p>description of {int(d.get('n', 0))} "
                 "images</p>"]  # fmt: skip
        if d.get("stale"):
            parts.append("<p><i>described an earlier selection</i></p>")
        if d.get("error"):
            parts.append(f"<p>error: {e(str(d['error']))}</p>")
        for item in d.get("items", []):
            terms = ", ".join(e(str(term)) for term, _ in item["terms"][:_TOP_TERMS])
            parts.append(f"<p><b>{e(item['source'])}</b>: {terms or '(no contrasting terms)'}</p>")
            if item["captions"]:
                parts.append("<ul>")
                parts.extend(f"<li>{e(c['id'])}: {e(c['caption'])}</li>" for c in item["captions"])
                parts.append("</ul>")
        parts.extend(f"<p><i>{e(str(note))}</i></p>" for note in d.get("notes", []))
        parts.append("</div>")
        return "\n".join(parts)

    def discovered_html(self) -> str:
        """Static HTML table of the discovered slices (every string escaped)."""
        e = html.escape
        if not self.discovered:
            return "<p>no discovered slices</p>"
        rows = [
            "<table><tr><th>discovered slice</th><th>method</th><th>images</th>"
            "<th>error rate (95% CI)</th><th>lift</th><th>description</th></tr>"
        ]
        for sl in self.discovered:
            desc = "; ".join(
                f"{e(d['source'])}: {e(', '.join(d['terms']))}" for d in sl["descriptions"]
            )
            rows.append(
                f"<tr><td>{e(sl['name'])}</td><td>{e(sl['method'])}</td><td>{sl['size']}</td>"
                f"<td>{_pct(sl['error_rate'])} ({_pct(sl['ci_low'])}–{_pct(sl['ci_high'])})</td>"
                f"<td>{_num(sl['lift'])}</td><td>{desc}</td></tr>"
            )
        rows.append("</table>")
        return "\n".join(rows)

    # ------------------------------------------------------------------ messages from JS

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: list[bytes]) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        try:
            if kind == "thumbs":
                self._send_thumbs(list(content.get("rows", [])))
            elif kind == "inspect":
                row = int(content["row"])
                self._check_row(row)
                png, err = [], ""
                if content.get("req") != -1:  # -1: the tooltip of a hover while pinned, no image
                    try:
                        png = [self.thumbnail(row, 320)]
                    except Exception as exc:  # one unreadable image must not break the view
                        png, err = [b""], f"cannot show this image: {exc}"
                self.send(
                    {"type": "inspect", "req": content.get("req"), "row": row,
                     "info": self.row_info(row), "error": err},
                    buffers=png,
                )  # fmt: skip
            elif kind == "slice":
                self._slice_action(content)
            elif kind == "describe":
                # a failure is already in `status` and `descriptions["error"]`
                with contextlib.suppress(Exception):
                    self.describe_selection()
            elif kind == "find_slices":
                n_slices = int(content.get("n_slices", 5))
                self.find_slices(n_slices, method=str(content.get("method", "mixture")))
        except Exception as exc:  # report to the status bar instead of losing it
            self.status = f"{kind}: {exc}"

    def _check_row(self, row: int) -> None:
        if not 0 <= row < self.n_points:
            msg = f"row {row} out of range 0..{self.n_points - 1}"
            raise IndexError(msg)

    def _send_thumbs(self, rows: list[Any], limit: int = 500) -> None:
        """Answer a ``thumbs`` request: one buffer and one error text per requested row, in order,
        so the view can settle every tile it waits for (an empty buffer + error for a bad row)."""
        buffers, errors, bad = [], [], 0
        for k, r in enumerate(rows):
            try:
                if k >= limit:
                    msg = f"not sent: at most {limit} thumbnails per request"
                    raise ValueError(msg)
                self._check_row(int(r))
                buffers.append(self.thumbnail(int(r)))
                errors.append("")
            except Exception as exc:  # one bad row or unreadable image must not break the page
                buffers.append(b"")
                errors.append(str(exc))
                bad += 1
        self.send({"type": "thumbs", "rows": rows, "errors": errors}, buffers=buffers)
        if bad:
            first = next(e for e in errors if e)
            self.status = f"thumbs: {bad} of {len(rows)} image(s) not sent ({first})"

    def _slice_action(self, content: dict) -> None:
        op, name = content.get("op"), content.get("name", "")
        if op == "save":
            self.save_slice(name)
        elif op == "load":
            self.load_slice(name)
        elif op == "delete":
            self.delete_slice(name)
        elif op == "export":
            path = self.export_slice(name, fmt=content.get("fmt", "csv"))
            self.status = self._noted(f"exported slice {name!r} to {path}")

    # ------------------------------------------------------------------ named slices

    @property
    def slices_path(self) -> Path | None:
        """Where slices are stored (``<analysis folder>/slices.json``), or None when in memory."""
        folder = self.analysis.folder
        return None if folder is None else Path(folder) / "slices.json"

    def _read_slices(self) -> dict[str, dict[str, Any]]:
        path = self.slices_path
        if path is None:
            return self._memory_slices
        stored: dict[str, dict[str, Any]] = {}
        if path.exists():
            data = read_json(path)
            if not isinstance(data, dict) or not isinstance(data.get("slices"), dict):
                msg = f"{path} is not a faultlens slices file (no 'slices' object)"
                raise ValueError(msg)
            stored = data["slices"]
        if self._memory_slices:  # kept before the analysis had a folder: move them into it
            stored = self._move_memory_slices(path, stored)
        return stored

    def _move_memory_slices(
        self, path: Path, stored: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Merge the slices kept in memory (saved while the analysis had no folder) into the
        folder's ``slices.json``, write it, and forget the memory copy. A slice of the same name
        and the same images is stored once; one with other images keeps its file name, and the
        memory one is stored under a new name (``<name>-unsaved``, …), said in ``status``."""
        merged = dict(stored)
        renamed = []
        for name, entry in self._memory_slices.items():
            old = merged.get(name)
            if old is None:
                merged[name] = entry
            elif (old.get("ids"), old.get("rows")) != (entry.get("ids"), entry.get("rows")):
                new = _free_slice_name(name, merged)
                merged[new] = entry
                renamed.append(f"{name!r} -> {new!r}")
        n = len(self._memory_slices)
        try:
            write_json(path, {"format": 1, "slices": merged})
        except OSError as exc:  # keep the memory copy: nothing is lost, try again next time
            self._slice_note = f"could not store {n} unsaved slice(s) in {path}: {exc}"
            self.status = self._slice_note
            return merged
        self._memory_slices = {}
        note = f"moved {n} slice(s) kept in memory into {path}"
        if renamed:
            note += f" (a different slice had the same name: {', '.join(renamed)})"
        self._slice_note = note
        self.status = note
        self.slices = _slice_list(merged)
        return merged

    def _noted(self, text: str) -> str:
        """``text``, after the note of moving the in-memory slices when there is one (once)."""
        note, self._slice_note = self._slice_note, ""
        return f"{note}; {text}" if note else text

    def _write_slices(self, slices: dict[str, dict[str, Any]]) -> None:
        path = self.slices_path
        if path is None:
            self._memory_slices = slices
        else:
            write_json(path, {"format": 1, "slices": slices})
            self._memory_slices = {}  # `slices` holds them all now
        self._refresh_slices(slices)

    def refresh_slices(self) -> None:
        """Re-read the saved slices, e.g. after ``analysis.save(folder)``: the slices kept in
        memory until then move into ``<folder>/slices.json``."""
        self._refresh_slices()

    def _refresh_slices(self, slices: dict[str, dict[str, Any]] | None = None) -> None:
        if slices is None:
            try:
                slices = self._read_slices()
            except (ValueError, OSError) as exc:
                self.status = f"cannot read saved slices: {exc}"
                slices = dict(self._memory_slices)
            self._slice_note = ""  # already in `status`
        self.slices = _slice_list(slices)

    def save_slice(self, name: str, rows: Any = None) -> None:
        """Save the selection (or ``rows``) under ``name`` in ``<folder>/slices.json`` (atomically).

        Without an analysis folder the slice is kept in memory only (save the analysis first to keep
        it). An existing slice of that name is replaced.
        """
        check_slice_name(name)
        sel = self._sel if rows is None else self._coerce_rows(rows)
        if len(sel) == 0:
            msg = "nothing to save: the selection is empty (draw a box or lasso on the map first)"
            raise ValueError(msg)
        slices = dict(self._read_slices())
        ids = self.analysis.table["id"].to_numpy()[sel.astype(np.intp)]
        slices[name] = {
            "rows": sel.astype(int).tolist(),
            "ids": [str(i) for i in ids],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self._write_slices(slices)
        where = self.slices_path or "memory (the analysis has no folder: analysis.save(folder))"
        self.status = self._noted(f"saved slice {name!r} ({len(sel)} images) in {where}")

    def slice_rows(self, name: str) -> np.ndarray:
        """Row indices of the saved slice ``name`` (matched by image id when ids are stored)."""
        check_slice_name(name)
        slices = self._read_slices()
        if name not in slices:
            msg = f"no slice named {name!r}; saved slices: {sorted(slices)}"
            raise KeyError(msg)
        entry = slices[name]
        rows = np.asarray(entry.get("rows", []), dtype=np.int64)
        ids = entry.get("ids")
        table_ids = self.analysis.table["id"].astype(str).to_numpy()
        in_range = len(rows) == 0 or (rows.min() >= 0 and rows.max() < self.n_points)
        if ids is not None and not (in_range and np.array_equal(table_ids[rows], np.asarray(ids))):
            pos = pd.Index(table_ids).get_indexer(ids)
            lost = int((pos < 0).sum())
            if lost:
                self.status = f"slice {name!r}: {lost} image id(s) are no longer in the table"
            rows = pos[pos >= 0]
        elif not in_range:
            msg = f"slice {name!r} refers to rows outside this table"
            raise ValueError(msg)
        return np.unique(rows).astype(np.uint32)

    def load_slice(self, name: str) -> np.ndarray:
        """Select the saved slice ``name``; returns the selection."""
        rows = self.slice_rows(name)
        self._set_selection(rows, source="slice", push=True)
        self.status = self._noted(f"loaded slice {name!r} ({len(rows)} images)")
        return self.selection

    def delete_slice(self, name: str) -> None:
        """Delete the saved slice ``name``."""
        check_slice_name(name)
        slices = dict(self._read_slices())
        if name not in slices:
            msg = f"no slice named {name!r}; saved slices: {sorted(slices)}"
            raise KeyError(msg)
        del slices[name]
        self._write_slices(slices)
        self.status = self._noted(f"deleted slice {name!r}")

    def slice_frame(self, name: str) -> pd.DataFrame:
        """``row`` (the table row), then ``id``, ``path``, ``label``/``label_name``,
        ``pred``/``pred_name``, ``confidence``, ``loss`` and ``correct`` of the saved slice
        ``name``."""
        rows = self.slice_rows(name).astype(np.intp)
        cols = [c for c in ("id", "path", "label", "label_name", "pred", "pred_name", "confidence",
                            "loss", "correct") if c in self.analysis.table.columns]  # fmt: skip
        frame = self.analysis.table.iloc[rows][cols].copy()
        frame.insert(0, "row", rows)
        return frame.reset_index(drop=True)

    def export_slice(
        self, name: str, path: str | Path | None = None, *, fmt: str | None = None
    ) -> Path:
        """Write the slice ``name`` to CSV or parquet (by ``fmt`` or the suffix of ``path``).

        Default path: ``<analysis folder>/slices/<name>.<fmt>``.
        """
        check_slice_name(name)
        if path is None:
            fmt = fmt or "csv"
            if self.analysis.folder is None:
                msg = "the analysis has no folder: pass path= or save the analysis first"
                raise ValueError(msg)
            path = Path(self.analysis.folder) / "slices" / f"{name}.{fmt}"
        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".").lower()
        if fmt not in ("csv", "parquet"):
            msg = f"export format must be 'csv' or 'parquet', got {fmt!r}"
            raise ValueError(msg)
        frame = self.slice_frame(name)
        from faultlens.store import atomic_path

        with atomic_path(path) as tmp:
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
        return path

    # ------------------------------------------------------------------ static output

    def render_png(self, width: int = 720, height: int = 480) -> bytes:
        """A PNG of the map as currently coloured, filtered and selected (made with PIL)."""
        codes, info = self._color_cache[self.color_by]
        pal = _palette_rgb(info)
        x = np.frombuffer(self._x, dtype="<f4")
        y = np.frombuffer(self._y, dtype="<f4")
        if not self._placed.all():  # NaN for points without a position: not drawn (ok is False)
            x = np.where(self._placed, x, np.float32(0))
            y = np.where(self._placed, y, np.float32(0))
        legend_w = 170
        w_map = max(64, width - legend_w)
        img = np.full((height, width, 3), 255, dtype=np.uint8)
        ok = self._placed & self._visible_mask
        if ok.any():
            x0, x1 = float(x[self._placed].min()), float(x[self._placed].max())
            y0, y1 = float(y[self._placed].min()), float(y[self._placed].max())
            pad = 12
            sx = (w_map - 2 * pad) / max(x1 - x0, 1e-9)
            sy = (height - 2 * pad) / max(y1 - y0, 1e-9)
            s = min(sx, sy)
            ox = pad + (w_map - 2 * pad - s * (x1 - x0)) / 2
            oy = pad + (height - 2 * pad - s * (y1 - y0)) / 2
            px = (ox + (x - x0) * s).astype(np.int64)
            py = (height - 1 - (oy + (y - y0) * s)).astype(np.int64)
            selected = np.zeros(self.n_points, dtype=bool)
            selected[self._sel.astype(np.intp)] = True
            r = 1 if self.n_points > 20000 else 2
            layers = [ok & ~selected, ok & selected] if len(self._sel) else [ok]
            for li, layer in enumerate(layers):
                idx = np.flatnonzero(layer)
                colors = pal[codes[idx]]
                if len(self._sel) and li == 0:
                    colors = (colors.astype(np.uint16) + 2 * 235) // 3  # dim the unselected
                for dx in range(r):
                    for dy in range(r):
                        cx = np.clip(px[idx] + dx, 0, w_map - 1)
                        cy = np.clip(py[idx] + dy, 0, height - 1)
                        img[cy, cx] = colors
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        lx = w_map + 8
        draw.text((lx, 8), f"colour: {self.color_by}"[:26], fill=(0, 0, 0))
        if info["kind"] == "category":
            for i, label in enumerate(info["labels"][:24]):
                yy = 28 + 16 * i
                draw.rectangle([lx, yy + 2, lx + 10, yy + 12], fill=tuple(pal[i].tolist()))
                draw.text((lx + 16, yy), str(label)[:22], fill=(0, 0, 0))
        else:
            for i in range(200):
                code = 254 - int(i * 254 / 199)
                draw.line([lx, 28 + i, lx + 14, 28 + i], fill=tuple(pal[code].tolist()))
            draw.text((lx + 20, 26), f"{info.get('vmax') or 0:.3g}", fill=(0, 0, 0))
            draw.text((lx + 20, 218), f"{info.get('vmin') or 0:.3g}", fill=(0, 0, 0))
        draw.text((8, height - 16), f"{len(self._visible_rows)} of {self.n_points} shown, "
                  f"{len(self._sel)} selected", fill=(60, 60, 60))  # fmt: skip
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        return buf.getvalue()

    def summary_html(self, png: bytes | None = None) -> str:
        """Static HTML: the map image, the selection statistics and the saved slices (escaped)."""
        e = html.escape
        png = self.render_png() if png is None else png
        s = self.stats.get("selection", {})
        parts = [
            '<div class="faultlens-static">',
            f"<p><b>faultlens Explorer</b> — {self.n_points} images, "
            f"{len(self.class_names)} classes: {e(', '.join(self.class_names[:20]))}</p>",
            f'<img alt="faultlens map coloured by {e(self.color_by)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}"/>',
        ]
        if s.get("n"):
            parts.append(
                f"<p>selection: {s['n']} images, error rate {s['error_rate']:.1%} "
                f"(95% CI {s['ci_low']:.1%}–{s['ci_high']:.1%})</p>"
            )
        if self.slices:
            parts.append("<table><tr><th>slice</th><th>images</th><th>created</th></tr>")
            parts.extend(
                f"<tr><td>{e(str(sl['name']))}</td><td>{int(sl['n'])}</td>"
                f"<td>{e(str(sl['created']))}</td></tr>"
                for sl in self.slices
            )
            parts.append("</table>")
        else:
            parts.append("<p>no saved slices</p>")
        if self.discovered:
            parts.append(self.discovered_html())
        if self.descriptions:
            parts.append(self.description_html())
        parts.append("</div>")
        return "\n".join(parts)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, meta = bundle if isinstance(bundle, tuple) else (bundle, {})
        try:
            png = self.render_png()
            data["image/png"] = base64.b64encode(png).decode()
            data["text/html"] = self.summary_html(png)
        except Exception as exc:  # the live widget matters more than the static copy
            data["text/plain"] = f"{data.get('text/plain', '')} (static image failed: {exc})"
        return data, meta


def _read_columns(table: pd.DataFrame, n_classes: int) -> dict[str, np.ndarray]:
    """The per-row arrays the explorer caches (labels, preds, correct, confidence, map position),
    checked. A point without a finite x and y is not placed: both its x and y become NaN, so the
    view never sees an infinity (which would blow up its bounds)."""
    with np.errstate(over="ignore"):  # beyond float32: inf, so not placed
        x = table["x"].to_numpy(dtype=np.float32, na_value=np.nan)
        y = table["y"].to_numpy(dtype=np.float32, na_value=np.nan)
    placed = np.isfinite(x) & np.isfinite(y)
    if not placed.any():
        msg = (
            "this analysis has no 2-D map (x/y are all NaN): compute a projection, e.g. "
            "faultlens.analysis.projection.project(analysis.embeddings), and store it in "
            "analysis.table['x'] / ['y']"
        )
        raise ValueError(msg)
    labels = table["label"].to_numpy()
    preds = table["pred"].to_numpy()
    for name, arr in (("label", labels), ("pred", preds)):
        if len(arr) and (arr.min() < 0 or arr.max() >= n_classes):
            msg = f"table column {name!r} has values outside 0..{n_classes - 1} (class_names)"
            raise ValueError(msg)
    return {
        "x": np.where(placed, x, np.float32(np.nan)).astype("<f4"),
        "y": np.where(placed, y, np.float32(np.nan)).astype("<f4"),
        "placed": placed,
        "labels": labels.astype(np.int32),
        "preds": preds.astype(np.int32),
        "correct": table["correct"].to_numpy(dtype=bool),
        "conf": table["confidence"].to_numpy(dtype=np.float32),
    }


def _slice_list(slices: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``slices`` trait: name, size and creation time of each saved slice, by name."""
    return [
        {"name": k, "n": len(v.get("rows", [])), "created": v.get("created", "")}
        for k, v in sorted(slices.items())
    ]


def _free_slice_name(name: str, taken: dict[str, Any]) -> str:
    """A valid slice name like ``name`` that is not in ``taken``: ``<name>-unsaved``, then
    ``<name>-unsaved-2``, … (shortened to stay within 64 characters)."""
    for k in range(1, 10_000):
        suffix = "-unsaved" if k == 1 else f"-unsaved-{k}"
        new = name[: 64 - len(suffix)].rstrip() + suffix
        if new not in taken:
            return new
    msg = f"no free name for slice {name!r}"
    raise ValueError(msg)


def _rows_hash(rows: np.ndarray) -> str:
    """A short digest of sorted unique row indices (to tell whether a description is current)."""
    data = np.ascontiguousarray(rows, dtype="<u4").tobytes()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def encode_slices(found: Sequence[Any], n: int) -> tuple[np.ndarray, dict]:
    """Colour codes by discovered slice: code ``i`` for the slice with the largest membership when
    that membership is >= 0.5, code ``len(found)`` ("none") otherwise."""
    k = len(found)
    if k > 254:
        msg = f"cannot colour by {k} slices: at most 254"
        raise ValueError(msg)
    codes = np.full(n, k, dtype=np.uint8)
    if k:
        M = np.stack([np.asarray(s.membership, dtype=np.float32) for s in found], axis=1)
        best = M.argmax(axis=1)
        inside = M[np.arange(n), best] >= 0.5
        codes[inside] = best[inside].astype(np.uint8)
    labels = [str(s.name) for s in found] + ["none"]
    colors = [_hex(CATEGORICAL[i % len(CATEGORICAL)]) for i in range(k)] + [_hex(MISSING_COLOR)]
    return codes, {"kind": "category", "column": SLICE_COLOR, "labels": labels, "colors": colors}


def _description_items(descriptions: Any) -> list[Any]:
    """The Description objects in a Slice's ``descriptions`` (a dict with ``items``, a dict keyed by
    source, or a list)."""
    if not descriptions:
        return []
    if isinstance(descriptions, dict):
        vals = descriptions.get("items", list(descriptions.values()))
    else:
        vals = list(descriptions)
    return [d for d in vals if hasattr(d, "source") and hasattr(d, "terms")]


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}%"


def _num(v: Any) -> str:
    return "–" if v is None else f"{float(v):.2f}"


def _sorted_unique(rows: np.ndarray, n: int) -> np.ndarray:
    """Sorted unique uint32 row indices; O(1) extra work when already strictly increasing (as the
    front end sends them), else a mask pass (np.unique's hash path is ~10x slower at 10⁶)."""
    rows = np.asarray(rows)
    if len(rows) < 2 or bool(np.all(rows[1:] > rows[:-1])):
        return rows.astype(np.uint32)
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return np.flatnonzero(mask).astype(np.uint32)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    return None if v is None else str(v)
