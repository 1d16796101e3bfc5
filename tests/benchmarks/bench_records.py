"""Records under concurrent writers: N processes each save M slices (or feature marks) into one
analysis folder at the same time, deleting every k-th of their own; then count what survived.

Run as a script (not collected by pytest)::

    python tests/benchmarks/bench_records.py --via widgets --kind slices --procs 2 --saves 60
    python tests/benchmarks/bench_records.py --via widgets --kind slices --procs 3 --saves 40 \
        --delete-every 4
    python tests/benchmarks/bench_records.py --via store --kind marks --procs 3 --saves 40 \
        --delete-every 4

``--via widgets`` writes through ``Explorer.save_slice`` and ``explorer.saved.delete`` and
``FeatureBrowser.set_mark`` (whatever widget code is on the path); ``--via store`` through
:class:`~faultlens.analysis.record_views.SavedSlices` / :class:`~faultlens.analysis.record_views.FeatureMarks`.
Prints one JSON line: records expected, kept, deleted ones still there, and errors. Asserts nothing
about time. :func:`run` is what ``tests/test_concurrency.py`` calls.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

N_ROWS = 30


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    label = np.arange(N_ROWS) % 3
    pred = label.copy()
    pred[:4] = (label[:4] + 1) % 3
    names = np.asarray(["r", "g", "b"], dtype=object)
    xy = rng.normal(0, 1, (N_ROWS, 2)).astype(np.float32)
    return pd.DataFrame({
        "id": [f"img-{i}" for i in range(N_ROWS)], "label": label, "label_name": names[label],
        "pred": pred, "pred_name": names[pred], "confidence": np.linspace(0.4, 1, N_ROWS),
        "loss": np.linspace(1, 0, N_ROWS), "correct": pred == label, "x": xy[:, 0], "y": xy[:, 1],
        "source_index": np.arange(N_ROWS),
    })  # fmt: skip


def _names(proc: int, saves: int) -> list[str]:
    return [f"p{proc}-s{j}" for j in range(saves)]


def _feature(proc: int, j: int, saves: int) -> int:  # < 128: a channel of the layer
    return proc * saves + j


def _writer(via: str, kind: str, folder: str, proc: int, saves: int, every: int, barrier: Any,
            errors: Any) -> None:  # fmt: skip
    """One process's saves (and deletes of every ``every``-th of its own, right after saving)."""
    try:
        table = _table()
        if via == "store":  # what the store needs of an analysis (and a quick start)
            a: Any = SimpleNamespace(folder=Path(folder), table=table, class_names=["r", "g", "b"])
        else:
            from faultlens.analysis.result import Analysis
            from faultlens.data.sources import ArraySource

            images = np.random.default_rng(1).integers(0, 255, (N_ROWS, 16, 16, 3), np.uint8)
            a = Analysis(
                table,
                class_names=["r", "g", "b"],
                source=ArraySource(images, table["label"].to_numpy()),
                folder=Path(folder),
            )
        save, delete = _operations(via, kind, a)
        barrier.wait()
        lost = 0
        for j in range(saves):
            save(proc, j, saves)
            if every and j % every == every - 1:
                try:
                    delete(proc, j, saves)
                except KeyError:  # another writer's save dropped it before this delete
                    lost += 1
        if lost:
            errors.put(f"process {proc}: {lost} delete(s) found their record already gone")
    except Exception:
        errors.put(f"process {proc}: {traceback.format_exc(limit=3)}")


def _operations(via: str, kind: str, a: Any) -> tuple[Any, Any]:
    rows = [1, 2, 3]
    if via == "store":
        from faultlens.analysis.record_views import FeatureMarks, SavedSlices

        if kind == "slices":
            s = SavedSlices(a)
            return (lambda p, j, m: s.save(f"p{p}-s{j}", rows),
                    lambda p, j, m: s.delete(f"p{p}-s{j}"))  # fmt: skip
        fm = FeatureMarks(a)
        return (lambda p, j, m: fm.set("conv", 0, _feature(p, j, m), "spurious"),
                lambda p, j, m: fm.set("conv", 0, _feature(p, j, m), ""))  # fmt: skip
    if kind == "slices":
        from faultlens.ui.explorer import Explorer

        ex = Explorer(a)
        return (lambda p, j, m: ex.save_slice(f"p{p}-s{j}", rows),
                lambda p, j, m: ex.saved.delete(f"p{p}-s{j}"))  # fmt: skip
    import torch

    from faultlens.ui.features import FeatureBrowser

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 128, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(128, 3)).eval()  # fmt: skip

    def transform(img: Any) -> Any:
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)

    fb = FeatureBrowser(a, net, "0", transform, k=2, gap_k=3)
    return (lambda p, j, m: fb.set_mark(0, _feature(p, j, m), "spurious"),
            lambda p, j, m: fb.set_mark(0, _feature(p, j, m), ""))  # fmt: skip


def run(via: str, kind: str, procs: int, saves: int, every: int, folder: Path) -> dict[str, Any]:
    """Run ``procs`` writers at once into ``folder``; what was expected and what was kept."""
    folder.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    barrier, errors = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_writer, args=(via, kind, str(folder), p, saves, every, barrier, errors))
        for p in range(procs)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(600)
    errs = []
    while not errors.empty():
        errs.append(errors.get())
    expected, deleted = set(), set()
    for p in range(procs):
        for j in range(saves):
            key = f"p{p}-s{j}" if kind == "slices" else _feature(p, j, saves)
            (deleted if every and j % every == every - 1 else expected).add(key)
    path = folder / ("slices.json" if kind == "slices" else "annotations.json")
    data = json.loads(path.read_text()) if path.exists() else {}
    if kind == "slices":
        stored = set(data.get("slices", {}))
    else:
        stored = {m["feature"] for m in data.get("marks", []) if isinstance(m, dict)}
    temps = [f.name for f in folder.iterdir() if f.name.endswith(".tmp")]
    return {
        "via": via, "kind": kind, "procs": procs, "saves": saves, "delete_every": every,
        "expected": len(expected), "kept": len(expected & stored),
        "deleted_still_there": len(deleted & stored), "temp_files_left": len(temps),
        "exit_codes": [w.exitcode for w in workers], "errors": errs,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--via", choices=["widgets", "store"], default="store")
    ap.add_argument("--kind", choices=["slices", "marks"], default="slices")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--saves", type=int, default=60)
    ap.add_argument("--delete-every", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = run(args.via, args.kind, args.procs, args.saves, args.delete_every, Path(tmp) / "an")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
