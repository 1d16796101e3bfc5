"""The README's screenshots, in JupyterLab Light and then Dark (README material; not a test):
the Explorer on the demo with its planted errors selected, the Explorer with discovered slices and
a described selection, and the FeatureBrowser beside an Explorer.

    python -m tests.ui.shot_readme [OUT_DIR [NAME ...]]   # default tests/ui/screenshots, all

writes explorer-demo.png, explorer-slices.png, feature-browser.png and their *-dark.png twins.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.ui.pagecheck import switch_theme
from tests.ui.shot_features import FEATURES_NB, LOADED
from tests.ui.shot_slices import DEMO_SLICES_NB, THUMBS_LOADED
from tests.ui.test_browser import (
    CHROMIUM,
    DEMO,
    DEMO_NB,
    FLAGS,
    TOKEN,
    _dump,
    _free_port,
    _new_page,
    _notebook,
    _open_and_run,
)

# name, notebook cell, what must be on screen first, the element photographed
SHOTS = [
    ("explorer-demo", DEMO_NB, [THUMBS_LOADED], ".faultlens-explorer"),
    (
        "explorer-slices",
        DEMO_SLICES_NB,
        [".fl-desc-item .fl-source", THUMBS_LOADED],
        ".faultlens-explorer",
    ),
    ("feature-browser", FEATURES_NB, [".fl-features .fl-group", LOADED], ".fl-features"),
]


def _wait(page, conds: list[str]) -> None:
    for cond in conds:
        if cond.startswith("() =>"):
            page.wait_for_function(cond, timeout=60000)
        else:
            page.locator(cond).first.wait_for(timeout=60000)


def _shoot(
    browser, url: str, root: Path, name: str, cell: str, ready: list[str], sel: str, out: Path
) -> None:
    page = None
    for attempt in range(2):  # "Run All" sometimes does not take on a fresh server: once more
        nb = f"{name}-{attempt}.ipynb"
        (root / nb).write_text(json.dumps(_notebook([cell % str(DEMO)])))
        page = _new_page(browser, viewport={"width": 1400, "height": 2200})  # room for all of it
        try:
            _open_and_run(page, url, nb)
            break
        except AssertionError:
            page.close()
            if attempt:
                raise
    try:
        _wait(page, ready)
        if name == "explorer-demo":  # a pinned tile fills the inspector
            page.locator(".fl-tiles .fl-tile").first.click()
        time.sleep(1.2)
        page.locator(sel).first.screenshot(path=str(out / f"{name}.png"))
        switch_theme(page, "JupyterLab Dark")
        page.locator(sel).first.screenshot(path=str(out / f"{name}-dark.png"))
        switch_theme(page, "JupyterLab Light")  # the theme is a server setting: leave it light
        print(f"wrote {out / name}.png and -dark.png")
    except Exception:
        _dump(page, name)
        raise
    finally:
        page.close()


def main(out: Path, only: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="fl-shot-"))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         f"--ServerApp.token={TOKEN}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
        env={**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(root / ".settings")},  # theme stays here
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                for name, cell, ready, sel in SHOTS:
                    if only and name not in only:
                        continue
                    _shoot(browser, f"http://127.0.0.1:{port}", root, name, cell, ready, sel, out)
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(
        Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "screenshots"),
        sys.argv[2:],
    )
