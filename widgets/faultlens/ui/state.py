"""The Explorer's state computed from an analysis, without a widget: the checked per-row arrays
it caches, its colour and sort choices, the discovered slices (checked, looked up, described) and
the JSON rows of discovered slices and descriptions it syncs to the view."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from faultlens.render.colors import category_color
from faultlens.render.html import TOP_TERMS, description_items
from faultlens.ui.evidence import summary_parts
from faultlens.ui.rows import jsonable

#: The columns the Explorer needs in an analysis table.
CORE_NEEDED = ["id", "label", "pred", "confidence", "loss", "correct", "x", "y"]
_NOT_COLOURS = {"id", "path", "x", "y", "source_index", "label_name", "pred_name"}


def check_core_columns(table: pd.DataFrame) -> None:
    """Raise a ValueError naming what the explorer needs and the table lacks, and how to get it."""
    missing = [c for c in CORE_NEEDED if c not in table.columns]
    if "x" in missing or "y" in missing:
        msg = (
            "this analysis has no 2-D map (no 'x'/'y' columns): make it with "
            "faultlens.analyze(), or set analysis.table['x'] and analysis.table['y'] yourself"
        )
        raise ValueError(msg)
    if missing:
        msg = f"the analysis table lacks column(s) {missing}: is it a faultlens Analysis table?"
        raise ValueError(msg)


def check_analysis(analysis: Any) -> dict[str, np.ndarray]:
    """The checked per-row arrays of an analysis the Explorer can show (:func:`read_columns`):
    it has rows, fewer than a uint32 index holds, and its arrays align with its table."""
    n = len(analysis.table)
    if n == 0:
        msg = "the analysis has no rows: there is nothing to explore"
        raise ValueError(msg)
    if n >= 2**32 - 1:
        msg = f"{n} rows is more than the explorer's uint32 selection can index"
        raise ValueError(msg)
    for name, arr in (("probs", analysis.probs), ("embeddings", analysis.embeddings)):
        if arr is not None and len(arr) != n:
            msg = f"analysis.{name} has {len(arr)} rows but the table has {n}: they must align"
            raise ValueError(msg)
    return read_columns(analysis.table, len(analysis.class_names))


def read_columns(table: pd.DataFrame, n_classes: int) -> dict[str, np.ndarray]:
    """The per-row arrays the explorer caches (labels, preds, correct, confidence, map position),
    checked. A point without a finite x and y is not placed: both its x and y become NaN, so the
    view never sees an infinity (which would blow up its bounds)."""
    check_core_columns(table)
    with np.errstate(over="ignore"):  # beyond float32: inf, so not placed
        x = table["x"].to_numpy(dtype=np.float32, na_value=np.nan)
        y = table["y"].to_numpy(dtype=np.float32, na_value=np.nan)
    placed = np.isfinite(x) & np.isfinite(y)
    if not placed.any():
        msg = (
            "this analysis has no 2-D map (x/y are all NaN): compute a projection, e.g. "
            "faultlens.analysis.projection.project(analysis.embeddings), and store it in "
            "analysis.table['x'] / ['y']"
        )
        raise ValueError(msg)
    labels = table["label"].to_numpy()
    preds = table["pred"].to_numpy()
    for name, arr in (("label", labels), ("pred", preds)):
        if len(arr) and (arr.min() < 0 or arr.max() >= n_classes):
            msg = f"table column {name!r} has values outside 0..{n_classes - 1} (class_names)"
            raise ValueError(msg)
    return {
        "x": np.where(placed, x, np.float32(np.nan)).astype("<f4"),
        "y": np.where(placed, y, np.float32(np.nan)).astype("<f4"),
        "placed": placed,
        "labels": labels.astype(np.int32),
        "preds": preds.astype(np.int32),
        "correct": table["correct"].to_numpy(dtype=bool),
        "conf": table["confidence"].to_numpy(dtype=np.float32),
    }


def map_notes(analysis: Any, placed: np.ndarray) -> list[str]:
    """What the status bar says about the map: points without a position, a map fitted on a
    sample."""
    notes = []
    if not placed.all():
        notes.append(
            f"{int((~placed).sum())} point(s) have no map position: not drawn, but counted in the "
            "statistics"
        )
    fit = analysis.meta.get("projection_fit") or {}
    if fit.get("fitted_on", 0) < fit.get("placed", 0):
        notes.append(
            f"map fitted on a seeded sample of {fit['fitted_on']:,} of {fit['placed']:,} points; "
            "the others placed with UMAP.transform"
        )
    return notes


def column_options(table: pd.DataFrame, slice_option: str | None) -> tuple[list[str], list[str]]:
    """The colour choices (``slice_option`` last when there are discovered slices) and the grid's
    sort choices (numeric columns, failure score, loss and confidence first)."""
    numeric = [
        c for c in table.columns
        if c not in _NOT_COLOURS and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
    ]  # fmt: skip
    colour = ["correct", "loss", "confidence", "label", "pred"]
    if "failure_score" in table.columns:
        colour.append("failure_score")
    colour += [c for c in table.columns if c not in _NOT_COLOURS and c not in colour]
    if slice_option:
        colour.append(slice_option)
    first = [c for c in ("failure_score", "loss", "confidence") if c in table.columns]
    return colour, first + [c for c in numeric if c not in first]


def discovered_row(i: int, sl: Any) -> dict[str, Any]:
    """The JSON row of discovered slice ``i`` in the slice panel."""
    st = getattr(sl, "stats", {}) or {}
    return {
        "index": i,
        "name": str(sl.name),
        "method": str(sl.method),
        "size": int(st.get("n", len(sl.indices))),
        **{k: jsonable(st.get(k)) for k in ("errors", "error_rate", "ci_low", "ci_high", "lift")},
        "color": category_color(i),
        "descriptions": [
            {
                "source": str(d.source),
                "terms": [str(term) for term, *_ in d.terms[:TOP_TERMS]],
                "note": str((d.details or {}).get("note", "")),
            }  # e.g. "no tag is enriched …"
            for d in description_items(sl.descriptions)
        ],
        # the summary's parts, each with how many members carry it (None: not clickable)
        "summary": summary_parts(sl.descriptions),
    }


def description_state(descs: list[Any], ids: pd.Series) -> tuple[list[dict], dict[int, str]]:
    """The JSON items of a selection's descriptions (source, top 10 terms with scores, captions
    with their image ids; the summary's ``parts`` as :func:`summary_parts` gives them) and the
    captions by row."""
    items, captions = [], {}
    for d in descs:
        caps = (d.details or {}).get("captions", {}) if hasattr(d, "details") else {}
        caps = {int(r): str(c) for r, c in caps.items()}
        captions.update(caps)
        items.append({
            "source": str(d.source),
            "terms": [[str(term), jsonable(score)] for term, score in d.terms[:10]],
            "captions": [{"row": r, "id": str(ids.iat[r]), "caption": c} for r, c in caps.items()],
            **({"parts": summary_parts([d])} if d.source == "summary" else {}),
        })  # fmt: skip
    return items, captions


def check_memberships(found: Any, n: int) -> list[Any]:
    """``found`` as a list, each slice's membership checked to hold one value per row."""
    found = list(found)
    for i, sl in enumerate(found):
        m = np.asarray(getattr(sl, "membership", ()))
        if m.shape != (n,):
            msg = (
                f"slice {i} ({getattr(sl, 'name', '?')!r}) has membership of shape {m.shape}, "
                f"expected ({n},): was it found on another analysis?"
            )
            raise ValueError(msg)
    return found


def find_discovered(found: list[Any], which: int | str) -> Any:
    """The discovered slice ``which`` (its index or name) of ``found``."""
    if isinstance(which, str):
        names = [s.name for s in found]
        if which not in names:
            msg = f"no discovered slice named {which!r}; found: {names}"
            raise KeyError(msg)
        return found[names.index(which)]
    i = int(which)
    if not 0 <= i < len(found):
        msg = f"no discovered slice {i}: there are {len(found)} (run explorer.find_slices() first)"
        raise IndexError(msg)
    return found[i]


def describe_slice(analysis: Any, sl: Any, **models: Any) -> dict[str, Any]:
    """``{"items": descriptions, "notes": notes}`` of a discovered slice's members
    (:meth:`Analysis.describe` with ``models``); a failure becomes a note (a description is a
    bonus: the slice is kept)."""
    try:
        descs, notes = analysis.describe(np.asarray(sl.indices), **models)
    except Exception as exc:
        return {"items": [], "notes": [f"description failed: {exc}"]}
    return {"items": descs, "notes": notes}


def class_indices(
    class_names: Sequence[str], classes: Iterable[int | str] | int | str
) -> list[int]:
    """Class indices of ``classes`` (indices or names); an unknown name raises, naming the classes."""
    if isinstance(classes, (str, int, np.integer)):
        classes = [classes]
    out = []
    for c in classes:
        if isinstance(c, str) and c not in class_names:
            msg = f"unknown class {c!r}: classes are {list(class_names)}"
            raise ValueError(msg)
        out.append(list(class_names).index(c) if isinstance(c, str) else int(c))
    return out


def grid_tile(
    table: pd.DataFrame, cols: dict[str, np.ndarray], class_names: Sequence[str], row: int,
    sort: str, caption: str,
) -> dict[str, Any]:  # fmt: skip
    """One tile of the image grid as the view draws it (``sort``: the grid's sort column, whose
    value the tile shows unless it is ``"index"``)."""
    return {
        "row": row, "id": str(table["id"].iat[row]),
        "label": class_names[cols["labels"][row]], "pred": class_names[cols["preds"][row]],
        "confidence": float(cols["conf"][row]), "correct": bool(cols["correct"][row]),
        "sort_value": None if sort == "index" else jsonable(table[sort].iat[row]),
        "caption": caption,
    }  # fmt: skip
