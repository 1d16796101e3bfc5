"""Inputs that must be handled: cache ids that depend on the transform, corrupt cache shards,
string labels of a torch Dataset, runs where every item is skipped, user probs of the wrong width or
with a bad row after a skipped one, transforms that give images of different shapes, and one
model's failures recorded as skips in every model's cache (the saved folder: test_folder.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from faultlens.analysis.analyze import analyze
from faultlens.data.sources import ArraySource, FolderSource, TorchDatasetSource
from faultlens.models.classifier import Classifier
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore, CacheWarning, fingerprint_array
from tests.helpers import TinyNet, blob_images

# the analyses here are a dozen points: the map falls back to PCA, which is not under test
pytestmark = pytest.mark.filterwarnings("ignore:.*too few for UMAP")


class MeanColour:
    """A batch model without weights: each image's mean colour per channel."""

    id = "mean-colour"
    input_size = None

    def transform(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)

    def run(self, batch: torch.Tensor) -> np.ndarray:
        return batch.mean(dim=(2, 3)).numpy()


# --------------------------------------------------------------------------- 1. cache ids


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


# --------------------------------------------------------------------------- 2. corrupt shards


def test_a_truncated_shard_is_reported_removed_and_computed_again(tmp_path: Path) -> None:
    imgs, labels = blob_images(10, seed=1)
    source = ArraySource(imgs, labels)
    store = ArtifactStore(tmp_path / "cache")
    opts = {"store": store, "batch_size": 2, "shard_size": 3, "progress": False, "num_workers": 0}
    first = run_models(source, {"e": MeanColour()}, **opts)
    shard = next((store.root / "outputs").rglob("shard-00001.npy"))
    shard.write_bytes(shard.read_bytes()[:-10])  # a cache copied half-way

    with pytest.warns(CacheWarning, match=r"shard-00001\.npy.*removed"):
        again = run_models(source, {"e": MeanColour()}, **opts)
    assert again.computed_shards == {"e": [1]}
    np.testing.assert_array_equal(again.outputs["e"], first.outputs["e"])


def test_an_empty_array_has_a_fingerprint() -> None:
    assert fingerprint_array(np.zeros((0, 4), np.float32)) != fingerprint_array(
        np.zeros((0, 5), np.float32)
    )


# --------------------------------------------------------------------------- 3. labels, all skipped


class NamedLabels(torch.utils.data.Dataset):
    """Items (image, class name): the name, not an index, as many datasets give it."""

    def __init__(self) -> None:
        self.images, labels = blob_images(6, seed=2)
        self.names = np.array(["cat", "dog", "eel"])[labels]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, str]:
        return self.images[i], str(self.names[i])


def test_a_torch_dataset_with_class_names_as_labels_is_analyzed(tmp_path: Path) -> None:
    data = NamedLabels()
    source = TorchDatasetSource(data)
    assert source.class_names == ["cat", "dog", "eel"]
    assert not source._broken
    probs = np.full((len(data), 3), 0.1)
    probs[np.arange(len(data)), np.arange(len(data)) % 3] = 0.8
    result = analyze(data, probs=probs, embedder=MeanColour(), thumbnails=None,
                     cache_dir=tmp_path / "cache", progress=False, num_workers=0)  # fmt: skip
    assert result.skipped == []
    assert result.table["label_name"].tolist() == data.names.tolist()
    assert result.accuracy == 1.0


def test_when_every_item_is_skipped_the_error_says_why(tmp_path: Path) -> None:
    bad = ArraySource([np.zeros((2, 2, 2, 2), np.uint8)] * 4, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"all 4 items were skipped.*'0': array of shape"):
        analyze(bad, probs=np.full((4, 2), 0.5), embedder=MeanColour(), thumbnails=None,
                cache_dir=tmp_path / "cache", progress=False, num_workers=0)  # fmt: skip


# --------------------------------------------------------------------------- 4. user probs


def _probs_inputs(n: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 255, (n, 8, 8), dtype=np.uint8)
    emb = rng.normal(size=(n, 4)).astype(np.float32)
    return imgs, np.arange(n) % 3, emb


def test_probs_with_another_number_of_columns_than_classes_are_refused(tmp_path: Path) -> None:
    imgs, labels, emb = _probs_inputs()
    for width in (4, 2):  # too many, or too few (then label 2 is no column's: still named so)
        probs = np.full((len(imgs), width), 1 / width)
        too_wide_or_narrow = f"probs has {width} columns but there are 3 classes"
        with pytest.raises(ValueError, match=too_wide_or_narrow):
            analyze(imgs, labels=labels, class_names=["a", "b", "c"], probs=probs, embeddings=emb,
                    embedder=None, thumbnails=None, cache_dir=tmp_path / "c", progress=False)  # fmt: skip


def test_a_bad_probs_row_is_named_by_its_source_row_after_a_skipped_item(tmp_path: Path) -> None:
    imgs, labels, emb = _probs_inputs()
    emb[1] = np.nan  # item 1 is skipped
    probs = np.full((len(imgs), 3), 1 / 3)
    probs[1] = np.nan  # a skipped item's row is not used
    probs[5] *= 2
    with pytest.raises(ValueError, match=r"probs row 5 sums to 2\.000"):
        analyze(imgs, labels=labels, probs=probs, embeddings=emb, embedder=None,
                thumbnails=None, cache_dir=tmp_path / "c", progress=False)  # fmt: skip
    probs[5] /= 2
    result = analyze(imgs, labels=labels, probs=probs, embeddings=emb, embedder=None,
                     thumbnails=None, cache_dir=tmp_path / "c", progress=False)  # fmt: skip
    assert [s["index"] for s in result.skipped] == [1]
    assert len(result) == len(imgs) - 1 and np.isfinite(result.probs).all()


# --------------------------------------------------------------------------- 5. uneven shapes


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


# --------------------------------------------------------------------------- 6. one model's failures


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
