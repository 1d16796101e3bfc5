"""Neural features, activation maps, Grad-CAM, spuriosity rankings and the spurious gap.

After Salient ImageNet (Singla & Feizi, ICLR 2022) and Spuriosity Rankings (Moayeri et al.,
NeurIPS 2023), and Grad-CAM (Selvaraju et al., ICCV 2017).

- A **neural feature** is one channel of a named layer: a conv layer's B×C×H×W output, or a ViT
  block's B×T×C tokens (a CLS token is dropped when T−1 is a square; the rest is reshaped to a grid).
  Its value for an image is the channel's mean over space (:meth:`NeuralFeatures.activations`).
- **Importance** of feature k for class c = mean activation over the class's correctly classified
  images × the class's weight for k in the linear head that follows the layer (or, when no linear
  layer follows it directly, the gradient of the class logit w.r.t. the pooled feature).
- A **neural activation map** (NAM) is the feature's channel divided by its per-image maximum (no min
  subtraction; negative values of a pre-ReLU layer are clipped to 0), bilinearly upsampled to the
  image. **Grad-CAM** is ReLU(Σ_k w_k A_k) with w_k = the spatial mean of ∂y_c/∂A_k, min–max scaled
  per image. Both are scaled **per image**: they show where, not how strongly, relative to other
  images.
- **Spuriosity** of an image = the mean, over the features marked spurious for its class, of the
  feature's within-class z-score. The **spurious gap** of a class = accuracy of its k most spurious
  images − accuracy of its k least spurious images, in percentage points.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from faultlens.models.layers import (
    HeadInfo,
    ImagesLike,
    as_batches,
    find_layer,
    find_linear_head,
    first_output,
    layer_grads,
    model_device,
    pool,
    to_grid,
    upsample,
)

__all__ = [
    "COLORMAPS",
    "NeuralFeatures",
    "SpuriousGap",
    "SpuriousWarning",
    "colormap",
    "energy_share",
    "feature_gaps",
    "grad_cam",
    "overlay",
    "pointing_game",
    "spuriosity",
    "spurious_gap",
    "top_features",
]


class SpuriousWarning(UserWarning):
    """A spurious-feature computation went on with an adjustment (k clamped, a class skipped)."""


# --------------------------------------------------------------------------- neural features


class NeuralFeatures:
    """The channels of one named layer of a classifier as neural features.

    Parameters
    ----------
    model:
        Any torch classifier returning (n, n_classes) logits. Put it in eval mode yourself.
    layer:
        A name from ``dict(model.named_modules())``. For the demo CNN use ``"features.7"`` (the
        ReLU after the last conv layer, ``"features.6"``); a ViT block's tokens work too.
    transform:
        PIL image → C×H×W tensor, needed when images are passed as a list of PIL images.
    batch_size:
        Images per forward pass.

    Attributes
    ----------
    skipped:
        ``[{"class": c, "reason": ...}]`` for classes :meth:`importance` could not score.
    head:
        The linear head found after the layer (name and module), or None (gradient fallback).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        transform: Callable[[Any], torch.Tensor] | None = None,
        *,
        batch_size: int = 128,
    ) -> None:
        self.model = model
        self.layer = layer
        self.module = find_layer(model, layer)  # clear error listing close names
        self.transform = transform
        self.batch_size = int(batch_size)
        self.skipped: list[dict[str, Any]] = []
        self.head: HeadInfo | None = None
        self._probe: torch.Tensor | None = None
        self._head_searched = False

    def __repr__(self) -> str:
        head = self.head.name if self.head else "not found yet / gradients"
        return f"<faultlens NeuralFeatures layer={self.layer!r} head={head}>"

    # -- forward passes ---------------------------------------------------------------------------

    def _run(self, images: ImagesLike, fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> list:
        """Run the model over ``images`` in batches; ``fn(layer_output, batch)`` per batch."""
        captured: list[torch.Tensor] = []

        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            captured.append(first_output(out))

        device = model_device(self.model)
        results = []
        handle = self.module.register_forward_hook(hook)
        try:
            with torch.inference_mode():
                for batch in as_batches(images, self.transform, self.batch_size):
                    if self._probe is None:
                        self._probe = batch[:1].clone()
                    captured.clear()
                    self.model(batch.to(device))
                    if not captured:
                        msg = f"layer {self.layer!r} did not run in the model's forward pass"
                        raise RuntimeError(msg)
                    results.append(fn(captured[-1], batch))
        finally:
            handle.remove()
        return results

    def activations(self, images: ImagesLike) -> np.ndarray:
        """(n, C) float32: each channel's mean over space (over patch tokens for a ViT block)."""
        parts = self._run(images, lambda out, _b: pool(out).float().cpu().numpy())
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def activation_maps(
        self, images: ImagesLike, feature: int, *, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """(n, H, W) float32 in [0, 1]: the neural activation map of ``feature`` per image.

        The channel is clipped at 0, divided by its per-image maximum (a per-image scale: maps
        cannot be compared in strength across images; an all-zero channel gives an all-zero map)
        and bilinearly upsampled to ``size`` (default the input's H×W).
        """

        def fn(out: torch.Tensor, batch: torch.Tensor) -> np.ndarray:
            grid = to_grid(out, self.layer)
            if not 0 <= feature < grid.shape[1]:
                msg = f"feature {feature} out of range: layer {self.layer!r} has {grid.shape[1]}"
                raise IndexError(msg)
            a = grid[:, feature].float().clamp_min(0)
            peak = a.amax(dim=(1, 2), keepdim=True)
            a = torch.where(peak > 0, a / peak.clamp_min(1e-12), torch.zeros_like(a))
            m = upsample(a, size or (batch.shape[-2], batch.shape[-1]))
            return m.clamp(0, 1).cpu().numpy()

        parts = self._run(images, fn)
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0, 0), "f4")

    # -- importance -------------------------------------------------------------------------------

    def _find_head(self) -> HeadInfo | None:
        if not self._head_searched and self._probe is not None:
            self.head = find_linear_head(self.model, self.layer, self._probe)
            self._head_searched = True
        return self.head

    def class_weights(self, images: ImagesLike | None = None, labels: Any = None) -> np.ndarray:
        """(n_classes, C): each class's weight on each pooled feature.

        The linear head's weight matrix when the layer feeds it through parameter-free modules;
        otherwise the mean over ``images`` (of the class, by ``labels``) of ∂logit_c/∂pooled feature
        (the gradient w.r.t. the layer output summed over space), which equals the linear weight
        for a global-average-pool + linear head.
        """
        head = self._find_head()
        if self._probe is None and images is None:
            msg = "call activations() first (the head is found by tracing one forward pass)"
            raise RuntimeError(msg)
        if head is None and images is not None:
            self._probe = next(iter(as_batches(images, self.transform, 1)))
            head = self._find_head()
        if head is not None:
            return head.module.weight.detach().float().cpu().numpy()
        if images is None or labels is None:
            msg = (
                f"no linear layer reads {self.layer!r} directly: pass images= and labels= to "
                "compute gradient-based class weights"
            )
            raise ValueError(msg)
        return self._gradient_weights(images, np.asarray(labels))

    def _gradient_weights(self, images: ImagesLike, labels: np.ndarray) -> np.ndarray:
        grads: list[np.ndarray] = []
        n_out = 0
        for batch, g in _grad_batches(self.model, self.module, images, self.transform,
                                      self.batch_size, labels):  # fmt: skip
            n_out = batch
            grads.append(g)
        g_all = np.concatenate(grads)  # (n, C): ∂logit_label / ∂pooled feature
        w = np.zeros((max(n_out, int(labels.max()) + 1), g_all.shape[1]), dtype=np.float32)
        for c in np.unique(labels):
            w[c] = g_all[labels == c].mean(axis=0)
        return w

    def importance(
        self,
        acts: np.ndarray,
        labels: Any,
        preds: Any,
        *,
        group: str = "correct",
        weights: np.ndarray | None = None,
        images: ImagesLike | None = None,
    ) -> np.ndarray:
        """(n_classes, C): importance of each feature for each class, mean activation ⊙ weight.

        ``group`` picks the images whose mean activation is used: ``"correct"`` (default: the
        class's correctly classified images, as Spuriosity Rankings), ``"label"`` (all images of
        the class) or ``"prediction"`` (images predicted as the class, as the Salient ImageNet
        notebook). A class with no such image gets a NaN row, a :class:`SpuriousWarning` and a
        record in :attr:`skipped`.
        """
        acts = np.asarray(acts, dtype=np.float32)
        labels = np.asarray(labels)
        preds = np.asarray(preds)
        if acts.ndim != 2 or len(acts) != len(labels) or len(labels) != len(preds):
            msg = (
                f"acts {acts.shape}, labels ({len(labels)},) and preds ({len(preds)},) must "
                "describe the same images: acts is (n, C)"
            )
            raise ValueError(msg)
        if weights is None:
            weights = self.class_weights(images, labels if images is not None else None)
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape[1] != acts.shape[1]:
            msg = f"weights have {weights.shape[1]} features but acts have {acts.shape[1]}"
            raise ValueError(msg)
        n_classes = max(len(weights), int(labels.max()) + 1 if len(labels) else 0)
        imp = np.full((n_classes, acts.shape[1]), np.nan, dtype=np.float32)
        self.skipped = []
        for c in range(n_classes):
            if group == "correct":
                mask, what = (labels == c) & (preds == c), "correctly classified"
            elif group == "label":
                mask, what = labels == c, "labelled"
            elif group == "prediction":
                mask, what = preds == c, "predicted"
            else:
                msg = f"group must be 'correct', 'label' or 'prediction', got {group!r}"
                raise ValueError(msg)
            if c >= len(weights) or not mask.any():
                reason = (
                    f"class {c} has no {what} images ({int((labels == c).sum())} labelled): "
                    "importance needs at least one"
                    if c < len(weights)
                    else f"class {c} has no weight row in the head"
                )
                self.skipped.append({"class": c, "reason": reason})
                continue
            imp[c] = acts[mask].mean(axis=0) * weights[c]
        if (
            self.skipped
        ):  # one warning for all of them (1000 ImageNet classes must not mean 1000 lines)
            first = self.skipped[0]["reason"]
            more = (
                f" and {len(self.skipped) - 1} more class(es) (see .skipped)"
                if len(self.skipped) > 1
                else ""
            )
            warnings.warn(f"skipped {first}{more}", SpuriousWarning, stacklevel=2)
        return imp


def _grad_batches(model, module, images, transform, batch_size, targets):
    """Yield (n_outputs, per-image ∂logit_target/∂pooled feature (b, C)) per batch."""
    for _batch, logits, _act, g in layer_grads(
        model, module, images, transform, batch_size, targets
    ):
        grid = to_grid(g) if g.ndim == 3 else g
        pooled = grid.sum(dim=(2, 3)) if grid.ndim == 4 else grid
        yield logits.shape[1], pooled.float().cpu().numpy()


def top_features(importance: np.ndarray, n: int = 5) -> dict[int, list[int]]:
    """The ``n`` most important features per class (classes with a NaN row are left out)."""
    out = {}
    for c, row in enumerate(np.asarray(importance)):
        if np.isnan(row).all():
            continue
        out[c] = [int(k) for k in np.argsort(-np.nan_to_num(row, nan=-np.inf), kind="stable")[:n]]
    return out


# --------------------------------------------------------------------------- Grad-CAM


def grad_cam(
    model: nn.Module,
    layer: str,
    images: ImagesLike,
    targets: Any = None,
    *,
    transform: Callable[[Any], torch.Tensor] | None = None,
    batch_size: int = 64,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """(n, H, W) float32 in [0, 1]: Grad-CAM of ``layer`` for the ``targets`` class per image.

    ``targets``: one class per image, a single class for all, or None (each image's predicted
    class). cam = ReLU(Σ_k w_k A_k), w_k = spatial mean of ∂y_c/∂A_k; upsampled bilinearly, then
    min–max scaled **per image** (an all-equal cam gives zeros).
    """
    module = find_layer(model, layer)
    n = len(images)
    if targets is not None and np.ndim(targets) == 0:
        targets = np.full(n, int(targets))
    parts = []
    for batch, _logits, act, g in layer_grads(
        model, module, images, transform, batch_size, targets
    ):
        grid_act = to_grid(act, layer)
        w = to_grid(g, layer).mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((w * grid_act).sum(dim=1)).detach().float()
        cam = upsample(cam, size or (batch.shape[-2], batch.shape[-1]))
        lo = cam.amin(dim=(1, 2), keepdim=True)
        span = cam.amax(dim=(1, 2), keepdim=True) - lo
        cam = torch.where(span > 0, (cam - lo) / span.clamp_min(1e-12), 0 * cam)
        parts.append(cam.cpu().numpy())
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0, 0), "f4")


# --------------------------------------------------------------------------- colour and overlays

#: Perceptually uniform colormaps as anchor tables (RGB at 9 equally spaced stops, from matplotlib's
#: viridis / inferno), linearly interpolated to 256 entries.
_ANCHORS = {
    "inferno": [
        (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
        (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164),
    ],
    "viridis": [
        (68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 145, 140),
        (40, 174, 128), (94, 201, 98), (173, 220, 48), (253, 231, 37),
    ],
}  # fmt: skip


def _table(name: str) -> np.ndarray:
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    pos = np.linspace(0, len(anchors) - 1, 256)
    lo = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    frac = (pos - lo)[:, None]
    return np.round(anchors[lo] * (1 - frac) + anchors[lo + 1] * frac).astype(np.uint8)


COLORMAPS: dict[str, np.ndarray] = {name: _table(name) for name in _ANCHORS}


def colormap(values: np.ndarray, name: str = "inferno") -> np.ndarray:
    """Values in [0, 1] (clipped; NaN → 0) → uint8 RGB of shape ``values.shape + (3,)``."""
    if name not in COLORMAPS:
        msg = f"unknown colormap {name!r}: choose one of {sorted(COLORMAPS)}"
        raise ValueError(msg)
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0).clip(0, 1)
    return COLORMAPS[name][np.round(v * 255).astype(np.intp)]


def _as_rgb(image: Any) -> np.ndarray:
    if hasattr(image, "convert"):  # PIL
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(np.asarray(arr, dtype=np.float64) * 255.0, 0, 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)  # C×H×W
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        msg = f"cannot read an image of shape {arr.shape}: pass H×W, H×W×3, C×H×W or PIL"
        raise ValueError(msg)
    return arr


def overlay(
    image: Any, heat: np.ndarray, *, opacity: float = 0.5, cmap: str = "inferno"
) -> np.ndarray:
    """RGB uint8: ``(1 − opacity)·image + opacity·colormap(heat)``, the map resized to the image.

    ``image``: PIL, uint8 or [0, 1] float array (H×W, H×W×3 or C×H×W). ``heat``: (h, w) in [0, 1].
    """
    if not 0.0 <= opacity <= 1.0:
        msg = f"opacity must be within [0, 1], got {opacity}"
        raise ValueError(msg)
    rgb = _as_rgb(image)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != rgb.shape[:2]:
        heat = upsample(torch.from_numpy(heat)[None], rgb.shape[:2])[0].numpy()
    colour = colormap(heat, cmap).astype(np.float32)
    out = (1.0 - opacity) * rgb.astype(np.float32) + opacity * colour
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- map metrics


def _box_mask(shape: tuple[int, int], box: tuple[int, int, int, int], margin: int = 0):
    r0, r1, c0, c1 = box
    m = np.zeros(shape, dtype=bool)
    m[max(r0 - margin, 0) : r1 + margin, max(c0 - margin, 0) : c1 + margin] = True
    return m


def pointing_game(maps: np.ndarray, box: tuple[int, int, int, int], margin: int = 0) -> np.ndarray:
    """Per map: does its maximum fall inside ``box`` = (row0, row1, col0, col1) (± ``margin``)?"""
    maps = np.asarray(maps)
    mask = _box_mask(maps.shape[1:], box, margin)
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    return mask.reshape(-1)[flat]


def energy_share(maps: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, float]:
    """Per map: Σ map inside ``box`` / Σ map (NaN for an all-zero map); and the box's area share."""
    maps = np.asarray(maps, dtype=np.float64)
    mask = _box_mask(maps.shape[1:], box)
    total = maps.sum(axis=(1, 2))
    inside = maps[:, mask].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / total, np.nan)
    return share, float(mask.mean())


# --------------------------------------------------------------------------- spuriosity and gap


def spuriosity(acts: np.ndarray, labels: Any, spurious: Mapping[int, Sequence[int]]) -> np.ndarray:
    """(n,) float: mean within-class z-score of the activations of the class's spurious features.

    Images of classes with no feature marked spurious get NaN. A feature constant within a class
    contributes 0.
    """
    acts = np.asarray(acts, dtype=np.float64)
    labels = np.asarray(labels)
    if len(acts) != len(labels):
        msg = f"acts has {len(acts)} rows but labels has {len(labels)}"
        raise ValueError(msg)
    score = np.full(len(labels), np.nan)
    for c, feats in spurious.items():
        feats = [int(f) for f in feats]
        if not feats:
            continue
        bad = [f for f in feats if not 0 <= f < acts.shape[1]]
        if bad:
            msg = f"spurious features {bad} of class {c} out of range 0..{acts.shape[1] - 1}"
            raise IndexError(msg)
        m = labels == int(c)
        if not m.any():
            continue
        a = acts[np.ix_(m, feats)]
        sd = a.std(axis=0)
        z = np.where(sd > 0, (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)
        score[m] = z.mean(axis=1)
    return score


class SpuriousGap(dict):
    """``{class: gap}`` in accuracy points (acc(top-k) − acc(bottom-k)), plus :attr:`table`.

    :attr:`table` has one row per class: ``k`` (after clamping), ``n`` (class size), ``acc_top``,
    ``acc_bottom``, ``gap``, ``ci_low``, ``ci_high`` (95 % Agresti–Caffo interval: a Wald interval
    for a difference of proportions after adding one success and one failure to each group). The
    interval treats the two groups as independent samples; they are the extremes of a ranking,
    so read it as "how much the gap could move with other images of the same kind".
    """

    table: pd.DataFrame

    def __repr__(self) -> str:
        return f"SpuriousGap({dict.__repr__(self)})"


def _gap_ci(s1: int, n1: int, s2: int, n2: int, z: float = 1.959964) -> tuple[float, float]:
    p1, p2 = (s1 + 1) / (n1 + 2), (s2 + 1) / (n2 + 2)
    se = math.sqrt(p1 * (1 - p1) / (n1 + 2) + p2 * (1 - p2) / (n2 + 2))
    d_adj = p1 - p2
    return 100 * (d_adj - z * se), 100 * (d_adj + z * se)


def spurious_gap(
    score: np.ndarray,
    correct: Any,
    labels: Any,
    k: int = 50,
    *,
    classes: Iterable[int] | None = None,
) -> SpuriousGap:
    """Per class: accuracy of its ``k`` highest-score images − of its ``k`` lowest, in points.

    Images with a NaN score are left out. ``k`` is clamped to half the class's scored images (so
    the two groups never overlap) with a :class:`SpuriousWarning`. Classes default to those with
    any finite score. See :class:`SpuriousGap` for the confidence interval.
    """
    score = np.asarray(score, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    labels = np.asarray(labels)
    if not (len(score) == len(correct) == len(labels)):
        msg = f"score ({len(score)}), correct ({len(correct)}) and labels ({len(labels)}) differ"
        raise ValueError(msg)
    if k < 1:
        msg = f"k must be at least 1, got {k}"
        raise ValueError(msg)
    finite = np.isfinite(score)
    if classes is None:
        classes = sorted(int(c) for c in np.unique(labels[finite]))
    rows, out = [], SpuriousGap()
    for c in classes:
        m = np.flatnonzero((labels == c) & finite)
        n = len(m)
        if n < 2:
            warnings.warn(
                f"class {c}: {n} scored image(s), a gap needs at least 2; skipped",
                SpuriousWarning,
                stacklevel=2,
            )
            continue
        kk = min(int(k), n // 2)
        if kk < k:
            warnings.warn(
                f"class {c}: k={k} clamped to {kk} (half of its {n} scored images, so the top "
                "and bottom groups do not overlap)",
                SpuriousWarning,
                stacklevel=2,
            )
        order = m[np.argsort(score[m], kind="stable")]
        top, bottom = order[-kk:], order[:kk]
        s_top, s_bot = int(correct[top].sum()), int(correct[bottom].sum())
        gap = 100.0 * (s_top / kk - s_bot / kk)
        lo, hi = _gap_ci(s_top, kk, s_bot, kk)
        out[int(c)] = gap
        rows.append(
            {"class": int(c), "k": kk, "n": n, "acc_top": s_top / kk, "acc_bottom": s_bot / kk,
             "gap": gap, "ci_low": lo, "ci_high": hi}
        )  # fmt: skip
    out.table = pd.DataFrame(
        rows, columns=["class", "k", "n", "acc_top", "acc_bottom", "gap", "ci_low", "ci_high"]
    )
    return out


def feature_gaps(
    acts: np.ndarray,
    correct: Any,
    labels: Any,
    cls: int,
    features: Iterable[int] | None = None,
    k: int = 50,
) -> pd.DataFrame:
    """The spurious gap of class ``cls`` ranking its images by each single feature's activation.

    One row per feature: ``feature``, ``k``, ``acc_top``, ``acc_bottom``, ``gap``, ``ci_low``,
    ``ci_high`` (as :func:`spurious_gap`).
    """
    acts = np.asarray(acts)
    labels = np.asarray(labels)
    feats = range(acts.shape[1]) if features is None else [int(f) for f in features]
    rows = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpuriousWarning)
        for f in feats:
            res = spurious_gap(acts[:, f], correct, labels, k=k, classes=[cls])
            if len(res.table):
                rows.append({"feature": f, **res.table.iloc[0].drop(["class", "n"]).to_dict()})
    if caught:  # report once, not once per feature
        warnings.warn(str(caught[0].message), SpuriousWarning, stacklevel=2)
    return pd.DataFrame(rows, columns=["feature", "k", "acc_top", "acc_bottom", "gap", "ci_low",
                                       "ci_high"])  # fmt: skip
