"""Both widgets in each Jupyter front end, in real Chromium: the FeatureBrowser renders its images,
the Explorer renders, ten box drags (fast and slow) reach Python with the rows inside the box, and
the grid follows.

JupyterLab of this environment is covered by test_browser.py; here: Notebook 7 of this environment,
and, when ``FAULTLENS_UI_JUPYTER`` names the ``jupyter`` of another environment (``.ci/binder`` sets
it to the environment it built as repo2docker does), that environment's JupyterLab and Notebook 7,
whose kernel is that environment's Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ui.test_browser import (
    CHROMIUM,
    EXPLORE,
    FEATURES_NB,
    FRACTIONS,
    SETUP,
    TOKEN,
    _accept_dialogs,
    _free_port,
    _lab_page,
    _notebook,
    _open_and_run_inner,
    _read_log,
    drag_and_check,
)

pytestmark = [pytest.mark.ui, pytest.mark.slow]

OTHER = os.environ.get("FAULTLENS_UI_JUPYTER")  # the `jupyter` of another environment
FRONT_ENDS = [("notebook", [sys.executable, "-m", "jupyter"], "this environment")]
if OTHER:
    FRONT_ENDS += [
        ("lab", [OTHER], "FAULTLENS_UI_JUPYTER"),
        ("notebook", [OTHER], "FAULTLENS_UI_JUPYTER"),
    ]


def _version(cmd: list[str], app: str) -> str:
    out = subprocess.run([*cmd, app, "--version"], capture_output=True, text=True, timeout=120)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "?"


@pytest.fixture(params=FRONT_ENDS, ids=lambda f: f"{f[0]}-{f[2]}")
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright")
    app, cmd, where = request.param
    root = tmp_path / "root"
    root.mkdir()
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [*cmd, app, "--no-browser", f"--port={port}", f"--ServerApp.token={TOKEN}",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root}", "--allow-root"],
            stdout=fh, stderr=subprocess.STDOUT, cwd=root,
        )  # fmt: skip
    try:
        import urllib.request

        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):  # noqa: S310
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"jupyter {app} did not start:\n{log.read_text()[-2000:]}")
        print(f"\n{app} {_version(cmd, app)} ({where})")
        yield app, url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _open_and_run_notebook7(page, url: str, nb: str) -> None:
    page.goto(f"{url}/notebooks/{nb}?token={TOKEN}")
    page.locator(".jp-Notebook").wait_for(timeout=60000)
    rendered = (
        "() => { const c = document.querySelector('canvas.fl-map');"
        " return !!c && Number(c.dataset.rendered || 0) > 0; }"
    )
    deadline = time.time() + 120
    ran = False
    while time.time() < deadline:
        _accept_dialogs(page)  # "Select Kernel" may appear once on a fresh server
        if not ran and page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count():
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
            ran = True
        if page.evaluate(rendered):
            return
        page.wait_for_timeout(300)
    msg = "the explorer map never rendered in Notebook 7"
    raise AssertionError(msg)


def test_explorer_drags_reach_python_in_each_front_end(server: tuple[str, str, Path]) -> None:
    app, url, root = server
    nb = f"explorer-{uuid.uuid4().hex[:6]}.ipynb"
    (root / nb).write_text(json.dumps(_notebook([SETUP, FEATURES_NB, EXPLORE])))
    with _lab_page(f"frontend-{app}", width=1400, height=1100) as page:
        if app == "lab":
            _open_and_run_inner(page, url, nb)
        else:
            _open_and_run_notebook7(page, url, nb)
        # JupyterLab 4.4 (Binder's) may leave an output below the fold unpainted: bring it in view
        page.locator(".fl-features").first.scroll_into_view_if_needed()
        try:
            page.wait_for_function(  # the FeatureBrowser's strips: every image loaded
                "() => { const t = [...document.querySelectorAll('.fl-features .fl-group img')];"
                " return t.length >= 16 && t.every(i => i.complete && i.naturalWidth > 0); }",
                timeout=60000,
            )
        except Exception:  # say which images are missing and what the widget's status bar says
            print(
                page.evaluate(
                    "() => { const t = [...document.querySelectorAll('.fl-features .fl-group img')];"
                    " return JSON.stringify({n: t.length, src: t.map(i => !!i.getAttribute('src')),"
                    " ok: t.map(i => i.complete && i.naturalWidth > 0),"
                    " status: [...document.querySelectorAll('.fl-features .fl-status')].map(s => s.textContent)}); }"
                )
            )
            raise
        deadline = time.time() + 20
        while not (root / "coords.npy").exists() and time.time() < deadline:
            time.sleep(0.2)
        fractions = FRACTIONS[:10]
        results = drag_and_check(page, root, fractions)
    assert len(results) == len(fractions)
    assert len(_read_log(root / "selections.jsonl")) >= len(fractions)
    print(f"{app}: {len(results)}/{len(fractions)} drags reached Python", results)
