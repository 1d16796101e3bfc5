"""A layer's neural features over every image of an analysis, computed in bounded memory.

:class:`FeatureIndex` holds what the FeatureBrowser's views need and nothing more: each image's
pooled activations (n × C float32), the importance of every feature for every class, and the
labels. Images are decoded one batch at a time (``batch_size``) and dropped after their forward
pass; the activations are written to the store in shards of 1,024 images as they are computed, so
an interrupted computation (the kernel's stop button) keeps what it finished, and the next
FeatureIndex on the same analysis, model and layer reads them back instead of running the model.
Images and maps of a view (a few dozen rows) are decoded and computed when asked for.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from faultlens.analysis import spurious as sp
from faultlens.models.base import fingerprint_module
from faultlens.store import ArtifactStore, fingerprint_array, make_key

if TYPE_CHECKING:
    from faultlens.analysis.result import Analysis

__all__ = ["AnalysisImages", "FeatureIndex"]

SHARD = 1024

Progress = Callable[[int, int], None]


class AnalysisImages(Sequence):
    """The analysis's images of ``rows`` (default: all) as a lazy sequence: an item is decoded when
    it is indexed, so a batched reader holds one batch at a time."""

    def __init__(self, analysis: Analysis, rows: Sequence[int] | np.ndarray | None = None) -> None:
        self.analysis = analysis
        self.rows = np.arange(len(analysis)) if rows is None else np.asarray(rows, dtype=np.intp)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        return self.analysis.image(int(self.rows[i]))


class FeatureIndex:
    """Pooled activations and class importance of ``layer`` for every image of ``analysis``.

    Parameters
    ----------
    analysis:
        The analysis (its images, and table columns ``label``, ``pred``, ``correct``).
    model, layer, transform:
        The classifier, the layer whose channels are the features, PIL image → C×H×W tensor.
    batch_size:
        Images per forward pass (and the most images decoded at once).
    store:
        Where the activations are cached (default: the faultlens cache, ``$FAULTLENS_CACHE``).
    progress:
        Called ``progress(done, total)`` after each batch of images that runs through the model.

    Attributes
    ----------
    acts:
        (n, C) float32 pooled activations.
    importance:
        (n_classes, C) float32; a NaN row for a class that could not be scored.
    notes:
        What :class:`~faultlens.analysis.spurious.SpuriousWarning` said while scoring.
    """

    def __init__(
        self,
        analysis: Analysis,
        model: nn.Module,
        layer: str,
        transform: Callable[[Any], torch.Tensor],
        *,
        batch_size: int = 128,
        store: ArtifactStore | None = None,
        progress: Progress | None = None,
    ) -> None:
        table = analysis.table
        missing = [c for c in ("label", "pred", "correct") if c not in table.columns]
        if missing:
            msg = f"the analysis table lacks column(s) {missing}"
            raise ValueError(msg)
        self.analysis = analysis
        self.model = model.eval()
        self.layer = layer
        self.transform = transform
        self.features = sp.NeuralFeatures(model, layer, transform, batch_size=batch_size)
        self.labels = table["label"].to_numpy(dtype=np.int64)
        self.preds = table["pred"].to_numpy(dtype=np.int64)
        self.correct = table["correct"].to_numpy(dtype=bool)
        self.store = store if store is not None else ArtifactStore()
        self.acts = self._activations(progress)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sp.SpuriousWarning)
            self.importance = self.features.importance(
                self.acts, self.labels, self.preds, images=AnalysisImages(analysis)
            )
        self.notes = [str(w.message) for w in caught]

    def __repr__(self) -> str:
        return f"<faultlens FeatureIndex layer={self.layer!r} images={len(self.acts)}>"

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """``[{"class": c, "reason": ...}]`` for classes importance could not score."""
        return self.features.skipped

    @property
    def n_features(self) -> int:
        return int(self.acts.shape[1])

    def _key(self) -> str:
        table = self.analysis.table
        ids = hashlib.sha256("\n".join(map(str, table["id"])).encode()).hexdigest()[:24]
        probe = self.transform(self.analysis.image(0)) if len(table) else torch.zeros(0)
        return make_key(
            "features", fingerprint_module(self.model), self.layer, ids,
            fingerprint_array(table["source_index"].to_numpy()),
            fingerprint_array(probe.detach().float().cpu().numpy()),
        )  # fmt: skip

    def _activations(self, progress: Progress | None) -> np.ndarray:
        n = len(self.labels)
        if n == 0:
            return np.zeros((0, 0), dtype=np.float32)
        shards = self.store.sharded("features", self._key(), n, shard_size=SHARD)
        todo = shards.missing()
        done = n - sum(b - a for a, b in (shards.bounds(s) for s in todo))
        for s in todo:
            a, b = shards.bounds(s)
            parts = []
            for start in range(a, b, self.features.batch_size):
                stop = min(start + self.features.batch_size, b)
                parts.append(
                    self.features.activations(AnalysisImages(self.analysis, range(start, stop)))
                )
                done += stop - start
                if progress is not None:
                    progress(done, n)
            shards.write(s, np.concatenate(parts).astype(np.float32, copy=False))
        return shards.assemble()[0].astype(np.float32, copy=False)

    # -- what a view needs -----------------------------------------------------------------------

    def scored(self, c: int) -> bool:
        """Could importance score class ``c``?"""
        return 0 <= c < len(self.importance) and not np.isnan(self.importance[c]).all()

    def top_features(self, c: int, n: int) -> list[int]:
        """Class ``c``'s ``n`` most important features ([] when it was not scored)."""
        if not self.scored(c):
            return []
        return [int(f) for f in np.argsort(-self.importance[c], kind="stable")[:n]]

    def class_rows(self, c: int) -> np.ndarray:
        return np.flatnonzero(self.labels == c)

    def ends(self, c: int, feature: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Class ``c``'s ``k`` most and ``k`` least activating rows for ``feature`` (k clamped to
        half the class)."""
        rows = self.class_rows(c)
        order = rows[np.argsort(self.acts[rows, feature], kind="stable")]
        k = min(k, len(rows) // 2)
        return order[::-1][:k], order[:k]

    def images(self, rows: Sequence[int] | np.ndarray) -> torch.Tensor:
        """The transformed images of ``rows`` as one (len(rows), C, H, W) tensor."""
        rows = np.asarray(rows, dtype=np.intp)
        return torch.stack([self.transform(self.analysis.image(int(r))) for r in rows])

    def maps(self, rows: Sequence[int] | np.ndarray, kind: str, feature: int, c: int) -> np.ndarray:
        """(n, H, W) maps in [0, 1]: the activation map of ``feature`` (``kind="nam"``) or the
        Grad-CAM of class ``c`` (``"gradcam"``) for ``rows``."""
        x = self.images(rows)
        if kind == "gradcam":
            return sp.grad_cam(self.model, self.layer, x, c)
        return self.features.activation_maps(x, feature)

    def groups(self, c: int, feature: int, k: int, gap_k: int) -> dict[str, Any]:
        """The top/bottom groups of (class, feature) with activations, correctness, accuracy and the
        spurious gap along the feature ({} when there is no feature or fewer than 2 images)."""
        if feature < 0 or len(self.class_rows(c)) < 2:
            return {}
        top, bottom = self.ends(c, feature, k)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sp.SpuriousWarning)
            gap = sp.spurious_gap(self.acts[:, feature], self.correct, self.labels, k=gap_k,
                                  classes=[c])  # fmt: skip
        g = gap.table.iloc[0].to_dict() if len(gap.table) else {}

        def group(r: np.ndarray) -> dict[str, Any]:
            return {"rows": [int(x) for x in r], "acts": [float(v) for v in self.acts[r, feature]],
                    "correct": [bool(v) for v in self.correct[r]],
                    "accuracy": float(self.correct[r].mean()) if len(r) else math.nan}  # fmt: skip

        return {
            "class": c, "feature": feature, "top": group(top), "bottom": group(bottom),
            "gap": {key: float(v) for key, v in g.items() if key != "class"},
            "note": "; ".join(str(w.message) for w in caught),
            "scale": "maps scaled per image (where, not how strongly)",
        }  # fmt: skip

    def strip(self, c: int, spurious: list[int], size: int, gap_k: int) -> dict[str, Any]:
        """Class ``c``'s images ranked by spuriosity along its ``spurious`` features: ``size`` of
        them spread evenly over the ranking, with the spurious gap."""
        if not spurious:
            return {"class": c, "features": [], "rows": [],
                    "note": "mark a feature of this class spurious to rank its images"}  # fmt: skip
        score = sp.spuriosity(self.acts, self.labels, {c: spurious})
        rows = self.class_rows(c)
        order = rows[np.argsort(score[rows], kind="stable")]
        pick = np.unique(np.linspace(0, len(order) - 1, min(size, len(order))).round())
        shown = order[pick.astype(int)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sp.SpuriousWarning)
            gap = sp.spurious_gap(score, self.correct, self.labels, k=gap_k, classes=[c])
        g = gap.table.iloc[0].to_dict() if len(gap.table) else {}
        return {
            "class": c, "features": spurious, "rows": [int(r) for r in shown],
            "score": [float(score[r]) for r in shown],
            "correct": [bool(self.correct[r]) for r in shown],
            "gap": {key: float(v) for key, v in g.items() if key != "class"},
            "note": "; ".join(str(w.message) for w in caught)
            or f"{len(shown)} of {len(rows)} images, evenly spaced from least to most spurious",
        }  # fmt: skip
