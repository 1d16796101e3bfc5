"""The static HTML report: one self-contained file, saved and discovered slices with their stats,
charts (PNG images with kaleido: no script; else offline plotly), every data string escaped; and in
a real browser: it renders from file:// with no network request, its images load and no script runs
(PNG charts), or the interactive charts draw from the inlined plotly.js alone.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faultlens.analysis.describe import Description
from faultlens.analysis.record_views import SavedSlices
from faultlens.analysis.result import Analysis
from faultlens.render import plots
from faultlens.report import write_report
from tests.helpers import analysis_from

EVIL = "<img src=x onerror=alert(1)>"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def make_analysis(folder: Path, names: list[str]) -> Analysis:
    """300 images in 3 classes; class 2's first 40 are predicted as class 0 (the planted slice)."""
    rng = np.random.default_rng(0)
    n = 300
    label = np.arange(n) % 3
    pred = label.copy()
    bad = np.flatnonzero(label == 2)[:40]
    pred[bad] = 0
    xy = rng.normal(0, 0.3, (n, 2)) + np.array([[-1, 0], [1, 0], [0, 1]])[label]
    xy[bad] = rng.normal(0, 0.1, (40, 2)) + np.array([0.0, -1.5])
    images = rng.integers(0, 255, (n, 12, 12, 3), dtype=np.uint8)
    conf = rng.uniform(0.4, 1.0, n).astype(np.float32)
    a = analysis_from(
        label, pred, names, xy=xy.astype(np.float32), confidence=conf,
        loss=(1 - conf) + (pred != label), probs=np.full((n, 3), 1 / 3, dtype=np.float32),
        images=images,
    )  # fmt: skip
    a.save(folder)
    return a


def _fake_kaleido(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand in for kaleido: each figure becomes a small PNG; returns the titles drawn."""
    drawn: list[str] = []

    def to_png(fig, **_kw) -> bytes:
        drawn.append(str(fig.layout.title.text))
        buf = io.BytesIO()
        Image.new("RGB", (40, 30), (59, 111, 182)).save(buf, format="PNG")
        return buf.getvalue()

    monkeypatch.setattr(plots, "has_kaleido", lambda: True)
    monkeypatch.setattr(plots, "to_png", to_png)
    return drawn


def gap_figure():
    table = pd.DataFrame({"class": [0, 2], "gap": [12.0, -3.0], "ci_low": [4.0, -9.0],
                          "ci_high": [20.0, 3.0], "k": [20, 20]})  # fmt: skip
    return plots.spurious_gap(table, class_names=["cat", "dog", EVIL], title=f"gap {EVIL}")


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Analysis]:
    names = ["cat", "dog", EVIL]
    a = make_analysis(tmp_path / "analysis", names)
    saved = SavedSlices(a)  # as the Explorer's slice panel saves them
    bad = np.flatnonzero(~a.table["correct"].to_numpy())
    saved.save("lower_cluster", bad)
    saved.save("first dogs", np.flatnonzero(a.table["label"].to_numpy() == 1)[:30])
    found = {f"found {EVIL}": bad[:20]}
    descs = {f"found {EVIL}": ([Description("tags (ImageNet classifier)", [(EVIL, 1.0)])],
                               [f"note {EVIL}"])}  # fmt: skip
    heat = np.linspace(0, 1, 144).reshape(12, 12)
    maps = {f"feature 3 {EVIL}": [(f"img {EVIL}", (np.stack([heat] * 3, -1) * 255).astype("u1"))]}
    drawn = _fake_kaleido(monkeypatch)
    path = write_report(
        a, tmp_path / "out" / "report.html", slices=found, descriptions=descs, feature_maps=maps,
        figures=[gap_figure()],
    )  # fmt: skip
    assert drawn == [
        "Accuracy per class",
        "Confusion matrix",
        f"gap {EVIL}".replace("<", "&lt;").replace(">", "&gt;"),
    ]
    return path, a


def test_report_is_one_self_contained_file(report: tuple[Path, Analysis]) -> None:
    path, _a = report
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]
    doc = path.read_text(encoding="utf-8")
    assert doc.startswith("<!DOCTYPE html>")
    assert "<script" not in doc.lower()
    # every src is a data URI: nothing to fetch
    srcs = re.findall(r"src='([^']*)'", doc) + re.findall(r'src="([^"]*)"', doc)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in doc and "https://" not in doc
    png = base64.b64decode(srcs[0].split(",", 1)[1])
    assert png.startswith(b"\x89PNG")


def test_report_has_saved_slices_and_their_stats(report: tuple[Path, Analysis]) -> None:
    path, _a = report
    doc = path.read_text(encoding="utf-8")
    assert "lower_cluster" in doc and "first dogs" in doc
    # lower_cluster: 40 images, all wrong → error rate 100.0 %; first dogs: 30 images, 0 errors
    i = doc.index("lower_cluster")
    block = doc[i : doc.index("</div>", i)]
    assert "<td class='num'>40</td><td class='num'>40</td><td class='num'>100.0%</td>" in block
    j = doc.index("first dogs")
    block = doc[j : doc.index("</div>", j)]
    assert "<td class='num'>30</td><td class='num'>0</td><td class='num'>0.0%</td>" in block
    # overall: 40 errors of 300
    assert "40 errors of 300" in doc and "86.7%" in doc


def test_report_escapes_every_data_string(report: tuple[Path, Analysis]) -> None:
    path, _a = report
    doc = path.read_text(encoding="utf-8")
    assert EVIL not in doc
    assert "onerror=alert" not in doc.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    assert (
        doc.count("&lt;img src=x onerror=alert(1)&gt;") >= 6
    )  # class, slice, tags, note, maps, chart
    charts = re.findall(r"<img class='chart' alt='([^']*)'", doc)
    assert charts == [
        "Accuracy per class",
        "Confusion matrix",
        "gap &lt;img src=x onerror=alert(1)&gt;",
    ]
    assert "tags (ImageNet classifier)" in doc


def test_report_without_slices_folder_or_descriptions(tmp_path: Path) -> None:
    a = make_analysis(tmp_path / "a", ["a", "b", "c"])
    a.folder = None
    path = write_report(a, tmp_path / "r.html", descriptions=False)
    doc = path.read_text(encoding="utf-8")
    assert "No slices saved" in doc and "Discovered slices" not in doc


def test_slice_rows_outside_the_table_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    a = make_analysis(tmp_path / "a", ["a", "b", "c"])
    n = len(a)
    out = tmp_path / "r.html"
    for slices, message in [
        ({"mine": [0, 1, n]}, rf"slice 'mine': row {n} is outside the table's rows 0\.\.{n - 1}"),
        ({"neg": [-1]}, r"slice 'neg': row -1 is outside"),
        ({"floats": [0.5, 1.5]}, r"slice 'floats': rows must be a 1-D list of table row numbers"),
    ]:
        with pytest.raises(ValueError, match=message):
            write_report(a, out, slices=slices, descriptions=False)
    assert not out.exists()


@pytest.mark.ui
def test_report_renders_in_chromium_without_network(report: tuple[Path, Analysis]) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    path, _a = report
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()

            def route(r: object) -> None:
                url = r.request.url  # type: ignore[attr-defined]
                if url.startswith(("file://", "data:")):
                    r.continue_()  # type: ignore[attr-defined]
                else:
                    requests.append(url)
                    r.abort()  # type: ignore[attr-defined]

            page.route("**/*", route)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            text = page.inner_text("body")
            assert "lower_cluster" in text and "first dogs" in text
            assert EVIL in text  # shown as text, not parsed as markup
            width = page.evaluate("document.getElementById('map').naturalWidth")
            assert width > 0
            n_img = page.evaluate("document.images.length")
            broken = page.evaluate("[...document.images].filter(i => !i.naturalWidth).length")
            assert n_img > 5 and broken == 0
            assert page.evaluate("document.querySelectorAll('script').length") == 0
        finally:
            browser.close()
    assert dialogs == []
    assert requests == []


# ----------------------------------------------------------------------------- charts


def test_chart_modes_and_their_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_analysis(tmp_path / "a", ["a", "b", "c"])
    out = tmp_path / "r.html"
    monkeypatch.setattr(plots, "has_kaleido", lambda: False)
    with pytest.raises(ValueError, match=r"charts='png' needs kaleido.*pip install kaleido"):
        write_report(a, out, charts="png", descriptions=False)
    with pytest.raises(ValueError, match=r"charts='svg': choose 'auto', 'png', 'html' or False"):
        write_report(a, out, charts="svg", descriptions=False)
    with pytest.raises(TypeError, match=r"figures\[0\] is a str, not a plotly figure"):
        write_report(a, out, charts="html", figures=["not a figure"], descriptions=False)
    assert not out.exists()
    none = write_report(a, out, charts=False, descriptions=False).read_text(encoding="utf-8")
    assert "<h2>Charts</h2>" not in none and "<script" not in none
    # auto: interactive without kaleido, images with it
    auto = write_report(a, out, descriptions=False).read_text(encoding="utf-8")
    assert "script-src 'unsafe-inline'" in auto and auto.count("Plotly.newPlot(") == 2
    _fake_kaleido(monkeypatch)
    auto = write_report(a, out, descriptions=False).read_text(encoding="utf-8")
    assert "<script" not in auto and "script-src" not in auto
    assert len(re.findall(r"<img class='chart'", auto)) == 2


@pytest.fixture
def html_report(tmp_path: Path) -> Path:
    a = make_analysis(tmp_path / "analysis", ["cat", "dog", EVIL])
    return write_report(
        a, tmp_path / "charts.html", charts="html", figures=[gap_figure()], descriptions=False
    )


def test_interactive_charts_inline_plotly_once_and_escape_names(html_report: Path) -> None:
    doc = html_report.read_text(encoding="utf-8")
    assert doc.count("Plotly.newPlot(") == 3  # accuracy, confusion matrix, the gap
    assert doc.count("* plotly.js v") == 1  # the library inlined once
    assert doc.count("<script") == 5  # plotly's config, plotly.js, one per figure
    csp = re.search(r"Content-Security-Policy' content=\"([^\"]*)\"", doc).group(1)
    assert (
        csp
        == "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    )
    assert EVIL not in doc and "</script><img" not in doc
    assert "<script src=" not in doc  # nothing fetched


@pytest.mark.ui
def test_interactive_charts_draw_offline_in_chromium(html_report: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    requests: list[str] = []
    dialogs: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()

            def route(r: object) -> None:
                url = r.request.url  # type: ignore[attr-defined]
                if url.startswith(("file://", "data:")):
                    r.continue_()  # type: ignore[attr-defined]
                else:
                    requests.append(url)
                    r.abort()  # type: ignore[attr-defined]

            page.route("**/*", route)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(html_report.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 3")
            ticks = page.evaluate(
                "[...document.querySelectorAll('.xtick text')].map(t => t.textContent)"
            )
            n_bars = page.evaluate("document.querySelectorAll('.js-plotly-plot .bars path').length")
        finally:
            browser.close()
    assert EVIL in ticks  # the class name shown as text
    assert n_bars >= 5  # 3 accuracy bars + 2 gap bars
    assert dialogs == [] and requests == [] and errors == [], (dialogs, requests, errors)
