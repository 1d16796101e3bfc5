"""Checks for the faultlens workshop. Each ``check_*`` says "not attempted yet" while the answer is
still ``...`` and otherwise asserts, with a hint, that the answer is right."""

from __future__ import annotations

import numpy as np


def _todo(answer: object) -> bool:
    if answer is ...:
        print("⏳ not attempted yet: replace the ... and run the cell again")
        return True
    return False


def _ok(what: str) -> None:
    print(f"✅ {what}")


def check_worst_class(analysis, worst_class) -> None:
    if _todo(worst_class):
        return
    acc = analysis.group_accuracy("label_name")["accuracy"]
    assert worst_class == acc.idxmin(), (
        f"{worst_class!r} is not the class with the lowest accuracy: look at "
        "analysis.group_accuracy('label_name')"
    )
    _ok(f"{worst_class} is the worst class ({acc.min():.0%} accuracy)")


def check_flagged(analysis, flagged) -> None:
    if _todo(flagged):
        return
    flagged = np.asarray(flagged)
    assert flagged.ndim == 1 and len(flagged) > 0, "flagged should be a 1-D array of row indices"
    assert "failure_score" in analysis.table, "call analysis.failure_scores() first"
    scores = analysis.table["failure_score"].to_numpy()
    q = np.nanquantile(scores, 0.10)
    assert np.all(scores[flagged] < q + 1e-6), (
        "flagged should be the rows with the 10 % lowest scores"
    )
    assert abs(len(flagged) - 0.1 * np.isfinite(scores).sum()) <= 0.02 * len(scores) + 2, (
        "about 10 % of the scored rows should be flagged"
    )
    rate = 1 - analysis.table["correct"].to_numpy()[flagged].mean()
    overall = 1 - analysis.accuracy
    assert rate > 1.5 * overall, "hmm: the flagged rows should be much more often wrong"
    _ok(f"{len(flagged)} flagged images, error rate {rate:.0%} vs {overall:.0%} overall")


def check_error_rate(analysis, flagged, error_rate) -> None:
    if _todo(error_rate):
        return
    want = 1 - analysis.table["correct"].to_numpy()[np.asarray(flagged)].mean()
    assert abs(float(error_rate) - want) < 1e-9, (
        "the error rate is the share of flagged rows whose 'correct' is False"
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
        "count the planted_group values of the first slice's members (found[0].indices)"
    )
    _ok(f"the most erroneous slice is mostly {want!r}")


def check_logo_feature(nf_acts_plain, nf_acts_logo, logo_feature) -> None:
    if _todo(logo_feature):
        return
    diff = (nf_acts_logo - nf_acts_plain).mean(axis=0)
    want = int(np.argmax(diff))
    assert int(logo_feature) == want, (
        "the logo feature is the one whose activation rises most when the logo is stamped on"
    )
    _ok(f"feature {want} responds to the logo (mean rise {diff[want]:.2f})")


def check_gap(gap_points) -> None:
    if _todo(gap_points):
        return
    assert float(gap_points) > 20, (
        "the Shirt gap should be large: accuracy of the most spurious minus the least spurious"
    )
    _ok(f"spurious gap of Shirt: {float(gap_points):.0f} points")


def check_mitigation(result) -> None:
    if _todo(result):
        return
    g = "group shirt_without_logo (%)"
    before, after = result.value(g, "before"), result.value(g, "after")
    assert after > before, "the retrained head should help shirts without the logo"
    _ok(f"shirts without the logo: {before:.0f}% → {after:.0f}%")
