"""Core/spurious marks of (layer, class, feature), kept beside the analysis in ``annotations.json``.

Marks made while the analysis has no folder are kept in memory and moved into
``<folder>/annotations.json`` the first time they are read after ``analysis.save(folder)``; entries
of the file this code cannot use (a hand edit, another version) are ignored but kept when the file is
written again. Writes are atomic.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultlens.store import atomic_path, read_json, write_json

if TYPE_CHECKING:
    from faultlens.analysis.core import Analysis

__all__ = ["ANNOTATIONS_FILE", "MARKS", "FeatureMarks"]

MARKS = ("", "core", "spurious")
ANNOTATIONS_FILE = "annotations.json"


def _key(m: dict[str, Any]) -> tuple[str, int, int]:
    return (str(m.get("layer")), int(m["class"]), int(m["feature"]))


def _usable(m: Any) -> bool:
    """A mark entry that can be used: a layer name, integer class and feature, a known mark."""
    if not isinstance(m, dict) or not isinstance(m.get("layer"), str) or m.get("mark") not in MARKS:
        return False
    try:
        return int(m["class"]) >= 0 and int(m["feature"]) >= 0
    except (KeyError, TypeError, ValueError):
        return False


class FeatureMarks:
    """The marks of one layer of an analysis's model. ``note`` holds the last thing worth saying
    (marks moved into the folder and their conflicts, entries ignored, where a mark was saved)."""

    def __init__(self, analysis: Analysis, layer: str) -> None:
        self.analysis = analysis
        self.layer = layer
        self.note = ""
        self._memory: list[dict[str, Any]] = []
        self._bad_said = 0

    @property
    def path(self) -> Path | None:
        """``<analysis folder>/annotations.json``, or None when the analysis has no folder."""
        folder = self.analysis.folder
        return None if folder is None else Path(folder) / ANNOTATIONS_FILE

    def _all(self) -> list[dict[str, Any]]:
        path = self.path
        if path is None:
            return list(self._memory)
        marks: list[dict[str, Any]] = []
        if path.exists():
            data = read_json(path)
            marks = list(data.get("marks", [])) if isinstance(data, dict) else []
        if self._memory:  # made before the analysis had a folder: move them into it
            marks = self._move_memory(path, marks)
        return marks

    def _move_memory(self, path: Path, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merge the marks kept in memory into the file and forget the memory copy. Where both mark
        the same (layer, class, feature) differently, the more recently updated mark is kept (the
        memory one on a tie) and ``note`` names the ones replaced."""
        merged = {_key(m): m for m in stored if _usable(m)}
        unusable = [m for m in stored if not _usable(m)]  # kept as they are
        replaced = []
        for m in self._memory:
            key = _key(m)
            old = merged.get(key)
            if old is not None and old.get("mark") != m.get("mark"):
                if str(old.get("updated", "")) > str(m.get("updated", "")):
                    replaced.append(f"{key[1]}/{key[2]}: kept the file's newer {old['mark']!r}, "
                                    f"not {m['mark']!r}")  # fmt: skip
                    continue
                replaced.append(f"{key[1]}/{key[2]}: {m['mark']!r} replaced the file's "
                                f"{old['mark']!r}")  # fmt: skip
            merged[key] = m
        marks = list(merged.values()) + unusable
        n = len(self._memory)
        try:
            write_json(path, {"format": 1, "marks": marks})
        except OSError as exc:  # keep the memory copy: nothing is lost, try again next time
            self.note = f"could not store {n} unsaved mark(s) in {path}: {exc}"
            return marks
        self._memory = []
        note = f"moved {n} mark(s) kept in memory into {path.name}"
        self.note = note + (f" (conflicts: {'; '.join(replaced)})" if replaced else "")
        return marks

    def list(self) -> list[dict[str, Any]]:
        """This layer's usable marks (the file read once)."""
        marks = self._all()
        bad = [m for m in marks if not _usable(m)]
        if len(bad) != self._bad_said:  # say it once, not on every read
            self._bad_said = len(bad)
            self.note = (
                f"{ANNOTATIONS_FILE}: {len(bad)} entry(ies) without a layer, class, feature and "
                "'core'/'spurious' mark are ignored (kept in the file)"
            )
        return [m for m in marks if _usable(m) and m["layer"] == self.layer]

    @staticmethod
    def lookup(marks: list[dict[str, Any]]) -> dict[tuple[int, int], str]:
        """``{(class, feature): mark}`` of ``marks`` (as :meth:`list` returns them)."""
        return {(int(m["class"]), int(m["feature"])): m["mark"] for m in marks}

    def set(self, cls: int, feature: int, mark: str) -> None:
        """Mark (class, feature) ``"core"`` or ``"spurious"`` (``""`` removes it)."""
        if mark not in MARKS:
            msg = f"mark must be one of {MARKS}, got {mark!r}"
            raise ValueError(msg)
        cls, feature = int(cls), int(feature)
        marks = [
            m for m in self._all() if not (_usable(m) and _key(m) == (self.layer, cls, feature))
        ]
        if mark:
            marks.append({
                "layer": self.layer, "class": cls,
                "class_name": str(self.analysis.class_names[cls]), "feature": feature,
                "mark": mark, "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            })  # fmt: skip
        path = self.path
        if path is None:
            self._memory = marks
            self.note = "marks kept in memory: the analysis has no folder (analysis.save(...))"
        else:
            write_json(path, {"format": 1, "marks": marks})
            self.note = f"saved {cls}/{feature} = {mark or '(none)'} to {path.name}"

    def spurious_features(self, marks: list[dict[str, Any]] | None = None) -> dict[int, list[int]]:
        """``{class: [feature, ...]}`` marked spurious on this layer."""
        out: dict[int, list[int]] = {}
        for m in self.list() if marks is None else marks:
            if m["mark"] == "spurious":
                out.setdefault(int(m["class"]), []).append(int(m["feature"]))
        return {c: sorted(v) for c, v in out.items()}

    def export_csv(self, path: str | Path | None = None) -> Path:
        """Write this layer's marks as CSV (default ``<analysis folder>/annotations.csv``)."""
        if path is None:
            if self.path is None:
                msg = "the analysis has no folder: pass a path"
                raise ValueError(msg)
            path = self.path.with_suffix(".csv")
        path = Path(path)
        cols = ["layer", "class", "class_name", "feature", "mark", "updated"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.list())
        with atomic_path(path) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")
        return path
