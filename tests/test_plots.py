"""Static charts (faultlens.render.plots): each figure holds exactly the numbers of the analysis it
draws, user strings are escaped, and the offline HTML carries plotly.js once and nothing remote."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from faultlens.analysis.describe import concept_test
from faultlens.analysis.spurious import SpuriousWarning
from faultlens.analysis.spurious import spurious_gap as gap_of
from faultlens.render import plots

EVIL = "<img src=x onerror=alert(1)>"


def _table(seed: int = 0) -> pd.DataFrame:
    """600 rows, 3 classes; class 2 is predicted as 0 a third of the time (planted)."""
    rng = np.random.default_rng(seed)
    label = np.arange(600) % 3
    pred = label.copy()
    pred[(label == 2) & (rng.random(600) < 1 / 3)] = 0
    pred[(label == 1) & (rng.random(600) < 0.05)] = 2
    return pd.DataFrame({"label": label, "pred": pred, "correct": label == pred})


def test_class_accuracy_bars_hold_each_class_accuracy_and_its_interval() -> None:
    t = _table()
    fig = plots.class_accuracy(t, class_names=["cat", "dog", EVIL], rows=np.arange(0, 600, 2))
    all_bars, sel_bars = fig.data
    want = t.groupby("label")["correct"].mean().to_numpy() * 100
    assert np.allclose(all_bars.y, want)
    assert [c[0] for c in all_bars.customdata] == [0, 1, 2]
    lo = np.asarray(all_bars.y) - np.asarray(all_bars.error_y.arrayminus)
    hi = np.asarray(all_bars.y) + np.asarray(all_bars.error_y.array)
    assert ((lo <= want) & (want <= hi) & (lo >= 0) & (hi <= 100)).all()
    sel = t.iloc[::2]
    assert np.allclose(sel_bars.y, sel.groupby("label")["correct"].mean().to_numpy() * 100)
    assert sel_bars.name == "selection (300)"
    assert EVIL not in all_bars.x and "&lt;img src=x onerror=alert(1)&gt;" in all_bars.x


def test_confusion_matrix_counts_every_pair() -> None:
    t = _table(1)
    fig = plots.confusion_matrix(t, class_names=["a", "b", "c"])
    (hm,) = fig.data
    want = pd.crosstab(t["label"], t["pred"]).reindex(index=[0, 1, 2], columns=[0, 1, 2])
    counts = np.asarray(hm.customdata)[..., 2]
    assert (counts == want.fillna(0).to_numpy()).all()
    assert np.allclose(np.asarray(hm.z).sum(axis=1), 1.0)
    assert (np.asarray(hm.customdata)[2, 0, :2] == [2, 0]).all()  # cell (label 2, pred 0)
    rows = np.flatnonzero(t["label"].to_numpy() == 2)
    sub = plots.confusion_matrix(t, rows=rows).data[0]
    assert np.asarray(sub.customdata)[..., 2].sum() == len(rows)
    assert np.asarray(sub.customdata)[:2, :, 2].sum() == 0


def test_concept_curve_draws_concept_test_bins() -> None:
    rng = np.random.default_rng(2)
    sim = rng.uniform(0, 1, 2000)
    errors = rng.random(2000) < sim * 0.6  # error rate rises with similarity (planted)
    res = concept_test(sim, errors, bins=8)
    fig = plots.concept_curve(res, concept="a <b>logo</b>")
    (tr,) = fig.data
    assert np.allclose(tr.y, 100 * res["table"]["error_rate"])
    assert np.all(np.diff(tr.x) > 0)
    assert "Spearman" in fig.layout.title.text and "<b>" not in fig.layout.title.text
    assert np.allclose(
        np.asarray(tr.y) + np.asarray(tr.error_y.array), 100 * res["table"]["ci_high"]
    )


def test_spurious_gap_bars_and_their_intervals() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 200)
    score = rng.normal(size=400)
    correct = np.where(labels == 0, score > -0.5, rng.random(400) < 0.8)  # class 0 leans on it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpuriousWarning)
        gap = gap_of(score, correct, labels, k=50)
    fig = plots.spurious_gap(gap, class_names=["shirt", EVIL])
    (bars,) = fig.data
    assert np.allclose(bars.y, gap.table["gap"])
    assert bars.marker.color[0] == plots.ORANGE  # its interval is above zero
    assert np.allclose(
        np.asarray(bars.y) - np.asarray(bars.error_y.arrayminus), gap.table["ci_low"]
    )
    assert EVIL not in bars.x


def test_mitigation_before_and_after() -> None:
    summary = pd.DataFrame(
        {
            "metric": ["overall accuracy (%)", "group a (%)", "spurious gap class 6 (points)"],
            "before": [80.0, 40.0, 30.0],
            "after": [81.0, 60.0, 5.0],
        }
    )
    fig = plots.mitigation(summary)
    assert [tr.name for tr in fig.data] == ["before", "after", "before", "after"]
    assert list(fig.data[1].x) == [81.0, 60.0] and list(fig.data[3].x) == [5.0]
    assert list(fig.data[2].y) == ["spurious gap class 6"]


def test_offline_html_has_plotly_js_once_and_no_remote_script(tmp_path) -> None:
    t = _table()
    figs = [plots.class_accuracy(t), plots.confusion_matrix(t), plots.class_accuracy(t)]
    page = plots.figures_html(figs, tmp_path / "c.html")
    assert (tmp_path / "c.html").read_text(encoding="utf-8") == page
    assert len(re.findall(r'Plotly\.newPlot\(\s*"[0-9a-f-]{36}"', page)) == 3  # one per figure
    assert len(re.findall(r"plotly\.js v\d", page)) == 1  # the library's banner, once
    assert not re.search(r"<script[^>]+src=", page)
    frag = plots.figures_html(figs[:1], full_html=False, include_plotlyjs=False)
    assert "<html" not in frag and len(frag) < 50_000


def test_png_only_with_kaleido(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "has_kaleido", lambda: False)
    assert plots.to_png(plots.class_accuracy(_table())) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: plots.class_accuracy(pd.DataFrame({"x": [1]})), "no column"),
        (lambda: plots.class_accuracy(_table(), rows=[700]), "rows must be in 0..599"),
        (lambda: plots.concept_curve({"table": pd.DataFrame()}), "concept_test's result"),
        (lambda: plots.spurious_gap(pd.DataFrame()), "SpuriousGap"),
        (lambda: plots.mitigation(pd.DataFrame()), "MitigationResult"),
        (lambda: plots.class_accuracy(_table(), class_names=["a"]), "1 class names for 3"),
    ],
)  # fmt: skip
def test_bad_inputs_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
