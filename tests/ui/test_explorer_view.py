"""The Explorer's view state and text search in a real browser (Debian's Chromium).

Fast part (no kernel; the committed bundle against a mock anywidget model wired to the real Python
widget, ``pagecheck.MockHost``): zoom and pan a view, display the same Explorer again in a new cell
and the second view shows the same viewport; the reset button gives every view the fitted map
back; the toolbar's search box selects the planted rows, and is disabled with the reason as its
tooltip without a text encoder.

JupyterLab part: the same in a notebook: display ``ex``, zoom with the wheel, run ``ex`` again in a
new cell; the second view's viewport equals the first, and the kernel holds it in ``ex.view``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faultlens.ui.explorer import Explorer
from tests.helpers import analysis_from
from tests.ui.pagecheck import MockHost, _encode
from tests.ui.test_browser import (  # noqa: F401 - lab is the JupyterLab server fixture
    CHROMIUM,
    FLAGS,
    SETUP,
    _dump,
    _new_page,
    _notebook,
    _open_and_run,
    lab,
)

pytestmark = pytest.mark.ui

PHRASE = "a cat on a sofa"
PLANTED = np.array([5, 17, 42, 99, 230, 311])


class PlantedEncoder:
    """A text encoder whose embedding of ``PHRASE`` is the planted rows' image embedding."""

    id = "planted-clip"
    dim = 8

    def encode_text(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i, 0 if text == PHRASE else 1] = 1.0
        return out


def make_explorer(text_encoder: Any = None) -> Explorer:
    rng = np.random.default_rng(1)
    n = 400
    label = np.arange(n) % 4
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb[:, 0] = -np.abs(emb[:, 0])  # nothing but the planted rows points along the phrase
    emb[PLANTED] = np.eye(8, dtype=np.float32)[0] + 0.01 * np.arange(len(PLANTED))[:, None]
    xy = (rng.normal(size=(n, 2)) + 3 * np.eye(4, 2)[label]).astype(np.float32)
    images = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    a = analysis_from(label, label, ["a", "b", "c", "d"], xy=xy, embeddings=emb, images=images)
    a.meta["models"] = {"embedder": "planted-clip"}
    return Explorer(a, text_encoder=text_encoder, height=360)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


RENDERED = (
    "(n) => { const c = [...document.querySelectorAll('canvas.fl-map')];"
    " return c.length >= n && c.every(x => Number(x.dataset.rendered || 0) > 0); }"
)
VIEWS = (
    "() => [...document.querySelectorAll('canvas.fl-map')].map(c => ({cx: Number(c.dataset.cx),"
    " cy: Number(c.dataset.cy), scale: Number(c.dataset.scale), view: JSON.parse(c.dataset.view)}))"
)


def _wait(page: Any, ok: Any, what: str, timeout: float = 15.0) -> None:
    """Let the page (and the Python calls it makes) run until ``ok()``."""
    deadline = time.time() + timeout
    while not ok():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(100)


def _zoom_and_pan(page: Any, index: int = 0) -> None:
    box = page.locator("canvas.fl-overlay").nth(index).bounding_box()
    cx, cy = box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.4
    page.mouse.move(cx, cy)
    for _ in range(3):
        page.mouse.wheel(0, -240)
        page.wait_for_timeout(50)
    page.locator(".fl-mode-pan").nth(index).click()
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 60, cy + 25, steps=5)
    page.mouse.up()


def _close(a: dict, b: dict) -> bool:
    return all(abs(a[k] - b[k]) <= 1e-9 * max(1.0, abs(a[k])) for k in ("cx", "cy", "scale"))


# both maps laid out at their final width (a new output area may be measured before it is)
SAME_WIDTH = (
    "() => { const c = [...document.querySelectorAll('canvas.fl-map')];"
    " return c.length === 2 && c[0].style.width === c[1].style.width"
    " && c[0].width === c[1].width && Number(c[1].dataset.rendered || 0) > 0; }"
)


def _settled_views(page: Any) -> list[dict]:
    """The two maps' viewports once both have their final size and have drawn at it."""
    page.wait_for_function(SAME_WIDTH, timeout=15000)
    page.wait_for_timeout(300)  # the frame drawn after the last resize
    return page.evaluate(VIEWS)


def test_a_second_display_keeps_the_zoom_and_reset_fits_again(browser) -> None:
    ex = make_explorer()
    page = browser.new_page(viewport={"width": 1300, "height": 1200})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        host = MockHost(page, {"ex": ex, "again": ex})  # two views of one Python widget
        host.open("light", [("ex", "explorer.js")])
        page.wait_for_function(RENDERED, arg=1)
        fitted = page.evaluate(VIEWS)[0]
        assert ex.view == []  # nothing moved yet: "fit"
        _zoom_and_pan(page)
        _wait(page, lambda: ex.view != [], "the zoom to reach Python")
        page.wait_for_timeout(400)  # the debounced write of the last step
        first = page.evaluate(VIEWS)[0]
        assert first["scale"] > 1.5 * fitted["scale"]
        np.testing.assert_allclose(ex.view, first["view"], rtol=1e-6, atol=1e-9)
        # display again: a new cell renders the same widget from the state Python holds
        page.evaluate(
            "() => { const d = document.createElement('div'); d.id = 'cell-again';"
            " d.style.cssText = 'width:1200px;margin:8px'; document.body.append(d); }"
        )
        page.evaluate(
            "([s]) => window.flMount('again', 'explorer.js', 'cell-again', s)",
            [_encode(ex.get_state())],
        )
        page.wait_for_function(RENDERED, arg=2)
        views = _settled_views(page)
        assert _close(views[0], views[1]), views
        np.testing.assert_allclose(views[1]["view"], views[0]["view"], rtol=1e-9, atol=1e-9)
        # reset in the second view: Python holds "fit" again and that view shows the fitted map
        page.locator(".fl-reset").nth(1).click()
        _wait(page, lambda: ex.view == [], "the reset to reach Python")
        assert _close(page.evaluate(VIEWS)[1], fitted)
    finally:
        page.close()
    assert errors == [], errors


def test_the_search_box_selects_the_planted_rows(browser) -> None:
    ex = make_explorer(PlantedEncoder())
    off = make_explorer(None)
    page = browser.new_page(viewport={"width": 1300, "height": 1800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        host = MockHost(page, {"ex": ex, "off": off})
        host.open("light", [("ex", "explorer.js"), ("off", "explorer.js")])
        page.wait_for_function(RENDERED, arg=2)
        on_box, off_box = (page.locator(f"#cell-{i} .fl-searchbox") for i in ("ex", "off"))
        # without a text encoder: disabled, and the tooltip says why and how
        assert off_box.locator(".fl-search").is_disabled()
        assert "needs a CLIP text encoder" in off_box.get_attribute("title")
        assert on_box.locator(".fl-search").is_enabled()
        on_box.locator(".fl-search-k").fill(str(len(PLANTED)))
        on_box.locator(".fl-search").fill(PHRASE)
        on_box.locator(".fl-search").press("Enter")
        count = f"#cell-ex .fl-selcount[data-count='{len(PLANTED)}']"
        _wait(page, lambda: page.locator(count).count() == 1, "the search's selection")
        np.testing.assert_array_equal(ex.selection, np.sort(PLANTED))
        assert ex._selection_source == "search"
        status = page.locator("#cell-ex .fl-status").text_content()
        assert f"selected the {len(PLANTED)} images most similar" in status, status
        assert len(off.selection) == 0
    finally:
        page.close()
    assert errors == [], errors


VIEW_NB = r"""
ex = faultlens.explore(analysis)
def keep_view(change):
    with open("view.json", "w") as fh:
        json.dump(change["new"], fh)
ex.observe(keep_view, names="view")
ex
"""


def test_jupyterlab_second_display_keeps_the_viewport(
    browser: Any,
    lab: tuple[str, Path],  # noqa: F811 - the JupyterLab server fixture
) -> None:
    url, root = lab
    (root / "view.ipynb").write_text(json.dumps(_notebook([SETUP, VIEW_NB])))
    page = _new_page(browser, viewport={"width": 1400, "height": 1300})  # one Playwright a thread
    try:
        _open_and_run(page, url, "view.ipynb")
        page.wait_for_function(RENDERED, arg=1)
        fitted = page.evaluate(VIEWS)[0]
        _zoom_and_pan(page)
        view_file = root / "view.json"
        deadline = time.time() + 20
        while not view_file.exists() and time.time() < deadline:
            page.wait_for_timeout(200)
        page.wait_for_timeout(600)
        first = page.evaluate(VIEWS)[0]
        assert first["scale"] > 1.5 * fitted["scale"]
        np.testing.assert_allclose(json.loads(view_file.read_text()), first["view"], rtol=1e-6)
        # a new cell below the last one, displaying `ex` again
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputPrompt").last.click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        page.keyboard.press("Enter")
        page.keyboard.type("ex")
        page.keyboard.press("Shift+Enter")
        page.wait_for_function(RENDERED, arg=2, timeout=30000)
        views = _settled_views(page)
    except Exception:
        _dump(page, "view")
        raise
    finally:
        page.close()
    assert _close(views[0], views[1]), views
    np.testing.assert_allclose(views[1]["view"], views[0]["view"], rtol=1e-9, atol=1e-9)
