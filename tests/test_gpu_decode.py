"""The GPU decoding path, run here through its CPU fallback (``decode_jpeg`` on the CPU).

Checks that the pixels match PIL's decoding, that a batch mixing JPEG and PNG keeps its order with
the PNG decoded on the CPU path, that a corrupt or missing file is skipped and named while the rest
of its batch goes on, and that the tensor resize + normalise matches the torchvision transform a
model would run on the PIL image. Then the runner's switch: without CUDA ``auto`` takes the CPU
path and says so; with CUDA (mocked) only JPEG files and a model on CUDA take the GPU path; and the
GPU branch of ``run_models``, run with the CPU as its device, gives every model the CPU path's
images in the same rows, with the same skips, thumbnails and image properties.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from faultlens.data.gpu_decode import Preprocess, decode_batch, iter_batches
from faultlens.data.sources import as_source
from faultlens.models import device_decode
from faultlens.models.base import TorchBatchModel
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore


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


# --------------------------------------------------------------------------- the runner's switch


def _folder(root: Path, n: int, *, png: tuple[int, ...] = (), sizes=((60, 80),)) -> Path:
    """A folder source of ``n`` photos in two classes, JPEG (PNG at ``png``), sizes in turn."""
    for k in range(n):
        h, w = sizes[k % len(sizes)]
        fmt = "PNG" if k in png else "JPEG"
        d = root / ("a" if k % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{k:03d}.{fmt.lower()}").write_bytes(_encode(_photo(k, h, w), fmt))
    return root


def _pixels(transform) -> TorchBatchModel:
    """A model whose output is exactly what it was fed (flattened): checks the images."""
    return TorchBatchModel(torch.nn.Flatten(), transform, name="pixels", device="cpu")


def _on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU branch with the CPU as its device: ``decode_jpeg`` and the tensor preprocessing
    run on the CPU, so the branch's batching runs here without CUDA."""
    monkeypatch.setattr(device_decode, "cuda_device", lambda: torch.device("cpu"))


def _both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, src, models, **kw):
    kw = {"batch_size": 3, "shard_size": 4, "num_workers": 0, "progress": False, **kw}
    cpu = run_models(src, models, store=ArtifactStore(tmp_path / "c1"), decode="cpu", **kw)
    _on_the_cpu(monkeypatch)
    gpu = run_models(src, models, store=ArtifactStore(tmp_path / "c2"), decode="gpu", **kw)
    assert cpu.decode["path"] == "cpu" and gpu.decode == {
        "path": "gpu", "device": "cpu", "reason": "asked for the GPU path"
    }  # fmt: skip
    return cpu, gpu


def test_without_cuda_auto_takes_the_cpu_path_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(device_decode.DECODE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    src = as_source(_folder(tmp_path / "imgs", 5))
    model = _pixels(T.Compose([T.Resize((16, 16)), T.ToTensor()]))
    store = ArtifactStore(tmp_path / "cache")
    res = run_models(src, {"m": model}, store=store, num_workers=0, shard_size=4)
    assert res.decode == {"path": "cpu", "device": "cpu", "reason": "no CUDA device"}
    assert "decoding: CPU path" in capsys.readouterr().err
    sides = store.sharded("outputs", res.keys["m"].split("/")[-1], 5, 4).assemble()[1]
    assert [s["decode"] for s in sides] == ["cpu", "cpu"]
    again = run_models(src, {"m": model}, store=store, num_workers=0, shard_size=4)
    assert again.decode is None  # every shard cached: nothing decoded
    with pytest.raises(ValueError, match="decode='gpu' cannot run here: no CUDA device"):
        run_models(src, {"m": model}, store=store, decode="gpu", force=True, progress=False)


def test_auto_takes_the_gpu_path_only_for_jpeg_files_and_a_cuda_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faultlens.models.properties import ImageProperties

    monkeypatch.delenv(device_decode.DECODE_ENV, raising=False)
    monkeypatch.setattr(device_decode, "cuda_device", lambda: torch.device("cuda", 0))
    model = _pixels(T.Compose([T.Resize(16), T.CenterCrop(16), T.ToTensor()]))
    model.device = torch.device("cuda", 0)  # as if it ran there (nothing runs in this test)
    jpegs = as_source(_folder(tmp_path / "jpg", 6))
    pngs = as_source(_folder(tmp_path / "png", 6, png=tuple(range(6))))

    def plan(src, models, decode=None):
        return device_decode.choose_decode(src, models, decode)

    assert plan(jpegs, [model, ImageProperties()]).path == "gpu"
    assert plan(jpegs, [model]).device == "cuda:0"
    assert plan(pngs, [model]).reason == "0% of a sample of the files are JPEG"
    assert "not image files" in plan(as_source(np.zeros((4, 8, 8, 3), np.uint8),
                                               labels=[0, 1, 0, 1]), [model]).reason  # fmt: skip
    props_only = plan(jpegs, [ImageProperties()])
    assert props_only.path == "cpu" and "no model runs on the CUDA device" in props_only.reason
    lam = _pixels(T.Compose([T.Resize(16), T.Lambda(lambda x: x), T.ToTensor()]))
    lam.device = torch.device("cuda", 0)
    assert plan(jpegs, [lam]).path == "cpu"  # a step the GPU path cannot do: the CPU path
    assert plan(jpegs, [model], "cpu").reason == "asked for the CPU path"
    monkeypatch.setenv(device_decode.DECODE_ENV, "cpu")
    assert plan(jpegs, [model]).path == "cpu"
    assert plan(jpegs, [model], "auto").path == "gpu"  # the keyword wins over the variable
    monkeypatch.setenv(device_decode.DECODE_ENV, "nvjpeg")
    with pytest.raises(ValueError, match="FAULTLENS_DECODE='nvjpeg': use one of auto, gpu, cpu"):
        plan(jpegs, [model])
    with pytest.raises(ValueError, match="decode='gpu' cannot run here: 0% of a sample"):
        plan(pngs, [model], "gpu")


def test_the_gpu_branch_feeds_the_models_the_cpu_paths_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same pixels, same order, same skips, same shards, thumbnails and properties: the images
    are already the model's size, so only the JPEG decoders' rounding may differ."""
    from faultlens.models.properties import ImageProperties

    root = _folder(tmp_path / "imgs", 11, png=(4,))
    (root / "a" / "zz-broken.jpg").write_bytes(_encode(_photo(99, 60, 80), "JPEG")[:300])
    (root / "b" / "zz-junk.jpg").write_bytes(b"\xff\xd8\xff" + b"junk" * 20)
    src = as_source(root)
    models = {"pixels": _pixels(T.Compose([T.Resize((60, 80)), T.ToTensor()])),
              "properties": ImageProperties()}  # fmt: skip
    cpu, gpu = _both_paths(tmp_path, monkeypatch, src, models, thumbnails=24)
    assert len(cpu.skipped) == 2 and gpu.skipped == cpu.skipped  # the same items, same reasons
    bad = [s["index"] for s in cpu.skipped]
    ok = np.setdiff1d(np.arange(len(src)), bad)
    for name in models:
        assert np.isnan(gpu.outputs[name][bad]).all() and np.isfinite(gpu.outputs[name][ok]).all()
    diff = np.abs(gpu.outputs["pixels"][ok] - cpu.outputs["pixels"][ok])
    assert diff.max() <= 2 / 255 + 1e-6  # each image in its own row, pixel for pixel
    assert np.allclose(gpu.outputs["properties"][ok], cpu.outputs["properties"][ok], atol=0.02)
    for i in range(len(src)):
        a, b = cpu.thumbnails.get(i), gpu.thumbnails.get(i)
        if i in bad:
            assert a == b == b""
            continue
        ta, tb = (np.asarray(Image.open(io.BytesIO(t)), np.float32) for t in (a, b))
        assert ta.shape == tb.shape and np.abs(ta - tb).mean() < 3


def test_the_gpu_branch_resizes_groups_shapes_and_skips_as_the_cpu_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images of three sizes in batches of 3 across shards of 4: a model with a crop gets every
    image near the CPU path's; a model without one keeps the first batch's shape on both paths
    and skips the same items for it alone."""
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    models = {
        "crop": _pixels(T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor(), norm])),
        "nocrop": _pixels(T.Compose([T.Resize(24), T.ToTensor()])),
    }
    src = as_source(_folder(tmp_path / "imgs", 10, sizes=((60, 80), (90, 90), (80, 60))))
    cpu, gpu = _both_paths(tmp_path, monkeypatch, src, models)
    assert np.abs(gpu.outputs["crop"] - cpu.outputs["crop"]).mean() < 0.02
    corr = np.corrcoef(gpu.outputs["crop"].ravel(), cpu.outputs["crop"].ravel())[0, 1]
    assert corr > 0.999
    skipped = np.isnan(cpu.outputs["nocrop"]).all(axis=1)
    assert 0 < skipped.sum() < len(src)
    assert (np.isnan(gpu.outputs["nocrop"]).all(axis=1) == skipped).all()
    kept = ~skipped
    assert np.abs(gpu.outputs["nocrop"][kept] - cpu.outputs["nocrop"][kept]).mean() < 0.02
    assert gpu.skipped == cpu.skipped  # the same items named, with the same reason
    assert {s["index"] for s in cpu.skipped} == set(np.flatnonzero(skipped))


def test_the_offline_and_open_clip_embedders_get_their_own_preprocessing_on_the_device() -> None:
    """What :func:`preprocess_for` gives each shipped embedder does what its PIL transform does."""
    from faultlens.models.embedders import EfficientNetLiteEmbedder

    models = [EfficientNetLiteEmbedder(64, device="cpu")]
    if importlib.util.find_spec("open_clip") is not None:
        from faultlens.models.embedders import OpenClipEmbedder

        models.append(OpenClipEmbedder("ViT-B-32", pretrained=None, device="cpu"))
    blobs = [_encode(_photo(s, 150, 200), "PNG") for s in range(2)]  # lossless: only the resize
    for model in models:
        pre = device_decode.preprocess_for(model)
        assert pre is not None, model
        got = decode_batch(blobs, pre, device="cpu").images
        ref = torch.stack(
            [model.transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]
        )
        assert got.shape == ref.shape, model
        assert (got - ref).abs().mean() < 0.02, model
