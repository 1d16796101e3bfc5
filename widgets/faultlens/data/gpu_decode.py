"""Batched image decoding that feeds a GPU: JPEGs decoded on the device, resized and normalised there.

On a CUDA machine the JPEGs of a batch are decoded together by torchvision's nvJPEG-backed
:func:`torchvision.io.decode_jpeg` (``device="cuda"``), then each image is resized (bilinear, with
antialiasing) and the batch normalised on the card. PNGs and every other format are decoded on CPU
threads by faultlens's own :func:`~faultlens.data.decode.decode_image` (grayscale, palette, 16-bit,
EXIF handled) and copied over from pinned memory. A reader thread reads the files of the next
batches while the current one is decoded and run, so disk reads overlap with compute. Without CUDA
the same code runs with ``decode_jpeg`` on the CPU (libjpeg-turbo, as PIL): that is the path the
tests exercise.

:func:`faultlens.models.runner.run_models` takes this path by itself on a CUDA machine when the
source is JPEG files (see :mod:`faultlens.models.device_decode`); :func:`iter_batches` is the same
path for a loop of your own.

A file that cannot be decoded by either path is skipped and named in the batch's ``skipped`` list
(its index, its path, the reason), like the runner's skip report; the other images of the batch go on.

    from faultlens.data.gpu_decode import Preprocess, iter_batches
    pre = Preprocess(resize=224, crop=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    for batch in iter_batches(paths, pre, batch_size=256):
        logits = model(batch.images)          # (B, 3, 224, 224) float on the device
        keep = batch.indices                  # positions in ``paths`` of those B images
"""

from __future__ import annotations

import io
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from faultlens.data.decode import MAX_PIXELS, ORIGINAL_SIZE, ImageDecodeError, decode_image

__all__ = [
    "DecodedBatch",
    "Preprocess",
    "decode_batch",
    "decode_uint8",
    "host_image",
    "iter_batches",
    "jpeg_share",
    "read_ahead",
]

JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class Preprocess:
    """What a model's transform does to an RGB image, done on tensors (so on the GPU).

    resize:
        An int: the shorter side becomes this many pixels, the aspect ratio kept (torchvision's
        ``Resize(int)``); a pair: exactly (height, width).
    crop:
        (height, width) of a centre crop after the resize, or None.
    mean, std:
        Per-channel normalisation on the 0–1 scale: ``(pixel / 255 - mean) / std``.
    interpolation:
        ``"bilinear"`` (default) or ``"bicubic"``, both antialiased as PIL's are, or ``"nearest"``.
    """

    resize: int | tuple[int, int]
    crop: tuple[int, int] | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in _MODES:
            msg = f"interpolation={self.interpolation!r}: use one of {sorted(_MODES)}"
            raise ValueError(msg)

    @classmethod
    def from_transform(cls, transform: Any) -> Preprocess:
        """Read a torchvision ``Compose`` of ``Resize``, ``CenterCrop``, ``ToTensor`` /
        ``PILToTensor`` + ``ConvertImageDtype`` and ``Normalize``; any other step is an error naming
        it (give the :class:`Preprocess` yourself then)."""
        from torchvision import transforms as T

        steps = transform.transforms if isinstance(transform, T.Compose) else [transform]
        resize = crop = None
        mode = "bilinear"
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        for step in steps:
            if (
                isinstance(step, T.Resize)
                and resize is None
                and not getattr(step, "max_size", None)
            ):
                s = step.size
                resize = s if isinstance(s, int) else (int(s[0]), int(s[-1]))
                if isinstance(s, (list, tuple)) and len(s) == 1:
                    resize = int(s[0])
                mode = str(getattr(step.interpolation, "value", step.interpolation)).lower()
                if mode not in _MODES:
                    msg = (
                        f"cannot run Resize with interpolation {mode!r} on the GPU: pass "
                        "Preprocess(..., interpolation='bilinear' or 'bicubic')"
                    )
                    raise ValueError(msg)
            elif isinstance(step, T.CenterCrop):
                c = step.size
                crop = (int(c[0]), int(c[-1])) if isinstance(c, (list, tuple)) else (int(c), int(c))
            elif isinstance(step, T.Normalize):
                mean = tuple(float(v) for v in step.mean)  # type: ignore[assignment]
                std = tuple(float(v) for v in step.std)  # type: ignore[assignment]
            elif isinstance(step, (T.ToTensor, T.PILToTensor, T.ConvertImageDtype)):
                continue
            else:
                msg = (
                    f"cannot run the transform step {type(step).__name__} on the GPU: pass "
                    "Preprocess(resize=..., crop=..., mean=..., std=...) that does the same"
                )
                raise ValueError(msg)
        if resize is None:
            msg = "the transform has no Resize: pass Preprocess(resize=...) with the model's input size"
            raise ValueError(msg)
        return cls(resize=resize, crop=crop, mean=mean, std=std, interpolation=mode)  # type: ignore[arg-type]

    def size_for(self, h: int, w: int) -> tuple[int, int]:
        """The (height, width) an h × w image is resized to (torchvision's rule for an int:
        the shorter side to ``resize``, the longer one scaled and truncated)."""
        if not isinstance(self.resize, int):
            return int(self.resize[0]), int(self.resize[1])
        short, long = (h, w) if h <= w else (w, h)
        new_long = max(1, int(self.resize * long / short))
        return (self.resize, new_long) if h <= w else (new_long, self.resize)

    def apply_each(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 (3, H, W) images, all on one device → one normalised float32 (3, h, w) tensor
        each, in order. Images of the same size are resized together (one call per size)."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for k, img in enumerate(images):
            by_size.setdefault(tuple(img.shape[-2:]), []).append(k)
        out: list[torch.Tensor | None] = [None] * len(images)
        for (h, w), ks in by_size.items():
            size = self.size_for(h, w)
            x = torch.stack([images[k] for k in ks]).float()
            if (h, w) != size:
                x = torch.nn.functional.interpolate(x, size=size, **_MODES[self.interpolation])
            if self.crop is not None:
                ch, cw = self.crop
                top, left = round((size[0] - ch) / 2), round((size[1] - cw) / 2)
                x = x[..., max(0, top) : max(0, top) + ch, max(0, left) : max(0, left) + cw]
            x = x.clamp_(0, 255).div_(255)
            mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
            x = x.sub_(mean).div_(std)
            for j, k in enumerate(ks):
                out[k] = x[j]
        return out  # type: ignore[return-value]

    def apply(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 (3, H, W) images, all on one device → one normalised float32 (B, 3, h, w) batch
        (they must all come out of the same shape: a crop, or a resize to a pair)."""
        return torch.stack(self.apply_each(images))


_MODES: dict[str, dict[str, Any]] = {
    "bilinear": {"mode": "bilinear", "antialias": True, "align_corners": False},
    "bicubic": {"mode": "bicubic", "antialias": True, "align_corners": False},
    "nearest": {"mode": "nearest"},
}


@dataclass
class DecodedBatch:
    """One batch: ``images`` (B, 3, h, w) float32 on the device; ``indices`` the positions of those
    B images in the input; ``skipped`` (index, name, reason) for each item that could not be read."""

    images: torch.Tensor
    indices: list[int]
    skipped: list[tuple[int, str, str]] = field(default_factory=list)
    on_gpu_jpegs: int = 0


def _read(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    if not p.is_file():
        msg = "file not found" if not p.exists() else "is a folder, not an image file"
        raise ImageDecodeError(msg)
    data = p.read_bytes()
    if not data:
        msg = "empty file (0 bytes)"
        raise ImageDecodeError(msg)
    if data[:3] == JPEG_MAGIC:
        _check_declared_size(data)
    return data


def _check_declared_size(data: bytes) -> None:
    """Refuse a JPEG whose header declares more than :data:`~faultlens.data.decode.MAX_PIXELS`,
    as :func:`decode_image` does, before any decoder allocates it (header only, no pixels)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError as exc:
        msg = f"refused: declared size too large ({exc})"
        raise ImageDecodeError(msg) from None
    except Exception:  # a broken header: the decoders give the reason
        return
    if w * h > MAX_PIXELS:
        msg = f"refused: declared size {w}x{h} exceeds {MAX_PIXELS:,} pixels"
        raise ImageDecodeError(msg)


def _cpu_decode(data: bytes) -> torch.Tensor:
    """Any format, faultlens's decoder (PIL) → uint8 (3, H, W) CPU tensor."""
    arr = np.asarray(decode_image(data))
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _decode_jpegs(blobs: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEG bytes together on ``device``; a batch that fails is decoded one by one, and an
    image the device decoder refuses (CMYK, arithmetic coding, damaged) comes back as None."""
    from torchvision.io import ImageReadMode, decode_jpeg

    datas = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    kw = {"mode": ImageReadMode.RGB, "device": device, "apply_exif_orientation": True}
    try:
        return list(decode_jpeg(datas, **kw))
    except RuntimeError:
        out: list[torch.Tensor | None] = []
        for d in datas:
            try:
                out.append(decode_jpeg(d, **kw))
            except RuntimeError:
                out.append(None)
        return out


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def decode_batch(
    items: Sequence[str | os.PathLike[str] | bytes],
    preprocess: Preprocess,
    *,
    device: str | torch.device | None = None,
    indices: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> DecodedBatch:
    """Decode, resize and normalise ``items`` (paths or encoded bytes) into one batch on ``device``
    (default: CUDA when there is one, else the CPU). JPEGs go to ``decode_jpeg`` on the device,
    everything else (and a JPEG it refuses) to :func:`decode_image` on ``pool``'s CPU threads."""
    device = _default_device(device)
    indices = list(range(len(items))) if indices is None else list(indices)
    if names is None:
        names = [
            f"item {i}" if isinstance(it, bytes) else str(it)
            for i, it in zip(indices, items, strict=True)
        ]
    blobs: list[bytes | None] = []
    reasons: dict[int, str] = {}
    for k, it in enumerate(items):
        try:
            blobs.append(it if isinstance(it, (bytes, bytearray)) else _read(it))
        except (ImageDecodeError, OSError) as exc:
            blobs.append(None)
            reasons[k] = str(exc)
    return _decode_blobs(blobs, reasons, preprocess, device, indices, list(names), pool)


def decode_uint8(
    blobs: list[bytes | None],
    reasons: dict[int, str],
    device: torch.device,
    pool: ThreadPoolExecutor | None,
) -> tuple[dict[int, torch.Tensor], int]:
    """Position → uint8 (3, H, W) image on ``device`` for every blob that decodes (``reasons``
    gets the others), and how many JPEGs the device decoded."""
    jpeg_at = [k for k, b in enumerate(blobs) if b is not None and b[:3] == JPEG_MAGIC]
    images: dict[int, torch.Tensor] = {}
    n_gpu = 0
    if jpeg_at:
        decoded = _decode_jpegs([blobs[k] for k in jpeg_at], device)  # type: ignore[misc]
        for k, img in zip(jpeg_at, decoded, strict=True):
            if img is not None:
                images[k] = img
                n_gpu += device.type == "cuda"
    cpu_at = [k for k, b in enumerate(blobs) if b is not None and k not in images]

    def one(k: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return k, _cpu_decode(blobs[k]), None  # type: ignore[arg-type]
        except ImageDecodeError as exc:
            return k, None, str(exc)

    results = list(pool.map(one, cpu_at)) if pool is not None else [one(k) for k in cpu_at]
    for k, img, why in results:
        if img is None:
            reasons[k] = why or "cannot decode"
            continue
        if device.type == "cuda":
            img = img.pin_memory().to(device, non_blocking=True)
        images[k] = img
    return images, n_gpu


def _empty(preprocess: Preprocess, device: torch.device) -> torch.Tensor:
    r = preprocess.resize
    h, w = preprocess.crop or (r if isinstance(r, tuple) else (r, r))
    return torch.empty((0, 3, h, w), device=device)


def _decode_blobs(
    blobs: list[bytes | None],
    reasons: dict[int, str],
    preprocess: Preprocess,
    device: torch.device,
    indices: list[int],
    names: list[str],
    pool: ThreadPoolExecutor | None,
) -> DecodedBatch:
    images, n_gpu = decode_uint8(blobs, reasons, device, pool)
    order = sorted(images)
    batch = preprocess.apply([images[k] for k in order]) if order else _empty(preprocess, device)
    skipped = [(indices[k], names[k], reasons[k]) for k in sorted(reasons)]
    return DecodedBatch(batch, [indices[k] for k in order], skipped, n_gpu)


def _read_all(chunk: Sequence[str | os.PathLike[str]]) -> tuple[list[bytes | None], dict[int, str]]:
    blobs: list[bytes | None] = []
    reasons: dict[int, str] = {}
    for k, p in enumerate(chunk):
        try:
            blobs.append(_read(p))
        except (ImageDecodeError, OSError) as exc:
            blobs.append(None)
            reasons[k] = str(exc)
    return blobs, reasons


def read_ahead(
    paths: Sequence[str | os.PathLike[str]],
    batches: Iterable[Sequence[int]],
    *,
    prefetch: int = 3,
) -> Iterator[tuple[list[int], list[bytes | None], dict[int, str]]]:
    """For each batch (item indices into ``paths``): its indices, each file's bytes (None where it
    cannot be read) and the reasons by position in the batch. A reader thread keeps up to
    ``prefetch`` batches read ahead while the caller works; closing the generator stops it."""
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()
    done = object()

    def reader() -> None:
        try:
            for idx in batches:
                if stop.is_set():
                    return
                q.put((list(idx), *_read_all([paths[i] for i in idx])))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
        finally:
            q.put(done)

    thread = threading.Thread(target=reader, name="faultlens-gpu-reader", daemon=True)
    thread.start()
    try:
        while (got := q.get()) is not done:
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def host_image(image: torch.Tensor, min_size: int | None = None) -> Image.Image:
    """A decoded uint8 (3, H, W) image (any device) as the RGB PIL image the CPU path's decoder
    gives for the same ``min_size``: a JPEG at least twice ``min_size`` on its shorter side comes
    down at 1/2, 1/4 or 1/8 scale (as libjpeg's DCT scaling would), shrunk on the device so little
    crosses back; ``info[ORIGINAL_SIZE]`` holds the full (width, height)."""
    h, w = (int(v) for v in image.shape[-2:])
    k = 0
    while min_size and k < 3 and min(h, w) >= 2 ** (k + 1) * min_size:
        k += 1
    if k:
        size = (-(-h // 2**k), -(-w // 2**k))  # ceil, as the DCT-scaled decode gives
        image = (
            torch.nn.functional.interpolate(
                image.unsqueeze(0).float(), size=size, **_MODES["bilinear"]
            )[0]
            .round_()
            .clamp_(0, 255)
            .to(torch.uint8)
        )
    out = Image.fromarray(image.permute(1, 2, 0).contiguous().cpu().numpy())
    out.info[ORIGINAL_SIZE] = (w, h)
    return out


def jpeg_share(paths: Sequence[str | os.PathLike[str]], sample: int = 64) -> float:
    """The share of JPEG files (by their first bytes) among up to ``sample`` of ``paths`` spread
    evenly over them; a file that cannot be read counts as not JPEG."""
    if not len(paths):
        return 0.0
    picks = sorted({int(i) for i in np.linspace(0, len(paths) - 1, min(sample, len(paths)))})
    hits = 0
    for i in picks:
        try:
            with open(paths[i], "rb") as fh:
                hits += fh.read(3) == JPEG_MAGIC
        except OSError:
            continue
    return hits / len(picks)


def iter_batches(
    paths: Sequence[str | os.PathLike[str]],
    preprocess: Preprocess,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    prefetch: int = 3,
    cpu_workers: int | None = None,
    on_batch: Callable[[DecodedBatch], None] | None = None,
) -> Iterator[DecodedBatch]:
    """Yield :class:`DecodedBatch` es of ``paths`` in order. A reader thread keeps up to
    ``prefetch`` batches of file bytes read ahead while the caller works on the current batch;
    non-JPEG files are decoded on ``cpu_workers`` threads (default: the CPU count, at most 8)."""
    if batch_size < 1:
        msg = f"batch_size must be at least 1, got {batch_size}"
        raise ValueError(msg)
    device = _default_device(device)
    paths = list(paths)
    batches = (range(s, min(s + batch_size, len(paths))) for s in range(0, len(paths), batch_size))
    workers = cpu_workers or min(8, os.cpu_count() or 1)
    reads = read_ahead(paths, batches, prefetch=prefetch)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faultlens-decode") as pool:
            for idx, blobs, reasons in reads:
                names = [str(paths[i]) for i in idx]
                batch = _decode_blobs(blobs, reasons, preprocess, device, idx, names, pool)
                if on_batch is not None:
                    on_batch(batch)
                yield batch
    finally:
        reads.close()
