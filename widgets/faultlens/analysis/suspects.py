"""Which of a class's top features look spurious, from evidence faultlens computes itself.

Salient ImageNet (Singla & Feizi, ICLR 2022) had human annotators decide whether each top feature of
a class is core (on the object) or spurious (background, a watermark, a co-occurring thing). Here a
class's top features are ranked by how likely each is spurious, so the user confirms or rejects the
suggestion in the FeatureBrowser instead of inspecting every feature. For a feature, its activation
maps over the class's ``m`` most activating images are each scaled to sum 1, and:

- **off object** = the share of map mass outside the object. The object is estimated from the image:
  pixels that differ from the border's median colour by more than 15 % of the image's range, the
  largest connected part of them, holes filled (a cue that does not touch the object is not part
  of it). An image with no such pixels counts as all object (no evidence either way);
- **border** = the share of map mass on the outer ring, one eighth of the side wide (where
  watermarks, logos and frame artefacts sit; the corners are part of it);
- **concentration** = the share of map mass in the top 5 % of pixels (a small cue gives a peaked
  map, a part of the object a spread one);
- **gap** = the spurious gap along the feature (accuracy of the class's most − least activating
  images, :func:`~faultlens.analysis.spurious.feature_gaps`), in [0, 1] after dividing by 100 and
  clipping below at 0: a shortcut makes images without it fail.

``suspicion`` = the mean of the four, in [0, 1]. A feature is suggested as "spurious?" when its
suspicion stands out among the class's top features: at least :data:`SUGGEST_MARGIN` above their
median. Maps are activation maps (NAM), so this needs a layer with spatial outputs.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import ndimage

from faultlens.analysis import spurious as sp

if TYPE_CHECKING:
    from faultlens.analysis.feature_index import FeatureIndex

__all__ = ["EVIDENCE", "SUGGEST_MARGIN", "foreground", "map_evidence", "rank_suspects"]

#: The four pieces of evidence, in the order of :func:`rank_suspects`' columns.
EVIDENCE = ("off_object", "border", "concentration", "gap")
#: A feature is suggested as "spurious?" when its suspicion is at least this above the median of the
#: class's top features.
SUGGEST_MARGIN = 0.15


def foreground(images: np.ndarray, *, threshold: float = 0.15) -> np.ndarray:
    """(n, H, W) bool: the object of each image (see the module's text).

    ``images``: (n, C, H, W) as the model reads them, or (n, H, W) / (n, H, W, 3) pixels.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = np.moveaxis(x, -1, 1)
    if x.ndim != 4:
        msg = f"images must be (n, C, H, W), (n, H, W) or (n, H, W, 3), got shape {x.shape}"
        raise ValueError(msg)
    n, _, h, w = x.shape
    ring = _ring((h, w))
    out = np.ones((n, h, w), dtype=bool)
    for i in range(n):
        bg = np.median(x[i][:, ring], axis=1)
        diff = np.abs(x[i] - bg[:, None, None]).max(axis=0)
        span = float(x[i].max() - x[i].min())
        mask = diff > threshold * span if span > 0 else np.zeros((h, w), bool)
        parts, count = ndimage.label(mask)
        if count == 0:
            continue
        sizes = ndimage.sum_labels(mask, parts, index=np.arange(1, count + 1))
        out[i] = ndimage.binary_fill_holes(parts == 1 + int(np.argmax(sizes)))
    return out


def _ring(shape: tuple[int, int]) -> np.ndarray:
    """The outer ring one eighth of the side wide (at least one pixel)."""
    h, w = shape
    bh, bw = max(1, h // 8), max(1, w // 8)
    m = np.ones(shape, dtype=bool)
    m[bh : h - bh, bw : w - bw] = False
    return m


def map_evidence(maps: np.ndarray, objects: np.ndarray) -> dict[str, float]:
    """Off-object share, border share and concentration of ``maps`` (n, H, W), each map scaled to
    sum 1 (all-zero maps are left out), averaged over the maps; NaN when every map is zero."""
    maps = np.asarray(maps, dtype=np.float64)
    total = maps.sum(axis=(1, 2))
    keep = total > 0
    if not keep.any():
        return dict.fromkeys(EVIDENCE[:3], float("nan"))
    p = maps[keep] / total[keep, None, None]
    obj = np.asarray(objects, dtype=bool)[keep]
    flat = np.sort(p.reshape(len(p), -1), axis=1)[:, ::-1]
    top = max(1, round(0.05 * flat.shape[1]))
    return {
        "off_object": float((p * ~obj).sum(axis=(1, 2)).mean()),
        "border": float(p[:, _ring(p.shape[1:])].sum(axis=1).mean()),
        "concentration": float(flat[:, :top].sum(axis=1).mean()),
    }


def rank_suspects(
    index: FeatureIndex, c: int, *, n_features: int = 10, m: int = 16, gap_k: int = 50
) -> pd.DataFrame:
    """Class ``c``'s ``n_features`` top features ranked by how likely each is spurious.

    One row per feature, most suspicious first: ``feature``, ``rank`` (by importance), the four
    :data:`EVIDENCE` columns, ``suspicion`` and ``suggest`` (suspicion ≥ their median + :data:`SUGGEST_MARGIN`).
    ``m``: the most activating images of the class whose maps are read.
    """
    cols = ["feature", "rank", *EVIDENCE, "suspicion", "suggest"]
    feats = index.top_features(c, n_features)
    if not feats:
        return pd.DataFrame(columns=cols)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sp.SpuriousWarning)
        gaps = sp.feature_gaps(index.acts, index.correct, index.labels, c, feats, k=gap_k)
    gap_of = dict(zip(gaps["feature"].astype(int), gaps["gap"], strict=True))
    rows = []
    for rank, f in enumerate(feats, start=1):
        top, _ = index.ends(c, f, m)
        if len(top) == 0:
            continue
        x = index.images(top)
        ev = map_evidence(index.features.activation_maps(x, f), foreground(x.numpy()))
        ev["gap"] = float(np.clip(gap_of.get(f, np.nan) / 100.0, 0.0, 1.0))
        rows.append({"feature": f, "rank": rank, **ev})
    out = pd.DataFrame(rows, columns=cols[:-2])
    out["suspicion"] = out[list(EVIDENCE)].mean(axis=1, skipna=True)
    out["suggest"] = out["suspicion"] >= out["suspicion"].median() + SUGGEST_MARGIN
    return out.sort_values(
        ["suspicion", "rank"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
