"""Colour encodings of the map: one uint8 code per row plus a legend (numpy and pandas only).

A legend is a JSON-safe dict: ``kind`` (``"category"`` or ``"continuous"``), ``column``, ``colors``
(hex strings, one per code) and ``labels`` (categories) or ``vmin``/``vmax``/``missing``
(continuous; code 255 = missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Categorical palette (Tableau 10 + 10 lighter tones), as RGB.
CATEGORICAL = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
]  # fmt: skip
#: correct / incorrect: a muted blue and a strong orange (tells apart for common colour blindness).
CORRECT_COLORS = [(120, 150, 190), (230, 85, 13)]
#: Code 255 of a continuous encoding means "no value" (NaN); drawn grey.
MISSING_CODE = 255
MISSING_COLOR = (190, 190, 190)
#: The legend column of a colouring by discovered slice.
SLICE_COLOR = "slice"
_VIRIDIS_ANCHORS = [
    (68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
    (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37),
]  # fmt: skip


def viridis(n: int = 255) -> list[tuple[int, int, int]]:
    """``n`` RGB colours along viridis (linear between 10 anchors)."""
    anchors = np.asarray(_VIRIDIS_ANCHORS, dtype=np.float64)
    pos = np.linspace(0, len(anchors) - 1, n)
    lo = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    frac = (pos - lo)[:, None]
    rgb = anchors[lo] * (1 - frac) + anchors[lo + 1] * frac
    return [tuple(round(c) for c in row) for row in rgb]


CONTINUOUS = viridis(255)


def hex_color(rgb: Sequence[int]) -> str:
    """``"#rrggbb"`` of an RGB triple."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def category_color(i: int) -> str:
    """The hex colour of category ``i`` (the palette repeats after 20)."""
    return hex_color(CATEGORICAL[i % len(CATEGORICAL)])


def encode_color(
    table: pd.DataFrame, column: str, class_names: Sequence[str]
) -> tuple[np.ndarray, dict]:
    """One uint8 code per row for colouring by ``column`` and a legend describing the codes.

    Categorical columns get one code per category (at most 254; the rest share "other"); numeric
    columns are scaled between their 1st and 99th percentile into codes 0–254 (255 = missing).
    """
    if column == "correct":
        codes = (~table["correct"].to_numpy(dtype=bool)).astype(np.uint8)
        colors = [hex_color(c) for c in CORRECT_COLORS]
        return codes, {"kind": "category", "labels": ["correct ✓", "incorrect ✗"],
                       "colors": colors, "column": column}  # fmt: skip
    if column in ("label", "pred"):
        values = table[column].to_numpy()
        if len(class_names) <= 254:
            return values.astype(np.uint8), {
                "kind": "category", "column": column, "labels": [str(c) for c in class_names],
                "colors": [category_color(i) for i in range(len(class_names))],
            }  # fmt: skip
        series = pd.Series(np.asarray(class_names, dtype=object)[values])
    else:
        series = table[column]
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return _encode_categories(series, column)
    return _encode_numbers(series.to_numpy(dtype=np.float64, na_value=np.nan), column)


def _encode_categories(series: pd.Series, column: str) -> tuple[np.ndarray, dict]:
    cats = series.astype(str).where(series.notna(), "(missing)")
    counts = cats.value_counts(sort=True)
    keep = list(counts.index[:254]) if len(counts) > 255 else list(counts.index)
    if pd.api.types.is_bool_dtype(series) or set(keep) <= {"True", "False"}:
        keep = sorted(keep)
    lookup = {k: i for i, k in enumerate(keep)}
    codes = cats.map(lookup).fillna(len(keep)).to_numpy(dtype=np.uint8)
    labels = [str(k) for k in keep] + (["(other)"] if len(counts) > len(keep) else [])
    colors = [category_color(i) for i in range(len(keep))]
    if len(labels) > len(keep):
        colors.append(hex_color(MISSING_COLOR))
    return codes, {"kind": "category", "column": column, "labels": labels, "colors": colors}


def _encode_numbers(values: np.ndarray, column: str) -> tuple[np.ndarray, dict]:
    finite = np.isfinite(values)
    codes = np.full(len(values), MISSING_CODE, dtype=np.uint8)
    vmin = vmax = None
    if finite.any():
        lo, hi = (float(v) for v in np.percentile(values[finite], [1, 99]))
        if hi <= lo:
            lo, hi = float(values[finite].min()), float(values[finite].max())
        span = hi - lo if hi > lo else 1.0
        scaled = np.clip((values[finite] - lo) / span, 0.0, 1.0)
        codes[finite] = np.round(scaled * 254).astype(np.uint8)
        vmin, vmax = lo, hi
    return codes, {
        "kind": "continuous", "column": column, "vmin": vmin, "vmax": vmax,
        "colors": [hex_color(c) for c in CONTINUOUS], "missing": int((~finite).sum()),
    }  # fmt: skip


def encode_slices(found: Sequence[Any], n: int) -> tuple[np.ndarray, dict]:
    """Colour codes by discovered slice: code ``i`` for the slice with the largest membership when
    that membership is >= 0.5, code ``len(found)`` ("none") otherwise."""
    k = len(found)
    if k > 254:
        msg = f"cannot colour by {k} slices: at most 254"
        raise ValueError(msg)
    codes = np.full(n, k, dtype=np.uint8)
    if k:
        M = np.stack([np.asarray(s.membership, dtype=np.float32) for s in found], axis=1)
        best = M.argmax(axis=1)
        inside = M[np.arange(n), best] >= 0.5
        codes[inside] = best[inside].astype(np.uint8)
    labels = [str(s.name) for s in found] + ["none"]
    colors = [category_color(i) for i in range(k)] + [hex_color(MISSING_COLOR)]
    return codes, {"kind": "category", "column": SLICE_COLOR, "labels": labels, "colors": colors}


def palette_rgb(legend: dict) -> np.ndarray:
    """(256, 3) uint8 RGB per code of an encoding (unlisted codes grey)."""
    pal = np.tile(np.asarray(MISSING_COLOR, dtype=np.uint8), (256, 1))
    for i, c in enumerate(legend["colors"][:256]):
        pal[i] = [int(c[k : k + 2], 16) for k in (1, 3, 5)]
    return pal
