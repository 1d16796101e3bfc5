"""Real-browser checks of the Explorer: JupyterLab + Debian Chromium driven by Playwright.

The notebook (written here into a private server root) builds an explorer on 2,000 points in four
well-separated clusters, logs every selection Python receives to ``selections.jsonl`` and saves the
coordinates. The test drags boxes on the map and checks that each selection reached Python with the
indices inside the box (computed from the view transform the map publishes on its canvas).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faultlens.store import default_cache_dir

pytestmark = pytest.mark.ui

CHROMIUM = "/usr/bin/chromium"
TOKEN = "faultlens-ui-test"  # noqa: S105 - a throwaway token for a 127.0.0.1 test server
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
# the demo analysis: where CI puts it, else where the Quickstart's `faultlens demo` wrote it
DEMO = Path(os.environ.get("FAULTLENS_DEMO_ANALYSIS", default_cache_dir() / "demo-analysis"))
README_SHOT = Path("/tmp/explorer-demo.png")  # noqa: S108 - where the README picks it up
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SETUP = r"""
import json, numpy as np, pandas as pd
import faultlens
from faultlens.analysis.result import Analysis
from faultlens.data.sources import ArraySource

rng = np.random.default_rng(0)
n, names = 2000, ["north-west", "north-east", "south-west", "south-east"]
label = np.arange(n) % 4
centres = np.array([[-0.6, 0.6], [0.6, 0.6], [-0.6, -0.6], [0.6, -0.6]])
xy = (centres[label] + rng.normal(0, 0.12, (n, 2))).astype(np.float32)
pred = np.where(rng.random(n) < 0.2, (label + 1) % 4, label)
conf = rng.uniform(0.3, 1.0, n).astype(np.float32)
base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], dtype=np.float32)
images = np.clip(base[label][:, None, None, :] + rng.normal(0, 25, (n, 16, 16, 3)), 0, 255).astype(np.uint8)
table = pd.DataFrame({
    "id": [f"img-{i:04d}" for i in range(n)], "path": [None] * n, "label": label,
    "label_name": np.array(names, dtype=object)[label], "pred": pred,
    "pred_name": np.array(names, dtype=object)[pred], "confidence": conf,
    "loss": -np.log(np.where(pred == label, conf, 1 - conf)).astype(np.float32),
    "correct": pred == label, "x": xy[:, 0], "y": xy[:, 1], "source_index": np.arange(n),
})
analysis = Analysis(table, class_names=names, source=ArraySource(images, label, class_names=names))
np.save("coords.npy", xy)
"""

EXPLORE = r"""
ex = faultlens.explore(analysis)
def log_selection(sel):
    with open("selections.jsonl", "a") as fh:
        fh.write(json.dumps({"counter": ex._selection_counter, "source": ex._selection_source,
                             "rows": sel.tolist(), "grid_total": ex._grid["total"]}) + "\n")
ex.observe_selection(log_selection)
ex
"""

PYTHON_SELECT = "ex.select(np.arange(0, 2000, 10))"

SLICES_NB = r"""
import json, sys, time, numpy as np
sys.path.insert(0, REPO_ROOT)
from faultlens.ui.explorer import Explorer
from tests.helpers import planted_cluster

analysis, _ = planted_cluster(800, cluster=100, wrong=90, extra_errors=0, image_px=16,
                              ids="img-{:04d}")

class SlowFakeCaptioner:
    name = "fake"
    def caption(self, images):
        time.sleep(1.0)  # long enough for the view to show "describing…"
        return ["a red <b>logo</b>" for _ in images]

ex = Explorer(analysis, captioner=SlowFakeCaptioner())
found = ex.find_slices(3, n_components=5, describe=False)
with open("members.json", "w") as fh:
    json.dump([np.sort(s.indices).tolist() for s in found], fh)
def log_selection(sel):
    with open("selections.jsonl", "a") as fh:
        fh.write(json.dumps({"source": ex._selection_source, "rows": sel.tolist()}) + "\n")
ex.observe_selection(log_selection)
ex
"""

DEMO_NB = r"""
import faultlens
ex = faultlens.explore(faultlens.load(%r))
t = ex.analysis.table
ex.select(t.index[(t.planted_group != "none") & ~t.correct] if "planted_group" in t else t.index[~t.correct])
ex
"""


def _notebook(cells: list[str]) -> dict:
    return {
        "cells": [
            {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
             "source": src}
            for src in cells
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright")
    root = tmp_path_factory.mktemp("labroot")
    port = _free_port()
    log = open(root.parent / "lab.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         f"--ServerApp.token={TOKEN}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(
                f"JupyterLab did not start: {(root.parent / 'lab.log').read_text()[-2000:]}"
            )
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _open_and_run(page, url: str, nb: str) -> None:
    try:
        _open_and_run_inner(page, url, nb)
    except Exception:
        _dump(page, nb)
        raise


_CONSOLE: list[str] = []


def _new_page(browser, **kw):
    page = browser.new_page(**kw)
    page.on("console", lambda m: _CONSOLE.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: _CONSOLE.append(f"pageerror: {e}"))
    return page


@contextlib.contextmanager
def _lab_page(name: str, *, width: int, height: int) -> Iterator[Any]:
    """A page of Debian's Chromium; when the block fails, its screenshot and console are kept in
    test-artifacts/ as ``failed-<name>``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = _new_page(browser, viewport={"width": width, "height": height})
        try:
            yield page
        except Exception:
            _dump(page, name)
            raise
        finally:
            browser.close()


def _dump(page, name: str) -> None:
    """Keep a screenshot and the browser console of a failure in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"failed-{name}.png"))
    (ARTIFACTS / f"failed-{name}.console.txt").write_text("\n".join(_CONSOLE))


def _open_and_run_inner(page, url: str, nb: str) -> None:
    page.goto(f"{url}/lab/workspaces/{uuid.uuid4().hex[:10]}/tree/{nb}?token={TOKEN}&reset")
    page.add_style_tag(
        content=".Toastify { display: none !important; }"
    )  # the "Jupyter news?" toast
    idle = (
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        _accept_dialogs(page)
        if page.locator(idle).count():
            break
        page.wait_for_timeout(300)
    page.locator(idle).wait_for(timeout=5000)
    page.wait_for_timeout(500)
    _accept_dialogs(page)
    # focus the notebook first: JupyterLab 4.4 (Binder's base) ignores Run All until it has focus
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputPrompt").first.click()
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
    rendered = (
        "() => { const c = document.querySelector('canvas.fl-map');"
        " return !!c && Number(c.dataset.rendered || 0) > 0; }"
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        _accept_dialogs(page)  # "Select Kernel" may appear once on a fresh server
        if page.evaluate(rendered):
            return
        page.wait_for_timeout(300)
    msg = "the explorer map never rendered"
    raise AssertionError(msg)


def _accept_dialogs(page) -> None:
    accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    if accept.count():
        accept.first.click()
        page.wait_for_timeout(300)


def _read_log(path: Path) -> list[dict]:
    """The JSON lines the kernel has written whole: a last line without its newline is still being
    written, and is read next time."""
    if not path.exists():
        return []
    complete = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in complete if line.strip()]


def _new_entries(log_path: Path, before: int, what: str) -> list[dict]:
    """The selection log once it has more than ``before`` entries (waits up to 15 s)."""
    deadline = time.time() + 15
    entries = _read_log(log_path)
    while len(entries) <= before and time.time() < deadline:
        time.sleep(0.1)
        entries = _read_log(log_path)
    assert len(entries) > before, f"{what}: no selection reached Python"
    return entries


def _drag(page, a: tuple[float, float], b: tuple[float, float], *, slow: bool) -> None:
    page.mouse.move(*a)
    if slow:
        page.wait_for_timeout(700)
    page.mouse.down()
    page.mouse.move(*b, steps=25 if slow else 3)
    if slow:
        page.wait_for_timeout(700)
    page.mouse.up()


# boxes as fractions of the canvas: clusters, halves, slivers, an empty corner
FRACTIONS = [
    (0.05, 0.05, 0.48, 0.48), (0.52, 0.05, 0.95, 0.48), (0.05, 0.52, 0.48, 0.95),
    (0.52, 0.52, 0.95, 0.95), (0.1, 0.1, 0.9, 0.5), (0.3, 0.3, 0.7, 0.7),
    (0.2, 0.6, 0.8, 0.7), (0.45, 0.05, 0.55, 0.95), (0.05, 0.05, 0.95, 0.95),
    (0.6, 0.2, 0.4, 0.8), (0.25, 0.15, 0.35, 0.3), (0.7, 0.7, 0.9, 0.9),
]  # fmt: skip


def drag_and_check(page, root: Path, fractions) -> list[tuple[int, int, bool]]:
    """Drag a box for each of ``fractions`` (of the map canvas; odd ones slowly, with pauses) and
    check that each selection reached Python (SETUP/EXPLORE's log) with the rows inside the box,
    that the view counts them, and that the grid shows them. Returns (drag, rows, exact) each."""
    log_path = root / "selections.jsonl"
    results: list[tuple[int, int, bool]] = []
    xy = np.load(root / "coords.npy")
    canvas = page.locator("canvas.fl-map")
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    box = canvas.bounding_box()
    assert box is not None
    for k, (fx0, fy0, fx1, fy1) in enumerate(fractions):
        before = len(_read_log(log_path))
        a = (box["x"] + fx0 * box["width"], box["y"] + fy0 * box["height"])
        b = (box["x"] + fx1 * box["width"], box["y"] + fy1 * box["height"])
        _drag(page, a, b, slow=k % 2 == 1)
        entries = _new_entries(log_path, before, f"drag {k}")
        got = entries[-1]
        assert got["source"] == "box", got["source"]
        rows = np.asarray(got["rows"], dtype=int)
        # expected rows from the view transform the canvas publishes
        ds = canvas.evaluate("c => ({...c.dataset})")
        cx, cy, scale = float(ds["cx"]), float(ds["cy"]), float(ds["scale"])
        w, h = box["width"], box["height"]

        def to_data(pt: tuple[float, float], cx=cx, cy=cy, scale=scale, w=w, h=h):
            px, py = pt[0] - box["x"], pt[1] - box["y"]
            return (px - w / 2) / scale + cx, (h / 2 - py) / scale + cy

        (xa, ya), (xb, yb) = to_data(a), to_data(b)
        xa, xb = sorted((xa, xb))
        ya, yb = sorted((ya, yb))
        inside = (xy[:, 0] >= xa) & (xy[:, 0] <= xb) & (xy[:, 1] >= ya) & (xy[:, 1] <= yb)
        tol = 1.5 / scale  # a pixel and a half of rounding at the edges
        near = (
            (np.abs(xy[:, 0] - xa) < tol) | (np.abs(xy[:, 0] - xb) < tol)
            | (np.abs(xy[:, 1] - ya) < tol) | (np.abs(xy[:, 1] - yb) < tol)
        )  # fmt: skip
        expected = set(np.flatnonzero(inside))
        diff = expected.symmetric_difference(rows.tolist())
        assert all(near[i] for i in diff), f"drag {k}: {len(diff)} rows differ off the edges"
        js_count = int(page.locator(".fl-selcount").get_attribute("data-count"))
        assert js_count == len(rows), (js_count, len(rows))
        # the grid shows the selection: header total and one tile per row on page 1
        page.wait_for_function(
            f"() => document.querySelector('.fl-grid-info')?.dataset.total === '{len(rows)}'",
            timeout=10000,
        )
        n_tiles = page.locator(".faultlens-explorer .fl-tiles .fl-tile").count()
        assert n_tiles == min(24, len(rows))
        results.append((k, len(rows), len(diff) == 0))
    return results


def test_drag_selection_reaches_python(lab: tuple[str, Path]) -> None:
    url, root = lab
    (root / "explorer.ipynb").write_text(json.dumps(_notebook([SETUP, EXPLORE, PYTHON_SELECT])))
    log_path = root / "selections.jsonl"
    with _lab_page("drag", width=1400, height=1100) as page:
        _open_and_run(page, url, "explorer.ipynb")
        # A Python change reaches the view: the notebook's last cell selected 200 rows.
        page.wait_for_function(
            "() => document.querySelector('.fl-selcount')?.dataset.count === '200'",
            timeout=30000,
        )
        deadline = time.time() + 20
        while len(_read_log(log_path)) < 1 and time.time() < deadline:
            time.sleep(0.2)
        results = drag_and_check(page, root, FRACTIONS)
        box = page.locator("canvas.fl-map").bounding_box()
        assert box is not None
        if results[-1][1]:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.fl-thumb')].every(i => i.src.startsWith('blob:'))",
                timeout=15000,
            )
        # select the north-east cluster again for a tidy screenshot
        _drag(page, (box["x"] + 0.52 * box["width"], box["y"] + 0.05 * box["height"]),
              (box["x"] + 0.95 * box["width"], box["y"] + 0.48 * box["height"]), slow=False)  # fmt: skip
        page.wait_for_timeout(1500)
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".faultlens-explorer").screenshot(path=str(ARTIFACTS / "explorer.png"))
    assert len(results) == len(FRACTIONS)
    print(f"\n{len(results)}/{len(FRACTIONS)} drags reached Python:", results)


@pytest.mark.skipif(not DEMO.exists(), reason=f"no demo analysis at {DEMO}")
def test_demo_screenshot(lab: tuple[str, Path]) -> None:
    """Render the explorer on the real demo analysis and keep a screenshot for the README."""
    url, root = lab
    (root / "demo.ipynb").write_text(json.dumps(_notebook([DEMO_NB % str(DEMO)])))
    with _lab_page("demo", width=1400, height=1700) as page:
        _open_and_run(page, url, "demo.ipynb")
        page.wait_for_function(
            "() => Number(document.querySelector('.fl-selcount')?.dataset.count || 0) > 0",
            timeout=30000,
        )
        page.wait_for_function(
            "() => { const t = [...document.querySelectorAll('.fl-thumb')];"
            " return t.length > 0 && t.every(i => i.src.startsWith('blob:')); }",
            timeout=20000,
        )
        # hover a tile to fill the inspector
        page.locator(".fl-tiles .fl-tile").first.click()
        page.wait_for_timeout(1200)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "explorer-demo.png"
        page.locator(".faultlens-explorer").screenshot(path=str(shot))
    shutil.copy(shot, README_SHOT)


def test_discovered_slice_click_and_describe(lab: tuple[str, Path]) -> None:
    """Click a discovered-slice row: Python selects its members; "Describe" shows progress, then
    the description with its source label and the captions (as text, never as markup)."""
    url, root = lab
    (root / "slices.ipynb").write_text(
        json.dumps(_notebook([SLICES_NB.replace("REPO_ROOT", repr(str(REPO)))]))
    )
    with _lab_page("slices", width=1400, height=1400) as page:
        _open_and_run(page, url, "slices.ipynb")
        page.wait_for_function(
            "() => document.querySelectorAll('.fl-disc-row').length === 3", timeout=30000
        )
        members = json.loads((root / "members.json").read_text())
        log_path = root / "selections.jsonl"
        for k in (1, 0):
            before = len(_read_log(log_path))
            page.locator(f".fl-disc-row[data-index='{k}']").click()
            entries = _new_entries(log_path, before, f"slice row {k}")
            assert entries[-1]["source"] == "discovered"
            assert entries[-1]["rows"] == members[k]
            page.wait_for_function(
                f"() => document.querySelector('.fl-selcount')?.dataset.count"
                f" === '{len(members[k])}'",
                timeout=10000,
            )
            page.locator(f".fl-disc-row.fl-active[data-index='{k}']").wait_for(timeout=10000)
        # describe: progress first, then the source label beside the terms, captions by images
        page.locator("button.fl-describe").click()
        page.wait_for_function(
            "() => document.querySelector('.fl-desc-state')?.textContent === 'describing…'",
            timeout=5000,
        )
        source = page.locator(".fl-desc-item .fl-source").first
        source.wait_for(timeout=30000)
        # the one-sentence summary leads; the captions that back it follow with their label
        chips = page.locator(".fl-desc-item .fl-source").all_text_contents()
        assert chips[0] == "summary" and "captions (fake)" in chips
        assert page.locator(".fl-desc-state").text_content() == ""
        caption = page.locator(".fl-caplist .fl-captext").first
        assert caption.text_content() == "a red <b>logo</b>"  # text, not markup
        assert page.locator(".fl-caplist b").count() == 0
        assert page.locator(".fl-tile-caption").count() > 0  # under the captioned tiles
        assert page.locator(".fl-desc-note").count() == 0  # a captioner was given
        page.wait_for_timeout(800)
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".faultlens-explorer").screenshot(path=str(ARTIFACTS / "slices.png"))


FEATURES_NB = r"""
import torch
from torch import nn
from faultlens.ui.features import FeatureBrowser

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

analysis.save("fb-analysis")
fb = FeatureBrowser(analysis, Net().eval(), "conv", transform, k=4, gap_k=20)
fb.feature = int(fb.features[0]["feature"])
fb
"""


def test_feature_browser_images_arrive_and_marks_persist(lab: tuple[str, Path]) -> None:
    """Tiles (each image beside its activation map) arrive as PNG buffers; a click on "spurious" is
    saved to annotations.json in the analysis folder."""
    url, root = lab
    (root / "features.ipynb").write_text(json.dumps(_notebook([SETUP, FEATURES_NB, EXPLORE])))
    with _lab_page("features", width=1400, height=1400) as page:
        _open_and_run(page, url, "features.ipynb")  # the explorer in the last cell renders last
        page.wait_for_function(
            "() => { const t = [...document.querySelectorAll('.fl-features .fl-group img')];"
            " return t.length >= 16 && t.every(i => i.complete && i.naturalWidth > 0); }",
            timeout=60000,
        )
        assert "null" not in page.locator(".fl-features .fl-groups").inner_text()
        page.locator(".fl-features button.fl-markbtn", has_text="spurious").click()
        path = root / "fb-analysis" / "annotations.json"
        deadline = time.time() + 20
        while time.time() < deadline and not path.exists():
            time.sleep(0.2)
        marks = json.loads(path.read_text())["marks"]
        assert [m["mark"] for m in marks] == ["spurious"] and marks[0]["layer"] == "conv"
        # keyboard-reachable group titles; the pressed mark says so to assistive technology
        page.wait_for_function(
            "() => document.querySelector('.fl-features button.fl-markbtn[aria-pressed=\"true\"]')"
            "?.textContent === 'spurious'",
            timeout=10000,
        )
        assert page.locator(".fl-features button.fl-gtitle").count() >= 2
        # another feature, then the Grad-CAM maps: each time every tile gets its images again
        for action in ("feature", "gradcam"):
            page.evaluate(
                "() => document.querySelectorAll('.fl-features .fl-group')"
                ".forEach(g => { g.dataset.old = '1'; })"
            )
            if action == "feature":
                page.locator(".fl-features button.fl-feat").nth(1).click()
            else:
                page.locator(".fl-features select[aria-label='map kind']").select_option("gradcam")
            page.wait_for_function(
                "() => { const g = [...document.querySelectorAll('.fl-features .fl-group')];"
                " const t = [...document.querySelectorAll('.fl-features .fl-group img')];"
                " return g.length && g.every(x => !x.dataset.old) && t.length >= 16"
                " && t.every(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0); }",
                timeout=30000,
            )


AGGREGATE_NB = (
    r"""
import json, numpy as np, pandas as pd
from faultlens.analysis.result import Analysis
from faultlens.data.sources import ArraySource
from faultlens.ui.explorer import Explorer

# 4,000 points on two spots: at A every other one is an error, at B none is
n, names = 4000, ["a", "b"]
label = np.zeros(n, dtype=np.int64)
at_a = np.arange(n) < n // 2
pred = np.where(at_a & (np.arange(n) % 2 == 1), 1, 0)
xy = np.where(at_a[:, None], [-0.5, 0.0], [0.5, 0.0]).astype(np.float32)
xy[:4] = [[-1, -1], [1, 1], [-1, 1], [1, -1]]  # corners, so the view is not one pixel wide
table = pd.DataFrame({
    "id": [f"p{i}" for i in range(n)], "path": [None] * n, "label": label,
    "label_name": np.array(names, dtype=object)[label], "pred": pred,
    "pred_name": np.array(names, dtype=object)[pred], "confidence": np.full(n, 0.9, np.float32),
    "loss": np.full(n, 0.1, np.float32), "correct": pred == label,
    "x": xy[:, 0], "y": xy[:, 1], "source_index": np.arange(n),
})
analysis = Analysis(table, class_names=names,
                    source=ArraySource(np.zeros((n, 4, 4, 3), np.uint8), label, class_names=names))
agg = Explorer(analysis, aggregate_above=1000, height=300)
json.dump(agg._color_info["colors"], open("colors.json", "w"))
agg
""",
    r"""
Explorer(analysis, height=300)  # 4,000 points: below the default 200,000, drawn one by one
""",
)


def _block(page, k: int, data_xy: tuple[float, float]) -> list[tuple[int, int, int]]:
    """The non-white pixels of map ``k`` in a 7×7 device-pixel block around a data point."""
    return page.evaluate(
        """([k, x, y]) => {
          const c = document.querySelectorAll('canvas.fl-map')[k];
          const ds = c.dataset, dpr = c.width / c.getBoundingClientRect().width;
          const s = Number(ds.scale) * dpr;
          const px = Math.floor((x - Number(ds.cx)) * s + c.width / 2);
          const py = Math.floor(c.height / 2 - (y - Number(ds.cy)) * s);
          const d = c.getContext('2d').getImageData(px - 3, py - 3, 7, 7).data;
          const out = [];
          for (let i = 0; i < d.length; i += 4)
            if (!(d[i] === 255 && d[i + 1] === 255 && d[i + 2] === 255)) out.push([d[i], d[i + 1], d[i + 2]]);
          return out;
        }""",
        [k, *data_xy],
    )


def test_large_maps_draw_each_pixel_as_the_mean_of_its_points(lab: tuple[str, Path]) -> None:
    url, root = lab
    (root / "aggregate.ipynb").write_text(json.dumps(_notebook(list(AGGREGATE_NB))))
    with _lab_page("aggregate", width=1200, height=1400) as page:
        _open_and_run(page, url, "aggregate.ipynb")
        page.wait_for_function(
            "() => [...document.querySelectorAll('canvas.fl-map')].filter("
            "c => Number(c.dataset.rendered || 0) > 0).length === 2",
            timeout=60000,
        )
        maps = page.locator("canvas.fl-map")
        assert [maps.nth(k).get_attribute("data-aggregated") for k in (0, 1)] == [
            "true",
            "false",
        ]
        ok, bad = (
            np.array([int(h[i : i + 2], 16) for i in (1, 3, 5)])
            for h in json.loads((root / "colors.json").read_text())
        )
        mean = (ok + bad) / 2
        # aggregated: spot A is the mean of its correct and wrong points, spot B pure
        a = np.array(_block(page, 0, (-0.5, 0.0)))
        b = np.array(_block(page, 0, (0.5, 0.0)))
        assert len(a) and len(b)
        assert np.abs(a - mean).max() <= 1, (a[:3], mean)
        assert np.abs(b - ok).max() == 0, b[:3]
        # drawn point by point, spot A shows one of its points' colours, not the mix
        one = np.array(_block(page, 1, (-0.5, 0.0)))
        assert len(one)
        assert all(np.abs(c - ok).max() == 0 or np.abs(c - bad).max() == 0 for c in one)

        # select spot B, then spot A instead: the layer of all points is dimmed and reused, the
        # selected points are drawn on top in full colour
        def dim(c: np.ndarray) -> np.ndarray:  # the view's dimmed palette: 72 % towards #ebebeb
            return np.round(c * 0.28 + 235 * 0.72)

        def select_around(data_xy: tuple[float, float], count: int) -> None:
            px, py = page.evaluate(
                """([x, y]) => {
                  const c = document.querySelectorAll('canvas.fl-map')[0], ds = c.dataset;
                  const r = c.getBoundingClientRect(), s = Number(ds.scale);
                  return [r.left + r.width / 2 + (x - Number(ds.cx)) * s,
                          r.top + r.height / 2 - (y - Number(ds.cy)) * s];
                }""",
                list(data_xy),
            )
            _drag(page, (px - 12, py - 12), (px + 12, py + 12), slow=False)
            page.wait_for_function(
                "n => document.querySelectorAll('.fl-selcount')[0].dataset.count === String(n)",
                arg=count,
                timeout=15000,
            )
            page.wait_for_timeout(300)  # the next animation frame

        select_around((0.5, 0.0), 2000)  # spot B: 2,000 right
        a, b = np.array(_block(page, 0, (-0.5, 0.0))), np.array(_block(page, 0, (0.5, 0.0)))
        assert np.abs(a - (dim(ok) + dim(bad)) / 2).max() <= 1, a[:3]
        assert np.abs(b - ok).max() == 0, b[:3]
        select_around((-0.5, 0.0), 1996)  # spot A: 998 right and 998 wrong, the last one wrong
        a, b = np.array(_block(page, 0, (-0.5, 0.0))), np.array(_block(page, 0, (0.5, 0.0)))
        assert np.abs(a - bad).max() == 0, a[:3]
        assert np.abs(b - dim(ok)).max() <= 1, b[:3]


KEYBOARD_NB = r"""
ex = faultlens.explore(analysis)
ex.select(np.arange(0, 2000, 50))
x = np.frombuffer(ex._x, dtype="<f4").copy()
x[1] = np.inf  # an infinity reaching the view (Python sends NaN) must not blank the whole map
ex._x = x.tobytes()
ex
"""


def test_keyboard_tiles_and_class_boxes_and_infinite_positions(lab: tuple[str, Path]) -> None:
    """Enter on a grid tile pins it in the inspector; toggling a class checkbox with the keyboard
    keeps the focus on it; a point at +inf does not blank the map."""
    url, root = lab
    (root / "keyboard.ipynb").write_text(json.dumps(_notebook([SETUP, KEYBOARD_NB])))
    with _lab_page("keyboard", width=1400, height=1200) as page:
        _open_and_run(page, url, "keyboard.ipynb")
        canvas = page.locator("canvas.fl-map")
        canvas.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        scale = float(canvas.get_attribute("data-scale"))
        assert np.isfinite(scale) and scale > 1, scale
        coloured = canvas.evaluate(
            "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let k = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 250) k++; return k; }"
        )
        assert coloured > 1000, coloured
        # Enter on a focused tile pins it, as a click does
        page.wait_for_function(
            "() => document.querySelectorAll('.fl-tiles .fl-tile').length > 0", timeout=15000
        )
        tile = page.locator(".fl-tiles .fl-tile").first
        tile.focus()
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.querySelector('.fl-inspector .fl-hint')?.textContent.startsWith('Pinned')"
            " && document.querySelectorAll('.fl-inspect-meta tr').length > 0",
            timeout=15000,
        )
        # a class checkbox toggled with Space keeps the keyboard focus (updated in place)
        page.locator(".fl-class-filter summary").click()
        box = page.locator(".fl-classes input[data-label='1']")
        box.focus()
        page.keyboard.press("Space")
        page.wait_for_function(
            "() => document.querySelector('.fl-class-filter summary').textContent === "
            "'classes (3/4)'",
            timeout=15000,
        )
        page.wait_for_timeout(300)
        focused = "() => document.activeElement?.matches('.fl-classes input[data-label=\"1\"]')"
        assert page.evaluate(focused)
        assert not box.is_checked()
        page.keyboard.press("Space")
        page.wait_for_function(
            "() => document.querySelector('.fl-class-filter summary').textContent === "
            "'classes (all)'",
            timeout=15000,
        )
        assert page.evaluate(focused)
