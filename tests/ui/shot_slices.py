"""Screenshot of the Explorer on the real demo analysis with discovered slices and a described
selection (README material; not a test: finding slices on the demo takes ~20 s).

    python -m tests.ui.shot_slices [/tmp/explorer-slices.png]
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.ui.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    DEMO,
    FLAGS,
    TOKEN,
    _dump,
    _free_port,
    _new_page,
    _notebook,
    _open_and_run,
)

DEMO_SLICES_NB = r"""
import faultlens
ex = faultlens.explore(faultlens.load(%r))
found = ex.find_slices(5)
ex.color_by = "slice"
ex.select_discovered(0)
ex.describe_selection()
ex
"""


def take(cells: list[str], name: str, ready: list[str], selector: str, out: Path) -> None:
    """Run a notebook of ``cells`` in a private JupyterLab, wait for every ``ready`` selector (or JS
    predicate starting with ``() =>``), and screenshot the element ``selector`` to ``out``."""
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="fl-shot-"))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         f"--ServerApp.token={TOKEN}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        (root / name).write_text(json.dumps(_notebook(cells)))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = _new_page(browser, viewport={"width": 1400, "height": 1500})
            try:
                _open_and_run(page, url, name)
                try:
                    for cond in ready:
                        if cond.startswith("() =>"):
                            page.wait_for_function(cond, timeout=40000)
                        else:
                            page.locator(cond).first.wait_for(timeout=40000)
                except Exception:
                    _dump(page, name)
                    raise
                time.sleep(1.0)
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / out.name
                page.locator(selector).first.screenshot(path=str(shot))
            finally:
                browser.close()
        shutil.copy(shot, out)
        print(f"wrote {out}")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


THUMBS_LOADED = (
    "() => { const t = [...document.querySelectorAll('.fl-thumb')];"
    " return t.length > 0 && t.every(i => i.src.startsWith('blob:')); }"
)


def main(out: Path) -> None:
    take(
        [DEMO_SLICES_NB % str(DEMO)],
        "demo-slices.ipynb",
        [".fl-desc-item .fl-source", THUMBS_LOADED],
        ".faultlens-explorer",
        out,
    )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/explorer-slices.png"))  # noqa: S108
