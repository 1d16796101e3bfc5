"""Bad input to the models layer and models that fail.

A model's cache identity follows its transform; images a transform leaves in another shape are
skipped with the fix; an item one model cannot take (its transform raises, or it gives NaN) is
skipped for that model alone and recorded in that model's cache only; a failed classifier leaves
no skips behind. The data layer: test_bad_input_data.py; damaged cache shards:
test_store_faults.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from faultlens.analysis.analyze import analyze
from faultlens.data.sources import FolderSource
from faultlens.models.classifier import Classifier
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore
from tests.helpers import MeanColour, TinyNet, blob_images

# the analyses here are a dozen points: the map falls back to PCA, which is not under test
pytestmark = pytest.mark.filterwarnings("ignore:.*too few for UMAP")


def test_the_cache_id_of_a_model_depends_on_its_transform() -> None:
    net = TinyNet().eval()

    def tf(size: int) -> T.Compose:
        return T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor()])

    big = Classifier(net, tf(224), device="cpu", name="m")
    small = Classifier(net, tf(64), device="cpu", name="m")
    again = Classifier(net, tf(224), device="cpu", name="m")
    assert big.id != small.id
    assert big.id == again.id  # built twice, the same transform: the same cache entry

    # functions and lambdas are told apart by what they do, not by where they sit in memory
    def scaled(factor: float) -> T.Compose:
        return T.Compose([T.ToTensor(), T.Lambda(lambda t: t * factor)])

    twice, thrice = (Classifier(net, scaled(f), device="cpu").id for f in (2.0, 3.0))
    assert twice != thrice
    assert twice == Classifier(net, scaled(2.0), device="cpu").id


def test_images_a_transform_leaves_in_another_shape_are_skipped_with_the_fix(
    tmp_path: Path,
) -> None:
    root = tmp_path / "imgs"
    sizes = {"c0/a.png": (20, 20), "c0/b.png": (30, 20), "c1/c.png": (16, 16), "c1/d.png": (24, 24)}
    for name, (w, h) in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (10, 20, 30)).save(root / name)
    source = FolderSource(root)
    net = TinyNet().eval()
    clf = Classifier(net, T.Compose([T.Resize(8), T.ToTensor()]), device="cpu")
    run = run_models(source, {"classifier": clf}, store=ArtifactStore(tmp_path / "cache"),
                     batch_size=2, progress=False, num_workers=0)  # fmt: skip
    assert [s["id"] for s in run.skipped] == ["c0/b.png"]
    assert "transform gave 3×8×12, other images 3×8×8" in run.skipped[0]["reason"]
    assert "CenterCrop" in run.skipped[0]["reason"]
    out = run.outputs["classifier"]
    assert np.isnan(out[1]).all() and np.isfinite(np.delete(out, 1, axis=0)).all()


class _Picky(MeanColour):
    """MeanColour that cannot take some images: its transform raises for images whose red mean is
    below ``refuse_below``, and its output is NaN for those whose green mean is above ``nan_above``.
    """

    def __init__(self, model_id: str, refuse_below: float = -1, nan_above: float = 999) -> None:
        self.id, self.refuse_below, self.nan_above = model_id, refuse_below, nan_above

    def transform(self, image: Image.Image) -> torch.Tensor:
        t = super().transform(image)
        if t[0].mean() < self.refuse_below:
            raise ValueError("planted refusal")
        return t

    def run(self, batch: torch.Tensor) -> np.ndarray:
        out = super().run(batch)
        out[out[:, 1] > self.nan_above] = np.nan
        return out


@pytest.mark.parametrize("workers", [0, 2])
def test_an_item_one_model_cannot_take_is_skipped_for_that_model_alone(
    tmp_path: Path, workers: int
) -> None:
    """Blob images: red ones (label 0) have a red mean near 200, the others near 40. The
    classifier refuses the non-red ones and gives NaN for green ones (label 1); the embedder takes
    every image. Each model's cache records its own skips, so fixing the classifier leaves the
    embedder's cache as it was and no image skipped."""
    imgs, labels = blob_images(12)
    root = tmp_path / "imgs"
    for i, (im, y) in enumerate(zip(imgs, labels, strict=True)):
        (root / f"c{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(root / f"c{y}" / f"{i:02d}.png")
    source = FolderSource(root)
    store = ArtifactStore(tmp_path / "cache")
    emb = _Picky("embedder-v1")
    opts = {"store": store, "batch_size": 4, "num_workers": workers, "progress": False}
    picky = _Picky("classifier-v1", refuse_below=120)
    run = run_models(source, {"classifier": picky, "embedder": emb}, **opts)
    refused = np.flatnonzero(source.labels != 0)
    assert [s["index"] for s in run.skipped] == refused.tolist()
    assert all("planted refusal" in s["reason"] for s in run.skipped)
    assert np.isnan(run.outputs["classifier"][refused]).all()
    assert np.isfinite(run.outputs["embedder"]).all()  # the embedder ran on every image
    # NaN from the classifier alone
    nan_clf = _Picky("classifier-v2", nan_above=120)
    run = run_models(source, {"classifier": nan_clf, "embedder": emb}, **opts)
    green = np.flatnonzero(source.labels == 1)
    assert run.computed_shards == {"classifier": [0], "embedder": []}  # the embedder: cached
    assert [s["index"] for s in run.skipped] == green.tolist()
    assert all(s["reason"] == "model 'classifier' gave NaN or inf for it" for s in run.skipped)
    # the classifier fixed: nothing is skipped, and the embedder's cache still needs no rerun
    run = run_models(source, {"classifier": _Picky("classifier-v3"), "embedder": emb}, **opts)
    assert run.skipped == [] and run.computed_shards == {"classifier": [0], "embedder": []}
    assert np.isfinite(run.outputs["classifier"]).all()


def test_analyze_after_a_failed_classifier_is_not_left_with_its_skips(tmp_path: Path) -> None:
    imgs, labels = blob_images(12)
    kw = {"labels": labels, "embeddings": None, "embedder": MeanColour(), "num_workers": 0,
          "cache_dir": tmp_path / "c", "progress": False, "thumbnails": None}  # fmt: skip

    def broken(_image: Image.Image) -> torch.Tensor:
        raise ValueError("a bad input size")

    with pytest.raises(ValueError, match="all 12 items were skipped"):
        analyze(imgs, classifier=Classifier(TinyNet().eval(), broken), **kw)
    a = analyze(imgs, classifier=Classifier(TinyNet().eval(), MeanColour().transform), **kw)
    assert len(a) == 12 and a.skipped == []
