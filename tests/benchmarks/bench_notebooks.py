"""Each notebook's peak memory and run time in Binder's configuration (goal: peak ≤ 1.5 GB).

    python -m tests.benchmarks.bench_notebooks [--small] [--names 01-quickstart.ipynb …]

Binder's ``postBuild`` runs ``faultlens demo`` once, so a learner's notebooks start from a warm cache
at full size; this does the same in a fresh cache, then runs every notebook top to bottom offline
(``FAULTLENS_NB_OFFLINE=1``) and reads its kernel's peak RSS (``VmHWM``). The CI notebook test runs
them in small mode from a cold cache instead, which trains the demo CNN inside the first kernel.
Peak memory includes the imports: with the CUDA build of torch that is about 0.5 GB for torch alone,
more than the CPU build Binder installs. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from tests.test_notebooks import ALL, _rel, execute

GOAL_GB = 1.5


def collect(small: bool = False, names: list[str] | None = None) -> list[dict]:
    paths = [p for p in ALL if names is None or _rel(p) in names]
    rows = []
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        try:
            os.environ["FAULTLENS_CACHE"] = cache
            os.environ["FAULTLENS_NB_OFFLINE"] = "1"
            os.environ.pop("FAULTLENS_NB_SMALL", None)
            demo = ["faultlens", "demo"]
            if small:
                os.environ["FAULTLENS_NB_SMALL"] = "1"
                demo += ["--n-per-class", "100", "--out", f"{cache}/demo-analysis-100"]
            t0 = time.perf_counter()
            subprocess.run(demo, capture_output=True, check=True)  # what postBuild does
            warm = time.perf_counter() - t0
            for path in paths:
                wall, peak_mb, _nb = execute(path)
                gb = peak_mb / 1024
                rows.append({
                    "figure": f"notebook {_rel(path)}, kernel peak RSS, Binder's configuration",
                    "ours": gb, "baseline": None, "unit": "GB", "ratio": None,
                    "goal": f"≤ {GOAL_GB} GB", "met": gb <= GOAL_GB,
                    "note": f"{'small' if small else 'full'} size, cache warmed by the demo "
                    f"({warm:.0f} s, as postBuild does); ran in {wall:.0f} s",
                })  # fmt: skip
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--names", nargs="+")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = collect(args.small, args.names)
    for r in rows:
        print(f"{r['figure']:<90} {r['ours']:.2f} GB  ({r['note']})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
