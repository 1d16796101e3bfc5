"""A planted spurious cue for mitigation tests: a tiny classifier that learned a shortcut.

Two classes of 8×8 images. The core evidence is faint and noisy (class 0 a little redder, class 1 a
little greener); the cue is a blue 4×4 square in the top-left corner, on 90 % of class 0's and 10 %
of class 1's training images. The network's features are its three colour channels' means (a fixed
1×1 conv, ReLU, average pool: feature 2 is the cue); its linear head is fitted on the biased training
images, so it leans on the cue and errs on class 0 without it and class 1 with it. Marking feature 2
of class 0 spurious and retraining the head on low-spuriosity images should raise those groups.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

CUE_FEATURE = 2
CLASS_NAMES = ["reddish", "greenish"]


class CueNet(nn.Module):
    """Identity 1×1 conv → ReLU (``"act"``, the features) → mean pool → linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
            self.conv.bias.zero_()
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.act(self.conv(x))).flatten(1))


def images(n: int, cue_rate: tuple[float, float], seed: int) -> dict[str, np.ndarray]:
    """``n`` uint8 (n, 8, 8, 3) images, half of each class; ``cue_rate[c]``: share of class ``c``
    carrying the cue. Returns images, labels, cue and the group name per image."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    cue = rng.random(n) < np.asarray(cue_rate)[labels]
    core = rng.normal(np.where(labels == 0, 0.06, -0.06), 0.08)
    x = np.zeros((n, 8, 8, 3), np.float32)
    x[..., 0] = 0.5 + core[:, None, None] / 2
    x[..., 1] = 0.5 - core[:, None, None] / 2
    x[..., :2] += rng.normal(0, 0.03, (n, 8, 8, 2))
    x[cue, :4, :4, 2] = 1.0
    u8 = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
    group = np.array([f"{CLASS_NAMES[c]} {'with' if k else 'without'} cue"
                      for c, k in zip(labels, cue, strict=True)])  # fmt: skip
    return {"images": u8, "labels": labels.astype(np.int64), "cue": cue, "group": group}


def to_tensor(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def transform(img: Any) -> torch.Tensor:
    """PIL image → 3×8×8 float tensor in [0, 1] (what :class:`CueNet` reads)."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(
        2, 0, 1
    )


def trained(train: dict[str, np.ndarray], seed: int = 0) -> CueNet:
    """A :class:`CueNet` whose head is fitted on ``train`` (softmax regression on the pooled
    features, full-batch gradient descent in numpy: the network's features are fixed)."""
    torch.manual_seed(seed)
    net = CueNet()
    with torch.inference_mode():
        x = net.pool(net.act(net.conv(to_tensor(train["images"])))).flatten(1).numpy()
    y = np.eye(2)[train["labels"]]
    w, b = np.zeros((2, 3)), np.zeros(2)
    for _ in range(3000):
        z = x @ w.T + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - y) / len(x)
        w -= 2.0 * g.T @ x
        b -= 2.0 * g.sum(0)
    with torch.no_grad():
        net.head.weight.copy_(torch.from_numpy(w))
        net.head.bias.copy_(torch.from_numpy(b))
    return net.eval()


def planted(n_train: int = 1200, n_val: int = 400, n_test: int = 600, seed: int = 0):
    """(model, splits {train, val, test}, analysis of the test images with ``planted_group``)."""
    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource

    biased = (0.9, 0.1)
    splits = {"train": images(n_train, biased, seed), "val": images(n_val, biased, seed + 1),
              "test": images(n_test, biased, seed + 2)}  # fmt: skip
    model = trained(splits["train"], seed)
    te = splits["test"]
    with torch.inference_mode():
        pred = model(to_tensor(te["images"])).argmax(1).numpy()
    table = pd.DataFrame({"id": [f"t{i}" for i in range(n_test)], "label": te["labels"],
                          "pred": pred, "correct": pred == te["labels"],
                          "source_index": np.arange(n_test), "planted_group": te["group"]})  # fmt: skip
    source = ArraySource(te["images"], te["labels"], class_names=CLASS_NAMES)
    return model, splits, Analysis(table, class_names=CLASS_NAMES, source=source)


def split(s: dict[str, np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
    """``(images, labels)`` as mitigate and the FeatureBrowser take them."""
    return to_tensor(s["images"]), s["labels"]
