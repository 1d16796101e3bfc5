"""The findings notebook as a Voilà app, in real Chromium: the page shows the results and a live
Explorer (its map drawn, its slice panel filled from the kernel) and none of the code.

Voilà serves ``notebooks/04-findings.ipynb`` the way Binder's ``urlpath=voila/render/...`` does,
reading the demo analysis that CI's ``faultlens demo`` built (``FAULTLENS_DEMO_ANALYSIS``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from faultlens.store import default_cache_dir

pytestmark = pytest.mark.ui

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
TOKEN = "faultlens-voila-test"  # noqa: S105 - a throwaway token for a 127.0.0.1 test server
DEMO = Path(os.environ.get("FAULTLENS_DEMO_ANALYSIS", default_cache_dir() / "demo-analysis"))
ARTIFACTS = ROOT / "test-artifacts"  # screenshots to look at (git-ignored)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - our own 127.0.0.1 server
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"voila did not answer in {seconds:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_findings_notebook_renders_as_a_voila_app(tmp_path: Path) -> None:
    if not (DEMO / "table.parquet").exists():
        pytest.skip(f"no demo analysis at {DEMO}: run `faultlens demo` first")
    playwright = pytest.importorskip("playwright.sync_api")
    port = _free_port()
    log = tmp_path / "voila.log"
    # the notebook reads the full-size demo from FAULTLENS_CACHE/demo-analysis, as on Binder
    env = {**os.environ, "FAULTLENS_CACHE": str(DEMO.parent), "FAULTLENS_NB_OFFLINE": "1"}
    env.pop("FAULTLENS_NB_SMALL", None)
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", "notebooks/04-findings.ipynb", "--no-browser",
             f"--port={port}", "--Voila.ip=127.0.0.1", f"--token={TOKEN}"],
            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/?token={TOKEN}"
        _wait_for(url, proc, log)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1800})
            page.goto(url, timeout=600_000)  # Voilà runs the notebook before it sends the page
            explorer = page.locator(".faultlens-explorer")
            explorer.wait_for(state="visible", timeout=300_000)
            canvas = explorer.locator("canvas").first
            canvas.wait_for(state="visible", timeout=60_000)
            # the map is drawn: its canvas holds more than one colour
            colours = page.evaluate(
                """(c) => { const ctx = c.getContext('2d');
                   const d = ctx.getImageData(0, 0, c.width, c.height).data; const seen = new Set();
                   for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] << 16 | d[i+1] << 8 | d[i+2]);
                   return seen.size; }""",
                canvas.element_handle(),
            )
            assert colours > 2, "the map canvas is blank"
            text = page.inner_text("body")
            assert "Findings: where the demo classifier fails" in text
            assert "shirt_without_logo" in text  # the planted report's table
            assert "top_with_logo" in text  # a slice row of the findings table
            assert "Traceback" not in text and "Error" not in text.split("Findings")[0]
            assert "faultlens.demo(" not in text, "Voilà must not show the code"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "voila-findings.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
