"""The FeatureBrowser: a class's most important neural features, each feature's most and least
activating images beside their activation maps, core/spurious marks that persist, and the class's
spuriosity-ranked strip.

Data flow
---------
Python computes the pooled activations of every image once (:class:`NeuralFeatures`), the importance
of every feature for every class, and per (class, feature) the top-k / bottom-k images and their
accuracy (``groups``). The front end pulls images on demand with a ``tiles`` message; Python answers
with two PNG buffers per row: the original and its activation-map overlay (NAM or Grad-CAM, scaled
per image). Marks are written by JS into ``mark`` (the mark of the shown class and feature) and
saved by Python to ``<analysis folder>/annotations.json`` atomically; a new browser on the same
folder reads them back.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import torch
import traitlets as t
from PIL import Image

from faultlens.analysis import spurious as sp
from faultlens.store import atomic_path, read_json, write_json
from faultlens.ui._validate import one_of, within

if TYPE_CHECKING:
    from faultlens.analysis.result import Analysis

_STATIC = Path(__file__).parent / "static"
MARKS = ("", "core", "spurious")
MAP_KINDS = ("nam", "gradcam")
ANNOTATIONS_FILE = "annotations.json"


class FeatureBrowser(anywidget.AnyWidget):
    """Browse a layer's neural features per class, mark them core or spurious, see what they cost.

    Parameters
    ----------
    analysis:
        The analysis (its images, labels, predictions; marks are saved in its folder).
    model, layer, transform:
        The classifier, the layer whose channels are the features (demo CNN: ``"features.7"``), and
        PIL image → C×H×W tensor as the model expects.
    n_features:
        How many top features per class are listed.
    k, gap_k:
        Images shown per end (top/bottom), and images per end for the accuracy gap (clamped to half
        the class).
    strip_size:
        Images in the class's spuriosity-ranked strip (spread evenly over the ranking).
    tile_size:
        The least width in pixels an image and its activation map are shown at (smaller images
        are scaled up, pixel for pixel; bigger ones keep their size).
    batch_size:
        Images per forward pass when computing activations and maps.
    """

    _esm = _STATIC / "features.js"
    _css = _STATIC / "features.css"

    class_names = t.List(t.Unicode(), read_only=True, help="Python writes: class names.").tag(
        sync=True
    )
    layer = t.Unicode("", read_only=True, help="Python writes: the layer's name.").tag(sync=True)
    class_index = t.Int(0, help="Both write: the class shown.").tag(sync=True)
    feature = t.Int(-1, help="Both write: the feature (channel) shown; -1 = none.").tag(sync=True)
    features = t.List(
        t.Dict(), help="Python writes: the class's top features (feature, importance, rank, mark)."
    ).tag(sync=True)
    k = t.Int(8, help="Both write: images shown per end (top-k / bottom-k), 1-64.").tag(sync=True)
    gap_k = t.Int(50, help="Both write: images per end for the accuracy gap.").tag(sync=True)
    groups = t.Dict(
        help="Python writes: top/bottom rows, activations, correctness, accuracies and the gap."
    ).tag(sync=True)
    mark = t.Unicode(
        "", help="Both write: mark of the shown (class, feature): '', 'core' or 'spurious'."
    ).tag(sync=True)
    annotations = t.List(t.Dict(), help="Python writes: all marks of this layer.").tag(sync=True)
    strip = t.Dict(help="Python writes: the class's spuriosity-ranked strip and its gap.").tag(
        sync=True
    )
    map_kind = t.Unicode("nam", help="Both write: 'nam' (activation map) or 'gradcam'.").tag(
        sync=True
    )
    opacity = t.Float(0.5, help="Both write: overlay opacity in [0, 1].").tag(sync=True)
    selection = t.List(
        t.Int(), help="Both write: table rows selected (link it to an Explorer: link_explorer)."
    ).tag(sync=True)
    skipped = t.List(t.Dict(), help="Python writes: classes importance could not score, why.").tag(
        sync=True
    )
    status = t.Unicode("", help="Python writes: the last message or error.").tag(sync=True)

    def __init__(
        self,
        analysis: Analysis,
        model: torch.nn.Module,
        layer: str,
        transform: Callable[[Any], torch.Tensor],
        *,
        n_features: int = 10,
        k: int = 8,
        gap_k: int = 50,
        strip_size: int = 24,
        tile_size: int = 96,
        batch_size: int = 128,
    ) -> None:
        table = analysis.table
        missing = [c for c in ("label", "pred", "correct") if c not in table.columns]
        if missing:
            msg = f"the analysis table lacks column(s) {missing}"
            raise ValueError(msg)
        self.analysis = analysis
        self.model = model.eval()
        self.nf = sp.NeuralFeatures(model, layer, transform, batch_size=batch_size)
        self.transform = transform
        self._labels = table["label"].to_numpy(dtype=np.int64)
        self._preds = table["pred"].to_numpy(dtype=np.int64)
        self._correct = table["correct"].to_numpy(dtype=bool)
        self._n_features = int(n_features)
        self._strip_size = int(strip_size)
        self._tile = int(tile_size)
        self._pngs: OrderedDict[tuple, tuple[bytes, bytes]] = OrderedDict()
        self._syncing = False
        self._memory_marks: list[dict[str, Any]] = []
        self._images = torch.stack([transform(analysis.image(r)) for r in range(len(table))])
        self.acts = self.nf.activations(self._images)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sp.SpuriousWarning)
            self.importance = self.nf.importance(
                self.acts, self._labels, self._preds, images=self._images
            )
        super().__init__()
        with self.hold_sync():
            self.set_trait("class_names", [str(c) for c in analysis.class_names])
            self.set_trait("layer", layer)
            self.skipped = list(self.nf.skipped)
            self.k = k
            self.gap_k = gap_k
            if caught:
                self.status = "; ".join(str(w.message) for w in caught)
            self.annotations = self._layer_marks()
            first = next((c for c in range(len(self.importance)) if self._scored(c)), 0)
            self.class_index = first
            self._on_class(None)
        self.observe(self._on_class, names=["class_index"])
        self.observe(self._on_feature, names=["feature"])
        self.observe(self._on_k, names=["k", "gap_k"])
        self.observe(self._on_mark, names=["mark"])
        self.observe(self._on_view, names=["map_kind", "opacity"])
        self.on_msg(self._on_custom_msg)
        self._on_feature(None)  # the first feature was chosen before these observers existed

    def __repr__(self) -> str:
        return (
            f"<faultlens.FeatureBrowser layer={self.layer!r} class={self.class_index} "
            f"feature={self.feature} marks={len(self.annotations)}>"
        )

    # ------------------------------------------------------------------ validation

    @t.validate("class_index")
    def _valid_class(self, proposal: dict) -> int:
        v = int(proposal["value"])
        if not 0 <= v < len(self.analysis.class_names):
            msg = f"class_index {v} out of range 0..{len(self.analysis.class_names) - 1}"
            raise t.TraitError(msg)
        return v

    @t.validate("feature")
    def _valid_feature(self, proposal: dict) -> int:
        v = int(proposal["value"])
        if not -1 <= v < self.acts.shape[1]:
            msg = f"feature {v} out of range: layer {self.layer!r} has {self.acts.shape[1]}"
            raise t.TraitError(msg)
        return v

    @t.validate("k")
    def _valid_k(self, proposal: dict) -> int:
        return int(within("k", int(proposal["value"]), 1, 64))

    @t.validate("gap_k")
    def _valid_gap_k(self, proposal: dict) -> int:
        return int(within("gap_k", int(proposal["value"]), 1))

    @t.validate("mark")
    def _valid_mark(self, proposal: dict) -> str:
        return one_of("mark", proposal["value"], MARKS)

    @t.validate("map_kind")
    def _valid_kind(self, proposal: dict) -> str:
        return one_of("map_kind", proposal["value"], MAP_KINDS)

    @t.validate("opacity")
    def _valid_opacity(self, proposal: dict) -> float:
        return within("opacity", float(proposal["value"]), 0.0, 1.0)

    @t.validate("selection")
    def _valid_selection(self, proposal: dict) -> list[int]:
        rows = sorted({int(r) for r in proposal["value"]})
        if rows and (rows[0] < 0 or rows[-1] >= len(self._labels)):
            msg = f"selection rows must be within 0..{len(self._labels) - 1}"
            raise t.TraitError(msg)
        return rows

    # ------------------------------------------------------------------ computations

    def _scored(self, c: int) -> bool:
        return c < len(self.importance) and not np.isnan(self.importance[c]).all()

    def _class_rows(self, c: int) -> np.ndarray:
        return np.flatnonzero(self._labels == c)

    def _on_class(self, _change: dict | None) -> None:
        c = self.class_index
        marks = self._mark_lookup()
        feats = []
        if self._scored(c):
            order = np.argsort(-self.importance[c], kind="stable")[: self._n_features]
            feats = [
                {"feature": int(f), "rank": i + 1, "importance": float(self.importance[c, f]),
                 "mark": marks.get((c, int(f)), "")}
                for i, f in enumerate(order)
            ]  # fmt: skip
        else:
            reason = next((s["reason"] for s in self.nf.skipped if s["class"] == c), "")
            self.status = f"class {c}: no importance ({reason or 'not scored'})"
        with self.hold_sync():
            self.features = feats
            new = feats[0]["feature"] if feats else -1
            if self.feature == new:
                self._on_feature(None)
            else:
                self.feature = new  # runs _on_feature
            self._update_strip()

    def _on_feature(self, _change: dict | None) -> None:
        with self.hold_sync():
            self._update_groups()
            self._syncing = True
            try:
                self.mark = self._mark_lookup().get((self.class_index, self.feature), "")
            finally:
                self._syncing = False

    def _on_k(self, _change: dict) -> None:
        with self.hold_sync():
            self._update_groups()
            self._update_strip()

    def _on_view(self, _change: dict) -> None:
        self._pngs.clear()

    def _update_groups(self) -> None:
        c, f = self.class_index, self.feature
        rows = self._class_rows(c)
        if f < 0 or len(rows) < 2:
            self.groups = {}
            self.selection = []
            return
        a = self.acts[rows, f]
        order = rows[np.argsort(a, kind="stable")]
        k_show = min(self.k, len(rows) // 2)
        top, bottom = order[::-1][:k_show], order[:k_show]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sp.SpuriousWarning)
            gap = sp.spurious_gap(self.acts[:, f], self._correct, self._labels, k=self.gap_k,
                                  classes=[c])  # fmt: skip
        g = gap.table.iloc[0].to_dict() if len(gap.table) else {}

        def group(r: np.ndarray) -> dict[str, Any]:
            return {"rows": [int(x) for x in r], "acts": [float(v) for v in self.acts[r, f]],
                    "correct": [bool(v) for v in self._correct[r]],
                    "accuracy": float(self._correct[r].mean()) if len(r) else math.nan}  # fmt: skip

        self.groups = {
            "class": c, "feature": f, "top": group(top), "bottom": group(bottom),
            "gap": {key: float(v) for key, v in g.items() if key != "class"},
            "note": "; ".join(str(w.message) for w in caught),
            "scale": "maps scaled per image (where, not how strongly)",
        }  # fmt: skip
        self.selection = [int(x) for x in np.r_[top, bottom]]

    def _update_strip(self) -> None:
        c = self.class_index
        feats = self.spurious_features().get(c, [])
        if not feats:
            self.strip = {"class": c, "features": [], "rows": [],
                          "note": "mark a feature of this class spurious to rank its images"}  # fmt: skip
            return
        score = sp.spuriosity(self.acts, self._labels, {c: feats})
        rows = self._class_rows(c)
        order = rows[np.argsort(score[rows], kind="stable")]
        pick = np.unique(np.linspace(0, len(order) - 1, min(self._strip_size, len(order))).round())
        shown = order[pick.astype(int)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sp.SpuriousWarning)
            gap = sp.spurious_gap(score, self._correct, self._labels, k=self.gap_k, classes=[c])
        g = gap.table.iloc[0].to_dict() if len(gap.table) else {}
        self.strip = {
            "class": c, "features": feats, "rows": [int(r) for r in shown],
            "score": [float(score[r]) for r in shown],
            "correct": [bool(self._correct[r]) for r in shown],
            "gap": {key: float(v) for key, v in g.items() if key != "class"},
            "note": "; ".join(str(w.message) for w in caught)
            or f"{len(shown)} of {len(rows)} images, evenly spaced from least to most spurious",
        }  # fmt: skip

    # ------------------------------------------------------------------ marks

    @property
    def annotations_path(self) -> Path | None:
        """``<analysis folder>/annotations.json``, or None when the analysis has no folder."""
        folder = self.analysis.folder
        return None if folder is None else Path(folder) / ANNOTATIONS_FILE

    def _all_marks(self) -> list[dict[str, Any]]:
        path = self.annotations_path
        if path is None:
            return list(self._memory_marks)
        marks: list[dict[str, Any]] = []
        if path.exists():
            data = read_json(path)
            marks = list(data.get("marks", [])) if isinstance(data, dict) else []
        if self._memory_marks:  # made before the analysis had a folder: move them into it
            marks = self._move_memory_marks(path, marks)
        return marks

    def _move_memory_marks(self, path: Path, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merge the marks kept in memory (made while the analysis had no folder) into the
        folder's annotations file, write it and forget the memory copy. Where both mark the same
        (layer, class, feature) differently, the more recently updated mark is kept (the memory one
        on a tie) and ``status`` names the ones replaced."""
        merged = {_mark_key(m): m for m in stored if _valid_mark(m)}
        unusable = [m for m in stored if not _valid_mark(m)]  # kept as they are
        replaced = []
        for m in self._memory_marks:
            key = _mark_key(m)
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
        n = len(self._memory_marks)
        try:
            write_json(path, {"format": 1, "marks": marks})
        except OSError as exc:  # keep the memory copy: nothing is lost, try again next time
            self.status = f"could not store {n} unsaved mark(s) in {path}: {exc}"
            return marks
        self._memory_marks = []
        note = f"moved {n} mark(s) kept in memory into {path.name}"
        self.status = note + (f" (conflicts: {'; '.join(replaced)})" if replaced else "")
        self.annotations = [m for m in marks if m.get("layer") == self.layer]
        return marks

    def refresh_marks(self) -> None:
        """Re-read the marks, e.g. after ``analysis.save(folder)``: marks kept in memory until then
        move into ``<folder>/annotations.json``."""
        with self.hold_sync():
            self.annotations = self._layer_marks()
            lookup = self._mark_lookup(self.annotations)  # the file read once
            self.features = [{**f, "mark": lookup.get((self.class_index, f["feature"]), "")}
                             for f in self.features]  # fmt: skip
            self._update_strip()
            self._syncing = True
            try:
                self.mark = lookup.get((self.class_index, self.feature), "")
            finally:
                self._syncing = False

    def _layer_marks(self) -> list[dict[str, Any]]:
        """This layer's well-formed marks. Entries of the file that are not (a hand edit, another
        version) are not used, but are kept in the file when it is written again."""
        marks = self._all_marks()
        bad = [m for m in marks if not _valid_mark(m)]
        if len(bad) != getattr(self, "_bad_marks_said", 0):  # say it once, not on every read
            self._bad_marks_said = len(bad)
            self.status = (
                f"{ANNOTATIONS_FILE}: {len(bad)} entry(ies) without a layer, class, feature and "
                "'core'/'spurious' mark are ignored (kept in the file)"
            )
        return [m for m in marks if _valid_mark(m) and m["layer"] == self.layer]

    def _mark_lookup(self, marks: list[dict[str, Any]] | None = None) -> dict[tuple[int, int], str]:
        """``{(class, feature): mark}`` of this layer's ``marks`` (default: read them)."""
        marks = self._layer_marks() if marks is None else marks
        return {(int(m["class"]), int(m["feature"])): m["mark"] for m in marks}

    def set_mark(self, cls: int, feature: int, mark: str) -> None:
        """Mark (class, feature) of this layer ``"core"`` or ``"spurious"`` (``""`` removes it);
        saved atomically to ``annotations.json``."""
        if mark not in MARKS:
            msg = f"mark must be one of {MARKS}, got {mark!r}"
            raise ValueError(msg)
        cls, feature = int(cls), int(feature)
        marks = [
            m for m in self._all_marks()
            if not (_valid_mark(m) and _mark_key(m) == (self.layer, cls, feature))
        ]  # fmt: skip
        if mark:
            marks.append({
                "layer": self.layer, "class": cls,
                "class_name": str(self.analysis.class_names[cls]), "feature": feature,
                "mark": mark, "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            })  # fmt: skip
        path = self.annotations_path
        if path is None:
            self._memory_marks = marks
            self.status = "marks kept in memory: the analysis has no folder (analysis.save(...))"
        else:
            write_json(path, {"format": 1, "marks": marks})
            self.status = f"saved {cls}/{feature} = {mark or '(none)'} to {path.name}"
        with self.hold_sync():
            self.annotations = self._layer_marks()
            lookup = self._mark_lookup(self.annotations)  # the file read once
            self.features = [{**f, "mark": lookup.get((self.class_index, f["feature"]), "")}
                             for f in self.features]  # fmt: skip
            if cls == self.class_index:
                self._update_strip()
            if (cls, feature) == (self.class_index, self.feature) and self.mark != mark:
                self._syncing = True
                try:
                    self.mark = mark
                finally:
                    self._syncing = False

    def _on_mark(self, change: dict) -> None:
        if self._syncing or self.feature < 0:
            return
        try:
            self.set_mark(self.class_index, self.feature, change["new"])
        except Exception as exc:  # not saved: say so, and show the mark that is saved
            self._syncing = True
            try:
                self.mark = change["old"]
            finally:
                self._syncing = False
            self.status = f"mark not saved: {exc}"

    def spurious_features(self) -> dict[int, list[int]]:
        """``{class: [feature, ...]}`` marked spurious on this layer (for spuriosity, mitigation)."""
        out: dict[int, list[int]] = {}
        for m in self._layer_marks():
            if m["mark"] == "spurious":
                out.setdefault(int(m["class"]), []).append(int(m["feature"]))
        return {c: sorted(v) for c, v in out.items()}

    def export_annotations(self, path: str | Path | None = None) -> Path:
        """Write this layer's marks as CSV (default ``<analysis folder>/annotations.csv``)."""
        if path is None:
            if self.annotations_path is None:
                msg = "the analysis has no folder: pass a path"
                raise ValueError(msg)
            path = self.annotations_path.with_suffix(".csv")
        path = Path(path)
        cols = ["layer", "class", "class_name", "feature", "mark", "updated"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(self._layer_marks())
        with atomic_path(path) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")
        return path

    # ------------------------------------------------------------------ images

    def maps(self, rows: list[int]) -> np.ndarray:
        """(n, H, W) maps of the shown feature (NAM) or the shown class (Grad-CAM) for ``rows``."""
        x = self._images[np.asarray(rows, dtype=np.intp)]
        if self.map_kind == "gradcam":
            return sp.grad_cam(self.model, self.layer, x, self.class_index)
        return self.nf.activation_maps(x, self.feature)

    def tile_pngs(self, rows: list[int]) -> list[tuple[bytes, bytes]]:
        """``[(original PNG, overlay PNG), ...]`` for ``rows`` at the current map settings."""
        key_base = (self.map_kind, self.feature, self.class_index, round(self.opacity, 3))
        want = [r for r in rows if (*key_base, r) not in self._pngs]
        if want:
            maps = self.maps(want)
            for r, m in zip(want, maps, strict=True):
                img = self.analysis.image(int(r)).convert("RGB")
                size = max(self._tile, *img.size)
                resample = (
                    Image.Resampling.NEAREST if img.size[0] < size else Image.Resampling.BILINEAR
                )
                big = img.resize((size, size * img.size[1] // img.size[0]), resample)
                over = sp.overlay(np.asarray(big), m, opacity=self.opacity)
                self._pngs[(*key_base, r)] = (_png(np.asarray(big)), _png(over))
                if len(self._pngs) > 2048:
                    self._pngs.popitem(last=False)
        return [self._pngs[(*key_base, r)] for r in rows]

    # ------------------------------------------------------------------ messages from JS

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: list[bytes]) -> None:
        # not `_handle_msg`: that name is ipywidgets' own comm handler, and shadowing it drops every
        # message from the browser
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        try:
            if kind == "tiles":
                rows = [int(r) for r in content.get("rows", [])][:200]
                bad = [r for r in rows if not 0 <= r < len(self._labels)]
                if bad:
                    msg = f"rows {bad[:5]} out of range"
                    raise IndexError(msg)
                pairs = self.tile_pngs(rows)
                self.send(
                    {"type": "tiles", "req": content.get("req"), "rows": rows,
                     "kind": self.map_kind, "feature": self.feature, "class": self.class_index},
                    buffers=[b for pair in pairs for b in pair],
                )  # fmt: skip
            elif kind == "export":
                self.status = f"exported marks to {self.export_annotations()}"
            elif kind == "select":
                which = content.get("group")
                if which == "strip":
                    self.selection = list(self.strip.get("rows", []))
                elif which in ("top", "bottom"):
                    self.selection = list(self.groups.get(which, {}).get("rows", []))
        except Exception as exc:  # shown in the status bar instead of lost
            self.status = f"{kind}: {exc}"

    # ------------------------------------------------------------------ linking and static output

    def link_explorer(self, explorer: Any) -> Callable[[], None]:
        """Highlight this browser's ``selection`` in an Explorer's map; returns an unlink function."""

        def push(change: dict) -> None:
            explorer.select(np.asarray(change["new"], dtype=np.int64))

        self.observe(push, names=["selection"])
        return lambda: self.unobserve(push, names=["selection"])

    def to_html(self) -> str:
        """A static HTML summary of the shown class (every data string escaped)."""
        name = html.escape(self.class_names[self.class_index]) if self.class_names else ""
        rows = "".join(
            f"<tr><td>{f['rank']}</td><td>{f['feature']}</td><td>{f['importance']:.3g}</td>"
            f"<td>{html.escape(f['mark'])}</td></tr>"
            for f in self.features
        )
        return (
            f"<div class='faultlens-features'><h4>{name} — layer {html.escape(self.layer)}</h4>"
            f"<table><tr><th>rank</th><th>feature</th><th>importance</th><th>mark</th></tr>"
            f"{rows}</table></div>"
        )


def _mark_key(m: dict[str, Any]) -> tuple[str, int, int]:
    return (str(m.get("layer")), int(m["class"]), int(m["feature"]))


def _valid_mark(m: Any) -> bool:
    """A mark entry this browser can use: a layer name, integer class and feature, a known mark."""
    if not isinstance(m, dict) or not isinstance(m.get("layer"), str) or m.get("mark") not in MARKS:
        return False
    try:
        return int(m["class"]) >= 0 and int(m["feature"]) >= 0
    except (KeyError, TypeError, ValueError):
        return False


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
