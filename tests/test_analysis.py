"""Projection, the analysis object, and the demo's planted failure modes."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import faultlens
from faultlens.analysis import analyze as analyze_mod
from faultlens.analysis import projection as proj_mod
from faultlens.analysis.projection import (
    ProjectionWarning,
    exact_knn,
    ivf_knn,
    project,
    start_warmup,
)
from faultlens.analysis.result import TABLE_COLUMNS
from faultlens.data import demo as demo_data
from faultlens.data.sources import ArraySource
from faultlens.models.demo_cnn import accuracy, trained_cnn
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore
from tests.helpers import analyze_tiny, blob_images, clusters, tiny_transform


@pytest.mark.slow
def test_umap_projection_is_seeded_cached_and_separates_clusters(tmp_path: Path) -> None:
    Z, lab = clusters(300, k=3, d=64, scale=4)
    store = ArtifactStore(tmp_path)
    # the background compile is started once per code path, and project() waits for it
    assert start_warmup(10) is None  # too few points for UMAP: nothing to compile
    thread = start_warmup(300)
    assert thread is not None and start_warmup(250) is thread
    a = project(Z, seed=3, store=store, progress=False)
    assert not thread.is_alive()
    b = project(Z, seed=3, progress=False)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (300, 2) and np.abs(a).max() <= 1.0 + 1e-6
    # each planted cluster is tight compared with the distance between clusters
    cents = np.stack([a[lab == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(a[lab == c] - cents[c], axis=1).mean() for c in range(3))
    gaps = [np.linalg.norm(cents[i] - cents[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 3 * spread
    # the cached copy is returned without recomputing
    cached = list((tmp_path / "projection").glob("*/array.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(project(Z, seed=3, store=store, progress=False), a)


def test_exact_knn_matches_a_brute_force_search() -> None:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(4)
    X = rng.normal(size=(900, 12))
    X[7] = X[3]  # a duplicate: both at distance 0 from each other
    for metric in ("cosine", "euclidean"):
        idx, dist = exact_knn(X, 10, metric, block=256)  # blocks that do not divide n
        ref_d, ref_i = (
            NearestNeighbors(n_neighbors=10, metric=metric, algorithm="brute").fit(X).kneighbors(X)
        )
        np.testing.assert_allclose(dist, ref_d, atol=1e-5)
        assert (np.sort(idx, axis=1) == np.sort(ref_i, axis=1)).mean() > 0.999
        # every point is its own nearest neighbour at exactly 0 (UMAP reads rho past it)
        assert (dist[np.arange(900), (idx == np.arange(900)[:, None]).argmax(1)] == 0).all()
        assert {3, 7} <= set(idx[3, :2]) and dist[3, 1] < 1e-6
    with pytest.raises(ValueError, match="cosine"):
        exact_knn(X, 5, "manhattan")


def _true_recall(idx: np.ndarray, dist: np.ndarray, ref_dist: np.ndarray) -> float:
    """Share of found neighbours no farther than the exact k-th (ties count as found)."""
    return float((dist <= ref_dist[:, -1:] + 1e-5).mean())


def test_ivf_knn_finds_the_neighbours_of_clustered_points_and_reports_its_recall() -> None:
    rng = np.random.default_rng(8)
    n, k = 6000, 10
    centres = rng.normal(0, 5, (30, 16))
    X = centres[rng.integers(0, 30, n)] + rng.normal(0, 1, (n, 16))
    X[11] = X[5]  # a duplicate: both at distance 0 from each other
    for metric in ("cosine", "euclidean"):
        idx, dist, recall = ivf_knn(X, k, metric, seed=1)
        ref_i, ref_d = exact_knn(X, k, metric)
        assert idx.shape == dist.shape == (n, k) and dist.dtype == np.float32
        true = _true_recall(idx, dist, ref_d)
        assert true > 0.97 and abs(recall - true) < 0.03
        hit = idx == ref_i  # where both found the same neighbour, the distances agree
        np.testing.assert_allclose(dist[hit], ref_d[hit], atol=1e-4)
        assert (dist[np.arange(n), (idx == np.arange(n)[:, None]).argmax(1)] == 0).all()
        assert {5, 11} <= set(idx[5, :2]) and dist[5, 1] < 1e-6
        again = ivf_knn(X, k, metric, seed=1)
        np.testing.assert_array_equal(again[0], idx)  # seeded
    with pytest.raises(ValueError, match="cosine"):
        ivf_knn(X, 5, "manhattan")


def test_ivf_knn_reports_the_low_recall_of_structureless_noise() -> None:
    """Isotropic 30-d noise has no lists to find neighbours in: the reported recall must say so
    (it decides the fallback to NN-descent), and match the true one."""
    X = np.random.default_rng(9).normal(size=(5000, 30))
    idx, dist, recall = ivf_knn(X, 15, "euclidean", seed=0, check=2000)
    true = _true_recall(idx, dist, exact_knn(X, 15, "euclidean")[1])
    assert recall < 0.9 and abs(recall - true) < 0.03


def test_maps_above_the_exact_limit_take_the_inverted_file_graph_only_when_its_recall_holds(
    monkeypatch,
) -> None:
    seen: list[dict] = []

    class Reducer:
        def __init__(self, **opts) -> None:
            seen.append(opts)

        def fit_transform(self, X: np.ndarray) -> np.ndarray:
            return X[:, :2]

    monkeypatch.setattr(proj_mod, "_umap", lambda **opts: Reducer(**opts))
    monkeypatch.setattr(proj_mod, "EXACT_KNN_LIMIT", 1000)
    rng = np.random.default_rng(10)
    latent = rng.normal(0, 6, (8, 3))[rng.integers(0, 8, 3000)] + rng.normal(0, 1, (3000, 3))
    clustered = latent @ rng.normal(size=(3, 32)) + rng.normal(0, 0.01, (3000, 32))  # 3-d inside
    noise = rng.normal(size=(3000, 32))
    project(clustered.astype(np.float32), progress=False)
    project(noise.astype(np.float32), progress=False)
    knn, none = seen[0].get("precomputed_knn"), seen[1].get("precomputed_knn")
    assert knn is not None and knn[0].shape == (3000, 15) and knn[2] is None
    assert none is None  # recall below IVF_MIN_RECALL: UMAP runs its own NN-descent


@pytest.mark.slow
def test_maps_above_umaps_exact_range_use_the_exact_neighbour_search(monkeypatch) -> None:
    calls = []
    real = proj_mod.exact_knn
    monkeypatch.setattr(proj_mod, "exact_knn", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(5)
    n, k = 4500, 6
    centres = rng.normal(0, 6, (k, 32))
    lab = np.arange(n) % k
    Z = (centres[lab] + rng.normal(0, 1, (n, 32))).astype(np.float32)
    xy = project(Z, progress=False)
    assert calls == [1]
    # each point's nearest map neighbours belong to its planted cluster
    d2 = ((xy[:500, None, :] - xy[None, :, :]) ** 2).sum(-1)
    near = np.argsort(d2, axis=1)[:, 1:11]
    assert (lab[near] == lab[:500, None]).mean() > 0.98


def test_numba_cache_is_turned_on_for_umaps_uncached_kernels(tmp_path: Path) -> None:
    """In a fresh process with an empty NUMBA_CACHE_DIR: kernels are turned on, and compiling one
    of them writes it to the disk cache (the next process loads it instead of compiling)."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from faultlens.analysis.projection import enable_numba_cache\n"
        "n = enable_numba_cache()\n"
        "assert n > 50, n\n"
        "assert enable_numba_cache() == 0  # once per process\n"
        "import umap.umap_ as u\n"
        "assert type(u.smooth_knn_dist._cache).__name__ != 'NullCache'\n"
        "u.smooth_knn_dist(np.random.default_rng(0).random((20, 5)).astype(np.float32), 5.0)\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert any(tmp_path.rglob("*smooth_knn_dist*.nbi"))
    off = subprocess.run(
        [sys.executable, "-c", "from faultlens.analysis.projection import enable_numba_cache as e;"
         "print(e())"],
        env={**env, "FAULTLENS_NUMBA_CACHE": "0"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert off.stdout.strip() == "0"


def test_tiny_and_degenerate_inputs_degrade_with_a_warning() -> None:
    with pytest.warns(ProjectionWarning, match="origin"):
        assert project(np.ones((1, 8)), progress=False).tolist() == [[0.0, 0.0]]
    with pytest.warns(ProjectionWarning, match="no spread"):
        assert (project(np.ones((40, 8)), progress=False) == 0).all()
    with pytest.warns(ProjectionWarning, match="too few"):
        xy = project(np.random.default_rng(0).normal(size=(6, 8)), progress=False)
    assert xy.shape == (6, 2) and np.isfinite(xy).all()
    Z = np.random.default_rng(0).normal(size=(6, 8))
    Z[2] = np.nan
    with pytest.warns(ProjectionWarning):
        xy = project(Z, progress=False)
    assert np.isnan(xy[2]).all() and np.isfinite(np.delete(xy, 2, axis=0)).all()
    with pytest.raises(ValueError, match="n_images, dim"):
        project(np.ones(5))


def _small_analysis(tiny_net, *, cached: bool = False) -> faultlens.Analysis:
    imgs, labels = blob_images(12)
    extra = pd.DataFrame({"site": [f"s{i % 2}" for i in range(12)], "score": np.arange(12.0)})
    # 12 points fall back to PCA with a warning; a cached projection is returned silently
    with contextlib.nullcontext() if cached else pytest.warns(ProjectionWarning):
        return analyze_tiny(
            imgs, tiny_net, labels=labels, class_names=["red", "green", "blue"], columns=extra
        )


def test_analysis_table_and_save_load_round_trip(tiny_net, tmp_path: Path) -> None:
    a = _small_analysis(tiny_net)
    t = a.table
    assert list(t.columns[: len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    assert {"site", "score"} <= set(t.columns)
    assert (t["label_name"] == np.array(["red", "green", "blue"])[t["label"]]).all()
    np.testing.assert_allclose(t["confidence"], a.probs.max(1), atol=1e-6)
    assert (t["correct"] == (t["pred"] == t["label"])).all()
    b = faultlens.load(a.save(tmp_path / "a"))
    pd.testing.assert_frame_equal(a.table, b.table)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(a.probs, b.probs)
    assert b.class_names == a.class_names
    assert np.asarray(b.image(3)).tolist() == np.asarray(a.image(3)).tolist()
    # no pickles anywhere in the folder: every .npy loads with allow_pickle=False
    for f in (tmp_path / "a").rglob("*.npy"):
        np.load(f, allow_pickle=False)


def test_analysis_warm_run_uses_the_cache(tiny_net, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"  # the private cache set by conftest
    warmups: list[int] = []
    monkeypatch.setattr(analyze_mod, "start_warmup", lambda n, **_kw: warmups.append(n))
    _small_analysis(tiny_net)
    assert warmups == [12]  # UMAP's kernels compile while the models run
    n_files = len(list(cache.rglob("shard-*.npy")))
    # a rewrite would keep the count, so also check that no cached file was written again
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}
    _small_analysis(tiny_net, cached=True)
    assert warmups == [12]  # nothing to overlap with: no warm-up (UMAP not even imported)
    assert n_files > 0
    assert len(list(cache.rglob("shard-*.npy"))) == n_files
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")} == stamps


def test_analyze_bad_arguments(tiny_net) -> None:
    imgs, labels = blob_images(6)
    with pytest.raises(TypeError, match=r"classifier= .* or probs="):
        faultlens.analyze(imgs, labels=labels, embeddings=np.zeros((6, 4)))
    with pytest.raises(ValueError, match="embeddings has 5 rows but the source has 6"):
        faultlens.analyze(
            imgs, labels=labels, probs=np.full((6, 3), 1 / 3), embeddings=np.zeros((5, 4))
        )
    with pytest.raises(FileNotFoundError, match="not a faultlens analysis folder"):
        faultlens.load("/nonexistent/folder")
    arrays = {"labels": labels, "probs": np.full((6, 3), 1 / 3), "progress": False}
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match=rf"batch_size={bad!r}: pass a whole number"):
            faultlens.analyze(imgs, embeddings=np.zeros((6, 4)), batch_size=bad, **arrays)
    for emb in (np.zeros(6), np.zeros((6, 0)), np.zeros((6, 2, 2))):
        with pytest.raises(ValueError, match=r"embeddings must be \(n_images, dim\)"):
            faultlens.analyze(imgs, embeddings=emb, **arrays)
    with pytest.raises(ValueError, match="shard_size=0"):
        run_models(ArraySource(imgs, labels), {}, shard_size=0, thumbnails=16, progress=False)


def test_user_arrays_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs, labels = blob_images(9)
    probs = rng.dirichlet(np.ones(3), size=9)
    with pytest.warns(ProjectionWarning):
        a = faultlens.analyze(
            imgs,
            labels=labels,
            probs=probs,
            embeddings=rng.normal(size=(9, 5)),
            embedder=None,
            progress=False,
        )
    assert (a.table["pred"] == probs.argmax(1)).all()
    assert a.meta["projection_fit"] == {"fitted_on": 9, "placed": 9}
    assert "fitted on a seeded sample" not in a.summary()


@pytest.mark.slow
def test_a_map_fitted_on_a_sample_says_so() -> None:
    rng = np.random.default_rng(1)
    n = 60
    labels = np.arange(n) % 3
    emb = rng.normal(size=(3, 8))[labels] + 0.05 * rng.normal(size=(n, 8))
    emb[5] = np.nan  # an item without an embedding is neither fitted nor placed
    a = faultlens.analyze(
        rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8),
        labels=labels,
        probs=rng.dirichlet(np.ones(3), size=n),
        embeddings=emb,
        embedder=None,
        projection={"fit_sample": 40},
        progress=False,
    )
    assert a.meta["projection_fit"] == {"fitted_on": 40, "placed": 59}
    assert "UMAP fitted on a seeded sample of 40 of 59 points" in a.summary()
    assert np.isfinite(a.table[["x", "y"]].to_numpy()).sum() == 2 * 59


@pytest.mark.slow
def test_demo_planted_groups_fail_as_planted(demo_cache: Path) -> None:
    splits = demo_data.load_spurious_fashion_mnist()
    tr, te = splits["train"], splits["test"]
    # planted as described: logo on ~95 % of training shirts, ~5 % of others, 30 % of every test class
    own = tr.labels == demo_data.CUE_CLASS
    assert abs(tr.cue[own].mean() - 0.95) < 0.03 and abs(tr.cue[~own].mean() - 0.05) < 0.02
    for c in range(10):
        assert abs(te.cue[te.labels == c].mean() - 0.3) < 0.08
    assert tr.small.sum() < 0.02 * (tr.labels == demo_data.RARE_CLASS).sum() + 5
    r0, r1, c0, c1 = demo_data.CUE_BOX
    assert (te.images[te.cue][:, r0:r1, c0:c1] == 255).all()

    model = trained_cnn(tr.images, tr.labels, store=ArtifactStore(demo_cache), progress=False)
    ok = accuracy(model, te.images, te.labels)
    groups = te.planted_group
    for g in ("shirt_without_logo", "top_with_logo", "small_sneaker"):
        sel = groups == g
        rest = np.isin(te.labels, np.unique(te.labels[sel])) & ~sel
        gap = ok[rest].mean() - ok[sel].mean()
        assert gap >= 0.20, f"{g}: accuracy {ok[sel].mean():.2f} vs rest {ok[rest].mean():.2f}"


class _DominantColour(torch.nn.Module):
    """Outputs in the order (blue, red, green): the logit of each is that channel's mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(2, 3))
        return torch.stack([m[:, 2], m[:, 0], m[:, 1]], 1) * 10


def _colour_folder(root: Path) -> Path:
    imgs, labels = blob_images(9)
    for k, name in enumerate(["red", "green", "blue"]):  # folders sort blue, green, red
        (root / name).mkdir(parents=True)
        for j in np.flatnonzero(labels == k):
            Image.fromarray(imgs[j]).save(root / name / f"{j}.png")
    return root


def test_classifier_class_names_are_matched_to_the_folders_by_name(tmp_path: Path) -> None:
    """The model's outputs are (blue, red, green); the folders sort (blue, green, red). Matched by
    name every image is right; taken in folder order, the red and green ones would all be wrong."""
    root = _colour_folder(tmp_path / "imgs")
    emb = np.random.default_rng(0).normal(size=(9, 4))

    def run(module: torch.nn.Module, names: list[str] | None) -> faultlens.Analysis:
        clf = faultlens.Classifier(module, tiny_transform, class_names=names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ProjectionWarning)  # 9 points: PCA
            return faultlens.analyze(root, classifier=clf, embeddings=emb, embedder=None,
                                     progress=False, num_workers=0)  # fmt: skip

    a = run(_DominantColour(), ["blue", "red", "green"])
    assert a.class_names == ["blue", "red", "green"]
    assert a.table["correct"].all()
    assert (a.table["label_name"] == [i.split("/")[0] for i in a.table["id"]]).all()
    # without names the folders' sorted order is taken as the outputs' order: 6 of 9 wrong
    b = run(_DominantColour(), None)
    assert b.class_names == ["blue", "green", "red"] and b.table["correct"].sum() == 3
    # a model with more classes than the folders hold (the folders are a subset)
    wide = torch.nn.Sequential(_DominantColour(), torch.nn.ConstantPad1d((0, 1), -50.0))
    c = run(wide, ["blue", "red", "green", "zebra"])
    assert c.class_names == ["blue", "red", "green", "zebra"] and c.table["correct"].all()
    assert c.probs.shape == (9, 4)


def test_classifier_class_names_bad_input(tmp_path: Path) -> None:
    root = _colour_folder(tmp_path / "imgs")
    emb = np.zeros((9, 4))
    clf = faultlens.Classifier(
        _DominantColour(), tiny_transform, class_names=["blue", "red", "teal"]
    )
    with pytest.raises(ValueError, match=r"classes \['green'\] are not among the classifier's"):
        faultlens.analyze(root, classifier=clf, embeddings=emb, embedder=None, progress=False)
    clf = faultlens.Classifier(_DominantColour(), tiny_transform, class_names=["blue", "red"])
    with pytest.raises(
        ValueError, match=r"outputs of shape \(3,\) per image but has 2 class_names"
    ):
        clf.run(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"unique.*repeated: \['red'\]"):
        faultlens.Classifier(_DominantColour(), tiny_transform, class_names=["red", "red", "b"])
    with pytest.raises(TypeError, match="not one string"):
        faultlens.Classifier(_DominantColour(), tiny_transform, class_names="rgb")
    # analyze(class_names=) and the classifier's must agree
    imgs, labels = blob_images(9)
    clf = faultlens.Classifier(_DominantColour(), tiny_transform, class_names=["b", "r", "g"])
    with pytest.raises(ValueError, match="differ: pass one list"):
        faultlens.analyze(imgs, labels=labels, class_names=["r", "g", "b"], classifier=clf,
                          embeddings=emb, embedder=None, progress=False)  # fmt: skip
    # integer labels without names are output indices, and must be in range
    with pytest.raises(ValueError, match="label 3 is outside the classifier's 3 outputs"):
        faultlens.analyze(imgs, labels=np.arange(9) % 4, classifier=clf, embeddings=emb,
                          embedder=None, progress=False)  # fmt: skip


def test_embedder_and_embeddings_together_is_refused(tiny_net) -> None:
    imgs, labels = blob_images(6)
    emb = faultlens.LayerEmbedder(tiny_net, "conv", tiny_transform)
    with pytest.raises(TypeError, match="either embedder= or embeddings="):
        faultlens.analyze(imgs, labels=labels, probs=np.full((6, 3), 1 / 3),
                          embeddings=np.zeros((6, 4)), embedder=emb)  # fmt: skip


def test_save_expands_the_home_folder(tiny_net, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    a = _small_analysis(tiny_net)
    where = a.save("~/saved")
    assert where == tmp_path / "saved" and (where / "analysis.json").exists()
    assert faultlens.load("~/saved").class_names == a.class_names


def test_the_rich_repr_summarises_and_escapes() -> None:
    from tests.helpers import analysis_from

    evil = "<img src=x onerror=alert(1)>"
    label = np.arange(40) % 2
    pred = np.where(np.arange(40) < 10, 1 - label, label)  # 10 errors in the first rows
    a = analysis_from(label, pred, [evil, "cat"])
    out = a._repr_html_()
    assert "40 images" in out and "accuracy 75.0%" in out
    assert evil not in out and "&lt;img src=x onerror=alert(1)&gt;" in out
    assert "not saved" in out and "faultlens.explore(analysis)" in out
