"""An Explorer under load: many selections arriving as the front end sends them, on many points.

Run as a script (not collected by pytest)::

    python tests/benchmarks/bench_selection_stress.py --points 1000000 --selections 1000

Each selection goes through the same path a box or lasso in the browser takes (uint32 bytes in
``_selection`` with ``_selection_counter`` incremented, through ``set_state`` as a comm message
is applied); boxes of seeded random size and place, some empty. Reports the process's resident
memory (``/proc/self/statm``) and Python's traced allocations before and after, and how many
selections were lost: the explorer's ``selection`` differs from what was sent, or its statistics
count another number of points. This is the Python side of the browser run; the full page run
(real Chromium, as ``bench_explorer_browser.py``) is the next step. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
import tracemalloc

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--selections", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    from faultlens.ui.explorer import Explorer
    from tests.benchmarks.bench_explorer import synthetic

    ex = Explorer(synthetic(args.points))
    xy = np.stack([np.frombuffer(ex._x, "<f4"), np.frombuffer(ex._y, "<f4")], axis=1)
    rng = np.random.default_rng(0)

    def one(ex: Explorer) -> bool:
        """A seeded random box; whether the explorer kept it (selection and stats agree)."""
        cx, cy = rng.uniform(-1, 1, 2)
        w, h = rng.uniform(0.0, 0.3, 2) ** 2 * 4  # many small boxes, a few large ones
        inside = (np.abs(xy[:, 0] - cx) <= w / 2) & (np.abs(xy[:, 1] - cy) <= h / 2)
        rows = np.flatnonzero(inside).astype("<u4")
        ex.set_state({
            "_selection": memoryview(rows.tobytes()), "_selection_source": "box",
            "_selection_counter": ex._selection_counter + 1,
        })  # fmt: skip
        return np.array_equal(ex.selection, rows) and ex.stats.get("n_selected", 0) == len(rows)

    for _ in range(args.warmup):  # caches and first-call allocations settle first
        one(ex)
    gc.collect()
    tracemalloc.start()
    rss0, traced0 = _rss_mb(), tracemalloc.get_traced_memory()[0]
    lost = 0
    t0 = time.perf_counter()
    for _ in range(args.selections):
        lost += not one(ex)
    elapsed = time.perf_counter() - t0
    gc.collect()
    rss1, (traced1, peak) = _rss_mb(), tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({
        "points": args.points, "selections": args.selections, "lost": lost,
        "rss_mb_before": round(rss0, 1), "rss_mb_after": round(rss1, 1),
        "traced_mb_growth": round((traced1 - traced0) / 2**20, 2),
        "traced_mb_peak": round(peak / 2**20, 1),
        "ms_per_selection": round(1000 * elapsed / args.selections, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
