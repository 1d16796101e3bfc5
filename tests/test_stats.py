"""Group statistics: one result shape for a selection, a filter and a discovered slice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faultlens.analysis.slices import slice_stats
from faultlens.analysis.stats import group_stats, selection_stats, wilson_interval

KEYS = ["n", "errors", "error_rate", "ci_low", "ci_high", "lift", "class_mix"]


def _planted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 rows in 4 classes (i % 4); rows 0..39 of class 2 (every 4th from row 2) are wrong,
    and 10 rows of class 0; 50 errors in all."""
    labels = np.arange(200) % 4
    correct = np.ones(200, dtype=bool)
    correct[np.flatnonzero(labels == 2)[:40]] = False
    correct[np.flatnonzero(labels == 0)[:10]] = False
    return labels, correct, np.flatnonzero(labels == 2)[:40]


def test_group_stats_of_a_planted_group() -> None:
    labels, correct, bad = _planted()
    rows = np.concatenate([bad, np.flatnonzero(labels == 1)[:10]])  # 40 wrong + 10 right
    s = group_stats(correct, rows, labels=labels, class_names=["a", "b", "c", "d"])
    assert list(s) == KEYS
    assert (s["n"], s["errors"]) == (50, 40)
    assert s["error_rate"] == pytest.approx(0.8)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx(wilson_interval(40, 50))
    assert s["lift"] == pytest.approx(0.8 / (50 / 200))
    assert s["class_mix"] == [
        {"label": 2, "name": "c", "n": 40, "share": 0.8, "baseline_share": 0.25},
        {"label": 1, "name": "b", "n": 10, "share": 0.2, "baseline_share": 0.25},
    ]
    json.dumps(s, allow_nan=False)


def test_group_stats_against_a_baseline_and_without_labels() -> None:
    labels, correct, bad = _planted()
    base = np.flatnonzero(labels >= 1)  # 150 rows, 40 errors
    s = group_stats(correct, bad[:20], baseline=base, labels=labels)
    assert s["lift"] == pytest.approx(1.0 / (40 / 150))
    assert s["class_mix"][0]["name"] == "2"  # names default to the label
    assert s["class_mix"][0]["baseline_share"] == pytest.approx(50 / 150)
    assert group_stats(correct, bad)["class_mix"] == []


def test_missing_numbers_are_none() -> None:
    labels, correct, _bad = _planted()
    empty = group_stats(correct, np.zeros(0, dtype=int), labels=labels)
    assert (empty["n"], empty["errors"], empty["class_mix"]) == (0, 0, [])
    assert empty["error_rate"] is empty["ci_low"] is empty["ci_high"] is empty["lift"] is None
    no_errors = np.ones(200, dtype=bool)
    assert group_stats(no_errors, np.arange(5))["lift"] is None  # the baseline has no errors
    json.dumps(empty, allow_nan=False)


def test_a_slice_and_a_selection_have_the_same_shape() -> None:
    labels, correct, bad = _planted()
    names = ["a", "b", "c", "d"]
    sl = slice_stats(bad, correct, labels, names)
    sel = selection_stats(
        bad, np.arange(200), labels=labels, preds=labels, correct=correct, class_names=names
    )
    assert sl == sel["selection"] == group_stats(correct, bad, labels=labels, class_names=names)
    assert sel["lift"] == sl["lift"] and sel["class_mix"] == sl["class_mix"]
    assert list(sel["baseline"]) == KEYS and sel["baseline"]["errors"] == 50
