"""The workshop: its exercise and solutions notebooks stay the same notebook but for the answers,
and its learner checks pass every correct form of an answer and fail typical wrong ones (a number
typed in, the wrong quantile, a fraction for points…) with a hint. The checks run here on planted
tables, so a check that could not fail would fail this file."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest

from faultlens.analysis import spurious as sp
from faultlens.analysis.result import Analysis
from faultlens.data.demo import CLASS_NAMES, CUE_CLASS
from tests.helpers import analysis_from

WORKSHOP = Path(__file__).resolve().parents[1] / "notebooks" / "workshop"
EXERCISE = WORKSHOP / "faultlens-workshop.ipynb"
SOLUTIONS = WORKSHOP / "faultlens-workshop-solutions.ipynb"
ANSWER = re.compile(r"^(\w+) = \.\.\.$", re.MULTILINE)


@pytest.fixture
def checks():
    """A fresh copy of the module for each test: it remembers the logo feature it accepted."""
    spec = importlib.util.spec_from_file_location("workshop_checks", WORKSHOP / "checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the two notebooks -------------------------------------------------------------------------


def test_exercise_and_solutions_differ_only_in_the_answers() -> None:
    ex, sol = (nbformat.read(p, as_version=4).cells for p in (EXERCISE, SOLUTIONS))
    assert [c.cell_type for c in ex] == [c.cell_type for c in sol]
    answers = 0
    for i, (a, b) in enumerate(zip(ex, sol, strict=True)):
        if i == 0:  # the title cell says which notebook it is
            assert "solutions" in b.source and "solutions" not in a.source.splitlines()[0]
            continue
        names = ANSWER.findall(a.source) if a.cell_type == "code" else []
        if not names:
            assert a.source == b.source, f"cell {i} differs between the notebooks"
            continue
        answers += 1
        for name in names:  # the solution fills the same name, and the cell after checks it
            assert re.search(rf"^{name} = (?!\.\.\.$)", b.source, re.MULTILINE), (i, name)
            assert "..." not in b.source, f"solution cell {i} still has a ..."
            after = ex[i + 1].source
            assert after.startswith("check_") and name in after, f"no check after cell {i}"
        kept = [line for line in a.source.splitlines() if not ANSWER.match(line)]
        assert all(line in b.source.splitlines() for line in kept), f"cell {i}: set-up differs"
    assert answers == 7


# --- the checks on planted tables --------------------------------------------------------------


def _analysis(n: int = 1000, seed: int = 0) -> Analysis:
    """Scores planted so that the lowest are mostly errors; one class unscored (NaN)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    score = rng.normal(size=n)
    correct = rng.random(n) < 1 / (1 + np.exp(-2.5 * score - 1.5))
    score[labels == 3] = np.nan
    columns = {
        "failure_score": score,
        "planted_group": np.where(labels == CUE_CLASS, "shirt_without_logo", "none"),
    }
    return analysis_from(labels, np.where(correct, labels, (labels + 1) % 10), CLASS_NAMES,
                         columns=columns)  # fmt: skip


def test_every_check_waits_for_an_attempt(checks, capsys) -> None:
    a = _analysis()
    checks.check_worst_class(a, ...)
    checks.check_flagged(a, ...)
    checks.check_error_rate(a, [0], ...)
    checks.check_slice_group(a, None, ...)
    checks.check_logo_feature(None, None, ...)
    checks.check_gap(None, None, None, None, ..., 50)
    checks.check_mitigation(...)
    assert capsys.readouterr().out.count("not attempted yet") == 7


def test_worst_class(checks, capsys) -> None:
    a = _analysis()
    acc = a.group_accuracy("label_name")["accuracy"]
    checks.check_worst_class(a, acc.idxmin())
    assert "✅" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="lowest accuracy"):
        checks.check_worst_class(a, acc.idxmax())
    with pytest.raises(AssertionError, match="name"):
        checks.check_worst_class(a, int(np.argmin(acc.to_numpy())))


def test_flagged_takes_every_form_of_the_lowest_ten_percent(checks, capsys) -> None:
    a = _analysis()
    s = a.table["failure_score"].to_numpy()
    q = np.nanquantile(s, 0.1)
    n_scored = int(np.isfinite(s).sum())
    for answer in (
        np.flatnonzero(s < q),
        np.flatnonzero(s <= q),
        s < q,  # a boolean mask
        list(np.flatnonzero(s < q)),
        np.argsort(s)[: round(0.1 * n_scored)],  # NaN sorts last
        np.argsort(s)[: int(0.1 * len(s))],  # 10 % of all rows, not of the scored ones
    ):
        checks.check_flagged(a, answer)
        assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "hint"),
    [
        (lambda s: np.flatnonzero(s < np.nanquantile(s, 0.05)), "not flagged"),
        (lambda s: np.flatnonzero(s < np.nanquantile(s, 0.2)), "above the lowest 10 %"),
        (lambda s: np.flatnonzero(s > np.nanquantile(s, 0.9)), "above the lowest 10 %"),
        (lambda s: np.flatnonzero(~(s >= np.nanquantile(s, 0.1))), "no score"),  # NaN kept
        (lambda s: np.flatnonzero(s < np.nanquantile(s, 0.1))[:-1].astype(float), "row indices"),
        (lambda s: (s < np.nanquantile(s, 0.1))[:-1], "one entry per row"),
        (lambda s: np.array([], dtype=int), "empty"),
        (lambda s: np.repeat(np.flatnonzero(s < np.nanquantile(s, 0.1)), 2), "more than once"),
    ],
    ids=["5%", "20%", "highest", "nan-first", "floats", "short-mask", "empty", "repeated"],
)
def test_flagged_fails_wrong_answers_with_a_hint(checks, make, hint) -> None:
    a = _analysis()
    with pytest.raises(AssertionError, match=re.escape(hint)):
        checks.check_flagged(a, make(a.table["failure_score"].to_numpy()))


def test_error_rate(checks, capsys) -> None:
    a = _analysis()
    s = a.table["failure_score"].to_numpy()
    flagged = np.flatnonzero(s < np.nanquantile(s, 0.1))
    want = 1 - a.table["correct"].to_numpy()[flagged].mean()
    checks.check_error_rate(a, flagged, want)
    checks.check_error_rate(a, s < np.nanquantile(s, 0.1), want)  # a mask gives the same rows
    checks.check_error_rate(a, flagged, 100 * want)  # in %, said so
    out = capsys.readouterr().out
    assert out.count("✅") == 3 and "in %" in out
    with pytest.raises(AssertionError, match="share of flagged rows"):
        checks.check_error_rate(a, flagged, 1 - want)  # the accuracy, not the error rate
    with pytest.raises(AssertionError, match="share of flagged rows"):
        checks.check_error_rate(a, flagged, 1 - a.accuracy)  # the overall error rate


def test_slice_group(checks, capsys) -> None:
    a = _analysis()
    shirts = np.flatnonzero(a.table["label"].to_numpy() == CUE_CLASS)
    others = np.flatnonzero(a.table["label"].to_numpy() != CUE_CLASS)
    found = [SimpleNamespace(indices=np.concatenate([shirts[:30], others[:10]]))]
    checks.check_slice_group(a, found, "shirt_without_logo")
    assert "75%" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=re.escape("found[0].indices")):
        checks.check_slice_group(a, found, "none")


def test_logo_feature(checks, capsys) -> None:
    rng = np.random.default_rng(1)
    plain = rng.random((40, 64))
    logo = plain.copy()
    logo[:, 24] += 2.0  # the planted logo detector
    logo[0, 5] += 30.0  # one image with a huge rise elsewhere: the flat argmax lands there
    checks.check_logo_feature(plain, logo, 24)
    assert "feature 24" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="axis=0"):
        checks.check_logo_feature(plain, logo, int(np.argmax(logo - plain)))  # not averaged
    with pytest.raises(AssertionError, match="axis=0"):
        checks.check_logo_feature(plain, logo, int(np.argmax((logo - plain).mean(axis=0))) + 1)


def _planted_gap_inputs(n: int = 1000, feature: int = 7, seed: int = 2):
    """Shirts are right mostly when the planted feature is high; other classes at random."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    acts = rng.random((n, 16))
    correct = rng.random(n) < 0.7
    shirts = labels == CUE_CLASS
    noisy = acts[shirts, feature] + 0.3 * rng.normal(size=shirts.sum())
    correct[shirts] = noisy > np.median(noisy)
    return acts, labels, correct, feature


def _accept_logo(checks, feature: int, n_features: int = 16) -> None:
    """Part 4's check accepts ``feature`` (planted as the one that rises with the logo)."""
    plain = np.random.default_rng(3).random((40, n_features))
    logo = plain.copy()
    logo[:, feature] += 2.0
    checks.check_logo_feature(plain, logo, feature)


def _gap(acts, labels, correct, feature: int, k: int) -> float:
    return sp.spurious_gap(sp.spuriosity(acts, labels, {CUE_CLASS: [feature]}), correct, labels,
                           k=k)[CUE_CLASS]  # fmt: skip


@pytest.mark.parametrize("K", [25, 50])
def test_gap_is_graded_for_the_notebooks_k(checks, capsys, K: int) -> None:
    acts, labels, correct, f = _planted_gap_inputs()
    _accept_logo(checks, f)
    capsys.readouterr()
    for k in {K, 50}:  # the notebook's K, or spurious_gap's default
        checks.check_gap(acts, labels, correct, f, _gap(acts, labels, correct, f, k), K)
        assert f"(k={k})" in capsys.readouterr().out
        with pytest.raises(AssertionError, match="in points"):
            checks.check_gap(acts, labels, correct, f, _gap(acts, labels, correct, f, k) / 100, K)
    right = {_gap(acts, labels, correct, f, k) for k in {K, 50}}
    other = _gap(acts, labels, correct, f, 10)
    assert other not in right
    with pytest.raises(AssertionError, match="is not Shirt's spurious gap"):
        checks.check_gap(acts, labels, correct, f, other, K)  # another k than the one asked for


def test_gap_refuses_numbers_typed_in(checks) -> None:
    acts, labels, correct, f = _planted_gap_inputs()
    _accept_logo(checks, f)
    right = {_gap(acts, labels, correct, f, k) for k in (25, 50)}
    passed = []
    for typed in range(101):  # every whole number of points a learner might type
        try:
            checks.check_gap(acts, labels, correct, f, float(typed), 25)
            passed.append(typed)
        except AssertionError:
            pass
    # only the true gaps pass (typing the right value cannot be told from computing it)
    assert len(passed) <= 2 and all(min(abs(v - r) for r in right) < 1e-6 for v in passed)


def test_gap_needs_the_logo_feature_part_4_accepted(checks) -> None:
    acts, labels, correct, f = _planted_gap_inputs()
    gap = _gap(acts, labels, correct, f, 50)
    with pytest.raises(AssertionError, match="run Part 4's check"):
        checks.check_gap(acts, labels, correct, f, gap, 50)  # Part 4 not checked yet
    _accept_logo(checks, f)
    wrong = f + 1
    with pytest.raises(AssertionError, match=f"accepted feature {f}"):
        checks.check_gap(acts, labels, correct, wrong, _gap(acts, labels, correct, wrong, 50), 50)


def _result(rows: dict[str, tuple[float, float]]) -> SimpleNamespace:
    summary = pd.DataFrame([{"metric": m, "before": b, "after": a} for m, (b, a) in rows.items()])
    return SimpleNamespace(
        summary=summary,
        value=lambda metric, when="after": float(
            summary.loc[summary["metric"] == metric, when].iloc[0]
        ),
    )


def test_mitigation(checks, capsys) -> None:
    group = "group shirt_without_logo (%)"
    checks.check_mitigation(_result({"overall (%)": (73, 74), group: (0, 31)}))
    assert "0.0% → 31.0%" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=re.escape("groups=test.planted_group")):
        checks.check_mitigation(_result({"overall (%)": (73, 74)}))
    with pytest.raises(AssertionError, match="logo_feature"):
        checks.check_mitigation(_result({group: (10, 8)}))
    with pytest.raises(AssertionError, match="less than 5 points"):  # e.g. a feature not the logo
        checks.check_mitigation(_result({group: (0, 0.3)}))
