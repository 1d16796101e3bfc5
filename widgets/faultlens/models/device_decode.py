"""Which path decodes the images for :func:`~faultlens.models.runner.run_models`, and the GPU one.

One switch: ``run_models(decode=...)``, else the environment variable ``FAULTLENS_DECODE``
(so ``analyze()`` and ``faultlens prepare`` follow it too), else ``"auto"``:

- ``"auto"``: the GPU path when every one of these holds, else the CPU path: a CUDA device is
  present; the source is image files (a folder or a table of paths); at least half of up to 64
  of its files, spread over it, are JPEG (by their first bytes); and a model runs on CUDA with a
  transform the GPU path can do (:func:`preprocess_for`).
- ``"gpu"``: the GPU path, or an error that names what it lacks.
- ``"cpu"``: the CPU path: worker processes decode with PIL (scaled JPEG decoding, see
  :func:`~faultlens.data.decode.decode_image`) and run each model's own transform.

On the GPU path (:func:`device_items`) a reader thread reads the files of the next batches while
the current one runs; the JPEGs of a batch are decoded together on the device by torchvision's
nvJPEG ``decode_jpeg`` (other formats, and a JPEG it refuses, by faultlens's decoder on CPU
threads); each model's resize, crop and normalisation run on the device
(:class:`~faultlens.data.gpu_decode.Preprocess`). A model the GPU path cannot prepare (the image
properties, a transform with steps of your own) and the thumbnails get a PIL image copied back
from the device, shrunk there first to the size the CPU path's decoder would give. Skips, their
reasons and the shape rules are the runner's own, as on the CPU path.

The two paths resize differently (tensors, antialiased, against PIL), so their outputs differ by
rounding (mean |Δ| under 0.02 of the normalised pixels); they share the cache, as CPU and CUDA
runs of a model already do (CUDA runs under float16 autocast). Which path ran, on which device and
why is printed (with ``progress``), returned in ``RunResult.decode`` and kept in each output
shard's side-car (``"decode"``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import torch

from faultlens.data.decode import encode_thumbnail
from faultlens.data.gpu_decode import (
    Preprocess,
    decode_uint8,
    host_image,
    jpeg_share,
    read_ahead,
)
from faultlens.data.sources import FolderSource, ImageSource, TableSource
from faultlens.models.base import BatchModel

#: The environment variable that sets the decoding path when ``run_models`` is not told.
DECODE_ENV = "FAULTLENS_DECODE"
DECODE_CHOICES = ("auto", "gpu", "cpu")

# index, one tensor per model (None where it cannot run), the thumbnail, one reason per model
Item = tuple[int, "list[torch.Tensor | None]", bytes, list[str]]


@dataclass(frozen=True)
class DecodePlan:
    """The decoding path a run takes (``"gpu"`` or ``"cpu"``), on which device, and why."""

    path: str
    device: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def describe(self) -> str:
        where = (
            f"GPU path: JPEGs decoded in batches on {self.device}"
            if self.path == "gpu"
            else "CPU path: worker processes decode with PIL"
        )
        return f"decoding: {where} ({self.reason}; set {DECODE_ENV}=auto|gpu|cpu to choose)"


def cuda_device() -> torch.device | None:
    """The CUDA device the GPU path decodes on, or None when there is none."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None


def choose_decode(
    source: ImageSource, models: Iterable[BatchModel], decode: str | None = None
) -> DecodePlan:
    """The path :func:`~faultlens.models.runner.run_models` takes (see the module's rules)."""
    asked = decode if decode is not None else os.environ.get(DECODE_ENV) or "auto"
    asked = str(asked).strip().lower()
    if asked not in DECODE_CHOICES:
        where = "decode=" if decode is not None else f"{DECODE_ENV}="
        msg = f"{where}{asked!r}: use one of {', '.join(DECODE_CHOICES)}"
        raise ValueError(msg)
    if asked == "cpu":
        return DecodePlan("cpu", "cpu", "asked for the CPU path")
    device = cuda_device()
    why_not = _why_not_gpu(source, list(models), device)
    if why_not is None:
        assert device is not None
        reason = "asked for the GPU path" if asked == "gpu" else "JPEG files and a CUDA model"
        return DecodePlan("gpu", str(device), reason)
    if asked == "gpu":
        msg = f"decode='gpu' cannot run here: {why_not}; use decode='auto' or 'cpu'"
        raise ValueError(msg)
    return DecodePlan("cpu", "cpu", why_not)


def _why_not_gpu(
    source: ImageSource, models: list[BatchModel], device: torch.device | None
) -> str | None:
    if device is None:
        return "no CUDA device"
    if not _reads_files(source):
        return f"the source ({type(source).__name__}) is not image files"
    on_device = [
        m
        for m in models
        if getattr(getattr(m, "device", None), "type", "cpu") == device.type
        and preprocess_for(m) is not None
    ]
    if not on_device:
        return "no model runs on the CUDA device with a transform the GPU path can do"
    share = jpeg_share(source.paths)  # type: ignore[arg-type]
    if share < 0.5:
        return f"{share:.0%} of a sample of the files are JPEG"
    return None


def _reads_files(source: ImageSource) -> bool:
    """A folder or table source whose items are its files, decoded as they are."""
    return (
        isinstance(source, (FolderSource, TableSource))
        and source.paths is not None
        and type(source).load is FolderSource.load
    )


def preprocess_for(model: BatchModel) -> Preprocess | None:
    """What ``model``'s transform does, as a :class:`Preprocess` the GPU path runs on the device,
    or None (the model then gets a PIL image and its own transform): a ``preprocess`` attribute
    of the model, else the offline embedder's and open_clip's transforms, else a torchvision
    ``Compose`` that :meth:`Preprocess.from_transform` reads."""
    from faultlens.models.embedders import EfficientNetLiteEmbedder, OpenClipEmbedder
    from faultlens.models.properties import ImageProperties

    own = getattr(model, "preprocess", None)
    if isinstance(own, Preprocess):
        return own
    if isinstance(model, ImageProperties):
        return None
    if isinstance(model, EfficientNetLiteEmbedder):  # (pixel - 127) / 128 at image_size²
        s = model.image_size
        return Preprocess(resize=(s, s), mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
    transform = getattr(model, "_transform", None)
    if isinstance(model, OpenClipEmbedder):  # its RGB and to-tensor steps: no-ops here
        from torchvision import transforms as T

        steps = [t for t in transform.transforms if _step_name(t) not in _OPEN_CLIP_NO_OPS]
        transform = T.Compose(steps)
    if transform is None:
        return None
    try:
        return Preprocess.from_transform(transform)
    except (ValueError, TypeError, AttributeError):
        return None


# open_clip's steps that convert to RGB and to a 0–1 tensor (names across its versions)
_OPEN_CLIP_NO_OPS = {"_convert_to_rgb", "MaybeConvertMode", "MaybeToTensor"}


def _step_name(step: Any) -> str:
    return getattr(step, "__name__", None) or type(step).__name__


def device_items(
    source: ImageSource,
    batches: Sequence[Sequence[int]],
    models: Sequence[BatchModel],
    thumb_size: int | None,
    device: torch.device,
    *,
    prefetch: int = 3,
    cpu_workers: int | None = None,
) -> Iterator[list[Item]]:
    """Each batch of ``source``'s files decoded once on ``device`` and prepared for every model,
    as the runner's items (what the CPU path's workers give): per item its index, one tensor per
    model (on the device for a model with a :func:`preprocess_for`, else its own transform of the
    PIL copy), the thumbnail bytes, and one skip reason per model ("" when it can run)."""
    paths = source.paths
    assert paths is not None
    pres = [preprocess_for(m) for m in models]
    host = [k for k, p in enumerate(pres) if p is None]
    sizes = [getattr(m, "input_size", None) for m in models] + ([thumb_size] if thumb_size else [])
    min_size = max(sizes) if sizes and None not in sizes else None  # type: ignore[type-var]
    workers = cpu_workers or min(8, os.cpu_count() or 1)
    reads = read_ahead(paths, batches, prefetch=prefetch)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faultlens-decode") as pool:
            for idx, blobs, reasons in reads:
                images, _ = decode_uint8(blobs, reasons, device, pool)
                yield _items(idx, images, reasons, models, pres, host, thumb_size, min_size, pool)
    finally:
        reads.close()


def _items(
    idx: list[int],
    images: Mapping[int, torch.Tensor],
    reasons: Mapping[int, str],
    models: Sequence[BatchModel],
    pres: list[Preprocess | None],
    host: list[int],
    thumb_size: int | None,
    min_size: int | None,
    pool: ThreadPoolExecutor,
) -> list[Item]:
    n = len(models)
    order = sorted(images)
    tensors: list[list[torch.Tensor | None]] = [[None] * n for _ in idx]
    why = [[reasons.get(k, "could not be decoded")] * n for k in range(len(idx))]
    for k in order:
        why[k] = [""] * n
    for m, pre in enumerate(pres):
        if pre is None or not order:
            continue
        try:
            prepared = pre.apply_each([images[k] for k in order])
        except Exception as exc:  # the whole batch cannot be prepared for this model
            for k in order:
                why[k][m] = f"could not be prepared for the model ({type(exc).__name__}: {exc})"
            continue
        for k, t in zip(order, prepared, strict=True):
            tensors[k][m] = t
    thumbs = [b""] * len(idx)
    if host or thumb_size:

        def on_host(k: int) -> tuple[int, bytes, list[tuple[int, Any, str]]]:
            img = host_image(images[k], min_size)
            thumb = b""
            if thumb_size:
                with contextlib.suppress(Exception):  # no thumbnail is no reason to skip the item
                    thumb = encode_thumbnail(img, thumb_size)
            got = []
            for m in host:  # a transform that fails skips the item for its model alone
                try:
                    got.append((m, models[m].transform(img), ""))
                except Exception as exc:
                    reason = f"could not be prepared for the model ({type(exc).__name__}: {exc})"
                    got.append((m, None, reason))
            return k, thumb, got

        for k, thumb, got in pool.map(on_host, order):
            thumbs[k] = thumb
            for m, t, reason in got:
                tensors[k][m], why[k][m] = t, reason
    return [(idx[k], tensors[k], thumbs[k], why[k]) for k in range(len(idx))]
