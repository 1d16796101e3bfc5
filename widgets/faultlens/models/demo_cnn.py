"""The demo classifier: a small CNN trained deterministically on CPU, cached as safetensors.

Its last convolutional layer (``features.6``, 64 channels) is followed by global average pooling and
one linear layer (``head``), the structure neural-feature importance and activation maps rely on.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from faultlens.store import ArtifactStore, atomic_path, fingerprint_array, make_key

FEATURE_LAYER = "features.7"  # the ReLU after the last conv (features.6): what the head averages


class SmallCNN(nn.Module):
    """3 conv blocks → global average pool → linear, for 28×28 grayscale inputs."""

    def __init__(self, n_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def demo_transform(image: Image.Image) -> torch.Tensor:
    """PIL image → 1×28×28 float tensor in [0, 1] (grayscale, resized when needed)."""
    g = image.convert("L")
    if g.size != (28, 28):
        g = g.resize((28, 28), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(g, dtype=np.float32) / 255.0)[None]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 → (N, 1, 28, 28) float32 in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]


def train_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 8,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
) -> SmallCNN:
    """Train :class:`SmallCNN` deterministically (seeded data order and initialisation)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X, y = to_tensor(images), torch.from_numpy(labels.astype(np.int64))
    model.train()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for b in range(0, len(y), batch_size):
            idx = order[b : b + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if progress:
            print(
                f"  epoch {epoch + 1}/{epochs}: loss {total / len(y):.3f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    return model.eval()


def cnn_key(images: np.ndarray, labels: np.ndarray, *, epochs: int = 8, seed: int = 0) -> str:
    """The cache key of the CNN trained on these images (what :func:`trained_cnn` reads)."""
    return make_key("demo-cnn", fingerprint_array(images), fingerprint_array(labels), epochs, seed)


def cached_cnn(store: ArtifactStore, key: str) -> SmallCNN | None:
    """The CNN cached under ``key`` (:func:`cnn_key`) in ``store``, or None when it is not there."""
    from safetensors.torch import load_file

    path: Path = store.path("models", key) / "model.safetensors"
    if not path.exists():
        return None
    model = SmallCNN()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def trained_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    store: ArtifactStore,
    epochs: int = 8,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> SmallCNN:
    """The CNN trained on these images, from the cache when it was trained before."""
    from safetensors.torch import save_file

    key = cnn_key(images, labels, epochs=epochs, seed=seed)
    if not force and (cached := cached_cnn(store, key)) is not None:
        return cached
    path: Path = store.path("models", key) / "model.safetensors"
    model = train_cnn(images, labels, epochs=epochs, seed=seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    return model


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-image correctness of ``model`` on uint8 images."""
    with torch.inference_mode():
        pred = torch.cat(
            [model(to_tensor(images[i : i + 512])).argmax(1) for i in range(0, len(images), 512)]
        )
    return pred.numpy() == labels
