"""2-D projection of embeddings: PCA (to at most 50 dims), then UMAP. Seeded and cacheable.

Tiny or degenerate inputs never crash: N = 1 gives the origin, N below UMAP's neighbourhood or
constant embeddings fall back to PCA (or zeros), each with a warning that says so.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings

import numpy as np

from faultlens.store import ArtifactStore, fingerprint_array, make_key


class ProjectionWarning(UserWarning):
    """The projection fell back to something simpler than UMAP; the message says why."""


# numba compiles UMAP's kernels on the first fit in every process (10–60 s here) and its disk cache
# does not remove that. analyze() starts this warm-up in a background thread before it embeds, so the
# compile runs while the models do; project() waits for it instead of compiling a second time.
_WARMUP: dict[str, threading.Thread] = {}
_WARMUP_LOCK = threading.Lock()


def start_warmup(
    n_points: int, *, n_neighbors: int = 15, metric: str = "cosine"
) -> threading.Thread | None:
    """Compile UMAP's numba kernels in a daemon thread (once per process and code path).

    ``n_points`` picks the code path to compile: above 4096 points UMAP uses NN-descent for the
    neighbour graph, below it an exact search. Returns the thread, or None when nothing is to do.
    """
    if n_points <= max(n_neighbors, 4):
        return None
    path = "nndescent" if n_points > 4096 else "exact"
    with _WARMUP_LOCK:
        if path in _WARMUP:
            return _WARMUP[path]
        size = 4200 if path == "nndescent" else 200

        def run() -> None:
            import umap

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


def project(
    embeddings: np.ndarray,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    pca_dims: int = 50,
    metric: str = "cosine",
    n_epochs: int | None = 200,
    seed: int = 0,
    store: ArtifactStore | None = None,
    force: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """(N, D) embeddings → (N, 2) float32 coordinates.

    Rows with NaN (items that could not be decoded) are placed at NaN and left out of the fit.
    ``n_epochs=200`` (UMAP's own choice above 10,000 points) is also used below: on 10,000 × 512
    clustered embeddings it halves the time of UMAP's 500 epochs at the same trustworthiness
    (0.9937 vs 0.9938; ``tests/benchmarks/bench_projection.py``). ``None`` restores UMAP's rule.
    With ``store`` the result is cached under a key of the input bytes and every parameter.
    """
    Z = np.asarray(embeddings, dtype=np.float32)
    if Z.ndim != 2:
        msg = f"embeddings must be (n_images, dim), got shape {Z.shape}"
        raise ValueError(msg)
    params = {
        "n_neighbors": n_neighbors,
        "min_dist": min_dist,
        "pca_dims": pca_dims,
        "metric": metric,
        "n_epochs": n_epochs,
        "seed": seed,
    }

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
) -> np.ndarray:
    out = np.full((len(Z), 2), np.nan, dtype=np.float32)
    good = np.isfinite(Z).all(axis=1)
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
    import umap

    _wait_for_warmup()
    t0 = time.perf_counter()
    if progress:
        print(
            f"UMAP on {n} points × {X.shape[1]} dims (the first fit in a process compiles "
            "for 10–60 s)…",
            file=sys.stderr,
            flush=True,
        )
    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        n_epochs=n_epochs,
        random_state=seed,
        n_components=2,
        low_memory=True,
        verbose=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*force_all_finite.*")
        xy = reducer.fit_transform(X)
    if progress:
        print(f"UMAP done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    out[good] = _unit_box(xy)
    return out


def _unit_box(xy: np.ndarray) -> np.ndarray:
    """Centre and scale so the larger extent spans [-1, 1] (stable axes for the map)."""
    xy = np.asarray(xy, dtype=np.float64)
    xy = xy - xy.mean(axis=0)
    span = np.abs(xy).max()
    return (xy / span if span > 0 else xy).astype(np.float32)
