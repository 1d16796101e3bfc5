"""Planted-slice benchmarks (protocol P1): every slicer and baseline, scored by dcbench's metric
(best AP over slices and complements, P@10, identified = P@10 ≥ 0.8).

    python tests/benchmarks/bench_slices.py                  # both protocols, held-out seeds
    python tests/benchmarks/bench_slices.py --protocol informative
    python tests/benchmarks/bench_slices.py --protocol dcbench
    python tests/benchmarks/bench_slices.py --dev            # the development seeds instead
    python tests/benchmarks/bench_slices.py --ablation       # the mixture's variants
    python tests/benchmarks/bench_slices.py --smoke          # a few settings, seconds

Seeds: methods are developed on :data:`DEV_SEEDS` only; the reported numbers are on
:data:`HELD_OUT_SEEDS` (the default), which no choice in faultlens was tuned on.

- ``dcbench``: predictions uninformative inside the slice (sensitivity = specificity = 0.5, 0.8
  outside), binary, d = 64; every method is fitted on a validation problem and scored on a test
  problem of the same embedding space (:func:`faultlens.analysis.evaluate.planted_split`).
- ``informative``: the model is right 80 % of the time outside the slice and 40 % inside,
  confidences Beta(4, 1.5) when right and Beta(1.5, 2.5) when wrong; 2 and 4 classes, two noise
  levels, d = 128, 3,000 test items (36 settings, :func:`faultlens.analysis.evaluate.informative_grid`);
  ``discover(..., n_slices=5, random_state=0)`` on the test half.

Baselines: ``confidence`` (per class, 1 − p[label]), ``random`` (5 uniform columns) and, when it is
importable, ``sliceguard`` (Renumics; never a dependency of faultlens; not in ``--smoke``). It pins
pandas < 3 through renumics-spotlight, so it goes in a virtual environment that sees the installed
faultlens and its dependencies but keeps its own pandas::

    python3.11 -m venv --system-site-packages /tmp/sgenv
    /tmp/sgenv/bin/pip install sliceguard
    /tmp/sgenv/bin/python tests/benchmarks/bench_slices.py

It is given the embeddings as ``precomputed_embeddings``, so it downloads no model and needs no
network (:func:`sliceguard_memberships`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from faultlens.analysis import evaluate, slices

#: Seeds the methods may be developed and tuned on.
DEV_SEEDS = (0, 1)
#: Seeds of the reported numbers; nothing was tuned on them.
HELD_OUT_SEEDS = (1000, 1001)

METHODS = ("default", "mixture", "failure_directions", "label_errors", "kmeans", "confusion")

DCBENCH_SETTINGS = [
    ("rare", 0.02),
    ("rare", 0.05),
    ("rare", 0.1),
    ("correlation", 0.4),
    ("correlation", 0.8),
    ("noisy_label", 0.2),
    ("noisy_label", 0.4),
]


def confidence_baseline(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One column per class: ``1 − p[label]`` on that class's items, 0 elsewhere."""
    loss = 1.0 - probs[np.arange(len(labels)), labels]
    return np.stack([np.where(labels == c, loss, 0.0) for c in range(probs.shape[1])], axis=1)


#: How to get the sliceguard row (its renumics-spotlight pins pandas < 3, so not beside faultlens).
SLICEGUARD_VENV = (
    "for its row: python3.11 -m venv --system-site-packages /tmp/sgenv && "
    "/tmp/sgenv/bin/pip install sliceguard && "
    "/tmp/sgenv/bin/python tests/benchmarks/bench_slices.py"
)


def sliceguard_status() -> str | None:
    """The installed sliceguard's version, or None when it cannot be imported."""
    try:
        import sliceguard  # noqa: F401
    except Exception:  # not installed, or broken: a peer row only
        return None
    from importlib.metadata import version

    return version("sliceguard")


def sliceguard_memberships(p: evaluate.PlantedProblem, n_slices: int = 5) -> np.ndarray:
    """sliceguard's top ``n_slices`` issues as 0/1 columns: ``find_issues`` in its native mode
    (labels, predictions, ``accuracy_score``), the embeddings given as ``precomputed_embeddings``
    (so it computes none and needs no network), everything else its defaults (UMAP pre-reduction,
    h-nne hierarchy, issues ranked by accuracy drop)."""
    from sklearn.metrics import accuracy_score
    from sliceguard import SliceGuard

    df = pd.DataFrame({"label": p.labels, "pred": p.probs.argmax(1)})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # its progress
        warnings.simplefilter("ignore")
        issues = SliceGuard().find_issues(
            df,
            features=["emb"],
            y="label",
            y_pred="pred",
            metric=accuracy_score,
            n_slices=n_slices,
            metric_mode="max",
            precomputed_embeddings={"emb": p.embeddings},
        )
    cols = []
    for issue in issues:
        m = np.zeros(len(p.labels))
        m[np.asarray(issue["rows"], dtype=np.int64)] = 1.0
        cols.append(m)
    return np.stack(cols, axis=1) if cols else np.zeros((len(p.labels), 1))


def _score(
    p: evaluate.PlantedProblem, columns: Callable[[], np.ndarray]
) -> tuple[float, float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = evaluate.slice_metrics(p.true_slices, columns()).iloc[0]
    return m.ap, m.p_at_10, m.p_at_25


def _baselines(
    p: evaluate.PlantedProblem, seed: int, peer: bool
) -> Iterable[tuple[str, Callable[[], np.ndarray]]]:
    yield "confidence", lambda: confidence_baseline(p.labels, p.probs)
    yield "random", lambda: np.random.default_rng(seed).random((len(p.labels), 5))
    if peer:
        yield "sliceguard", lambda: sliceguard_memberships(p)


def run(
    seeds: Iterable[int] = HELD_OUT_SEEDS,
    *,
    settings=DCBENCH_SETTINGS,
    methods=METHODS,
    peer=False,
    same_space: bool = True,
) -> pd.DataFrame:
    """The dcbench protocol: fit on a validation problem, score on a test problem of the same
    embedding space (:func:`~faultlens.analysis.evaluate.planted_split`). ``same_space=False``
    is the earlier, flawed variant: two problems drawn with seeds ``s`` and ``s + 100``, whose
    embedding spaces are unrelated (only what a slicer reads from labels and predictions carries
    over)."""
    rows = []
    for kind, setting in settings:
        for seed in seeds:
            if same_space:
                val, test = evaluate.planted_split(kind, setting, seed=seed)
            else:
                val = evaluate.planted_problem(kind, setting, seed=seed)
                test = evaluate.planted_problem(kind, setting, seed=seed + 100)
            n, frac = len(test.labels), float(test.true_slices.mean())

            def found(method: str, val=val, test=test, seed=seed, n=n) -> np.ndarray:
                slicer = slices.make_slicer(method, 5, random_state=seed)
                slicer.fit(val.embeddings, val.labels, val.probs)
                f = slices.discover(
                    test.embeddings, test.labels, test.probs, fitted=slicer, random_state=seed
                )
                return slices.memberships(f, n)

            runs = [(m, lambda m=m: found(m)) for m in methods]
            for name, columns in [*runs, *_baselines(test, seed, peer)]:
                rows.append((kind, setting, seed, name, *_score(test, columns), frac))
    return pd.DataFrame(
        rows,
        columns=["kind", "setting", "seed", "method", "ap", "p_at_10", "p_at_25", "slice_fraction"],
    )


def _problems(grid, seeds):
    for seed in seeds:
        for kind, setting, n_classes, noise in grid or evaluate.informative_grid():
            p = evaluate.informative_problem(
                kind, setting, n_classes=n_classes, noise=noise, seed=seed
            )
            yield (kind, setting, n_classes, noise, seed), p


_INFORMATIVE_COLUMNS = ["kind", "setting", "classes", "noise", "seed", "method", "ap", "p_at_10"]


def run_informative(
    grid: list[tuple[str, float, int, float]] | None = None,
    *,
    seeds: Iterable[int] = HELD_OUT_SEEDS,
    methods=METHODS,
    peer=False,
) -> pd.DataFrame:
    """The informative protocol: ``discover(..., n_slices=5, random_state=0)`` on the test half
    of each setting, for each seed."""
    rows = []
    for key, p in _problems(grid, seeds):
        n = len(p.labels)

        def found(method: str, p=p, n=n) -> np.ndarray:
            f = slices.discover(p.embeddings, p.labels, p.probs, method=method, n_slices=5)
            return slices.memberships(f, n)

        runs = [(m, lambda m=m: found(m)) for m in methods]
        for name, columns in [*runs, *_baselines(p, 0, peer)]:
            rows.append((*key, name, *_score(p, columns)))
    return pd.DataFrame(rows, columns=[*_INFORMATIVE_COLUMNS, "p_at_25"])


def _variant(*, keep_all: bool = True, **options: object) -> dict[str, object]:
    """A mixture variant: :class:`ErrorAwareMixture` options over the settings it was developed
    with (k-means init, excess ranking, γ = γ̂ = 10, 25 components, best of 3 runs), and whether
    components without hard members are kept (``keep_all``; the old discover dropped them)."""
    base = {"init": "kmeans", "ranking": "excess", "gamma": 10.0, "n_components": 25, "n_init": 3}
    return {"keep_all": keep_all, **base, **options}


#: The mixture's variants, each one change from the settings it was developed with.
ABLATION = {
    "as before: confusion init, Domino ranking, members only, one run": _variant(
        init="confusion", ranking="domino", n_init=1, keep_all=False
    ),
    "confusion init, Domino ranking, one run": _variant(
        init="confusion", ranking="domino", n_init=1
    ),
    "k-means init, Domino ranking, one run (plain Domino)": _variant(ranking="domino", n_init=1),
    "ranked by errors, one run": _variant(ranking="errors", n_init=1),
    "ranked by errors": _variant(ranking="errors"),
    "ranked by excess errors": _variant(),
    "ranked by error z-score": _variant(ranking="zscore"),
    "ranked by error z-score, one run": _variant(ranking="zscore", n_init=1),
    "γ = γ̂ = 5": _variant(gamma=5.0),
    "γ = γ̂ = 20": _variant(gamma=20.0),
    **{f"{k} components": _variant(n_components=k) for k in (15, 60, 80)},
    "40 components (faultlens)": _variant(n_components=40),
}


def run_ablation(
    grid: list[tuple[str, float, int, float]] | None = None, *, seeds: Iterable[int] = DEV_SEEDS
) -> pd.DataFrame:
    """The mixture's variants on the informative protocol; the top 5 components are scored."""
    rows = []
    for key, p in _problems(grid, seeds):
        for name, variant in ABLATION.items():

            def columns(variant=variant, p=p):
                opts = {k: v for k, v in variant.items() if k != "keep_all"}
                mix = slices.ErrorAwareMixture(5, gamma_hat=opts["gamma"], **opts).fit(
                    p.embeddings, p.labels, p.probs
                )
                M = mix.ranked_proba(p.embeddings, p.labels, p.probs)
                if not variant["keep_all"]:  # the old discover: the top 5, then those without
                    M = M[:, :5]  # hard members dropped
                    return M[:, (M >= 0.5).any(axis=0)]
                return M[:, :5]

            rows.append((*key, name, *_score(p, columns)))
    return pd.DataFrame(rows, columns=[*_INFORMATIVE_COLUMNS, "p_at_25"])


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: settings, identified (P@10 ≥ 0.8), mean AP / P@10 / P@25, AP per kind."""
    g = df.groupby("method", sort=False)
    out = pd.DataFrame(
        {
            "settings": g.size(),
            "identified": g.p_at_10.apply(lambda v: int((v >= 0.8).sum())),
            "ap": g.ap.mean(),
            "p_at_10": g.p_at_10.mean(),
            "p_at_25": g.p_at_25.mean(),
        }
    )
    per_kind = df.groupby(["method", "kind"], sort=False).ap.mean().unstack()
    return out.join(per_kind.add_prefix("ap ")).sort_values("ap", ascending=False)


def main(argv: list[str] | None = None) -> None:
    pd.set_option("display.width", 200)
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=("both", "dcbench", "informative"), default="both")
    ap.add_argument("--dev", action="store_true", help="the development seeds, not the held-out")
    ap.add_argument("--seeds", type=lambda v: tuple(int(x) for x in v.split(",")), default=None)
    ap.add_argument("--ablation", action="store_true", help="the mixture's variants only")
    ap.add_argument(
        "--unrelated-split",
        action="store_true",
        help="dcbench: the earlier variant whose val and test embedding spaces are unrelated",
    )
    ap.add_argument("--smoke", action="store_true", help="a few settings (for tests)")
    args = ap.parse_args(argv)
    grid = evaluate.informative_grid()
    if args.smoke:
        grid = [g for g in grid if g[2] == 2 and g[3] == 1.0][::3]
    seeds = args.seeds or (DEV_SEEDS if args.dev else HELD_OUT_SEEDS)
    if args.smoke:
        seeds = seeds[:1]
    print(f"seeds: {seeds} ({'development' if set(seeds) <= set(DEV_SEEDS) else 'held out'})")
    if args.ablation:
        print("The mixture's variants, informative protocol (top 5 components scored):")
        print(summary(run_ablation(grid, seeds=seeds)).round(3).to_string())
        return
    version = sliceguard_status()
    print(f"sliceguard: {version or 'not importable; ' + SLICEGUARD_VENV}")
    peer = version is not None and not args.smoke
    if args.protocol in ("both", "informative"):
        df = run_informative(grid, seeds=seeds, peer=peer)
        print(f"\nInformative protocol ({df.groupby('method').size().max()} settings):")
        print(summary(df).round(3).to_string())
    if args.protocol in ("both", "dcbench"):
        settings = DCBENCH_SETTINGS[::3] if args.smoke else DCBENCH_SETTINGS
        df = run(seeds, settings=settings, peer=peer, same_space=not args.unrelated_split)
        print(f"\ndcbench protocol ({df.groupby('method').size().max()} settings × seeds):")
        print(summary(df).round(3).to_string())


if __name__ == "__main__":
    main()
