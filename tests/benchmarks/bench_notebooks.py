"""Each notebook's peak memory and run time in Binder's configuration (goal: peak ≤ 1.5 GB).

    python -m tests.benchmarks.bench_notebooks [--small] [--names 01-quickstart.ipynb …]
    python -m tests.benchmarks.bench_notebooks --cache-as-is --check    # what .ci/binder runs

Binder's ``postBuild`` runs ``faultlens demo`` once, so a learner's notebooks start from a warm cache
at full size; by default this does the same in a fresh cache, then runs every notebook top to bottom
offline (``FAULTLENS_NB_OFFLINE=1``) and reads its kernel's peak RSS (``VmHWM``). ``--cache-as-is``
skips that demo and uses whatever cache the environment names (``.ci/binder`` runs it right after
``postBuild``, in the cache ``postBuild`` filled). The CI notebook test runs them in small mode from
a cold cache instead, which trains the demo CNN inside the first kernel.

Peak memory includes the imports: with the CUDA build of torch that is about 0.5 GB for torch alone,
more than the CPU build Binder installs. The CPU build cannot be installed here (its wheel index is
out of reach), so each row also gives the kernel's resident pages of CUDA-only libraries (nvidia-*,
triton, libtorch_cuda: what the CPU build does not ship) and the peak without them, an estimate of
the peak on Binder. Not a test; ``--check`` exits 1 when that estimate is over the goal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.notebook_run import ALL, execute, rel

GOAL_GB = 1.5


def _rows(paths: list[Path], size: str, warm_note: str) -> list[dict]:
    rows = []
    for path in paths:
        run = execute(path)
        gb, cpu_gb = run.peak_mb / 1024, run.cpu_torch_estimate_mb / 1024
        rows.append({
            "figure": f"notebook {rel(path)}, kernel peak RSS, Binder's configuration",
            "ours": gb, "baseline": None, "unit": "GB", "ratio": None,
            "goal": f"≤ {GOAL_GB} GB", "met": cpu_gb <= GOAL_GB,
            "note": f"{size} size, {warm_note}; ran in {run.wall_s:.0f} s; "
            f"{run.cuda_only_mb / 1024:.2f} GB of it CUDA-only libraries: "
            f"about {cpu_gb:.2f} GB with CPU torch",
        })  # fmt: skip
    return rows


def collect(
    small: bool = False, names: list[str] | None = None, cache_as_is: bool = False
) -> list[dict]:
    paths = [p for p in ALL if names is None or rel(p) in names]
    size = "small" if small else "full"
    saved = dict(os.environ)
    try:
        os.environ["FAULTLENS_NB_OFFLINE"] = "1"
        os.environ.pop("FAULTLENS_NB_SMALL", None)
        if small:
            os.environ["FAULTLENS_NB_SMALL"] = "1"
        if cache_as_is:
            return _rows(paths, size, "the cache as the environment left it")
        with tempfile.TemporaryDirectory() as cache:
            os.environ["FAULTLENS_CACHE"] = cache
            demo = ["faultlens", "demo"]
            if small:
                demo += ["--n-per-class", "100", "--out", f"{cache}/demo-analysis-100"]
            t0 = time.perf_counter()
            subprocess.run(demo, capture_output=True, check=True)  # what postBuild does
            warm = time.perf_counter() - t0
            return _rows(paths, size, f"cache warmed by the demo ({warm:.0f} s, as postBuild does)")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--names", nargs="+")
    ap.add_argument(
        "--cache-as-is", action="store_true", help="no demo first: use the cache as it is"
    )
    ap.add_argument(
        "--check", action="store_true", help=f"exit 1 if an estimate is over {GOAL_GB} GB"
    )
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = collect(args.small, args.names, args.cache_as_is)
    for r in rows:
        print(f"{r['figure']:<90} {r['ours']:.2f} GB  ({r['note']})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    if args.check and not all(r["met"] for r in rows):
        sys.exit(f"a notebook's estimated peak on Binder is over {GOAL_GB} GB")


if __name__ == "__main__":
    main()
