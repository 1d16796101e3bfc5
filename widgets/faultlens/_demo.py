"""The offline demo: spurious Fashion-MNIST, a small CNN trained on it, EfficientNet-Lite0 embeddings,
a UMAP map — all cached, so the second run takes seconds.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from faultlens.analysis.analyze import analyze
from faultlens.analysis.result import Analysis
from faultlens.data.demo import CLASS_NAMES, GROUP_NAMES, load_spurious_fashion_mnist
from faultlens.data.sources import ArraySource
from faultlens.models.classifier import Classifier
from faultlens.models.demo_cnn import (
    FEATURE_LAYER,
    cached_cnn,
    cnn_key,
    demo_transform,
    trained_cnn,
)
from faultlens.models.embedders import EfficientNetLiteEmbedder
from faultlens.store import ArtifactStore

#: Input resolution of the offline embedder in the demo (28×28 images; 112 is 4× faster than 224).
DEMO_EMBED_SIZE = 112


def demo(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    folder: str | os.PathLike[str] | None = None,
    n_test_per_class: int = 400,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> Analysis:
    """Build (or load from the cache) the demo analysis and save it to ``folder``.

    ``folder`` defaults to ``<cache>/demo-analysis``. The table carries the planted truth:
    ``cue``, ``small`` and ``planted_group`` columns.

    Parameters
    ----------
    cache_dir:
        The artifact cache (default ``$FAULTLENS_CACHE``, else the user cache folder); the trained
        CNN, the embeddings and the map are kept there, so a second call only loads them.
    folder:
        Where the analysis is saved.
    n_test_per_class:
        Test images per class that are analysed (the full test split holds 1,000; 400 by default).
    seed:
        Seeds the planted cues, the sampling and the CNN's training.
    force:
        Recompute everything instead of reading the cache.
    progress:
        Print what runs (training epochs, embedding, the map) and the summary.
    """
    store = ArtifactStore(cache_dir)
    say = print if progress else (lambda *_a, **_k: None)
    t0 = time.perf_counter()
    splits = load_spurious_fashion_mnist(n_test_per_class=n_test_per_class, seed=seed)
    train, test = splits["train"], splits["test"]
    say(
        f"[faultlens] spurious Fashion-MNIST: {len(train.labels)} train, {len(test.labels)} test images"
    )
    say("[faultlens] classifier: small CNN (trained once, then cached)")
    model = trained_cnn(
        train.images, train.labels, store=store, seed=seed, force=force, progress=progress
    )
    source = ArraySource(
        test.images,
        test.labels,
        class_names=CLASS_NAMES,
        ids=[f"test-{i:05d}" for i in range(len(test.labels))],
        columns=test.columns(),
    )
    say(
        f"[faultlens] embedder: EfficientNet-Lite0 (ImageNet weights, offline) at {DEMO_EMBED_SIZE} px"
    )
    analysis = analyze(
        source,
        classifier=Classifier(model, demo_transform, class_names=CLASS_NAMES, name="demo-cnn"),
        embedder=EfficientNetLiteEmbedder(DEMO_EMBED_SIZE),
        cache_dir=store.root,
        batch_size=128,
        force=force,
        progress=progress,
    )
    analysis.meta["demo"] = {
        "seed": seed, "feature_layer": FEATURE_LAYER, "groups": GROUP_NAMES,
        "cnn_key": cnn_key(train.images, train.labels, seed=seed),  # demo_classifier finds it
    }  # fmt: skip
    # the planted truth: kept to check the tools against, never used to describe a slice
    analysis.meta["truth_columns"] = ["cue", "small", "planted_group"]
    out = Path(folder) if folder is not None else store.root / "demo-analysis"
    analysis.save(out)
    say(f"[faultlens] analysis saved to {out} ({time.perf_counter() - t0:.1f} s)")
    return analysis


def demo_classifier(analysis: Analysis, cache_dir: str | os.PathLike[str] | None = None) -> Any:
    """The demo's classifier of ``analysis`` (a demo analysis) read from the cache its CNN was
    trained into, as a :class:`Classifier`; None when the analysis is not the demo's or the CNN is
    not cached there (nothing is trained here)."""
    key = (analysis.meta.get("demo") or {}).get("cnn_key")
    if not key:
        return None
    model = cached_cnn(ArtifactStore(cache_dir), str(key))
    if model is None:
        return None
    return Classifier(model, demo_transform, class_names=CLASS_NAMES, name="demo-cnn")


def planted_report(
    analysis: Analysis, found: list[Any] | None = None, *, random_state: int = 0
) -> pd.DataFrame:
    """Each planted group beside the rest of its classes, and how well it is found.

    Columns: ``accuracy`` and ``rest_of_class_accuracy`` (and the gap in points); ``best_slice``,
    ``slice_precision`` and ``slice_recall``: among ``found`` (default: the top 5 slices of
    ``analysis.find_slices(5, method=None)``), the slice whose members are most often in the group
    (ties: the larger recall); ``failure_auroc``: within the group's classes, the AUROC of the
    cross-fitted failure score (low = likely error) for the group against the rest.
    """
    from sklearn.metrics import roc_auc_score

    t = analysis.table
    if found is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = analysis.find_slices(5, method=None, random_state=random_state)
    if "failure_score" not in t.columns:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis.failure_scores(random_state=random_state)
    score = t["failure_score"].to_numpy(dtype=np.float64)
    groups = t["planted_group"].to_numpy()
    labels = t["label"].to_numpy()
    rows = []
    for group in [g for g in GROUP_NAMES if g != "none"]:
        sel = groups == group
        if not sel.any():
            continue
        classes = np.unique(labels[sel])
        rest = np.isin(labels, classes) & ~sel
        best = (math.nan, math.nan, "")
        for sl in found:
            hits = int(sel[np.asarray(sl.indices)].sum())
            prec, rec = hits / max(len(sl.indices), 1), hits / int(sel.sum())
            if math.isnan(best[0]) or (prec, rec) > best[:2]:
                best = (prec, rec, str(sl.name))
        scored = (sel | rest) & np.isfinite(score)
        auroc = (
            float(roc_auc_score(sel[scored], -score[scored]))
            if 0 < sel[scored].sum() < scored.sum()
            else math.nan
        )
        rows.append(
            {
                "group": group,
                "description": GROUP_NAMES[group],
                "n": int(sel.sum()),
                "accuracy": float(t["correct"].to_numpy()[sel].mean()),
                "rest_of_class_accuracy": float(t["correct"].to_numpy()[rest].mean()),
                "best_slice": best[2],
                "slice_precision": best[0],
                "slice_recall": best[1],
                "failure_auroc": auroc,
            }
        )
    df = pd.DataFrame(rows)
    df["gap_points"] = 100 * (df["rest_of_class_accuracy"] - df["accuracy"])
    return df
