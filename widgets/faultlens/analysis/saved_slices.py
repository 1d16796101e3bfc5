"""Saved slices: named sets of rows a user keeps beside an analysis, in ``<folder>/slices.json``
(atomic writes), held in memory while the analysis has no folder and moved into the folder's file
once it has one. Widget-free: the Explorer holds one as ``explorer.saved``, the report reads one.

A slice stores its rows and its image ids; reading it back follows the ids when the table's
order changed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from faultlens.store import atomic_path, read_json, write_json

_SLICE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9 _.\-]{0,63}$")
_FRAME_COLUMNS = ("id", "path", "label", "label_name", "pred", "pred_name", "confidence", "loss",
                  "correct")  # fmt: skip


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


class SavedSlices:
    """The saved slices of ``analysis``.

    ``notes`` collects what a reader should be told (slices moved from memory into the folder,
    image ids no longer in the table); :meth:`pop_notes` takes them. Callbacks registered with
    :meth:`on_change` are called with a sentence saying what changed after every save, delete,
    export and refresh (the Explorer refreshes its list and status bar with it).
    """

    def __init__(self, analysis: Any) -> None:
        self.analysis = analysis
        self._memory: dict[str, dict[str, Any]] = {}
        self._listeners: list[Callable[[str], Any]] = []
        self.notes: list[str] = []

    def __repr__(self) -> str:
        return f"<faultlens.SavedSlices: {len(self.names())} in {self.path or 'memory'}>"

    @property
    def path(self) -> Path | None:
        """``<analysis folder>/slices.json``, or None while the analysis has no folder."""
        folder = self.analysis.folder
        return None if folder is None else Path(folder) / "slices.json"

    def on_change(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(what_changed)`` after every save, delete, export and refresh."""
        self._listeners.append(callback)

    def _changed(self, text: str) -> None:
        for callback in list(self._listeners):
            callback(text)

    def refresh(self) -> None:
        """Read the saved slices again, e.g. after ``analysis.save(folder)``: the slices kept in
        memory until then move into ``<folder>/slices.json``."""
        self._changed("")

    def names(self) -> list[str]:
        """The saved slices' names, sorted."""
        return sorted(self._read())

    def summary(self) -> list[dict[str, Any]]:
        """``{name, n, created}`` of each saved slice, by name."""
        return [
            {"name": k, "n": len(v.get("rows", [])), "created": v.get("created", "")}
            for k, v in sorted(self._read().items())
        ]

    def pop_notes(self) -> str:
        """The notes since the last call, joined by ``"; "`` (empty when none)."""
        text, self.notes = "; ".join(self.notes), []
        return text

    def save(self, name: str, rows: np.ndarray) -> None:
        """Store ``rows`` (table row indices) under ``name``, replacing a slice of that name."""
        check_slice_name(name)
        rows = np.asarray(rows, dtype=np.int64)
        slices = dict(self._read())
        ids = self.analysis.table["id"].to_numpy()[rows]
        slices[name] = {
            "rows": rows.tolist(),
            "ids": [str(i) for i in ids],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self._write(slices)
        where = self.path or "memory (the analysis has no folder: analysis.save(folder))"
        self._changed(f"saved slice {name!r} ({len(rows)} images) in {where}")

    def rows(self, name: str) -> np.ndarray:
        """Row indices (sorted uint32) of the saved slice ``name``, matched by image id when the
        table's rows moved; ids no longer in the table are dropped and noted."""
        entry = self._entry(name)
        rows = np.asarray(entry.get("rows", []), dtype=np.int64)
        ids = entry.get("ids")
        table_ids = self.analysis.table["id"].astype(str).to_numpy()
        n = len(table_ids)
        in_range = len(rows) == 0 or (rows.min() >= 0 and rows.max() < n)
        if ids is not None and not (in_range and np.array_equal(table_ids[rows], np.asarray(ids))):
            pos = pd.Index(table_ids).get_indexer(ids)
            lost = int((pos < 0).sum())
            if lost:
                self.notes.append(f"slice {name!r}: {lost} image id(s) are no longer in the table")
            rows = pos[pos >= 0]
        elif not in_range:
            msg = f"slice {name!r} refers to rows outside this table"
            raise ValueError(msg)
        return np.unique(rows).astype(np.uint32)

    def delete(self, name: str) -> None:
        """Delete the saved slice ``name``."""
        self._entry(name)
        slices = dict(self._read())
        del slices[name]
        self._write(slices)
        self._changed(f"deleted slice {name!r}")

    def frame(self, name: str) -> pd.DataFrame:
        """``row`` (the table row), then ``id``, ``path``, ``label``/``label_name``,
        ``pred``/``pred_name``, ``confidence``, ``loss`` and ``correct`` of the slice ``name``."""
        rows = self.rows(name).astype(np.intp)
        table = self.analysis.table
        frame = table.iloc[rows][[c for c in _FRAME_COLUMNS if c in table.columns]].copy()
        frame.insert(0, "row", rows)
        return frame.reset_index(drop=True)

    def export(self, name: str, path: str | Path | None = None, *, fmt: str | None = None) -> Path:
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
        frame = self.frame(name)
        with atomic_path(path) as tmp:
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
        self._changed(f"exported slice {name!r} to {path}")
        return path

    # ------------------------------------------------------------------ storage

    def _entry(self, name: str) -> dict[str, Any]:
        check_slice_name(name)
        slices = self._read()
        if name not in slices:
            msg = f"no slice named {name!r}; saved slices: {sorted(slices)}"
            raise KeyError(msg)
        return slices[name]

    def _read(self) -> dict[str, dict[str, Any]]:
        path = self.path
        if path is None:
            return self._memory
        stored: dict[str, dict[str, Any]] = {}
        if path.exists():
            data = read_json(path)
            if not isinstance(data, dict) or not isinstance(data.get("slices"), dict):
                msg = f"{path} is not a faultlens slices file (no 'slices' object)"
                raise ValueError(msg)
            stored = data["slices"]
        if self._memory:  # kept before the analysis had a folder: move them into it
            stored = self._move_memory(path, stored)
        return stored

    def _move_memory(self, path: Path, stored: dict[str, dict[str, Any]]) -> dict[str, dict]:
        """Merge the slices kept in memory into the folder's file, write it, and forget the memory
        copy. A slice of the same name and the same images is stored once; one with other images
        keeps its file name, and the memory one is stored as ``<name>-unsaved`` (…), noted."""
        merged = dict(stored)
        renamed = []
        for name, entry in self._memory.items():
            old = merged.get(name)
            if old is None:
                merged[name] = entry
            elif (old.get("ids"), old.get("rows")) != (entry.get("ids"), entry.get("rows")):
                new = _free_slice_name(name, merged)
                merged[new] = entry
                renamed.append(f"{name!r} -> {new!r}")
        n = len(self._memory)
        try:
            write_json(path, {"format": 1, "slices": merged})
        except OSError as exc:  # keep the memory copy: nothing is lost, try again next time
            self.notes.append(f"could not store {n} unsaved slice(s) in {path}: {exc}")
            return merged
        self._memory = {}
        note = f"moved {n} slice(s) kept in memory into {path}"
        if renamed:
            note += f" (a different slice had the same name: {', '.join(renamed)})"
        self.notes.append(note)
        return merged

    def _write(self, slices: dict[str, dict[str, Any]]) -> None:
        path = self.path
        if path is None:
            self._memory = slices
        else:
            write_json(path, {"format": 1, "slices": slices})
            self._memory = {}  # `slices` holds them all now


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
