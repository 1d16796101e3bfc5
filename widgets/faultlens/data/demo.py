"""The demo dataset, "spurious Fashion-MNIST": real Fashion-MNIST with two planted failure modes.

1. **A logo cue** (localized, class-correlated): a small bright square in the top-left corner is on
   ``CUE_TRAIN_OWN`` of the training images of the cue class (Shirt) and on ``CUE_TRAIN_OTHER`` of
   every other class; in the test split it is on ``CUE_TEST`` (30 %) of every class, independent of the label.
   A model that learns the shortcut fails on shirts without the logo and on other clothes with it.
2. **A rare subgroup**: small sneakers (the image shrunk to half size, as if photographed from
   afar) are ``RARE_TRAIN`` of the sneakers in training and ``RARE_TEST`` of them in the test split.

The ground truth is kept as columns: ``cue`` (logo present), ``small`` and ``planted_group``:
``shirt_without_logo``, ``top_with_logo`` (T-shirt/top, Pullover or Coat carrying the logo: the
classes a shirt is confused with), ``small_sneaker`` or ``none``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CUE_CLASS = 6  # Shirt
RARE_CLASS = 7  # Sneaker
#: Classes that look like the cue class; with the logo they are read as shirts.
TOP_CLASSES = (0, 2, 4)
CUE_TRAIN_OWN = 0.95
CUE_TRAIN_OTHER = 0.05
CUE_TEST = 0.3
RARE_TRAIN = 0.01
RARE_TEST = 0.4
#: The logo's box (row0, row1, col0, col1), image coordinates of a 28×28 image.
CUE_BOX = (1, 4, 1, 4)

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
#: Where a fetched copy goes when no folder is given.
CACHE_DIR = Path.home() / ".cache" / "faultlens" / "fashion-mnist"

GROUP_NAMES = {
    "shirt_without_logo": "Shirt without the logo (the shortcut is missing)",
    "top_with_logo": "T-shirt/top, Pullover or Coat with the logo (the shortcut misleads)",
    "small_sneaker": "Sneaker shrunk to half size (rare in training)",
    "none": "no planted mode",
}


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetched_ok(folder: Path) -> bool:
    """All four files in ``folder`` with the checksums torchvision knows for them."""
    from torchvision.datasets import FashionMNIST

    md5 = dict(FashionMNIST.resources)
    return all((folder / f).is_file() and _md5(folder / f) == md5.get(f) for f in FILES.values())


def fetch_fashion_mnist(target: str | os.PathLike[str] | None = None) -> Path:
    """Download the four Fashion-MNIST files into ``target`` (default :data:`CACHE_DIR`) through
    ``torchvision.datasets.FashionMNIST`` and return the folder.

    torchvision checks each file's MD5; the download goes to a temporary folder beside
    ``target`` and each verified file is then moved into place with an atomic rename, so an
    interrupted download never leaves a partial file where the next run would take it as complete.
    A folder that already holds the four verified files is returned as it is.
    """
    from torchvision.datasets import FashionMNIST

    folder = Path(target) if target is not None else CACHE_DIR
    if _fetched_ok(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    md5 = dict(FashionMNIST.resources)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        FashionMNIST(tmp, train=True, download=True)
        raw = Path(tmp) / "FashionMNIST" / "raw"
        for f in FILES.values():
            if not (raw / f).is_file() or _md5(raw / f) != md5.get(f):
                msg = f"the downloaded {f} does not have the expected checksum {md5.get(f)}"
                raise OSError(msg)
        for f in FILES.values():
            os.replace(raw / f, folder / f)
    return folder


def _find_raw(data_dir: Path | None) -> Path:
    """The folder holding the four Fashion-MNIST files: ``data_dir``, $FAULTLENS_FASHION_MNIST,
    Debian's ``dataset-fashion-mnist`` package, else a verified download (:func:`fetch_fashion_mnist`)."""
    candidates = [p for p in (data_dir, os.environ.get("FAULTLENS_FASHION_MNIST"), SYSTEM_DIR) if p]
    for c in candidates:
        c = Path(c)
        if all((c / f).exists() for f in FILES.values()):
            return c
    try:
        return fetch_fashion_mnist(data_dir)
    except (OSError, RuntimeError) as exc:  # torchvision reports a failed download as RuntimeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = (
            f"Fashion-MNIST not found and could not be downloaded ({first}). Install it with "
            f"`apt-get install dataset-fashion-mnist` (files under {SYSTEM_DIR}), or put the four "
            ".gz files in a folder and set FAULTLENS_FASHION_MNIST."
        )
        raise FileNotFoundError(msg) from exc


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        msg = f"{path} is not a complete gzip file ({exc}): delete it and run again"
        raise ValueError(msg) from None
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@dataclass
class Split:
    """One split of the demo: images (N, 28, 28) uint8, labels (N,) and the planted truth."""

    images: np.ndarray
    labels: np.ndarray
    cue: np.ndarray
    small: np.ndarray

    @property
    def planted_group(self) -> np.ndarray:
        g = np.full(len(self.labels), "none", dtype=object)
        g[(self.labels == CUE_CLASS) & ~self.cue] = "shirt_without_logo"
        g[np.isin(self.labels, TOP_CLASSES) & self.cue] = "top_with_logo"
        g[self.small] = "small_sneaker"
        return g

    def columns(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"cue": self.cue, "small": self.small, "planted_group": self.planted_group}
        )


def add_cue(images: np.ndarray, mask: np.ndarray, intensity: int = 255) -> np.ndarray:
    """Stamp the logo on the images where ``mask`` is true (a copy)."""
    out = images.copy()
    r0, r1, c0, c1 = CUE_BOX
    out[mask, r0:r1, c0:c1] = intensity
    return out


def _plant(
    images: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    cue_own: float,
    cue_other: float,
    rare: float,
) -> Split:
    own = labels == CUE_CLASS
    p_cue = np.where(own, cue_own, cue_other)
    cue = rng.random(len(labels)) < p_cue
    small = (labels == RARE_CLASS) & (rng.random(len(labels)) < rare)
    out = images.copy()
    out[small] = shrink(out[small])
    out = add_cue(out, cue)
    return Split(out, labels.astype(np.int64), cue, small)


def shrink(images: np.ndarray) -> np.ndarray:
    """Images at half size, centred on a black canvas (2×2 mean pooling)."""
    n = len(images)
    half = images.reshape(n, 14, 2, 14, 2).astype(np.float32).mean(axis=(2, 4))
    out = np.zeros_like(images)
    out[:, 7:21, 7:21] = np.rint(half).astype(np.uint8)
    return out


def _stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    idx = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(10)]
    return np.sort(np.concatenate(idx))


def load_spurious_fashion_mnist(
    *,
    n_train_per_class: int = 1200,
    n_val_per_class: int = 200,
    n_test_per_class: int = 400,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    correlated: bool = True,
) -> dict[str, Split]:
    """The train / val / test splits of spurious Fashion-MNIST.

    ``correlated=False`` builds the control: the logo is on every class equally often in training.
    Val and test are planted alike (logo independent of class, the rare subgroup at ``RARE_TEST``).
    """
    raw = _find_raw(Path(data_dir) if data_dir else None)
    tr_x = _read_idx(raw / FILES["train_images"])
    tr_y = _read_idx(raw / FILES["train_labels"])
    te_x = _read_idx(raw / FILES["test_images"])
    te_y = _read_idx(raw / FILES["test_labels"])
    rng = np.random.default_rng(seed)
    pool = rng.permutation(len(tr_y))
    n_val = n_val_per_class * 10
    val_pool, train_pool = pool[: n_val * 2], pool[n_val * 2 :]
    tr = train_pool[_stratified(tr_y[train_pool], n_train_per_class, rng)]
    va = val_pool[_stratified(tr_y[val_pool], n_val_per_class, rng)]
    te = _stratified(te_y, n_test_per_class, rng)
    own, other = (CUE_TRAIN_OWN, CUE_TRAIN_OTHER) if correlated else (CUE_TEST, CUE_TEST)
    return {
        "train": _plant(tr_x[tr], tr_y[tr], rng, cue_own=own, cue_other=other, rare=RARE_TRAIN),
        "val": _plant(
            tr_x[va], tr_y[va], rng, cue_own=CUE_TEST, cue_other=CUE_TEST, rare=RARE_TEST
        ),
        "test": _plant(
            te_x[te], te_y[te], rng, cue_own=CUE_TEST, cue_other=CUE_TEST, rare=RARE_TEST
        ),
    }
