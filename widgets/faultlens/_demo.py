"""The offline demo: spurious Fashion-MNIST, a small CNN trained on it, EfficientNet-Lite0 embeddings,
a UMAP map — all cached, so the second run takes seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from faultlens.analysis.analyze import analyze
from faultlens.analysis.result import Analysis
from faultlens.data.demo import CLASS_NAMES, GROUP_NAMES, load_spurious_fashion_mnist
from faultlens.data.sources import ArraySource
from faultlens.models.classifier import Classifier
from faultlens.models.demo_cnn import FEATURE_LAYER, demo_transform, trained_cnn
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
    analysis.meta["demo"] = {"seed": seed, "feature_layer": FEATURE_LAYER, "groups": GROUP_NAMES}
    # the planted truth: kept to check the tools against, never used to describe a slice
    analysis.meta["truth_columns"] = ["cue", "small", "planted_group"]
    out = Path(folder) if folder is not None else store.root / "demo-analysis"
    analysis.save(out)
    say(f"[faultlens] analysis saved to {out} ({time.perf_counter() - t0:.1f} s)")
    return analysis


def planted_report(analysis: Analysis) -> pd.DataFrame:
    """Accuracy of each planted group beside the rest of the same classes."""
    t = analysis.table
    rows = []
    for group in [g for g in GROUP_NAMES if g != "none"]:
        sel = (t["planted_group"] == group).to_numpy()
        if not sel.any():
            continue
        classes = np.unique(t["label"].to_numpy()[sel])
        rest = np.isin(t["label"].to_numpy(), classes) & ~sel
        rows.append(
            {
                "group": group,
                "description": GROUP_NAMES[group],
                "n": int(sel.sum()),
                "accuracy": float(t["correct"].to_numpy()[sel].mean()),
                "rest_of_class_accuracy": float(t["correct"].to_numpy()[rest].mean()),
            }
        )
    df = pd.DataFrame(rows)
    df["gap_points"] = 100 * (df["rest_of_class_accuracy"] - df["accuracy"])
    return df
