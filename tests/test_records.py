"""The records store beside an analysis: saved slices and feature marks, in memory until the
analysis has a folder, merged under a lock, tolerant of hand edits and damaged files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from faultlens.analysis.record_views import FeatureMarks, SavedSlices
from faultlens.analysis.records import MARKS_FILE, SLICES, SLICES_FILE, RecordStore
from faultlens.store.files import UnsafePathError


def _analysis(folder: Path | None = None, n: int = 10) -> SimpleNamespace:
    table = pd.DataFrame({"id": [f"img{i}" for i in range(n)], "label": np.arange(n) % 3,
                          "pred": np.zeros(n, dtype=int), "correct": np.arange(n) % 3 == 0})  # fmt: skip
    return SimpleNamespace(folder=folder, table=table, class_names=["a", "b", "c"])


def _stored(path: Path, section: str) -> dict | list:
    return json.loads(path.read_text())[section]


def test_slices_kept_in_memory_move_into_the_folder_with_conflicts_named(tmp_path: Path) -> None:
    a = _analysis()
    s = SavedSlices(a)
    assert "memory" in s.save("same", [1, 2])
    s.save("clash", [4, 5])
    s.save("mine", [7])
    assert s.path is None and s.names() == ["clash", "mine", "same"]
    folder = tmp_path / "an"
    folder.mkdir()
    other = SavedSlices(_analysis(folder))  # another widget already saved two slices there
    other.save("same", [1, 2])
    other.save("clash", [0, 9])
    a.folder = folder  # analysis.save(folder)
    assert s.names() == ["clash", "clash-unsaved", "mine", "same"]
    note = s.store.take_notes()
    assert "moved 3 slice(s)" in note and "'clash' -> 'clash-unsaved'" in note
    stored = _stored(folder / SLICES_FILE, "slices")
    assert stored["clash"]["rows"] == [0, 9] and stored["clash-unsaved"]["rows"] == [4, 5]
    assert s.store.in_memory == 0 and s.store.take_notes() == ""  # said once
    assert other.names() == s.names()  # the other store sees them: it re-reads a changed file


def test_saved_slice_follows_its_ids_and_exports_where_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "an"
    folder.mkdir()
    a = _analysis(folder)
    s = SavedSlices(a)
    msg = s.save("dark shirts", np.array([3, 1, 3]), note="hand picked")
    assert msg.startswith("saved slice 'dark shirts' (2 images)")
    assert s.entries()["dark shirts"]["note"] == "hand picked"
    assert s.listing()[0]["name"] == "dark shirts" and s.listing()[0]["n"] == 2
    a.table = a.table.iloc[::-1].reset_index(drop=True)  # rows moved: ids find them
    assert sorted(a.table["id"].iloc[s.rows("dark shirts")]) == ["img1", "img3"]
    a.table = a.table[a.table["id"] != "img3"].reset_index(drop=True)
    assert list(a.table["id"].iloc[s.rows("dark shirts")]) == ["img1"]
    assert "1 image id(s) are no longer in the table" in s.store.take_notes()
    monkeypatch.chdir(tmp_path)
    out = s.export("dark shirts")
    assert out == tmp_path / "dark shirts.csv" and pd.read_csv(out)["id"].tolist() == ["img1"]
    pq = s.export("dark shirts", tmp_path / "x" / "s.parquet")
    assert pd.read_parquet(pq)["id"].tolist() == ["img1"]
    with pytest.raises(ValueError, match="invalid slice name"):
        s.save("../etc", [1])
    with pytest.raises(ValueError, match="nothing to save"):
        s.save("empty", [])
    with pytest.raises(IndexError, match=r"within 0\.\.8"):
        s.save("far", [99])
    with pytest.raises(ValueError, match="written by save"):
        s.save("meta", [1], created="now")
    with pytest.raises(KeyError, match="no slice named 'gone'"):
        s.delete("gone")


def test_a_file_written_before_loads_and_hand_edits_are_kept(tmp_path: Path) -> None:
    folder = tmp_path / "an"
    folder.mkdir()
    old = {"format": 1, "future": {"x": 1}, "slices": {
        "old one": {"rows": [1, 2], "ids": ["img1", "img2"], "created": "2025-01-01T00:00:00"},
        "bad/name": {"rows": [1]}, "no rows": {"created": "x"}, "text": "not a slice",
        "neg": {"rows": [-1]},
    }}  # fmt: skip
    (folder / SLICES_FILE).write_text(json.dumps(old))
    s = SavedSlices(_analysis(folder))
    assert s.names() == ["old one"] and s.rows("old one").tolist() == [1, 2]
    assert "4 entry(ies)" in s.store.take_notes()
    assert s.store.take_notes() == ""  # named once
    s.save("new", [5])
    stored = json.loads((folder / SLICES_FILE).read_text())
    assert stored["future"] == {"x": 1}  # other top-level keys stay
    for name in ("bad/name", "no rows", "text", "neg", "old one", "new"):
        assert name in stored["slices"]
    s.store.delete("text")  # a delete that names an unusable entry removes it
    assert "text" not in _stored(folder / SLICES_FILE, "slices")

    marks = [{"layer": "conv", "class": 1, "feature": 2, "mark": "spurious"},
             {"layer": "conv", "feature": 3, "mark": "core"}, "not a dict",
             {"layer": "conv", "class": True, "feature": 1, "mark": "core"}]  # fmt: skip
    (folder / MARKS_FILE).write_text(json.dumps({"format": 1, "marks": marks}))
    fm = FeatureMarks(_analysis(folder))
    assert fm.spurious_features("conv") == {1: [2]}
    assert "3 entry(ies) without a layer" in fm.store.take_notes()
    fm.set("conv", 0, 5, "core")
    stored_marks = _stored(folder / MARKS_FILE, "marks")
    assert all(m in stored_marks for m in marks) and len(stored_marks) == 5


def test_a_damaged_file_is_kept_aside_not_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "an"
    folder.mkdir()
    (folder / SLICES_FILE).write_text('{"slices": {"half": {"rows": [1, ')  # cut short
    s = SavedSlices(_analysis(folder))
    assert s.names() == [] and "cannot be read" in s.store.take_notes()
    msg = s.save("fresh", [2])  # the status line says where the damaged file went
    aside = list(folder.glob(f"{SLICES_FILE}.damaged-*"))
    assert len(aside) == 1 and aside[0].read_text().startswith('{"slices": {"half"')
    assert f"kept as {aside[0].name}" in msg and msg.endswith(
        f"saved slice 'fresh' (1 images) in {folder / SLICES_FILE}"
    )
    assert s.names() == ["fresh"]
    (folder / SLICES_FILE).write_text('["a list"]')
    s.save("again", [3])
    assert len(list(folder.glob(f"{SLICES_FILE}.damaged-*"))) == 2


def test_marks_memory_merge_keeps_the_newer_and_names_conflicts(tmp_path: Path) -> None:
    a = _analysis()
    fm = FeatureMarks(a)
    fm.set("conv", 0, 1, "spurious")
    fm.set("conv", 0, 2, "core")
    assert "memory" in fm.set("conv", 0, 3, "spurious")
    fm.set("conv", 0, 3, "")  # removed again, in memory
    folder = tmp_path / "an"
    folder.mkdir()
    old = {"layer": "conv", "class": 0, "class_name": "a", "updated": "2000-01-01T00:00:00+00:00"}
    new = {**old, "updated": "2999-01-01T00:00:00+00:00"}
    (folder / MARKS_FILE).write_text(json.dumps({"format": 1, "marks": [
        {**old, "feature": 1, "mark": "core"}, {**new, "feature": 2, "mark": "spurious"}]}))  # fmt: skip
    a.folder = folder
    assert fm.lookup("conv") == {(0, 1): "spurious", (0, 2): "spurious"}
    note = fm.store.take_notes()
    assert "moved 2 mark(s)" in note and "replaced" in note and "kept the file's newer" in note
    assert fm.get("conv", 0, 1) == "spurious" and fm.get("conv", 5, 5) == ""
    out = fm.export_csv("conv", tmp_path / "m.csv")
    assert pd.read_csv(out)["feature"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="mark must be one of"):
        fm.set("conv", 0, 1, "maybe")


def test_change_detection_between_stores_and_processes(tmp_path: Path) -> None:
    folder = tmp_path / "an"
    folder.mkdir()
    one, two = SavedSlices(_analysis(folder)), SavedSlices(_analysis(folder))
    calls = []
    two.store.watch()
    stop = two.store.on_change(lambda: calls.append(two.names()))
    assert one.names() == [] and not one.store.changed()
    one.save("a", [1])
    assert calls == [["a"]]  # told at once, in this process
    assert not one.store.changed() and not two.store.changed()
    # a write by another process (here: by hand, as it would land): seen from a stat
    data = json.loads((folder / SLICES_FILE).read_text())
    data["slices"]["b"] = {"rows": [2]}
    (folder / SLICES_FILE).write_text(json.dumps(data))
    assert one.store.changed() and one.names() == ["a", "b"] and not one.store.changed()
    stop()
    one.save("c", [3])
    assert len(calls) == 1


def test_records_never_go_through_a_link(tmp_path: Path) -> None:
    folder = tmp_path / "an"
    folder.mkdir()
    victim = tmp_path / "victim.json"
    victim.write_text('{"slices": {"theirs": {"rows": [1]}}}')
    (folder / SLICES_FILE).symlink_to(victim)
    s = SavedSlices(_analysis(folder))
    with pytest.raises(UnsafePathError, match="is a link"):
        s.save("mine", [1])
    with pytest.raises(UnsafePathError):
        s.names()
    assert victim.read_text() == '{"slices": {"theirs": {"rows": [1]}}}'
    assert not (folder / ".slices.lock").exists()  # refused before the lock was taken
    (folder / SLICES_FILE).unlink()
    (folder / ".slices.lock").symlink_to(tmp_path / "elsewhere.lock")
    with pytest.raises(UnsafePathError, match="is a link"):
        s.save("mine", [1])
    assert not (tmp_path / "elsewhere.lock").exists()


def test_a_record_store_of_a_folder_path_and_a_readonly_folder(tmp_path: Path) -> None:
    store = RecordStore(SLICES, tmp_path)
    store.put("x", {"rows": [1]})
    assert store.read() == {"x": {"rows": [1]}} and store.delete("x") and not store.delete("x")
    if os.geteuid() == 0:
        return  # root writes anywhere: no read-only folder to test
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        a = _analysis()
        s = SavedSlices(a)
        s.save("kept", [1])
        a.folder = ro
        assert s.names() == ["kept"]  # not lost: still shown, and tried again later
        assert "could not store 1 unsaved slice(s)" in s.store.take_notes()
    finally:
        ro.chmod(0o755)
