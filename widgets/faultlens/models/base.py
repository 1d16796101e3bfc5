"""The small protocol every image model in faultlens answers, and helpers shared by them.

A :class:`BatchModel` turns a decoded RGB PIL image into a tensor (``transform``) and a batch of
such tensors into a float32 array (``run``). Its ``id`` names it in cache keys: two models with the
same id must give the same numbers. Classifiers, embedders and layer-feature extractors are all
batch models, so one pass over the images decodes each image once and feeds all of them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from faultlens.data.decode import decode_image


@runtime_checkable
class BatchModel(Protocol):
    """What the pipeline needs of a model: an id, a per-image transform and a batch function."""

    id: str

    def transform(self, image: Image.Image) -> torch.Tensor: ...

    def run(self, batch: torch.Tensor) -> np.ndarray: ...


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fingerprint_module(module: torch.nn.Module) -> str:
    """A content hash of a module's parameters and buffers (names, shapes, values)."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for name, t in module.state_dict().items():
        t = t.detach()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        arr = t.cpu().contiguous()
        if arr.dtype == torch.bfloat16:
            arr = arr.float()
        h.update(memoryview(arr.numpy()).cast("B") if arr.numel() else b"")
    return h.hexdigest()[:24]


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def fingerprint_transform(transform: Any) -> str:
    """A stable hash of what ``transform`` does, for cache ids: its ``repr`` with memory addresses
    dropped (torchvision transforms show their settings there, ``Resize(size=224, …)``), plus,
    for plain functions and lambdas (alone, in a ``Compose`` or a ``Lambda``), their module, name,
    bytecode, constants, defaults and captured values. A callable object whose ``repr`` hides its
    settings is known only by its class."""
    return hashlib.sha256(_describe_transform(transform, 0).encode()).hexdigest()[:16]


def _describe_transform(obj: Any, depth: int) -> str:
    if depth > 8:  # a transform that holds itself
        return type(obj).__qualname__
    if isinstance(obj, functools.partial):
        inner = _describe_transform(obj.func, depth + 1)
        return _ADDRESS.sub("", f"partial({inner}, {obj.args!r}, {sorted(obj.keywords.items())!r})")
    code = getattr(obj, "__code__", None)
    if code is not None:  # a function, lambda or bound method: its repr says only its name
        parts = [
            f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}",
            _describe_code(code),
            repr(getattr(obj, "__defaults__", None)),
            *(_cell_repr(c) for c in getattr(obj, "__closure__", None) or ()),
        ]
        if hasattr(obj, "__self__"):
            parts.append(repr(obj.__self__))
        return _ADDRESS.sub("", "|".join(parts))
    parts = [_ADDRESS.sub("", repr(obj))]
    # torchvision's Compose and Lambda hold callables that their repr leaves out
    for attr in ("transforms", "lambd"):
        inner = getattr(obj, attr, None)
        if isinstance(inner, (list, tuple)):
            parts.extend(_describe_transform(t, depth + 1) for t in inner)
        elif callable(inner):
            parts.append(_describe_transform(inner, depth + 1))
    return "|".join(parts)


def _cell_repr(cell: Any) -> str:
    try:
        return repr(cell.cell_contents)
    except ValueError:  # a captured name not assigned yet
        return "<empty>"


def _describe_code(code: Any) -> str:
    consts = [_describe_code(c) if hasattr(c, "co_code") else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}:{consts}:{code.co_names}"


@contextlib.contextmanager
def inference_context(device: torch.device) -> Iterator[None]:
    """Inference mode, plus autocast to half precision on CUDA."""
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                yield
        else:
            yield


def transform_min_size(transform: Any) -> int | None:
    """The fewest pixels a side that ``transform`` needs, when it starts by resizing: a torchvision
    ``Resize`` (alone or first in a ``Compose``) to an int gives it, to (h, w) the larger of the
    two. Anything else (a function, a crop first, ``max_size``) gives None: decode whole."""
    from torchvision import transforms as T

    first = (
        transform.transforms[0]
        if isinstance(transform, T.Compose) and transform.transforms
        else transform
    )
    if not isinstance(first, T.Resize) or getattr(first, "max_size", None):
        return None
    size = first.size
    sizes = [size] if isinstance(size, int) else list(size)
    return int(max(sizes)) if sizes and all(isinstance(v, int) and v > 0 for v in sizes) else None


class TorchBatchModel:
    """A batch model built from a torch module and a transform.

    Parameters
    ----------
    module:
        The network; put in eval mode and moved to ``device``.
    transform:
        PIL RGB image → C×H×W float tensor (e.g. a torchvision transform).
    forward:
        ``(module, batch) → (B, D)`` tensor; default ``module(batch)``.
    name:
        Human-readable name, part of the id.
    model_id:
        The cache id; by default the name, a hash of the module's weights and one of the transform
        (:func:`fingerprint_transform`). Models that pass their own id build the transform from
        what the id holds (e.g. the input size).
    input_size:
        The fewest pixels a side the transform needs (lets the decoder scale big JPEGs down while
        decoding, see :func:`~faultlens.data.decode.decode_image`); by default read off a
        torchvision ``Resize`` at the start of ``transform``, else None (decode whole).
    max_batch_pixels:
        On CPU, a batch is run in chunks of at most this many pixels (images × H × W), so the
        activations of a big batch never sit in memory at once, and the activations of a chunk
        stay in the CPU's caches: a batch of 64 at 224² through the offline model peaked 0.79 GB
        above its weights in one chunk, 0.27 GB in chunks of 16 × 224² and 0.13 GB at the default
        (8 × 224²), which also ran 1.35× faster than 16 × 224² on 2 cores (1.27× at 112², 1.10×
        for a ResNet-50, 0.99× for a ViT-B-32). ``None``: never split. Not used on CUDA, where the
        whole batch runs under autocast.
    channels_last:
        Keep the module's 4-D weights and each batch in channels-last (NHWC) memory order, which
        the convolution kernels of CPU and CUDA run faster on: EfficientNet-Lite0 at 224² ran
        1.35× faster on 2 CPU cores and 1.40× on an H200 under autocast (``bench_embed``,
        ``bench_gpu``), with outputs within 1e-5 of the default order. ``None``: when the module
        has a 2-D convolution. The user's module is converted in place, as by ``.to(device)``.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
        name: str | None = None,
        device: str | torch.device | None = None,
        model_id: str | None = None,
        max_batch_pixels: int | None = 8 * 224 * 224,
        channels_last: bool | None = None,
        input_size: int | None = None,
    ) -> None:
        self.input_size = input_size if input_size is not None else transform_min_size(transform)
        self.device = resolve_device(device)
        self.max_batch_pixels = max_batch_pixels
        if channels_last is None:
            channels_last = any(isinstance(m, torch.nn.Conv2d) for m in module.modules())
        self.channels_last = bool(channels_last)
        self.module = module.eval().to(self.device)
        if self.channels_last:
            self.module.to(memory_format=torch.channels_last)
        self._transform = transform
        self._forward = forward
        self.name = name or type(module).__name__
        # the transform is part of the id: the same net fed 224 or 64 pixels gives other numbers
        self.id = (
            model_id
            or f"{self.name}-{fingerprint_module(module)}-{fingerprint_transform(transform)}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, device={self.device.type!r})"

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    def run(self, batch: torch.Tensor) -> np.ndarray:
        step = len(batch)
        if self.device.type == "cpu" and self.max_batch_pixels and batch.ndim == 4 and len(batch):
            step = max(1, self.max_batch_pixels // (batch.shape[-2] * batch.shape[-1]))
        if step >= len(batch):
            return self._run_chunk(batch)
        return np.concatenate(
            [self._run_chunk(batch[i : i + step]) for i in range(0, len(batch), step)]
        )

    def _run_chunk(self, batch: torch.Tensor) -> np.ndarray:
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with inference_context(self.device):
            out = self._forward(self.module, batch) if self._forward else self.module(batch)
        return out.float().cpu().numpy().astype(np.float32, copy=False)

    def __call__(self, images: Sequence[Any] | torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """Run on images (PIL, arrays, paths) or on an already-transformed (N, C, H, W) tensor."""
        if isinstance(images, torch.Tensor):
            parts = [
                self.run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)
            ]
        else:
            parts = []
            for i in range(0, len(images), batch_size):
                chunk = [self.transform(decode_image(im)) for im in images[i : i + batch_size]]
                parts.append(self.run(torch.stack(chunk)))
        if not parts:
            msg = "no images given"
            raise ValueError(msg)
        return np.concatenate(parts)
