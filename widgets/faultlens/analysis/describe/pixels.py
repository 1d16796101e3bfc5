"""Describers grounded in the pixels: where the model's evidence sits (:func:`evidence_location`)
and how the images differ (:func:`image_properties`, :func:`property_effects`)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from faultlens.analysis.describe._common import Description, beyond, groups, hedges_g, pct
from faultlens.data.properties import PROPERTY_COLUMNS, PROPERTY_NAMES, compute_properties

#: The region vocabulary: the nine cells of a 3 × 3 grid, and the outer ring one eighth of the
#: side wide ("border"), which overlaps the outer cells.
REGIONS: tuple[str, ...] = (
    "top-left",
    "top",
    "top-right",
    "left",
    "center",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
    "border",
)


def region_masks(shape: tuple[int, int]) -> np.ndarray:
    """(len(REGIONS), H, W) boolean masks of the regions on an H × W grid."""
    from faultlens.data.properties import border_mask

    h, w = shape
    row = np.minimum(np.arange(h) * 3 // h, 2)
    col = np.minimum(np.arange(w) * 3 // w, 2)
    cell = row[:, None] * 3 + col[None, :]
    return np.stack([cell == k for k in range(9)] + [border_mask((h, w), 1 / 8)])


# --------------------------------------------------------------------------- where the model looks


def evidence_location(
    maps: np.ndarray,
    members: Any,
    reference: Any = None,
    *,
    n_boot: int = 1000,
    random_state: int = 0,
    label: str = "activation maps",
) -> Description:
    """Where the model's evidence sits in the members' images, against the reference's.

    ``maps``: (n, H, W) non-negative (activation maps, Grad-CAM), one per row; each is normalised to
    sum 1 (an all-zero map counts as uniform). Per region of :data:`REGIONS`, the share of map mass
    in it, members' mean minus reference's, with a bootstrap 95 % interval (members and reference
    resampled separately). Terms: ``(region, share difference)``, largest first: where the
    members' evidence gathers more than the reference's first, where it is missing last.

    ``details``: ``share`` {region: (members, reference)}, ``ci`` {region: (low, high)}, ``words``
    {region: plain words}, ``members_mean``/``reference_mean`` (H, W) mean maps, ``pictures``
    {"members", "reference", "difference": PNG bytes}, ``n`` (members, reference), ``blank`` maps,
    ``rows`` {region: the members that carry the finding: whose share in it lies beyond the
    reference's 90th percentile share when the difference is positive, below its 10th when
    negative}.
    """
    M = np.asarray(maps, dtype=np.float64)
    if M.ndim != 3 or min(M.shape) < 1:
        msg = f"maps must be (n_images, H, W), got shape {M.shape}"
        raise ValueError(msg)
    m, r = groups(len(M), members, reference)
    sel = np.concatenate([m, r])
    sub = M[sel]
    if not np.isfinite(sub).all():
        bad = int(sel[~np.isfinite(sub).all(axis=(1, 2))][0])
        msg = f"the map of row {bad} has NaN or inf"
        raise ValueError(msg)
    if (sub < 0).any():
        bad = int(sel[(sub < 0).any(axis=(1, 2))][0])
        msg = f"the map of row {bad} has negative values: pass non-negative maps (ReLU or min-max)"
        raise ValueError(msg)
    h, w = sub.shape[1:]
    total = sub.sum(axis=(1, 2), keepdims=True)
    blank = total[:, 0, 0] <= 0
    norm = np.where(total > 0, sub / np.where(total > 0, total, 1.0), 1.0 / (h * w))
    masks = region_masks((h, w)).reshape(len(REGIONS), -1).astype(np.float64)
    shares = norm.reshape(len(sel), -1) @ masks.T  # (n, regions)
    sm, sr = shares[: len(m)], shares[len(m) :]
    mean_m, mean_r = sm.mean(0), sr.mean(0)
    diff = mean_m - mean_r
    rng = np.random.default_rng(random_state)
    bm = rng.multinomial(len(m), np.full(len(m), 1 / len(m)), size=n_boot) @ sm / len(m)
    br = rng.multinomial(len(r), np.full(len(r), 1 / len(r)), size=n_boot) @ sr / len(r)
    lo, hi = np.percentile(bm - br, [2.5, 97.5], axis=0)
    order = np.argsort(-diff, kind="stable")
    words = {}
    for k, reg in enumerate(REGIONS):
        where = "along the border" if reg == "border" else reg
        vs = f"({pct(mean_m[k])} of map mass vs {pct(mean_r[k])})"
        words[reg] = (
            f"the model's evidence sits {where} {vs}"
            if diff[k] > 0
            else f"less of the model's evidence {where} {vs}"
        )
    img_m, img_r = norm[: len(m)].mean(0), norm[len(m) :].mean(0)
    return Description(
        source=f"where the model looks ({label})",
        terms=[(REGIONS[k], round(float(diff[k]), 4)) for k in order],
        details={
            "share": {
                REGIONS[k]: (float(mean_m[k]), float(mean_r[k])) for k in range(len(REGIONS))
            },
            "ci": {REGIONS[k]: (float(lo[k]), float(hi[k])) for k in range(len(REGIONS))},
            "words": words,
            "members_mean": img_m.astype(np.float32),
            "reference_mean": img_r.astype(np.float32),
            "pictures": map_pictures(img_m, img_r),
            "n": (len(m), len(r)),
            "blank": int(blank.sum()),
            "rows": {
                REGIONS[k]: beyond(m, sm[:, k], sr[:, k], diff[k] > 0) for k in range(len(REGIONS))
            },
        },
    )


def _png(rgb: np.ndarray, size: int = 96) -> bytes:
    from PIL import Image

    im = Image.fromarray(rgb)
    scale = max(1, size // max(im.size))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def map_pictures(members_mean: np.ndarray, reference_mean: np.ndarray) -> dict[str, bytes]:
    """PNGs of the members' and the reference's mean maps (inferno, one shared scale) and of their
    difference (blue = less, red = more in the members, white = equal)."""
    from faultlens.analysis.spurious import colormap

    top = float(max(members_mean.max(), reference_mean.max())) or 1.0
    d = members_mean - reference_mean
    span = float(np.abs(d).max()) or 1.0
    t = np.clip(d / span, -1, 1)[..., None]
    red, blue, white = np.array([178, 24, 43]), np.array([33, 102, 172]), np.array([247, 247, 247])
    diff = np.where(t > 0, white + t * (red - white), white - t * (blue - white))
    return {
        "members": _png(colormap(members_mean / top)),
        "reference": _png(colormap(reference_mean / top)),
        "difference": _png(np.round(diff).astype(np.uint8)),
    }


# --------------------------------------------------------------------------- image properties


def property_values(
    images: Any, rows: np.ndarray | None = None, *, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """(len(rows), P) properties of the images at ``rows`` (all when None). ``images``: a sequence
    of PIL images or arrays, an (n, H, W, 3) array, or a function ``row -> image``."""
    if rows is None:
        if callable(images) and not hasattr(images, "__len__"):
            msg = "give rows when images is a function"
            raise ValueError(msg)
        rows = np.arange(len(images))
    get = images if callable(images) and not hasattr(images, "__getitem__") else images.__getitem__
    out = np.empty((len(rows), len(PROPERTY_NAMES)), dtype=np.float32)
    for k, i in enumerate(rows):
        try:
            out[k] = compute_properties(get(int(i)))
        except Exception as exc:
            msg = f"image {int(i)}: could not compute its properties ({type(exc).__name__}: {exc})"
            raise ValueError(msg) from exc
        if progress is not None:
            progress(k)
    return out


def image_properties(
    images: Any, members: Any, reference: Any = None, *, max_reference: int | None = None
) -> Description:
    """How the members' images differ from the reference's in brightness, contrast, saturation,
    sharpness, noise, object size and position, aspect ratio and resolution (see
    :mod:`faultlens.data.properties`), as :func:`property_effects`.

    ``images``: a sequence of PIL images or arrays, or an (n, H, W, 3) array (uint8, or float in
    [0, 1]); only the members' and the reference's images are read. ``max_reference``: read at most
    this many reference images (a seeded random sample)."""
    n = len(images)
    m, r = groups(n, members, reference)
    if max_reference is not None and len(r) > max_reference:
        r = np.sort(np.random.default_rng(0).choice(r, max_reference, replace=False))
    vals = property_values(images, np.concatenate([m, r]))
    return property_effects(vals, np.arange(len(m)), np.arange(len(m), len(m) + len(r)))


#: Properties compared on a log scale (they are ratios or scale with the image).
_LOG = {"aspect ratio", "resolution", "object size"}
_WORDS = {
    "brightness": ("darker", "brighter", "brightness {a} vs {b}", pct),
    "contrast": ("lower contrast", "higher contrast", "contrast {a} vs {b}", lambda v: f"{v:.2f}"),
    "saturation": ("less saturated", "more saturated", "saturation {a} vs {b}", pct),
    "sharpness": ("blurrier", "sharper", "sharpness {a} vs {b}", lambda v: f"{v:.2f}"),
    "noise": ("less noisy", "noisier", "noise σ {a} vs {b}", lambda v: f"{v:.3f}"),
    "object size": ("smaller", "larger", "foreground {a} vs {b} of the image", pct),
    "object x": ("further left", "further right", "object centre at {a} vs {b} of the width", pct),
    "object y": ("higher up", "lower down", "object centre at {a} vs {b} of the height", pct),
    "aspect ratio": ("taller", "wider", "width/height {a} vs {b}", lambda v: f"{v:.2f}"),
    "resolution": ("lower resolution", "higher resolution", "{a} vs {b} px a side",
                   lambda v: f"{v:.0f}"),
}  # fmt: skip


def property_effects(
    values: Any, members: Any, reference: Any = None, *, names: Sequence[str] = PROPERTY_NAMES
) -> Description:
    """Members against reference on precomputed properties (an (n, P) array in ``names`` order,
    or a table with the property columns, e.g. the analysis table).

    Effect = Hedges' g (standardised mean difference; noise, aspect ratio, resolution and object
    size on a log scale) with a 95 % interval. Terms: ``(property, g)`` ranked by |g|, largest
    first. ``details``: ``ci``, ``median`` {name: (members, reference)}, ``words`` (e.g. "smaller:
    foreground 18 % vs 41 % of the image (−1.3 SD)"), ``n``, ``rows`` {name: the members beyond
    the reference's 90th percentile in the effect's direction, or its 10th}."""
    V = _as_values(values, names)
    m, r = groups(len(V), members, reference)
    effects, ci, med, words, carriers = {}, {}, {}, {}, {}
    for j, name in enumerate(names):
        a, b = V[m, j].astype(np.float64), V[r, j].astype(np.float64)
        full_a, full_b = a, b
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) < 2 or len(b) < 2:
            continue
        ta, tb = (
            (np.log(np.maximum(a, 1e-4)), np.log(np.maximum(b, 1e-4))) if name in _LOG else (a, b)
        )
        g, lo, hi = hedges_g(ta, tb)
        if not math.isfinite(g):
            g, lo, hi = (math.copysign(40.0, g), math.copysign(40.0, g), math.copysign(40.0, g))
        effects[name], ci[name] = g, (lo, hi)
        med[name] = (float(np.median(a)), float(np.median(b)))
        less, more, fmt, f = _WORDS.get(
            name, ("lower " + name, "higher " + name, "{a} vs {b}", str)
        )
        what = fmt.format(a=f(med[name][0]), b=f(med[name][1]))
        words[name] = f"{more if g > 0 else less}: {what} ({g:+.1f} SD)"
        carriers[name] = beyond(m, full_a, full_b, g > 0)
    order = sorted(effects, key=lambda k: -abs(effects[k]))
    return Description(
        "image properties",
        [(k, round(float(effects[k]), 3)) for k in order],
        details={"ci": ci, "median": med, "words": words, "n": (len(m), len(r)), "rows": carriers},
    )


def _as_values(values: Any, names: Sequence[str]) -> np.ndarray:
    if hasattr(values, "columns"):
        cols = [PROPERTY_COLUMNS.get(n, n) for n in names]
        missing = [c for c in cols if c not in values.columns]
        if missing:
            msg = f"the table lacks the property columns {missing} (analyze(image_properties=True))"
            raise ValueError(msg)
        return values[cols].to_numpy(dtype=np.float64)
    V = np.asarray(values, dtype=np.float64)
    if V.ndim != 2 or V.shape[1] != len(names):
        msg = f"property values must be (n, {len(names)}), got shape {V.shape}"
        raise ValueError(msg)
    return V
