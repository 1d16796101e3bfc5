"""Real-browser check of the slice panel's evidence (JupyterLab + Debian Chromium + Playwright):
slices found on a small planted analysis (tests/planted_evidence.py: stamped coats read as shirts
by a hand-built CNN); a click on a slice shows its evidence pictures (loaded as PNG buffers from
Python), each with a caption; a click on a summary part selects the members Python says carry it;
a column value that looks like markup stays text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ui.test_browser import (
    ARTIFACTS,
    REPO,
    _lab_page,
    _new_entries,
    _notebook,
    _open_and_run,
    _read_log,
    lab,  # noqa: F401 - the JupyterLab fixture
)

pytestmark = pytest.mark.ui

EVIDENCE_NB = r"""
import json, sys, numpy as np
sys.path.insert(0, REPO_ROOT)
from faultlens.ui.explorer import Explorer
from tests.planted_evidence import planted

analysis, truth = planted()
t = analysis.table  # a value that looks like markup must stay text
t["site"] = t["site"].replace("scanner-B", "<b>scanner-B</b>")
ex = Explorer(analysis)
found = ex.find_slices(3)   # described: Grad-CAM maps from the analysis's classifier
with open("evidence.json", "w") as fh:
    json.dump({"members": [np.sort(s.indices).tolist() for s in found],
               "stamped": truth["stamped"].tolist(), "site_b": truth["site_b"].tolist()}, fh)
def log_selection(sel):
    with open("selections.jsonl", "a") as fh:
        fh.write(json.dumps({"source": ex._selection_source, "rows": sel.tolist(),
                             "status": ex.status}) + "\n")
ex.observe_selection(log_selection)
ex
"""


def test_slice_evidence_pictures_and_clickable_parts(lab: tuple[str, Path]) -> None:  # noqa: F811
    url, root = lab
    nb = _notebook([EVIDENCE_NB.replace("REPO_ROOT", repr(str(REPO)))])
    (root / "evidence.ipynb").write_text(json.dumps(nb))
    with _lab_page("evidence", width=1400, height=1300) as page:
        _open_and_run(page, url, "evidence.ipynb")
        page.wait_for_function(
            "() => document.querySelectorAll('.fl-disc-row').length === 3", timeout=60000
        )
        truth = json.loads((root / "evidence.json").read_text())
        k = truth["members"].index(truth["stamped"])  # the slice that is the stamped coats
        log_path = root / "selections.jsonl"
        before = len(_read_log(log_path))
        page.locator(f".fl-disc-row[data-index='{k}']").click()
        entries = _new_entries(log_path, before, "slice row")
        assert entries[-1]["rows"] == truth["stamped"]
        # the evidence under the slice: three pictures from Python, each decoded, each captioned
        figs = f".fl-disc-detail[data-index='{k}'] .fl-evidence-fig"
        page.wait_for_function(
            f'() => {{ const im = [...document.querySelectorAll("{figs} img")];'
            " return im.length === 3 && im.every((i) => i.complete && i.naturalWidth > 0); }",
            timeout=20000,
        )
        captions = page.locator(f"{figs} figcaption").all_text_contents()
        assert captions[0] == "slice: mean map of 40 members"
        assert captions[1].startswith("reference: mean map of")
        assert captions[2].startswith("difference: red = more")
        group = page.locator(f".fl-disc-detail[data-index='{k}'] .fl-evidence-group .fl-source")
        assert group.first.text_content() == "where the model looks (Grad-CAM at features)"
        # the summary: the header and findings; a part that knows its rows is a button
        parts = page.locator(f".fl-disc-detail[data-index='{k}'] .fl-part")
        texts = parts.all_text_contents()
        assert texts[0] == "coat read as shirt"
        assert any(t.startswith("the model's evidence sits top-left") for t in texts)
        site = page.locator(
            f".fl-disc-detail[data-index='{k}'] button.fl-part-link",
            has_text="site = <b>scanner-B</b>: 75% of the slice",
        )
        assert page.locator(".fl-discovered b:text('scanner-B')").count() == 0  # text, not markup
        assert site.get_attribute("title") == "select the 30 images that carry it"
        before = len(_read_log(log_path))
        site.click()
        entries = _new_entries(log_path, before, "summary part")
        assert entries[-1]["rows"] == truth["site_b"]  # Python chose the rows
        assert entries[-1]["source"] == "discovered"
        page.wait_for_function(
            "() => document.querySelector('.fl-selcount')?.dataset.count === '30'", timeout=10000
        )
        page.locator(f".fl-disc-row.fl-active[data-index='{k}']").wait_for(timeout=10000)
        page.wait_for_function(
            "() => document.querySelectorAll('.fl-disc-detail .fl-evidence-fig img').length === 3"
        )
        page.wait_for_timeout(500)
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".fl-discovered").screenshot(path=str(ARTIFACTS / "slice-evidence.png"))
