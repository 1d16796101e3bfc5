"""The FeatureBrowser: a class's most important neural features, each feature's most and least
activating images beside their activation maps, core/spurious marks that persist, "spurious?"
suggestions to confirm or reject, and the class's spuriosity-ranked strip.

Data flow
---------
:class:`~faultlens.analysis.feature_index.FeatureIndex` computes the pooled activations of every
image in batches (cached in the store) and the importance of every feature for every class; the
widget keeps only those, and per (class, feature) the top-k / bottom-k rows and their accuracy
(``groups``). :func:`~faultlens.analysis.suspects.rank_suspects` ranks the class's top features by
how likely each is spurious (computed when a class is first shown). The front end pulls images on
demand with a ``tiles`` message; Python answers with two PNG buffers per row: the original and its
activation-map overlay (NAM or Grad-CAM, scaled per image). A mark is set by a ``set_mark`` message
(``{type: "set_mark", mark}``: the shown class and feature; confirming a suggestion is ``"spurious"``,
rejecting it ``"core"``) and saved by :class:`~faultlens.analysis.record_views.FeatureMarks` to
``<analysis folder>/annotations.json``; ``mark`` shows it. ``selection`` is a read-only view of the
binary ``_selection`` (uint32 rows) that Python writes.

Computing the activations is the widget's job (:class:`~faultlens.ui.tasks.Tasks`): ``task`` shows
its progress. With ``background=True`` the widget is shown at once and computes in a worker thread;
its Cancel button stops it between batches (finished shards stay cached, the next FeatureBrowser
resumes there). The mitigation preview (:mod:`faultlens.ui.mitigation_view`) is a task too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import torch
import traitlets as t
from PIL import Image

from faultlens.analysis import spurious as sp
from faultlens.analysis.feature_index import FeatureIndex
from faultlens.analysis.record_views import FeatureMarks
from faultlens.analysis.records import MARKS
from faultlens.analysis.suspects import rank_suspects
from faultlens.ui._validate import one_of, within
from faultlens.ui.features_static import features_html, png, tiles_png
from faultlens.ui.kernel import warn_kernel_fault
from faultlens.ui.mitigation_view import MitigationPreview, mitigation_html
from faultlens.ui.static_copy import with_static_copy
from faultlens.ui.tasks import Cancelled, Progress, Tasks

if TYPE_CHECKING:
    from faultlens.analysis.result import Analysis
    from faultlens.store import ArtifactStore

_STATIC = Path(__file__).parent / "static"
MAP_KINDS = ("nam", "gradcam")


def _lookup(marks: list[dict[str, Any]]) -> dict[tuple[int, int], str]:
    return {(int(m["class"]), int(m["feature"])): m["mark"] for m in marks}


def _bytes_from_json(js: Any, _obj: Any) -> bytes:
    return b"" if js is None else js.tobytes() if isinstance(js, memoryview) else bytes(js)


class FeatureBrowser(MitigationPreview, Tasks, anywidget.AnyWidget):
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
        Images per forward pass (and the most images decoded at once) when computing activations.
    store:
        Where the activations are cached (default: the faultlens cache).
    progress:
        ``progress(done, total)`` after each batch of images while the activations are computed
        (default: a text progress bar, unless ``background``). Stopping the kernel cancels;
        finished shards of 1,024 images stay cached, so the next FeatureBrowser resumes there.
    background:
        Return at once and compute the activations in a worker thread: the widget shows their
        progress and a Cancel button, and fills in when they are done (``wait_task()`` waits for
        it; until then the views are empty and :attr:`acts` raises).
    splits:
        ``{"train": (images, labels), "val": ..., "test": ..., "groups": ...}`` for the
        "Preview mitigation" button (:meth:`use_splits`; without them the button is disabled).
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
        t.Dict(),
        help="Python writes: the class's top features (feature, importance, rank, mark, suspicion, "
        "suggest: a 'spurious?' suggestion).",
    ).tag(sync=True)
    k = t.Int(8, help="Both write: images shown per end (top-k / bottom-k), 1-64.").tag(sync=True)
    gap_k = t.Int(50, help="Both write: images per end for the accuracy gap.").tag(sync=True)
    groups = t.Dict(
        help="Python writes: top/bottom rows, activations, correctness, accuracies and the gap."
    ).tag(sync=True)
    mark = t.Unicode(
        "", help="Python writes: mark of the shown (class, feature); JS sends a set_mark message."
    ).tag(sync=True)
    annotations = t.List(t.Dict(), help="Python writes: all marks of this layer.").tag(sync=True)
    strip = t.Dict(help="Python writes: the class's spuriosity-ranked strip and its gap.").tag(
        sync=True
    )
    map_kind = t.Unicode("nam", help="Both write: 'nam' (activation map) or 'gradcam'.").tag(
        sync=True
    )
    opacity = t.Float(0.5, help="Both write: overlay opacity in [0, 1].").tag(sync=True)
    _selection = t.Bytes(
        b"", help="Python writes: selected table rows as uint32 (read them as `selection`)."
    ).tag(sync=True, from_json=_bytes_from_json)
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
        store: ArtifactStore | None = None,
        progress: Callable[[int, int], None] | None = None,
        background: bool = False,
        splits: Mapping[str, Any] | None = None,
    ) -> None:
        warn_kernel_fault()
        self.analysis = analysis
        self.index: FeatureIndex | None = None
        self.model = model
        self.marks = FeatureMarks(analysis)
        self._n_features, self._strip_size, self._tile = (
            int(n_features),
            int(strip_size),
            int(tile_size),
        )
        self._pngs: OrderedDict[tuple, tuple[bytes, bytes]] = OrderedDict()
        self._suspects: dict[int, dict[int, dict[str, Any]]] = {}
        self._sel = np.zeros(0, dtype=np.uint32)
        super().__init__()
        self._init_tasks()
        self._init_mitigation(splits)
        with self.hold_sync():
            self.set_trait("class_names", [str(c) for c in analysis.class_names])
            self.set_trait("layer", layer)
            self.k, self.gap_k = k, gap_k
        self.on_msg(self._on_custom_msg)

        def job(task: Progress) -> None:
            self._compute(task, model, layer, transform, batch_size, store, progress, background)

        if background:
            self.start_task("computing features", job)
        else:
            self.run_task("computing features", job)

    def _compute(
        self, task: Progress, model: torch.nn.Module, layer: str,
        transform: Callable[[Any], torch.Tensor], batch_size: int, store: ArtifactStore | None,
        progress: Callable[[int, int], None] | None, background: bool,
    ) -> None:  # fmt: skip
        """The activations (batch by batch, each batch a chance to cancel), then every view."""
        bar = None
        if progress is None and not background:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(self.analysis), desc="features", unit="img", mininterval=0.5)
            progress = lambda done, _n: bar.update(done - bar.n)  # noqa: E731
        step = task.part(0, 1, "images through the model")

        def each_batch(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)
            step(done, total)

        task(0, 0, "reading the cache")
        try:
            index = FeatureIndex(self.analysis, model, layer, transform, batch_size=batch_size,
                                 store=store, progress=each_batch)  # fmt: skip
        except Cancelled:
            kept = "finished shards stay cached; build the FeatureBrowser again to resume"
            raise Cancelled(kept) from None
        finally:
            if bar is not None:
                bar.close()
        self.index, self.model = index, index.model
        with self.hold_sync():
            self.skipped = list(index.skipped)
            if index.notes:
                self.status = "; ".join(self.index.notes)
            self._read_marks()
            self.class_index = next(
                (c for c in range(len(self.index.importance)) if self.index.scored(c)), 0
            )
            self._on_class(None)
        self.observe(self._on_class, names=["class_index"])
        self.observe(self._on_feature, names=["feature"])
        self.observe(self._on_k, names=["k", "gap_k"])
        self.observe(self._on_view, names=["map_kind", "opacity"])
        self._on_feature(None)  # the first feature was chosen before these observers existed
        self._update_mitigation()
        task(1, 1, "done")

    def __repr__(self) -> str:
        return (
            f"<faultlens.FeatureBrowser layer={self.layer!r} class={self.class_index} "
            f"feature={self.feature} marks={len(self.annotations)}>"
        )

    @property
    def ready(self) -> bool:
        """Whether the activations are computed (always, unless built with ``background``)."""
        return self.index is not None

    def _index(self) -> FeatureIndex:
        if self.index is None:
            msg = (
                f"the features are not computed yet ({self.task.get('state', 'not started')}: "
                f"{self.status or self.task.get('text', '')}); wait with fb.wait_task()"
            )
            raise RuntimeError(msg)
        return self.index

    @property
    def acts(self) -> np.ndarray:
        """(n, C) pooled activations of every image."""
        return self._index().acts

    @property
    def importance(self) -> np.ndarray:
        """(n_classes, C) importance of every feature for every class."""
        return self._index().importance

    # ------------------------------------------------------------------ validation

    @t.validate("class_index")
    def _valid_class(self, proposal: dict) -> int:
        return int(
            within("class_index", int(proposal["value"]), 0, len(self.analysis.class_names) - 1)
        )

    @t.validate("feature")
    def _valid_feature(self, proposal: dict) -> int:
        v = int(proposal["value"])
        n = self._index().n_features
        if not -1 <= v < n:
            msg = f"feature {v} out of range: layer {self.layer!r} has {n}"
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

    # ------------------------------------------------------------------ selection

    @property
    def selection(self) -> np.ndarray:
        """The selected table rows (sorted, unique, read-only uint32 array). Set it with
        :meth:`select`; ``observe(..., names=["_selection"])`` follows it."""
        view = self._sel.view()
        view.flags.writeable = False
        return view

    def select(self, rows: Any) -> np.ndarray:
        """Select table ``rows`` (row indices); returns the selection."""
        sel = np.unique(np.asarray(rows, dtype=np.int64).reshape(-1))
        n = len(self._index().labels)
        if len(sel) and (sel[0] < 0 or sel[-1] >= n):
            msg = f"selection rows must be within 0..{n - 1}"
            raise IndexError(msg)
        self._sel = sel.astype(np.uint32)
        self._selection = self._sel.astype("<u4").tobytes()
        return self.selection

    # ------------------------------------------------------------------ views

    def _feature_rows(self, c: int) -> list[dict[str, Any]]:
        lookup = _lookup(self.annotations)
        sus = self._suspects.get(c, {})
        return [
            {"feature": f, "rank": i + 1, "importance": float(self.importance[c, f]),
             "mark": lookup.get((c, f), ""), "suspicion": sus.get(f, {}).get("suspicion"),
             "suggest": bool(sus.get(f, {}).get("suggest", False))}
            for i, f in enumerate(self.index.top_features(c, self._n_features))
        ]  # fmt: skip

    def suspects(self, c: int | None = None) -> Any:
        """Class ``c``'s (default: the shown class's) top features ranked by how likely each is
        spurious (:func:`~faultlens.analysis.suspects.rank_suspects`)."""
        c = self.class_index if c is None else int(c)
        table = rank_suspects(self._index(), c, n_features=self._n_features, gap_k=self.gap_k)
        self._suspects[c] = {int(r.feature): r._asdict() for r in table.itertuples(index=False)}
        return table

    def _on_class(self, _change: dict | None) -> None:
        c = self.class_index
        if self.index.scored(c) and c not in self._suspects:
            try:
                self.suspects(c)
            except (ValueError, RuntimeError) as exc:  # e.g. a layer without spatial maps
                self._suspects[c] = {}
                self.status = f"no spurious suggestions: {exc}"
        feats = self._feature_rows(c)
        if not feats:
            reason = next((s["reason"] for s in self.index.skipped if s["class"] == c), "")
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
            self.mark = _lookup(self.annotations).get((self.class_index, self.feature), "")

    def _on_k(self, _change: dict) -> None:
        with self.hold_sync():
            self._update_groups()
            self._update_strip()

    def _on_view(self, _change: dict) -> None:
        self._pngs.clear()

    def _update_groups(self) -> None:
        self.groups = self.index.groups(self.class_index, self.feature, self.k, self.gap_k)
        g = self.groups
        self.select(g["top"]["rows"] + g["bottom"]["rows"] if g else [])

    def _update_strip(self) -> None:
        c = self.class_index
        feats = sorted(int(m["feature"]) for m in self.annotations
                       if m["mark"] == "spurious" and int(m["class"]) == c)  # fmt: skip
        self.strip = self.index.strip(c, feats, self._strip_size, self.gap_k)

    # ------------------------------------------------------------------ marks

    @property
    def annotations_path(self) -> Path | None:
        """``<analysis folder>/annotations.json``, or None when the analysis has no folder."""
        return self.marks.path

    def _list_marks(self) -> list[dict[str, Any]]:
        """This layer's marks; what reading them said (marks moved, entries ignored) in ``status``."""
        marks = self.marks.marks(self.layer)
        note = self.marks.store.take_notes()
        if note:
            self.status = note
        return marks

    def _read_marks(self) -> None:
        self.annotations = self._list_marks()

    def refresh_marks(self) -> None:
        """Re-read the marks, e.g. after ``analysis.save(folder)``: marks kept in memory until then
        move into ``<folder>/annotations.json``."""
        with self.hold_sync():
            self._read_marks()
            self.features = self._feature_rows(self.class_index)
            self._update_strip()
            self.mark = _lookup(self.annotations).get((self.class_index, self.feature), "")
            self._update_mitigation()

    def set_mark(self, cls: int, feature: int, mark: str) -> None:
        """Mark (class, feature) of this layer ``"core"`` or ``"spurious"`` (``""`` removes it);
        saved atomically to ``annotations.json``."""
        self.status = self.marks.set(self.layer, cls, feature, mark)
        self.refresh_marks()

    def spurious_features(self) -> dict[int, list[int]]:
        """``{class: [feature, ...]}`` marked spurious on this layer (for spuriosity, mitigation)."""
        out = self.marks.spurious_features(self.layer)
        note = self.marks.store.take_notes()
        if note:
            self.status = note
        return out

    def export_annotations(self, path: str | Path | None = None) -> Path:
        """Write this layer's marks as CSV (default ``./annotations.csv`` in the working
        directory, where Jupyter can open it); returns the path."""
        return self.marks.export_csv(self.layer, path)

    # ------------------------------------------------------------------ images

    def maps(self, rows: list[int]) -> np.ndarray:
        """(n, H, W) maps of the shown feature (NAM) or the shown class (Grad-CAM) for ``rows``."""
        return self._index().maps(rows, self.map_kind, self.feature, self.class_index)

    def tile_pngs(self, rows: list[int]) -> list[tuple[bytes, bytes]]:
        """``[(original PNG, overlay PNG), ...]`` for ``rows`` at the current map settings."""
        key_base = (self.map_kind, self.feature, self.class_index, round(self.opacity, 3))
        want = [r for r in rows if (*key_base, r) not in self._pngs]
        if want:
            for r, m in zip(want, self.maps(want), strict=True):
                img = self.analysis.image(int(r)).convert("RGB")
                size = max(self._tile, *img.size)
                small = img.size[0] < size
                resample = Image.Resampling.NEAREST if small else Image.Resampling.BILINEAR
                big = np.asarray(img.resize((size, size * img.size[1] // img.size[0]), resample))
                self._pngs[(*key_base, r)] = (
                    png(big),
                    png(sp.overlay(big, m, opacity=self.opacity)),
                )
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
            if kind == "cancel":
                self.cancel_task()
            elif self.index is None:
                return  # nothing to show yet: the activations are being computed
            elif self._mitigation_command(kind, content):
                pass
            elif kind == "tiles":
                rows = [int(r) for r in content.get("rows", [])][:200]
                bad = [r for r in rows if not 0 <= r < len(self.index.labels)]
                if bad:
                    msg = f"rows {bad[:5]} out of range"
                    raise IndexError(msg)
                pairs = self.tile_pngs(rows)
                self.send(
                    {"type": "tiles", "req": content.get("req"), "rows": rows,
                     "kind": self.map_kind, "feature": self.feature, "class": self.class_index},
                    buffers=[b for pair in pairs for b in pair],
                )  # fmt: skip
            elif kind == "set_mark":
                if self.feature < 0:
                    msg = "no feature shown"
                    raise ValueError(msg)
                self.set_mark(self.class_index, self.feature, content.get("mark", ""))
            elif kind == "export":
                self.status = f"exported marks to {self.export_annotations()}"
            elif kind == "select":
                which = content.get("group")
                if which == "strip":
                    self.select(self.strip.get("rows", []))
                elif which in ("top", "bottom"):
                    self.select(self.groups.get(which, {}).get("rows", []))
        except Exception as exc:  # shown in the status bar instead of lost
            self.status = f"{kind}: {exc}" if kind != "set_mark" else f"mark not saved: {exc}"

    # ------------------------------------------------------------------ linking and static output

    def link_explorer(self, explorer: Any) -> Callable[[], None]:
        """Highlight this browser's ``selection`` in an Explorer's map; returns an unlink function."""

        def push(_change: dict) -> None:
            explorer.select(self.selection.astype(np.int64))

        self.observe(push, names=["_selection"])
        return lambda: self.unobserve(push, names=["_selection"])

    def render_png(self, n: int = 6) -> bytes:
        """A PNG of the shown feature's ``n`` most and least activating images over their maps."""
        g = self.groups
        rows = [(f"{title} (feature {self.feature})", self.tile_pngs(g[end]["rows"][:n]))
                for end, title in (("top", "most activating"), ("bottom", "least activating"))
                if g]  # fmt: skip
        return tiles_png(rows, size=min(self._tile, 96))

    def to_html(self, image: bytes | None = None) -> str:
        """A static HTML summary of the shown class (every data string escaped), with ``image``
        (a PNG, e.g. :meth:`render_png`) when given."""
        name = self.class_names[self.class_index] if self.class_names else ""
        return features_html(name, self.layer, self.features, self.groups, image) + mitigation_html(
            self.mitigation
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        def render() -> tuple[bytes, str]:
            image = self.render_png()
            return image, self.to_html(image)

        return with_static_copy(super()._repr_mimebundle_(**kwargs), render)
