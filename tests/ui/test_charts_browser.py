"""Real browser: a click on a chart becomes the Explorer's selection (JupyterLab + Chromium).

Cells of the confusion matrix and bars of the per-class accuracy chart (faultlens.ui.plots) are
clicked, including clicks followed at once by a move onto another cell (the hover that would
replace a click in plotly's FigureWidget); every click must reach Python as exactly the rows of
that cell or class.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.ui.test_browser import (
    ARTIFACTS,
    SETUP,
    TOKEN,
    _accept_dialogs,
    _lab_page,
    _notebook,
    _read_log,
)
from tests.ui.test_browser import lab as lab

pytestmark = pytest.mark.ui

CHARTS = r"""
from faultlens.ui.plots import class_accuracy_chart, confusion_chart
import ipywidgets as w
import faultlens
ex = faultlens.explore(analysis, height=260)
def log_selection(sel):
    with open("selections.jsonl", "a") as fh:
        fh.write(json.dumps({"rows": sel.tolist()}) + "\n")
ex.observe_selection(log_selection)
with open("truth.json", "w") as fh:
    json.dump({"label": label.tolist(), "pred": pred.tolist()}, fh)
cm = confusion_chart(ex)
acc = class_accuracy_chart(ex)
w.VBox([w.HBox([cm, acc]), ex])
"""

# the page position of a heatmap cell / a bar, from plotly's own axes
CELL_XY = """([chart, i, j]) => {
  const gd = document.querySelectorAll('.faultlens-chart .js-plotly-plot')[chart];
  const L = gd._fullLayout, box = gd.getBoundingClientRect();
  return [box.left + L._size.l + L.xaxis.l2p(j) + L.xaxis._offset - L._size.l,
          box.top + L.yaxis.l2p(i) + L.yaxis._offset];
}"""
BAR_XY = """([chart, c]) => {
  const gd = document.querySelectorAll('.faultlens-chart .js-plotly-plot')[chart];
  const L = gd._fullLayout, box = gd.getBoundingClientRect();
  const y = gd._fullData[0].y[c];
  return [box.left + L.xaxis._offset + L.xaxis.l2p(c) - 0.15 * L.xaxis._m,
          box.top + L.yaxis._offset + L.yaxis.l2p(y / 2)];
}"""


def _open_and_run(page, url: str, nb: str) -> None:
    """Open the notebook and Run All until the explorer map and both charts have rendered; on a
    loaded machine the first Run All can land before the kernel is ready, so it is repeated while
    no cell has started."""
    page.goto(f"{url}/lab/workspaces/{uuid.uuid4().hex[:10]}/tree/{nb}?token={TOKEN}&reset")
    page.add_style_tag(content=".Toastify { display: none !important; }")
    idle = (
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"
    )
    deadline = time.time() + 120
    while time.time() < deadline and not page.locator(idle).count():
        _accept_dialogs(page)
        page.wait_for_timeout(300)
    ready = (
        "() => { const c = document.querySelector('canvas.fl-map');"
        " return !!c && Number(c.dataset.rendered || 0) > 0 &&"
        " document.querySelectorAll('.faultlens-chart .js-plotly-plot .nsewdrag').length >= 2; }"
    )
    started = ".jp-InputPrompt:not(:empty)"
    deadline = time.time() + 240
    last_run = 0.0
    while time.time() < deadline:
        _accept_dialogs(page)
        if page.evaluate(ready):
            return
        prompts = page.locator(started).all_inner_texts()
        nothing_started = all(p.strip() in ("", "[ ]:") for p in prompts)
        if nothing_started and time.time() - last_run > 20:
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
            last_run = time.time()
        page.wait_for_timeout(500)
    msg = "the explorer map and the two charts never rendered"
    raise AssertionError(msg)


def _wait(log: Path, n: int, what: str) -> list[dict]:
    deadline = time.time() + 60
    entries = _read_log(log)
    while len(entries) < n and time.time() < deadline:
        time.sleep(0.1)
        entries = _read_log(log)
    assert len(entries) >= n, f"{what}: {len(entries)} selections reached Python, expected {n}"
    return entries


def test_chart_clicks_become_explorer_selections(lab: tuple[str, Path]) -> None:
    url, root = lab
    (root / "charts.ipynb").write_text(json.dumps(_notebook([SETUP + CHARTS])))  # one cell
    log = root / "selections.jsonl"
    with _lab_page("charts", width=1500, height=1500) as page:
        _open_and_run(page, url, "charts.ipynb")
        page.wait_for_timeout(1000)
        truth = json.loads((root / "truth.json").read_text())
        label, pred = truth["label"], truth["pred"]

        def cell_rows(i: int, j: int) -> list[int]:
            return [r for r in range(len(label)) if label[r] == i and pred[r] == j]

        # 1. careful clicks: pause on the cell, click, stay
        cells = [(2, 3), (0, 0), (3, 0), (1, 2)]
        for n, (i, j) in enumerate(cells, start=1):
            x, y = page.evaluate(CELL_XY, [0, i, j])
            page.mouse.move(x, y)
            page.wait_for_timeout(400)
            page.mouse.click(x, y)
            entries = _wait(log, n, f"click on cell ({i}, {j})")
            assert entries[-1]["rows"] == cell_rows(i, j), (i, j)

        # 2. hurried clicks: arrive, click, and move on to another cell at once (hover and unhover
        # events follow each click immediately); every click must still arrive, in order
        before = len(_read_log(log))
        hurried = [(0, 1), (1, 1), (2, 2), (3, 3), (2, 3), (1, 0)]
        for i, j in hurried:
            x, y = page.evaluate(CELL_XY, [0, i, j])
            page.mouse.move(x, y, steps=2)
            # plotly.js computes hover (which a click reads) at most every 50 ms: a click sooner
            # than that after arriving is plotly's own business, not the channel's
            page.wait_for_timeout(120)
            page.mouse.click(x, y)
            nx, ny = page.evaluate(CELL_XY, [0, (i + 2) % 4, (j + 1) % 4])
            page.mouse.move(nx, ny, steps=3)
            page.wait_for_timeout(600)
        entries = _wait(log, before + len(hurried), "hurried clicks")[before:]
        assert [e["rows"] for e in entries] == [cell_rows(i, j) for i, j in hurried]

        # 3. a bar of the accuracy chart selects its class
        before = len(_read_log(log))
        x, y = page.evaluate(BAR_XY, [1, 2])
        page.mouse.move(x, y)
        page.wait_for_timeout(400)
        page.mouse.click(x, y)
        entries = _wait(log, before + 1, "click on the class-2 bar")
        assert entries[-1]["rows"] == [r for r in range(len(label)) if label[r] == 2]
        page.wait_for_timeout(800)
        # the accuracy chart redrew with the selection beside all images
        names = page.evaluate(
            "() => document.querySelectorAll('.faultlens-chart .js-plotly-plot')[1]"
            "._fullData.map(t => t.name)"
        )
        assert names == ["all images", "selection (500)"]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "charts-linked.png"))  # README material
