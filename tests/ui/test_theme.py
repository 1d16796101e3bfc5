"""Both widgets' layout and colours in JupyterLab's light and dark themes, in Debian's Chromium.

Fast part (no kernel): the committed bundles render against a mock anywidget model wired to real
Python widgets (``pagecheck.MockHost``), in pages carrying JupyterLab's own theme stylesheets:

- each widget's element boxes are the same with the other widget on the page as alone (anywidget
  loads stylesheets page-wide: an unscoped class in one restyles the other);
- every text on screen meets WCAG AA contrast (4.5:1) against the background under it.

JupyterLab part: a notebook with both widgets, run in a real JupyterLab; the theme is switched to
JupyterLab Dark and back through the Settings menu; contrast, layout (with the other widget's
stylesheet switched off as the reference) and the map's canvas background follow each theme.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.pagecheck import (
    BOXES_JS,
    CONTRAST_JS,
    ORIGIN,
    TOGGLE_SHEET_JS,
    MockHost,
    failing,
    switch_theme,
    theme_css,
)
from tests.ui.test_browser import (  # noqa: F401 - lab is the JupyterLab server fixture
    ARTIFACTS,
    CHROMIUM,
    FLAGS,
    _dump,
    _new_page,
    _notebook,
    _open_and_run,
    lab,
)

pytestmark = pytest.mark.ui

EXPLORER_BOXES = [
    ".faultlens-explorer", ".fl-toolbar", ".fl-selcount", ".fl-mapwrap", ".fl-side", ".fl-stats",
    ".fl-inspector", ".fl-slices", ".fl-insights", ".fl-discovered", ".fl-describe-panel", ".fl-grid",
    ".fl-grid-head", ".fl-tiles", ".fl-tile", ".fl-thumb", ".fl-status",
]  # fmt: skip
FEATURE_BOXES = [
    ".fl-features", ".fl-head", ".fl-body", ".fl-featlist", ".fl-feat", ".fl-main", ".fl-mark",
    ".fl-groups", ".fl-group", ".fl-tiles", ".fl-tile", ".fl-img", ".fl-strip", ".fl-status",
]  # fmt: skip

# a small analysis: four classes, one cluster of errors, 16x16 images, a tiny CNN for the features
BUILD = r"""
import numpy as np, pandas as pd, torch
from torch import nn
import faultlens
from faultlens.data.sources import ArraySource

rng = np.random.default_rng(0)
n, names = 400, ["zero", "one", "two", "three"]
label = np.arange(n) % 4
emb = (rng.normal(0, 1, (4, 16)) * 3)[label] + rng.normal(0, 1, (n, 16))
cluster = np.flatnonzero(label == 2)[:60]
emb[cluster] = rng.normal(0, 1, 16) * 6 + rng.normal(0, 0.2, (60, 16))
pred = label.copy()
pred[cluster[:50]] = 1
probs = np.full((n, 4), 0.05, dtype=np.float32)
probs[np.arange(n), pred] = 0.85
na = np.array(names, dtype=object)
table = pd.DataFrame({
    "id": [f"img-{i:04d}" for i in range(n)], "path": [None] * n, "label": label,
    "label_name": na[label], "pred": pred, "pred_name": na[pred], "confidence": probs.max(1),
    "loss": -np.log(probs[np.arange(n), label]), "correct": pred == label,
    "x": emb[:, 0].astype(np.float32), "y": emb[:, 1].astype(np.float32), "source_index": np.arange(n),
})
base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], dtype=np.float32)
images = np.clip(base[label][:, None, None, :] + rng.normal(0, 25, (n, 16, 16, 3)), 0, 255).astype(np.uint8)
analysis = faultlens.Analysis(table, class_names=names, probs=probs, embeddings=emb.astype(np.float32),
                              source=ArraySource(images, label, class_names=names))

class FakeCaptioner:
    name = "fake"
    def caption(self, images):
        return ["a small square" for _ in images]

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)
    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

def transform(img):
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)

ex = faultlens.Explorer(analysis, captioner=FakeCaptioner(), height=320)
ex.find_slices(3, n_components=5, describe=False)
ex.select_discovered(0)
ex.describe_selection()
ex.save_slice("kept", np.arange(12))
fb = faultlens.FeatureBrowser(analysis, Net().eval(), "conv", transform, k=4, gap_k=20)
fb.feature = int(fb.features[0]["feature"])
"""


@pytest.fixture(scope="module")
def widgets() -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(BUILD, scope)  # noqa: S102 - the same code runs as a notebook cell in the JupyterLab test
    return {"ex": scope["ex"], "fb": scope["fb"]}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


READY = (
    "() => { const ex = document.querySelector('.faultlens-explorer'),"
    " fb = document.querySelector('.fl-features');"
    " const exOk = !ex || ([...ex.querySelectorAll('.fl-thumb')].length > 0"
    "  && [...ex.querySelectorAll('.fl-thumb, .fl-mini')].every(i => i.complete && i.naturalWidth > 0)"
    "  && Number(ex.querySelector('canvas.fl-map').dataset.rendered || 0) > 0);"
    " const fbOk = !fb || ([...fb.querySelectorAll('.fl-group img')].length >= 16"
    "  && [...fb.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0));"
    " return exOk && fbOk; }"
)


def _render(browser: Any, widgets: dict, theme: str, mounts: list[tuple[str, str]]) -> dict:
    """Boxes and contrast records of a page with ``mounts`` in ``theme``."""
    page = browser.new_page(viewport={"width": 1300, "height": 1600})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        host = MockHost(page, {k: widgets[k] for k, _ in mounts})
        host.open(theme, mounts)
        page.wait_for_function(READY, timeout=30000)
        page.wait_for_timeout(200)
        out = {
            "ex": page.evaluate(BOXES_JS, [".faultlens-explorer", EXPLORER_BOXES]),
            "fb": page.evaluate(BOXES_JS, [".fl-features", FEATURE_BOXES]),
            "contrast": page.evaluate(CONTRAST_JS, ".faultlens-explorer, .fl-features"),
            "map_bg": page.evaluate(MAP_CORNER),
        }
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(
            path=str(ARTIFACTS / f"mock-{theme}-{'-'.join(k for k, _ in mounts)}.png"),
            full_page=True,
        )
    finally:
        page.close()
    assert errors == [], errors
    return out


# the colour of the map's top-left device pixel (no point is drawn there: the view is fitted with a margin)
MAP_CORNER = (
    "() => { const c = document.querySelector('canvas.fl-map');"
    " return c ? [...c.getContext('2d').getImageData(1, 1, 1, 1).data.slice(0, 3)] : null; }"
)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_both_widgets_on_one_page_lay_out_as_each_alone(browser, widgets, theme: str) -> None:
    alone_ex = _render(browser, widgets, theme, [("ex", "explorer.js")])
    alone_fb = _render(browser, widgets, theme, [("fb", "features.js")])
    both = _render(browser, widgets, theme, [("ex", "explorer.js"), ("fb", "features.js")])
    assert None not in alone_ex["ex"].values(), alone_ex["ex"]
    assert None not in alone_fb["fb"].values(), alone_fb["fb"]
    differ = {
        s: (alone_ex["ex"][s], both["ex"][s])
        for s in EXPLORER_BOXES
        if alone_ex["ex"][s] != both["ex"][s]
    }
    differ |= {
        s: (alone_fb["fb"][s], both["fb"][s])
        for s in FEATURE_BOXES
        if alone_fb["fb"][s] != both["fb"][s]
    }
    assert differ == {}, (
        f"{theme}: element boxes change with the other widget on the page: {differ}"
    )
    # the FeatureBrowser stacks its mark bar, groups and strip in one column
    fb = both["fb"]
    assert fb[".fl-mark"][1] < fb[".fl-groups"][1] < fb[".fl-strip"][1], fb


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_text_meets_wcag_aa_contrast(browser, widgets, theme: str) -> None:
    got = _render(browser, widgets, theme, [("ex", "explorer.js"), ("fb", "features.js")])
    records = got["contrast"]
    roots = {r["root"].split()[0] for r in records}
    assert roots == {"faultlens-explorer", "fl-features"}, roots
    assert len(records) > 100, len(records)  # the walk found the widgets' text
    # the pairs that went wrong before: source chips, discovered-slice accents, ✗ captions, notes
    for cls in (
        "fl-source",
        "fl-badge",
        "fl-cap",
        "fl-capsub",
        "fl-disc-name",
        "fl-ci",
        "fl-note",
        "fl-feat",
    ):
        assert any(cls in r["cls"].split() for r in records), f"no {cls} text measured"
    assert sum(r["text"].endswith("border]") for r in records) >= 7  # ✓/✗ frames, slice panel
    low = failing(records)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"contrast-{theme}.json").write_text(json.dumps(records, indent=1))
    assert low == [], f"{theme}: {len(low)} texts under WCAG AA: {low[:8]}"
    bg = got["map_bg"]
    expected = [255, 255, 255] if theme == "light" else [17, 17, 17]  # --jp-layout-color0
    assert bg == expected, (theme, bg)


# the chart's paper colour and every text outside the plotted data (titles, ticks, legend, colour
# bar; the heatmap's cell labels sit on their cells, in the colour plotly picks against each):
# [paper rgb, [[text, fill rgb], ...]]
CHART_COLOURS = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).slice(0, 3).map(Number);
  const out = [];
  for (const root of document.querySelectorAll('.faultlens-chart')) {
    const svg = root.querySelector('svg.main-svg');
    if (!svg) return null;
    const texts = [...root.querySelectorAll('svg text')].filter(
      (t) => t.textContent.trim() && !t.closest('.plot, .hoverlayer, .textpoint, .heatmaplayer'));
    out.push([rgb(getComputedStyle(svg).backgroundColor),
              texts.map((t) => [t.textContent, rgb(getComputedStyle(t).fill)])]);
  }
  return out.length ? out : null;
}"""


def _luminance(rgb: list[float]) -> float:
    c = [v / 255 for v in rgb]
    c = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]


def _ratio(a: list[float], b: list[float]) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _chart_page(browser: Any, widgets: dict, theme: str) -> tuple[Any, list]:
    from faultlens.render import plots
    from faultlens.ui.plots import PlotlyChart

    analysis = widgets["ex"].analysis
    charts = {
        "acc": PlotlyChart(plots.class_accuracy(analysis)),
        "cm": PlotlyChart(plots.confusion_matrix(analysis)),
    }
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    host = MockHost(page, charts)
    esm = charts["acc"]._esm
    page.route(  # the chart's front end is a string in Python, not a bundle file
        f"{ORIGIN}/static/chart.js",
        lambda route: route.fulfill(body=esm, content_type="text/javascript"),
    )
    host.open(theme, [("acc", "chart.js"), ("cm", "chart.js")])
    page.wait_for_function(f"() => ({CHART_COLOURS})()?.length === 2", timeout=30000)
    return page, errors


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_charts_follow_the_theme_with_readable_text(browser, widgets, theme: str) -> None:
    page, errors = _chart_page(browser, widgets, theme)
    try:
        got = page.evaluate(CHART_COLOURS)
        whiskers = page.evaluate(
            "() => [...document.querySelectorAll('.faultlens-chart .errorbar path')]"
            ".map((p) => (getComputedStyle(p).stroke.match(/[\\d.]+/g) || []).slice(0, 3).map(Number))"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"charts-{theme}.png"), full_page=True)
    finally:
        page.close()
    assert errors == [], errors
    expected = [255, 255, 255] if theme == "light" else [17, 17, 17]  # --jp-layout-color0
    assert whiskers, "no interval whiskers measured"
    faint = [w for w in whiskers if _ratio(w, expected) < 3]  # graphics: 3:1
    assert faint == [], f"{theme}: interval whiskers under 3:1: {faint}"
    for paper, texts in got:
        assert paper == expected, (theme, paper)
        assert len(texts) >= 5, texts  # title, axis titles, tick labels
        low = [(t, fill, round(_ratio(fill, paper), 2)) for t, fill in texts
               if _ratio(fill, paper) < 4.5]  # fmt: skip
        assert low == [], f"{theme}: chart texts under WCAG AA: {low[:8]}"


def test_charts_redraw_when_the_theme_switches(browser, widgets) -> None:
    page, errors = _chart_page(browser, widgets, "light")
    try:
        assert page.evaluate(CHART_COLOURS)[0][0] == [255, 255, 255]
        page.evaluate(
            "([css]) => { document.querySelector('head style').textContent = css;"
            " document.body.dataset.jpThemeLight = 'false';"
            " document.body.dataset.jpThemeName = 'JupyterLab Dark'; }",
            [theme_css("dark")],
        )
        page.wait_for_function(
            f"() => ({CHART_COLOURS})().every(([bg]) => bg.join() === '17,17,17')", timeout=10000
        )
        fills = [fill for _, texts in page.evaluate(CHART_COLOURS) for _, fill in texts]
    finally:
        page.close()
    assert errors == [], errors
    assert all(_ratio(f, [17, 17, 17]) >= 4.5 for f in fills), fills


LAB_NB = BUILD + "\nfrom IPython.display import display\ndisplay(ex)\ndisplay(fb)\n"
MARKERS = {"ex": "src/explorer/explorer.css", "fb": "src/features/features.css"}


def _lab_checks(page: Any, theme: str) -> dict:
    """Contrast records, the map's corner pixel, and for each widget its boxes with the other
    widget's stylesheet on and off."""
    out = {
        "contrast": page.evaluate(CONTRAST_JS, ".faultlens-explorer, .fl-features"),
        "map_bg": page.evaluate(MAP_CORNER),
    }
    for me, other, sels, root in (
        ("ex", "fb", EXPLORER_BOXES, ".faultlens-explorer"),
        ("fb", "ex", FEATURE_BOXES, ".fl-features"),
    ):
        together = page.evaluate(BOXES_JS, [root, sels])
        assert page.evaluate(TOGGLE_SHEET_JS, [MARKERS[other], True]) >= 1, f"no {other} stylesheet"
        page.wait_for_timeout(200)
        alone = page.evaluate(BOXES_JS, [root, sels])
        page.evaluate(TOGGLE_SHEET_JS, [MARKERS[other], False])
        page.wait_for_timeout(200)
        differ = {s: (alone[s], together[s]) for s in sels if alone[s] != together[s]}
        assert None not in together.values(), together
        assert differ == {}, (
            f"{theme}: {me} boxes change with the other widget's stylesheet: {differ}"
        )
    return out


@pytest.fixture(scope="module")
def lab_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A private JupyterLab settings folder for this module's server: the theme chosen here is a user
    setting, and must not reach other JupyterLab servers on the machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTERLAB_SETTINGS_DIR", str(tmp_path_factory.mktemp("lab-settings")))
        yield


def test_jupyterlab_theme_switch_keeps_layout_and_contrast(
    browser: Any,
    lab_settings: None,
    lab: tuple[str, Path],  # noqa: F811 - after lab_settings: the server starts with them
) -> None:
    """Both widgets in one notebook; Light → Dark → Light through the Settings menu."""
    url, root = lab
    mins: dict[str, float] = {}
    for attempt in range(2):  # "Run All" sometimes does not take on a fresh server: once more
        (root / f"theme-{attempt}.ipynb").write_text(json.dumps(_notebook([LAB_NB])))
        page = _new_page(browser, viewport={"width": 1400, "height": 1600})  # one Playwright
        try:
            _open_and_run(page, url, f"theme-{attempt}.ipynb")
            break
        except AssertionError:
            page.close()
            if attempt:
                raise
    try:
        page.wait_for_function(READY, timeout=60000)
        for theme, name in (
            ("light", None),
            ("dark", "JupyterLab Dark"),
            ("light", "JupyterLab Light"),
        ):
            if name:
                switch_theme(page, name)
            got = _lab_checks(page, theme)
            records = got["contrast"]
            assert len(records) > 100, len(records)
            low = failing(records)
            assert low == [], f"JupyterLab {theme}: {len(low)} texts under WCAG AA: {low[:8]}"
            mins[theme] = min(r["ratio"] for r in records)
            expected = [255, 255, 255] if theme == "light" else [17, 17, 17]
            assert got["map_bg"] == expected, (theme, got["map_bg"])  # the canvas followed
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"lab-{theme}.png"), full_page=True)
    except Exception:
        _dump(page, "theme")
        raise
    finally:
        page.close()
    print(f"minimum contrast in JupyterLab: {mins}")
