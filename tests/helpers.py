"""Builders shared by the tests: tiny seeded models, small image sets, planted analyses.

Fixtures live in ``conftest.py``; what a test calls lives here and is imported from here. The
models and images need only numpy and torch (a child process may import them with ``tests/`` on its
path); the analyses import faultlens when they are built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from faultlens.analysis.result import Analysis

# ----------------------------------------------------------------------------- models and images


class TinyNet(nn.Module):
    """A seeded 3-class classifier on 3×16×16 inputs with a conv layer to take features from."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def tiny_transform(img) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB").resize((16, 16)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def analyze_tiny(source: Any, net: nn.Module, **kwargs: Any) -> Analysis:
    """``faultlens.analyze`` of ``source`` with ``net`` (a :class:`TinyNet`) as the classifier and
    its conv layer as the embedder, quietly."""
    from faultlens.analysis.analyze import analyze
    from faultlens.models.classifier import Classifier
    from faultlens.models.embedders import LayerEmbedder

    return analyze(
        source,
        classifier=Classifier(net, tiny_transform),
        embedder=LayerEmbedder(net, "conv", tiny_transform),
        progress=False,
        **kwargs,
    )


def blob_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n RGB 16×16 images in 3 classes whose mean colour depends on the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float32)
    imgs = base[labels][:, None, None, :] + rng.normal(0, 20, (n, 16, 16, 3))
    return np.clip(imgs, 0, 255).astype(np.uint8), labels


class MeanColour:
    """A batch model without weights: each image's mean colour per channel (a model interface
    with ``id``, ``input_size``, ``transform`` and ``run``)."""

    id = "mean-colour"
    input_size = None

    def transform(self, image: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)

    def run(self, batch: torch.Tensor) -> np.ndarray:
        return batch.mean(dim=(2, 3)).numpy()


def temp_files(root: Path) -> list[Path]:
    """The temporary files of atomic writes (``.<name>.<owner>.<random>.tmp``) below ``root``."""
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


#: A tiny open_clip ViT config (random weights, built offline): see ``conftest.tiny_clip_name``.
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def clusters(
    n: int, k: int, d: int, *, scale: float, seed: int = 0, random_labels: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 embeddings in ``k`` Gaussian clusters (unit spread, centres drawn with spread
    ``scale``) and each point's cluster: ``i % k``, or drawn at random with ``random_labels``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, d)) * scale
    lab = rng.integers(0, k, n) if random_labels else np.arange(n) % k
    return (centres[lab] + rng.normal(0, 1, (n, d))).astype(np.float32), lab


# ----------------------------------------------------------------------------- analyses


def analysis_from(
    label: np.ndarray,
    pred: np.ndarray,
    class_names: Sequence[str],
    *,
    xy: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    loss: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    images: np.ndarray | None = None,
    ids: Sequence[str] | None = None,
    paths: Sequence[str | None] | None = None,
    columns: Mapping[str, Any] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
    folder: Path | None = None,
) -> Analysis:
    """An :class:`Analysis` of the given per-row truth, as :func:`faultlens.analyze` lays it out.

    Defaults: ids ``img-<i>``, no paths, the map at the origin, confidence 1 (or the largest
    probability), loss 0 for a right prediction and 1 for a wrong one; ``columns`` are appended
    after the table's own; ``images`` (one per row) become the analysis's in-memory source."""
    import pandas as pd

    from faultlens.analysis.result import TABLE_COLUMNS, Analysis
    from faultlens.data.sources import ArraySource

    n = len(label)
    names = np.asarray(class_names, dtype=object)
    xy = np.zeros((n, 2), dtype=np.float32) if xy is None else xy
    if confidence is None:
        confidence = probs.max(1) if probs is not None else np.ones(n, dtype=np.float32)
    values = {
        "id": [f"img-{i}" for i in range(n)] if ids is None else list(ids),
        "path": [None] * n if paths is None else list(paths),
        "label": label,
        "label_name": names[label],
        "pred": pred,
        "pred_name": names[pred],
        "confidence": confidence,
        "loss": (pred != label).astype(np.float64) if loss is None else loss,
        "correct": pred == label,
        "x": xy[:, 0],
        "y": xy[:, 1],
        "source_index": np.arange(n),
    }
    table = pd.DataFrame({c: values[c] for c in TABLE_COLUMNS} | dict(columns or {}))
    return Analysis(
        table,
        class_names=list(class_names),
        probs=probs,
        embeddings=embeddings,
        arrays=arrays,
        source=ArraySource(images, label, class_names=list(class_names)) if images is not None
        else None,
        folder=folder,
    )  # fmt: skip


def planted_cluster(
    n: int = 400,
    *,
    cluster: int = 50,
    wrong: int = 45,
    extra_errors: int = 6,
    image_px: int = 8,
    ids: str = "img-{}",
    logits: bool = False,
    failure_score: bool = False,
) -> tuple[Analysis, np.ndarray]:
    """The planted clustered analysis, and its cluster's rows.

    ``n`` rows in 4 classes (``i % 4``) with 16-D embeddings in 4 Gaussian clusters; the first
    ``cluster`` rows of class 2 are moved to a tight cluster of their own, and its first ``wrong``
    are predicted as class 1. ``extra_errors`` rows outside it are predicted as the next class. The
    map is the embeddings' first two dimensions; ``logits``: ImageNet logits (``imagenet_logits``)
    with class 7 high inside the cluster only; ``failure_score``: a table column that is low on
    the errors."""
    rng = np.random.default_rng(0)
    names = ["zero", "one", "two", "three"]
    label = np.arange(n) % 4
    emb = (rng.normal(0, 1, (4, 16)) * 3)[label] + rng.normal(0, 1, (n, 16))
    members = np.flatnonzero(label == 2)[:cluster]
    emb[members] = rng.normal(0, 1, 16) * 6 + rng.normal(0, 0.2, (cluster, 16))
    pred = label.copy()
    pred[members[:wrong]] = 1
    if extra_errors:
        other = rng.choice(np.setdiff1d(np.arange(n), members), extra_errors, replace=False)
        pred[other] = (label[other] + 1) % 4
    probs = np.full((n, 4), 0.05, dtype=np.float32)
    probs[np.arange(n), pred] = 0.85
    columns = {}
    if failure_score:
        columns["failure_score"] = np.where(pred == label, 1.0, -1.0) + np.arange(n) / n
    arrays = {}
    if logits:
        L = rng.normal(0, 0.1, (n, 1000)).astype(np.float32)
        L[members, 7] += 6.0
        arrays["imagenet_logits"] = L
    images = rng.integers(0, 255, (n, image_px, image_px, 3), dtype=np.uint8)
    a = analysis_from(
        label,
        pred,
        names,
        xy=emb[:, :2].astype(np.float32),
        loss=-np.log(probs[np.arange(n), label]),
        probs=probs,
        embeddings=emb.astype(np.float32),
        images=images,
        ids=[ids.format(i) for i in range(n)],
        columns=columns,
        arrays=arrays,
    )
    return a, members


def annotated_analysis(folder: Path, n: int = 30) -> Analysis:
    """An analysis of ``n`` blob images in 3 classes (``a``, ``b``, ``c``; about 30 % predicted as
    the next class), saved in ``folder`` with what a user wrote before: the saved slice ``kept by
    hand`` (rows 0-4) and one feature mark (layer ``conv``, class 2, feature 7: ``core``)."""
    from faultlens.store import write_json
    from faultlens.ui.explorer import Explorer

    rng = np.random.default_rng(0)
    imgs, label = blob_images(n)
    pred = np.where(rng.random(n) < 0.3, (label + 1) % 3, label)
    xy = np.stack([rng.normal(size=n), rng.normal(size=n)], axis=1).astype(np.float32)
    a = analysis_from(label, pred, ["a", "b", "c"], xy=xy, confidence=np.full(n, 0.8),
                      loss=np.full(n, 0.5), images=imgs)  # fmt: skip
    a.save(folder)
    Explorer(a).save_slice("kept by hand", list(range(5)))
    write_json(folder / "annotations.json", {"format": 1, "marks": [
        {"layer": "conv", "class": 2, "class_name": "c", "feature": 7, "mark": "core",
         "updated": "2024-01-01T00:00:00+00:00"}]})  # fmt: skip
    return a
