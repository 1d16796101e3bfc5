"""Real images with planted differences, for the describers' tests and their accuracy table.

Three image sets: scikit-learn digits (8 × 8, upscaled to 64 × 64 and tinted a random colour),
crops of scikit-image's sample photos (64 × 64) and the demo's Fashion-MNIST test images (28 × 28,
grey). Each planted kind changes a random half of a set ("members") and leaves the rest
("reference") as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

PROPERTY_KINDS: dict[str, str] = {
    "darker": "brightness",
    "blurred": "sharpness",
    "smaller": "object size",
    "noisier": "noise",
    "desaturated": "saturation",
    "moved": "object x",
}
#: Where a stamp goes, as (row, col) cell of the 3 × 3 grid, and the region that names it.
STAMP_CELLS: dict[str, tuple[int, int]] = {
    "top-left": (0, 0),
    "top-right": (0, 2),
    "center": (1, 1),
    "bottom": (2, 1),
    "left": (1, 0),
}


def digits(n: int = 240, seed: int = 0) -> np.ndarray:
    """(n, 64, 64, 3) float digits in [0, 1], each stroke tinted a random saturated colour."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    d = load_digits().images[:n] / 16.0
    big = np.stack([np.asarray(Image.fromarray((x * 255).astype(np.uint8)).resize(
        (64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255 for x in d])  # fmt: skip
    hue = rng.uniform(0.3, 1.0, (len(d), 3)).astype(np.float32)
    hue[np.arange(len(d)), rng.integers(0, 3, len(d))] = 1.0
    return np.clip(big[..., None] * hue[:, None, None, :], 0, 1)


def photos(n: int = 240, seed: int = 0) -> np.ndarray:
    """(n, 64, 64, 3) float crops (random place, scale and flip) of scikit-image's colour photos,
    each shown as an object: scaled to 60-90 % of the side, placed near the middle of a plain
    canvas (a random grey with a little grain), like a product photo."""
    from skimage import data

    rng = np.random.default_rng(seed)
    srcs = [getattr(data, k)() for k in ("astronaut", "chelsea", "coffee", "rocket",
                                         "immunohistochemistry")]  # fmt: skip
    out = []
    for _ in range(n):
        im = srcs[rng.integers(len(srcs))]
        side = int(rng.integers(min(im.shape[:2]) // 3, min(im.shape[:2])))
        y = int(rng.integers(0, im.shape[0] - side + 1))
        x = int(rng.integers(0, im.shape[1] - side + 1))
        crop = Image.fromarray(im[y : y + side, x : x + side]).resize(
            (64, 64), Image.Resampling.BOX
        )
        a = np.asarray(crop, dtype=np.float32) / 255
        a = a[:, ::-1] if rng.random() < 0.5 else a
        s = int(64 * rng.uniform(0.6, 0.9))
        obj = np.asarray(Image.fromarray((a * 255).astype(np.uint8)).resize(
            (s, s), Image.Resampling.BOX), dtype=np.float32) / 255  # fmt: skip
        canvas = np.full((64, 64, 3), rng.uniform(0.1, 0.9), dtype=np.float32)
        canvas += rng.normal(0, 0.01, (64, 64, 1)).astype(np.float32)
        y0 = int(np.clip((64 - s) // 2 + rng.integers(-3, 4), 0, 64 - s))
        x0 = int(np.clip((64 - s) // 2 + rng.integers(-3, 4), 0, 64 - s))
        canvas[y0 : y0 + s, x0 : x0 + s] = obj
        out.append(np.clip(canvas, 0, 1))
    return np.stack(out)


def fashion(n: int = 240, seed: int = 0) -> np.ndarray:
    """(n, 28, 28, 3) float demo images without the logo or the shrink (grey Fashion-MNIST)."""
    from faultlens.data.demo import load_spurious_fashion_mnist

    te = load_spurious_fashion_mnist(n_test_per_class=100, seed=seed)["test"]
    keep = np.flatnonzero(~te.cue & ~te.small)[:n]
    g = te.images[keep].astype(np.float32) / 255
    return np.repeat(g[..., None], 3, axis=3)


SETS: dict[str, Callable[..., np.ndarray]] = {
    "digits": digits,
    "photos": photos,
    "fashion": fashion,
}


def _border_colour(x: np.ndarray) -> np.ndarray:
    h, _w = x.shape[:2]
    b = max(1, h // 16)
    ring = np.concatenate([x[:b].reshape(-1, 3), x[-b:].reshape(-1, 3),
                           x[:, :b].reshape(-1, 3), x[:, -b:].reshape(-1, 3)])  # fmt: skip
    return np.median(ring, axis=0)


def _shrunk(x: np.ndarray, scale: float, dx: float = 0.0) -> np.ndarray:
    """The image scaled by ``scale`` onto a canvas of its border's colour, centred, then moved by
    ``dx`` of the width."""
    h, w = x.shape[:2]
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray((x * 255).astype(np.uint8)).resize(
        (sw, sh), Image.Resampling.BILINEAR), dtype=np.float32) / 255  # fmt: skip
    out = np.empty_like(x)
    out[:] = _border_colour(x)
    y0 = (h - sh) // 2
    x0 = int(np.clip((w - sw) // 2 + round(dx * w), 0, w - sw))
    out[y0 : y0 + sh, x0 : x0 + sw] = small
    return out


def _shifted(x: np.ndarray, dx: float) -> np.ndarray:
    """The image moved right by ``dx`` of its width; the strip it leaves takes the border's colour."""
    w = x.shape[1]
    k = round(dx * w)
    out = np.empty_like(x)
    out[:] = _border_colour(x)
    out[:, k:] = x[:, : w - k]
    return out


def plant(x: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One image (H, W, 3 float) with the planted change ``kind``."""
    h = x.shape[0]
    if kind == "darker":
        return x * 0.6
    if kind == "blurred":
        return ndimage.gaussian_filter(x, sigma=(h / 40, h / 40, 0))
    if kind == "smaller":
        return _shrunk(x, 0.55)
    if kind == "noisier":
        grain = rng.normal(0, 0.08, x.shape[:2])[..., None]  # luminance noise: the same on R, G, B
        return np.clip(x + grain, 0, 1).astype(np.float32)
    if kind == "desaturated":
        g = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return g[..., None] + 0.15 * (x - g[..., None])
    if kind == "moved":
        return _shifted(x, 0.15)
    if kind.startswith("stamp:"):
        return stamp(x, STAMP_CELLS[kind[6:]])
    msg = f"unknown kind {kind!r}"
    raise ValueError(msg)


def stamp(x: np.ndarray, cell: tuple[int, int]) -> np.ndarray:
    """A white square with a black core, one sixth of the side, in the middle of a 3 × 3 cell."""
    h, w = x.shape[:2]
    s = max(3, h // 6)
    cy, cx = int((cell[0] + 0.5) * h / 3), int((cell[1] + 0.5) * w / 3)
    y0, x0 = cy - s // 2, cx - s // 2
    out = x.copy()
    out[y0 : y0 + s, x0 : x0 + s] = 1.0
    k = max(1, s // 3)
    out[y0 + k : y0 + s - k, x0 + k : x0 + s - k] = 0.0
    return out


def planted_set(name: str, kind: str, seed: int, n: int = 240) -> tuple[np.ndarray, np.ndarray]:
    """The images of set ``name`` with ``kind`` planted on a random half: (images, member rows)."""
    rng = np.random.default_rng(seed)
    imgs = SETS[name](n, seed=0).copy()
    members = np.sort(rng.choice(len(imgs), len(imgs) // 2, replace=False))
    for i in members:
        imgs[i] = plant(imgs[i], kind, rng)
    return np.clip(imgs, 0, 1), members


def edge_maps(images: np.ndarray) -> np.ndarray:
    """A stand-in model's evidence maps: local edge energy (smoothed gradient magnitude of the
    luma), the cue a small CNN's early filters respond to."""
    luma = images @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = []
    for g in luma:
        mag = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
        out.append(ndimage.gaussian_filter(mag, g.shape[0] / 32))
    return np.stack(out)
