"""The saved-analysis folder: a reused folder keeps nothing of the earlier analysis, a save that
cannot be done changes nothing, files get normal permissions, and a damaged folder is named, never
unpickled."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faultlens.analysis.analyze import analyze
from faultlens.analysis.result import Analysis
from faultlens.data.sources import ArraySource
from faultlens.store import CacheWarning
from faultlens.store import _umask as store_umask
from tests.helpers import blob_images

# the analyses here are a dozen points: the map falls back to PCA, which is not under test
pytestmark = pytest.mark.filterwarnings("ignore:.*too few for UMAP")


def _table(n: int, paths: list[str | None]) -> pd.DataFrame:
    labels = np.arange(n) % 2
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "path": paths,
            "label": labels,
            "label_name": np.array(["a", "b"])[labels],
            "pred": labels,
            "pred_name": np.array(["a", "b"])[labels],
            "confidence": np.full(n, 0.9, np.float32),
            "loss": np.full(n, 0.1, np.float32),
            "correct": np.ones(n, bool),
            "x": np.arange(n, dtype=np.float32),
            "y": np.arange(n, dtype=np.float32),
            "source_index": np.arange(n),
        }
    )


def test_saving_into_a_used_folder_leaves_nothing_of_the_earlier_analysis(tmp_path: Path) -> None:
    n = 3
    probs = np.eye(2, dtype=np.float32)[np.arange(n) % 2]
    images_a = np.full((n, 8, 8), 7, np.uint8)
    a = Analysis(
        _table(n, [None] * n),
        class_names=["a", "b"],
        probs=probs,
        embeddings=np.ones((n, 4), np.float32),
        arrays={"extra": np.zeros((n, 2), np.float32)},
        source=ArraySource(images_a, np.arange(n) % 2, class_names=["a", "b"]),
    )
    a.save(tmp_path / "out")
    images_b = np.full((n, 8, 8), 200, np.uint8)
    b = Analysis(
        _table(n, [None] * n),
        class_names=["a", "b"],
        probs=probs,
        embeddings=None,
        source=ArraySource(images_b, np.arange(n) % 2, class_names=["a", "b"]),
    )
    b.save(tmp_path / "out")
    back = Analysis.load(tmp_path / "out")
    assert back.embeddings is None
    assert back.arrays == {}
    assert not (tmp_path / "out" / "arrays" / "extra.npy").exists()
    assert np.asarray(back.image(0))[0, 0].tolist() == [200, 200, 200]

    # and an analysis without in-memory images leaves no images.npy to be loaded as its source
    c = Analysis(_table(n, [f"/nowhere/{i}.png" for i in range(n)]), class_names=["a", "b"],
                 probs=probs)  # fmt: skip
    c.save(tmp_path / "out")
    assert Analysis.load(tmp_path / "out").source is None


def test_a_save_that_cannot_be_done_leaves_the_earlier_analysis_as_it_was(tmp_path: Path) -> None:
    n = 4
    probs = np.eye(2, dtype=np.float32)[np.arange(n) % 2]
    good = Analysis(_table(n, [None] * n), class_names=["a", "b"], probs=probs,
                    embeddings=np.ones((n, 3), np.float32))  # fmt: skip
    good.save(tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}

    def bad(**kw) -> Analysis:
        return Analysis(_table(n, [None] * n), class_names=["a", "b", "c"],
                        probs=np.full((n, 3), 1 / 3, np.float32), **kw)  # fmt: skip

    with pytest.raises(ValueError, match=r"'\.\./x' is not a plain file name"):
        bad(arrays={"../x": np.zeros((n, 1))}).save(tmp_path / "out")
    with pytest.raises(TypeError, match="array 'tags' holds Python objects"):
        bad(arrays={"tags": np.array([{"a": 1}] * n, dtype=object)}).save(tmp_path / "out")
    mixed = bad()
    mixed.table["site"] = [1, "two", 3.0, None]
    with pytest.raises(ValueError, match=r"column\(s\) \['site'\] mix types.*astype\(str\)"):
        mixed.save(tmp_path / "out")
    after = {p.name: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before
    assert Analysis.load(tmp_path / "out").class_names == ["a", "b"]


def test_saved_files_get_normal_permissions_and_links_are_written_through(tmp_path: Path) -> None:
    from faultlens.store import atomic_path

    with atomic_path(tmp_path / "new.txt") as tmp:  # as open() would make it, not private
        tmp.write_text("one")
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o666 & ~store_umask()
    (tmp_path / "new.txt").chmod(0o600)  # a file replaced keeps its permissions
    with atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("two")
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o600
    (tmp_path / "link.txt").symlink_to(tmp_path / "new.txt")
    with atomic_path(tmp_path / "link.txt") as tmp:
        tmp.write_text("three")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "new.txt").read_text() == "three"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "probs.npy").write_bytes((d / "probs.npy").read_bytes()[:-20]),
         r"probs\.npy in .* cannot be read \(Failed to read all data"),
        (lambda d: (d / "probs.npy").write_bytes(b"\x80\x04 not an npy file"),
         r"probs\.npy .* cannot be read .*not written by faultlens"),
        (lambda d: np.save(d / "embeddings.npy", np.array([{"a": 1}] * 4), allow_pickle=True),
         "holds pickled Python objects, which faultlens never writes nor loads"),
        (lambda d: (d / "analysis.json").write_text("{oops"), r"analysis\.json .* cannot be read"),
        (lambda d: (d / "skipped.json").write_text("["), r"skipped\.json .* cannot be read"),
        (lambda d: np.save(d / "probs.npy", np.full((4, 7), 1 / 7)),
         r"probs\.npy .* has shape \(4, 7\), not \(4, 2\)"),
        (lambda d: np.save(d / "embeddings.npy", np.ones(4)),
         r"embeddings\.npy .* has shape \(4,\), not \(4, dim\)"),
        (lambda d: pd.read_parquet(d / "table.parquet").drop(columns="source_index")
         .to_parquet(d / "table.parquet"), r"lacks column\(s\) \['source_index'\]"),
    ],
)  # fmt: skip
def test_a_damaged_saved_analysis_is_named_and_nothing_is_unpickled(
    tmp_path: Path, damage, message: str
) -> None:
    n = 4
    a = Analysis(_table(n, [None] * n), class_names=["a", "b"],
                 probs=np.eye(2, dtype=np.float32)[np.arange(n) % 2],
                 embeddings=np.ones((n, 3), np.float32),
                 source=ArraySource(np.zeros((n, 8, 8), np.uint8), np.arange(n) % 2,
                                    class_names=["a", "b"]))  # fmt: skip
    folder = a.save(tmp_path / "saved")
    damage(folder)
    with pytest.raises(ValueError, match=message):
        Analysis.load(folder)


def test_damaged_thumbnails_are_left_out_with_a_warning(tmp_path: Path) -> None:
    imgs, labels = blob_images(6)
    a = analyze(imgs, labels=labels, probs=np.full((6, 3), 1 / 3), embeddings=np.eye(6),
                embedder=None, cache_dir=tmp_path / "c", progress=False, thumbnails=16)  # fmt: skip
    folder = a.save(tmp_path / "saved")
    (folder / "thumbnails" / "manifest.json").write_text('{"n_items": 6, "shard_size": 0}')
    with pytest.warns(CacheWarning, match="rendered from the images instead"):
        back = Analysis.load(folder)
    assert back.thumbnails is None and len(back) == 6


def test_a_save_keeps_the_records_and_files_beside_the_analysis_and_no_link(
    tmp_path: Path,
) -> None:
    from faultlens.analysis.record_views import FeatureMarks, SavedSlices

    n, folder = 4, tmp_path / "out"
    probs = np.eye(2, dtype=np.float32)[np.arange(n) % 2]
    a = Analysis(_table(n, [None] * n), class_names=["a", "b"], probs=probs,
                 arrays={"extra": np.zeros((n, 2), np.float32)})  # fmt: skip
    a.save(folder)
    SavedSlices(a).save("mine", [0, 3])
    FeatureMarks(a).set("conv", 1, 5, "core")
    (folder / "notes.txt").write_text("a user's notes")
    (folder / "exports").mkdir()
    (folder / "exports" / "mine.csv").write_text("id\n0\n3\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("theirs")
    (folder / "linked.txt").symlink_to(victim)
    inode = folder.stat().st_ino
    b = Analysis(_table(n, [None] * n), class_names=["a", "b"], probs=probs)
    b.save(folder)
    assert folder.stat().st_ino != inode  # a new folder took the old one's place
    back = Analysis.load(folder)
    assert back.arrays == {} and not (folder / "arrays").exists()  # nothing of the older analysis
    assert SavedSlices(back).rows("mine").tolist() == [0, 3]
    assert FeatureMarks(back).lookup("conv") == {(1, 5): "core"}
    assert (folder / "notes.txt").read_text() == "a user's notes"
    assert (folder / "exports" / "mine.csv").read_text() == "id\n0\n3\n"
    assert not (folder / "linked.txt").exists() and victim.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out", "victim.txt"]
