"""Several processes on one analysis folder or one cache: nothing lost, nothing computed twice,
nothing half-written, and no write through a link someone placed."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from faultlens.analysis.record_views import FeatureMarks, SavedSlices
from tests.benchmarks.bench_records import run as run_writers


@pytest.mark.parametrize("via", ["store", "widgets"])
@pytest.mark.parametrize("kind", ["slices", "marks"])
def test_concurrent_saves_and_deletes_keep_every_record(
    via: str, kind: str, tmp_path: Path
) -> None:
    # 3 processes × 24 saves, each deleting every fourth of its own right after saving it, through
    # the store or through the widgets (Explorer, FeatureBrowser): without the lock and the re-read
    # inside it, about half of them were lost
    out = run_writers(via, kind, procs=3, saves=24, every=4, folder=tmp_path / "an")
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


# --------------------------------------------------------------------------- the shard cache


class _CountingModel:
    """A BatchModel that appends each batch's item indices to a log file (every process
    appends to the same file), and is slow enough for two runs to overlap."""

    id = "counting-model-v1"

    def __init__(self, log: str) -> None:
        self.log = log

    def transform(self, image):
        import torch

        arr = np.asarray(image.convert("RGB"), dtype=np.float32)
        return torch.from_numpy(arr).permute(2, 0, 1)

    def run(self, batch):
        import time

        time.sleep(0.05)
        x = batch.numpy()
        marks = x[:, 0, 0, 0].astype(int)  # each image carries its index in its first pixel
        with open(self.log, "a") as fh:
            fh.write("".join(f"{m}\n" for m in marks))
        return x.reshape(len(x), -1)[:, :6] / 255.0


def _images(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    imgs[:, 0, 0, 0] = np.arange(n)  # item i is recognisable in the model's log
    return imgs, np.arange(n) % 3


def _compute(cache: str, log: str, barrier, results) -> None:
    try:
        from faultlens.data.sources import ArraySource
        from faultlens.models.runner import run_models
        from faultlens.store import ArtifactStore

        imgs, labels = _images(96)
        barrier.wait()
        out = run_models(ArraySource(imgs, labels), {"m": _CountingModel(log)},
                         store=ArtifactStore(cache), batch_size=4, shard_size=8,
                         progress=False, thumbnails=8)  # fmt: skip
        results.put((out.computed_shards["m"], out.outputs["m"].tobytes(), None))
    except Exception as exc:
        results.put(([], b"", repr(exc)))


def test_two_processes_filling_one_cache_compute_each_shard_once(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    cache, log = tmp_path / "cache", tmp_path / "model.log"
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_compute, args=(str(cache), str(log), barrier, results))
             for _ in range(2)]  # fmt: skip
    for p in procs:
        p.start()
    got = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert [g[2] for g in got] == [None, None]
    computed = sorted(s for g in got for s in g[0])
    assert computed == list(range(12))  # 96 items in shards of 8: each computed by one process
    seen = [int(x) for x in log.read_text().split()]
    assert sorted(seen) == list(range(96))  # every item through the model once, none twice
    assert got[0][1] == got[1][1]  # identical arrays
    imgs, _ = _images(96)
    first = np.frombuffer(got[0][1], dtype=np.float32).reshape(96, 6)
    want = imgs.transpose(0, 3, 1, 2).reshape(96, -1)[:, :6].astype(np.float32) / 255.0
    assert np.array_equal(first, want)  # and right: the first 6 red values of each image
    leftovers = [f for f in cache.rglob("*") if f.name.endswith((".tmp", ".new", ".old"))]
    assert leftovers == []


# --------------------------------------------------------------------------- whole folders


def _save_folder(folder: str, who: str, barrier) -> None:
    import time

    from faultlens.store import write_json, write_npy
    from faultlens.store.files import replace_folder

    def build(tmp: Path) -> None:  # files written one by one, slowly: as a save writes them
        for name in ("table", "probs", "embeddings", "meta"):
            write_npy(tmp / f"{name}.npy", np.full(4, ord(who[0]), dtype=np.int64))
            time.sleep(0.05)
        write_json(tmp / "analysis.json", {"who": who})

    barrier.wait()
    for _ in range(5):
        replace_folder(Path(folder), build, keep=("slices.json",))


def test_two_saves_into_one_folder_leave_one_whole_folder(tmp_path: Path) -> None:
    import json
    import multiprocessing

    folder = tmp_path / "an"
    folder.mkdir()
    (folder / "slices.json").write_text('{"format": 1, "slices": {"kept": {"rows": [1]}}}')
    (folder / "stale.npy").write_text("left by an older save")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_save_folder, args=(str(folder), who, barrier))
             for who in ("A", "B")]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    who = json.loads((folder / "analysis.json").read_text())["who"]
    for name in ("table", "probs", "embeddings", "meta"):  # every file from the same save
        assert set(np.load(folder / f"{name}.npy").tolist()) == {ord(who)}
    assert not (folder / "stale.npy").exists()  # nothing of an older save survives
    assert json.loads((folder / "slices.json").read_text())["slices"] == {"kept": {"rows": [1]}}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".an.lock", "an"]  # no temp folders


def test_a_failed_build_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    from faultlens.store.files import replace_folder

    folder = tmp_path / "an"
    folder.mkdir()
    (folder / "analysis.json").write_text("old")

    def build(tmp: Path) -> None:
        (tmp / "analysis.json").write_text("new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        replace_folder(folder, build)
    assert (folder / "analysis.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["an"]
    replace_folder(tmp_path / "new", lambda tmp: (tmp / "x").write_text("1"))
    assert (tmp_path / "new" / "x").read_text() == "1"


# --------------------------------------------------------------------------- a shared cache


def test_a_link_planted_in_the_cache_is_not_written_through(tmp_path: Path) -> None:
    import warnings

    from faultlens.store import ArtifactStore, CacheWarning
    from faultlens.store.files import UnsafePathError

    victim = tmp_path / "victim"
    victim.write_bytes(b"someone else's file")
    store = ArtifactStore(tmp_path / "cache")
    arr = store.sharded("outputs", "k1", n_items=8, shard_size=4)
    arr.write(0, np.ones((4, 2), np.float32))
    for f in arr._files(1):  # links where shard 1 will be written
        f.symlink_to(victim)
    with pytest.warns(CacheWarning, match="is a link"):
        assert arr.missing() == [1]  # not read as a shard: removed (the link, not its target)
    arr.write(1, np.zeros((4, 2), np.float32))
    assert arr.assemble()[0].tolist() == [[1, 1]] * 4 + [[0, 0]] * 4
    (arr.folder / "shard-00000.npy").unlink()
    (arr.folder / "shard-00000.npy").symlink_to(victim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        arr.write(0, np.ones((4, 2), np.float32))  # replaces the link, never writes through it
    assert not (arr.folder / "shard-00000.npy").is_symlink()

    blobs = store.path("thumbnails", "k2")
    from faultlens.store import ShardedBlobs

    tb = ShardedBlobs(blobs, 2, 2)
    (blobs / "shard-00000.bin").symlink_to(victim)
    tb.write(0, [b"ab", b"c"])
    assert tb.get(1) == b"c" and not (blobs / "shard-00000.bin").is_symlink()

    single = store.path("projection", "k3")
    single.mkdir(parents=True)
    (single / "array.npy").symlink_to(victim)
    with pytest.warns(CacheWarning, match="is a link"):
        got = store.cached_array("projection", "k3", lambda: np.arange(3))
    assert got.tolist() == [0, 1, 2] and not (single / "array.npy").is_symlink()

    (tmp_path / "cache" / "outputs" / "k4").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="is a link"):
        store.sharded("outputs", "k4", 8)
    assert victim.read_bytes() == b"someone else's file"  # never written


def test_a_link_planted_in_an_analysis_folder_is_not_written_through(tmp_path: Path) -> None:
    from faultlens.store import write_json
    from faultlens.store.files import UnsafePathError, replace_folder

    victim = tmp_path / "victim.json"
    victim.write_text("theirs")
    folder = tmp_path / "an"
    folder.mkdir()
    (folder / "analysis.json").symlink_to(victim)
    write_json(folder / "analysis.json", {"ours": 1})  # replaces the link
    assert victim.read_text() == "theirs" and not (folder / "analysis.json").is_symlink()
    (folder / "slices.json").symlink_to(victim)
    replace_folder(folder, lambda tmp: write_json(tmp / "analysis.json", {"ours": 2}),
                   keep=("slices.json",))  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == ["analysis.json"]  # the link not carried
    assert victim.read_text() == "theirs"
    (tmp_path / "linked").symlink_to(folder, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="is a link"):
        replace_folder(tmp_path / "linked", lambda tmp: None)


def test_a_group_cache_gives_the_group_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    from faultlens.store import ArtifactStore
    from faultlens.store.files import group_shared

    old = os.umask(0o022)
    try:
        plain = ArtifactStore(tmp_path / "plain").sharded("outputs", "k", 4, 4)
        plain.write(0, np.ones((4, 1), np.float32))
        mode = stat.S_IMODE((plain.folder / "shard-00000.npy").stat().st_mode)
        assert mode == 0o644 and not group_shared(plain.folder)

        monkeypatch.setenv("FAULTLENS_CACHE_GROUP", "1")
        shared = ArtifactStore(tmp_path / "shared").sharded("outputs", "k", 4, 4)
        shared.write(0, np.ones((4, 1), np.float32))
        for f in (shared.folder / "shard-00000.npy", shared.folder / "manifest.json"):
            assert stat.S_IMODE(f.stat().st_mode) & 0o060 == 0o060  # group read and write
        for d in (shared.folder, shared.folder.parent, tmp_path / "shared"):
            assert d.stat().st_mode & (stat.S_ISGID | 0o070) == stat.S_ISGID | 0o070

        monkeypatch.delenv("FAULTLENS_CACHE_GROUP")  # a folder prepared for a group: setgid
        prepared = tmp_path / "prepared"
        prepared.mkdir()
        prepared.chmod(0o2775)
        arr = ArtifactStore(prepared).sharded("outputs", "k", 4, 4)
        arr.write(0, np.ones((4, 1), np.float32))
        assert stat.S_IMODE((arr.folder / "shard-00000.npy").stat().st_mode) == 0o664
        assert arr.folder.stat().st_mode & stat.S_ISGID
    finally:
        os.umask(old)


def test_a_lock_waited_for_in_a_folder_swapped_away_is_taken_again(tmp_path: Path) -> None:
    import time

    from faultlens.store.files import FileLock, lock_path

    folder = tmp_path / "an"
    folder.mkdir()
    first = FileLock(lock_path(folder / "slices.json"))
    first.acquire()
    got = []

    def waiter() -> None:
        lock = FileLock(lock_path(folder / "slices.json"))
        lock.acquire()  # waits on the old folder's lock file, then finds it swapped away (filelock
        # 4 checks this itself; FileLock checks it for older versions too)
        got.append(os.fstat(lock._lock._context.lock_file_fd).st_ino)
        lock.release()

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.3)
    (folder).rename(tmp_path / "old")  # a save swaps a new folder in meanwhile
    folder.mkdir()
    first.release()
    th.join(30)
    assert got == [os.lstat(lock_path(folder / "slices.json")).st_ino]  # the new folder's lock


# --------------------------------------------------------------------------- Analysis.save

_SAVERS = {"B": 6, "C": 9}  # who saves -> rows of its analysis (a mix of the two cannot load whole)


def _analysis(who: str):
    from faultlens.analysis.result import Analysis

    n = _SAVERS[who]
    labels = np.arange(n) % 2
    table = pd.DataFrame({
        "id": [f"img-{i}" for i in range(n)], "label": labels, "label_name": np.array(["a", "b"])[labels],
        "pred": labels, "pred_name": np.array(["a", "b"])[labels], "confidence": np.full(n, 0.9),
        "loss": np.full(n, 0.1), "correct": np.ones(n, bool), "x": np.arange(n, dtype=np.float32),
        "y": np.arange(n, dtype=np.float32), "who": [who] * n,
    })  # fmt: skip
    code = float(ord(who))
    return Analysis(
        table,
        class_names=["a", "b"],
        probs=np.full((n, 2), code, np.float32),
        embeddings=np.full((n, 3), code, np.float32) if who == "B" else None,
        arrays={f"only_{who}": np.full(n, code)},
        meta={"who": who},
    )


def _whole(a) -> str:
    """Who saved the loaded analysis ``a``, asserting every part of it is that saver's."""
    who = a.meta["who"]
    n = _SAVERS[who]
    assert a.table["who"].tolist() == [who] * n
    assert a.probs.shape == (n, 2) and set(a.probs.ravel().tolist()) == {float(ord(who))}
    assert (a.embeddings is not None) == (who == "B")
    assert list(a.arrays) == [f"only_{who}"]
    return who


def _saver(folder: str, who: str, barrier, annotated, out) -> None:
    try:
        a = _analysis(who)
        barrier.wait()
        saves = 0
        while saves < 3 or not annotated.is_set():  # saves for as long as the annotator writes
            a.save(folder)
            saves += 1
        out.put((who, saves, None))
    except Exception:
        import traceback

        out.put((who, 0, traceback.format_exc()))


def _reader(folder: str, barrier, done, out) -> None:
    try:
        from faultlens.analysis.result import Analysis

        barrier.wait()
        seen: dict[str, int] = {}
        while not done.is_set():
            who = _whole(Analysis.load(folder))
            seen[who] = seen.get(who, 0) + 1
        out.put(("reader", seen, None))
    except Exception:
        import traceback

        out.put(("reader", {}, traceback.format_exc()))


def _annotator(folder: str, barrier, annotated, out) -> None:
    try:
        table = pd.DataFrame({"id": [f"img-{i}" for i in range(6)]})
        a = SimpleNamespace(folder=Path(folder), table=table, class_names=["a", "b"])
        slices, marks = SavedSlices(a), FeatureMarks(a)
        barrier.wait()
        for j in range(30):
            slices.save(f"s{j}", [j % 6])
            marks.set("conv", 1, j, "spurious" if j % 2 else "core")
            if j % 4 == 3:
                slices.delete(f"s{j}")
                marks.set("conv", 1, j, "")  # '' clears a mark
        out.put(("annotator", 30, None))
    except Exception:
        import traceback

        out.put(("annotator", 0, traceback.format_exc()))
    finally:
        annotated.set()


def test_saves_while_another_kernel_annotates_and_reads_lose_nothing_and_mix_nothing(
    tmp_path: Path,
) -> None:
    # kernel A writes slices and marks (deleting every fourth) into the folder while kernels B and
    # C save two different analyses into it, again and again until A is done, and kernel D loads
    # it all the while: every record of A is kept, none it deleted comes back, and every load and
    # the final folder is one whole analysis of B or of C
    import multiprocessing

    from faultlens.analysis.result import Analysis

    folder = tmp_path / "work" / "an"
    _analysis("B").save(folder)
    ctx = multiprocessing.get_context("spawn")
    barrier, annotated, done, out = ctx.Barrier(4), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_annotator, args=(str(folder), barrier, annotated, out))]
    procs += [ctx.Process(target=_saver, args=(str(folder), who, barrier, annotated, out))
              for who in _SAVERS]  # fmt: skip
    reader = ctx.Process(target=_reader, args=(str(folder), barrier, done, out))
    for p in [*procs, reader]:
        p.start()
    got = [out.get(timeout=300) for _ in procs]
    done.set()
    got.append(out.get(timeout=300))
    for p in [*procs, reader]:
        p.join(60)
    assert [g[2] for g in got] == [None] * 4, [g[2] for g in got if g[2]]
    counts = {g[0]: g[1] for g in got}
    assert counts["B"] >= 3 and counts["C"] >= 3  # both saved, over the whole annotation
    assert sum(counts["reader"].values()) >= 1  # every load was whole (checked in the reader)

    a = Analysis.load(folder)
    _whole(a)
    assert set(SavedSlices(a).names()) == {f"s{j}" for j in range(30) if j % 4 != 3}
    assert {f: m for _, f, m in _marks(a)} == {
        j: ("spurious" if j % 2 else "core") for j in range(30) if j % 4 != 3
    }
    assert sorted(p.name for p in folder.parent.iterdir()) == [".an.lock", "an"]  # no temp folders
    assert not [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".new", ".old"))]


def _marks(a) -> list[tuple[int, int, str]]:
    return [(c, f, m) for (c, f), m in FeatureMarks(a).lookup("conv").items()]


def _killed_saver(folder: str, at: str, reached) -> None:
    """Saves ``C``'s analysis into ``folder`` and stops for good at ``at`` (to be killed there):
    ``writing`` after the first array of the new folder is written, ``swapped`` once the new
    folder has taken the old one's place and before the old one is removed."""
    import shutil
    import threading

    import faultlens.analysis.folder as folder_mod
    import faultlens.store.files as files_mod

    def stop() -> None:
        reached.set()
        threading.Event().wait()  # until killed

    if at == "writing":
        write_npy = folder_mod.write_npy

        def writing(path, arr):
            write_npy(path, arr)
            stop()

        folder_mod.write_npy = writing
    else:
        rmtree = shutil.rmtree

        def removing(path, *args, **kw):
            if Path(path).suffix in (".new", ".old"):  # the old folder, swapped out
                stop()
            rmtree(path, *args, **kw)

        files_mod.shutil.rmtree = removing
    _analysis("C").save(folder)


@pytest.mark.parametrize(("at", "left"), [("writing", "B"), ("swapped", "C")])
def test_a_save_killed_at_any_point_leaves_a_whole_analysis_and_its_records(
    at: str, left: str, tmp_path: Path
) -> None:
    import multiprocessing
    import signal

    from faultlens.analysis.result import Analysis

    folder = tmp_path / "work" / "an"
    b = _analysis("B")
    b.save(folder)
    SavedSlices(b).save("mine", [1, 2])
    FeatureMarks(b).set("conv", 1, 7, "spurious")
    ctx = multiprocessing.get_context("spawn")
    reached = ctx.Event()
    p = ctx.Process(target=_killed_saver, args=(str(folder), at, reached))
    p.start()
    assert reached.wait(300), "the save never reached the point where it is killed"
    os.kill(p.pid, signal.SIGKILL)
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    a = Analysis.load(folder)
    assert _whole(a) == left  # the old analysis, or the new one: whole either way
    assert SavedSlices(a).rows("mine").tolist() == [1, 2]
    assert _marks(a) == [(1, 7, "spurious")]
    assert [p.name for p in folder.parent.iterdir() if p.suffix in (".new", ".old")]  # left over
    _analysis("B").save(folder)  # the next save removes what the killed one left
    assert sorted(p.name for p in folder.parent.iterdir()) == [".an.lock", "an"]
    assert SavedSlices(Analysis.load(folder)).names() == ["mine"]
