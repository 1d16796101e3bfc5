"""Per-image properties a slice can be described by: exposure, colour, blur, noise, where and how
big the object is, the file's shape and size. Pure functions of one image, no model.

Every property is finite for every image (a blank image gives 0 or the centre), so the model that
computes them in the decoding pass (:class:`faultlens.models.properties.ImageProperties`) never
skips an item. Intensities are in [0, 1]; positions are fractions of the width and height.

- ``brightness``: mean luma (Rec. 601), as the average of the object's and the background's mean
  luma when the image has both (see ``object size``), so a smaller object on a dark background
  does not read as a darker image.
- ``contrast``: (P98 − P2) / (P98 + P2) of the luma, a Michelson contrast of robust extremes (the
  same for an image and a darker copy of it).
- ``saturation``: Σ(max − min) / Σ max over the RGB channels: HSV saturation weighted by value, so
  dark pixels, whose hue is noise, count little; unchanged by darkening.
- ``sharpness``: 1 − the blur measure of Crété-Roffet et al. (2007): how much of the variation
  between neighbouring pixels survives a further 9-pixel box blur, taken after a 3 × 3 median filter,
  over the differences larger than three times the noise σ, so pixel noise does not count as
  detail. 0 = flat or fully blurred.
- ``noise``: σ of the pixel noise, Donoho's robust estimate: median(|HH|) / 0.6745 of the finest
  diagonal Haar detail of the luma.
- ``object size``: the share of foreground pixels. Foreground = pixels whose colour (3 × 3 mean)
  differs from the border's median colour by more than the border's own pixels typically do
  (median + 3 robust SD of their distances, at least 0.1), the border being the outer sixteenth:
  a textured border or noise raise the threshold with them. Of the connected parts found, the
  largest and those at least half its size are the object: a small mark (a logo, a speck)
  is not.
- ``object x``, ``object y``: the foreground's centroid (0 = left / top edge, 1 = right / bottom);
  0.5 when there is no foreground.
- ``aspect ratio``: width / height of the original file.
- ``resolution``: √(width × height) of the original file, in pixels (the decoder records the
  file's size before any reduced-scale decoding; see ``decode.ORIGINAL_SIZE``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from faultlens.data.decode import ORIGINAL_SIZE, decode_image

PROPERTY_NAMES: tuple[str, ...] = (
    "brightness",
    "contrast",
    "saturation",
    "sharpness",
    "noise",
    "object size",
    "object x",
    "object y",
    "aspect ratio",
    "resolution",
)
#: The table column of each property (snake case).
PROPERTY_COLUMNS: dict[str, str] = {p: p.replace(" ", "_") for p in PROPERTY_NAMES}
#: Images are measured with their longer side at most this many pixels (scaled down before).
WORK_SIZE = 128


def original_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the file ``image`` was decoded from (its own size when not recorded)."""
    size = image.info.get(ORIGINAL_SIZE)
    if isinstance(size, (tuple, list)) and len(size) == 2 and min(size) > 0:
        return int(size[0]), int(size[1])
    return image.size


def as_float_rgb(image: Any, work_size: int | None = WORK_SIZE) -> np.ndarray:
    """An image (PIL, array, path) as an H × W × 3 float array in [0, 1], its longer side scaled
    down to ``work_size``."""
    img = image if isinstance(image, Image.Image) else decode_image(image)
    img = img.convert("RGB") if img.mode != "RGB" else img
    if work_size and max(img.size) > work_size:
        s = work_size / max(img.size)
        size = (max(1, round(img.width * s)), max(1, round(img.height * s)))
        img = img.resize(size, Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0


def compute_properties(image: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """The properties of one image, in :data:`PROPERTY_NAMES` order (float32).

    ``image``: a PIL image, an H × W × 3 array (uint8, or float in [0, 1]) or a path; ``size``:
    the (width, height) of the original file, by default what the decoder recorded."""
    if size is None:
        size = original_size(image) if isinstance(image, Image.Image) else None
    if isinstance(image, np.ndarray) and image.dtype.kind == "f":
        a = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        image = Image.fromarray(np.rint(a * 255).astype(np.uint8))
    x = as_float_rgb(image)
    if size is None:
        size = (x.shape[1], x.shape[0])
    w, h = size
    luma = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lo, hi = np.percentile(luma, [2, 98])
    mx, mn = x.max(axis=2), x.min(axis=2)
    fg = _foreground(x)
    size_share, cx, cy = _share_and_centre(fg)
    bright = float(luma.mean())
    if 0 < size_share < 1:  # the object and the background count alike, whatever their sizes
        bright = 0.5 * (float(luma[fg].mean()) + float(luma[~fg].mean()))
    noise = _noise(luma)
    out = [
        bright,
        float((hi - lo) / (hi + lo)) if hi + lo > 1e-6 else 0.0,
        float((mx - mn).sum() / mx.sum()) if mx.sum() > 1e-6 else 0.0,
        _sharpness(luma, noise),
        noise,
        size_share,
        cx,
        cy,
        float(w) / float(h),
        float(np.sqrt(float(w) * float(h))),
    ]
    return np.asarray(out, dtype=np.float32)


def _sharpness(luma: np.ndarray, noise: float = 0.0) -> float:
    from scipy import ndimage

    if min(luma.shape) < 3:
        return 0.0
    f = ndimage.median_filter(luma, size=3, mode="nearest")
    blur = 0.0
    for axis in (0, 1):
        b = ndimage.uniform_filter1d(f, size=9, axis=axis, mode="nearest")
        d = np.abs(np.diff(f, axis=axis))
        db = np.abs(np.diff(b, axis=axis))
        keep = d > 3 * noise  # differences the noise could make are no detail
        d, db = d * keep, db * keep
        s_f = float(d.sum())
        if s_f <= 1e-6:
            return 0.0
        s_v = float(np.maximum(0.0, d - db).sum())
        blur = max(blur, (s_f - s_v) / s_f)
    return float(1.0 - blur)


def _noise(luma: np.ndarray) -> float:
    h, w = (luma.shape[0] // 2) * 2, (luma.shape[1] // 2) * 2
    if h < 2 or w < 2:
        return 0.0
    a = luma[:h:2, :w:2]
    b = luma[:h:2, 1:w:2]
    c = luma[1:h:2, :w:2]
    d = luma[1:h:2, 1:w:2]
    hh = (a - b - c + d) / 2.0
    return float(np.median(np.abs(hh)) / 0.6745)


def border_mask(shape: tuple[int, int], fraction: float = 1 / 8) -> np.ndarray:
    """True on the outer ring of an H × W grid, ``fraction`` of each side wide (at least 1)."""
    h, w = shape
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    m = np.zeros((h, w), dtype=bool)
    m[:bh], m[-bh:], m[:, :bw], m[:, -bw:] = True, True, True, True
    return m


def _foreground(x: np.ndarray) -> np.ndarray:
    """True where the (3 × 3 mean) colour differs from the border's median colour by more than the
    border's own pixels typically do: median + 3 robust SD of their distances, at least 0.1."""
    from scipy import ndimage

    h, w = x.shape[:2]
    ring = border_mask((h, w), 1 / 16)
    smooth = ndimage.uniform_filter(x, size=(3, 3, 1), mode="nearest")
    ref = np.median(smooth[ring], axis=0)
    diff = np.abs(smooth - ref)
    dist = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])
    r = dist[ring]
    med = float(np.median(r))
    thr = max(0.1, med + 3 * 1.4826 * float(np.median(np.abs(r - med))))
    fg = dist > thr
    lab, k = ndimage.label(fg, structure=np.ones((3, 3)))
    if k > 1:  # the object: the largest part, and parts at least half its size
        sizes = np.bincount(lab.ravel())[1:]
        keep = np.flatnonzero(sizes >= 0.5 * sizes.max()) + 1
        fg = np.isin(lab, keep)
    return fg


def _share_and_centre(fg: np.ndarray) -> tuple[float, float, float]:
    h, w = fg.shape
    if not fg.any():
        return 0.0, 0.5, 0.5
    ys, xs = np.nonzero(fg)
    return float(fg.mean()), float((xs.mean() + 0.5) / w), float((ys.mean() + 0.5) / h)
