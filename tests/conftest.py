"""Shared fixtures: a private cache per test, tiny seeded models, the demo cache. The builders the
tests call are in ``tests/helpers.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import TINY_CLIP, TinyNet


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FAULTLENS_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for every test that needs the demo CNN, so it is trained once per session."""
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture
def tiny_net() -> TinyNet:
    return TinyNet().eval()


@pytest.fixture(scope="session")
def tiny_clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register a tiny open_clip config (random weights, built offline) and return its name."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip_cfg")
    (folder / "faultlens-tiny-vit.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    return "faultlens-tiny-vit"
