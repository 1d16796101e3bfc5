"""The artifact store: atomic writes, keys, and resuming a killed embedding run shard by shard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from faultlens.data.sources import ArraySource
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore, atomic_path, make_key, read_npy, write_json, write_npy

# A child process that embeds 12 shards slowly, so the parent can kill it half-way.
CHILD = textwrap.dedent(
    """
    import sys, time, numpy as np, torch
    sys.path.insert(0, {tests!r})
    from helpers import TinyNet, blob_images, tiny_transform
    from faultlens.data.sources import ArraySource
    from faultlens.models.embedders import LayerEmbedder
    from faultlens.models.runner import run_models
    from faultlens.store import ArtifactStore

    class Slow(LayerEmbedder):
        def run(self, batch):
            time.sleep(0.15)
            return super().run(batch)

    imgs, labels = blob_images(96)
    net = TinyNet().eval()
    emb = Slow(net, "conv", tiny_transform)
    emb.id = "slow-tiny"
    run_models(ArraySource(imgs, labels), {{"e": emb}}, store=ArtifactStore({cache!r}),
               batch_size=4, shard_size=8, progress=False)
    """
)


def _embed(cache: Path) -> tuple[np.ndarray, list[int]]:
    from faultlens.models.embedders import LayerEmbedder
    from tests.helpers import TinyNet, blob_images, tiny_transform

    imgs, labels = blob_images(96)
    emb = LayerEmbedder(TinyNet().eval(), "conv", tiny_transform)
    emb.id = "slow-tiny"  # the same cache identity as the child's
    res = run_models(
        ArraySource(imgs, labels),
        {"e": emb},
        store=ArtifactStore(cache),
        batch_size=4,
        shard_size=8,
        progress=False,
    )
    return res.outputs["e"], res.computed_shards["e"]


def test_killed_run_resumes_with_only_missing_shards(tmp_path: Path) -> None:
    cache = tmp_path / "killed"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), cache=str(cache)))
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": ""})
    deadline = time.monotonic() + 120
    shard_dir = None
    while time.monotonic() < deadline:
        found = list(cache.glob("outputs/*/shard-*.json"))
        if len(found) >= 3:
            shard_dir = found[0].parent
            break
        if proc.poll() is not None:
            pytest.fail(f"child exited early with {proc.returncode}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert shard_dir is not None, "the child never wrote a shard"
    done_before = sorted(int(p.stem.split("-")[1]) for p in shard_dir.glob("shard-*.json"))
    assert 3 <= len(done_before) < 12
    # every shard file present is whole (loads, right length)
    for s in done_before:
        assert read_npy(shard_dir / f"shard-{s:05d}.npy").shape[0] == 8

    resumed, computed = _embed(cache)
    assert sorted(computed) == sorted(set(range(12)) - set(done_before))
    assert not list(shard_dir.glob(".*.tmp")), "a temporary file stayed visible"
    fresh, computed_fresh = _embed(tmp_path / "fresh")
    assert computed_fresh == list(range(12))
    np.testing.assert_array_equal(resumed, fresh)
    # a third run computes nothing
    _, again = _embed(cache)
    assert again == []


def test_atomic_write_keeps_old_content_on_failure(tmp_path: Path) -> None:
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


def test_store_refuses_pickles_and_keys_are_stable(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="pickle"):
        write_npy(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object))
    a = np.arange(5, dtype=np.float32)
    assert make_key("x", a, k=1) == make_key("x", a.copy(), k=1)
    assert make_key("x", a, k=1) != make_key("x", a + 1, k=1)


def test_cached_array_and_force(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(3.0)

    store.cached_array("k", "abc", compute)
    store.cached_array("k", "abc", compute)
    assert len(calls) == 1
    store.cached_array("k", "abc", compute, force=True)
    assert len(calls) == 2


def test_default_cache_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULTLENS_CACHE", str(tmp_path / "c"))
    assert ArtifactStore().root == tmp_path / "c"
