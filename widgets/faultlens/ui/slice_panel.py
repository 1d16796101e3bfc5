"""The Explorer's slice panel: saved slices, discovered slices and descriptions of a selection.

:class:`SlicePanel` holds the panel's traits and commands; the Explorer mixes it in. What it needs of
its host (the Explorer) is small and named here: ``analysis``, ``n_points``, ``selection``,
``status``, ``_push_selection(rows, source=)`` (selects rows as the front end does),
``_update_grid()`` (redraws the tiles, which show captions) and ``_slices_recoloured(found)`` (the map's
"slice" colour follows the discovered slices; returns a note for the status bar). Saved slices live
in the analysis's records store (:class:`~faultlens.analysis.record_views.SavedSlices`).

Finding slices and describing run as the widget's one job (:class:`~faultlens.ui.tasks.Tasks`): the
view shows their progress and can cancel them between batches (a slice described, a batch of
captions); started from the view they run in a worker thread, called from Python they return
their result as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import traitlets as t

from faultlens.analysis.record_views import SavedSlices
from faultlens.analysis.records import check_slice_name
from faultlens.ui.evidence import evidence_commands
from faultlens.ui.rows import coerce_rows, rows_hash, sorted_unique
from faultlens.ui.state import (
    check_memberships,
    describe_slice,
    description_state,
    discovered_row,
    find_discovered,
)
from faultlens.ui.tasks import Cancelled, Progress, Tasks


class SlicePanel(Tasks):
    """Saved slices, discovered slices and the description of the selection (a mixin of the
    Explorer; see the module's docstring for what it needs of its host)."""

    saved_slices = t.List(
        t.Dict(), help="Python writes: saved slices (name, n, created); see `saved`."
    ).tag(sync=True)
    discovered = t.List(
        t.Dict(),
        help="Python writes: discovered slices, one dict each (index, name, method, size, errors, "
        "error_rate, ci_low, ci_high, lift, color, descriptions: [{source, terms}]).",
    ).tag(sync=True)
    active_slice = t.Int(
        -1, help="Python writes: index into `discovered` of the slice now selected, -1 for none."
    ).tag(sync=True)
    descriptions = t.Dict(
        help="Python writes: the last description of a selection: {n, rows_hash (of the described "
        "rows), stale (True once the selection no longer is those rows), items: [{source, terms: "
        "[[term, score]], captions: [{row, id, caption}]}], notes, error}."
    ).tag(sync=True)
    describing = t.Bool(
        False, help="Python writes: True while a description is being computed (JS shows progress)."
    ).tag(sync=True)
    # ------------------------------------------------------------------ set up by the host

    def _init_slice_panel(self, captioner: Any, text_encoder: Any, phrases: Sequence[str]) -> None:
        self._init_tasks()
        #: The saved slices (``<folder>/slices.json``, in memory while there is no folder): names,
        #: rows, frame, export, delete, refresh; ``saved_slices`` and the status bar follow them.
        self.saved = _ShownSlices(self.analysis, self._show_saved)
        #: Captioner / CLIP text encoder / extra phrases used by :meth:`describe_selection`.
        self.captioner = captioner
        self.text_encoder = text_encoder
        self.phrases = tuple(phrases)
        self._found: list[Any] = []
        self._captions: dict[int, str] = {}  # row -> caption of the last description
        #: The (descriptions, notes) of the last :meth:`describe_selection`.
        self.last_description: tuple[list[Any], list[str]] | None = None

    def _watch_saved(self) -> None:
        """Follow the saved-slices file: another widget's or kernel's write refreshes the list."""
        self.saved.store.watch()
        self.saved.store.on_change(self._show_saved)

    def _slice_panel_commands(self) -> dict[str, Callable[[dict], Any]]:
        """The front end's commands this panel answers (``{type: handler}``)."""
        return {
            "slice": self._saved_slice_action,
            "select_slice": lambda c: self.select_discovered(int(c["index"])),
            "describe": self._describe_from_view,
            "find_slices": lambda c: self.start_task(
                "finding slices",
                lambda p: self._find_slices(
                    p, int(c.get("n_slices", 5)), c.get("method"), True, {}
                ),
            ),
            **self._task_commands(),
            **evidence_commands(self),
        }

    # ------------------------------------------------------------------ discovered slices

    @property
    def discovered_slices(self) -> list[Any]:
        """The discovered :class:`~faultlens.analysis.slices.Slice` objects shown in the panel."""
        return list(self._found)

    def find_slices(
        self, n_slices: int = 5, method: str | None = None, *, describe: bool = True, **opts: Any
    ) -> list[Any]:
        """Discover failure slices with ``analysis.find_slices(n_slices, method, **opts)``, show them
        in the slice panel and offer ``"slice"`` as a colour; returns the slices.

        With ``describe`` each slice is described (``analysis.describe`` with this explorer's
        captioner / text encoder; ImageNet tags when the analysis has ``imagenet_logits``) unless it
        already carries descriptions. ``task`` shows the progress; a cancel (or a kernel interrupt)
        after the fit shows the slices found, with the descriptions finished so far.
        """
        return self.run_task(
            "finding slices", lambda p: self._find_slices(p, n_slices, method, describe, opts)
        )

    def _find_slices(
        self, progress: Progress, n_slices: int, method: str | None, describe: bool, opts: dict
    ) -> list[Any]:
        how = method or "the default method"
        self.status = f"finding {n_slices} slices ({how})…"
        progress(0, 0, f"fitting {how} for {n_slices} slices")
        try:
            found = self.analysis.find_slices(n_slices, method, **opts)
        except Exception as exc:
            self.status = f"finding slices failed: {exc}"
            raise
        self.set_discovered(found, describe=describe)
        return found

    def set_discovered(self, found: Sequence[Any], *, describe: bool = False) -> None:
        """Show ``found`` (discovered :class:`Slice` objects) in the slice panel; with
        ``describe``, describe those without descriptions first (a job with progress: on cancel
        the slices are shown with the descriptions finished so far)."""
        found = check_memberships(found, self.n_points)
        if describe:
            self.run_task("describing slices", lambda p: self._describe_found(p, found))
        else:
            self._show_discovered(found)

    def _describe_found(self, progress: Progress, found: list[Any]) -> None:
        todo = [sl for sl in found if not sl.descriptions]
        done = 0
        try:
            for i, sl in enumerate(todo):
                text = f"describing slice {i + 1}/{len(todo)}"
                self.status = f"{text}…"
                step = progress.part(i, len(todo), text)
                step(0, 0)  # a cancel asked for during the fit stops here
                sl.descriptions = describe_slice(
                    self.analysis, sl, captioner=self.captioner, text_encoder=self.text_encoder,
                    phrases=self.phrases, progress=step,
                )  # fmt: skip
                done += 1
        except (Cancelled, KeyboardInterrupt) as exc:
            self._show_discovered(found)
            if isinstance(exc, Cancelled):
                kept = f"{len(found)} slices shown, {done} of {len(todo)} described"
                raise Cancelled(kept) from None
            raise
        self._show_discovered(found)

    def _show_discovered(self, found: list[Any]) -> None:
        self._found = found
        with self.hold_sync():
            self.active_slice = -1
            self.discovered = [discovered_row(i, sl) for i, sl in enumerate(found)]
            self.status = self._slices_recoloured(found)

    def select_discovered(self, which: int | str) -> np.ndarray:
        """Select the members of the discovered slice ``which`` (index or name), as a row click
        does; returns the selection."""
        sl = find_discovered(self._found, which)
        rows = sorted_unique(np.asarray(sl.indices, dtype=np.int64), self.n_points)
        self._push_selection(rows, source="discovered")
        self.active_slice = self._found.index(sl)
        self.status = f"selected {sl.name} ({len(rows)} images)"
        return self.selection

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

        ``status`` says "describing…" while it runs and ``task`` shows the captioning's progress;
        an error goes to ``status`` and ``descriptions["error"]`` and is raised; the selection is
        kept. A cancel (or a kernel interrupt) keeps the previous description as it was.
        """
        return self.run_task(
            "describing", lambda p: self._describe(p, captioner, text_encoder, phrases, rows)
        )

    def _describe(
        self, progress: Progress, captioner: Any, text_encoder: Any, phrases: Sequence[str],
        rows: Any,
    ) -> tuple[list[Any], list[str]]:  # fmt: skip
        captioner = self.captioner if captioner is None else captioner
        text_encoder = self.text_encoder if text_encoder is None else text_encoder
        phrases = tuple(phrases) or self.phrases
        sel = self.selection if rows is None else coerce_rows(rows, self.n_points)
        n = len(sel)
        described = {"n": n, "rows_hash": rows_hash(sel),
                     "stale": not np.array_equal(sel, self.selection)}  # fmt: skip
        # sent to the view at once (not held), so the front end shows progress first
        self.describing = True
        what = f" with {captioner.name}" if hasattr(captioner, "name") else ""
        self.status = f"describing {n} images{what}…"
        try:
            descs, notes = self.analysis.describe(
                sel.astype(np.int64), captioner=captioner, text_encoder=text_encoder,
                phrases=phrases, progress=progress.part(0, 1, f"captioning{what}"),
            )  # fmt: skip
        except (Cancelled, KeyboardInterrupt) as exc:
            self.describing = False
            if isinstance(exc, Cancelled):
                raise Cancelled("the previous description is kept") from None
            raise
        except Exception as exc:
            with self.hold_sync():
                self.describing = False
                self.descriptions = {**described, "items": [], "notes": [], "error": str(exc)}
                self.status = f"describe failed: {exc}"
            raise
        self.last_description = (descs, notes)
        items, self._captions = description_state(descs, self.analysis.table["id"])
        with self.hold_sync():
            self.descriptions = {**described, "items": items,
                                 "notes": [str(x) for x in notes], "error": ""}  # fmt: skip
            self.describing = False
            self._update_grid()
            sources = ", ".join(d["source"] for d in items) or "no description"
            self.status = f"described {n} images: {sources}"
        return descs, notes

    def _describe_from_view(self, _content: dict) -> None:
        job = lambda p: self._describe(p, None, None, (), None)  # noqa: E731
        if self.start_task("describing", job) is None:  # refused: another job runs
            self.describing = True  # the view's button, disabled on click, comes back
            self.describing = False

    def _mark_description_stale(self) -> None:
        """Flag the shown description ``stale`` when the selection is no longer the rows it
        described (and unflag it when the user selects those rows again)."""
        d = self.descriptions
        if not d or "rows_hash" not in d:
            return
        sel = self.selection
        same = d.get("n") == len(sel) and d["rows_hash"] == rows_hash(sel)
        if bool(d.get("stale")) != (not same):
            self.descriptions = {**d, "stale": not same}

    # ------------------------------------------------------------------ saved slices

    def _saved_slice_action(self, content: dict) -> None:
        op, name = content.get("op"), content.get("name", "")
        if op == "save":
            self.save_slice(name)
        elif op == "load":
            self.load_slice(name)
        elif op == "delete":
            self.saved.delete(name)
        elif op == "export":
            self.saved.export(name, fmt=content.get("fmt", "csv"))

    def _show_saved(self, text: str = "") -> None:
        """Refresh ``saved_slices`` and say ``text`` in the status bar, after what the store
        noted (slices moved into the folder, ids lost); a read error goes there too."""
        try:
            self.saved_slices = self.saved.listing()
        except (ValueError, OSError) as exc:
            text = f"cannot read saved slices: {exc}"
        text = self.saved.store.noted(text)
        if text:
            self.status = text

    def save_slice(self, name: str, rows: Any = None) -> None:
        """Save the selection (or ``rows``) under ``name`` in ``<folder>/slices.json`` (see
        :attr:`saved`).

        Without an analysis folder the slice is kept in memory only (save the analysis first to keep
        it). An existing slice of that name is replaced.
        """
        check_slice_name(name)
        sel = self.selection if rows is None else coerce_rows(rows, self.n_points)
        if len(sel) == 0:
            msg = "nothing to save: the selection is empty (draw a box or lasso on the map first)"
            raise ValueError(msg)
        self.saved.save(name, sel)  # the list and the status bar follow

    def load_slice(self, name: str) -> np.ndarray:
        """Select the saved slice ``name``; returns the selection."""
        rows = self.saved.rows(name)
        self._push_selection(rows, source="slice")
        self._show_saved(f"loaded slice {name!r} ({len(rows)} images)")
        return self.selection


class _ShownSlices(SavedSlices):
    """The analysis's saved slices (:class:`~faultlens.analysis.record_views.SavedSlices`) as the
    Explorer holds them: after every save, delete, export or :meth:`refresh`, ``show(text)``
    refreshes the widget's list and status bar."""

    def __init__(self, analysis: Any, show: Callable[[str], None]) -> None:
        super().__init__(analysis)
        self._show = show

    def save(self, name: str, rows: Any, **meta: Any) -> str:
        text = super().save(name, rows, **meta)
        self._show(text)
        return text

    def delete(self, name: str) -> str:
        text = super().delete(name)
        self._show(text)
        return text

    def export(self, name: str, path: str | Path | None = None, *, fmt: str | None = None) -> Path:
        out = super().export(name, path, fmt=fmt)
        self._show(f"exported slice {name!r} to {out}")
        return out

    def refresh(self) -> None:
        """Read the saved slices again, e.g. after ``analysis.save(folder)``: the slices kept in
        memory until then move into ``<folder>/slices.json``."""
        self._show("")
