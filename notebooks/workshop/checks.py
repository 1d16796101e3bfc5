"""Checks for the faultlens workshop. Each ``check_*`` says "not attempted yet" while the answer is
still ``...`` and otherwise asserts, with a hint, that the answer is right. The checks recompute
the answer from the inputs they are given, so a number typed in does not pass, and they accept
every correct form of an answer (row indices or a boolean mask, ``<`` or ``<=`` at a quantile).
The logo feature that Part 4's check accepts is remembered, and Parts 5 and 6 are graded against it."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "check_error_rate",
    "check_flagged",
    "check_gap",
    "check_logo_feature",
    "check_mitigation",
    "check_slice_group",
    "check_worst_class",
]

_verified: dict[str, int] = {}  # answers a check has accepted, for the later parts


def _todo(answer: object) -> bool:
    if answer is ...:
        print("⏳ not attempted yet: replace the ... and run the cell again")
        return True
    return False


def _ok(what: str) -> None:
    print(f"✅ {what}")


def _rows(flagged: object, n: int) -> np.ndarray:
    """Row indices from row indices or a boolean mask over the n rows."""
    flagged = np.asarray(flagged)
    if flagged.dtype == bool:
        assert flagged.shape == (n,), (
            f"a boolean mask needs one entry per row ({n}), this one has shape {flagged.shape}"
        )
        return np.flatnonzero(flagged)
    assert flagged.ndim == 1 and np.issubdtype(flagged.dtype, np.integer), (
        "flagged should be row indices (e.g. np.flatnonzero(mask)) or a boolean mask"
    )
    assert len(np.unique(flagged)) == len(flagged), (
        "flagged names some rows more than once: each row once (np.unique(flagged))"
    )
    return flagged


def check_worst_class(analysis, worst_class) -> None:
    if _todo(worst_class):
        return
    acc = analysis.group_accuracy("label_name")["accuracy"]
    assert isinstance(worst_class, str), (
        f"put the class's name (a str such as {acc.index[0]!r}) in worst_class, not {worst_class!r}"
    )
    assert worst_class == acc.idxmin(), (
        f"{worst_class!r} is not the class with the lowest accuracy: look at "
        "analysis.group_accuracy('label_name') (idxmin of its 'accuracy' column)"
    )
    _ok(f"{worst_class} is the worst class ({acc.min():.0%} accuracy)")


def check_flagged(analysis, flagged) -> None:
    if _todo(flagged):
        return
    assert "failure_score" in analysis.table, "call analysis.failure_scores() first"
    scores = analysis.table["failure_score"].to_numpy()
    rows = _rows(flagged, len(scores))
    assert len(rows) > 0, "flagged is empty: keep the rows whose score is below the 10 % quantile"
    assert np.isfinite(scores[rows]).all(), (
        "some flagged rows have no score (NaN): compare with np.nanquantile, NaN < q is False"
    )
    # "the 10 % lowest" up to how the boundary is drawn: < or <=, the quantile or a count of 10 %
    # (of the scored rows or of all rows, which is up to 12 % of the scored ones here)
    low, high = np.nanquantile(scores, [0.08, 0.12])
    assert np.all(scores[rows] <= high), (
        "some flagged rows score above the lowest 10 %: keep scores < np.nanquantile(scores, 0.1)"
    )
    missing = int(np.sum(scores < low)) - int(np.sum(scores[rows] < low))
    assert missing == 0, (
        f"{missing} rows among the lowest 10 % are not flagged: keep every row whose score is "
        "below np.nanquantile(scores, 0.1)"
    )
    rate = 1 - analysis.table["correct"].to_numpy()[rows].mean()
    overall = 1 - analysis.accuracy
    assert rate > 1.5 * overall, "hmm: the flagged rows should be much more often wrong"
    _ok(f"{len(rows)} flagged images, error rate {rate:.0%} vs {overall:.0%} overall")


def check_error_rate(analysis, flagged, error_rate) -> None:
    """Graded against your own ``flagged`` (run Part 2's first check before this one)."""
    if _todo(error_rate):
        return
    correct = analysis.table["correct"].to_numpy()
    want = 1 - correct[_rows(flagged, len(correct))].mean()
    got = float(error_rate)
    if abs(got - 100 * want) < 1e-6 and want > 0:
        _ok(f"error rate {want:.1%} (you gave it in %; a fraction is {want:.3f})")
        return
    assert abs(got - want) < 1e-9, (
        f"{got:.4f} is not the error rate of the flagged rows: it is the share of flagged rows "
        "whose 'correct' is False, 1 - analysis.table['correct'].to_numpy()[flagged].mean()"
    )
    _ok(f"error rate {want:.1%}")


def check_slice_group(analysis, found, best_group) -> None:
    if _todo(best_group):
        return
    groups = analysis.table["planted_group"].to_numpy()
    members = found[0].indices
    names, counts = np.unique(groups[members], return_counts=True)
    want = names[np.argmax(counts)]
    assert best_group == want, (
        f"{best_group!r} is not the commonest planted_group among the first slice's members: "
        "count analysis.table['planted_group'] over found[0].indices (np.unique(..., "
        "return_counts=True) or value_counts())"
    )
    share = counts.max() / len(members)
    _ok(f"the first slice is mostly {want!r} ({share:.0%} of its {len(members)} images)")


def check_logo_feature(nf_acts_plain, nf_acts_logo, logo_feature) -> None:
    if _todo(logo_feature):
        return
    diff = (np.asarray(nf_acts_logo) - np.asarray(nf_acts_plain)).mean(axis=0)
    want = int(np.argmax(diff))
    assert np.ndim(logo_feature) == 0 and 0 <= int(logo_feature) < len(diff), (
        f"logo_feature should be one feature index between 0 and {len(diff) - 1}: average the "
        "rise over the images first (.mean(axis=0)), then take np.argmax"
    )
    assert int(logo_feature) == want, (
        f"feature {int(logo_feature)} is not the one whose activation rises most with the logo: "
        "average acts_logo - acts_plain over the images (axis=0), then argmax over the features"
    )
    _verified["logo_feature"] = want
    _ok(f"feature {want} responds to the logo (mean rise {diff[want]:.2f})")


def _logo_feature_checked(logo_feature) -> int:
    assert "logo_feature" in _verified, "run Part 4's check (check_logo_feature) first"
    want = _verified["logo_feature"]
    assert int(logo_feature) == want, (
        f"logo_feature is {int(logo_feature)}, but Part 4's check accepted feature {want}: "
        "rerun Part 4 and use its answer"
    )
    return want


def _shirt_gap(acts, labels, correct, feature: int, k: int) -> float:
    """Shirt's spurious gap ranking by one feature, as the notebook computes it."""
    from faultlens.analysis import spurious as sp
    from faultlens.data.demo import CUE_CLASS

    labels = np.asarray(labels)
    score = sp.spuriosity(np.asarray(acts), labels, {CUE_CLASS: [feature]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k clamped for a small class: the notebook's warning
        return sp.spurious_gap(score, correct, labels, k=k, classes=[CUE_CLASS])[CUE_CLASS]


def check_gap(acts, labels, correct, logo_feature, gap_points, k) -> None:
    """Graded for the ``k`` the notebook sets (``K``), or spurious_gap's default of 50."""
    if _todo(gap_points):
        return
    feature = _logo_feature_checked(logo_feature)
    gaps = {kk: _shirt_gap(acts, labels, correct, feature, kk) for kk in sorted({int(k), 50})}
    got = float(gap_points)
    same = [kk for kk, g in gaps.items() if abs(g - got) < 1e-6]
    if not same and any(abs(100 * got - g) < 1e-6 for g in gaps.values()):
        raise AssertionError(
            "the gap is in points (0–100), and spurious_gap gives it so: use "
            "gap[SHIRT] as it is, without dividing by 100"
        )
    assert same, (
        f"{got:.2f} is not Shirt's spurious gap ranked by feature {feature} with k={int(k)}: "
        "score = sp.spuriosity(acts, labels, {SHIRT: [logo_feature]}), gap = "
        "sp.spurious_gap(score, correct, labels, k=K), then gap_points = gap[SHIRT]"
    )
    _ok(
        f"spurious gap of Shirt: {got:.0f} points (k={same[0]}): the shirts that look most like "
        "the logo are far more often right than those that look least like it"
    )


def check_mitigation(result) -> None:
    if _todo(result):
        return
    g = "group shirt_without_logo (%)"
    metrics = list(result.summary["metric"])
    assert g in metrics, (
        f"the result has no {g!r} row: pass groups=test.planted_group to mitigate() "
        f"(its metrics now: {metrics})"
    )
    before, after = result.value(g, "before"), result.value(g, "after")
    assert after - before >= 5, (
        f"shirts without the logo went {before:.1f}% → {after:.1f}%, less than 5 points: retrain "
        "the head against the logo feature Part 4's check accepted, {SHIRT: [logo_feature]}, "
        "with train=, val= and test= each (to_tensor(images), labels) of their split"
    )
    _ok(f"shirts without the logo: {before:.1f}% → {after:.1f}%")
