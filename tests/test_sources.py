"""Image sources and robust decoding: every kind of broken item is skipped and named; the run goes on."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import faultlens
from faultlens.analysis.projection import ProjectionWarning
from faultlens.data.decode import ImageDecodeError, decode_image
from faultlens.data.sources import ArraySource, FolderSource, TableSource, as_source
from tests.helpers import analyze_tiny, tiny_transform


def _png_with_declared_size(w: int, h: int) -> bytes:
    """A PNG whose header declares w×h but carries one row of data (a decompression bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def make_messy_folder(root: Path) -> dict[str, str]:
    """A class folder tree with good images of every odd mode and broken files of every kind.

    Returns {relative id: expected reason fragment} for the broken ones.
    """
    rng = np.random.default_rng(0)
    good = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    a, b = root / "cat", root / "dog"
    _save(good, a / "rgb.png")
    _save(good.convert("L"), a / "gray.png")
    _save(good.convert("RGBA"), a / "rgba.png")
    _save(good.convert("P"), b / "palette.gif")
    _save(good.convert("CMYK"), b / "cmyk.jpg")
    sixteen = Image.fromarray((rng.integers(0, 65535, (20, 30))).astype(np.uint16))
    _save(sixteen, b / "sixteen.png")
    exif = good.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    _save(good, b / "rotated.jpg", exif=exif)
    frames = [good, good.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(b / "animated.gif", save_all=True, append_images=frames[1:])
    broken = {}
    (a / "empty.png").write_bytes(b"")
    broken["cat/empty.png"] = "empty file"
    (a / "notes.txt").write_text("not an image")
    broken["cat/notes.txt"] = "not an image"
    buf = io.BytesIO()
    good.save(buf, format="PNG")
    (a / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    broken["cat/truncated.png"] = "truncated or corrupt"
    data = bytearray(buf.getvalue())
    data[60:200] = b"\xff" * 140
    (b / "corrupt.png").write_bytes(bytes(data))
    broken["dog/corrupt.png"] = "corrupt"
    (b / "bomb.png").write_bytes(_png_with_declared_size(100_000, 100_000))
    broken["dog/bomb.png"] = "refused"
    return broken


def test_odd_modes_decode_to_rgb(tmp_path: Path) -> None:
    make_messy_folder(tmp_path)
    for name in [
        "cat/rgb.png",
        "cat/gray.png",
        "cat/rgba.png",
        "dog/palette.gif",
        "dog/cmyk.jpg",
        "dog/sixteen.png",
        "dog/animated.gif",
    ]:
        img = decode_image(tmp_path / name)
        assert img.mode == "RGB"
        assert img.size == (30, 20), name
    # EXIF orientation 6 is applied: the 30×20 image stands up as 20×30.
    assert decode_image(tmp_path / "dog/rotated.jpg").size == (20, 30)
    # 16-bit values are scaled, not clipped: a mid-grey 16-bit pixel stays mid-grey.
    mid = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert abs(int(np.asarray(decode_image(mid))[0, 0, 0]) - 128) <= 1
    # RGBA is composited on white: a fully transparent pixel becomes white.
    clear = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    assert np.asarray(decode_image(clear))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (b"", "empty"),
        (b"hello", "not an image"),
        ("/no/such/file.png", "not found"),
        (np.zeros((5, 5, 7)), "not an image"),
        (np.full((4, 4), np.nan), "NaN"),
    ],
)
def test_bad_items_raise_named_errors(item, reason: str) -> None:
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(item)


def test_symlink_loop_and_folder(tmp_path: Path) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ImageDecodeError, match="cannot read"):
        decode_image(loop)
    with pytest.raises(ImageDecodeError, match="folder"):
        decode_image(tmp_path)


def test_file_names_that_are_not_utf8_are_named_with_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "a" / "ok.png")
    with open(os.path.join(os.fsencode(root / "a"), b"caf\xe9.png"), "wb") as fh:  # latin-1 é
        fh.write((root / "a" / "ok.png").read_bytes())
    with pytest.raises(ValueError, match=r"1 file name\(s\) .* \['a/caf\\\\xe9\.png'\].*convmv"):
        FolderSource(root)


def test_messy_folder_run_completes_and_reports_each(tmp_path: Path, tiny_net) -> None:
    root = tmp_path / "images"
    broken = make_messy_folder(root)
    src = FolderSource(root)
    assert src.class_names == ["cat", "dog"]
    net = tiny_net
    net.head = __import__("torch").nn.Linear(8, 2)
    with pytest.warns(ProjectionWarning, match="too few for UMAP"):
        analysis = analyze_tiny(src, net, num_workers=0)
    reported = {s["id"]: s["reason"] for s in analysis.skipped}
    assert set(reported) == set(broken)
    for item, fragment in broken.items():
        assert fragment in reported[item], (item, reported[item])
    assert len(analysis) == len(src) - len(broken)
    assert set(analysis.table["id"]) == set(src.ids) - set(broken)
    assert np.isfinite(analysis.embeddings).all()
    # the report is saved next to the results and survives a round trip
    folder = analysis.save(tmp_path / "out")
    again = faultlens.load(folder)
    assert {s["id"] for s in again.skipped} == set(broken)
    assert "skipped" in analysis.summary()


def test_table_source_missing_files_and_extra_columns(tmp_path: Path) -> None:
    img = Image.new("RGB", (8, 8), (255, 0, 0))
    img.save(tmp_path / "a.png")
    df = pd.DataFrame({"path": ["a.png", "gone.png"], "label": ["red", "blue"], "site": ["x", "y"]})
    df.to_csv(tmp_path / "t.csv", index=False)
    src = as_source(tmp_path / "t.csv")
    assert isinstance(src, TableSource)
    assert src.class_names == ["blue", "red"]
    assert list(src.labels) == [1, 0]
    assert list(src.columns["site"]) == ["x", "y"]
    assert src.load(0).size == (8, 8)
    with pytest.raises(ImageDecodeError, match="not found"):
        src.load(1)


def test_bad_labels_and_shapes_name_the_item() -> None:
    imgs = np.zeros((3, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="label 5 at item 2"):
        ArraySource(imgs, [0, 1, 5], class_names=["a", "b"])
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        ArraySource(imgs, [0, 1])
    with pytest.raises(ValueError, match="'zebra' at item 1"):
        TableSource(pd.DataFrame({"path": ["a", "b"], "label": ["a", "zebra"]}), class_names=["a"])
    with pytest.raises(ValueError, match="duplicate ids"):
        ArraySource(imgs, [0, 1, 1], ids=["x", "y", "x"])
    with pytest.raises(TypeError, match="labels="):
        as_source(imgs)


def test_torch_dataset_source(tiny_net) -> None:
    class DS:
        classes = ["a", "b", "c"]

        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int):
            if i == 2:
                raise OSError("disk hiccup")
            return np.full((5, 5, 3), i * 10, dtype=np.uint8), i % 3

    src = as_source(DS())
    assert src.class_names == ["a", "b", "c"]
    assert list(src.labels) == [0, 1, 0, 0]  # item 2 raised: skipped later, label a stand-in
    with pytest.raises(ImageDecodeError, match="disk hiccup"):
        src.load(2)
    assert src.fingerprint() == as_source(DS()).fingerprint()


def _gradient_jpeg(path: Path, w: int, h: int, orientation: int | None = None) -> np.ndarray:
    """A smooth seeded JPEG (w × h) with a bright square planted at its top-left corner."""
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1).astype(np.uint8)
    arr[: h // 8, : w // 8] = 255
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=92, exif=exif.tobytes())
    return arr


def test_big_jpegs_decode_at_reduced_scale_when_the_model_needs_less(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    arr = _gradient_jpeg(big, 1600, 1200)
    full = decode_image(big)
    small = decode_image(big, min_size=224)
    assert full.size == (1600, 1200)
    assert small.size == (400, 300)  # 1/4 scale: the largest that keeps both sides ≥ 224
    ref = np.asarray(full.resize((224, 224), Image.Resampling.BILINEAR), float)
    got = np.asarray(small.resize((224, 224), Image.Resampling.BILINEAR), float)
    assert 10 * np.log10(255**2 / ((ref - got) ** 2).mean()) > 35
    assert np.asarray(small)[:10, :10].min() > 240 and arr[0, 0, 0] == 255  # the square stays put
    # EXIF rotation still applies (orientation 6: rotate 90° clockwise; the square goes top-right)
    rot = tmp_path / "rot.jpg"
    _gradient_jpeg(rot, 1600, 1200, orientation=6)
    r = decode_image(rot, min_size=224)
    assert r.size == (300, 400) and np.asarray(r)[:10, -10:].min() > 240
    # a JPEG under twice the size, and other formats, decode whole
    _gradient_jpeg(tmp_path / "mid.jpg", 400, 300)
    assert decode_image(tmp_path / "mid.jpg", min_size=224).size == (400, 300)
    Image.fromarray(arr).save(tmp_path / "big.png")
    assert decode_image(tmp_path / "big.png", min_size=224).size == (1600, 1200)


def test_the_runner_asks_for_reduced_jpegs_only_when_every_model_says_its_size(tmp_path) -> None:
    from torchvision import transforms as T

    from faultlens.models.base import TorchBatchModel, transform_min_size
    from faultlens.models.runner import run_models
    from faultlens.store import ArtifactStore

    assert transform_min_size(T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])) == 256
    assert transform_min_size(T.Resize((224, 160))) == 224
    assert transform_min_size(T.Compose([T.CenterCrop(10), T.Resize(5)])) is None
    assert transform_min_size(T.Resize(100, max_size=200)) is None
    assert transform_min_size(tiny_transform) is None
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        _gradient_jpeg(tmp_path / "imgs" / c / "x.jpg", 1600, 1200)
    src = FolderSource(tmp_path / "imgs")

    class Sizes(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0, 0, :2]  # the two sizes written by the transform

    def sized(size: int | None):
        def tf(img: Image.Image) -> torch.Tensor:
            return torch.tensor([[[img.size[0], img.size[1]]]], dtype=torch.float32)

        return TorchBatchModel(Sizes(), tf, device="cpu", input_size=size, model_id=f"s{size}")

    def seen(*models) -> set[tuple[int, int]]:
        got = run_models(src, {str(i): m for i, m in enumerate(models)},
                         store=ArtifactStore(tmp_path / f"c{len(list(tmp_path.iterdir()))}"),
                         num_workers=0, progress=False)  # fmt: skip
        return {tuple(int(v) for v in row) for row in got.outputs["0"]}

    assert seen(sized(224)) == {(400, 300)}
    assert seen(sized(224), sized(500)) == {(800, 600)}  # the largest need wins
    assert seen(sized(224), sized(None)) == {(1600, 1200)}  # one model without a size: whole
