"""The Explorer's selection: one set of rows, written from Python (:meth:`select`, a slice, a
search) or from a view (a box, a lasso, a clear), with the statistics and the grid page computed
for it and the callbacks of :meth:`observe_selection` run after it.

:class:`SelectionSync` is a mixin of the Explorer. On the wire, a view sends each of its selections
as a ``{type: "select", source, view}`` message carrying the rows as one uint32 buffer — a message,
not a trait update, because ipywidgets merges the trait updates a view makes while the kernel is
busy, and Python must see every selection, in order. Python applies each as :meth:`select` does:
it writes ``_selection``, ``_selection_source`` and an incremented ``_selection_counter`` (to every
view), then answers the view with ``{type: "selected", view}``; a view shows its own newest rows
until it has the answer to its last one.

The host provides ``n_points``, ``active_slice``, ``grid_page``, ``stats``, ``status`` and
``_compute_stats()``, ``_update_grid()``, ``_mark_description_stale()``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import traitlets as t
from ipywidgets import CallbackDispatcher

from faultlens.ui.rows import coerce_rows, sorted_unique
from faultlens.ui.traits import RowIndices, Selection

#: The view's selection tools (the ``source`` of a selection made on the map).
VIEW_TOOLS = ("box", "lasso")


class SelectionSync(t.HasTraits):
    """The selection traits, :meth:`select`, :meth:`observe_selection` and the view's messages (a
    mixin of the Explorer)."""

    # --- the selection (written by Python: on select(), and on each "select" message of a view) --
    selection = Selection(
        help="Python writes (not synced): the selected rows, a sorted unique read-only uint32 "
        "array, from _selection; assigning to it selects those rows (as select())."
    )
    _selection = RowIndices(
        help="Python writes: selected row indices as uint32 little-endian bytes (sorted, unique)."
    ).tag(sync=True)
    _selection_counter = t.Int(
        0, help="Python writes: incremented with every selection, so identical re-selections fire."
    ).tag(sync=True)
    _selection_source = t.Unicode(
        "", help="Python writes: what made the last selection (box, lasso, python, slice, search)."
    ).tag(sync=True)

    def _init_selection(self) -> None:
        """State the selection needs before the widget is set up."""
        self._selection_handlers = CallbackDispatcher()
        self._from_wire = False  # True while `selection` is set from `_selection`
        #: Messages of selection callbacks that raised (newest last).
        self.callback_errors: list[str] = []
        #: Milliseconds the last selection took in Python (statistics and grid page).
        self.last_latency_ms = math.nan

    def _watch_selection(self) -> None:
        """Start following the selection traits (after the widget's initial state is set)."""
        self.observe(self._on_selection_trait, names=["_selection_counter"])
        self.observe(self._on_selection_set, names=["selection"])

    def select(self, rows: Any) -> np.ndarray:
        """Select ``rows`` (row indices, a bool mask of length ``n_points``, or a pandas index/mask
        of the table); the map and grid show it. Returns the selection."""
        self._push_selection(coerce_rows(rows, self.n_points), source="python")
        return self.selection

    def clear_selection(self) -> None:
        """Select nothing."""
        self.select(np.zeros(0, dtype=np.intp))

    def observe_selection(self, callback: Callable[[np.ndarray], Any]) -> Callable[[], None]:
        """Call ``callback(selection)`` after every selection (from the map or from code), also a
        repeat of the same rows.

        Returns a function that removes the callback. Errors raised by the callback are shown in
        the widget's status bar and kept in :attr:`callback_errors` (they would be lost otherwise).
        """
        if not callable(callback):
            msg = f"observe_selection needs a callable, got {type(callback).__name__}"
            raise TypeError(msg)

        def guarded(sel: np.ndarray) -> None:
            try:
                callback(sel)
            except Exception as exc:  # user callbacks: report, never lose the selection
                text = f"selection callback {getattr(callback, '__name__', callback)!r} failed: {exc!r}"
                self.callback_errors.append(text)
                self.status = text

        self._selection_handlers.register_callback(guarded)
        return lambda: self._selection_handlers.register_callback(guarded, remove=True)

    def _push_selection(self, rows: np.ndarray, *, source: str) -> None:
        """Write ``rows`` to the selection traits (sent to every view); the counter runs the rest."""
        with self.hold_sync():
            self._selection_source = source
            self._selection = np.ascontiguousarray(rows, dtype="<u4").tobytes()
            self._selection_counter += 1  # runs _on_selection_trait

    def _on_selection_set(self, change: dict) -> None:
        if not self._from_wire:  # assigned from Python: as select()
            self._push_selection(change["new"], source="python")

    def _on_selection_trait(self, _change: dict) -> None:
        rows = sorted_unique(np.frombuffer(self._selection, dtype="<u4"), self.n_points)
        start = time.perf_counter()
        self._from_wire = True
        try:
            # observers of `selection` (changes only) run at the end of the block, when the
            # statistics and the grid already show the new rows
            with self.hold_sync(), self.hold_trait_notifications():
                if not np.array_equal(rows, self.selection):
                    self.selection = rows
                if self._selection_source != "discovered":
                    self.active_slice = -1
                self.grid_page = 0
                self.stats = self._compute_stats()
                self._update_grid()
                self._mark_description_stale()
        finally:
            self._from_wire = False
        self.last_latency_ms = (time.perf_counter() - start) * 1e3
        self._selection_handlers(self.selection)

    def _select_from_view(self, content: dict, buffers: list[bytes]) -> None:
        """A view's box, lasso or clear: ``{type: "select", source, view}`` with the rows as one
        uint32 buffer. Applied as :meth:`select` is (the traits go to every view), then answered
        with ``{type: "selected", view}`` even when it failed, so the view stops waiting."""
        try:
            source = content.get("source")
            rows = np.frombuffer(buffers[0], dtype="<u4") if buffers else np.empty(0, "<u4")
            self._push_selection(rows, source=source if source in VIEW_TOOLS else "view")
        finally:
            self.send({"type": "selected", "view": content.get("view")})
