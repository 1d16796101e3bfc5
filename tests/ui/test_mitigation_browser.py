"""Real-browser check of the FeatureBrowser's mitigation preview (faultlens.ui.mitigation_view,
js/src/features/mitigation.js): JupyterLab + Debian Chromium driven by Playwright, as in
test_browser.py.

The notebook builds the planted shortcut of tests.planted_mitigation (a tiny model that leans on a
corner cue), a FeatureBrowser given the splits with the cue's feature marked spurious, and one
without splits. The test checks that the second one's button is disabled with a tooltip saying
what is missing, clicks "Preview mitigation" on the first, sees the progress bar move, then the
before/after panel with the planted group; a count button selects that group's fixed images in
Python; a new mark flags the panel stale. Training is slowed (a pause per epoch) so the bar is seen.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.ui.test_browser import (  # noqa: F401 - lab is a fixture
    ARTIFACTS,
    REPO,
    TOKEN,
    _accept_dialogs,
    _lab_page,
    _notebook,
    lab,
)

pytestmark = pytest.mark.ui

NB = r"""
import json, sys, time
sys.path.insert(0, REPO_ROOT)
from faultlens.ui import mitigation_view
from faultlens.ui.features import FeatureBrowser
from tests import planted_mitigation as pm

model, s, analysis = pm.planted()
splits = {"train": pm.split(s["train"]), "val": pm.split(s["val"]), "groups": "planted_group"}
fb = FeatureBrowser(analysis, model, "act", pm.transform, k=3, gap_k=20, splits=splits)
fb.set_mark(0, pm.CUE_FEATURE, "spurious")

real = mitigation_view.mitigate
def slow(*args, progress, **kw):  # a slow head training: a pause after each epoch
    def step(done, total, stage):
        time.sleep(0.15)
        progress(done, total, stage)
    return real(*args, progress=step, **kw)
mitigation_view.mitigate = slow

def log(change):
    if fb.mitigation_result is None:
        return
    fixed = fb.mitigation_rows("fixed", "reddish without cue").tolist()
    with open("selection.json", "w") as fh:
        json.dump({"rows": fb.selection.tolist(), "fixed": fixed}, fh)
fb.observe(log, names=["_selection"])
fb
"""

NB_BARE = r"""
FeatureBrowser(analysis, model, "act", pm.transform, k=3, gap_k=20)  # no splits: nothing to run
"""

FB = ".fl-features"


def _open(page, url: str, nb: str) -> None:
    """Open ``nb`` in a fresh workspace, run all cells, wait for two FeatureBrowsers."""
    import uuid

    page.goto(f"{url}/lab/workspaces/{uuid.uuid4().hex[:10]}/tree/{nb}?token={TOKEN}&reset")
    page.add_style_tag(content=".Toastify { display: none !important; }")
    idle = (
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"
    )
    deadline = time.time() + 60
    while time.time() < deadline and not page.locator(idle).count():
        _accept_dialogs(page)
        page.wait_for_timeout(300)
    page.locator(idle).wait_for(timeout=5000)
    page.wait_for_timeout(500)
    _accept_dialogs(page)
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputPrompt").first.click()
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
    deadline = time.time() + 120
    while time.time() < deadline and page.locator(f"{FB} button.fl-mitigate").count() < 2:
        _accept_dialogs(page)
        page.wait_for_timeout(300)
    assert page.locator(f"{FB} button.fl-mitigate").count() == 2, "the browsers never rendered"


def test_preview_mitigation_shows_progress_then_the_before_after_panel(
    lab: tuple[str, Path],  # noqa: F811 - the fixture imported above
) -> None:
    url, root = lab
    cells = [NB.replace("REPO_ROOT", repr(str(REPO))), NB_BARE]
    (root / "mitigation.ipynb").write_text(json.dumps(_notebook(cells)))
    with _lab_page("mitigation", width=1400, height=1600) as page:
        _open(page, url, "mitigation.ipynb")
        first, bare = page.locator(FB).nth(0), page.locator(FB).nth(1)
        # without splits the button is disabled, and its tooltip says what to give
        bare_btn = bare.locator("button.fl-mitigate")
        page.wait_for_function(
            "() => document.querySelectorAll('.fl-features button.fl-mitigate')[1]"
            "?.title.includes('no train and val images')",
            timeout=30000,
        )
        assert bare_btn.is_disabled() and "fb.use_splits(" in (
            bare_btn.get_attribute("title") or ""
        )
        assert bare.locator(".fl-mitigation").is_hidden()
        # with them (and a spurious mark) it runs: the bar moves, then the panel shows
        button = first.locator("button.fl-mitigate:not([disabled])")
        button.wait_for(timeout=30000)
        first.scroll_into_view_if_needed()
        button.click()
        bar = first.locator(".fl-task [role=progressbar]")
        bar.wait_for(state="visible", timeout=15000)
        page.wait_for_function(
            "() => Number(document.querySelector('.fl-features .fl-task [role=progressbar]')"
            "?.getAttribute('aria-valuenow') || 0) > 0",
            timeout=30000,
        )
        assert "previewing mitigation" in (bar.get_attribute("aria-valuetext") or "")
        assert first.locator("button.fl-mitigate").is_disabled()  # one task at a time
        panel = first.locator(".fl-mitigation .fl-mgroups")
        panel.wait_for(timeout=90000)
        assert first.locator(".fl-task").is_hidden()
        text = first.locator(".fl-mitigation").inner_text()
        assert "worst-group accuracy" in text and "spurious gap: reddish" in text
        row = first.locator(".fl-mgroups tr", has_text="reddish without cue")
        assert "→" in row.inner_text()
        assert first.locator(".fl-mstale").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        first.locator(".fl-mitigation").screenshot(path=str(ARTIFACTS / "mitigation-panel.png"))
        # the group's "fixed" count selects those images in Python
        row.locator("button.fl-mfixed").click()
        path = root / "selection.json"
        deadline = time.time() + 20
        while time.time() < deadline and not path.exists():
            time.sleep(0.2)
        got = json.loads(path.read_text())
        assert got["rows"] == got["fixed"] and len(got["rows"]) > 0
        # another spurious mark: the panel says it is stale
        first.locator("button.fl-feat").first.click()
        page.wait_for_timeout(500)
        spurious = first.locator("button.fl-markbtn", has_text="spurious")
        if spurious.get_attribute("aria-pressed") == "true":  # the cue's own feature is shown
            first.locator("button.fl-feat").nth(1).click()
            page.wait_for_timeout(500)
        spurious.click()
        first.locator(".fl-mstale").wait_for(timeout=10000)
        first.screenshot(path=str(ARTIFACTS / "mitigation-browser.png"))
