"""Thumbnails are rendered in the models' decoding pass, kept in one compact store, and served from
it to the Explorer, the report and a saved analysis whose images are gone."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import faultlens
from faultlens.analysis.projection import ProjectionWarning
from faultlens.data.decode import ImageDecodeError, encode_thumbnail, image_mime
from faultlens.data.sources import ArraySource
from faultlens.models.classifier import Classifier
from faultlens.models.embedders import LayerEmbedder
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore, ShardedBlobs
from faultlens.ui.explorer import Explorer
from tests.helpers import TinyNet, tiny_transform

RED, BLUE, GREY = (230, 20, 20), (20, 20, 230), (128, 128, 128)


def _planted(i: int, w: int, h: int) -> np.ndarray:
    """A grey image with one coloured quarter: red top-left for even ``i``, blue bottom-right for
    odd ``i``."""
    img = np.full((h, w, 3), GREY, dtype=np.uint8)
    if i % 2 == 0:
        img[: h // 2, : w // 2] = RED
    else:
        img[h // 2 :, w // 2 :] = BLUE
    return img


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


def _check_planted(i: int, thumb: np.ndarray) -> None:
    h, w, _ = thumb.shape
    tl = thumb[: h // 2 - 2, : w // 2 - 2].mean(axis=(0, 1))
    br = thumb[h // 2 + 2 :, w // 2 + 2 :].mean(axis=(0, 1))
    want_tl, want_br = (RED, GREY) if i % 2 == 0 else (GREY, BLUE)
    assert np.abs(tl - want_tl).max() < 12, (i, tl)
    assert np.abs(br - want_br).max() < 12, (i, br)


def _models() -> dict[str, object]:
    net = TinyNet().eval()
    return {
        "classifier": Classifier(net, tiny_transform, class_names=["c0", "c1", "c2"]),
        "embedder": LayerEmbedder(net, "conv", tiny_transform),
    }


class CountingSource(ArraySource):
    """An in-memory source that counts how often each image is decoded."""

    def __init__(self, images: list[np.ndarray], labels: np.ndarray) -> None:
        super().__init__(images, labels, class_names=["a", "b", "c"])
        self.loads = 0

    def load(self, i: int, min_size: int | None = None) -> Image.Image:
        self.loads += 1
        return super().load(i, min_size)


# --------------------------------------------------------------------------- the store


def test_blob_shards_round_trip_and_copy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blobs = [rng.bytes(int(k)) for k in rng.integers(1, 300, 8)]
    blobs[4] = b""  # an item with no thumbnail
    store = ShardedBlobs(tmp_path / "a", n_items=8, shard_size=3)
    store.write(0, blobs[0:3])
    store.write(2, blobs[6:8])
    assert store.missing() == [1]
    assert [store.get(i) for i in (0, 1, 2, 6, 7)] == [blobs[i] for i in (0, 1, 2, 6, 7)]
    with pytest.raises(KeyError, match="shard 1"):
        store.get(4)
    with pytest.raises(IndexError, match="out of range"):
        store.get(8)
    with pytest.raises(ValueError, match="needs 3 items, got 2"):
        store.write(1, blobs[3:5])
    store.write(1, blobs[3:6])
    assert [store.get(i) for i in range(8)] == blobs
    # the bytes themselves, plus per shard a 128-byte .npy header and n + 1 int64 offsets
    assert store.nbytes() == sum(map(len, blobs)) + 3 * 128 + 8 * (4 + 4 + 3)
    # a rewritten shard is read afresh (its offsets are not kept from before)
    store.write(0, [b"x", b"yy", b""])
    assert [store.get(i) for i in range(3)] == [b"x", b"yy", b""]
    copy = store.copy_to(tmp_path / "b")
    again = ShardedBlobs.open(tmp_path / "b")
    assert (again.n_items, again.shard_size) == (8, 3)
    assert [again.get(i) for i in range(8)] == [copy.get(i) for i in range(8)]
    assert [again.get(i) for i in range(8)] == [b"x", b"yy", b"", *blobs[3:]]


def test_small_thumbnails_are_lossless_png_and_photos_jpeg() -> None:
    small = Image.fromarray(_planted(0, 40, 30))
    data = encode_thumbnail(small, 96)
    assert image_mime(data) == "image/png"
    np.testing.assert_array_equal(_decode(data), np.asarray(small))  # never enlarged, exact
    big = Image.fromarray(_planted(1, 640, 480))
    data = encode_thumbnail(big, 96)
    assert image_mime(data) == "image/jpeg"
    assert _decode(data).shape == (72, 96, 3)
    _check_planted(1, _decode(data))
    assert len(data) < 4000


# --------------------------------------------------------------------------- the decoding pass


def test_thumbnails_come_from_the_models_single_decoding_pass(tmp_path: Path) -> None:
    sizes = [(200, 150), (40, 40)] * 5
    images = [_planted(i, w, h) for i, (w, h) in enumerate(sizes)]
    labels = np.arange(10) % 3
    src = CountingSource(images, labels)
    store = ArtifactStore(tmp_path)
    res = run_models(
        src, _models(), store=store, thumbnails=96, shard_size=4, num_workers=0, progress=False
    )
    assert src.loads == 10  # one decode per image fed both models and the thumbnails
    thumbs = res.thumbnails
    assert thumbs is not None and thumbs.missing() == []
    for i, (w, _h) in enumerate(sizes):
        data = thumbs.get(i)
        assert image_mime(data) == ("image/jpeg" if w > 64 else "image/png")
        pixels = _decode(data)
        assert pixels.shape[:2] == ((72, 96) if w > 64 else (40, 40))
        _check_planted(i, pixels)
    # everything cached: a second run decodes nothing and finds the same thumbnails
    again = run_models(
        src, _models(), store=store, thumbnails=96, shard_size=4, num_workers=0, progress=False
    )
    assert src.loads == 10
    assert [again.thumbnails.get(i) for i in range(10)] == [thumbs.get(i) for i in range(10)]
    # thumbnails of another size, models cached: a decoding pass for the thumbnails alone
    only = run_models(
        src, _models(), store=store, thumbnails=48, shard_size=4, num_workers=0, progress=False
    )
    assert src.loads == 20 and only.computed_shards == {"classifier": [], "embedder": []}
    assert _decode(only.thumbnails.get(0)).shape[:2] == (36, 48)
    # and with no model at all
    bare = run_models(src, {}, store=store, thumbnails=32, shard_size=4, progress=False)
    assert bare.outputs == {} and max(_decode(bare.thumbnails.get(1)).shape[:2]) == 32
    with pytest.raises(ValueError, match="at least 8 pixels"):
        run_models(src, {}, store=store, thumbnails=4, progress=False)


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """12 JPEG photos 640×480 in three class folders, plus one file that is not an image."""
    root = tmp_path / "photos"
    for i in range(12):
        (root / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_planted(i, 640, 480)).save(root / f"c{i % 3}" / f"{i:02d}.jpg", quality=95)
    (root / "c0" / "zz-broken.jpg").write_text("not an image")
    return root


def test_a_saved_analysis_shows_thumbnails_after_its_images_are_gone(
    photo_folder: Path, tmp_path: Path
) -> None:
    models = _models()
    with pytest.warns(ProjectionWarning, match="too few"):
        a = faultlens.analyze(
            photo_folder,
            classifier=models["classifier"],
            embedder=models["embedder"],
            cache_dir=tmp_path / "cache",
            num_workers=0,
            projection={"n_neighbors": 40},
            progress=False,
        )
    assert len(a) == 12 and [s["id"] for s in a.skipped] == ["c0/zz-broken.jpg"]
    assert a.meta["thumbnail_size"] == 96
    broken = a.skipped[0]["index"]
    assert a.thumbnails is not None and a.thumbnails.get(broken) == b""
    out = a.save(tmp_path / "saved")
    shutil.rmtree(photo_folder)  # the images are gone; the thumbnails are not
    back = faultlens.load(out)
    for row in range(len(back)):
        i = int(back.table["id"].iat[row].split("/")[1][:2])
        data = back.thumbnail(row)
        assert data == a.thumbnail(row) and image_mime(data) == "image/jpeg"
        _check_planted(i, _decode(data))
    with pytest.raises(ImageDecodeError, match="file not found"):
        back.thumbnail(0, 320)  # bigger than the store: only the (gone) image could give it
    # the Explorer's grid and the report read the store
    ex = Explorer(back)
    sent: list[tuple[dict, list]] = []
    ex.send = lambda content, buffers=None: sent.append((content, buffers))  # type: ignore[method-assign]
    ex._on_custom_msg(ex, {"type": "thumbs", "rows": [0, 1, 2]}, [])
    content, buffers = sent[-1]
    assert content["errors"] == ["", "", ""]
    assert buffers == [back.thumbnail(r) for r in (0, 1, 2)]
    report = faultlens.write_report(
        back, tmp_path / "report.html", slices={"some": np.arange(0, 12, 2)}, descriptions=False
    )
    srcs = re.findall(r"src='data:image/jpeg;base64,([^']*)'", report.read_text())
    assert len(srcs) == 6  # the slice's thumbnails, as JPEG data URIs from the store
    assert {base64.b64decode(s) for s in srcs} <= {back.thumbnail(r) for r in range(12)}


def test_analyze_can_skip_thumbnails(tmp_path: Path) -> None:
    imgs = np.stack([_planted(i, 32, 32) for i in range(12)])
    rng = np.random.default_rng(0)
    with pytest.warns(ProjectionWarning, match="too few"):
        a = faultlens.analyze(
            imgs,
            labels=np.arange(12) % 3,
            probs=rng.dirichlet(np.ones(3), 12).astype(np.float32),
            embeddings=rng.normal(size=(12, 8)).astype(np.float32),
            cache_dir=tmp_path,
            thumbnails=None,
            progress=False,
        )
    assert a.thumbnails is None and a.meta["thumbnail_size"] is None
    _check_planted(3, _decode(a.thumbnail(3)))  # rendered on demand instead


def test_saving_over_an_analysis_replaces_its_thumbnails(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def made(offset: int, thumbnails: int | None) -> faultlens.Analysis:
        imgs = np.stack([_planted(i + offset, 32, 32) for i in range(12)])
        with pytest.warns(ProjectionWarning, match="too few"):
            return faultlens.analyze(
                imgs,
                labels=np.arange(12) % 3,
                probs=rng.dirichlet(np.ones(3), 12).astype(np.float32),
                embeddings=rng.normal(size=(12, 8)).astype(np.float32),
                cache_dir=tmp_path / "cache",
                thumbnails=thumbnails,
                progress=False,
            )

    out = tmp_path / "saved"
    made(0, 32).save(out)
    made(1, 32).save(out)  # the same size and shards, other images: none of the first may remain
    back = faultlens.load(out)
    for row in range(12):
        _check_planted(row + 1, _decode(back.thumbnail(row, 32)))
    back.save(tmp_path / "saved" / ".." / "saved")  # onto itself, by another spelling: kept
    assert faultlens.load(out).thumbnail(0, 32) == back.thumbnail(0, 32)
    made(0, None).save(out)  # an analysis without thumbnails leaves none behind
    assert faultlens.load(out).thumbnails is None
