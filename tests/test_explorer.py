"""The Explorer without a browser: set the state the front end would set, check what Python computes.

Planted data: 400 points in 4 classes; class 3's points 0..39 (rows ≡ 3 mod 4, first 40 of them)
are all wrong (predicted 0), and 20 more errors are spread over class 1. Overall error rate 60/400.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

from faultlens.analysis.core import Analysis
from faultlens.data.sources import ArraySource
from faultlens.ui.explorer import Explorer, check_slice_name, encode_color
from faultlens.ui.stats import selection_stats, wilson_interval

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
    names_arr = np.asarray(names, dtype=object)
    table = pd.DataFrame(
        {
            "id": [f"img-{i}" for i in range(n)],
            "path": [f"/data/{EVIL}/{i}.png" if paths else None for i in range(n)],
            "label": label,
            "label_name": names_arr[label],
            "pred": pred,
            "pred_name": names_arr[pred],
            "confidence": conf,
            "loss": (1.0 - conf) + (pred != label),
            "correct": pred == label,
            "x": xy[:, 0],
            "y": xy[:, 1],
            "source_index": np.arange(n),
            "group": np.where(np.arange(n) % 2, "odd", EVIL),
            "score": rng.normal(size=n),
        }
    )
    probs = np.full((n, 4), 0.1, dtype=np.float32)
    return Analysis(
        table,
        class_names=names,
        probs=probs,
        source=ArraySource(images, label, class_names=names),
        folder=folder,
    )


@pytest.fixture
def analysis() -> Analysis:
    return make_analysis()


def js_select(ex: Explorer, rows: np.ndarray, source: str = "box") -> None:
    """Do what the front end does after a box/lasso: write uint32 bytes + bump the counter."""
    ex.set_state(
        {
            "_selection": memoryview(np.asarray(rows, dtype="<u4").tobytes()),
            "_selection_source": source,
            "_selection_counter": ex._selection_counter + 1,
        }
    )


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
    assert ex.thumbnail(0) is buffers[0]  # LRU hit returns the cached bytes
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


def test_encode_color_kinds(analysis: Analysis) -> None:
    codes, info = encode_color(analysis.table, "correct", analysis.class_names)
    assert codes.tolist() == (~analysis.table.correct).astype(int).tolist()
    codes, info = encode_color(analysis.table, "loss", analysis.class_names)
    assert info["kind"] == "continuous"
    assert codes.min() == 0
    assert codes.max() == 254
    codes, info = encode_color(analysis.table, "group", analysis.class_names)
    assert info["kind"] == "category"
    assert sorted(info["labels"]) == sorted(["odd", EVIL])


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


def test_mismatched_lengths_are_a_clear_error(analysis: Analysis) -> None:
    analysis.probs = analysis.probs[:-3]
    with pytest.raises(ValueError, match="probs has 397 rows but the table has 400"):
        Explorer(analysis)


def test_unknown_keyword_raises(analysis: Analysis) -> None:
    with pytest.raises(TypeError):
        Explorer(analysis, colour="loss")  # type: ignore[call-arg]


# ----------------------------------------------------------------------------- slices


def test_slices_round_trip(tmp_path: Path) -> None:
    a = make_analysis()
    a.save(tmp_path / "an")
    ex = Explorer(a)
    ex.select([3, 7, 11])
    ex.save_slice("class 3 errors")
    path = tmp_path / "an" / "slices.json"
    data = json.loads(path.read_text())
    assert data["slices"]["class 3 errors"]["ids"] == ["img-3", "img-7", "img-11"]
    assert not list(path.parent.glob(".slices.json.*"))  # no temp files left (atomic write)
    assert [s["name"] for s in ex.slices] == ["class 3 errors"]
    ex.clear_selection()
    # a new explorer on the reloaded analysis sees the slice and can select it
    ex2 = Explorer(Analysis.load(tmp_path / "an"))
    assert ex2.slices[0]["n"] == 3
    ex2._on_custom_msg(ex2, {"type": "slice", "op": "load", "name": "class 3 errors"}, [])
    assert ex2.selection.tolist() == [3, 7, 11]
    csv = ex2.export_slice("class 3 errors")
    assert csv == tmp_path / "an" / "slices" / "class 3 errors.csv"
    frame = pd.read_csv(csv)
    assert frame["id"].tolist() == ["img-3", "img-7", "img-11"]
    assert set(frame.columns) >= {"id", "path", "label", "label_name", "pred", "pred_name"}
    pq = ex2.export_slice("class 3 errors", tmp_path / "out.parquet")
    assert pd.read_parquet(pq)["row"].tolist() == [3, 7, 11]
    ex2.delete_slice("class 3 errors")
    assert ex2.slices == []
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
    assert ex.slices[0]["name"] == "in memory"


# ----------------------------------------------------------------------------- escaping, static


def test_python_html_escapes_user_strings(tmp_path: Path) -> None:
    a = make_analysis(names=[EVIL, "one", "two", "three"], folder=tmp_path, paths=True)
    ex = Explorer(a)
    ex.select([0, 4])
    ex.save_slice("safe name")
    html_out = ex.summary_html()
    assert EVIL not in html_out
    assert "&lt;img src=x onerror=alert(1)&gt;" in html_out
    data, _meta = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert EVIL not in data["text/html"]
    png = base64.b64decode(data["image/png"])
    assert png.startswith(b"\x89PNG")
    # the inspector's metadata travels as plain strings for textContent, never as markup
    info = dict(ex.row_info(0))
    assert info["label_name"] == EVIL  # raw text; the view sets it with textContent


def test_static_png_shows_points(analysis: Analysis) -> None:
    from io import BytesIO

    from PIL import Image

    ex = Explorer(analysis)
    img = np.asarray(Image.open(BytesIO(ex.render_png(400, 300))).convert("RGB"))
    assert img.shape == (300, 400, 3)
    assert (img[:, :230] != 255).any(axis=2).sum() > 500  # many coloured pixels in the map area
