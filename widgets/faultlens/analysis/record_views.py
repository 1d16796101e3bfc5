"""Typed views on the records store (:mod:`faultlens.analysis.records`): the saved slices and the
feature marks kept beside an analysis, as the widgets and the report use them (also without a
widget)."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from faultlens.analysis.records import (
    MARKS,
    MARKS_KIND,
    SLICE_COLUMNS,
    SLICES,
    RecordStore,
    check_slice_name,
)
from faultlens.store.files import atomic_path


class _RecordView:
    """One kind of record of the analysis's :class:`RecordStore` (``store``)."""

    kind: str

    def __init__(self, analysis: Any) -> None:
        self.analysis = analysis
        self.store = RecordStore(self.kind, analysis)

    @property
    def path(self) -> Path | None:
        """The records' file in the analysis folder, or None while they are kept in memory."""
        return self.store.path


def _export_path(path: str | Path | None, default_name: str) -> Path:
    """Where an export goes: ``path`` (``~`` expanded), or ``default_name`` in the working folder."""
    return Path.cwd() / default_name if path is None else Path(path).expanduser()


class SavedSlices(_RecordView):
    """Named sets of table rows saved beside an analysis (``slices.json``).

    Each entry stores the rows, the image ids (so a slice still finds its images when the table's
    rows move) and when it was created. ``analysis`` needs ``folder`` and ``table`` (with ``id``).
    """

    kind = SLICES

    def __repr__(self) -> str:
        return f"<SavedSlices {self.names()} at {self.path or 'memory'}>"

    def entries(self) -> dict[str, dict[str, Any]]:
        """The saved slices' entries by name (``rows``, ``ids``, ``created``, extra fields)."""
        return self.store.read()  # type: ignore[return-value]

    def names(self) -> list[str]:
        """The saved slices' names, sorted."""
        return sorted(self.store.read())  # type: ignore[arg-type]

    def listing(self) -> list[dict[str, Any]]:
        """Name, size and creation time of each saved slice, by name (the Explorer's list)."""
        return [
            {"name": k, "n": len(v.get("rows", v.get("ids", []))), "created": v.get("created", "")}
            for k, v in sorted(self.entries().items())
        ]

    def save(self, name: str, rows: Any, **meta: Any) -> str:
        """Save ``rows`` (table row indices) as the slice ``name``, replacing one of that name;
        ``meta`` adds JSON fields to the entry. Returns the status line."""
        check_slice_name(name)
        rows = self._check_rows(rows, name)
        clash = {"rows", "ids", "created"} & set(meta)
        if clash:
            msg = f"{sorted(clash)} are written by save itself; pass other field names"
            raise ValueError(msg)
        json.dumps(meta)  # a field JSON cannot hold is an error here, not a broken file
        ids = self.analysis.table["id"].to_numpy()[rows.astype(np.intp)]
        entry = {
            **meta,
            "rows": rows.astype(int).tolist(),
            "ids": [str(i) for i in ids],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self.store.put(name, entry)
        where = self.path or "memory (the analysis has no folder: analysis.save(folder))"
        return self.store.noted(f"saved slice {name!r} ({len(rows)} images) in {where}")

    def _check_rows(self, rows: Any, name: str) -> np.ndarray:
        arr = np.asarray(rows)
        if arr.dtype == bool:
            msg = f"slice {name!r}: pass row indices, not a boolean mask (np.flatnonzero(mask))"
            raise TypeError(msg)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            msg = f"slice {name!r}: rows must be whole numbers, got {arr.dtype}"
            raise TypeError(msg)
        arr = np.unique(arr.astype(np.int64).ravel())
        n = len(self.analysis.table)
        if len(arr) == 0:
            msg = f"nothing to save: slice {name!r} has no rows"
            raise ValueError(msg)
        if arr[0] < 0 or arr[-1] >= n:
            msg = f"slice {name!r}: rows must be within 0..{n - 1}"
            raise IndexError(msg)
        return arr

    def rows(self, name: str) -> np.ndarray:
        """Row indices (sorted, uint32) of the saved slice ``name``, matched by image id when ids
        are stored (ids no longer in the table are dropped, and the notes say how many)."""
        check_slice_name(name)
        slices = self.entries()
        if name not in slices:
            msg = f"no slice named {name!r}; saved slices: {sorted(slices)}"
            raise KeyError(msg)
        entry = slices[name]
        rows = np.asarray(entry.get("rows", []), dtype=np.int64)
        ids = entry.get("ids")
        table_ids = self.analysis.table["id"].astype(str).to_numpy()
        n = len(table_ids)
        in_range = len(rows) == 0 or (rows.min() >= 0 and rows.max() < n)
        same = in_range and ids is not None and len(ids) == len(rows)
        if ids is not None and not (same and np.array_equal(table_ids[rows], np.asarray(ids))):
            pos = pd.Index(table_ids).get_indexer([str(i) for i in ids])
            lost = int((pos < 0).sum())
            if lost:
                self.store._note(f"slice {name!r}: {lost} image id(s) are no longer in the table")
            rows = pos[pos >= 0]
        elif not in_range:
            msg = f"slice {name!r} refers to rows outside this table"
            raise ValueError(msg)
        return np.unique(rows).astype(np.uint32)

    def delete(self, name: str) -> str:
        """Delete the saved slice ``name`` (``KeyError`` when there is none); the status line."""
        check_slice_name(name)
        if not self.store.delete(name):
            msg = f"no slice named {name!r}; saved slices: {self.names()}"
            raise KeyError(msg)
        return self.store.noted(f"deleted slice {name!r}")

    def frame(self, name: str) -> pd.DataFrame:
        """``row`` (the table row), then ``id``, ``path``, ``label``/``label_name``,
        ``pred``/``pred_name``, ``confidence``, ``loss`` and ``correct`` of the slice ``name``."""
        rows = self.rows(name).astype(np.intp)
        table = self.analysis.table
        cols = [c for c in SLICE_COLUMNS if c in table.columns]
        frame = table.iloc[rows][cols].copy()
        frame.insert(0, "row", rows)
        return frame.reset_index(drop=True)

    def export(self, name: str, path: str | Path | None = None, *, fmt: str | None = None) -> Path:
        """Write the slice ``name`` (:meth:`frame`) to CSV or parquet, by ``fmt`` or the suffix
        of ``path``; default ``./<name>.csv`` in the working directory. Returns the path."""
        check_slice_name(name)
        path = _export_path(path, f"{name}.{fmt or 'csv'}")
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        if fmt not in ("csv", "parquet"):
            msg = f"export format must be 'csv' or 'parquet', got {fmt!r}"
            raise ValueError(msg)
        frame = self.frame(name)
        with atomic_path(path) as tmp:
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
        return path


# --------------------------------------------------------------------------- feature marks


class FeatureMarks(_RecordView):
    """Core/spurious marks of (layer, class, feature), saved beside an analysis
    (``annotations.json``: ``{"marks": [{layer, class, class_name, feature, mark, updated}]}``).

    ``analysis`` needs ``folder`` and ``class_names``.
    """

    kind = MARKS_KIND

    def __repr__(self) -> str:
        return f"<FeatureMarks {len(self.store.read())} mark(s) at {self.path or 'memory'}>"

    def marks(self, layer: str | None = None) -> list[dict[str, Any]]:
        """The usable marks (of ``layer`` when given), as stored."""
        return [m for m in self.store.read().values() if layer is None or m["layer"] == layer]

    def lookup(self, layer: str) -> dict[tuple[int, int], str]:
        """``{(class, feature): mark}`` of ``layer``."""
        return {(int(m["class"]), int(m["feature"])): m["mark"] for m in self.marks(layer)}

    def get(self, layer: str, cls: int, feature: int) -> str:
        """The mark of (layer, class, feature): ``"core"``, ``"spurious"`` or ``""``."""
        m = self.store.read().get((layer, int(cls), int(feature)))
        return "" if m is None else str(m["mark"])

    def set(self, layer: str, cls: int, feature: int, mark: str) -> str:
        """Mark (layer, class, feature) ``"core"`` or ``"spurious"`` (``""`` removes the mark);
        returns the status line."""
        if mark not in MARKS:
            msg = f"mark must be one of {MARKS}, got {mark!r}"
            raise ValueError(msg)
        cls, feature = int(cls), int(feature)
        n_classes = len(self.analysis.class_names)
        if not 0 <= cls < n_classes or feature < 0:
            msg = f"class {cls} / feature {feature}: class must be within 0..{n_classes - 1}"
            raise ValueError(msg)
        key = (str(layer), cls, feature)
        if mark:
            self.store.put(key, {
                "layer": str(layer), "class": cls,
                "class_name": str(self.analysis.class_names[cls]), "feature": feature,
                "mark": mark, "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            })  # fmt: skip
        else:
            self.store.delete(key)
        if self.path is None:
            text = "marks kept in memory: the analysis has no folder (analysis.save(...))"
        else:
            text = f"saved {cls}/{feature} = {mark or '(none)'} to {self.path.name}"
        return self.store.noted(text)

    def spurious_features(self, layer: str) -> dict[int, list[int]]:
        """``{class: [feature, ...]}`` marked spurious on ``layer``."""
        out: dict[int, list[int]] = {}
        for m in self.marks(layer):
            if m["mark"] == "spurious":
                out.setdefault(int(m["class"]), []).append(int(m["feature"]))
        return {c: sorted(v) for c, v in sorted(out.items())}

    def export_csv(self, layer: str | None = None, path: str | Path | None = None) -> Path:
        """Write the marks (of ``layer`` when given) as CSV; default ``./annotations.csv`` in the
        working directory. Returns the path."""
        path = _export_path(path, "annotations.csv")
        cols = ["layer", "class", "class_name", "feature", "mark", "updated"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.marks(layer))
        with atomic_path(path) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")
        return path


__all__ = ["FeatureMarks", "SavedSlices"]
