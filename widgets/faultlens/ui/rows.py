"""Row indices for the widgets: checked, sorted and unique uint32; a digest; one grid page."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import pandas as pd


def coerce_rows(rows: Any, n: int) -> np.ndarray:
    """Sorted unique uint32 row indices from row indices, a bool mask of length ``n``, or a pandas
    index/mask; a clear error for anything else or an index outside ``0..n-1``."""
    if isinstance(rows, (pd.Series, pd.Index)):
        rows = rows.to_numpy()
    arr = np.asarray(rows)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    elif arr.ndim != 1:
        msg = f"select() takes 1-D row indices or a bool mask, got shape {arr.shape}"
        raise ValueError(msg)
    if arr.dtype == bool:
        if len(arr) != n:
            msg = (
                f"a bool mask must have one entry per row: got {len(arr)}, the table has {n} "
                "(pass row indices instead, or a mask over analysis.table)"
            )
            raise ValueError(msg)
        return np.flatnonzero(arr).astype(np.uint32)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint32)
    if not np.issubdtype(arr.dtype, np.integer):
        msg = (
            f"select() takes integer row indices or a bool mask, got dtype {arr.dtype}: "
            "use analysis.table.index[mask] or np.flatnonzero(mask)"
        )
        raise TypeError(msg)
    bad = arr[(arr < 0) | (arr >= n)]
    if len(bad):
        msg = f"row index(es) {bad[:5].tolist()} out of range: the table has rows 0..{n - 1}"
        raise IndexError(msg)
    return sorted_unique(arr, n)


def sorted_unique(rows: np.ndarray, n: int) -> np.ndarray:
    """Sorted unique uint32 row indices; O(1) extra work when already strictly increasing (as the
    front end sends them), else a mask pass (np.unique's hash path is ~10x slower at 10⁶)."""
    rows = np.asarray(rows)
    if len(rows) < 2 or bool(np.all(rows[1:] > rows[:-1])):
        return rows.astype(np.uint32)
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return np.flatnonzero(mask).astype(np.uint32)


def rows_hash(rows: np.ndarray) -> str:
    """A short digest of sorted unique row indices (to tell whether a description is current)."""
    data = np.ascontiguousarray(rows, dtype="<u4").tobytes()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def page_of(
    rows: np.ndarray, key: np.ndarray | None, *, descending: bool, start: int, size: int
) -> np.ndarray:
    """``rows[start:start+size]`` in the grid's order: by ``key`` (one float per entry of
    ``rows``; largest first when ``descending``), ties by row, NaN last either way; ``key=None``
    orders by row. Only the first ``start+size`` are sorted when that is a small share."""
    if start >= len(rows):
        return np.zeros(0, dtype=np.intp)
    if key is None:
        ordered = rows[::-1] if descending else rows
        return ordered[start : start + size]
    missing = np.isnan(key)
    key = np.where(missing, 0.0, -key if descending else key)
    stop = min(start + size, len(rows))
    n_known = len(rows) - int(missing.sum())
    if stop <= n_known and stop < len(rows) // 4:
        # partial sort of the first `stop` rows: every row whose key is <= the stop-th smallest
        # known key (ties included, so the cut never picks an arbitrary subset of equal keys),
        # then the same (key, row) order as the full sort
        known = np.flatnonzero(~missing)
        kth = np.partition(key[known], stop - 1)[stop - 1]
        cand = known[key[known] <= kth]
        order = cand[np.lexsort((rows[cand], key[cand]))]
    else:
        order = np.lexsort((rows, key, missing))
    return rows[order[start:stop]]


def jsonable(v: Any) -> Any:
    """A JSON-safe scalar for a synced trait: bools and ints as such, finite floats, ``None`` for
    NaN/±inf/None, anything else as its text."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    return None if v is None else str(v)
