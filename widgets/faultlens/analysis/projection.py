"""2-D projection of embeddings: PCA (to at most 50 dims), then UMAP. Seeded and cacheable.

Tiny or degenerate inputs never crash: N = 1 gives the origin, N below UMAP's neighbourhood or
constant embeddings fall back to PCA (or zeros), each with a warning that says so.

Above ``fit_sample`` points (200,000 by default) PCA and UMAP are fitted on a seeded random sample of
that size and every other point is placed by ``UMAP.transform``, in batches, so time and memory grow
linearly with the number of images instead of UMAP's full graph over all of them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from faultlens.store import ArtifactStore, fingerprint_array, make_key


class ProjectionWarning(UserWarning):
    """The projection fell back to something simpler than UMAP; the message says why."""


# numba compiles UMAP's kernels on the first fit in every process (10–60 s here). Two things remove
# that wait: enable_numba_cache() writes the compiled kernels to numba's disk cache, so a new process
# loads them instead (46 s → 16 s for a first fit of 5000 points here); analyze() starts a warm-up
# in a background thread before it embeds, so what is left compiles while the models run, and
# project() waits for it instead of compiling a second time.
_WARMUP: dict[str, threading.Thread] = {}
_WARMUP_LOCK = threading.Lock()
_CACHE_ENABLED = False
_CACHE_LOCK = threading.Lock()

#: The modules of umap-learn and pynndescent whose numba kernels enable_numba_cache() caches.
_NUMBA_MODULES = (
    "umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances", "umap.sparse",
    "pynndescent.pynndescent_", "pynndescent.distances", "pynndescent.sparse",
    "pynndescent.utils", "pynndescent.rp_trees", "pynndescent.graph_utils",
    "pynndescent.sparse_nndescent",
)  # fmt: skip


def enable_numba_cache() -> int:
    """Turn on numba's disk cache for UMAP's and pynndescent's kernels that lack it (about half
    of them ship uncached), so each new process loads the compiled code instead of compiling it.

    numba keys each entry by the source file's stamp, the signature and the CPU, and keeps it in
    ``__pycache__`` beside the package, or in ``NUMBA_CACHE_DIR`` when that is set. Runs once per
    process; ``FAULTLENS_NUMBA_CACHE=0`` turns it off. Returns how many kernels it turned on.
    """
    global _CACHE_ENABLED
    with _CACHE_LOCK:
        if _CACHE_ENABLED or os.environ.get("FAULTLENS_NUMBA_CACHE", "1") == "0":
            return 0
        _CACHE_ENABLED = True
        return _enable_numba_cache()


def _enable_numba_cache() -> int:
    import importlib

    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    turned_on = 0
    for name in _NUMBA_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache):
                try:
                    obj.enable_caching()
                except RuntimeError:  # no writable cache folder: it compiles as before
                    return turned_on
                turned_on += 1
    return turned_on


def start_warmup(
    n_points: int, *, n_neighbors: int = 15, metric: str = "cosine"
) -> threading.Thread | None:
    """Compile UMAP's numba kernels in a daemon thread (once per process and code path).

    ``n_points`` picks the code path to compile: above ``DEFAULT_FIT_SAMPLE`` points the map is
    fitted on a sample and placed by ``UMAP.transform``, which needs NN-descent's index; up to it
    the neighbour graph comes from an exact or inverted-file search in torch, with nothing to
    compile but the layout. Returns the thread, or None when nothing is to do.
    """
    if n_points <= max(n_neighbors, 4):
        return None
    path = "nndescent" if n_points > DEFAULT_FIT_SAMPLE else "exact"
    with _WARMUP_LOCK:
        if path in _WARMUP:
            return _WARMUP[path]
        size = 4200 if path == "nndescent" else 200

        def run() -> None:
            import umap

            enable_numba_cache()
            X = np.random.default_rng(0).normal(size=(size, 8))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                umap.UMAP(
                    n_neighbors=n_neighbors,
                    metric=metric,
                    random_state=0,
                    low_memory=True,
                    n_epochs=10,
                ).fit_transform(X)

        thread = threading.Thread(target=run, name=f"faultlens-umap-warmup-{path}", daemon=True)
        thread.start()
        _WARMUP[path] = thread
        return thread


def _wait_for_warmup() -> None:
    for thread in list(_WARMUP.values()):
        thread.join()


#: Above this many points the map is fitted on a seeded sample of this size (``fit_sample``).
DEFAULT_FIT_SAMPLE = 200_000
#: Above this many fitted points ``n_epochs="auto"`` uses 100 epochs instead of 200.
AUTO_EPOCHS_LIMIT = 50_000
#: Up to this many points (above UMAP's own exact range of 4096) the neighbour graph is searched
#: exactly in blocks of matrix products instead of by NN-descent, whose numba kernels take a
#: function argument and so compile anew in every process (16 s here even with the disk cache,
#: 30 s on the very first call). On 2 cores at 1e4 × 50 the exact search took 0.38 s against
#: NN-descent's 0.45 s warm; at 1e5, 42 s against 6 s, hence the limit.
EXACT_KNN_LIMIT = 20_000
#: Above ``EXACT_KNN_LIMIT`` (and up to ``fit_sample``) the graph comes from an inverted-file
#: search (:func:`ivf_knn`) when a seeded sample of its rows finds at least this share of their
#: exact neighbours; otherwise from NN-descent, as before.
IVF_MIN_RECALL = 0.9


def project(
    embeddings: np.ndarray,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    pca_dims: int = 50,
    metric: str = "cosine",
    n_epochs: int | str | None = "auto",
    seed: int = 0,
    fit_sample: int | None = DEFAULT_FIT_SAMPLE,
    transform_batch: int = 100_000,
    store: ArtifactStore | None = None,
    force: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """(N, D) embeddings → (N, 2) float32 coordinates.

    Rows with NaN (items that could not be decoded) are placed at NaN and left out of the fit.
    ``n_epochs="auto"``: 200 epochs up to 50,000 fitted points, 100 above. On clustered 512-d
    embeddings (``tests/benchmarks/bench_projection.py``) 200 rather than UMAP's 500 halves the time
    at 1e4 points at the same trustworthiness (0.9937 vs 0.9938), and 100 rather than 200 at 1e5
    takes 58 s instead of 92 s warm at the same trustworthiness (0.9936 vs 0.9937).
    ``None`` restores UMAP's own rule; an int is used as given.
    With more than ``fit_sample`` finite rows, PCA and UMAP are fitted on a seeded sample of
    ``fit_sample`` rows and the others are placed with ``UMAP.transform``, ``transform_batch`` rows
    at a time (``fit_sample=None``: always fit on every row). Up to ``fit_sample`` rows nothing
    changes, cache key included.
    With ``store`` the result is cached under a key of the input bytes and every parameter.
    """
    Z = np.asarray(embeddings, dtype=np.float32)
    if Z.ndim != 2:
        msg = f"embeddings must be (n_images, dim), got shape {Z.shape}"
        raise ValueError(msg)
    if fit_sample is not None and fit_sample < max(2 * n_neighbors, 10):
        msg = (
            f"fit_sample={fit_sample} is too small to fit UMAP with n_neighbors={n_neighbors}: "
            f"use at least {max(2 * n_neighbors, 10)} (or None to fit on every point)"
        )
        raise ValueError(msg)
    if transform_batch < 1:
        msg = f"transform_batch={transform_batch} must be >= 1"
        raise ValueError(msg)
    n_finite = int(np.isfinite(Z).all(axis=1).sum())
    n_fit = n_finite if fit_sample is None else min(n_finite, fit_sample)
    if n_epochs == "auto":
        n_epochs = 200 if n_fit <= AUTO_EPOCHS_LIMIT else 100
    elif isinstance(n_epochs, str):
        msg = f"n_epochs={n_epochs!r}: use 'auto', None (UMAP's rule) or a number of epochs"
        raise ValueError(msg)
    params: dict[str, Any] = {
        "n_neighbors": n_neighbors,
        "min_dist": min_dist,
        "pca_dims": pca_dims,
        "metric": metric,
        "n_epochs": n_epochs,
        "seed": seed,
    }
    if n_fit < n_finite:
        # Only a sampled fit names the sample in its key: smaller inputs keep their cached maps.
        params |= {"fit_sample": fit_sample, "transform_batch": transform_batch}

    def compute() -> np.ndarray:
        return _project(Z, progress=progress, **params)

    if store is None:
        return compute()
    key = make_key("projection", fingerprint_array(Z), params)
    return store.cached_array("projection", key, compute, force=force, meta=params)


def _project(
    Z: np.ndarray,
    *,
    n_neighbors: int,
    min_dist: float,
    pca_dims: int,
    metric: str,
    n_epochs: int | None,
    seed: int,
    progress: bool,
    fit_sample: int | None = None,
    transform_batch: int = 100_000,
) -> np.ndarray:
    out = np.full((len(Z), 2), np.nan, dtype=np.float32)
    good = np.isfinite(Z).all(axis=1)
    if fit_sample is not None and good.sum() > fit_sample:
        umap_opts = {"n_neighbors": n_neighbors, "min_dist": min_dist, "metric": metric}
        xy = _project_sampled(
            Z, good, pca_dims, fit_sample, transform_batch, seed, progress, n_epochs, umap_opts
        )
        out[good] = _unit_box(xy)
        return out
    X = Z[good].astype(np.float64)
    n = len(X)
    if n == 0:
        warnings.warn("no finite embeddings to project", ProjectionWarning, stacklevel=3)
        return out
    if n == 1 or np.ptp(X, axis=0).max() < 1e-12:
        warnings.warn(
            f"{n} point(s) with {'no' if n > 1 else 'one'} spread: placed at the origin",
            ProjectionWarning,
            stacklevel=3,
        )
        out[good] = 0.0
        return out
    from sklearn.decomposition import PCA

    dims = min(pca_dims, X.shape[1], n - 1)
    if dims < X.shape[1]:
        X = PCA(n_components=dims, random_state=seed).fit_transform(X)
    if n <= max(n_neighbors, 4) or X.shape[1] < 2:
        warnings.warn(
            f"{n} points are too few for UMAP with n_neighbors={n_neighbors}: showing PCA",
            ProjectionWarning,
            stacklevel=3,
        )
        xy = np.zeros((n, 2))
        xy[:, : min(2, X.shape[1])] = X[:, :2]
        out[good] = _unit_box(xy)
        return out
    t0 = _announce(f"UMAP on {n} points × {X.shape[1]} dims", progress)
    knn = None
    if 4096 < n <= EXACT_KNN_LIMIT and metric in ("cosine", "euclidean"):
        idx, dist = exact_knn(X, n_neighbors, metric)
        knn = (idx, dist, None)
    elif n > EXACT_KNN_LIMIT and metric in ("cosine", "euclidean"):
        idx, dist, recall = ivf_knn(X, n_neighbors, metric, seed=seed)
        if recall >= IVF_MIN_RECALL:
            knn = (idx, dist, None)
        if progress:
            print(
                f"inverted-file neighbour search: recall {recall:.3f} on a sample"
                + ("" if knn else f" (< {IVF_MIN_RECALL}): NN-descent instead"),
                file=sys.stderr,
                flush=True,
            )
    reducer = _umap(
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        n_epochs=n_epochs,
        random_state=seed,
        **({"precomputed_knn": knn} if knn else {}),
    )
    with _quiet_umap():
        xy = reducer.fit_transform(X)
    if progress:
        print(f"UMAP done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    out[good] = _unit_box(xy)
    return out


def _project_sampled(
    Z: np.ndarray,
    good: np.ndarray,
    pca_dims: int,
    fit_sample: int,
    transform_batch: int,
    seed: int,
    progress: bool,
    n_epochs: int | None,
    umap_opts: dict[str, Any],
) -> np.ndarray:
    """PCA and UMAP fitted on ``fit_sample`` seeded rows of ``Z[good]``, the rest transformed in
    batches (no float64 copy of the whole matrix). Returns the (n_good, 2) layout."""
    rows = np.flatnonzero(good)
    fit = np.zeros(len(rows), dtype=bool)
    fit[np.random.default_rng(seed).choice(len(rows), size=fit_sample, replace=False)] = True
    X = Z[rows[fit]].astype(np.float64)
    if np.ptp(X, axis=0).max() < 1e-12:
        warnings.warn(
            f"a sample of {fit_sample} points has no spread: all {len(rows)} placed at the origin",
            ProjectionWarning,
            stacklevel=4,
        )
        return np.zeros((len(rows), 2))
    from sklearn.decomposition import PCA

    pca = None
    if min(pca_dims, X.shape[1]) < X.shape[1]:
        pca = PCA(n_components=pca_dims, random_state=seed).fit(X)
        X = pca.transform(X)
    t0 = _announce(
        f"UMAP fitted on a sample of {fit_sample} of {len(rows)} points × {X.shape[1]} dims, the "
        f"rest placed by transform in batches of {transform_batch}",
        progress,
    )
    reducer = _umap(n_epochs=n_epochs, random_state=seed, **umap_opts)
    xy = np.empty((len(rows), 2))
    with _quiet_umap():
        xy[fit] = reducer.fit_transform(X)
        rest = rows[~fit]
        placed = np.flatnonzero(~fit)
        for b in range(0, len(rest), transform_batch):
            batch = Z[rest[b : b + transform_batch]].astype(np.float64)
            xy[placed[b : b + transform_batch]] = reducer.transform(
                pca.transform(batch) if pca is not None else batch
            )
    if progress:
        print(f"UMAP done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return xy


def exact_knn(
    X: np.ndarray, k: int, metric: str = "cosine", block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """The exact ``k`` nearest neighbours of every row of ``X`` among all rows (itself included,
    at distance 0), by blocks of matrix products: (n, k) int64 indices and float32 distances,
    nearest first. ``metric``: ``"cosine"`` (1 − cosine similarity, UMAP's) or ``"euclidean"``.
    Memory: one (block, n) float32 matrix at a time."""
    import torch

    Y, sq = _prepared(X, metric, "exact_knn")
    n, k = len(Y), min(k, len(Y))
    idx = np.empty((n, k), dtype=np.int64)
    d2 = np.empty((n, k), dtype=np.float32)
    with torch.inference_mode():
        for b in range(0, n, block):
            idx[b : b + block], d2[b : b + block] = _nearest(
                Y, sq, torch.arange(b, min(n, b + block)), None, k
            )
    return idx, _distances(idx, d2, metric)


def _prepared(X: np.ndarray, metric: str, caller: str) -> tuple[Any, Any]:
    """``X`` as a float32 tensor and its rows' squared norms; for cosine the rows normalised and
    None for the norms (all 1)."""
    import torch

    if metric not in ("cosine", "euclidean"):
        msg = f"{caller} supports metric 'cosine' or 'euclidean', not {metric!r}"
        raise ValueError(msg)
    Y = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    if metric == "cosine":
        return torch.nn.functional.normalize(Y, dim=1), None
    return Y, (Y * Y).sum(dim=1)


def ivf_knn(
    X: np.ndarray,
    k: int,
    metric: str = "cosine",
    *,
    probe: int = 16,
    seed: int = 0,
    check: int = 1000,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Approximate ``k`` nearest neighbours of every row of ``X`` by an inverted-file search, in
    matrix products only (no numba, so nothing to compile): rows are grouped by seeded k-means into
    about √n lists, and the rows of each list are compared with the rows of the lists nearest to
    its centre, as many as hold ``probe`` lists' worth of rows (at least 4k): O(n^1.5) work.

    Returns (n, k) int64 indices and float32 distances as :func:`exact_knn` does (itself included
    at 0), and the recall measured on ``check`` seeded rows against their exact neighbours (a
    neighbour counts when it is no farther than the exact k-th: ties and duplicates do not lower
    it). On 1e5 × 50 on 2 cores: about 2.5 s; recall 1.000 on clustered embeddings, 0.97 on a
    5-d manifold, 0.25 on isotropic 50-d noise (where NN-descent reaches 0.44).
    """
    import torch

    Y, sq = _prepared(X, metric, "ivf_knn")
    n, k = len(Y), min(k, len(Y))
    gen = torch.Generator().manual_seed(seed)
    n_lists = max(1, round(n**0.5))
    with torch.inference_mode():
        centres = Y[torch.randperm(n, generator=gen)[:n_lists]].clone()
        for step in range(9):  # 8 Lloyd steps, then the final assignment
            csq, rows = (centres * centres).sum(1), max(1, 2**24 // n_lists)  # ≤ 64 MB a block
            near = torch.cat(
                [
                    (Y[b : b + rows] @ centres.T).mul_(-2).add_(csq).argmin(1)
                    for b in range(0, n, rows)
                ]
            )
            if step == 8:
                break
            counts = torch.bincount(near, minlength=n_lists)
            sums = torch.zeros_like(centres).index_add_(0, near, Y)
            filled = counts > 0
            centres[filled] = sums[filled] / counts[filled, None]
        order = torch.argsort(near, stable=True)
        counts = torch.bincount(near, minlength=n_lists)
        starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)]).tolist()
        by_distance = torch.cdist(centres, centres).argsort(dim=1)
        want = max(probe * n // n_lists, 4 * k)
        block = max(1, 2**24 // n)  # query rows per (rows, n) score matrix: ≤ 64 MB
        idx = np.empty((n, k), dtype=np.int64)
        d2 = np.empty((n, k), dtype=np.float32)
        for c in range(n_lists):
            queries = order[starts[c] : starts[c + 1]]
            if not len(queries):
                continue
            lists = by_distance[c]
            m = int(torch.searchsorted(torch.cumsum(counts[lists], 0), want)) + 1
            cand = torch.cat([order[starts[j] : starts[j + 1]] for j in lists[:m].tolist()])
            for q in torch.split(queries, max(1, 2**24 // len(cand))):
                i, d = _nearest(Y, sq, q, cand, k)
                idx[q.numpy()], d2[q.numpy()] = i, d
        rows = np.random.default_rng(seed).choice(n, size=min(check, n), replace=False)
        exact_d2 = np.concatenate(
            [_nearest(Y, sq, q, None, k)[1] for q in torch.split(torch.from_numpy(rows), block)]
        )
        recall = float((d2[rows] <= exact_d2[:, -1:] + 1e-5).mean())
    return idx, _distances(idx, d2, metric), recall


def _nearest(Y: Any, sq: Any, queries: Any, cand: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``Y[cand]`` (all rows when ``cand`` is None) nearest to ``Y[queries]``
    (torch tensors): numpy indices and squared euclidean distances, nearest first. ``sq``: the
    rows' squared norms, or None when every row has norm 1."""
    import torch

    C = Y if cand is None else Y[cand]
    score = Y[queries] @ C.T
    if sq is None:  # rows on the unit sphere: ‖q − c‖² = 2 − 2⟨q, c⟩
        top, at = torch.topk(score, min(k, len(C)), dim=1)
        d2 = top.mul_(-2).add_(2).clamp_min_(0.0)
    else:  # 2⟨q, c⟩ − ‖c‖² = ‖q‖² − ‖q − c‖²: larger is nearer
        score.mul_(2).sub_((sq if cand is None else sq[cand])[None, :])
        top, at = torch.topk(score, min(k, len(C)), dim=1)
        d2 = top.neg_().add_(sq[queries][:, None]).clamp_min_(0.0)
    return (at if cand is None else cand[at]).numpy(), d2.numpy()


def _distances(idx: np.ndarray, d2: np.ndarray, metric: str) -> np.ndarray:
    """Squared euclidean distances of (normalised, for cosine) rows → UMAP's distances, with
    each row's own entry exactly 0 (rounding would leave ~1e-7, which UMAP reads as rho)."""
    d2 = np.where(idx == np.arange(len(idx))[:, None], 0.0, d2).astype(np.float32)
    return d2 / 2 if metric == "cosine" else np.sqrt(d2)  # ‖a − b‖² = 2 − 2 cos on the sphere


def _announce(what: str, progress: bool) -> float:
    """Wait for the warm-up compile, say what is starting (when ``progress``), return the time."""
    _wait_for_warmup()
    if progress:
        print(
            f"{what} (the first fit after installing compiles for 10–60 s)…",
            file=sys.stderr,
            flush=True,
        )
    return time.perf_counter()


def _umap(**opts: Any) -> Any:
    import umap

    enable_numba_cache()
    return umap.UMAP(n_components=2, low_memory=True, verbose=False, **opts)


@contextlib.contextmanager
def _quiet_umap() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*force_all_finite.*")
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        yield


def _unit_box(xy: np.ndarray) -> np.ndarray:
    """Centre and scale so the larger extent spans [-1, 1] (stable axes for the map)."""
    xy = np.asarray(xy, dtype=np.float64)
    xy = xy - xy.mean(axis=0)
    span = np.abs(xy).max()
    return (xy / span if span > 0 else xy).astype(np.float32)
