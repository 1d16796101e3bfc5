"""Statistics of a selection against a baseline, as pure numpy functions.

Everything works on integer row indices into aligned per-row arrays (``labels``, ``preds``,
``correct``), so one call at 10⁶ rows is a few ``bincount``s and never touches pandas. Results are
plain JSON-able dicts (no NaN: missing numbers are ``None``), so the widget can sync them as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from faultlens.analysis.stats import Z95, wilson_interval  # noqa: F401 - re-exported


def _num(v: float) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    v = float(v)
    return v if math.isfinite(v) else None


def error_summary(correct: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """Size, errors, error rate and its 95 % Wilson interval of ``rows``."""
    n = len(rows)
    errors = int(n - np.count_nonzero(correct[rows])) if n else 0
    lo, hi = wilson_interval(errors, n)
    return {
        "n": n,
        "errors": errors,
        "error_rate": _num(errors / n) if n else None,
        "ci_low": _num(lo),
        "ci_high": _num(hi),
    }


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
    """Statistics of the rows ``selected`` against the rows ``baseline``.

    Parameters
    ----------
    selected, baseline:
        Integer row indices (``selected`` is usually a subset of ``baseline``, e.g. the selection
        inside the current filter against everything inside the filter).
    labels, preds:
        Integer class per row, in ``range(len(class_names))``.
    correct:
        Bool per row.
    top:
        How many confusions to list.

    Returns
    -------
    dict
        ``selection`` and ``baseline`` (each: ``n``, ``errors``, ``error_rate``, ``ci_low``,
        ``ci_high``), ``lift`` (selection error rate / baseline error rate), ``class_mix`` (per
        class present in the selection: ``label``, ``name``, ``n``, ``share``, ``baseline_share``,
        largest first) and ``confusions`` (``label``, ``pred``, names, ``n``, ``share_of_errors``,
        most frequent first, at most ``top``).
    """
    selected = np.asarray(selected, dtype=np.intp)
    baseline = np.asarray(baseline, dtype=np.intp)
    n_classes = len(class_names)
    sel = error_summary(correct, selected)
    base = error_summary(correct, baseline)
    lift = None
    if sel["error_rate"] is not None and base["error_rate"]:
        lift = _num(sel["error_rate"] / base["error_rate"])

    mix: list[dict[str, Any]] = []
    if len(selected):
        counts = np.bincount(labels[selected], minlength=n_classes)
        base_counts = np.bincount(labels[baseline], minlength=n_classes) if len(baseline) else None
        for c in np.argsort(-counts, kind="stable"):
            if counts[c] == 0:
                break
            mix.append(
                {
                    "label": int(c),
                    "name": str(class_names[c]),
                    "n": int(counts[c]),
                    "share": float(counts[c] / len(selected)),
                    "baseline_share": (
                        float(base_counts[c] / len(baseline)) if base_counts is not None else None
                    ),
                }
            )

    confusions: list[dict[str, Any]] = []
    if sel["errors"]:
        wrong = selected[~correct[selected]]
        pair = labels[wrong].astype(np.int64) * n_classes + preds[wrong].astype(np.int64)
        # only the pairs that occur (O(errors), not a table of n_classes² counts); codes come out
        # sorted, so a stable sort by count keeps ties in (label, pred) order
        codes, pc = np.unique(pair, return_counts=True)
        for j in np.argsort(-pc, kind="stable")[:top]:
            lab, prd = divmod(int(codes[j]), n_classes)
            confusions.append(
                {
                    "label": lab,
                    "pred": prd,
                    "label_name": str(class_names[lab]),
                    "pred_name": str(class_names[prd]),
                    "n": int(pc[j]),
                    "share_of_errors": float(pc[j] / sel["errors"]),
                }
            )
    return {
        "selection": sel,
        "baseline": base,
        "lift": lift,
        "class_mix": mix,
        "confusions": confusions,
    }
