"""The store under faults: what a failed or killed write leaves, and cache files that are
unfinished or cut short.

A write that fails at its rename keeps the previous file; the next write removes the temporary
file a killed writer left, never a live writer's; a cache entry without its manifest is repaired,
an array or a shard cut short is computed again with a warning, never loaded; an empty array has a
fingerprint. Processes killed at random points of whole runs: test_process_faults.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import faultlens.store as store_mod
from faultlens.data.sources import ArraySource
from faultlens.models.runner import run_models
from faultlens.store import (
    ArtifactStore,
    CacheWarning,
    atomic_path,
    fingerprint_array,
    read_json,
    write_json,
    write_npy,
)
from tests.helpers import MeanColour, blob_images, temp_files

# --------------------------------------------------------------------------- writes


def test_a_failing_write_keeps_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "slices.json"
    write_json(target, {"kept": True})

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_json(target, {"kept": False})
    assert read_json(target) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["slices.json"]


def test_a_writer_that_raises_inside_atomic_path_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})

    def failing_writer() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        failing_writer()
    assert target.read_text().startswith("{") and '"v": 1' in target.read_text()
    assert list(tmp_path.iterdir()) == [target]


HOLDER = """
import sys, time
from pathlib import Path
from faultlens.store import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_text("half of a new vers")
    print("inside", flush=True)
    time.sleep(600)
"""


def _writer_inside_a_write(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "inside"
    return proc


def test_the_next_write_removes_what_a_killed_writer_left_but_not_a_live_ones(tmp_path: Path):
    target = tmp_path / "slices.json"
    write_json(target, {"v": 1})
    dead = _writer_inside_a_write(target)
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    stale = [p.name for p in temp_files(tmp_path)]
    assert len(stale) == 1 and stale[0].startswith(".slices.json.") and f"-{dead.pid}." in stale[0]
    assert read_json(target) == {"v": 1}
    live = _writer_inside_a_write(target)  # its write starts by removing the stale one
    try:
        (mine,) = [p.name for p in temp_files(tmp_path)]
        assert f"-{live.pid}." in mine
        write_json(target, {"v": 2})  # a write beside a live writer leaves its file alone
        assert [p.name for p in temp_files(tmp_path)] == [mine]
        assert read_json(target) == {"v": 2}
    finally:
        live.kill()
        live.wait()
    write_json(target, {"v": 3})
    assert temp_files(tmp_path) == [] and read_json(target) == {"v": 3}


# --------------------------------------------------------------------------- cache entries


def test_cache_entries_left_unfinished_or_unreadable_are_repaired_not_loaded(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    calls: list[int] = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(6.0).reshape(3, 2)

    folder = store.path("projection", "k1")
    write_npy(folder / "array.npy", compute())  # killed after the array's rename:
    gone = subprocess.Popen(["true"])  # no manifest yet, and the manifest's temp file is left
    gone.wait()
    stale = (
        folder / f".manifest.json.{store_mod._owner().rsplit('-', 1)[0]}-{gone.pid}.abcd1234.tmp"
    )
    stale.write_text('{"kind": "proj')
    np.testing.assert_array_equal(store.cached_array("projection", "k1", compute), compute())
    assert len(calls) == 2  # loaded, not computed again
    assert read_json(folder / "manifest.json")["kind"] == "projection"
    assert not stale.exists()
    # an array file cut short (copied half-way): computed again with a warning, never loaded
    whole = (folder / "array.npy").read_bytes()
    (folder / "array.npy").write_bytes(whole[: len(whole) - 10])
    with pytest.warns(CacheWarning, match="unreadable"):
        again = store.cached_array("projection", "k1", compute)
    np.testing.assert_array_equal(again, compute())
    assert len(calls) == 4 and (folder / "array.npy").read_bytes() == whole


def test_a_truncated_shard_is_reported_removed_and_computed_again(tmp_path: Path) -> None:
    imgs, labels = blob_images(10, seed=1)
    source = ArraySource(imgs, labels)
    store = ArtifactStore(tmp_path / "cache")
    opts = {"store": store, "batch_size": 2, "shard_size": 3, "progress": False, "num_workers": 0}
    first = run_models(source, {"e": MeanColour()}, **opts)
    shard = next((store.root / "outputs").rglob("shard-00001.npy"))
    shard.write_bytes(shard.read_bytes()[:-10])  # a cache copied half-way

    with pytest.warns(CacheWarning, match=r"shard-00001\.npy.*removed"):
        again = run_models(source, {"e": MeanColour()}, **opts)
    assert again.computed_shards == {"e": [1]}
    np.testing.assert_array_equal(again.outputs["e"], first.outputs["e"])


def test_an_empty_array_has_a_fingerprint() -> None:
    assert fingerprint_array(np.zeros((0, 4), np.float32)) != fingerprint_array(
        np.zeros((0, 5), np.float32)
    )
