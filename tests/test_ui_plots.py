"""Charts linked to an Explorer (faultlens.ui.plots), without a browser: a click, as the browser
writes it into the chart's `clicked` trait, selects exactly the rows it stands for; a selection
redraws the accuracy chart. The real-browser check is tests/ui/test_charts_browser.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faultlens.ui.explorer import Explorer
from faultlens.ui.plots import (
    PlotlyChart,
    class_accuracy_chart,
    concept_chart,
    confusion_chart,
    linked_charts,
    spurious_chart,
)
from tests.test_report import make_analysis


@pytest.fixture
def explorer(tmp_path: Path) -> Explorer:
    return Explorer(make_analysis(tmp_path / "a", ["cat", "dog", "bird"]))


def _click(chart: PlotlyChart, **point) -> None:
    seq = (chart.clicked or {}).get("seq", 0) + 1
    chart.clicked = {"seq": seq, "points": [point]}


def test_a_confusion_cell_click_selects_its_images(explorer: Explorer) -> None:
    t = explorer.analysis.table
    chart = confusion_chart(explorer)
    cell = chart.figure["data"][0]["customdata"][2][0]  # label 2 predicted as 0: the planted 40
    assert cell[:2] == [2, 0] and cell[2] == 40
    _click(chart, curve=0, index=[2, 0], customdata=cell)
    want = np.flatnonzero((t["label"] == 2) & (t["pred"] == 0))
    assert explorer.selection.tolist() == want.tolist() and len(want) == 40
    # the same cell twice is still a click (the seq changes)
    explorer.clear_selection()
    _click(chart, curve=0, index=[2, 0], customdata=cell)
    assert len(explorer.selection) == 40


def test_a_class_bar_click_selects_the_class_and_the_chart_follows_the_selection(
    explorer: Explorer,
) -> None:
    t = explorer.analysis.table
    chart = class_accuracy_chart(explorer)
    assert [tr["name"] for tr in chart.figure["data"]] == ["all images"]
    bar = chart.figure["data"][0]["customdata"][1]
    _click(chart, curve=0, index=1, customdata=bar)
    assert explorer.selection.tolist() == np.flatnonzero(t["label"] == 1).tolist()
    assert [tr["name"] for tr in chart.figure["data"]] == ["all images", "selection (100)"]
    explorer.select(np.arange(10))
    assert chart.figure["data"][1]["name"] == "selection (10)"
    explorer.clear_selection()
    assert [tr["name"] for tr in chart.figure["data"]] == ["all images"]


def test_concept_and_spurious_charts_select_a_bin_and_a_top_k(explorer: Explorer) -> None:
    t = explorer.analysis.table
    rng = np.random.default_rng(0)
    sim = rng.uniform(0, 1, len(t))
    chart = concept_chart(explorer, sim, concept="stripes", bins=5)
    _click(chart, curve=0, index=4)
    edges = np.quantile(sim, np.linspace(0, 1, 6))
    assert explorer.selection.tolist() == np.flatnonzero(sim >= edges[4]).tolist()
    _click(chart, curve=0, index=0)
    assert explorer.selection.tolist() == np.flatnonzero(sim < edges[1]).tolist()

    score = rng.normal(size=len(t))
    sp = spurious_chart(explorer, score, k=10)
    bar = sp.figure["data"][0]["customdata"][2]
    _click(sp, curve=0, index=2, customdata=bar)
    members = np.flatnonzero(t["label"] == 2)
    top = np.sort(members[np.argsort(score[members])][-10:])
    assert explorer.selection.tolist() == top.tolist()


def test_click_errors_are_kept_and_a_box_holds_both(explorer: Explorer) -> None:
    chart = PlotlyChart({"data": [], "layout": {}})

    def boom(points):
        raise RuntimeError("bad callback")

    chart.on_click(boom)
    _click(chart, curve=0, index=0)
    assert [str(e) for e in chart.click_errors] == ["bad callback"]
    box = linked_charts(explorer)
    assert [type(c).__name__ for c in box.children] == ["PlotlyChart", "PlotlyChart"]
    assert "Plotly" in chart._plotly_js[:5000] or len(chart._plotly_js) > 1_000_000


def test_chart_inputs_are_checked(explorer: Explorer) -> None:
    with pytest.raises(ValueError, match="one value per row"):
        concept_chart(explorer, np.ones(3))
    with pytest.raises(ValueError, match="one value per row"):
        spurious_chart(explorer, np.ones(3))
    with pytest.raises(TypeError, match="plotly Figure"):
        PlotlyChart("not a figure")


def test_clicks_that_waited_behind_a_busy_kernel_all_arrive_once_in_order(
    explorer: Explorer,
) -> None:
    """The browser sends the last clicks with each click: when two wait behind a busy kernel, the
    pending message is replaced by the newer one, and the log still holds both."""
    chart = PlotlyChart({"data": [], "layout": {}})
    heard: list[int] = []
    chart.on_click(lambda points: heard.append(points[0]["index"]))

    def state(seq: int) -> dict:
        log = [{"seq": s, "points": [{"index": s * 10}]} for s in range(1, seq + 1)]
        return {"seq": seq, "points": log[-1]["points"], "log": log[-32:]}

    chart.clicked = state(1)
    chart.clicked = state(4)  # clicks 2 and 3 were replaced before they were sent
    chart.clicked = state(5)
    assert heard == [10, 20, 30, 40, 50]
