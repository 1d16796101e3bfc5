"""The FeatureBrowser's mitigation preview (faultlens.ui.mitigation_view) and mitigate's progress,
on a planted shortcut (tests.planted_mitigation): the tiny model leans on a corner cue, so class 0
without the cue is mostly wrong. Marking the cue's feature spurious and previewing must raise that
group; a cancel between epochs must keep the marks and give no result; a mark changed afterwards
flags the preview stale. Threads are coordinated with events, never with sleeps."""

from __future__ import annotations

import html
import itertools
import threading
from typing import Any

import numpy as np
import pytest

from faultlens.analysis import spurious as sp
from faultlens.analysis.mitigation import MitigationResult, SplitFeatures, mitigate, split_features
from faultlens.store import ArtifactStore
from faultlens.ui import mitigation_view, tasks
from tests import planted_mitigation as pm

WAIT = 60
GROUP = "reddish without cue"  # the images the shortcut fails
OPTS = {"lr": 0.03, "epochs": 12, "seed": 0}


@pytest.fixture(scope="module")
def planted() -> tuple[Any, dict, Any]:
    return pm.planted()


@pytest.fixture
def browser(planted, tmp_path) -> Any:
    from faultlens.ui.features import FeatureBrowser

    model, _splits, analysis = planted  # no folder: each browser keeps its marks in memory
    store = ArtifactStore(tmp_path)
    fb = FeatureBrowser(analysis, model, "act", pm.transform, k=3, gap_k=20, store=store,
                        progress=lambda *_: None)  # fmt: skip
    assert fb.annotations_path is None
    return fb


def _splits(planted) -> dict[str, Any]:
    _model, s, _a = planted
    return {"train": pm.split(s["train"]), "val": pm.split(s["val"])}


def test_the_planted_shortcut_fails_the_group_it_should(planted) -> None:
    _model, _s, a = planted
    acc = a.table.groupby("planted_group")["correct"].mean()
    assert acc[GROUP] < 0.4 and acc["reddish with cue"] > 0.9  # the cue drives class 0's answers


def test_mitigate_reports_progress_per_batch_and_per_epoch(planted) -> None:
    model, s, _a = planted
    seen: list[tuple[int, int, str]] = []
    res = mitigate(
        sp.NeuralFeatures(model, "act", batch_size=256), {0: [pm.CUE_FEATURE]},
        pm.split(s["train"]), pm.split(s["val"]), pm.split(s["test"]),
        progress=lambda d, n, stage: seen.append((d, n, stage)), **OPTS,
    )  # fmt: skip
    images = [x for x in seen if x[2] == "images"]
    epochs = [x for x in seen if x[2] == "epochs"]
    total = sum(len(s[k]["labels"]) for k in ("train", "val", "test"))
    assert {n for _d, n, _s in images} == {total} and images[-1][0] == total
    assert all(b[0] > a[0] for a, b in itertools.pairwise(images))  # batch by batch
    assert [d for d, _n, _s in epochs] == list(range(res.epochs_run + 1))
    assert seen.index(epochs[0]) > seen.index(images[-1])  # the network first, then the head


def test_preview_from_python_raises_the_planted_group_and_fills_the_panel(browser, planted) -> None:
    fb = browser
    assert "no train and val images" in fb.mitigation["missing"]  # the button is disabled
    fb.set_mark(0, pm.CUE_FEATURE, "spurious")
    res = fb.preview_mitigation(**_splits(planted), groups="planted_group", **OPTS)
    assert isinstance(res, MitigationResult) and fb.mitigation_result is res
    g = f"group {GROUP} (%)"
    assert res.value(g, "after") >= res.value(g, "before") + 15  # seen: 12.5 % → 47 %
    assert res.value("spurious gap class 0 (points)", "after") < res.value(
        "spurious gap class 0 (points)", "before"
    )
    np.testing.assert_array_equal(res.correct_before, fb.analysis.table["correct"].to_numpy())
    panel = fb.mitigation
    assert panel["missing"] == "" and panel["stale"] is False
    r = panel["result"]
    assert r["selectable"] and r["marks"] == [{"class": 0, "name": "reddish", "features": [2]}]
    row = next(x for x in r["groups"] if x["name"] == GROUP)
    assert row["fixed"] > row["broken"] and row["fixed"] == int(
        ((res.change == "fixed") & (fb.analysis.table["planted_group"] == GROUP)).sum()
    )
    assert r["overall"]["fixed"] == int((res.change == "fixed").sum())
    assert r["worst"]["before"] == pytest.approx(min(x["before"] for x in r["groups"]))
    assert [x["class"] for x in r["gaps"]] == [0]
    assert fb.task["state"] == "done" and fb.task["name"] == "previewing mitigation"
    page = fb.to_html()  # the static copy carries the panel too
    assert "Mitigation preview" in page and f"group {GROUP} (%, n={row['n']})" in page
    # the fixed images of the group are analysis rows: the panel's count selects them
    fb._on_custom_msg(fb, {"type": "select_mitigation", "change": "fixed", "group": GROUP}, [])
    assert len(fb.selection) == row["fixed"]
    assert (fb.analysis.table["planted_group"].to_numpy()[fb.selection] == GROUP).all()


def test_a_second_preview_reuses_the_network_pass(browser, planted, monkeypatch) -> None:
    fb = browser
    fb.set_mark(0, pm.CUE_FEATURE, "spurious")
    calls: list[str] = []
    real = mitigation_view.split_features

    def counted(nf, split, *, name, progress):
        calls.append(name)
        return real(nf, split, name=name, progress=progress)

    monkeypatch.setattr(mitigation_view, "split_features", counted)
    fb.use_splits(**_splits(planted))
    first = fb.preview_mitigation(**OPTS)
    assert calls == ["train", "val", "test"]
    fb.set_mark(1, 0, "spurious")
    second = fb.preview_mitigation(**OPTS)
    assert calls == ["train", "val", "test"]  # only the head retrained
    assert second is not first and fb.mitigation["result"]["marks"][1]["class"] == 1
    fb.use_splits(val=_splits(planted)["val"])  # new val images: only they run again
    fb.preview_mitigation(**OPTS)
    assert calls == ["train", "val", "test", "val"]


def test_cancel_between_epochs_keeps_the_marks_and_gives_no_result(
    browser, planted, monkeypatch
) -> None:
    fb = browser
    fb.set_mark(0, pm.CUE_FEATURE, "spurious")
    fb.use_splits(**_splits(planted), groups="planted_group")
    marks = list(fb.annotations)
    reached, go = threading.Event(), threading.Event()
    epochs: list[int] = []
    real = mitigation_view.mitigate

    def gated(*args, progress, **kw):
        def step(done: int, total: int, stage: str) -> None:
            epochs.append(done)
            if done == 3:  # after epoch 3, wait for the test's Cancel
                reached.set()
                assert go.wait(WAIT)
            progress(done, total, stage)

        return real(*args, progress=step, **kw)

    monkeypatch.setattr(mitigation_view, "mitigate", gated)
    monkeypatch.setattr(tasks, "MIN_INTERVAL", 0.0)  # every update reaches the view
    assert fb.mitigation["missing"] == ""
    fb._on_custom_msg(fb, {"type": "preview_mitigation"}, [])  # the button
    assert reached.wait(WAIT)
    assert fb.task["name"] == "previewing mitigation" and fb.task["state"] == "running"
    assert fb.task["text"].startswith("training the head: epoch")
    fb._on_custom_msg(fb, {"type": "cancel"}, [])
    go.set()
    assert fb.wait_task(WAIT)
    assert epochs[-1] == 3  # no epoch after the cancel
    assert fb.task["state"] == "cancelled"
    assert fb.status == (
        "previewing mitigation cancelled: no result; the marks and the earlier preview are "
        "unchanged"
    )
    assert fb.mitigation_result is None and fb.mitigation["result"] is None
    assert fb.annotations == marks and fb.spurious_features() == {0: [pm.CUE_FEATURE]}
    # the network pass finished before the cancel is kept: the next preview only trains
    assert set(fb._split_feats) == {"train", "val", "test"}
    monkeypatch.setattr(mitigation_view, "mitigate", real)
    fb._on_custom_msg(fb, {"type": "preview_mitigation"}, [])
    assert fb.wait_task(WAIT)
    assert fb.task["state"] == "done" and fb.mitigation["result"] is not None


def test_marks_changed_after_a_preview_flag_it_stale(browser, planted) -> None:
    fb = browser
    fb.set_mark(0, pm.CUE_FEATURE, "spurious")
    fb.preview_mitigation(**_splits(planted), **OPTS)
    shown = fb.mitigation["result"]
    assert fb.mitigation["stale"] is False
    fb.set_mark(0, 0, "spurious")
    assert fb.mitigation["stale"] is True and fb.mitigation["result"] == shown  # still shown
    fb.set_mark(0, 0, "core")  # a core mark does not change what a preview uses
    assert fb.mitigation["stale"] is False
    fb.set_mark(0, pm.CUE_FEATURE, "")
    assert fb.mitigation["stale"] is True
    assert "marked spurious" in fb.mitigation["missing"]  # and the button is disabled again


def test_bad_input_says_what_to_do(browser, planted) -> None:
    fb = browser
    good = _splits(planted)
    with pytest.raises(ValueError, match=r"no feature of layer act is marked spurious: mark one"):
        fb.preview_mitigation(**good)
    fb._on_custom_msg(fb, {"type": "preview_mitigation"}, [])  # the button (were it enabled)
    assert fb.status.startswith("cannot preview mitigation: no feature of layer act is marked")
    assert fb.mitigation_result is None and not fb.task_running
    fb.set_mark(0, pm.CUE_FEATURE, "spurious")
    x, y = good["train"]
    cases = [
        ({"train": (x, y[:-10])}, "train has 1200 images but 1190 labels"),
        ({"val": (x[:, 0], y)}, r"val images must be \(n, C, H, W\)"),
        ({"val": (x, y, y)}, r"val must be \(images, labels\) or SplitFeatures"),
        ({"train": (x, y + 5)}, r"train labels must be class indices 0..1"),
        ({"train": (x[:, :, :2, :2][:, :1], y)}, "train images: the model"),
        ({"groups": np.zeros(7)}, "groups has 7 entries but test has 600 images"),
        ({"groups": "no_such_column"}, "groups='no_such_column': the analysis has no such"),
    ]
    for bad, message in cases:
        fb._splits = {}
        fb._split_feats = {}
        with pytest.raises(ValueError, match=message):
            fb.preview_mitigation(**{**good, **bad}, **OPTS)
        assert fb.mitigation_result is None and fb.task["state"] == "error"
    assert fb.annotations[0]["mark"] == "spurious"  # nothing lost


def test_split_features_match_the_separate_passes(planted) -> None:
    from faultlens.analysis.mitigation import head_inputs

    model, s, _a = planted
    nf = sp.NeuralFeatures(model, "act", batch_size=100)
    x, y = pm.split(s["val"])
    f = split_features(nf, (x, y), name="val")
    assert isinstance(f, SplitFeatures) and len(f) == len(y)
    np.testing.assert_allclose(f.acts, nf.activations(x), rtol=1e-6)
    np.testing.assert_allclose(f.head_in, head_inputs(model, model.head, x), rtol=1e-6)


def test_the_static_panel_escapes_every_name() -> None:
    evil = "<img src=x onerror=alert(1)>"
    state = {"stale": True, "result": {
        "overall": {"before": 50.0, "after": 60.0}, "worst": None,
        "gaps": [{"name": evil, "before": 30.0, "after": None}],
        "groups": [{"name": evil, "n": 3, "before": 0.0, "after": 100.0, "fixed": 3, "broken": 0}],
    }}  # fmt: skip
    page = mitigation_view.mitigation_html(state)
    assert evil not in page and page.count(html.escape(evil)) == 2
    assert "(stale: the marks changed since)" in page and "<td>–</td>" in page
    assert mitigation_view.mitigation_html({}) == ""
