"""Shared fixtures: a private cache per test, tiny seeded models, small image sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FAULTLENS_CACHE", str(cache))
    return cache


class TinyNet(nn.Module):
    """A seeded 3-class classifier on 3×16×16 inputs with a conv layer to take features from."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def tiny_transform(img) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB").resize((16, 16)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for every test that needs the demo CNN, so it is trained once per session."""
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture
def tiny_net() -> TinyNet:
    return TinyNet().eval()


def blob_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n RGB 16×16 images in 3 classes whose mean colour depends on the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float32)
    imgs = base[labels][:, None, None, :] + rng.normal(0, 20, (n, 16, 16, 3))
    return np.clip(imgs, 0, 255).astype(np.uint8), labels


TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register a tiny open_clip config (random weights, built offline) and return its name."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip_cfg")
    (folder / "faultlens-tiny-vit.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    return "faultlens-tiny-vit"
