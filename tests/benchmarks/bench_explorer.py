"""Explorer benchmark: bytes on the wire per point, and Python-side selection → stats + grid page.

Run as a script (not collected by pytest): ``python tests/benchmarks/bench_explorer.py [--sizes ...]``.
Prints medians and ratios against a baseline measured in the same run (a plain pandas boolean-mask
groupby + sort of the same selection); asserts no times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
from ipywidgets.widgets.widget import _remove_buffers

from faultlens.analysis.result import Analysis
from faultlens.data.sources import ArraySource
from faultlens.ui.explorer import Explorer


def synthetic(n: int, n_classes: int = 10, seed: int = 0) -> Analysis:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, n_classes, n)
    pred = np.where(rng.random(n) < 0.2, rng.integers(0, n_classes, n), label)
    conf = rng.uniform(0.2, 1.0, n).astype(np.float32)
    centres = rng.uniform(-0.8, 0.8, (n_classes, 2))
    xy = (centres[label] + rng.normal(0, 0.08, (n, 2))).astype(np.float32)
    names = [f"class {i}" for i in range(n_classes)]
    names_arr = np.asarray(names, dtype=object)
    table = pd.DataFrame({
        "id": np.char.add("img-", np.arange(n).astype(str)).astype(object), "path": None,
        "label": label, "label_name": names_arr[label], "pred": pred, "pred_name": names_arr[pred],
        "confidence": conf, "loss": rng.exponential(1.0, n).astype(np.float32),
        "correct": pred == label, "x": xy[:, 0], "y": xy[:, 1], "source_index": np.arange(n),
    })  # fmt: skip
    images = rng.integers(
        0, 255, (n, 4, 4), dtype=np.uint8
    )  # tiny: the benchmark is not about PNGs
    return Analysis(table, class_names=names, source=ArraySource(images, label, class_names=names))


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def js_select(ex: Explorer, rows: np.ndarray) -> None:
    """What the front end does after a box: uint32 bytes + a bumped counter, via set_state."""
    ex.set_state({
        "_selection": memoryview(rows.astype("<u4").tobytes()), "_selection_source": "box",
        "_selection_counter": ex._selection_counter + 1,
    })  # fmt: skip


def collect(sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000), repeat: int = 7) -> list[dict]:
    """Per size: bytes per point on the wire, and the Python side of a 10 % selection (stats +
    grid page) against a plain pandas groupby + sort of the same rows."""
    rows = []
    for n in sizes:
        a = synthetic(n)
        ex = Explorer(a)
        ex.send = lambda *_a, **_k: None  # no comm: measure Python only
        _, paths, buffers = _remove_buffers(ex.get_state())
        per_point = sum(len(b) for p, b in zip(paths, buffers, strict=True)
                        if p[0] in ("_x", "_y", "_color", "_visible")) / n  # fmt: skip
        t = a.table
        mask = t["x"].to_numpy() < np.quantile(t["x"].to_numpy(), 0.1)
        sel = np.flatnonzero(mask)
        ms = median_ms(lambda sel=sel, ex=ex: js_select(ex, sel), repeat)

        def baseline(mask=mask, t=t) -> None:
            sub = t[mask]
            sub.groupby("label")["correct"].agg(["size", "mean"])
            sub[~sub["correct"]].groupby(["label", "pred"]).size().nlargest(5)
            sub.nlargest(24, "loss")

        base_ms = median_ms(baseline, repeat)
        rows.append({
            "figure": f"explorer payload, {n:,} points", "ours": per_point, "baseline": None,
            "unit": "B/point", "ratio": None, "goal": "≤ 12", "met": per_point <= 12,
        })  # fmt: skip
        rows.append({
            "figure": f"selection of 10 % → stats + grid page in Python, {n:,} points",
            "ours": ms, "baseline": base_ms, "baseline_is": "pandas groupby + nlargest",
            "unit": "ms", "ratio": base_ms / ms, "goal": None, "met": None,
            "note": f"median of {repeat}",
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for r in collect(tuple(args.sizes), args.repeat):
        base = (
            "" if r["baseline"] is None else f"  baseline {r['baseline']:.1f} ({r['ratio']:.2f}×)"
        )
        print(f"{r['figure']:<64} {r['ours']:8.1f} {r['unit']}{base}")


if __name__ == "__main__":
    main()
