"""The Explorer without a browser: set the state the front end would set, check what Python computes.

Planted data: 400 points in 4 classes; class 3's points 0..39 (rows ≡ 3 mod 4, first 40 of them)
are all wrong (predicted 0), and 20 more errors are spread over class 1. Overall error rate 60/400.
"""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

from faultlens.analysis.records import check_slice_name
from faultlens.analysis.result import Analysis
from faultlens.analysis.stats import selection_stats, wilson_interval
from faultlens.render.colors import encode_color
from faultlens.ui.explorer import Explorer
from tests.helpers import analysis_from, planted_cluster

EVIL = "<img src=x onerror=alert(1)>"
N = 400


def make_analysis(
    n: int = N, *, names: list[str] | None = None, folder: Path | None = None, paths: bool = False
) -> Analysis:
    rng = np.random.default_rng(0)
    names = names or ["zero", "one", "two", "three"]
    label = np.arange(n) % 4
    pred = label.copy()
    class3 = np.flatnonzero(label == 3)
    pred[class3[:40]] = 0
    class1 = np.flatnonzero(label == 1)
    pred[class1[:20]] = 2
    conf = np.linspace(0.3, 1.0, n).astype(np.float32)
    xy = rng.normal(0, 0.3, (n, 2)).astype(np.float32) + np.array([[-0.5, -0.5], [0.5, -0.5],
                                                                   [-0.5, 0.5], [0.5, 0.5]],
                                                                  dtype=np.float32)[label]  # fmt: skip
    images = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    return analysis_from(
        label, pred, names, xy=xy, confidence=conf, loss=(1.0 - conf) + (pred != label),
        probs=np.full((n, 4), 0.1, dtype=np.float32), images=images, folder=folder,
        paths=[f"/data/{EVIL}/{i}.png" if paths else None for i in range(n)],
        columns={"group": np.where(np.arange(n) % 2, "odd", EVIL), "score": rng.normal(size=n)},
    )  # fmt: skip


@pytest.fixture
def analysis() -> Analysis:
    return make_analysis()


def static_copy(ex: Explorer) -> tuple[bytes, str]:
    """The PNG and HTML of the Explorer's static copy (what nbconvert/GitHub show)."""
    data, _meta = ex._repr_mimebundle_()
    return base64.b64decode(data["image/png"]), data["text/html"]


def js_select(ex: Explorer, rows: np.ndarray, source: str = "box") -> None:
    """Do what the front end does after a box/lasso: a "select" message with the rows as uint32."""
    content = {"type": "select", "source": source, "view": "test-view"}
    ex._handle_custom_msg(content, [memoryview(np.asarray(rows, dtype="<u4").tobytes())])


# ----------------------------------------------------------------------------- stats


def test_wilson_interval_matches_hand_computation() -> None:
    lo, hi = wilson_interval(40, 40)
    z = 1.959963984540054
    assert hi == 1.0
    assert lo == pytest.approx(40 / (40 + z * z), rel=1e-12)  # k = n: lower bound n/(n+z²)
    lo, hi = wilson_interval(60, 400)
    p, n = 0.15, 400
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert lo < p < hi
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(3, 2)


def test_selection_stats_on_planted_errors() -> None:
    a = make_analysis()
    t = a.table
    sel = np.flatnonzero((t.label == 3) & ~t.correct)
    out = selection_stats(
        sel, np.arange(N), labels=t.label.to_numpy(), preds=t.pred.to_numpy(),
        correct=t.correct.to_numpy(), class_names=a.class_names,
    )  # fmt: skip
    assert out["selection"]["n"] == 40
    assert out["selection"]["error_rate"] == 1.0
    assert out["baseline"]["error_rate"] == pytest.approx(60 / 400)
    assert out["lift"] == pytest.approx(1 / (60 / 400))
    assert out["class_mix"] == [
        {"label": 3, "name": "three", "n": 40, "share": 1.0, "baseline_share": 0.25}
    ]
    assert out["confusions"] == [
        {"label": 3, "pred": 0, "label_name": "three", "pred_name": "zero", "n": 40,
         "share_of_errors": 1.0}
    ]  # fmt: skip
    json.dumps(out, allow_nan=False)  # JSON-safe as synced


# ----------------------------------------------------------------------------- selection


def test_js_selection_reaches_python_and_stats(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    seen: list[np.ndarray] = []
    ex.observe_selection(lambda s: seen.append(s.copy()))
    t = analysis.table
    sel = np.flatnonzero((t.label == 3) & ~t.correct)
    js_select(ex, sel)
    assert np.array_equal(ex.selection, sel)
    assert len(seen) == 1
    s = ex.stats
    assert s["selection"]["error_rate"] == 1.0
    assert s["lift"] == pytest.approx(400 / 60)
    lo, hi = wilson_interval(40, 40)
    assert (s["selection"]["ci_low"], s["selection"]["ci_high"]) == pytest.approx((lo, hi))
    assert s["confusions"][0]["n"] == 40
    # identical re-selection still fires (the counter changes)
    js_select(ex, sel)
    assert len(seen) == 2
    # the selection is a read-only view
    with pytest.raises(ValueError, match="read-only"):
        ex.selection[0] = 1
    assert ex.selected_frame["id"].tolist() == t.id.iloc[sel].tolist()


def test_every_selection_message_is_applied_in_order_and_answered(
    analysis: Analysis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view's selections arrive as messages (never merged as trait updates are while the
    kernel is busy): each one is applied, fires the callbacks, bumps the counter and is answered
    to its view, also one whose buffer is broken."""
    ex = Explorer(analysis)
    sent: list[dict] = []
    monkeypatch.setattr(ex, "send", lambda content, buffers=None: sent.append(content))
    seen: list[list[int]] = []
    ex.observe_selection(lambda sel: seen.append(sel.tolist()))
    picks = [[1, 2, 3], [7], [], [9, 4, 9]]
    for k, rows in enumerate(picks):
        source = ["box", "lasso", "box", "<b>tool</b>"][k]
        msg = {"type": "select", "source": source, "view": f"v{k % 2}"}
        ex._handle_custom_msg(msg, [np.asarray(rows, dtype="<u4").tobytes()])
    assert seen == [[1, 2, 3], [7], [], [4, 9]]  # every one, in order
    assert ex._selection_counter == 4
    assert ex._selection_source == "view"  # an unknown tool name is not taken over
    assert [m for m in sent if m["type"] == "selected"] == [
        {"type": "selected", "view": v} for v in ["v0", "v1", "v0", "v1"]
    ]
    for broken, says in [
        (b"\x01\x02\x03", "buffer size"),
        (np.uint32([5, 10**6]).tobytes(), "1000000"),
    ]:
        sent.clear()
        ex._handle_custom_msg({"type": "select", "source": "box", "view": "v0"}, [broken])
        assert sent == [{"type": "selected", "view": "v0"}]  # answered: the view stops waiting
        assert ex.status.startswith("select:") and says in ex.status, ex.status
        assert ex.selection.tolist() == [4, 9] and len(seen) == 4  # the last good one is kept


def test_select_from_python_updates_traits(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    counter = ex._selection_counter
    ex.select(analysis.table.correct.to_numpy() == False)  # noqa: E712 - a bool mask
    assert ex._selection_counter == counter + 1
    assert ex._selection_source == "python"
    got = np.frombuffer(ex._selection, dtype="<u4")
    assert np.array_equal(got, np.flatnonzero(~analysis.table.correct.to_numpy()))
    assert ex.stats["selection"]["n"] == 60
    ex.select([5, 5, 3])
    assert ex.selection.tolist() == [3, 5]


@pytest.mark.parametrize(
    ("rows", "error", "match"),
    [
        ([N], IndexError, "out of range"),
        ([-1], IndexError, "out of range"),
        ([0.5], TypeError, "integer row indices"),
        (np.ones(3, dtype=bool), ValueError, "one entry per row"),
        (np.zeros((2, 2), dtype=int), ValueError, "1-D"),
    ],
)
def test_select_validation(analysis: Analysis, rows: object, error: type, match: str) -> None:
    ex = Explorer(analysis)
    with pytest.raises(error, match=match):
        ex.select(rows)


def test_selection_edge_cases(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    js_select(ex, np.zeros(0, dtype=int))
    assert ex.stats["selection"]["n"] == 0
    assert ex.stats["selection"]["error_rate"] is None
    assert ex.stats["lift"] is None
    assert ex._grid["tiles"] == []
    assert ex._grid["total"] == 0
    js_select(ex, [7])  # one point, class 3, wrong
    assert ex.stats["selection"]["n"] == 1
    assert ex.stats["selection"]["error_rate"] == 1.0
    assert [tile["row"] for tile in ex._grid["tiles"]] == [7]
    js_select(ex, np.arange(N))  # everything
    assert ex.stats["selection"]["error_rate"] == pytest.approx(0.15)
    assert ex.stats["lift"] == pytest.approx(1.0)
    assert ex._grid["total"] == N
    assert ex._grid["n_pages"] == math.ceil(N / ex.page_size)
    with pytest.raises(traitlets.TraitError, match="multiple of 4"):
        ex._selection = b"abc"


def test_callback_errors_are_kept_not_lost(analysis: Analysis) -> None:
    ex = Explorer(analysis)

    def broken(_sel: np.ndarray) -> None:
        raise RuntimeError("boom")

    ex.observe_selection(broken)
    js_select(ex, [1, 2])
    assert ex.selection.tolist() == [1, 2]
    assert "boom" in ex.callback_errors[-1]
    assert "boom" in ex.status


def test_selection_is_an_observable_trait_and_links(analysis: Analysis) -> None:
    import ipywidgets

    ex = Explorer(analysis)
    changes: list[np.ndarray] = []
    seen_stats: list[int] = []

    def on_change(change: dict) -> None:
        changes.append(change["new"])
        seen_stats.append(ex.stats["selection"]["n"])  # already the new selection's

    ex.observe(on_change, names="selection")
    js_select(ex, [4, 8])
    assert [c.tolist() for c in changes] == [[4, 8]] and seen_stats == [2]
    js_select(ex, [4, 8])  # the same rows again: no change (observe_selection still fires)
    assert len(changes) == 1
    ex.selection = np.array([1, 1, 2])  # assigning selects, as select() does
    assert ex.selection.tolist() == [1, 2] and ex._selection_source == "python"
    assert np.frombuffer(ex._selection, dtype="<u4").tolist() == [1, 2]  # sent to the view
    assert ex.stats["selection"]["n"] == 2 and changes[-1].tolist() == [1, 2]
    assert ex.selection.dtype == np.uint32 and not ex.selection.flags.writeable
    with pytest.raises(IndexError, match="out of range"):
        ex.selection = [N]
    assert ex.selection.tolist() == [1, 2]  # a refused value changes nothing
    # two views of one analysis, linked both ways (ipywidgets.link compares with `!=`, which a
    # numpy array does not answer with one bool: two dlinks do the same)
    other = Explorer(make_analysis())
    there = ipywidgets.dlink((ex, "selection"), (other, "selection"))
    back = ipywidgets.dlink((other, "selection"), (ex, "selection"))
    js_select(ex, [5, 6, 7])  # a lasso on one map selects the same rows on the other
    assert other.selection.tolist() == [5, 6, 7] and other.stats["selection"]["n"] == 3
    other.select([9])
    assert ex.selection.tolist() == [9] and ex.stats["selection"]["n"] == 1
    there.unlink()
    back.unlink()
    assert "selection" not in ex.get_state()  # the wire carries _selection only, once


def test_js_rows_beyond_the_table_are_refused(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    js_select(ex, [1, 2])
    with pytest.raises(traitlets.TraitError, match=f"row index {N}"):
        ex._selection = np.asarray([3, N], dtype="<u4").tobytes()
    assert ex.selection.tolist() == [1, 2]


def test_removed_selection_callbacks_are_not_called(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    seen: list[int] = []
    remove = ex.observe_selection(lambda s: seen.append(len(s)))
    js_select(ex, [1])
    remove()
    js_select(ex, [1, 2])
    assert seen == [1]
    with pytest.raises(TypeError, match="callable"):
        ex.observe_selection("not a function")  # type: ignore[arg-type]


def test_view_state_traits_are_validated(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    with pytest.raises(traitlets.TraitError, match=r"unknown label\(s\) \[7\]"):
        ex.filter_classes = [1, 7]
    ex.filter_classes = [2, 1, 2]
    assert ex.filter_classes == [1, 2]
    with pytest.raises(traitlets.TraitError, match=r"within 1\.\.500"):
        ex.page_size = 0
    ex.grid_page = -3
    assert ex.grid_page == 0
    ex.grid_sort = "index"  # not a column, but a valid grid order
    with pytest.raises(traitlets.TraitError, match="low <= high"):
        ex.filter_confidence = [0.5, float("nan")]


def test_an_unknown_message_is_ignored_and_a_bad_one_reported(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    ex._on_custom_msg(ex, {"type": "no such command"}, [])
    ex._on_custom_msg(ex, "not a dict", [])
    assert ex.status == ""
    ex._on_custom_msg(ex, {"type": "select_slice"}, [])  # no index
    assert ex.status.startswith("select_slice:")


# ----------------------------------------------------------------------------- filter, grid


def test_filter_restricts_stats_and_grid(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    ex.select(np.arange(N))
    ex.filter_classes = [3]  # as the JS checkboxes would
    assert ex.stats["baseline"]["n"] == 100
    assert ex.stats["selection"]["n"] == 100
    assert ex.stats["n_hidden"] == 300
    assert ex.stats["selection"]["error_rate"] == pytest.approx(0.4)
    assert np.frombuffer(ex._visible, dtype=np.uint8).sum() == 100
    ex.set_filter(classes=["three", "one"], correct="incorrect")
    assert ex.stats["baseline"]["n"] == 60
    ex.set_filter(classes=[], correct="all", confidence=(0.9, 1.0))
    conf = analysis.table.confidence.to_numpy()
    assert ex.stats["baseline"]["n"] == int(((conf >= 0.9) & (conf <= 1.0)).sum())
    with pytest.raises(traitlets.TraitError, match="low <= high"):
        ex.filter_confidence = [0.8, 0.2]
    with pytest.raises(traitlets.TraitError, match="one of"):
        ex.filter_correct = "maybe"
    with pytest.raises(ValueError, match="unknown class"):
        ex.set_filter(classes=["seven"])


def test_grid_sorting_and_paging(analysis: Analysis) -> None:
    ex = Explorer(analysis, page_size=10)
    t = analysis.table
    ex.select(np.arange(N))
    by_loss = t.loss.to_numpy()
    rows = [tile["row"] for tile in ex._grid["tiles"]]
    assert rows == list(np.lexsort((np.arange(N), -by_loss))[:10])
    assert all(not tile["correct"] for tile in ex._grid["tiles"])  # largest losses are errors
    ex.grid_page = 3  # as the JS ▶ button would
    rows3 = [tile["row"] for tile in ex._grid["tiles"]]
    assert rows3 == list(np.lexsort((np.arange(N), -by_loss))[30:40])
    ex.grid_sort = "confidence"
    ex.grid_descending = False
    assert ex.grid_page == 0
    assert [tile["row"] for tile in ex._grid["tiles"]] == list(range(10))
    ex.grid_sort = "score"
    assert ex._grid["tiles"][0]["sort_value"] == pytest.approx(t.score.min())  # ascending
    with pytest.raises(traitlets.TraitError, match="cannot sort"):
        ex.grid_sort = "label_name"
    ex.grid_page = 999
    assert ex._grid["page"] == ex._grid["n_pages"] - 1


def test_thumbnails_are_png_and_cached(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    sent: list[tuple[dict, list]] = []
    ex.send = lambda content, buffers=None: sent.append((content, buffers))  # type: ignore[method-assign]
    ex._on_custom_msg(ex, {"type": "thumbs", "rows": [0, 1, 2]}, [])
    content, buffers = sent[-1]
    assert content["rows"] == [0, 1, 2]
    assert all(b.startswith(b"\x89PNG") for b in buffers)
    assert ex._images.thumbnail(0) is buffers[0]  # LRU hit returns the cached bytes
    ex._on_custom_msg(ex, {"type": "inspect", "row": 5, "req": 1}, [])
    content, buffers = sent[-1]
    assert dict(content["info"])["id"] == "img-5"
    assert buffers[0].startswith(b"\x89PNG")
    ex._on_custom_msg(ex, {"type": "inspect", "row": N + 5, "req": 2}, [])
    assert "out of range" in ex.status


# ----------------------------------------------------------------------------- colour, bytes


def test_binary_payload_at_most_12_bytes_per_point(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    state = ex.get_state()
    _state, paths, buffers = _remove_buffers(state)
    per_point = {p[0]: len(b) / N for p, b in zip(paths, buffers, strict=True)}
    assert per_point["_x"] == 4
    assert per_point["_y"] == 4
    assert per_point["_color"] == 1
    assert per_point["_visible"] == 1
    assert per_point["_x"] + per_point["_y"] + per_point["_color"] + per_point["_visible"] <= 12
    for col in ["loss", "label", "pred", "group", "score", "confidence"]:
        ex.color_by = col
        assert len(ex._color) == N
    with pytest.raises(traitlets.TraitError, match="cannot colour"):
        ex.color_by = "nope"


# ----------------------------------------------------------------------------- bad input


def test_no_projection_is_a_clear_error(analysis: Analysis) -> None:
    analysis.table["x"] = np.nan
    with pytest.raises(ValueError, match="no 2-D map"):
        Explorer(analysis)
    a2 = make_analysis()
    a2.table = a2.table.drop(columns=["x", "y"])
    with pytest.raises(ValueError, match="no 2-D map"):
        Explorer(a2)


def test_partial_nan_positions_are_counted(analysis: Analysis) -> None:
    analysis.table.loc[:9, "x"] = np.nan
    ex = Explorer(analysis)
    assert "10 point(s) have no map position" in ex.status
    ex.select(np.arange(N))
    assert ex.stats["selection"]["n"] == N  # statistics use every row


def test_a_map_fitted_on_a_sample_is_labelled(analysis: Analysis) -> None:
    assert "sample" not in Explorer(analysis).status
    analysis.meta["projection_fit"] = {"fitted_on": 50_000, "placed": 120_000}
    ex = Explorer(analysis)
    assert "map fitted on a seeded sample of 50,000 of 120,000 points" in ex.status


def test_mismatched_lengths_are_a_clear_error(analysis: Analysis) -> None:
    analysis.probs = analysis.probs[:-3]
    with pytest.raises(ValueError, match="probs has 397 rows but the table has 400"):
        Explorer(analysis)


def test_unknown_keyword_raises(analysis: Analysis) -> None:
    with pytest.raises(TypeError):
        Explorer(analysis, colour="loss")  # type: ignore[call-arg]


# ----------------------------------------------------------------------------- slices


def test_slices_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # exports go to the working directory by default
    a = make_analysis()
    a.save(tmp_path / "an")
    ex = Explorer(a)
    ex.select([3, 7, 11])
    ex.save_slice("class 3 errors")
    path = tmp_path / "an" / "slices.json"
    data = json.loads(path.read_text())
    assert data["slices"]["class 3 errors"]["ids"] == ["img-3", "img-7", "img-11"]
    assert not list(path.parent.glob(".slices.json.*"))  # no temp files left (atomic write)
    assert [s["name"] for s in ex.saved_slices] == ["class 3 errors"]
    ex.clear_selection()
    # a new explorer on the reloaded analysis sees the slice and can select it
    ex2 = Explorer(Analysis.load(tmp_path / "an"))
    assert ex2.saved_slices[0]["n"] == 3
    ex2._on_custom_msg(ex2, {"type": "slice", "op": "load", "name": "class 3 errors"}, [])
    assert ex2.selection.tolist() == [3, 7, 11]
    csv = ex2.saved.export("class 3 errors")
    assert csv == tmp_path / "class 3 errors.csv"
    assert f"exported slice 'class 3 errors' to {csv}" in ex2.status
    frame = pd.read_csv(csv)
    assert frame["id"].tolist() == ["img-3", "img-7", "img-11"]
    assert set(frame.columns) >= {"id", "path", "label", "label_name", "pred", "pred_name"}
    pq = ex2.saved.export("class 3 errors", tmp_path / "out.parquet")
    assert pd.read_parquet(pq)["row"].tolist() == [3, 7, 11]
    ex2.saved.delete("class 3 errors")
    assert ex2.saved_slices == []
    assert "deleted slice" in ex2.status
    assert json.loads(path.read_text())["slices"] == {}
    with pytest.raises(KeyError, match="no slice named"):
        ex2.load_slice("class 3 errors")


def test_slice_reload_follows_ids_when_rows_moved(tmp_path: Path) -> None:
    a = make_analysis(folder=tmp_path)
    ex = Explorer(a)
    ex.save_slice("pair", rows=[10, 20])
    b = make_analysis(folder=tmp_path)
    b.table = b.table.iloc[::-1].reset_index(drop=True)  # same images, other order
    ex_b = Explorer(b)
    rows = ex_b.load_slice("pair")
    assert sorted(b.table.id.iloc[rows]) == ["img-10", "img-20"]


@pytest.mark.parametrize("bad", ["../evil", "a/b", "..", ".hidden", "", "x" * 65, "a\\b", " x"])
def test_slice_names_are_validated(analysis: Analysis, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid slice name"):
        check_slice_name(bad)
    ex = Explorer(analysis)
    ex.select([1])
    with pytest.raises(ValueError, match="invalid slice name"):
        ex.save_slice(bad)


def test_slice_errors_from_the_view_go_to_status(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    ex._on_custom_msg(ex, {"type": "slice", "op": "save", "name": "../x"}, [])
    assert "invalid slice name" in ex.status
    ex._on_custom_msg(ex, {"type": "slice", "op": "save", "name": "empty"}, [])
    assert "selection is empty" in ex.status
    ex.select([1, 2])
    ex.save_slice("in memory")  # no folder: kept in memory, and the status says so
    assert "memory" in ex.status
    assert ex.saved_slices[0]["name"] == "in memory"


# ----------------------------------------------------------------------------- escaping, static


def test_python_html_escapes_user_strings(tmp_path: Path) -> None:
    a = make_analysis(names=[EVIL, "one", "two", "three"], folder=tmp_path, paths=True)
    ex = Explorer(a)
    ex.select([0, 4])
    ex.save_slice("safe name")
    _png, html_out = static_copy(ex)
    assert EVIL not in html_out
    assert "&lt;img src=x onerror=alert(1)&gt;" in html_out
    data, _meta = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert EVIL not in data["text/html"]
    png = base64.b64decode(data["image/png"])
    assert png.startswith(b"\x89PNG")
    # the inspector's metadata travels as plain strings for textContent, never as markup
    info = dict(ex._images.row_info(0))
    assert info["label_name"] == EVIL  # raw text; the view sets it with textContent


def test_static_png_shows_points(analysis: Analysis) -> None:
    from io import BytesIO

    from PIL import Image

    png, _html = static_copy(Explorer(analysis))
    img = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
    assert img.shape == (480, 720, 3)
    assert (img[:, :550] != 255).any(axis=2).sum() > 500  # many coloured pixels in the map area


# ----------------------------------------------------------------------------- discovered slices
#
# Planted: 400 points in 4 classes with 16-D embeddings; 50 images of class "two" sit in one tight
# cluster far from everything, and 45 of them are predicted "one"; 6 more errors are scattered.

CAPTION = "a red logo"


class FakeCaptioner:
    """The captioner protocol: a name and ``caption(images) -> list[str]``; counts its calls."""

    name = "fake"

    def __init__(self, text: str = CAPTION) -> None:
        self.text = text
        self.calls = 0

    def caption(self, images: list) -> list[str]:
        self.calls += 1
        return [self.text for _ in images]


class BrokenCaptioner:
    name = "broken"

    def caption(self, images: list) -> list[str]:
        msg = "no weights here"
        raise RuntimeError(msg)


def make_planted(
    *, logits: bool = False, failure_score: bool = False
) -> tuple[Analysis, np.ndarray]:
    return planted_cluster(N, logits=logits, failure_score=failure_score)


def test_find_slices_finds_the_planted_cluster() -> None:
    a, cluster = make_planted()
    ex = Explorer(a)
    assert "slice" not in ex.color_options
    found = ex.find_slices(3, n_components=5)
    assert ex.discovered_slices == found
    assert len(ex.discovered) == 3
    overlap = [len(np.intersect1d(s.indices, cluster)) for s in found]
    best = int(np.argmax(overlap))
    members = found[best].indices
    assert overlap[best] / len(members) >= 0.8  # mostly the planted cluster …
    assert overlap[best] / len(cluster) >= 0.8  # … and most of it
    row = ex.discovered[best]
    # the panel says which method found each slice (the default combines several)
    assert row["size"] == len(members) and row["method"] == found[best].method
    assert found[best].method in ("failure_directions", "mixture", "label_errors")
    assert row["error_rate"] == pytest.approx(found[best].stats["error_rate"])
    assert row["ci_low"] <= row["error_rate"] <= row["ci_high"]
    assert row["lift"] > 3
    assert isinstance(row["errors"], int)
    json.dumps(ex.discovered)  # the trait is plain JSON
    assert "slice" in ex.color_options  # colour by slice is offered once slices exist
    assert "found 3 slice(s)" in ex.status


def test_clicking_a_slice_row_selects_its_members() -> None:
    a, _cluster = make_planted()
    ex = Explorer(a)
    found = ex.find_slices(3, n_components=5, describe=False)
    seen: list[np.ndarray] = []
    ex.observe_selection(lambda sel: seen.append(sel.copy()))
    for i in (1, 0, 0):  # a re-click of the same row fires again
        ex._on_custom_msg(ex, {"type": "select_slice", "index": i}, [])  # a row click
        np.testing.assert_array_equal(seen[-1], np.sort(found[i].indices))
        np.testing.assert_array_equal(ex.selection, np.sort(found[i].indices))
        assert ex.active_slice == i
        assert ex._selection_source == "discovered"
        assert ex._grid["total"] == len(found[i].indices)
        assert ex.stats["selection"]["n"] == len(found[i].indices)
    assert len(seen) == 3
    js_select(ex, np.arange(5))  # any other selection leaves the slice
    assert ex.active_slice == -1
    ex._on_custom_msg(ex, {"type": "select_slice", "index": 9}, [])
    assert "no discovered slice 9" in ex.status
    np.testing.assert_array_equal(ex.selection, np.arange(5))  # kept


def test_slices_given_to_the_constructor_and_colour_by_slice() -> None:
    a, _cluster = make_planted()
    found = a.find_slices(3, n_components=5)
    ex = Explorer(a, discovered=found, color_by="slice")
    assert [r["name"] for r in ex.discovered] == [s.name for s in found]
    codes = np.frombuffer(ex._color, dtype=np.uint8)
    M = np.stack([s.membership for s in found], axis=1)
    expected = np.where(M.max(1) >= 0.5, M.argmax(1), 3)
    np.testing.assert_array_equal(codes, expected)
    assert ex._color_info["labels"] == [s.name for s in found] + ["none"]
    for s in found:  # a slice's members carry a slice's code (the one they belong to most)
        assert (codes[s.indices] < len(found)).all()
    assert ex._color_info["colors"][:3] == [r["color"] for r in ex.discovered]
    png, _html = static_copy(ex)
    assert png.startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="membership of shape"):
        Explorer(make_analysis(200), discovered=found)


def test_colour_and_sort_by_failure_score() -> None:
    a, _ = make_planted(failure_score=True)
    ex = Explorer(a)
    assert "failure_score" in ex.color_options and "failure_score" in ex.sort_options
    # present at construction: the grid is sorted by it, lowest (most likely errors) first
    assert ex.grid_sort == "failure_score" and ex.grid_descending is False
    ex.color_by = "failure_score"
    codes, info = encode_color(a.table, "failure_score", a.class_names)
    np.testing.assert_array_equal(np.frombuffer(ex._color, dtype=np.uint8), codes)
    assert info["kind"] == "continuous"
    fs = a.table["failure_score"].to_numpy()
    lo, hi = np.percentile(fs, [1, 99])
    expected = np.round(np.clip((fs - lo) / (hi - lo), 0, 1) * 254).astype(np.uint8)
    np.testing.assert_array_equal(codes, expected)
    ex.select(np.arange(N))
    shown = [t["row"] for t in ex._grid["tiles"]]
    assert shown == list(np.argsort(fs, kind="stable")[: ex.page_size])
    assert not a.table["correct"].to_numpy()[shown].any()  # errors first


def test_failure_scores_added_after_construction() -> None:
    a, cluster = make_planted()
    ex = Explorer(a)
    assert "failure_score" not in ex.color_options and ex.grid_sort == "loss"
    from faultlens.analysis.failure_directions import FailureDirectionWarning

    # classes with < 2 errors in a fold get no direction (NaN score): a warning, as in analysis
    with pytest.warns(FailureDirectionWarning, match="skipped"):
        scores = ex.compute_failure_scores()
    assert len(scores) == N
    assert "failure_score" in ex.color_options and "failure_score" in ex.sort_options
    assert ex.grid_sort == "failure_score" and ex.grid_descending is False
    ex.color_by = "failure_score"
    assert ex._color_info["column"] == "failure_score"
    # the planted errors score lower than the correct images on average
    err = ~a.table["correct"].to_numpy()
    assert np.nanmean(scores[err]) < np.nanmean(scores[~err])
    # refresh_columns picks up any column added by hand
    a.table["my_score"] = np.arange(N, dtype=np.float32)
    assert "my_score" not in ex.color_options
    ex.refresh_columns()
    assert "my_score" in ex.color_options and ex.color_by == "failure_score"
    assert len(cluster) == 50


# ----------------------------------------------------------------------------- describing


def test_describe_selection_with_a_fake_captioner() -> None:
    a, cluster = make_planted()
    cap = FakeCaptioner()
    ex = Explorer(a, captioner=cap)
    ex.select(cluster)
    statuses: list[str] = []
    flags: list[bool] = []
    ex.observe(lambda c: statuses.append(c["new"]), names=["status"])
    ex.observe(lambda c: flags.append(c["new"]), names=["describing"])
    descs, notes = ex.describe_selection()
    assert statuses[0].startswith("describing 50 images with fake")  # progress first …
    assert flags == [True, False]  # … and the busy flag around the work
    assert statuses[-1].startswith("described 50 images: summary, captions (fake)")
    assert cap.calls >= 1
    sources = [d["source"] for d in ex.descriptions["items"]]
    # the one-sentence summary leads, the captions that back it follow
    assert sources[:2] == ["summary", "captions (fake)"] and descs[1].source == "captions (fake)"
    caps = ex.descriptions["items"][1]["captions"]
    assert caps and all(c["caption"] == CAPTION for c in caps)
    assert {c["row"] for c in caps} <= set(cluster.tolist())
    assert all(c["id"] == f"img-{c['row']}" for c in caps)
    assert not any("no captioner" in n for n in notes)
    # the captions are shown under the captioned tiles of the grid
    ex.page_size = 50
    by_row = {t["row"]: t["caption"] for t in ex._grid["tiles"]}
    assert all(by_row[c["row"]] == CAPTION for c in caps)
    np.testing.assert_array_equal(ex.selection, cluster)  # the selection is kept
    json.dumps(ex.descriptions)
    # from the view: the "describe" button sends a message; an explicit captioner wins
    ex._on_custom_msg(ex, {"type": "describe"}, [])
    assert ex.wait_task(60)  # it runs in a worker thread, so the kernel keeps reading messages
    assert ex.descriptions["items"][1]["source"] == "captions (fake)"
    other = FakeCaptioner("a blue sky")
    other.name = "other"
    ex.describe_selection(captioner=other)
    assert ex.descriptions["items"][1]["source"] == "captions (other)"


def test_describe_without_captioner_notes_it_and_shows_tags() -> None:
    a, cluster = make_planted(logits=True)
    ex = Explorer(a)
    ex.select(cluster)
    descs, notes = ex.describe_selection()
    assert any("no captioner given" in n for n in notes)
    assert ex.descriptions["notes"] == notes
    items = ex.descriptions["items"]
    # the one-sentence summary leads; the ImageNet tags that back it follow, labelled
    assert [d["source"] for d in items] == ["summary", "tags (ImageNet classifier)"]
    from faultlens.models.embedders import imagenet_class_names

    assert items[1]["terms"][0][0] == imagenet_class_names()[7]  # the planted tag
    assert descs[1].source == "tags (ImageNet classifier)"
    assert imagenet_class_names()[7] in descs[0].details["sentence"]
    # the same descriptions are shown for discovered slices, with their source label
    ex.find_slices(3, n_components=5)
    best = max(ex.discovered, key=lambda r: r["size"] if r["error_rate"] > 0.5 else 0)
    tags = [d for d in best["descriptions"] if d["source"] == "tags (ImageNet classifier)"]
    assert imagenet_class_names()[7] in tags[0]["terms"]


def test_describe_errors_go_to_status_and_keep_the_selection() -> None:
    a, cluster = make_planted()
    ex = Explorer(a, captioner=BrokenCaptioner())
    ex.select(cluster)
    _descs, notes = ex.describe_selection()  # a failing captioner is a note, not an error
    assert any("captions unavailable" in n and "no weights here" in n for n in notes)
    ex.clear_selection()
    ex._on_custom_msg(ex, {"type": "describe"}, [])  # empty selection: from the view
    assert ex.wait_task(60)
    assert "describing failed" in ex.status and "empty" in ex.status
    assert ex.task["state"] == "error" and "empty" in ex.task["text"]
    assert ex.descriptions["error"] and ex.describing is False
    ex.select(np.arange(N))  # everything selected: nothing to contrast with
    _descs, notes = ex.describe_selection()
    assert any("no reference group" in n for n in notes)
    assert len(ex.selection) == N
    with pytest.raises(ValueError, match="empty"):
        ex.describe_selection(rows=[])
    assert len(ex.selection) == N


def test_user_strings_of_slices_and_captions_are_escaped(tmp_path: Path) -> None:
    a, cluster = make_planted(logits=True)
    found = a.find_slices(3, n_components=5)
    found[0].name = EVIL
    ex = Explorer(a, discovered=found, captioner=FakeCaptioner(EVIL + " logo " + EVIL))
    assert ex.discovered[0]["name"] == EVIL  # raw in the trait: JS writes it as textContent
    ex.select(cluster)
    ex.describe_selection()
    _png, page = static_copy(ex)
    assert EVIL not in page and "<img src=x" not in page
    assert html_escaped(EVIL) in page
    assert "captions (fake)" in page and "tags (ImageNet classifier)" in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text)


def test_explorer_js_never_uses_inner_html() -> None:
    from faultlens.ui import explorer

    src = (explorer._STATIC / "explorer.js").read_text()
    assert "textContent" in src
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML", src)


# ----------------------------------------------------------------------------- review fixes


def _full_order(key: np.ndarray, rows: np.ndarray, descending: bool) -> np.ndarray:
    """The grid's order by a full stable sort: by value, ties by row, NaN last either way."""
    missing = np.isnan(key)
    k = np.where(missing, 0.0, -key if descending else key)
    return rows[np.lexsort((rows, k, missing))]


def test_grid_pages_show_every_row_once_with_ties_and_nan() -> None:
    n = 2000
    a = make_analysis(n)
    rng = np.random.default_rng(1)
    tied = rng.integers(0, 3, n).astype(np.float64)  # heavy ties …
    tied[rng.choice(n, 150, replace=False)] = np.nan  # … and missing values
    tied[[3, 9]] = [np.inf, -np.inf]
    a.table["tied"] = tied
    ex = Explorer(a, page_size=24)
    sel = np.union1d(rng.choice(n, 1500, replace=False), [3, 9])
    ex.select(sel)
    for sort in ("label", "pred", "tied"):
        for desc in (False, True):
            ex.grid_sort = sort
            ex.grid_descending = desc
            pages = ex._grid["n_pages"]
            shown = np.concatenate([ex._grid_rows(p) for p in range(pages)])
            key = a.table[sort].to_numpy(dtype=np.float64)[sel]
            np.testing.assert_array_equal(shown, _full_order(key, sel, desc), err_msg=(sort, desc))
            assert len(np.unique(shown)) == len(sel)
    # NaN last in both directions, ±inf at the two ends of the known values
    ex.grid_sort, ex.grid_descending = "tied", True
    assert ex._grid_rows(0)[0] == 3  # +inf first when descending
    assert np.isnan(tied[ex._grid_rows(ex._grid["n_pages"] - 1)]).all()
    ex.grid_descending = False
    assert ex._grid_rows(0)[0] == 9  # -inf first when ascending
    assert np.isnan(tied[ex._grid_rows(ex._grid["n_pages"] - 1)]).all()


def test_memory_slices_move_into_the_folder_on_save(tmp_path: Path) -> None:
    # saved while the analysis had no folder, then analysis.save(folder) as the status line says:
    # the next read (here: loading the slice) moves it into <folder>/slices.json
    b = make_analysis()
    ex_b = Explorer(b)
    ex_b.save_slice("hard", rows=[2])
    assert "memory" in ex_b.status
    b.save(tmp_path / "b")
    assert ex_b.load_slice("hard").tolist() == [2]
    assert "moved 1 slice(s)" in ex_b.status
    assert "hard" in json.loads((tmp_path / "b" / "slices.json").read_text())["slices"]
    assert [s["name"] for s in ex_b.saved_slices] == ["hard"]
    # the folder already holds slices named "clash" (other images) and "same" (same images)
    a = make_analysis()
    ex = Explorer(a)
    ex.save_slice("mine", rows=[1, 2, 3])
    ex.save_slice("clash", rows=[4, 5])
    ex.save_slice("same", rows=[6])
    (tmp_path / "an").mkdir()  # records are written into an existing folder only
    other = Explorer(make_analysis(folder=tmp_path / "an"))
    other.save_slice("clash", rows=[7, 8])
    other.save_slice("same", rows=[6])
    a.save(tmp_path / "an")
    ex.saved.refresh()
    assert [s["name"] for s in ex.saved_slices] == ["clash", "clash-unsaved", "mine", "same"]
    assert "moved 3 slice(s)" in ex.status and "'clash' -> 'clash-unsaved'" in ex.status
    stored = json.loads((tmp_path / "an" / "slices.json").read_text())["slices"]
    assert stored["mine"]["ids"] == ["img-1", "img-2", "img-3"]
    assert stored["clash"]["rows"] == [7, 8]  # the file's slice keeps its name …
    assert stored["clash-unsaved"]["rows"] == [4, 5]  # … and the memory one is not lost
    assert ex.saved.store.in_memory == 0
    assert ex.load_slice("mine").tolist() == [1, 2, 3]


def test_infinite_positions_are_sent_as_nan() -> None:
    a = make_analysis()
    a.table["x"] = a.table["x"].astype(np.float64)
    a.table.loc[5, "x"] = np.inf
    a.table.loc[7, "y"] = -np.inf
    a.table.loc[9, "x"] = 1e39  # finite in float64, inf in float32
    a.table.loc[11, "y"] = np.nan
    ex = Explorer(a)
    x = np.frombuffer(ex._x, dtype="<f4")
    y = np.frombuffer(ex._y, dtype="<f4")
    assert not np.isinf(x).any() and not np.isinf(y).any()
    for r in (5, 7, 9, 11):  # not placed: NaN in both coordinates
        assert np.isnan(x[r]) and np.isnan(y[r]), r
    assert np.isfinite(x[[0, 1, 2]]).all() and np.isfinite(y[[0, 1, 2]]).all()
    assert "4 point(s) have no map position" in ex.status
    assert static_copy(ex)[0].startswith(b"\x89PNG")


class _FakeSlice:
    def __init__(self, rows: np.ndarray, n: int) -> None:
        self.membership = np.zeros(n, dtype=np.float32)
        self.membership[rows] = 1.0
        self.indices = np.asarray(rows)
        self.name, self.method, self.stats, self.descriptions = "s0", "fake", {}, {}


def test_no_slices_left_while_coloured_by_slice_falls_back_to_correct(analysis: Analysis) -> None:
    ex = Explorer(analysis, discovered=[_FakeSlice(np.arange(20), N)])
    ex.color_by = "slice"
    assert ex._color_info["column"] == "slice"
    ex.set_discovered([])  # e.g. a slice search that found nothing
    assert ex.color_by == "correct"
    assert ex._color_info["column"] == "correct"
    assert "slice" not in ex.color_options
    np.testing.assert_array_equal(
        np.frombuffer(ex._color, dtype=np.uint8), (~analysis.table.correct).astype(np.uint8)
    )


def test_refresh_columns_refreshes_stats_filter_and_grid(analysis: Analysis) -> None:
    ex = Explorer(analysis, page_size=50)
    ex.select(np.arange(40))
    ex.filter_correct = "incorrect"
    assert ex.stats["selection"]["errors"] == 20
    t = analysis.table
    t["label"] = t["pred"]  # labels cleaned: no error left
    t["correct"] = True
    t.loc[3, "x"] = np.nan  # and one point lost its position
    ex.refresh_columns()
    assert ex.stats["baseline"]["n"] == 0  # the "incorrect" filter now shows nothing
    assert np.frombuffer(ex._visible, dtype=np.uint8).sum() == 0
    assert ex._grid["total"] == 0
    ex.filter_correct = "all"
    assert ex.stats["selection"]["errors"] == 0
    assert all(tile["correct"] for tile in ex._grid["tiles"])
    assert np.frombuffer(ex._color, dtype=np.uint8).sum() == 0  # map agrees with the stats
    assert np.isnan(np.frombuffer(ex._x, dtype="<f4")[3])
    np.testing.assert_array_equal(ex.selection, np.arange(40))  # the selection is kept
    t["label"] = 7  # out of range: refused, nothing changed
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        ex.refresh_columns()
    assert ex.stats["selection"]["errors"] == 0
    # columns lost: the same errors as the constructor's
    analysis.table = t.drop(columns=["loss", "y"])
    with pytest.raises(ValueError, match="no 2-D map"):
        ex.refresh_columns()
    analysis.table = t.drop(columns=["loss"])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['loss'\]"):
        ex.refresh_columns()
    assert ex.stats["selection"]["errors"] == 0
    np.testing.assert_array_equal(ex.selection, np.arange(40))


def test_confusions_with_many_classes_need_no_n_squared_table() -> None:
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 2000
    for n_classes in (4000, 50_000):
        labels = rng.integers(0, n_classes, n)
        preds = labels.copy()
        planted = [(n_classes - 1, 5, 30), (17, n_classes - 2, 20), (42, 43, 20), (3, 2, 10)]
        start = 0
        for lab, prd, k in planted:
            labels[start : start + k], preds[start : start + k] = lab, prd
            start += k
        noise = np.arange(start, start + 40)  # 40 more errors, each its own pair
        preds[noise] = (labels[noise] + 1) % n_classes
        correct = labels == preds
        names = [f"c{i}" for i in range(n_classes)]
        tracemalloc.start()
        out = selection_stats(np.arange(n), np.arange(n), labels=labels, preds=preds,
                              correct=correct, class_names=names)  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 16e6, f"{n_classes} classes: peak {peak / 1e6:.0f} MB"
        got = [(c["label"], c["pred"], c["n"]) for c in out["confusions"]]
        # by count, ties in (label, pred) order (as before); then the smallest single pair
        first_single = min((int(labels[i]), int(preds[i])) for i in noise)
        assert got == [planted[0][:3], (17, n_classes - 2, 20), (42, 43, 20), (3, 2, 10),
                       (*first_single, 1)]  # fmt: skip
        assert out["confusions"][0]["share_of_errors"] == pytest.approx(30 / 120)


def test_description_is_marked_stale_when_the_selection_changes() -> None:
    a, cluster = make_planted()
    ex = Explorer(a, captioner=FakeCaptioner())
    ex.select(cluster)
    ex.describe_selection()
    d = ex.descriptions
    assert d["n"] == len(cluster) and d["stale"] is False and len(d["rows_hash"]) >= 16
    ex.select(cluster[:10])
    assert ex.descriptions["stale"] is True
    assert ex.descriptions["rows_hash"] == d["rows_hash"]  # still the hash of what was described
    assert ex.descriptions["items"] == d["items"]
    assert "earlier selection" in static_copy(ex)[1]
    js_select(ex, cluster)  # the described rows again: current again
    assert ex.descriptions["stale"] is False
    js_select(ex, np.r_[cluster[1:], 0])  # same size, other rows
    assert ex.descriptions["stale"] is True
    ex.describe_selection(rows=cluster)  # rows other than the selection: stale from the start
    assert ex.descriptions["stale"] is True


def test_hover_tooltip_sends_no_image_and_bad_thumb_rows_get_a_reply(analysis: Analysis) -> None:
    ex = Explorer(analysis)
    sent: list[tuple[dict, list]] = []
    ex.send = lambda content, buffers=None: sent.append((content, buffers))  # type: ignore[method-assign]
    calls: list[int] = []
    thumbnail = ex._images.thumbnail
    ex._images.thumbnail = lambda row, size=None: calls.append(row) or thumbnail(row, size)  # type: ignore[method-assign]
    ex._on_custom_msg(ex, {"type": "inspect", "row": 5, "req": -1}, [])  # tooltip only
    content, buffers = sent[-1]
    assert content["req"] == -1 and dict(content["info"])["id"] == "img-5"
    assert not buffers and calls == []  # no 320-px image rendered or sent
    ex._on_custom_msg(ex, {"type": "inspect", "row": 5, "req": 3}, [])  # pinned: the image
    assert sent[-1][1][0].startswith(b"\x89PNG")
    # a batch with a bad row: the good rows still get their images, the bad one an error
    ex._on_custom_msg(ex, {"type": "thumbs", "rows": [0, N + 5, 2, -1]}, [])
    content, buffers = sent[-1]
    assert content["rows"] == [0, N + 5, 2, -1]
    assert buffers[0].startswith(b"\x89PNG") and buffers[2].startswith(b"\x89PNG")
    assert buffers[1] == b"" and buffers[3] == b""
    assert content["errors"][0] == "" and "out of range" in content["errors"][1]
    assert "out of range" in content["errors"][3]
    assert "2 of 4" in ex.status
    # more than 500 rows: every row still gets an answer
    ex._on_custom_msg(ex, {"type": "thumbs", "rows": list(range(N)) + list(range(150))}, [])
    content, buffers = sent[-1]
    assert len(buffers) == len(content["errors"]) == N + 150
    assert content["errors"][499] == "" and "at most 500" in content["errors"][500]


def test_more_like_this_selects_the_pinned_images_cluster() -> None:
    a, cluster = make_planted()
    ex = Explorer(a)
    ex._on_custom_msg(ex, {"type": "more_like_this", "row": int(cluster[0])}, [])
    sel = ex.selection
    assert int(cluster[0]) in sel and len(sel) == 51
    assert np.isin(sel, cluster).mean() > 0.9  # the planted cluster's images are its neighbours
    ex.select(cluster[:5])
    grown = ex.more_like_this(k=20)  # from the selection
    assert set(cluster[:5].tolist()) <= set(grown.tolist()) and np.isin(grown, cluster).all()
