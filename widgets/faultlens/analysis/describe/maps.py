"""Where-the-model-looks maps computed on demand from a classifier: Grad-CAM of each image's
predicted class at the model's last spatial layer, for :func:`describe_members`'s ``maps``."""

from __future__ import annotations

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
) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``rows -> (len(rows), H, W)`` Grad-CAM maps of each row's predicted class at
    ``layer`` of ``classifier`` (default: :func:`evidence_layer`), images read with
    ``load_image(row)`` and transformed with ``classifier.transform``. Its ``label`` says what
    the maps are ("Grad-CAM at layer4")."""
    from faultlens.analysis.spurious import grad_cam

    if not usable_model(classifier):
        msg = (
            f"{type(classifier).__name__} cannot give maps: it needs a torch module (.module) and "
            "a transform (.transform), as faultlens.Classifier has"
        )
        raise TypeError(msg)
    state: dict[str, str] = {}

    def maps(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        images = [load_image(int(r)) for r in rows]
        if "layer" not in state:
            state["layer"] = layer or evidence_layer(
                classifier.module, classifier.transform(images[0])
            )
            maps.label = f"Grad-CAM at {state['layer']}"  # type: ignore[attr-defined]
        return grad_cam(
            classifier.module,
            state["layer"],
            images,
            transform=classifier.transform,
            batch_size=batch_size,
        )

    maps.label = f"Grad-CAM at {layer}" if layer else "Grad-CAM"  # type: ignore[attr-defined]
    return maps
