"""Batched image decoding that feeds a GPU: JPEGs decoded on the device, resized and normalised there.

On a CUDA machine the JPEGs of a batch are decoded together by torchvision's nvJPEG-backed
:func:`torchvision.io.decode_jpeg` (``device="cuda"``), then each image is resized (bilinear, with
antialiasing) and the batch normalised on the card. PNGs and every other format are decoded on CPU
threads by faultlens's own :func:`~faultlens.data.decode.decode_image` (grayscale, palette, 16-bit,
EXIF handled) and copied over from pinned memory. A reader thread reads the files of the next
batches while the current one is decoded and run, so disk reads overlap with compute. Without CUDA
the same code runs with ``decode_jpeg`` on the CPU (libjpeg-turbo, as PIL): that is the path the
tests exercise.

A file that cannot be decoded by either path is skipped and named in the batch's ``skipped`` list
(its index, its path, the reason), like the runner's skip report; the other images of the batch go on.

    from faultlens.data.gpu_decode import Preprocess, iter_batches
    pre = Preprocess(resize=224, crop=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    for batch in iter_batches(paths, pre, batch_size=256):
        logits = model(batch.images)          # (B, 3, 224, 224) float on the device
        keep = batch.indices                  # positions in ``paths`` of those B images
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faultlens.data.decode import ImageDecodeError, decode_image

__all__ = [
    "DecodedBatch",
    "Preprocess",
    "decode_batch",
    "iter_batches",
    "run_batches",
    "thumbnail_bytes",
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
    """

    resize: int | tuple[int, int]
    crop: tuple[int, int] | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @classmethod
    def from_transform(cls, transform: Any) -> Preprocess:
        """Read a torchvision ``Compose`` of ``Resize``, ``CenterCrop``, ``ToTensor`` /
        ``PILToTensor`` + ``ConvertImageDtype`` and ``Normalize``; any other step is an error naming
        it (give the :class:`Preprocess` yourself then)."""
        from torchvision import transforms as T

        steps = transform.transforms if isinstance(transform, T.Compose) else [transform]
        resize = crop = None
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
        return cls(resize=resize, crop=crop, mean=mean, std=std)  # type: ignore[arg-type]

    def apply(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 (3, H, W) images, all on one device → one normalised float32 (B, 3, h, w) batch."""
        out = []
        for img in images:
            h, w = img.shape[-2:]
            if isinstance(self.resize, int):
                s = self.resize / min(h, w)
                size = (max(1, round(h * s)), max(1, round(w * s)))
                size = (self.resize, size[1]) if h <= w else (size[0], self.resize)
            else:
                size = self.resize
            x = img.unsqueeze(0).float()
            if (h, w) != tuple(size):
                x = torch.nn.functional.interpolate(
                    x, size=size, mode="bilinear", antialias=True, align_corners=False
                )
            if self.crop is not None:
                ch, cw = self.crop
                top, left = round((size[0] - ch) / 2), round((size[1] - cw) / 2)
                x = x[..., top : top + ch, left : left + cw]
            out.append(x)
        batch = torch.cat(out).clamp_(0, 255).div_(255)
        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1)
        return batch.sub_(mean).div_(std)


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
    return data


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


def _decode_uint8(
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
    images, n_gpu = _decode_uint8(blobs, reasons, device, pool)
    order = sorted(images)
    batch = preprocess.apply([images[k] for k in order]) if order else _empty(preprocess, device)
    skipped = [(indices[k], names[k], reasons[k]) for k in sorted(reasons)]
    return DecodedBatch(batch, [indices[k] for k in order], skipped, n_gpu)


def thumbnail_bytes(image: torch.Tensor, size: int) -> bytes:
    """A uint8 (3, H, W) image (any device) → faultlens's thumbnail bytes: shrunk on the device to
    twice ``size`` on the longer side first (so little crosses back), then
    :func:`~faultlens.data.decode.encode_thumbnail` on the CPU as the runner does."""
    from PIL import Image

    from faultlens.data.decode import encode_thumbnail

    h, w = image.shape[-2:]
    s = 2 * size / max(h, w)
    if s < 1:
        image = torch.nn.functional.interpolate(
            image.unsqueeze(0).float(), size=(max(1, round(h * s)), max(1, round(w * s))),
            mode="bilinear", antialias=True, align_corners=False,
        )[0].round_().clamp_(0, 255).to(torch.uint8)  # fmt: skip
    arr = image.permute(1, 2, 0).contiguous().cpu().numpy()
    return encode_thumbnail(Image.fromarray(arr), size)


def run_batches(
    paths: Sequence[str | os.PathLike[str]],
    batches: Sequence[Sequence[int]],
    models: Sequence[Any],
    preprocesses: Sequence[Preprocess],
    *,
    thumb_size: int | None = None,
    device: str | torch.device | None = None,
    prefetch: int = 3,
    cpu_workers: int | None = None,
) -> Iterator[
    tuple[list[int], list[list[bool]], list[list[str | None]], dict[int, np.ndarray], list[bytes]]
]:
    """Decode each batch of ``paths`` (lists of item indices) once, run every model on it with its
    own :class:`Preprocess`, and yield ``(indices, oks, reasons, outputs, thumbnails)``: per model
    (by position) whether each item ran and why not ("" when it ran), its (B, D) float32 outputs (NaN rows for the
    items it could not run) and, with ``thumb_size``, each decoded item's thumbnail bytes (b"" for
    a skipped one). Files are read ahead on a thread while the models run."""
    if len(models) != len(preprocesses):
        msg = f"one Preprocess per model: got {len(preprocesses)} for {len(models)} models"
        raise ValueError(msg)
    device = _default_device(device)
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
        with ThreadPoolExecutor(max_workers=cpu_workers or min(8, os.cpu_count() or 1)) as pool:
            while (got := q.get()) is not done:
                if isinstance(got, BaseException):
                    raise got
                idx, blobs, reasons = got
                images, _ = _decode_uint8(blobs, reasons, device, pool)
                order = sorted(images)
                oks, whys, outs = [], [], {}
                for m, (model, pre) in enumerate(zip(models, preprocesses, strict=True)):
                    ok = [False] * len(idx)
                    why = [reasons.get(k, "") for k in range(len(idx))]
                    block = np.full((len(idx), 0), np.nan, dtype=np.float32)
                    if order:
                        out = np.asarray(
                            model.run(pre.apply([images[k] for k in order])), dtype=np.float32
                        )
                        out = out.reshape(len(out), -1)
                        block = np.full((len(idx), out.shape[1]), np.nan, dtype=np.float32)
                        finite = np.isfinite(out).all(axis=1)
                        for j, k in enumerate(order):
                            ok[k] = bool(finite[j])
                            if finite[j]:
                                block[k] = out[j]
                            else:
                                why[k] = f"model {m} gave NaN or inf for it"
                    oks.append(ok)
                    whys.append(why)
                    outs[m] = block
                thumbs = []
                if thumb_size:
                    thumbs = [
                        thumbnail_bytes(images[k], thumb_size) if k in images else b""
                        for k in range(len(idx))
                    ]
                yield idx, oks, whys, outs, thumbs
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


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
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()
    done = object()

    def reader() -> None:
        try:
            for start in range(0, len(paths), batch_size):
                if stop.is_set():
                    return
                chunk = paths[start : start + batch_size]
                q.put((start, chunk, *_read_all(chunk)))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
        finally:
            q.put(done)

    workers = cpu_workers or min(8, os.cpu_count() or 1)
    thread = threading.Thread(target=reader, name="faultlens-gpu-reader", daemon=True)
    thread.start()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faultlens-decode") as pool:
            while True:
                got = q.get()
                if got is done:
                    break
                if isinstance(got, BaseException):
                    raise got
                start, chunk, blobs, reasons = got
                idx = list(range(start, start + len(chunk)))
                batch = _decode_blobs(
                    blobs, reasons, preprocess, device, idx, [str(p) for p in chunk], pool
                )
                if on_batch is not None:
                    on_batch(batch)
                yield batch
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
