"""Several processes on one analysis folder or one cache: nothing lost, nothing computed twice,
nothing half-written, and no write through a link someone placed."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from faultlens.analysis.records import FeatureMarks, SavedSlices
from tests.benchmarks.bench_records import run as run_writers


@pytest.mark.parametrize("kind", ["slices", "marks"])
def test_concurrent_saves_and_deletes_keep_every_record(kind: str, tmp_path: Path) -> None:
    # 3 processes × 24 saves, each deleting every fourth of its own right after saving it:
    # without the lock and the re-read inside it, about half of them were lost
    out = run_writers("store", kind, procs=3, saves=24, every=4, folder=tmp_path / "an")
    assert out["errors"] == [] and out["exit_codes"] == [0, 0, 0]
    assert out["expected"] == 54 and out["kept"] == 54
    assert out["deleted_still_there"] == 0 and out["temp_files_left"] == 0


def test_threads_of_one_kernel_keep_every_record(tmp_path: Path) -> None:
    folder = tmp_path / "an"
    folder.mkdir()
    table = pd.DataFrame({"id": [str(i) for i in range(10)]})
    a = SimpleNamespace(folder=folder, table=table, class_names=["a", "b"])

    def slices(t: int) -> None:
        s = SavedSlices(a)  # one store per widget
        for j in range(15):
            s.save(f"t{t}-{j}", [j % 10])
            if j % 3 == 2:
                s.delete(f"t{t}-{j}")

    def marks(t: int) -> None:
        fm = FeatureMarks(a)
        for j in range(15):
            fm.set("conv", 1, t * 100 + j, "core")

    threads = [threading.Thread(target=f, args=(t,)) for t in range(3) for f in (slices, marks)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    want = {f"t{t}-{j}" for t in range(3) for j in range(15) if j % 3 != 2}
    assert set(SavedSlices(a).names()) == want
    assert {f for _, f in FeatureMarks(a).lookup("conv")} == {
        t * 100 + j for t in range(3) for j in range(15)
    }
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*.tmp"))


def test_row_values_survive_a_round_trip(tmp_path: Path) -> None:
    table = pd.DataFrame({"id": [f"x{i}" for i in range(5)]})
    a = SimpleNamespace(folder=tmp_path, table=table, class_names=["a"])
    SavedSlices(a).save("s", np.array([4, 0], dtype=np.uint32))
    assert SavedSlices(a).rows("s").tolist() == [0, 4]
