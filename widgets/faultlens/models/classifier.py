"""Classifier outputs: probabilities, prediction, loss, correctness and confidence.

Either run any torch ``nn.Module`` (with the transform it expects) through :class:`Classifier`, or
bring your own probabilities and call :func:`outputs_from_probs`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


# --------------------------------------------------------------------------- checkpoints

#: Keys under which training frameworks nest the weights: Lightning and most loops use
#: ``state_dict``; others ``model_state_dict``, ``model``, ``net`` or ``ema``-style copies.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "state_dict_ema", "model_ema")
#: Name prefixes that wrappers add: DDP/DataParallel ``module.``, a LightningModule's attribute
#: (often ``model.`` or ``net.``), ``torch.compile``'s ``_orig_mod.``.
WRAPPER_PREFIXES = ("module.", "model.", "net.", "_orig_mod.", "backbone.")


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The weights in a checkpoint file, as a flat ``{name: tensor}`` dict, never unpickled.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(..., weights_only=True)``, so a file holding pickled Python objects (a whole
    model saved with ``torch.save(model)``) is refused. A state dict nested under
    :data:`CHECKPOINT_KEYS` (Lightning's ``{"state_dict": ...}``, ``{"model": ...}``) is unwrapped.
    Problems raise ``FileNotFoundError``/``ValueError`` with a one-line message naming the file.
    """
    p = Path(path)
    if not p.is_file():
        msg = f"checkpoint {str(p)!r}: no such file"
        raise FileNotFoundError(msg)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as exc:
            msg = f"checkpoint {str(p)!r} is not a readable safetensors file ({exc})"
            raise ValueError(msg) from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unpickling" in type(exc).__name__:
            msg = (
                f"checkpoint {str(p)!r} holds pickled Python objects (a whole model saved with "
                "torch.save(model)?), which faultlens never loads: save model.state_dict() instead"
            )
        else:
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            msg = f"checkpoint {str(p)!r} is not a torch checkpoint ({first})"
        raise ValueError(msg) from None
    if _is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if _is_state_dict(obj.get(key)):
                return obj[key]
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        msg = (
            f"checkpoint {str(p)!r} is a dict without weights under any of {list(CHECKPOINT_KEYS)} "
            f"(its keys: {keys})"
        )
        raise ValueError(msg)
    msg = f"checkpoint {str(p)!r} holds a {type(obj).__name__}, not a state dict of tensors"
    raise ValueError(msg)


def match_state_dict(
    state: dict[str, torch.Tensor], expected: list[str] | set[str]
) -> dict[str, torch.Tensor]:
    """``state`` with wrapper prefixes (:data:`WRAPPER_PREFIXES`) stripped until its names best
    match ``expected``: DDP's ``module.``, a LightningModule's ``model.``, and both at once.

    Keys outside the stripped prefix (a Lightning module's loss weights, metrics) are dropped when
    the stripped keys match better; the result is what ``load_state_dict`` should get.
    """
    want = set(expected)
    best, best_score = dict(state), len(want & set(state))
    frontier = [best]
    for _ in range(3):  # e.g. Lightning around DDP: "model.module."
        nxt = []
        for cand in frontier:
            for prefix in WRAPPER_PREFIXES:
                stripped = {k[len(prefix) :]: v for k, v in cand.items() if k.startswith(prefix)}
                if not stripped:
                    continue
                nxt.append(stripped)
                score = len(want & set(stripped))
                if score > best_score:
                    best, best_score = stripped, score
        frontier = nxt
    return best


def load_weights(model: torch.nn.Module, path: str | os.PathLike[str]) -> torch.nn.Module:
    """Load a checkpoint's weights into ``model`` (in place; returns it).

    Reads with :func:`read_checkpoint` (never unpickles), strips DDP/Lightning prefixes with
    :func:`match_state_dict`, then loads strictly: missing or unexpected names and shape mismatches
    raise one ``ValueError`` line that names the file and the first few offending names.
    """
    state = match_state_dict(read_checkpoint(path), list(model.state_dict()))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        msg = (
            f"checkpoint {str(path)!r} does not fit the model {type(model).__name__}: "
            f"{'; '.join(parts)}. Is --arch the architecture it was trained with?"
        )
        raise ValueError(msg)
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        msg = (
            f"checkpoint {str(path)!r} does not fit the model {type(model).__name__}: "
            f"{len(wrong)} weights have another shape, e.g. {k} is {tuple(state[k].shape)} in the "
            f"file but {tuple(own[k].shape)} in the model (another number of classes or channels?)"
        )
        raise ValueError(msg)
    model.load_state_dict(state)
    return model
