"""The GPU decoding path, run here through its CPU fallback (``decode_jpeg`` on the CPU).

Checks that the pixels match PIL's decoding, that a batch mixing JPEG and PNG keeps its order with
the PNG decoded on the CPU path, that a corrupt or missing file is skipped and named while the rest
of its batch goes on, and that the tensor resize + normalise matches the torchvision transform a
model would run on the PIL image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from faultlens.data.gpu_decode import Preprocess, decode_batch, iter_batches, run_batches


def _photo(seed: int, h: int = 75, w: int = 100) -> np.ndarray:
    """A smooth colour image with some texture (JPEG-friendly, not flat)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [128 + 100 * np.sin(xx / (7 + seed)), 128 + 100 * np.cos(yy / 9), (xx + yy) % 256], -1
    )
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


IDENTITY = Preprocess(resize=(75, 100))  # no resize, 0–1 scale: pixels / 255


def test_jpeg_pixels_match_pil() -> None:
    blobs = [_encode(_photo(s), "JPEG") for s in range(3)]
    got = decode_batch(blobs, IDENTITY, device="cpu")
    assert got.indices == [0, 1, 2] and got.skipped == []
    for k, b in enumerate(blobs):
        pil = np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).astype(np.float32)
        ours = got.images[k].permute(1, 2, 0).numpy() * 255
        assert np.abs(ours - pil).max() <= 2.0, k  # both libjpeg-turbo; IDCT rounding at most


def test_mixed_jpeg_png_batch_keeps_order(tmp_path: Path) -> None:
    arrs = [_photo(s) for s in range(4)]
    paths = []
    for k, a in enumerate(arrs):
        fmt = "PNG" if k % 2 else "JPEG"
        p = tmp_path / f"img{k}.{fmt.lower()}"
        p.write_bytes(_encode(a, fmt))
        paths.append(p)
    got = decode_batch(paths, IDENTITY, device="cpu")
    assert got.indices == [0, 1, 2, 3]
    for k, (a, p) in enumerate(zip(arrs, paths, strict=True)):
        ours = got.images[k].permute(1, 2, 0).numpy() * 255
        if k % 2:  # PNG: lossless, decoded on the CPU path
            assert np.abs(ours - a.astype(np.float32)).max() < 1e-3
        else:  # JPEG: PIL's decoding of the same file
            pil = np.asarray(Image.open(p).convert("RGB")).astype(np.float32)
            assert np.abs(ours - pil).max() <= 2.0
        # in its own place, not a neighbour's: nearest to its own original of all four
        errs = [np.abs(ours - b.astype(np.float32)).mean() for b in arrs]
        assert int(np.argmin(errs)) == k


def test_corrupt_and_missing_files_are_skipped_and_named(tmp_path: Path) -> None:
    good = [tmp_path / "a.jpg", tmp_path / "c.png"]
    good[0].write_bytes(_encode(_photo(0), "JPEG"))
    good[1].write_bytes(_encode(_photo(1), "PNG"))
    bad = tmp_path / "b.jpg"
    bad.write_bytes(_encode(_photo(2), "JPEG")[:40])  # a JPEG header, then nothing
    junk = tmp_path / "d.jpg"
    junk.write_bytes(b"\xff\xd8\xff" + b"not a jpeg at all" * 10)
    missing = tmp_path / "gone.jpg"
    paths = [good[0], bad, good[1], junk, missing]
    got = decode_batch(paths, IDENTITY, device="cpu")
    assert got.indices == [0, 2]
    assert got.images.shape == (2, 3, 75, 100)
    named = {i: (name, why) for i, name, why in got.skipped}
    assert set(named) == {1, 3, 4}
    assert named[1][0] == str(bad) and named[3][0] == str(junk) and named[4][0] == str(missing)
    assert named[4][1] == "file not found"
    assert all(why for _, why in named.values())


def test_resize_and_normalise_match_the_torchvision_transform() -> None:
    tf = T.Compose([T.Resize(64), T.CenterCrop(56), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])  # fmt: skip
    pre = Preprocess.from_transform(tf)
    assert pre == Preprocess(
        resize=64, crop=(56, 56), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    blobs = [
        _encode(_photo(s, 150, 200), "PNG") for s in range(2)
    ]  # lossless: only the resize differs
    got = decode_batch(blobs, pre, device="cpu").images
    ref = torch.stack([tf(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
    assert got.shape == ref.shape == (2, 3, 56, 56)
    # antialiased bilinear on tensors against PIL's: the same filter up to rounding (0-1 scale / std)
    assert (got - ref).abs().mean() < 0.02
    assert torch.corrcoef(torch.stack([got.flatten(), ref.flatten()]))[0, 1] > 0.999


def test_from_transform_names_a_step_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="ColorJitter"):
        Preprocess.from_transform(T.Compose([T.Resize(32), T.ColorJitter(0.1), T.ToTensor()]))
    with pytest.raises(ValueError, match="no Resize"):
        Preprocess.from_transform(T.Compose([T.ToTensor()]))


def test_iter_batches_reads_ahead_and_covers_every_file_in_order(tmp_path: Path) -> None:
    paths = []
    for k in range(11):
        p = tmp_path / f"{k:02d}.{'png' if k % 3 == 0 else 'jpg'}"
        p.write_bytes(_encode(_photo(k), "PNG" if k % 3 == 0 else "JPEG"))
        paths.append(p)
    paths[5].write_bytes(b"")  # empty: skipped and named
    batches = list(
        iter_batches(paths, Preprocess(resize=32, crop=(32, 32)), batch_size=4, device="cpu")
    )
    assert [len(b.indices) + len(b.skipped) for b in batches] == [4, 4, 3]
    assert [i for b in batches for i in b.indices] == [k for k in range(11) if k != 5]
    assert [s for b in batches for s in b.skipped] == [(5, str(paths[5]), "empty file (0 bytes)")]
    # each image is its own: the first pixel rows differ between files
    flat = torch.cat([b.images for b in batches]).flatten(1)
    assert torch.cdist(flat, flat).fill_diagonal_(1e9).min() > 1.0


def test_iter_batches_stops_cleanly_when_the_caller_stops(tmp_path: Path) -> None:
    paths = []
    for k in range(20):
        p = tmp_path / f"{k}.jpg"
        p.write_bytes(_encode(_photo(k), "JPEG"))
        paths.append(p)
    it = iter_batches(paths, Preprocess(resize=(16, 16)), batch_size=2, prefetch=1, device="cpu")
    first = next(it)
    assert first.indices == [0, 1]
    it.close()  # the reader thread, blocked on a full queue, must not hang the caller


class _Mean:
    """A batch model whose output is each image's mean per channel: checks what it was fed."""

    def run(self, batch: torch.Tensor) -> np.ndarray:
        return batch.mean(dim=(2, 3)).cpu().numpy()


def test_run_batches_decodes_once_for_every_model_and_makes_thumbnails(tmp_path: Path) -> None:
    from faultlens.data.decode import decode_image, encode_thumbnail

    paths = []
    for k in range(5):
        p = tmp_path / f"{k}.{'png' if k == 2 else 'jpg'}"
        p.write_bytes(_encode(_photo(k, 120, 160), "PNG" if k == 2 else "JPEG"))
        paths.append(p)
    paths[3].write_bytes(b"\xff\xd8\xff broken")
    pres = [
        Preprocess(resize=(32, 32)),
        Preprocess(resize=24, crop=(24, 24), mean=(0.5,) * 3, std=(0.25,) * 3),
    ]
    ran = list(
        run_batches(
            paths, [[0, 1, 2], [3, 4]], [_Mean(), _Mean()], pres, thumb_size=40, device="cpu"
        )
    )
    assert [r[0] for r in ran] == [[0, 1, 2], [3, 4]]
    (_, oks_b, whys_b, outs_b, thumbs_b) = ran[1]
    assert oks_b == [[False, True], [False, True]] and whys_b[0][0] and whys_b[1][0]
    assert np.isnan(outs_b[0][0]).all() and thumbs_b[0] == b""
    for idx, _oks, _why, outs, thumbs in ran:
        for j, i in enumerate(idx):
            if i == 3:
                continue
            pil = decode_image(paths[i])
            want = np.asarray(pil, dtype=np.float32).mean(axis=(0, 1)) / 255
            assert np.allclose(outs[0][j], want, atol=0.01)  # model 0: plain 0–1 pixels
            tf = T.Compose(
                [T.Resize(24), T.CenterCrop(24), T.ToTensor(), T.Normalize([0.5] * 3, [0.25] * 3)]
            )
            assert np.allclose(
                outs[1][j], tf(pil).mean(dim=(1, 2)).numpy(), atol=0.06
            )  # its own geometry
            got = Image.open(io.BytesIO(thumbs[j]))
            assert got.size == Image.open(io.BytesIO(encode_thumbnail(pil, 40))).size == (40, 30)
