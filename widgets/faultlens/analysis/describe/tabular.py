"""The user's own columns against the reference: over-represented categories and shifted numbers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from faultlens.analysis.describe._common import (
    Description,
    benjamini_hochberg,
    beyond,
    groups,
    hedges_g,
)
from faultlens.analysis.stats import Z95


def columns(
    table: pd.DataFrame,
    members: Any,
    reference: Any = None,
    *,
    max_levels: int = 30,
    alpha: float = 0.05,
) -> Description:
    """Which of the user's columns set the members apart from the reference.

    Categorical columns (strings, booleans, categories, or integers with at most ``max_levels``
    distinct values): each value's share among members and reference, the lift (ratio of the
    shares) with a Katz 95 % interval, Fisher's exact test; a value is kept when over-represented
    (Benjamini–Hochberg q < ``alpha`` over all values tested). Term: ``"column = value"`` with its
    share difference. Numeric columns: Hedges' g with a 95 % interval, kept when the interval
    excludes 0; term: ``"column"`` with g. Terms ranked by evidence (|estimate| / standard error).

    ``details``: per term ``kind`` ("category"/"number"), ``estimate``, ``ci``, ``words``,
    ``evidence``, ``rows`` (the members that carry it: those with the value; for a number, those
    beyond the reference's 90th percentile in the shift's direction, or its 10th); ``tested`` columns.
    """
    from scipy.stats import hypergeom

    if not isinstance(table, pd.DataFrame):
        msg = (
            f"columns() needs a pandas DataFrame of the user's columns, got {type(table).__name__}"
        )
        raise TypeError(msg)
    m, r = groups(len(table), members, reference)
    nm, nr = len(m), len(r)
    cats: list[tuple[str, Any, int, int, np.ndarray]] = []
    found: dict[str, dict[str, Any]] = {}
    for col in table.columns:
        v = table[col]
        numeric = pd.api.types.is_numeric_dtype(v) and not pd.api.types.is_bool_dtype(v)
        if numeric and (v.nunique(dropna=True) > max_levels or v.dtype.kind == "f"):
            x = pd.to_numeric(v, errors="coerce").to_numpy(dtype=np.float64)
            a, b = x[m][np.isfinite(x[m])], x[r][np.isfinite(x[r])]
            g, lo, hi = hedges_g(a, b)
            if math.isfinite(g) and (lo > 0 or hi < 0):
                ev = abs(g) / ((hi - lo) / (2 * Z95)) if hi > lo else 40.0
                found[str(col)] = {
                    "kind": "number",
                    "estimate": g,
                    "ci": (lo, hi),
                    "evidence": min(ev, 40.0),
                    "words": f"{'higher' if g > 0 else 'lower'} {col}: median "
                    f"{np.median(a):.3g} vs {np.median(b):.3g} ({g:+.1f} SD)",
                    "rows": beyond(m, x[m], x[r], g > 0),
                }
            continue
        if v.nunique(dropna=True) > max_levels and not pd.api.types.is_bool_dtype(v):
            continue  # an id-like column: nothing to count
        s = v.astype("object").where(v.notna(), "(missing)")
        sm = s.iloc[m]
        cm, cr = sm.value_counts(), s.iloc[r].value_counts()
        for val, k in cm.items():
            cats.append((str(col), val, int(k), int(cr.get(val, 0)), m[(sm == val).to_numpy()]))
    if cats:
        a = np.array([c[2] for c in cats])
        b = np.array([c[3] for c in cats])
        p = hypergeom.sf(a - 1, nm + nr, a + b, nm)
        q = benjamini_hochberg(p)
        for (col, val, ka, kb, carriers), qv in zip(cats, q, strict=True):
            if qv >= alpha or ka / nm <= kb / nr:
                continue
            aa, bb = ka + 0.5, kb + 0.5
            lr = math.log((aa / (nm + 0.5)) / (bb / (nr + 0.5)))
            se = math.sqrt(max(1 / aa - 1 / (nm + 0.5) + 1 / bb - 1 / (nr + 0.5), 1e-12))
            found[f"{col} = {val}"] = {
                "kind": "category",
                "estimate": ka / nm - kb / nr,
                "lift": (math.exp(lr), math.exp(lr - Z95 * se), math.exp(lr + Z95 * se)),
                "ci": (math.exp(lr - Z95 * se), math.exp(lr + Z95 * se)),
                "q": float(qv),
                "evidence": min(abs(lr) / se, 40.0),
                "words": f"{col} = {val}: {ka / nm:.0%} of the slice vs {kb / nr:.0%} "
                + (f"(lift {math.exp(lr):.1f}×)" if kb else "(only in the slice)"),
                "rows": carriers,
            }
    order = sorted(found, key=lambda t: -found[t]["evidence"])
    return Description(
        "columns",
        [(t, round(float(found[t]["estimate"]), 4)) for t in order],
        {"terms": {t: found[t] for t in order}, "tested": [str(c) for c in table.columns]},
    )
