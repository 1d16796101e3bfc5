"""The artifact store: atomic writes, keys, and resuming a killed embedding run shard by shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faultlens.store import ArtifactStore, make_key, write_npy


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
