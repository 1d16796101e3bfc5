"""The planted-slice table (protocol P1): each slicer and baseline on rare, correlation and noisy-label
slices over synthetic embeddings, scored by dcbench's metric (best AP over slices and complements).

    python tests/benchmarks/bench_slices.py [--seeds 3]

Every method is fitted on a validation problem and scored on a test problem drawn with another seed.
Prints AP and P@10 per setting and, per method, mean AP, mean P@10 and the share of settings with
P@10 ≥ 0.8 ("identified").
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd

from faultlens.analysis import evaluate, slices
from faultlens.analysis.failure_directions import FailureDirections

SETTINGS = [
    ("rare", 0.02),
    ("rare", 0.05),
    ("rare", 0.1),
    ("correlation", 0.4),
    ("correlation", 0.8),
    ("noisy_label", 0.2),
    ("noisy_label", 0.4),
]


def run(seeds: int) -> pd.DataFrame:
    rows = []
    for kind, setting in SETTINGS:
        for seed in range(seeds):
            val = evaluate.planted_problem(kind, setting, seed=seed)
            test = evaluate.planted_problem(kind, setting, seed=seed + 100)
            n = len(test.labels)
            frac = float(test.true_slices.mean())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = {
                    "mixture": slices.ErrorAwareMixture(5, random_state=seed).fit(
                        val.embeddings, val.labels, val.probs
                    ),
                    "failure_directions": FailureDirections(random_state=seed).fit(
                        val.embeddings, val.labels, val.probs.argmax(1)
                    ),
                }
                for method in slices.METHODS:
                    found = slices.discover(
                        test.embeddings,
                        test.labels,
                        test.probs,
                        method=method,
                        fitted=fitted.get(method),
                        random_state=seed,
                    )
                    m = evaluate.slice_metrics(test.true_slices, slices.memberships(found, n)).iloc[
                        0
                    ]
                    rows.append((kind, setting, seed, method, m.ap, m.p_at_10, frac))
            rnd = np.random.default_rng(seed).random((n, 5))
            m = evaluate.slice_metrics(test.true_slices, rnd).iloc[0]
            rows.append((kind, setting, seed, "random", m.ap, m.p_at_10, frac))
    return pd.DataFrame(
        rows, columns=["kind", "setting", "seed", "method", "ap", "p_at_10", "slice_fraction"]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    df = run(ap.parse_args().seeds)
    table = df.groupby(["kind", "setting", "method"])[["ap", "p_at_10"]].mean().unstack().round(2)
    table[("slice %", "")] = (100 * df.groupby(["kind", "setting"]).slice_fraction.mean()).round(1)
    print(table.to_string())
    summary = df.groupby("method").agg(
        ap=("ap", "mean"),
        p_at_10=("p_at_10", "mean"),
        identified=("p_at_10", lambda v: (v >= 0.8).mean()),
    )
    print()
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
