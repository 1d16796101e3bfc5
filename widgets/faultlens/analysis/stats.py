"""Statistics of a group of rows: error rate with its Wilson interval, lift, class mix, confusions.

Everything works on integer row indices into aligned per-row arrays (``correct``, ``labels``,
``preds``), so one call at 10⁶ rows is a few ``bincount``s and never touches pandas. Every group
(a selection, a filter, a discovered slice) is described by the one dict :func:`group_stats`
returns; results are JSON-able as they are (a missing number is None, never NaN), so a widget can
sync them and a report can print them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for ``k`` successes in ``n`` trials (``(nan, nan)`` when n = 0)."""
    if n < 0 or k < 0 or k > n:
        msg = f"need 0 <= k <= n, got k={k}, n={n}"
        raise ValueError(msg)
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _num(v: float) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    v = float(v)
    return v if math.isfinite(v) else None


def group_stats(
    correct: np.ndarray,
    rows: np.ndarray,
    *,
    baseline: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Statistics of the group ``rows`` against the rows ``baseline``.

    Parameters
    ----------
    correct:
        Bool per row: whether the classifier got it right.
    rows, baseline:
        Integer row indices of the group and of what it is compared with (default: every row).
    labels, class_names:
        Integer class per row and the classes' names (default ``"0"``, ``"1"``, …); without
        ``labels`` the class mix is empty.

    Returns
    -------
    dict
        ``n`` (rows), ``errors``, ``error_rate``, ``ci_low``/``ci_high`` (its 95 % Wilson
        interval), ``lift`` (its error rate over the baseline's) and ``class_mix``: one entry per
        class present in the group, largest first (ties in class order), with ``label``,
        ``name``, ``n``, ``share`` (of the group) and ``baseline_share``. A number that does not
        exist (the error rate of no rows, the lift over a baseline without errors) is None.
    """
    rows = np.asarray(rows, dtype=np.intp)
    base = np.arange(len(correct)) if baseline is None else np.asarray(baseline, dtype=np.intp)
    n = len(rows)
    errors = int(n - np.count_nonzero(correct[rows])) if n else 0
    rate = errors / n if n else math.nan
    base_errors = len(base) - np.count_nonzero(correct[base]) if len(base) else 0
    base_rate = base_errors / len(base) if len(base) else math.nan
    lo, hi = wilson_interval(errors, n)
    return {
        "n": n,
        "errors": errors,
        "error_rate": _num(rate),
        "ci_low": _num(lo),
        "ci_high": _num(hi),
        "lift": _num(rate / base_rate) if n and base_rate > 0 else None,
        "class_mix": _class_mix(rows, base, labels, class_names),
    }


def _class_mix(
    rows: np.ndarray,
    baseline: np.ndarray,
    labels: np.ndarray | None,
    class_names: Sequence[str] | None,
) -> list[dict[str, Any]]:
    if labels is None or not len(rows):
        return []
    n_classes = len(class_names) if class_names is not None else int(labels.max(initial=0)) + 1
    names = class_names if class_names is not None else [str(c) for c in range(n_classes)]
    counts = np.bincount(labels[rows], minlength=n_classes)
    base_counts = np.bincount(labels[baseline], minlength=n_classes) if len(baseline) else None
    mix = []
    for c in np.argsort(-counts, kind="stable"):
        if counts[c] == 0:
            break
        mix.append(
            {
                "label": int(c),
                "name": str(names[c]),
                "n": int(counts[c]),
                "share": float(counts[c] / len(rows)),
                "baseline_share": (
                    float(base_counts[c] / len(baseline)) if base_counts is not None else None
                ),
            }
        )
    return mix


def selection_stats(
    selected: np.ndarray,
    baseline: np.ndarray,
    *,
    labels: np.ndarray,
    preds: np.ndarray,
    correct: np.ndarray,
    class_names: Sequence[str],
    top: int = 5,
) -> dict[str, Any]:
    """Statistics of the rows ``selected`` against the rows ``baseline`` (e.g. the selection inside
    the current filter against everything inside the filter), and the selection's confusions.

    Returns
    -------
    dict
        ``selection`` and ``baseline``: each a :func:`group_stats` dict (against ``baseline``);
        ``lift`` and ``class_mix``: the selection's; ``confusions``: (``label``, ``pred``, their
        names, ``n``, ``share_of_errors``), most frequent first (ties in (label, pred) order), at
        most ``top``.
    """
    selected = np.asarray(selected, dtype=np.intp)
    baseline = np.asarray(baseline, dtype=np.intp)
    kw = {"baseline": baseline, "labels": labels, "class_names": class_names}
    sel = group_stats(correct, selected, **kw)
    return {
        "selection": sel,
        "baseline": group_stats(correct, baseline, **kw),
        "lift": sel["lift"],
        "class_mix": sel["class_mix"],
        "confusions": confusions(selected, labels, preds, correct, class_names, top=top),
    }


def confusions(
    rows: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    correct: np.ndarray,
    class_names: Sequence[str],
    *,
    top: int = 5,
) -> list[dict[str, Any]]:
    """The ``top`` most frequent (label, pred) pairs among the errors at ``rows``."""
    wrong = rows[~correct[rows]]
    if not len(wrong):
        return []
    n_classes = len(class_names)
    pair = labels[wrong].astype(np.int64) * n_classes + preds[wrong].astype(np.int64)
    # only the pairs that occur (O(errors), not a table of n_classes² counts); codes come out
    # sorted, so a stable sort by count keeps ties in (label, pred) order
    codes, pc = np.unique(pair, return_counts=True)
    out = []
    for j in np.argsort(-pc, kind="stable")[:top]:
        lab, prd = divmod(int(codes[j]), n_classes)
        out.append(
            {
                "label": lab,
                "pred": prd,
                "label_name": str(class_names[lab]),
                "pred_name": str(class_names[prd]),
                "n": int(pc[j]),
                "share_of_errors": float(pc[j] / len(wrong)),
            }
        )
    return out
