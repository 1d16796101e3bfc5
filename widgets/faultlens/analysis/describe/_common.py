"""The Description record and the statistics the describers share: groups of rows, Hedges' g with
its interval, Benjamini–Hochberg, and how strong a finding's evidence is."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faultlens.analysis.stats import Z95


@dataclass
class Description:
    """Ranked terms describing a slice and where they came from (shown beside them in the UI).

    ``details`` holds what backs the terms (per term: estimate, interval, words; pictures as PNG
    bytes), keyed as each describer documents."""

    source: str
    terms: list[tuple[str, float]]
    details: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int = 5) -> list[str]:
        return [t for t, _ in self.terms[:k]]


def groups(n: int, members: Any, reference: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``members`` and ``reference`` as int64 row arrays checked against ``n`` rows; reference
    None: every row not in ``members``."""
    m = _rows(members, n, "members")
    if len(m) == 0:
        msg = "members is empty: select some images to describe"
        raise ValueError(msg)
    if reference is None:
        mask = np.ones(n, dtype=bool)
        mask[m] = False
        r = np.flatnonzero(mask)
    else:
        r = _rows(reference, n, "reference")
    if len(r) == 0:
        msg = "the reference group is empty: pass reference= rows (or select fewer images)"
        raise ValueError(msg)
    return m, r


def _rows(rows: Any, n: int, what: str) -> np.ndarray:
    a = np.asarray(rows)
    if a.dtype == bool:
        if len(a) != n:
            msg = f"{what} is a mask of {len(a)} values for {n} images"
            raise ValueError(msg)
        return np.flatnonzero(a)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        msg = f"{what} must be integer row indices (or a boolean mask), got {a.dtype}"
        raise ValueError(msg)
    a = a.astype(np.int64).ravel()
    bad = (a < 0) | (a >= n)
    if bad.any():
        msg = f"{what} holds row {int(a[bad][0])}, outside 0..{n - 1}"
        raise ValueError(msg)
    return a


def hedges_g(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Hedges' g of ``x`` against ``y`` (bias-corrected standardised mean difference) and its 95 %
    interval (normal approximation, Hedges & Olkin). Both constant and equal: (0, 0, 0)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n1, n2 = len(x), len(y)
    if n1 < 2 or n2 < 2:
        return math.nan, math.nan, math.nan
    pooled = ((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2)
    diff = float(x.mean() - y.mean())
    if pooled <= 1e-24:
        return (0.0, 0.0, 0.0) if abs(diff) < 1e-12 else (math.copysign(math.inf, diff),) * 3
    j = 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0)
    g = j * diff / math.sqrt(pooled)
    se = math.sqrt((n1 + n2) / (n1 * n2) + g * g / (2.0 * (n1 + n2)))
    return g, g - Z95 * se, g + Z95 * se


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) of ``p``."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def z_of(estimate: float, low: float, high: float) -> float:
    """Evidence of an estimate with a 95 % interval: |estimate| / its standard error."""
    se = (high - low) / (2 * Z95)
    if not math.isfinite(estimate) or not se > 0:
        return 0.0 if not math.isfinite(estimate) or estimate == 0 else 40.0
    return min(abs(estimate) / se, 40.0)


def z_of_p(p: float) -> float:
    """Evidence of a two-sided p-value as the normal quantile it corresponds to."""
    from scipy.stats import norm

    if not math.isfinite(p):
        return 0.0
    return float(min(norm.isf(max(p, 1e-300) / 2), 40.0))


#: A member carries a shift when its value is beyond this share of the reference's values.
CARRIER_QUANTILE = 0.9


def beyond(
    rows: np.ndarray, values: np.ndarray, reference_values: np.ndarray, up: bool
) -> np.ndarray:
    """The ``rows`` (members) that carry a shift: those whose value lies beyond
    :data:`CARRIER_QUANTILE` of the reference's values in the shift's direction (above its 90th
    percentile when ``up``, below its 10th otherwise), so about one in ten members without the
    shift is taken by chance; NaN values never carry it. ``values`` align with ``rows``."""
    ref = np.asarray(reference_values, dtype=np.float64)
    ref = ref[np.isfinite(ref)]
    v = np.asarray(values, dtype=np.float64)
    if len(ref) == 0:
        return np.zeros(0, dtype=np.int64)
    cut = float(np.quantile(ref, CARRIER_QUANTILE if up else 1 - CARRIER_QUANTILE))
    hit = v > cut if up else v < cut
    return np.asarray(rows, dtype=np.int64)[hit & np.isfinite(v)]


def pct(v: float) -> str:
    """A share as a rounded percentage ("18 %")."""
    return f"{100 * v:.0f} %"


# --------------------------------------------------------------------------- generalisation


def split_halves(
    members: np.ndarray, reference: np.ndarray, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Members and reference each split into two random halves: (members A, reference A, members
    B, reference B)."""
    rng = np.random.default_rng(random_state)
    pm, pr = rng.permutation(members), rng.permutation(reference)
    hm, hr = (len(pm) + 1) // 2, (len(pr) + 1) // 2
    return pm[:hm], pr[:hr], pm[hm:], pr[hr:]


def retrieval_precision(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Precision of the top-k images by ``scores``, k = the number of members among them."""
    is_member = np.asarray(is_member, dtype=bool)
    k = int(is_member.sum())
    if k == 0:
        return float("nan")
    top_k = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return float(is_member[top_k].mean())


def held_out_precision(
    scores: np.ndarray,
    members: np.ndarray,
    reference: np.ndarray,
    terms: Sequence[str],
    *,
    select: Any = None,
    random_state: int = 0,
) -> dict[str, dict[str, Any]]:
    """The generalisation check of text descriptions (METHODS.md's AdaVision lesson).

    ``scores``: (len(terms), n) how strongly each term matches each image. Members and reference
    are split in halves; ``select(members_A, reference_A) -> terms`` (when given) says which terms
    the describer picks on half A alone; each term then retrieves half B's images by its score, and
    its precision (the share of members among the top |members B|) is set against the base rate.
    Returns {term: {"precision", "base_rate", "selected_on_half"}}."""
    ma, ra, mb, rb = split_halves(np.asarray(members), np.asarray(reference), random_state)
    if len(mb) == 0 or len(rb) == 0 or len(terms) == 0:
        return {}
    picked = set(select(ma, ra)) if select is not None else None
    rows = np.concatenate([mb, rb])
    is_m = np.r_[np.ones(len(mb), bool), np.zeros(len(rb), bool)]
    out = {}
    S = np.asarray(scores, dtype=np.float64).reshape(len(terms), -1)
    for t, s in zip(terms, S, strict=True):
        out[t] = {
            "precision": retrieval_precision(s[rows], is_m),
            "base_rate": len(mb) / len(rows),
            "selected_on_half": None if picked is None else t in picked,
        }
    return out
