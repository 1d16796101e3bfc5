"""Classifier outputs: probabilities, prediction, loss, correctness and confidence.

Either run any torch ``nn.Module`` (with the transform it expects) through :class:`Classifier`, or
bring your own probabilities and call :func:`outputs_from_probs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from faultlens._checks import finite_matrix
from faultlens.models.base import TorchBatchModel


class Classifier(TorchBatchModel):
    """A torch classifier as a batch model; ``run`` returns logits (B, n_classes) float32.

    Parameters
    ----------
    model:
        Any ``nn.Module`` mapping a batch to logits.
    transform:
        PIL RGB image → C×H×W float tensor as the model expects.
    class_names:
        Optional: the names of the model's outputs, in their order (unique). :func:`analyze`
        then matches the source's classes to them by name (folder names, string labels, a torch
        Dataset's ``classes``; integer labels without names are taken as output indices), and
        ``run`` refuses logits of any other width.
    device:
        Where the model runs (default: CUDA when there is one, else the CPU).
    name:
        Human-readable name, part of the cache id (default: the module's class name).
    """

    outputs = None

    def __init__(
        self,
        model: torch.nn.Module,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        class_names: list[str] | None = None,
        device: str | torch.device | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(model, transform, name=name, device=device)
        if class_names is not None:
            if isinstance(class_names, str):
                msg = "class_names must be a list of names, one per output, not one string"
                raise TypeError(msg)
            class_names = [str(c) for c in class_names]
            seen: set[str] = set()
            dup = [c for c in class_names if c in seen or seen.add(c)]
            if dup or not class_names:
                msg = f"class_names must be unique and non-empty; repeated: {dup[:5]}"
                raise ValueError(msg)
        self.class_names = class_names

    def run(self, batch: torch.Tensor) -> np.ndarray:
        out = super().run(batch)
        if self.class_names is not None and (
            out.ndim != 2 or out.shape[1] != len(self.class_names)
        ):
            msg = (
                f"{self.name} gives outputs of shape {out.shape[1:]} per image but has "
                f"{len(self.class_names)} class_names {self.class_names[:10]}: pass one name per "
                "output, in the model's output order"
            )
            raise ValueError(msg)
        return out


@dataclass(frozen=True)
class Outputs:
    """Per-image classifier outputs. All arrays have one row per image."""

    probs: np.ndarray  # (N, C) float32, rows sum to 1
    pred: np.ndarray  # (N,) int64
    confidence: np.ndarray  # (N,) float32, the probability of the prediction
    loss: np.ndarray  # (N,) float32, cross-entropy of the label
    correct: np.ndarray  # (N,) bool


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def outputs_from_logits(logits: np.ndarray, labels: np.ndarray) -> Outputs:
    """Outputs from logits (a stable softmax first)."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        msg = f"logits must be (n_images, n_classes), got shape {logits.shape}"
        raise ValueError(msg)
    return outputs_from_probs(softmax(logits), labels)


def outputs_from_probs(probs: np.ndarray, labels: np.ndarray) -> Outputs:
    """Outputs from your own class probabilities (N, C) and integer labels (N,).

    Rows are renormalised when they sum to within 1 % of 1; anything else is an error that names
    the row.
    """
    y = np.asarray(labels)
    p = finite_matrix(probs, "probs", rows=len(y))
    if (p < 0).any():
        msg = f"probs row {np.flatnonzero((p < 0).any(axis=1))[0]} has negative values"
        raise ValueError(msg)
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > 0.01)
    if len(off):
        msg = (
            f"probs row {off[0]} sums to {sums[off[0]]:.3f}, not 1: pass probabilities (use "
            "outputs_from_logits for logits)"
        )
        raise ValueError(msg)
    if y.dtype.kind not in "iu" or (y < 0).any() or (y >= p.shape[1]).any():
        bad_i = int(np.flatnonzero((y < 0) | (y >= p.shape[1]))[0]) if y.dtype.kind in "iu" else 0
        msg = f"label {y[bad_i]} at item {bad_i} is not a class index in 0..{p.shape[1] - 1}"
        raise ValueError(msg)
    p = p / sums[:, None]
    pred = p.argmax(axis=1)
    idx = np.arange(len(y))
    loss = -np.log(np.clip(p[idx, y], 1e-12, 1.0))
    return Outputs(
        probs=p.astype(np.float32),
        pred=pred.astype(np.int64),
        confidence=p[idx, pred].astype(np.float32),
        loss=loss.astype(np.float32),
        correct=pred == y,
    )
