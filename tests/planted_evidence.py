"""A small planted analysis for the slice panel's evidence (unit and browser tests).

Two classes, "coat" and "shirt", 16×16 grey images; shirts carry a bright square in the middle. A
white 4×4 stamp in the top-left corner is planted on 40 coats (``stamped``). The classifier is a
hand-built CNN (no training): one channel fires on bright pixels and the "shirt" logit reads it,
so a stamped coat is read as a shirt and Grad-CAM of that prediction sits on the stamp. The
stamped coats also come mostly from ``site = "scanner-B"`` (30 of 40, ``site_b``; 5 % elsewhere)
and have a higher ``exposure``; their embeddings form their own cluster, so slice discovery finds
them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from faultlens.analysis.result import Analysis
from faultlens.data.sources import ArraySource
from faultlens.models.classifier import Classifier

N = 400
CLASSES = ["coat", "shirt"]


class StampNet(nn.Module):
    """conv (2 channels: bright pixels, a constant) → ReLU → mean → linear; "shirt" reads the
    bright channel."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].weight[0] = 1.0 / 9.0
            self.features[0].bias.copy_(torch.tensor([-0.6, 0.5]))
            self.head.weight.copy_(torch.tensor([[0.0, 2.0], [100.0, 0.0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def transform(image) -> torch.Tensor:
    g = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(g)[None]


def planted(seed: int = 0) -> tuple[Analysis, dict[str, np.ndarray]]:
    """The analysis (with its classifier) and the planted truth: ``stamped`` rows, ``site_b``
    rows among them, ``coats``."""
    rng = np.random.default_rng(seed)
    label = np.r_[np.zeros(N // 2, int), np.ones(N // 2, int)]
    coats = np.flatnonzero(label == 0)
    stamped = np.sort(rng.choice(coats, 40, replace=False))
    images = np.clip(rng.normal(70, 12, (N, 16, 16)), 0, 255)
    images[label == 1, 4:12, 4:12] = 200  # shirts: a bright square in the middle
    images[stamped, 1:5, 1:5] = 255
    images = np.repeat(images.astype(np.uint8)[..., None], 3, axis=-1)
    model = StampNet().eval()
    clf = Classifier(model, transform, class_names=CLASSES, name="stampnet", device="cpu")
    x = torch.from_numpy(images[..., 0].astype(np.float32) / 255.0)[:, None]
    with torch.no_grad():
        logits = model(x).numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pred = probs.argmax(1)
    site = np.where(rng.random(N) < 0.05, "scanner-B", "scanner-A").astype(object)
    site_b = stamped[:30]
    site[stamped] = "scanner-A"
    site[site_b] = "scanner-B"
    exposure = rng.normal(1.0, 0.1, N)
    exposure[stamped] += 0.4
    emb = rng.normal(0, 0.3, (N, 8))
    emb[np.arange(N), label] += 2.0
    emb[stamped, 2] += 3.0
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    xy = (emb[:, :2] + 0.3 * emb[:, 2:4]).astype(np.float32)
    conf = probs.max(1).astype(np.float32)
    table = pd.DataFrame({
        "id": [f"img-{i:03d}" for i in range(N)], "path": [None] * N, "label": label,
        "label_name": np.array(CLASSES, dtype=object)[label], "pred": pred,
        "pred_name": np.array(CLASSES, dtype=object)[pred], "confidence": conf,
        "loss": -np.log(probs[np.arange(N), label]).astype(np.float32),
        "correct": pred == label, "x": xy[:, 0], "y": xy[:, 1], "source_index": np.arange(N),
        "site": site, "exposure": exposure,
    })  # fmt: skip
    analysis = Analysis(
        table,
        class_names=CLASSES,
        probs=probs.astype(np.float32),
        embeddings=emb,
        source=ArraySource(images, label, class_names=CLASSES),
        classifier=clf,
    )
    return analysis, {"stamped": stamped, "site_b": np.sort(site_b), "coats": coats}
