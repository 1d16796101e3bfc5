"""Input checks shared by every layer: a clear ``ValueError`` that names the row and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np


def finite_matrix(
    arr: Any, name: str, *, rows: int | None = None, rows_of: str = "labels", hint: str = ""
) -> np.ndarray:
    """``arr`` as a 2-D float64 array with only finite values (and ``rows`` rows, when given)."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 2:
        msg = f"{name} must be 2-D (n, dim), got shape {a.shape}"
        raise ValueError(msg)
    if rows is not None and len(a) != rows:
        msg = f"{len(a)} rows of {name} but {rows} {rows_of}: pass one of each per image"
        raise ValueError(msg)
    bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
    if len(bad):
        msg = f"{name} row {bad[0]} has NaN or inf ({len(bad)} such rows){hint}"
        raise ValueError(msg)
    return a


def whole_number(value: Any, name: str, *, at_least: int = 1) -> int:
    """``value`` as an int, when it is a whole number (not a bool) of at least ``at_least``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < at_least:
        msg = f"{name}={value!r}: pass a whole number, at least {at_least}"
        raise ValueError(msg)
    return int(value)


def row_indices(rows: Any, n: int, name: str = "rows") -> np.ndarray:
    """Row indices (int64, in the order given) from indices or a bool mask of length ``n``; a
    ``ValueError`` naming ``name`` for a mask of another length or an index outside ``0..n-1``."""
    arr = np.asarray(rows)
    if arr.dtype == bool:
        if arr.shape != (n,):
            msg = f"{name}: a mask must have {n} entries, got shape {arr.shape}"
            raise ValueError(msg)
        return np.flatnonzero(arr)
    arr = arr.astype(np.int64).ravel()
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        msg = f"{name} must be in 0..{n - 1}"
        raise ValueError(msg)
    return arr
