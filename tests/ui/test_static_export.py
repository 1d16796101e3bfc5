"""Both widgets' static copies in an nbconvert HTML export, opened in real Chromium: with no kernel,
the page shows each widget's PNG and its HTML summary, and no script from the data runs.

nbconvert ranks a widget view above HTML, and a widget view without saved widget state (and without
a network for the widget manager's script) shows nothing; the README's recipe ranks HTML first:
``jupyter nbconvert --to html --NbConvertBase.display_data_priority="['text/html','image/png','text/plain']"``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.ui.test_browser import CHROMIUM, FLAGS

pytestmark = [pytest.mark.ui, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EVIL = "<img src=x onerror=window.__pwned=1>"

CELLS = [
    f"import sys; sys.path.insert(0, {str(ROOT)!r})",
    f"""
import numpy as np
import faultlens
from faultlens.ui.features import FeatureBrowser
from tests.helpers import TinyNet, analysis_from, blob_images, tiny_transform

images, labels = blob_images(60)
pred = labels.copy()
pred[:9] = (labels[:9] + 1) % 3
xy = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
analysis = analysis_from(labels, pred, [{EVIL!r}, "green", "blue"], xy=xy, images=images)
""",
    "faultlens.explore(analysis)",
    'FeatureBrowser(analysis, TinyNet().eval(), "conv", tiny_transform, k=3, gap_k=5)',
]


def test_static_copies_show_in_an_nbconvert_export(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    kinds = [set(o.get("data", {})) for c in nb.cells for o in c.get("outputs", [])]
    assert sum("image/png" in k and "text/html" in k for k in kinds) == 2, kinds
    from traitlets.config import Config

    static_first = Config()
    static_first.NbConvertBase.display_data_priority = ["text/html", "image/png", "text/plain"]
    body, _ = HTMLExporter(config=static_first).from_notebook_node(nb)
    page_file = tmp_path / "export.html"
    page_file.write_text(body, encoding="utf-8")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1600})
        page.goto(page_file.as_uri())
        page.wait_for_timeout(500)
        for root in (".faultlens-static", ".faultlens-features"):
            block = page.locator(root).first
            assert block.is_visible(), f"{root} is not shown in the export"
            width = block.locator("img").first.evaluate("i => i.complete ? i.naturalWidth : 0")
            assert width > 50, f"{root}: its picture did not load"
        text = page.inner_text("body")
        assert EVIL in text  # the class name shows as text …
        assert page.evaluate("() => window.__pwned") is None  # … and never runs
        browser.close()
