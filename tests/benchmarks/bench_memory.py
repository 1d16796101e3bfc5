"""Peak memory of an explorer session at N points, above the same process after its imports.

    python tests/benchmarks/bench_memory.py [--n 100000] [--dim 512]

One fresh process: import faultlens and its dependencies (numpy, pandas, torch, anywidget, sklearn),
read the resident set size (the baseline), then run a session on N synthetic points with
``dim``-dimensional float32 embeddings and 28×28 RGB images: build the Analysis, open the Explorer,
colour by loss, select 10 % and then everything, render two grid pages of thumbnails, compute
failure-direction scores and discover slices. Prints the peak RSS (``ru_maxrss``) above the baseline;
no model weights are loaded. Goal: ≤ 1.5 GB at 1e5. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

GOAL_GB = 1.5

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np, pandas as pd, torch, anywidget, sklearn.svm, sklearn.mixture  # noqa: F401
    import faultlens
    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource
    from faultlens.ui.explorer import Explorer

    def rss_mb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    n, dim = int(sys.argv[1]), int(sys.argv[2])
    base = rss_mb()
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    k = 10
    label = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.2, rng.integers(0, k, n), label)
    probs = rng.dirichlet(np.ones(k), n).astype(np.float32)
    emb = rng.standard_normal((n, dim), dtype=np.float32)  # float32 from the start: no 2x copy
    emb += rng.standard_normal((k, dim), dtype=np.float32)[label]
    xy = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    names = np.asarray([f"class {i}" for i in range(k)], dtype=object)
    conf = probs.max(1)
    table = pd.DataFrame({
        "id": np.char.add("img-", np.arange(n).astype(str)).astype(object), "path": None,
        "label": label, "label_name": names[label], "pred": pred, "pred_name": names[pred],
        "confidence": conf, "loss": rng.exponential(1.0, n).astype(np.float32),
        "correct": pred == label, "x": xy[:, 0], "y": xy[:, 1], "source_index": np.arange(n),
    })
    images = rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8)
    a = Analysis(table, class_names=list(names), embeddings=emb, probs=probs,
                 source=ArraySource(images, label, class_names=list(names)))
    ex = Explorer(a)
    ex.send = lambda *_a, **_k: None  # no front end: the Python side only
    ex.color_by = "loss"
    ex.select(np.flatnonzero(xy[:, 0] < -0.8))
    ex.select(np.arange(n))
    for page in (0, 1):
        ex.grid_page = page
        ex._send_thumbs({"rows": [tile["row"] for tile in ex._grid["tiles"]]})
    a.failure_scores()
    found = a.find_slices(n_slices=5)
    ex.set_discovered(found)
    ex.color_by = "slice"
    print(json.dumps({"n": n, "dim": dim, "base_mb": base, "peak_mb": peak_mb(),
                      "above_mb": peak_mb() - base, "seconds": time.perf_counter() - t0,
                      "data_mb": (emb.nbytes + images.nbytes + probs.nbytes) / 2**20}))
    """
)


def collect(n: int = 100_000, dim: int = 512) -> list[dict]:
    """One row: the session's peak RSS above the imports, against the goal."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(dim)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        msg = f"the explorer session failed:\n{out.stderr[-3000:]}"
        raise RuntimeError(msg)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    gb = r["above_mb"] / 1024
    return [
        {
            "figure": f"explorer session peak RSS, {n:,} points × {dim} (above imports)",
            "ours": gb,
            "baseline": r["base_mb"] / 1024,
            "baseline_is": "RSS after imports",
            "unit": "GB",
            "ratio": None,
            "goal": f"≤ {GOAL_GB} GB",
            "met": gb <= GOAL_GB,
            "note": f"input arrays {r['data_mb'] / 1024:.2f} GB, session {r['seconds']:.0f} s",
        }
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    (row,) = collect(args.n, args.dim)
    print(f"{row['figure']}: {row['ours']:.2f} GB above {row['baseline']:.2f} GB of imports "
          f"(goal {row['goal']}; {row['note']})")  # fmt: skip


if __name__ == "__main__":
    main()
