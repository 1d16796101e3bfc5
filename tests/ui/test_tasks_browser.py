"""Real-browser check of a long job's progress bar and Cancel button (faultlens.ui.tasks,
js/src/shared/task.js): JupyterLab + Debian Chromium driven by Playwright, as in test_browser.py.

The notebook describes a planted cluster once (the description to keep), then makes its fake
captioner slow. The test presses "Describe selection", watches the progress bar move, presses
Cancel, and checks that Python got the cancel and that the selection and the earlier description
are as they were, three times. How long the cancel took (kernel side: the cancel message to the
job's end; page side: the click to the bar hiding) is printed, never asserted.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from tests.ui.test_browser import (  # noqa: F401 - lab: the JupyterLab fixture
    EXPLORE,
    FEATURES_NB,
    REPO,
    SETUP,
    _lab_page,
    _notebook,
    _open_and_run,
    lab,
)

pytestmark = pytest.mark.ui

NB = r"""
import json, sys, time, numpy as np
sys.path.insert(0, REPO_ROOT)
from faultlens.ui.explorer import Explorer
from tests.helpers import planted_cluster

analysis, cluster = planted_cluster(800, cluster=100, wrong=90, extra_errors=0, image_px=16,
                                    ids="img-{:04d}")

class SlowFakeCaptioner:
    name = "slow fake"
    delay = 0.0
    def caption(self, images):
        time.sleep(self.delay)  # a slow model: one batch of captions takes `delay` seconds
        return ["a red logo" if i % 2 else "a plain shirt" for i, _ in enumerate(images)]

cap = SlowFakeCaptioner()
ex = Explorer(analysis, captioner=cap)
ex.select(cluster)
ex.describe_selection()  # the description a cancelled describe must keep
def state():
    return {"descriptions": ex.descriptions, "selection": ex.selection.tolist()}
with open("before.json", "w") as fh:
    json.dump(state(), fh)
cap.delay = 0.5

def log_task(change):
    t = change["new"]
    with open("tasks.jsonl", "a") as fh:
        fh.write(json.dumps({**t, "clock": time.monotonic()}) + "\n")
    if t.get("state") == "cancelled":
        with open("after.jsonl", "a") as fh:
            fh.write(json.dumps({**state(), "status": ex.status}) + "\n")
ex.observe(log_task, names=["task"])
ex
"""

BAR = ".faultlens-explorer .fl-task"


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_cancel_a_long_describe_keeps_the_selection_and_the_description(
    lab: tuple[str, Path],  # noqa: F811 - the fixture imported above
) -> None:
    url, root = lab
    (root / "cancel.ipynb").write_text(
        json.dumps(_notebook([NB.replace("REPO_ROOT", repr(str(REPO)))]))
    )
    kernel_ms: list[float] = []
    page_ms: list[float] = []
    with _lab_page("cancel", width=1400, height=1400) as page:
        _open_and_run(page, url, "cancel.ipynb")
        page.locator(".fl-desc-item .fl-source").first.wait_for(timeout=30000)
        before = json.loads((root / "before.json").read_text())
        n_items = page.locator(".fl-desc-item").count()
        assert page.locator(BAR).is_hidden()  # shown only while a job runs
        for attempt in range(3):
            page.locator("button.fl-describe").click()
            bar = page.locator(f"{BAR} [role=progressbar]")
            bar.wait_for(state="visible", timeout=15000)
            # the bar moves: its value grows while the captions come, batch by batch
            page.wait_for_function(
                f"() => Number(document.querySelector('{BAR} [role=progressbar]')"
                "?.getAttribute('aria-valuenow') || 0) > 0",
                timeout=30000,
            )
            first = int(bar.get_attribute("aria-valuenow") or 0)
            page.wait_for_function(
                f"() => Number(document.querySelector('{BAR} [role=progressbar]')"
                f"?.getAttribute('aria-valuenow') || 0) > {first}",
                timeout=30000,
            )
            assert "describing" in (bar.get_attribute("aria-valuetext") or "")
            if attempt == 0:
                (REPO / "test-artifacts").mkdir(exist_ok=True)
                page.locator(BAR).screenshot(path=str(REPO / "test-artifacts" / "task-bar.png"))
            # Cancel: time from the click to the bar hiding, measured in the page
            elapsed = page.evaluate(
                """(sel) => new Promise((done) => {
                    const node = document.querySelector(sel);
                    const t0 = performance.now();
                    const obs = new MutationObserver(() => {
                        if (node.hidden) { obs.disconnect(); done(performance.now() - t0); }
                    });
                    obs.observe(node, { attributes: true, attributeFilter: ["hidden"] });
                    node.querySelector(".fl-task-cancel").click();
                })""",
                BAR,
            )
            page_ms.append(float(elapsed))
            page.wait_for_function(
                "() => document.querySelector('.fl-status')?.textContent"
                " === 'describing cancelled: the previous description is kept'",
                timeout=10000,
            )
            # Python got the cancel: the job ended cancelled, the state as it was before
            after = _lines(root / "after.jsonl")
            assert len(after) == attempt + 1
            assert after[-1]["descriptions"] == before["descriptions"]
            assert after[-1]["selection"] == before["selection"]
            tasks = _lines(root / "tasks.jsonl")
            asked = [t["clock"] for t in tasks if t["text"] == "cancelling…"]
            ended = [t["clock"] for t in tasks if t["state"] == "cancelled"]
            assert len(asked) == len(ended) == attempt + 1
            kernel_ms.append(1000 * (ended[-1] - asked[-1]))
            # the view: the earlier description still shown, the describe button back
            assert page.locator(".fl-desc-item").count() == n_items
            assert page.locator(".fl-desc-state").text_content() == ""
            page.locator("button.fl-describe:not([disabled])").wait_for(timeout=5000)
        page.locator(".faultlens-explorer").screenshot(
            path=str(REPO / "test-artifacts" / "cancelled.png")
        )
    print(
        f"\ncancel latency, median of {len(kernel_ms)}: kernel (cancel message -> job ended) "
        f"{statistics.median(kernel_ms):.0f} ms {[round(x) for x in kernel_ms]}; page (click -> "
        f"bar hidden) {statistics.median(page_ms):.0f} ms {[round(x) for x in page_ms]}"
    )


# the FeatureBrowser of test_browser.py, but its model slow and its activations computed in the
# background into an empty cache
SLOW_FEATURES = (
    FEATURES_NB.split("analysis.save(")[0]
    + r"""
import tempfile, time
from faultlens.store import ArtifactStore

class SlowNet(Net):
    def forward(self, x):
        time.sleep(0.5)  # one batch of 50 images takes half a second: 2,000 take 20 s
        return super().forward(x)

fb = FeatureBrowser(analysis, SlowNet().eval(), "conv", transform, k=4, gap_k=20, batch_size=50,
                    store=ArtifactStore(tempfile.mkdtemp()), background=True)
def log_task(change):
    with open("fb-tasks.jsonl", "a") as fh:
        fh.write(json.dumps({**change["new"], "ready": fb.ready, "status": fb.status}) + "\n")
fb.observe(log_task, names=["task"])
fb
"""
)


def test_feature_browser_shows_its_background_job_and_cancels_it(
    lab: tuple[str, Path],  # noqa: F811 - the fixture imported above
) -> None:
    url, root = lab
    (root / "fb-cancel.ipynb").write_text(json.dumps(_notebook([SETUP, SLOW_FEATURES, EXPLORE])))
    bar_sel = ".fl-features .fl-task"
    with _lab_page("fb-cancel", width=1400, height=1200) as page:
        _open_and_run(page, url, "fb-cancel.ipynb")  # the explorer in the last cell renders last
        bar = page.locator(f"{bar_sel} [role=progressbar]")
        bar.wait_for(state="visible", timeout=30000)  # the widget is there while the model runs
        value = f"Number(document.querySelector('{bar_sel} [role=progressbar]')?.getAttribute('aria-valuenow') || 0)"
        page.wait_for_function(f"() => {value} > 0", timeout=30000)
        first = int(bar.get_attribute("aria-valuenow") or 0)
        page.wait_for_function(f"() => {value} > {first}", timeout=30000)  # it moves
        assert "computing features" in (bar.get_attribute("aria-valuetext") or "")
        page.locator(f"{bar_sel} .fl-task-cancel").click()
        page.locator(bar_sel).wait_for(state="hidden", timeout=15000)
        page.wait_for_function(
            "() => document.querySelector('.fl-features .fl-status')?.textContent"
            ".startsWith('computing features cancelled: finished shards stay cached')",
            timeout=15000,
        )
    tasks = _lines(root / "fb-tasks.jsonl")
    assert tasks[-1]["state"] == "cancelled" and not tasks[-1]["ready"]  # Python stopped the job
    assert any(t["state"] == "running" and 0 < t["done"] < t["total"] for t in tasks)
