"""faultlens.render without a widget: colour encodings, the map PNG, and the static-HTML vocabulary
shared by the Explorer's static copy and the report (one escaping helper, one missing-value
policy)."""

from __future__ import annotations

import math
from io import BytesIO

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faultlens.render.colors import MISSING_CODE, encode_color, palette_rgb
from faultlens.render.html import (
    descriptions_html,
    discovered_table_html,
    esc,
    num,
    pct,
    saved_table_html,
    selection_description_html,
    stats_table,
)  # fmt: skip
from faultlens.render.mapimage import render_map_png

EVIL = "<img src=x onerror=alert(1)>"


def _table(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    label = np.arange(n) % 2
    return pd.DataFrame({
        "label": label, "pred": label, "correct": np.arange(n) % 5 != 0,
        "loss": rng.random(n), "group": np.where(np.arange(n) % 2, "odd", EVIL),
        "x": np.r_[np.zeros(n // 2), np.ones(n // 2)], "y": np.r_[np.zeros(n // 2), np.ones(n // 2)],
    })  # fmt: skip


def test_missing_values_read_the_same_everywhere() -> None:
    for missing in (None, math.nan, np.float32("nan"), math.inf, "n/a", -math.inf):
        assert pct(missing) == "–"
        assert num(missing) == "–"
    assert pct(0.125) == "12.5%"
    assert pct(np.float64(1.0)) == "100.0%"
    assert num(2.0) == "2.00"
    assert num(3, ".0f") == "3"


def test_every_fragment_escapes_data_strings() -> None:
    assert esc(EVIL) == "&lt;img src=x onerror=alert(1)&gt;"
    assert esc("a'b\"c") == "a&#x27;b&quot;c"
    stats = {"size": 3, "errors": 1, "error_rate": math.nan, "ci_low": None, "ci_high": 0.5,
             "lift": None, "class_mix": [{"label": 0, "name": EVIL, "n": 3}]}  # fmt: skip
    discovered = [{"name": EVIL, "method": EVIL, "size": 3, "error_rate": None, "ci_low": None,
                   "ci_high": None, "lift": math.nan,
                   "descriptions": [{"source": EVIL, "terms": [EVIL]}]}]  # fmt: skip
    described = {"n": 2, "stale": True, "error": EVIL, "notes": [EVIL],
                 "items": [{"source": EVIL, "terms": [[EVIL, 1.0]],
                            "captions": [{"row": 0, "id": EVIL, "caption": EVIL}]}]}  # fmt: skip
    pages = [
        stats_table(stats),
        discovered_table_html(discovered),
        selection_description_html(described),
        saved_table_html([{"name": EVIL, "n": 2, "created": EVIL}]),
        descriptions_html(([{"source": EVIL, "terms": [(EVIL, 1.0)]}], [EVIL])),
    ]
    for page in pages:
        assert EVIL not in page and "&lt;img src=x" in page
    assert "–" in pages[0] and "–" in pages[1]  # missing statistics, not "nan%" or "None"
    assert "earlier selection" in pages[2]


def test_encode_color_kinds() -> None:
    t = _table()
    codes, info = encode_color(t, "correct", ["a", "b"])
    assert codes.tolist() == (~t.correct).astype(int).tolist()
    codes, info = encode_color(t, "loss", ["a", "b"])
    assert info["kind"] == "continuous" and codes.min() == 0 and codes.max() == 254
    t.loc[3, "loss"] = np.nan
    codes, info = encode_color(t, "loss", ["a", "b"])
    assert codes[3] == MISSING_CODE and info["missing"] == 1
    codes, info = encode_color(t, "group", ["a", "b"])
    assert info["kind"] == "category" and sorted(info["labels"]) == sorted(["odd", EVIL])
    pal = palette_rgb(info)
    assert pal.shape == (256, 3) and pal[0].tolist() != pal[1].tolist()


def test_map_png_draws_shown_points_and_dims_the_unselected() -> None:
    t = _table()
    codes, legend = encode_color(t, "correct", ["a", "b"])
    x, y = t.x.to_numpy(), t.y.to_numpy()

    def pixels(**kw: object) -> np.ndarray:
        png = render_map_png(x, y, codes, legend, width=400, height=300, **kw)
        img = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
        return img[:280, :230].astype(int)  # the map area: no legend, no bottom line

    everything = pixels()
    assert everything.shape == (280, 230, 3)
    coloured = (everything != 255).any(axis=2)
    assert coloured[:, :115].any() and coloured[:, 115:].any()  # both clusters drawn
    half = pixels(shown=np.r_[np.ones(100, bool), np.zeros(100, bool)])
    assert (half != 255).any(axis=2)[:, 115:].sum() == 0  # filtered out: not drawn
    selected = pixels(selected=np.arange(100))
    # the unselected cluster is drawn lighter (mixed with white), the selected one as before
    right = coloured & (np.arange(230) >= 115)[None, :]
    assert selected[right].sum() > everything[right].sum()
    left = coloured & (np.arange(230) < 115)[None, :]
    np.testing.assert_array_equal(selected[left], everything[left])
    nan_x = x.copy()
    nan_x[:100] = np.nan  # not placed: not drawn, and no error
    png = render_map_png(nan_x, y, codes, legend, width=400, height=300)
    assert png.startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        render_map_png(x[:3], y, codes, legend)
