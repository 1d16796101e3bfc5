"""Where-the-model-looks maps computed on demand from a classifier: Grad-CAM of each image's
predicted class at the model's last spatial layer, for :func:`describe_members`'s ``maps``."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np


def usable_model(classifier: Any) -> bool:
    """Whether ``classifier`` can give Grad-CAM maps: a torch ``nn.Module`` (its ``module``)
    with a ``transform`` (a :class:`faultlens.Classifier` is)."""
    import torch

    return isinstance(getattr(classifier, "module", None), torch.nn.Module) and callable(
        getattr(classifier, "transform", None)
    )


def evidence_layer(module: Any, probe: Any) -> str:
    """The name of the last layer (in the order the forward pass finishes them) whose output is a
    spatial grid (B×C×H×W, H and W ≥ 2): where Grad-CAM usually looks (a ResNet's ``layer4``).
    ``probe``: one transformed image (C×H×W). Raises ValueError when no layer has one (e.g. a ViT:
    pass ``layer=`` a block name)."""
    import torch

    from faultlens.models.layers import first_output, model_device

    done: list[str] = []
    hooks = []
    for name, mod in module.named_modules():
        if not name:
            continue

        def hook(_m: Any, _i: Any, out: Any, name: str = name) -> None:
            t = first_output(out)
            if isinstance(t, torch.Tensor) and t.ndim == 4 and min(t.shape[-2:]) >= 2:
                done.append(name)

        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            module(probe[None].float().to(model_device(module)))
    finally:
        for h in hooks:
            h.remove()
    if not done:
        msg = (
            "the model has no layer with a spatial (B×C×H×W) output to take Grad-CAM at: pass "
            "maps= yourself, or maps=None"
        )
        raise ValueError(msg)
    return done[-1]


def model_maps(
    classifier: Any,
    load_image: Callable[[int], Any],
    *,
    layer: str | None = None,
    batch_size: int = 32,
    cache_size: int = 2048,
) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``rows -> (len(rows), H, W)`` Grad-CAM maps of each row's predicted class at
    ``layer`` of ``classifier`` (default: :func:`evidence_layer`), images read with
    ``load_image(row)`` and transformed with ``classifier.transform``. Its ``label`` says what
    the maps are ("Grad-CAM at layer4"). The last ``cache_size`` rows' maps are kept, so a slice
    described again, or the rows :func:`map_budget` timed, cost nothing more."""
    from faultlens.analysis.spurious import grad_cam

    if not usable_model(classifier):
        msg = (
            f"{type(classifier).__name__} cannot give maps: it needs a torch module (.module) and "
            "a transform (.transform), as faultlens.Classifier has"
        )
        raise TypeError(msg)
    state: dict[str, str] = {}
    kept: OrderedDict[int, np.ndarray] = OrderedDict()

    def maps(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        want = [int(r) for r in dict.fromkeys(rows.tolist()) if int(r) not in kept]
        if want:
            images = [load_image(r) for r in want]
            if "layer" not in state:
                state["layer"] = layer or evidence_layer(
                    classifier.module, classifier.transform(images[0])
                )
                maps.label = f"Grad-CAM at {state['layer']}"  # type: ignore[attr-defined]
            new = grad_cam(
                classifier.module,
                state["layer"],
                images,
                transform=classifier.transform,
                batch_size=batch_size,
            )
            for r, m in zip(want, new, strict=True):
                kept[r] = m
        out = np.stack([kept[int(r)] for r in rows]) if len(rows) else np.zeros((0, 1, 1), "f4")
        for r in rows.tolist():
            kept.move_to_end(int(r))
        while len(kept) > max(cache_size, len(rows)):
            kept.popitem(last=False)
        return out

    maps.label = f"Grad-CAM at {layer}" if layer else "Grad-CAM"  # type: ignore[attr-defined]
    return maps


def map_budget(
    maps: Callable[[np.ndarray], np.ndarray],
    probe: np.ndarray,
    *,
    seconds: float,
    most: int,
    least: int = 16,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """How many images per group (members, reference) ``maps`` can do in about ``seconds`` in
    all, timed on the ``probe`` rows (their maps stay in ``maps``' cache): between ``least`` and
    ``most``. A small CNN gets ``most``; a ResNet-50 at 224 px on 2 busy CPU cores (≈ 0.4 s an image)
    gets ``least``. ``clock``: seconds now (a test passes its own)."""
    probe = np.asarray(probe, dtype=np.int64)
    if len(probe) == 0 or most <= least:
        return most
    maps(probe[:1])  # the first call also finds the layer: not timed
    start = clock()
    maps(probe[1:])
    per = (clock() - start) / max(len(probe) - 1, 1)
    if per <= 0:
        return most
    return int(np.clip(seconds / per / 2, least, most))
