"""A corpus of odd and broken image files, made here under hypothesis and run as whole batches.

Every file either decodes to the pixels planted in it (upright, whatever its mode, container or EXIF
orientation) or is skipped with a reason, named by its id, while the rest of the batch goes on. The
batch runs through the real pipeline (``FolderSource`` / ``TableSource`` → ``run_models``) with a
probe model whose "output" is the decoded image itself, so the test sees exactly what a model saw.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

import faultlens
from faultlens.analysis.projection import ProjectionWarning
from faultlens.analysis.result import Analysis
from faultlens.data.decode import MAX_PIXELS
from faultlens.data.sources import ArraySource, FolderSource, TableSource
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore
from faultlens.ui.features import FeatureBrowser
from tests.helpers import TinyNet, analyze_tiny, blob_images, tiny_transform

BG, MARK = (30, 60, 90), (230, 40, 40)
CANVAS = 40  # the probe pads every decoded image into a CANVAS × CANVAS frame


class Probe:
    """A batch model whose output for an image is its size and its pixels (padded with -1)."""

    id = "pixel-probe"

    def transform(self, image: Image.Image) -> torch.Tensor:
        a = np.asarray(image, dtype=np.float32)
        out = np.full(2 + CANVAS * CANVAS * 3, -1.0, dtype=np.float32)
        out[:2] = image.size
        canvas = out[2:].reshape(CANVAS, CANVAS, 3)
        h, w = min(a.shape[0], CANVAS), min(a.shape[1], CANVAS)
        canvas[:h, :w] = a[:h, :w]
        return torch.from_numpy(out)

    def run(self, batch: torch.Tensor) -> np.ndarray:
        return batch.numpy()


def seen(row: np.ndarray) -> np.ndarray:
    """The image the model saw, from a probe output row."""
    w, h = int(row[0]), int(row[1])
    return row[2:].reshape(CANVAS, CANVAS, 3)[:h, :w]


def marked(h: int, w: int, r: int, c: int) -> np.ndarray:
    """The planted upright image: background, one 4×4 marker with its top-left at (r, c)."""
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = BG
    img[r : r + 4, c : c + 4] = MARK
    return img


# EXIF orientation → how the stored pixels relate to the upright image (from the EXIF spec's
# "row 0 / column 0" table, written with numpy, independent of any image library)
STORED = {
    1: lambda o: o,
    2: lambda o: o[:, ::-1],
    3: lambda o: o[::-1, ::-1],
    4: lambda o: o[::-1, :],
    5: lambda o: o.swapaxes(0, 1),
    6: lambda o: np.rot90(o, 1),
    7: lambda o: o[::-1, ::-1].swapaxes(0, 1),
    8: lambda o: np.rot90(o, -1),
}


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(w: int, h: int) -> bytes:
    """A few dozen bytes that declare a w×h image."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _png_chunk(b"IEND", b""))  # fmt: skip


def bomb_jpeg(w: int, h: int) -> bytes:
    """A real small JPEG whose frame header is rewritten to declare w×h."""
    data = bytearray(_encode(Image.new("RGB", (8, 8), BG), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", min(h, 65535), min(w, 65535))  # JPEG's limit
    return bytes(data)


@dataclass
class Item:
    """One file of the corpus: what to write, and what must come out."""

    name: str
    write: Callable[[Path], None]
    expect: np.ndarray | None = None  # the upright pixels, for a good item
    tol: int = 0  # per-channel tolerance
    lossy: bool = False  # JPEG: compare where the marker is, not every pixel
    reason: str = ""  # for a bad item: what the reason it is skipped with must say (a regex)
    maybe_good: bool = False  # a damaged file that may still decode: then to exactly `expect`


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def good_items(h: int, w: int, r: int, c: int, orientation: int) -> list[Item]:
    o = marked(h, w, r, c)
    pil = Image.fromarray(o)
    inside = np.zeros((h, w), dtype=bool)
    inside[r : r + 4, c : c + 4] = True
    white = np.where(inside[..., None], o, 255).astype(np.uint8)
    items = [Item("rgb.png", _bytes(_encode(pil, "PNG")), o)]
    # 16-bit grayscale: values scaled by 1/257, not clipped
    g16 = np.where(inside, 60000, 5000).astype(np.uint16)
    g8 = np.repeat(np.where(inside, 233, 19).astype(np.uint8)[..., None], 3, axis=2)
    items.append(Item("gray16.png", _bytes(_encode(Image.fromarray(g16), "PNG")), g8))
    items.append(
        Item("cmyk.jpg", _bytes(_encode(pil.convert("CMYK"), "JPEG", quality=95)), o, lossy=True)
    )
    # palette with a transparent background index: composited on white
    pal = Image.fromarray(inside.astype(np.uint8), mode="L").convert("P")
    pal.putpalette([*BG, *MARK] + [0, 0, 0] * 254)
    items.append(Item("palette.png", _bytes(_encode(pal, "PNG", transparency=0)), white))
    # LA: a grey marker, an invisible background and one half-transparent black column
    la = np.zeros((h, w, 2), dtype=np.uint8)
    la[..., 0] = np.where(inside, 200, 0)
    la[..., 1] = np.where(inside, 255, 0)
    col = (c + 5) % w
    la[:, col, 1] = np.where(inside[:, col], 255, 128)
    want = np.repeat(np.where(inside, 200, 255).astype(np.uint8)[..., None], 3, axis=2)
    want[~inside[:, col], col] = 127
    items.append(Item("la.png", _bytes(_encode(Image.fromarray(la, mode="LA"), "PNG")), want, 1))
    rgba = np.dstack([o, np.where(inside, 255, 0).astype(np.uint8)])
    items.append(Item("rgba.png", _bytes(_encode(Image.fromarray(rgba), "PNG")), white))
    # animated GIF: the first frame is used (the second moves the marker)
    other = Image.fromarray(marked(h, w, (r + 3) % (h - 4), (c + 7) % (w - 4)))
    gif = _encode(pil, "GIF", save_all=True, append_images=[other], duration=100, loop=0)
    items.append(Item("animated.gif", _bytes(gif), o))
    # EXIF orientation: stored turned, decoded upright (lossless PNG and camera-style JPEG)
    stored = Image.fromarray(np.ascontiguousarray(STORED[orientation](o)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    items.append(Item(f"exif{orientation}.png", _bytes(_encode(stored, "PNG", exif=exif)), o))
    jpg = _encode(stored, "JPEG", quality=95, exif=exif)
    items.append(Item(f"exif{orientation}.jpg", _bytes(jpg), o, lossy=True))
    return items


def bad_items(h: int, w: int, r: int, c: int, cut: float, flip: int, bomb: tuple[int, int]):
    o = marked(h, w, r, c)
    png = _encode(Image.fromarray(o), "PNG")
    corrupt = bytearray(png)
    pos = 33 + flip % (len(png) - 33)  # after the header chunk, anywhere in the data
    corrupt[pos] ^= 0x5A

    def loop(p: Path) -> None:
        p.symlink_to(p.name)

    def dangling(p: Path) -> None:
        p.symlink_to("gone-away.png")

    bw, bh = bomb
    return [
        Item("empty.png", _bytes(b""), reason="empty file"),
        Item("notes.jpg", _bytes(b"these are my notes, not a photo\n"), reason="not an image"),
        Item("truncated.png", _bytes(png[: max(2, int(len(png) * cut))]), o,
             reason="truncated or corrupt", maybe_good=True),
        Item("corrupt.png", _bytes(bytes(corrupt)), o, reason="corrupt", maybe_good=True),
        Item("bomb.png", _bytes(bomb_png(bw, bh)), reason="refused"),
        Item("bomb.jpg", _bytes(bomb_jpeg(bw, bh)), reason="refused"),
        Item("loop.png", loop, reason="cannot read file"),
        Item("dangling.png", dangling, reason="file not found"),
    ]  # fmt: skip


names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="/\\"),
    min_size=1,
    max_size=10,
).filter(lambda s: s.strip() == s and not s.startswith(".") and len(s.encode()) < 60)


@contextlib.contextmanager
def no_decode_of_bombs() -> Iterator[list[tuple[int, int]]]:
    """Record every image Pillow is asked to decode whose size exceeds MAX_PIXELS (must be none)."""
    big: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        if self.size[0] * self.size[1] > MAX_PIXELS:
            big.append(self.size)
        return real(self)

    ImageFile.ImageFile.load = load
    try:
        yield big
    finally:
        ImageFile.ImageFile.load = real


def write_corpus(root: Path, items: dict[str, list[Item]], stems: list[str]) -> dict[str, Item]:
    """Write items under root/<class>/<stem> <name>; return {id: item}."""
    out = {}
    k = 0
    for cls, group in items.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for it in group:
            rel = f"{cls}/{k:02d} {stems[k % len(stems)]} {it.name}"
            it.write(root / rel)
            out[rel] = it
            k += 1
    return out


def marker_at(img: np.ndarray) -> np.ndarray:
    """Row and column of the centre of the red marker."""
    a = np.asarray(img, dtype=np.float32)
    mask = (a[..., 0] > 150) & (a[..., 1] < 120) & (a[..., 2] < 120)
    assert mask.any(), "no marker"
    return np.argwhere(mask).mean(axis=0)


def check_batch(outputs: np.ndarray, skipped: list[dict], ids: list[str], corpus: dict) -> int:
    """Each item: the planted pixels, or skipped with its reason. Returns how many were skipped."""
    reasons = {s["id"]: s["reason"] for s in skipped}
    assert set(reasons) <= set(corpus), set(reasons) - set(corpus)
    for i, item_id in enumerate(ids):
        it = corpus[item_id]
        if item_id in reasons:
            assert it.reason, f"{item_id} is good but was skipped: {reasons[item_id]}"
            assert re.search(it.reason, reasons[item_id]), (item_id, reasons[item_id])
            assert np.isnan(outputs[i]).all()
            continue
        assert it.expect is not None and (not it.reason or it.maybe_good), (
            f"{item_id} should have been skipped ({it.reason}) but decoded"
        )
        got = seen(outputs[i])
        assert got.shape == it.expect.shape, (item_id, got.shape, it.expect.shape)
        if it.lossy:  # JPEG: the marker is where it was planted, the background keeps its colour
            assert np.abs(marker_at(got) - marker_at(it.expect)).max() <= 0.75, item_id
            far = np.abs(got - np.asarray(BG, dtype=np.float32)).max(axis=2) < 40
            assert far.mean() > 0.5, f"{item_id}: the background lost its colour"
        else:
            diff = np.abs(got - it.expect.astype(np.float32)).max()
            assert diff <= it.tol, f"{item_id}: pixels differ by up to {diff}"
    return len(reasons)


TOTALS = {"items": 0, "skipped": 0, "batches": 0}


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink of whole batches takes minutes
)
@given(
    size=st.tuples(st.integers(8, 24), st.integers(8, 24)).filter(lambda s: s[0] != s[1]),
    where=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    orientation=st.integers(1, 8),
    cut=st.floats(0.05, 0.999),
    flip=st.integers(0, 10_000),
    bomb=st.sampled_from([(9_000, 9_000), (10_000, 10_000), (100_000, 100_000), (65_535, 1_000)]),
    stems=st.lists(names, min_size=1, max_size=4),
)
@example(  # found by this test: a flipped bit in a PNG's image data inflated to wrong pixels
    size=(8, 21), where=(0.043, 0.375), orientation=1, cut=0.2, flip=1451, bomb=(9000, 9000),
    stems=["Uĩú\U000e1e94¡öl"],
)  # fmt: skip
def test_broken_file_corpus_in_a_folder_batch(size, where, orientation, cut, flip, bomb, stems):
    h, w = size
    r, c = int(where[0] * (h - 4)), int(where[1] * (w - 4))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        corpus = write_corpus(root, {
            "cat": good_items(h, w, r, c, orientation),
            "dog 🐕 <b>": bad_items(h, w, r, c, cut, flip, bomb) + good_items(w, h, 1, 1, 1)[:2],
        }, stems)  # fmt: skip
        # a folder named like an image holds one more image; a folder loop is never followed
        nested = root / "cat" / "album.png"
        nested.mkdir()
        (nested / "inner.png").write_bytes(_encode(Image.fromarray(marked(h, w, r, c)), "PNG"))
        corpus["cat/album.png/inner.png"] = Item("inner.png", _bytes(b""), marked(h, w, r, c))
        (root / "cat" / "again").symlink_to("..", target_is_directory=True)
        src = FolderSource(root)
        assert sorted(src.ids) == sorted(corpus)
        with no_decode_of_bombs() as decoded_bombs:
            res = run_models(src, {"p": Probe()}, store=ArtifactStore(Path(tmp) / "cache"),
                             batch_size=5, shard_size=7, num_workers=0, progress=False)  # fmt: skip
        assert decoded_bombs == []  # refused from the header, never decoded
        n_skipped = check_batch(res.outputs["p"], res.skipped, src.ids, corpus)
        must_skip = {k for k, it in corpus.items() if it.reason and not it.maybe_good}
        assert must_skip <= {s["id"] for s in res.skipped}
    TOTALS["items"] += len(corpus)
    TOTALS["skipped"] += n_skipped
    TOTALS["batches"] += 1


def test_corpus_totals_reported() -> None:
    """Runs after the property test in file order: prints the numbers for the closing note."""
    if TOTALS["batches"]:
        print(f"\ncorpus: {TOTALS['items']} files in {TOTALS['batches']} batches, "
              f"{TOTALS['skipped']} skipped with a reason, 0 crashes")  # fmt: skip


# --------------------------------------------------------------------------- whole runs


def test_table_batch_with_workers_names_exactly_the_bad_rows(tmp_path: Path) -> None:
    """A table of paths (relative, absolute, missing, a folder, spaces and unicode) through a
    worker process: the run goes on and ``skipped`` names exactly the bad rows."""
    h, w, r, c = 10, 14, 3, 6
    root = tmp_path / "pics and ünïcode"
    corpus = write_corpus(root, {"a": good_items(h, w, r, c, 6),
                                 "b": bad_items(h, w, r, c, 0.5, 7, (100_000, 100_000))},
                          ["photo", "фото 写真"])  # fmt: skip
    (root / "b" / "folder.jpg").mkdir()
    corpus["b/folder.jpg"] = Item("folder.jpg", _bytes(b""), reason="is a folder")
    corpus["b/never written.png"] = Item("never written.png", _bytes(b""), reason="not found")
    ids = sorted(corpus)
    rng = np.random.default_rng(0)
    table = pd.DataFrame({
        "path": [str(root / i) if rng.random() < 0.5 else i for i in ids],
        "label": [i.split("/")[0] for i in ids], "image_id": ids, "site": "x",
    })  # fmt: skip
    src = TableSource(table, id_col="image_id", root=root)
    res = run_models(src, {"p": Probe()}, store=ArtifactStore(tmp_path / "cache"), batch_size=4,
                     shard_size=5, num_workers=1, progress=False)  # fmt: skip
    check_batch(res.outputs["p"], res.skipped, src.ids, corpus)
    bad = {k for k, it in corpus.items() if it.reason and not it.maybe_good}
    assert bad <= {s["id"] for s in res.skipped} <= {k for k, it in corpus.items() if it.reason}
    assert all(s["path"] == src.paths[s["index"]] for s in res.skipped)


def test_analyze_on_the_corpus_keeps_the_good_and_reports_the_bad(tmp_path: Path, tiny_net):
    root = tmp_path / "images"
    corpus = write_corpus(root, {"cat": good_items(12, 20, 2, 3, 8),
                                 "dog": bad_items(12, 20, 2, 3, 0.3, 99, (9_000, 9_000)),
                                 "lonely": good_items(20, 12, 1, 1, 1)[:1]},
                          ["x"])  # fmt: skip
    tiny_net.head = torch.nn.Linear(8, 3)
    with pytest.warns(ProjectionWarning, match="too few for UMAP"):
        a = analyze_tiny(root, tiny_net, num_workers=0)
    bad = {k for k, it in corpus.items() if it.reason}
    assert {s["id"] for s in a.skipped} == bad
    assert set(a.table["id"]) == set(corpus) - bad
    assert (a.table["label_name"] == "lonely").sum() == 1  # a class with one image is kept
    assert np.isfinite(a.embeddings).all() and np.isfinite(a.probs).all()
    summary = a.summary()
    assert all(i in summary for i in sorted(bad)[:10])


class NaNOnDark:
    """A model that gives NaN for nearly black images (as a real one may, dividing by zero)."""

    id = "nan-on-dark"

    def transform(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image, dtype=np.float32).mean(axis=(0, 1)))

    def run(self, batch: torch.Tensor) -> np.ndarray:
        x = batch.numpy()
        return np.where(x.mean(axis=1, keepdims=True) < 5, np.nan, x / 255).astype(np.float32)


def test_an_item_a_model_gives_nan_for_is_skipped_and_named(tmp_path: Path) -> None:
    imgs, labels = blob_images(20)
    dark = [3, 11, 12]
    imgs[dark] = 0
    src = ArraySource(imgs, labels, ids=[f"img {i}" for i in range(20)])
    res = run_models(src, {"m": NaNOnDark()}, store=ArtifactStore(tmp_path), batch_size=4,
                     shard_size=8, progress=False)  # fmt: skip
    assert [s["id"] for s in res.skipped] == [f"img {i}" for i in dark]
    assert all("'m'" in s["reason"] and "NaN" in s["reason"] for s in res.skipped)
    assert np.isfinite(np.delete(res.outputs["m"], dark, axis=0)).all()
    # and in a whole analysis: the run goes on without them
    with pytest.warns(ProjectionWarning):
        a = faultlens.analyze(src, probs=np.full((20, 3), 1 / 3), embedder=NaNOnDark(),
                              cache_dir=tmp_path, projection={"n_neighbors": 30},
                              progress=False)  # fmt: skip
    assert len(a) == 17 and {s["id"] for s in a.skipped} == {f"img {i}" for i in dark}


def test_user_embeddings_with_nan_rows_are_skipped_and_named() -> None:
    imgs, labels = blob_images(12)
    E = np.random.default_rng(0).normal(size=(12, 4))
    E[3] = np.nan
    E[5, 1] = np.inf
    with pytest.warns(ProjectionWarning):
        a = faultlens.analyze(imgs, labels=labels, probs=np.full((12, 3), 1 / 3), embeddings=E,
                              embedder=None, progress=False)  # fmt: skip
    assert {s["index"] for s in a.skipped} == {3, 5} and len(a) == 10
    assert {s["reason"] for s in a.skipped} == {"embedding row has NaN or inf"}
    assert 3 not in set(a.table["source_index"]) and np.isfinite(a.embeddings).all()


# --------------------------------------------------------------------------- read-only folder


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new files, for root too (chmod for a user, chattr +i for root)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if (
        shutil.which("chattr") is None
        or subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("running as root on a file system without chattr +i")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_read_only_analysis_folder_gives_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    from tests.helpers import annotated_analysis

    folder = tmp_path / "analysis"
    written = annotated_analysis(folder)
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    old = Analysis.load(folder)
    ex = faultlens.explore(old)
    fb = FeatureBrowser(old, TinyNet().eval(), "conv", tiny_transform, k=2, gap_k=3)
    fb.feature = 5
    with read_only(folder):
        changed = Analysis(old.table.assign(confidence=0.1), class_names=old.class_names,
                           source=old.source)  # fmt: skip
        with pytest.raises(PermissionError, match=re.escape(str(folder))) as err:
            changed.save(folder)
        assert ".tmp" not in str(err.value)  # names the folder, not a temporary file
        with pytest.raises(PermissionError, match=re.escape(str(folder))):
            ex.save_slice("new one", list(range(3)))
        ex.select([0, 1])
        ex._on_custom_msg(ex, {"type": "slice", "op": "save", "name": "from js"}, [])
        assert "slice" in ex.status and str(folder) in ex.status  # shown, not lost
        fb._on_custom_msg(fb, {"type": "set_mark", "mark": "spurious"}, [])  # a click: not saved
        assert fb.mark == "" and "not saved" in fb.status and str(folder) in fb.status
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before
    again = Analysis.load(folder)
    assert len(again) == len(written)
    assert (again.table["confidence"] == old.table["confidence"]).all()
    assert [s["name"] for s in faultlens.explore(again).saved_slices] == ["kept by hand"]


# --------------------------------------------------------------------------- table-level input


def _analyze(**kw):
    imgs, labels = blob_images(6)
    args = {"labels": labels, "probs": np.full((6, 3), 1 / 3), "embeddings": np.zeros((6, 3)),
            "embedder": None, "progress": False, **kw}  # fmt: skip
    return faultlens.analyze(imgs, **args)


def _inf_probs():
    P = np.full((6, 3), 1 / 3)
    P[4, 1] = np.inf
    return _analyze(probs=P)


def _table(**cols):
    base = {"path": [f"{i}.png" for i in range(4)], "label": ["a", "b", "a", "b"], **cols}
    return TableSource(pd.DataFrame(base), **({"id_col": "id"} if "id" in cols else {}))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_inf_probs, "probs row 4 has NaN or inf"),
        (lambda: _analyze(probs=np.full((5, 3), 1 / 3)), "probs has 5 rows but the source has 6"),
        (lambda: _analyze(labels=[0, 1, 2, 0, 1, 7], class_names=["a", "b", "c"]),
         "label 7 at item 5 is outside 0..2"),
        (lambda: _analyze(labels=[0, 1, 2, 0, 1.5, 2]), r"label 1\.5 at item 4"),
        (lambda: _table(id=["x", "y", "x", "z"]), "duplicate ids, e.g. \\['x'\\]"),
        (lambda: _table(label=["a", None, "b", "a"]), "row 1 has no label"),
        (lambda: _table(path=["0.png", "1.png", None, " "]),
         r"row 2 has no path \(column 'path'; 2 such rows\)"),
        (lambda: ArraySource(np.zeros((3, 4, 4)), [0, 1, 0], ids=["p", "q"]), "3 images but 2 ids"),
    ],
)  # fmt: skip
def test_bad_table_input_is_named(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
