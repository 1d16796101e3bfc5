"""Projection: faultlens (PCA → UMAP, cosine, low_memory) vs plain ``umap.UMAP()`` defaults, same run.

    python tests/benchmarks/bench_projection.py [--sizes 10000 100000] [--dim 512]

The data are clustered float32 embeddings (40 Gaussian clusters on the unit sphere). Each method runs
in a fresh process twice — the first call pays numba's compile, the second is warm — and the quality
of both is ``sklearn.manifold.trustworthiness`` (k = 15) on a 2,000-point sample. Prints seconds,
the speed ratio (plain / ours) and the trustworthiness difference. Not a test: asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys, time, warnings
    import numpy as np
    warnings.filterwarnings("ignore")
    method, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
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
    for _ in range(2):
        t = time.perf_counter(); xy = run(); times.append(time.perf_counter() - t)
    from sklearn.manifold import trustworthiness
    s = rng.choice(n, min(n, 2000), replace=False)
    tw = float(trustworthiness(X[s], xy[s], n_neighbors=15))
    print(json.dumps({"first": times[0], "warm": times[1], "trust": tw}))
    """
)


def measure(method: str, n: int, dim: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(n), str(dim)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    print(f"{'n':>8} {'method':<10} {'first s':>8} {'warm s':>8} {'trust':>7}")
    for n in args.sizes:
        res = {m: measure(m, n, args.dim) for m in ("umap", "faultlens")}
        for m, r in res.items():
            print(f"{n:>8} {m:<10} {r['first']:8.1f} {r['warm']:8.1f} {r['trust']:7.4f}")
        u, f = res["umap"], res["faultlens"]
        print(
            f"{n:>8} ratio      first {u['first'] / f['first']:.2f}×  warm {u['warm'] / f['warm']:.2f}×  "
            f"trustworthiness difference {f['trust'] - u['trust']:+.4f}"
        )


if __name__ == "__main__":
    main()
