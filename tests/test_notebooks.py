"""The notebooks: committed without outputs, and each runs top to bottom headless.

They run in one session-wide cache (``FAULTLENS_CACHE``), in order, so the demo CNN is trained once
and the later notebooks load it; ``FAULTLENS_NB_SMALL=1`` makes them use the small demo. Each
notebook has a time budget (pytest-timeout) and prints its wall time and its kernel's own peak
memory (``VmHWM``, read by one extra cell appended in memory, never saved).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from tests.notebook_run import ALL, execute
from tests.notebook_run import rel as _rel

BUDGET = 900  # per notebook, on 2 cores (the slowest, 01, takes about 65 s alone)


def test_there_are_notebooks() -> None:
    names = {_rel(p) for p in ALL}
    assert {"01-quickstart.ipynb", "02-bring-your-own-model.ipynb",
            "03-spurious-features.ipynb"} <= names  # fmt: skip
    assert any(n.startswith("workshop/") and "solutions" in n for n in names)


@pytest.mark.parametrize("path", ALL, ids=_rel)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, "strip metadata.widgets (widget state) before committing"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs") == [], f"cell {i} has outputs"
        assert cell.get("execution_count") is None, f"cell {i} has an execution count"
        assert "widgets" not in cell.metadata


@pytest.fixture(scope="session")
def nb_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nb-cache")


@pytest.mark.slow
@pytest.mark.timeout(BUDGET)
@pytest.mark.parametrize("path", ALL, ids=_rel)
def test_runs_top_to_bottom(path: Path, nb_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULTLENS_CACHE", str(nb_cache))
    monkeypatch.setenv("FAULTLENS_NB_SMALL", "1")
    monkeypatch.setenv("FAULTLENS_NB_OFFLINE", "1")  # never wait on a network in CI
    run = execute(path)
    print(
        f"\n{_rel(path)}: {run.wall_s:.1f} s, kernel peak RSS {run.peak_mb} MB "
        f"({run.cuda_only_mb} MB of it CUDA-only libraries)"
    )
    assert not run.errors
    assert os.environ["FAULTLENS_CACHE"] == str(nb_cache)
