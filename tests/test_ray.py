"""The Ray engine on a local 2-CPU Ray instance gives the local engine's analysis; the sampled
projection keeps planted clusters.

CI installs the ``ray`` extra, so ``import ray`` failing here is a failure, not a skip.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
import torch
from PIL import Image

import faultlens
from faultlens.analysis.projection import ProjectionWarning, project
from faultlens.cli import main
from faultlens.data.sources import as_source
from faultlens.models.classifier import Classifier
from faultlens.models.embedders import LayerEmbedder
from faultlens.models.ray_runner import RayEngine, as_engine
from faultlens.models.runner import output_key, run_models
from faultlens.store import ArtifactStore, fingerprint_array, make_key
from tests.helpers import TinyNet, blob_images, clusters, tiny_transform

N_IMAGES = 300
SHARD = 64
# 300 readable images is fewer than 400 neighbours: the map is PCA (cheap, deterministic), not UMAP
NO_UMAP = {"n_neighbors": 400}


@pytest.fixture(scope="module")
def local_ray() -> object:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 PNGs in 3 class folders, a white one (last), and three files that cannot be read."""
    root = tmp_path_factory.mktemp("ray-images")
    imgs, labels = blob_images(N_IMAGES)
    for i, (img, y) in enumerate(zip(imgs, labels, strict=True)):
        (root / f"c{y}").mkdir(exist_ok=True)
        Image.fromarray(img).save(root / f"c{y}" / f"{i:04d}.png")
    Image.new("RGB", (16, 16), (255, 255, 255)).save(root / "c2" / "zz-white.png")
    (root / "c0" / "0001-text.png").write_text("not an image")
    good = (root / "c1" / "0001.png").read_bytes()
    (root / "c1" / "0100-cut.png").write_bytes(good[: len(good) // 2])
    (root / "c2" / "0200-empty.png").write_bytes(b"")
    return root


UNREADABLE = {
    "c0/0001-text.png": "not an image (format not recognised)",
    "c1/0100-cut.png": "truncated or corrupt image data",
    "c2/0200-empty.png": "empty file (0 bytes)",
}


def _models(net: torch.nn.Module | None = None) -> dict[str, object]:
    net = net if net is not None else TinyNet().eval()
    return {
        "classifier": Classifier(net, tiny_transform, class_names=["c0", "c1", "c2"]),
        "embedder": LayerEmbedder(net, "conv", tiny_transform),
    }


def _white(batch: torch.Tensor) -> np.ndarray:
    return (batch == 1.0).flatten(1).all(dim=1).numpy()


class WhiteBlindEmbedder(LayerEmbedder):
    """Gives NaN for a pure white image, as a model with a numerical fault might."""

    def run(self, batch: torch.Tensor) -> np.ndarray:
        out = super().run(batch)
        out[_white(batch)] = np.nan
        return out


def _analyze(folder: Path, cache: Path, engine: object) -> faultlens.Analysis:
    net = TinyNet().eval()
    with pytest.warns(ProjectionWarning, match="too few"):
        return faultlens.analyze(
            folder,
            classifier=Classifier(net, tiny_transform, class_names=["c0", "c1", "c2"]),
            embedder=WhiteBlindEmbedder(net, "conv", tiny_transform),
            cache_dir=cache,
            batch_size=32,
            num_workers=0 if engine == "local" else None,
            projection=NO_UMAP,
            engine=engine,
            progress=False,
        )


def _same(a: np.ndarray, b: np.ndarray) -> None:
    # the engines batch items differently; float32 kernels may round differently, barely
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_ray_engine_gives_the_local_engines_analysis(
    local_ray: object, image_folder: Path, tmp_path: Path
) -> None:
    local = _analyze(image_folder, tmp_path / "local", "local")
    remote = _analyze(image_folder, tmp_path / "ray", RayEngine(workers=2, shard_size=SHARD))
    assert len(remote) == len(local) == N_IMAGES
    # the same items skipped for the same reasons, named the same way: three unreadable files,
    # and the white image the embedder gave NaN for
    assert remote.skipped == local.skipped
    assert {s["id"]: s["reason"][:31] for s in remote.skipped} == {
        k: v[:31]
        for k, v in {**UNREADABLE, "c2/zz-white.png": "model 'embedder' gave NaN or inf"}.items()
    }
    # row for row the same images, predictions and numbers
    exact = ["id", "path", "label", "label_name", "pred", "pred_name", "correct", "source_index"]
    pd.testing.assert_frame_equal(remote.table[exact], local.table[exact])
    for col in ("confidence", "loss", "x", "y"):
        _same(remote.table[col].to_numpy(), local.table[col].to_numpy())
    _same(remote.probs, local.probs)
    _same(remote.embeddings, local.embeddings)
    assert remote.table["correct"].mean() > 0.2  # real outputs, not NaN placeholders
    # the actors render the thumbnails in the same pass, byte for byte the local engine's
    n_src = local.meta["n_source"]
    assert remote.thumbnails is not None and local.thumbnails is not None
    thumbs = [local.thumbnails.get(i) for i in range(n_src)]
    assert [remote.thumbnails.get(i) for i in range(n_src)] == thumbs
    assert sum(not t for t in thumbs) == len(UNREADABLE)
    # the same folder layout, read back by the same loader
    remote.save(tmp_path / "out-ray")
    local.save(tmp_path / "out-local")

    def files(root: Path) -> list[str]:  # thumbnails keep their engine's shard size
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and p.parent.name != "thumbnails"
        )

    assert files(tmp_path / "out-ray") == files(tmp_path / "out-local")
    back = faultlens.load(tmp_path / "out-ray")
    pd.testing.assert_frame_equal(back.table, remote.table)
    # the same meta, but for how the images were decoded: on the CPU both, by the actors on Ray
    assert {**back.meta, "decode": None} == {**local.meta, "decode": None}
    assert back.meta["decode"]["path"] == local.meta["decode"]["path"] == "cpu"
    assert back.meta["decode"]["device"] == "Ray actors"
    assert back.skipped == local.skipped


class WhiteIntolerantClassifier(Classifier):
    """Dies on a batch holding a pure white image: a run that stops half-way through."""

    def run(self, batch: torch.Tensor) -> np.ndarray:
        if _white(batch).any():
            msg = "simulated crash on the white image"
            raise RuntimeError(msg)
        return super().run(batch)


def test_a_stopped_run_resumes_with_only_the_missing_shards(
    local_ray: object, image_folder: Path, tmp_path: Path
) -> None:
    source = as_source(image_folder)
    store = ArtifactStore(tmp_path / "cache")
    net = TinyNet().eval()
    healthy = _models(net)
    crashing = dict(healthy, classifier=WhiteIntolerantClassifier(net, tiny_transform))
    assert crashing["classifier"].id == healthy["classifier"].id  # same model, same cache entry
    engine = RayEngine(workers=1, shard_size=SHARD)  # one actor starts faster on 2 cores
    n_shards = -(-len(source) // SHARD)
    white = source.ids.index("c2/zz-white.png") // SHARD

    with pytest.raises(RuntimeError, match="run again to compute only the missing ones"):
        engine.fill(source, crashing, store=store, batch_size=32, progress=False)
    folder = store.path(
        "outputs", output_key(source.fingerprint(), healthy["classifier"].id, SHARD)
    )
    kept = {int(p.stem[-5:]) for p in folder.glob("shard-*.json")}
    assert white not in kept
    # A kill between a shard's two files: its array is written, its side-car (written last) is not.
    if kept:
        lost = min(kept)
        (folder / f"shard-{lost:05d}.json").unlink()
        kept.discard(lost)

    computed = engine.fill(source, healthy, store=store, batch_size=32, progress=False)
    assert computed["classifier"] == sorted(set(range(n_shards)) - kept)
    assert white in computed["classifier"]
    # every shard is there now: nothing is computed again, by either engine
    assert engine.fill(source, healthy, store=store, progress=False) == {
        "classifier": [],
        "embedder": [],
    }
    done = run_models(source, healthy, store=store, shard_size=SHARD, progress=False)
    assert done.computed_shards == {"classifier": [], "embedder": []}
    ref = run_models(
        source, _models(), store=ArtifactStore(tmp_path / "ref"), num_workers=0, progress=False
    )
    for name in ("classifier", "embedder"):
        _same(done.outputs[name], ref.outputs[name])
    assert done.skipped == ref.skipped


def test_ray_skips_images_a_transform_leaves_in_another_shape(
    local_ray: object, tmp_path: Path
) -> None:
    """As the local engine: the shape of an actor's first batch holds for its whole run, so the
    images kept all have one shape (a batch where the other shape is the majority does not switch
    it), every other image is skipped with the fix, and the run goes on."""
    from torchvision import transforms as T

    root = tmp_path / "imgs"
    square, wide = (20, 20), (30, 20)
    sizes = {"c0/a.png": square, "c0/b.png": square, "c0/c.png": square,
             "c1/d.png": wide, "c1/e.png": wide, "c1/f.png": square}  # fmt: skip
    for name, size in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10, 20, 30)).save(root / name)
    source = as_source(root)
    models = {"classifier": Classifier(TinyNet().eval(), T.Compose([T.Resize(8), T.ToTensor()]))}
    store = ArtifactStore(tmp_path / "cache")
    RayEngine(workers=1, shard_size=3).fill(
        source, models, store=store, batch_size=3, progress=False
    )
    run = run_models(source, models, store=store, shard_size=3, progress=False)  # assembles only
    skipped = {s["id"] for s in run.skipped}
    kept = {sizes[i] for i in source.ids if i not in skipped}
    assert skipped and len(kept) == 1, (skipped, kept)
    assert all("CenterCrop" in s["reason"] for s in run.skipped)
    out = run.outputs["classifier"]
    assert all(np.isnan(out[k]).all() == (i in skipped) for k, i in enumerate(source.ids))


def test_cli_prepare_with_the_ray_engine(local_ray: object, tmp_path: Path) -> None:
    imgs, labels = blob_images(12)
    for i, (img, y) in enumerate(zip(imgs, labels, strict=True)):
        (tmp_path / "imgs" / f"k{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "imgs" / f"k{y}" / f"{i}.png")
    (tmp_path / "imgs" / "k0" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    args = ["prepare", str(tmp_path / "imgs"), "--arch", "tests.helpers:TinyNet"]
    args += ["--input-size", "16", "--image-size", "32", "--out", str(tmp_path / "out")]
    args += ["--engine", "ray", "--workers", "1", "--shard-size", "5"]
    with pytest.warns(ProjectionWarning):
        assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    a = faultlens.load(tmp_path / "out")
    assert len(a) == 12 and a.embeddings.shape == (12, 1280)
    assert [s["id"] for s in a.skipped] == ["k0/broken.jpg"]
    assert a.arrays["imagenet_logits"].shape == (12, 1000)
    # 13 items in shards of 5: three shards per model (classifier, embedder, image properties),
    # written by the Ray pass
    assert len(list((tmp_path / "cache" / "outputs").glob("*/shard-*.json"))) == 3 * 3
    assert {"brightness", "object_size"} <= set(a.table.columns)


def test_engine_choices_and_options_are_checked() -> None:
    assert as_engine("ray", 3).workers == 3
    with pytest.raises(ValueError, match=r"unknown engine 'rya'.*'local', 'ray'"):
        as_engine("rya")
    with pytest.raises(ValueError, match="workers=0"):
        RayEngine(workers=0)
    with pytest.raises(SystemExit, match="--ray-address only apply with --engine ray"):
        main(["prepare", ".", "--arch", "resnet18", "--out", "x", "--ray-address", "auto"])


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from faultlens.models.ray_runner import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'faultlens\[ray\]'"):
        import_ray()


# --------------------------------------------------------------------------- projection at scale


def test_inputs_up_to_the_sample_size_keep_their_cache_key(tmp_path: Path) -> None:
    Z = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    store = ArtifactStore(tmp_path)
    with pytest.warns(ProjectionWarning, match="too few"):
        project(Z, store=store, progress=False)
    old_params = {
        "n_neighbors": 15,
        "min_dist": 0.1,
        "pca_dims": 50,
        "metric": "cosine",
        "n_epochs": 200,
        "seed": 0,
    }
    key = make_key("projection", fingerprint_array(Z), old_params)
    assert (tmp_path / "projection" / key / "array.npy").exists()
    with pytest.raises(ValueError, match="fit_sample=20 is too small"):
        project(Z, fit_sample=20)


@pytest.mark.slow
def test_sample_fit_places_the_rest_among_their_own_cluster(tmp_path: Path) -> None:
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import NearestNeighbors

    Z, lab = clusters(900, k=6, d=32, scale=3, random_labels=True)
    store = ArtifactStore(tmp_path)
    sampled = project(Z, fit_sample=300, transform_batch=250, store=store, progress=False)
    full = project(Z, fit_sample=None, progress=False)
    assert sampled.shape == (900, 2) and np.isfinite(sampled).all()
    assert np.abs(sampled).max() <= 1.0 + 1e-6
    # two thirds of the points were placed by transform; each lands among its own cluster: the
    # majority of its 10 nearest 2-D neighbours (itself left out) shares its planted label
    near = NearestNeighbors(n_neighbors=11).fit(sampled).kneighbors(sampled)[1][:, 1:]
    agree = np.array([np.bincount(lab[row]).argmax() for row in near]) == lab
    assert agree.mean() >= 0.98
    # local structure as faithful as a fit on everything, within a small margin
    tw_sampled = trustworthiness(Z, sampled, n_neighbors=15)
    tw_full = trustworthiness(Z, full, n_neighbors=15)
    assert tw_sampled >= tw_full - 0.02, (tw_sampled, tw_full)
    # a sampled map has its own cache entry, found again on the next call
    assert len(list((tmp_path / "projection").glob("*/array.npy"))) == 1
    np.testing.assert_array_equal(
        project(Z, fit_sample=300, transform_batch=250, store=store, progress=False), sampled
    )
