"""A named layer of a torch model: find it, capture its output, pool it, read it as a grid, take
gradients at it, and find the linear head that reads it.

One pooling rule for every user of a layer (:class:`~faultlens.models.embedders.LayerEmbedder`
and :class:`~faultlens.analysis.spurious.NeuralFeatures`): a conv output B×C×H×W is averaged over
space; a ViT block's B×T×C tokens are averaged over the **patch** tokens, the CLS token left out when
T−1 is a square (as timm's ``global_pool="avg"`` leaves out its prefix tokens), so a feature's pooled
value is the mean of the very map :func:`to_grid` shows.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "HeadInfo",
    "as_batches",
    "find_layer",
    "find_linear_head",
    "first_output",
    "layer_grads",
    "model_device",
    "pool",
    "to_grid",
    "upsample",
]

ImagesLike = torch.Tensor | np.ndarray | Sequence[Any]


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The sub-module named ``layer``; a clear error listing close names when there is none."""
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return modules[layer]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.4)
    hint = f" Close names: {close}." if close else ""
    more = " …" if len(names) > 12 else ""
    msg = f"the model has no layer {layer!r}.{hint} All layers: {names[:12]}{more}"
    raise ValueError(msg)


def first_output(out: Any) -> torch.Tensor:
    """A module's output tensor (the first element when it returns a tuple or list)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _patch_tokens(out: torch.Tensor) -> tuple[torch.Tensor, int]:
    """B×T×C tokens → (the patch tokens, the grid side); the CLS token is dropped when T−1 is a
    square; side 0 when neither T nor T−1 is a square."""
    n_tok = out.shape[1]
    side = math.isqrt(n_tok - 1) if n_tok > 1 else 0
    if n_tok > 1 and side * side == n_tok - 1:
        return out[:, 1:], side
    side = math.isqrt(n_tok)
    return out, side if side * side == n_tok else 0


def pool(out: Any) -> torch.Tensor:
    """A layer's output pooled to (B, C): mean over space (B×C×H×W) or over patch tokens (B×T×C,
    the CLS token left out when T−1 is a square); B×C as it is."""
    out = first_output(out)
    if out.ndim == 4:
        return out.mean(dim=(2, 3))
    if out.ndim == 3:
        return _patch_tokens(out)[0].mean(dim=1)
    if out.ndim == 2:
        return out
    msg = f"cannot pool a layer output of shape {tuple(out.shape)}"
    raise ValueError(msg)


def to_grid(out: torch.Tensor, layer: str = "layer") -> torch.Tensor:
    """A layer output as a B×C×H×W grid (conv outputs as they are, ViT tokens reshaped).

    B×T×C tokens: when T−1 is a square the first (CLS) token is dropped; when T is a square all
    tokens are used. Raises ``ValueError`` for outputs without spatial dimensions (B×C).
    """
    if out.ndim == 4:
        return out
    if out.ndim == 3:
        tokens, side = _patch_tokens(out)
        if side == 0:
            msg = (
                f"layer {layer!r} gives {out.shape[1]} tokens: neither T nor T−1 is a square, so "
                "they cannot be reshaped to a grid"
            )
            raise ValueError(msg)
        return tokens.transpose(1, 2).reshape(out.shape[0], out.shape[2], side, side)
    msg = (
        f"layer {layer!r} gives outputs of shape {tuple(out.shape)} with no spatial dimensions: "
        "maps need a conv layer (B×C×H×W) or a ViT block (B×T×C tokens); pick an earlier layer"
    )
    raise ValueError(msg)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(n, h, w) → (n, H, W), bilinear (align_corners=False, as cv2.resize)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return nn.functional.interpolate(
        maps[:, None], size=size, mode="bilinear", align_corners=False
    )[:, 0]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def as_batches(
    images: ImagesLike, transform: Callable[[Any], torch.Tensor] | None, batch_size: int
) -> Iterator[torch.Tensor]:
    """Float batches (b, C, H, W) from a tensor, a float array, or a sequence of PIL images (any
    object with ``len`` and integer indexing: only one batch of it is decoded at a time)."""
    if isinstance(images, np.ndarray) and images.dtype != object:
        images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            msg = (
                f"images must be a float tensor (n, C, H, W) already transformed for the model, "
                f"got shape {tuple(images.shape)}"
            )
            raise ValueError(msg)
        for b in range(0, len(images), batch_size):
            yield images[b : b + batch_size].float()
        return
    if transform is None:
        msg = (
            "images is a list (e.g. of PIL images): pass transform= (PIL image → C×H×W tensor as "
            "the model expects), or pass a transformed (n, C, H, W) tensor"
        )
        raise TypeError(msg)
    items = (
        images if hasattr(images, "__getitem__") and hasattr(images, "__len__") else list(images)
    )
    for b in range(0, len(items), batch_size):
        chunk = [items[i] for i in range(b, min(b + batch_size, len(items)))]
        yield torch.stack([transform(im) for im in chunk]).float()


@dataclass
class HeadInfo:
    """The linear layer that reads the feature layer (via parameter-free modules only)."""

    name: str
    module: nn.Linear


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def find_linear_head(model: nn.Module, layer: str, probe: torch.Tensor) -> HeadInfo | None:
    """The ``nn.Linear`` that produces the model's output from ``layer`` through parameter-free
    modules only (pooling, ReLU, flatten, dropout), found by tracing one forward pass of ``probe``.

    Returns None when there is none (e.g. more parametric layers follow): then importance falls back
    to gradients.
    """
    target = find_layer(model, layer)
    order: list[tuple[str, nn.Module]] = []
    hooks = []
    for name, mod in model.named_modules():
        if mod is target or (name and not any(True for _ in mod.children())):
            hooks.append(
                mod.register_forward_hook(lambda m, _i, _o, name=name: order.append((name, m)))
            )
    try:
        with torch.inference_mode():
            out = first_output(model(probe[:1].to(model_device(model))))
    finally:
        for h in hooks:
            h.remove()
    pos = [i for i, (_, m) in enumerate(order) if m is target]
    if not pos or out.ndim != 2:
        return None
    after = order[pos[-1] + 1 :]
    linears = [(i, n, m) for i, (n, m) in enumerate(after) if isinstance(m, nn.Linear)]
    if len(linears) != 1:
        return None
    i, name, lin = linears[0]
    if any(_has_params(m) for _, m in after[:i]):
        return None
    if lin.out_features != out.shape[1] or any(_has_params(m) for _, m in after[i + 1 :]):
        return None
    return HeadInfo(name, lin)


def layer_grads(
    model: nn.Module,
    module: nn.Module,
    images: ImagesLike,
    transform: Callable[[Any], torch.Tensor] | None,
    batch_size: int,
    targets: Any,
) -> Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (batch, logits, activation, ∂logit_target/∂activation) per batch of ``images``.

    ``targets``: one class per image, or None for each image's predicted class. The layer's output
    is detached and made a leaf in a forward hook, so the gradient stops there.
    """
    device = model_device(model)
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: Any, out: Any) -> Any:
        t = first_output(out).detach().requires_grad_(True)
        store["act"] = t
        return t if not isinstance(out, (tuple, list)) else (t, *out[1:])

    handle = module.register_forward_hook(hook)
    start = 0
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for batch in as_batches(images, transform, batch_size):
                logits = first_output(model(batch.to(device)))
                if targets is None:
                    tgt = logits.argmax(1)
                else:
                    tgt = torch.as_tensor(
                        np.array(targets[start : start + len(batch)], dtype=np.int64),
                        device=logits.device,
                    )
                start += len(batch)
                act = store["act"]
                score = logits.gather(1, tgt.long()[:, None]).sum()
                (g,) = torch.autograd.grad(score, act)
                yield batch, logits, act, g
    finally:
        handle.remove()
