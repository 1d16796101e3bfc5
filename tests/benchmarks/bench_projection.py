"""Projection: faultlens (PCA → UMAP, cosine, low_memory) vs plain ``umap.UMAP()`` defaults, same run.

    python tests/benchmarks/bench_projection.py [--sizes 10000 100000] [--dim 512]

The data are clustered float32 embeddings (40 Gaussian clusters on the unit sphere). Each method gets
its own empty numba disk cache (``NUMBA_CACHE_DIR``) and runs in a fresh process twice: the first call
is the very first ever (everything compiles, as right after installing), the second is warm. Then a
new process with that cache, now filled, times one more first call: what every later kernel start
costs. The quality of both is ``sklearn.manifold.trustworthiness`` (k = 15) on a 2,000-point
sample. Prints seconds, the speed ratio (plain / ours) and the trustworthiness difference. Not a
test: asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys, time, warnings
    import numpy as np
    warnings.filterwarnings("ignore")
    method, n, dim, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, dim))
    X = centres[rng.integers(0, 40, n)] + rng.normal(0, 0.6, (n, dim))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    def run():
        if method == "faultlens":
            from faultlens.analysis.projection import project
            return project(X, progress=False)
        import umap
        return umap.UMAP(random_state=0).fit_transform(X)
    times = []
    for _ in range(calls):
        t = time.perf_counter(); xy = run(); times.append(time.perf_counter() - t)
    from sklearn.manifold import trustworthiness
    s = rng.choice(n, min(n, 2000), replace=False)
    tw = float(trustworthiness(X[s], xy[s], n_neighbors=15))
    print(json.dumps({"first": times[0], "warm": times[-1], "trust": tw}))
    """
)


def _child(method: str, n: int, dim: int, calls: int, cache: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(n), str(dim), str(calls)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NUMBA_CACHE_DIR": cache},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(method: str, n: int, dim: int) -> dict:
    """``cold``: first call with an empty disk cache; ``first``: first call in a new process once
    the cache is filled; ``warm``: a second call in one process."""
    with tempfile.TemporaryDirectory() as cache:
        cold = _child(method, n, dim, 2, cache)
        again = _child(method, n, dim, 1, cache)
    return {"cold": cold["first"], "first": again["first"], "warm": cold["warm"],
            "trust": cold["trust"]}  # fmt: skip


def collect(sizes: tuple[int, ...] = (10_000,), dim: int = 512) -> list[dict]:
    """Per size: first-call and warm seconds of both (ratio = plain / ours) and trustworthiness."""
    rows = []
    for n in sizes:
        u, f = measure("umap", n, dim), measure("faultlens", n, dim)
        labels = {
            "cold": "very first call (empty numba cache)",
            "first": "first call in a new process",
            "warm": "warm",
        }
        for when, label in labels.items():
            rows.append({
                "figure": f"projection {n:,} × {dim}, {label}", "ours": f[when],
                "baseline": u[when], "baseline_is": "plain umap.UMAP()", "unit": "s",
                "ratio": u[when] / f[when], "goal": "≥ 2× faster",
                "met": u[when] / f[when] >= 2,
            })  # fmt: skip
        rows.append({
            "figure": f"projection {n:,} × {dim}, trustworthiness (k=15)", "ours": f["trust"],
            "baseline": u["trust"], "baseline_is": "plain umap.UMAP()", "unit": "",
            "ratio": None, "diff": f["trust"] - u["trust"], "goal": "within 0.01",
            "met": f["trust"] - u["trust"] >= -0.01,
        })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    for r in collect(tuple(args.sizes), args.dim):
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else f"{r['diff']:+.4f}"
        print(f"{r['figure']:<52} ours {r['ours']:8.4g}  plain {r['baseline']:8.4g}  {ratio}")


if __name__ == "__main__":
    main()
