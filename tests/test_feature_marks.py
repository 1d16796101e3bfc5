"""FeatureBrowser marks made before the analysis had a folder survive ``analysis.save(folder)``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from faultlens.analysis.result import Analysis
from faultlens.data.sources import ArraySource
from tests.helpers import TinyNet, blob_images, tiny_transform


@pytest.fixture
def browser() -> tuple[Analysis, Any]:
    """An analysis of 30 tiny images without a folder, and a FeatureBrowser on it."""
    from faultlens.ui.features import FeatureBrowser

    imgs, labels = blob_images(30)
    preds = labels.copy()
    preds[:4] = (labels[:4] + 1) % 3
    table = pd.DataFrame({"id": [str(i) for i in range(30)], "label": labels, "pred": preds,
                          "correct": preds == labels, "source_index": np.arange(30)})  # fmt: skip
    a = Analysis(table, class_names=["r", "g", "b"], source=ArraySource(imgs, labels))
    return a, FeatureBrowser(a, TinyNet().eval(), "conv", tiny_transform, k=3, gap_k=5)


def _marks(path: Path) -> dict[tuple[int, int], str]:
    return {(m["class"], m["feature"]): m["mark"] for m in json.loads(path.read_text())["marks"]}


def test_memory_marks_move_into_the_folder_on_save(
    browser: tuple[Analysis, Any], tmp_path: Path
) -> None:
    a, fb = browser
    c = fb.class_index
    f0, f1, f2 = (f["feature"] for f in fb.features[:3])
    fb._on_custom_msg(fb, {"type": "set_mark", "mark": "spurious"}, [])  # as JS does, first feature
    fb.set_mark(c, f1, "core")
    fb.set_mark(c, f2, "spurious")
    assert "memory" in fb.status
    # the folder already holds marks of another session: one the same, one older and different
    folder = tmp_path / "an"
    folder.mkdir()
    old = {"layer": "conv", "class": c, "class_name": "x", "updated": "2000-01-01T00:00:00+00:00"}
    other = {**old, "class": (c + 1) % 3, "feature": 0, "mark": "core"}
    (folder / "annotations.json").write_text(json.dumps({"format": 1, "marks": [
        {**old, "feature": f1, "mark": "core"}, {**old, "feature": f2, "mark": "core"}, other,
    ]}))  # fmt: skip
    a.save(folder)
    assert fb.spurious_features() == {c: sorted([f0, f2])}  # the memory marks are still there …
    path = folder / "annotations.json"
    # … stored together with the file's; f2's newer mark (from memory) replaced the older one
    assert _marks(path) == {
        (c, f0): "spurious",
        (c, f1): "core",
        (c, f2): "spurious",
        ((c + 1) % 3, 0): "core",
    }
    assert "moved 3 mark(s)" in fb.status and "replaced" in fb.status  # the conflict is named
    assert fb.marks.store.in_memory == 0
    assert {m["feature"] for m in fb.annotations if m["class"] == c} == {f0, f1, f2}
    fb.refresh_marks()
    assert fb.mark == "spurious" and fb.features[0]["mark"] == "spurious"
    fb.feature = f1
    assert fb.mark == "core"
    fb.set_mark(c, f1, "")  # later edits go to the file
    assert (c, f1) not in _marks(path)


def test_malformed_marks_in_the_file_are_ignored_kept_and_named(
    browser: tuple[Analysis, Any], tmp_path: Path
) -> None:
    a, fb = browser
    folder = tmp_path / "an"
    folder.mkdir()
    good = {"layer": "conv", "class": 1, "feature": 2, "mark": "spurious"}
    bad = [{"layer": "conv", "feature": 3, "mark": "core"},  # no class
           {"layer": "conv", "class": "x", "feature": 1, "mark": "core"},
           {"layer": "conv", "class": 0, "feature": 1, "mark": "maybe"}, "not a dict"]  # fmt: skip
    (folder / "annotations.json").write_text(json.dumps({"format": 1, "marks": [good, *bad]}))
    a.save(folder)
    fb.refresh_marks()
    assert fb.spurious_features() == {1: [2]}
    assert "4 entry(ies)" in fb.status and "ignored" in fb.status
    fb.set_mark(0, 5, "core")  # a new mark: the file keeps the entries it could not use
    stored = json.loads((folder / "annotations.json").read_text())["marks"]
    assert all(b in stored for b in bad) and good in stored
    assert fb.spurious_features() == {1: [2]} and (0, 5) in {
        (m["class"], m["feature"]) for m in fb.annotations
    }
