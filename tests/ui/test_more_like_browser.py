"""Real-browser check of "more like this" from a clicked tile (JupyterLab + Debian Chromium +
Playwright): 30 images planted close together in embedding space (a near-duplicate group) among
2,000; a click on one of them in the grid pins it, "More like this" asks Python, and the selection
that comes back is that image and its 50 nearest neighbours, exactly as a brute-force cosine ranking
computed in the kernel says, the planted group included; the view's count follows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ui.test_browser import (
    SETUP,
    _lab_page,
    _new_entries,
    _notebook,
    _open_and_run,
    _read_log,
    lab,  # noqa: F401 - the JupyterLab fixture
)

pytestmark = pytest.mark.ui

MORE_LIKE_NB = r"""
emb = rng.normal(size=(n, 32)).astype(np.float32)
group = np.arange(100, 130)  # the planted near-duplicates of row 100
emb[group] = emb[100] + 0.05 * rng.normal(size=(30, 32)).astype(np.float32)
analysis = Analysis(table, class_names=names, embeddings=emb,
                    source=ArraySource(images, label, class_names=names))
unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
sims = unit @ unit[100]
sims[100] = -np.inf  # the query itself is selected anyway
nearest = np.lexsort((np.arange(n), -sims))[:50]  # brute force: most similar first, ties by row
with open("expected.json", "w") as fh:
    json.dump({"rows": np.union1d([100], nearest).tolist(), "group": group.tolist()}, fh)
ex = faultlens.explore(analysis)
ex.select([100, 700, 1300])
def log_selection(sel):
    with open("selections.jsonl", "a") as fh:
        fh.write(json.dumps({"source": ex._selection_source, "rows": sel.tolist()}) + "\n")
ex.observe_selection(log_selection)
ex
"""


def test_more_like_this_from_a_clicked_tile(lab: tuple[str, Path]) -> None:  # noqa: F811
    url, root = lab
    (root / "more.ipynb").write_text(json.dumps(_notebook([SETUP, MORE_LIKE_NB])))
    log_path = root / "selections.jsonl"
    with _lab_page("more-like", width=1400, height=1200) as page:
        _open_and_run(page, url, "more.ipynb")
        tile = page.locator(".fl-tiles .fl-tile[data-row='100']")
        tile.wait_for(timeout=30000)
        tile.click()
        page.wait_for_function(
            "() => document.querySelector('.fl-inspector .fl-hint')?.textContent.startsWith('Pinned')",
            timeout=15000,
        )
        before = len(_read_log(log_path))
        page.locator(".fl-more-like").click()
        entries = _new_entries(log_path, before, "more like this")
        expected = json.loads((root / "expected.json").read_text())
        got = entries[-1]
        assert got["rows"] == expected["rows"]  # the pinned image and its 50 nearest, exactly
        assert set(expected["group"]) <= set(got["rows"])  # the planted near-duplicates among them
        page.wait_for_function(
            "() => document.querySelector('.fl-selcount')?.dataset.count === '51' && document"
            ".querySelector('.faultlens-explorer .fl-status')?.textContent"
            ".startsWith('selected 51 images: 1 and their nearest')",
            timeout=15000,
        )
