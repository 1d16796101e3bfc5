"""Two processes fill one cache with the same run at the same time: how many shards were computed
twice, and whether the arrays are identical.

Run as a script (not collected by pytest), from the repository root::

    python -m tests.benchmarks.bench_cache [--procs 2]

Uses the worker of ``tests/test_concurrency.py`` (96 images, shards of 8, a model slowed to
0.05 s a batch so the runs overlap). Prints one JSON line; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
from collections import Counter
from pathlib import Path

from tests.test_concurrency import _compute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        cache, log = Path(tmp) / "cache", Path(tmp) / "model.log"
        barrier, results = ctx.Barrier(args.procs), ctx.Queue()
        procs = [
            ctx.Process(target=_compute, args=(str(cache), str(log), barrier, results))
            for _ in range(args.procs)
        ]
        for p in procs:
            p.start()
        got = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(60)
        counts = Counter(s for g in got for s in g[0])
        items = Counter(int(x) for x in log.read_text().split())
        temps = [f.name for f in cache.rglob("*") if f.name.endswith((".tmp", ".new", ".old"))]
    print(json.dumps({
        "procs": args.procs, "shards": 12, "shard_computations": sum(counts.values()),
        "shards_computed_twice_or_more": sum(c > 1 for c in counts.values()),
        "items_through_the_model": sum(items.values()), "distinct_items": len(items),
        "identical_arrays": len({g[1] for g in got}) == 1, "errors": [g[2] for g in got if g[2]],
        "temp_files_left": len(temps),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
