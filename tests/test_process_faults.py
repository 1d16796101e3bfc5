"""The process killed or cut off: SIGKILL at random points of embedding, projection and the
widgets' slice and mark saves (20 trials each), and an analysis with the network cut.

Each SIGKILL trial forks a worker, kills it with SIGKILL after a seeded random delay, looks at what is on
disk (every visible file whole, nothing half-written), reruns the work to completion and compares it
with an uninterrupted run. The workers are forked from one helper process that has already imported
torch, scikit-learn and the widgets, so a trial costs its work, not an interpreter start-up (which
is ~8 s here). Writes are slowed a little (``os.fsync`` sleeps in the workers only) so that kills
also land inside a write, between the temporary file and its rename; each test counts the phases its
kills hit and fails if they did not spread (so it cannot pass without testing anything). What a
single killed or failed write leaves, and damaged cache files: test_store_faults.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import faultlens
from faultlens.analysis.projection import ProjectionWarning, project
from faultlens.analysis.result import Analysis
from faultlens.data.sources import ArraySource
from faultlens.models.classifier import Classifier
from faultlens.models.embedders import EfficientNetLiteEmbedder, LayerEmbedder
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore, read_json, read_npy, write_json, write_npy
from faultlens.ui.explorer import Explorer
from faultlens.ui.features import FeatureBrowser
from tests.helpers import TinyNet, annotated_analysis, blob_images, temp_files, tiny_transform

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 20

# --------------------------------------------------------------------------- the fork server


def _serve() -> None:
    """The helper process: fork one worker per request line, report its pid and exit status."""
    import sys as _sys

    import sklearn.decomposition  # noqa: F401 - imported by the first projection otherwise

    _sys.stdout.write("ready\n")
    _sys.stdout.flush()
    for line in _sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the pipe carries the protocol only
                WORKLOADS[req["fn"]](*req["args"])
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        _sys.stdout.write(f"pid {pid}\n")
        _sys.stdout.flush()
        _, status = os.waitpid(pid, 0)
        _sys.stdout.write(f"exit {os.waitstatus_to_exitcode(status)}\n")
        _sys.stdout.flush()


@dataclass
class Run:
    code: int  # 0: finished; -9: killed
    seconds: float


class ForkServer:
    def __init__(self, log: Path) -> None:
        self._log = open(log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.test_process_faults import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                 "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next(180) == "ready", self.log_tail()
        self.kills = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def _next(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the fork server did not answer in {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text()[-3000:]

    def run(self, fn: str, *args: Any, kill_after: float | None = None) -> Run:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"fn": fn, "args": [str(a) for a in args]}) + "\n")
        self.proc.stdin.flush()
        pid = int(self._next(60).split()[1])
        t0 = time.monotonic()
        if kill_after is not None:
            try:
                done = self.lines.get(timeout=kill_after)  # it may finish first
            except queue.Empty:
                with contextlib.suppress(ProcessLookupError):  # it finished this very moment
                    os.kill(pid, signal.SIGKILL)
                done = self._next(60)
                self.kills += done == f"exit {-signal.SIGKILL}"
        else:
            done = self._next(300)
        code = int(done.split()[1])
        if code not in (0, -signal.SIGKILL):
            pytest.fail(f"{fn} failed with {code}: {self.log_tail()}")
        return Run(code, time.monotonic() - t0)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory):
    server = ForkServer(tmp_path_factory.mktemp("forks") / "server.log")
    yield server
    server.close()


def _delays(seed: int, span: float) -> np.ndarray:
    """TRIALS kill delays spread over [0, span): one in each of TRIALS equal strata, shuffled."""
    rng = np.random.default_rng(seed)
    d = (np.arange(TRIALS) + rng.random(TRIALS)) / TRIALS * span
    rng.shuffle(d)
    return d


def _slow_writes(seconds: float) -> None:
    """In a worker only: every fsync (between a temp file's last byte and its rename) takes longer."""
    real = os.fsync

    def slow(fd: int) -> None:
        time.sleep(seconds)
        real(fd)

    os.fsync = slow


def _log(path: str | Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --------------------------------------------------------------------------- (a) embedding

N_IMAGES, SHARD = 96, 8
N_SHARDS = N_IMAGES // SHARD


class _SlowEmbedder(LayerEmbedder):
    def run(self, batch: torch.Tensor) -> np.ndarray:
        time.sleep(0.02)
        return super().run(batch)


def _embed(cache: str, out: str = "") -> None:
    _slow_writes(0.01)
    torch.set_num_threads(1)
    imgs, labels = blob_images(N_IMAGES)
    emb = _SlowEmbedder(TinyNet().eval(), "conv", tiny_transform)
    emb.id = "fault-tiny"
    res = run_models(ArraySource(imgs, labels), {"e": emb}, store=ArtifactStore(cache),
                     batch_size=4, shard_size=SHARD, progress=False)  # fmt: skip
    if out:
        write_npy(Path(out), res.outputs["e"])
        write_json(Path(out).with_suffix(".json"), res.computed_shards["e"])


def _shard_state(cache: Path) -> tuple[list[int], bool]:
    """Complete shards (array and side-car) and whether a write was cut short; checks every
    visible file is whole."""
    folders = list((cache / "outputs").glob("*")) if (cache / "outputs").exists() else []
    assert len(folders) <= 1
    if not folders:
        return [], False
    folder = folders[0]
    done, cut = [], bool(temp_files(folder))
    for s in range(N_SHARDS):
        arr, side = folder / f"shard-{s:05d}.npy", folder / f"shard-{s:05d}.json"
        if arr.exists():
            assert read_npy(arr).shape == (SHARD, 8)  # whole, never half-written
        if side.exists():
            assert read_json(side) == {"skipped": [], "decode": "cpu"}  # and how it was decoded
            assert arr.exists(), "a side-car without its array"
            done.append(s)
        elif arr.exists():
            cut = True  # killed between the array and its side-car
    if (folder / "manifest.json").exists():
        assert read_json(folder / "manifest.json")["n_items"] == N_IMAGES
    return done, cut


@pytest.mark.slow
def test_sigkill_during_embedding_resumes_to_identical_arrays(forks: ForkServer, tmp_path: Path):
    ref = tmp_path / "reference.npy"
    calib = forks.run("embed", tmp_path / "ref-cache", ref)
    assert calib.code == 0
    reference = read_npy(ref)
    assert reference.shape == (N_IMAGES, 8) and np.isfinite(reference).all()
    phases: Counter[str] = Counter()
    kills = forks.kills
    for k, delay in enumerate(_delays(8, 0.9 * calib.seconds)):
        cache, out = tmp_path / f"cache-{k:02d}", tmp_path / f"out-{k:02d}.npy"
        killed = forks.run("embed", cache, kill_after=delay).code != 0
        done, cut = _shard_state(cache)
        phases["finished before the kill" if not killed else
               "before any shard" if not done else
               "mid-way" if len(done) < N_SHARDS else "after the last shard"] += 1  # fmt: skip
        phases["inside a write"] += cut
        assert forks.run("embed", cache, out).code == 0
        np.testing.assert_array_equal(read_npy(out), reference)
        assert read_json(out.with_suffix(".json")) == sorted(set(range(N_SHARDS)) - set(done))
        assert temp_files(cache) == [], "a temporary file stayed after the rerun"
    print(f"\nembedding: {forks.kills - kills} kills, phases {dict(phases)}")
    assert phases["before any shard"] >= 1, phases
    assert phases["mid-way"] >= 5, phases
    assert phases["inside a write"] >= 1, phases


# --------------------------------------------------------------------------- (b) projection

N_PROJ = 6


def _projection_inputs(i: int) -> tuple[np.ndarray, np.ndarray]:
    """2,500 points in 128 dims spread mostly along one planted direction; and their position
    along it."""
    rng = np.random.default_rng(100 + i)
    u = rng.normal(size=128)
    t = rng.normal(0, 15, 2500)
    Z = t[:, None] * (u / np.linalg.norm(u)) + rng.normal(size=(2500, 128))
    return Z.astype(np.float32), t


def _project(cache: str, log: str, out: str = "") -> None:
    """N_PROJ cached projections; above n_neighbors of the points, so PCA (no numba compile)."""
    _slow_writes(0.005)
    torch.set_num_threads(1)
    import faultlens.analysis.projection as proj

    fit = proj._project

    def logged(Z, **kw):
        _log(log, "fit")
        xy = fit(Z, **kw)
        _log(log, "fitted")
        return xy

    proj._project = logged
    store = ArtifactStore(cache)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProjectionWarning)
        for i in range(N_PROJ):
            Z, _ = _projection_inputs(i)
            results.append(project(Z, n_neighbors=5000, seed=i, store=store, progress=False))
            _log(log, "stored")
    if out:
        write_npy(Path(out), np.stack(results))


def _projection_state(cache: Path) -> tuple[int, bool]:
    """Complete cache entries (every visible array whole) and whether a write was cut short."""
    root = cache / "projection"
    entries = sorted(root.glob("*/array.npy")) if root.exists() else []
    for e in entries:
        xy = read_npy(e)
        assert xy.shape == (2500, 2) and np.isfinite(xy).all()
        if (e.parent / "manifest.json").exists():
            assert read_json(e.parent / "manifest.json")["kind"] == "projection"
    return len(entries), bool(root.exists() and temp_files(root))


@pytest.mark.slow
def test_sigkill_during_projection_never_leaves_a_bad_cache_entry(
    forks: ForkServer, tmp_path: Path
) -> None:
    ref = tmp_path / "reference.npy"
    calib = forks.run("project", tmp_path / "ref-cache", tmp_path / "ref.log", ref)
    assert calib.code == 0
    reference = read_npy(ref)
    assert reference.shape == (N_PROJ, 2500, 2)
    for i in range(N_PROJ):  # planted truth: the map's first axis is the planted direction
        assert abs(np.corrcoef(reference[i][:, 0], _projection_inputs(i)[1])[0, 1]) > 0.99
    phases: Counter[str] = Counter()
    kills = forks.kills
    for k, delay in enumerate(_delays(9, 0.9 * calib.seconds)):
        cache, log, out = (
            tmp_path / f"c{k:02d}",
            tmp_path / f"{k:02d}.log",
            tmp_path / f"{k:02d}.npy",
        )
        killed = forks.run("project", cache, log, kill_after=delay).code != 0
        n_done, cut = _projection_state(cache)
        last = (_log_lines(log) or ["started"])[-1]
        if not killed:
            phases["finished before the kill"] += 1
        elif cut:
            phases["inside a write"] += 1
        else:
            phases[{"fit": "during a fit", "fitted": "writing", "stored": "between entries",
                    "started": "before the first fit"}[last]] += 1  # fmt: skip
        phases[f"{n_done} entries"] += 1
        seen = len(_log_lines(log))
        assert forks.run("project", cache, log, out).code == 0
        np.testing.assert_array_equal(read_npy(out), reference)
        assert _projection_state(cache) == (N_PROJ, False), "a temporary file stayed"
        assert _log_lines(log)[seen:].count("fit") == N_PROJ - n_done  # only the missing ones
    print(f"\nprojection: {forks.kills - kills} kills, phases {dict(phases)}")
    assert phases["during a fit"] >= 2, phases
    assert phases["inside a write"] + phases["writing"] >= 2, phases
    assert phases["0 entries"] >= 1 and sum(phases[f"{i} entries"] for i in range(1, N_PROJ)) >= 5


# --------------------------------------------------------------------------- (c) slices and marks

N_ROWS, OPS_PER_RUN = 30, 12


def _op(g: int) -> tuple[str, Any]:
    """Operation number g of the annotation sequence: save a slice, or mark a feature."""
    rng = np.random.default_rng(g)
    if g % 2 == 0:
        return "slice", (f"s{g:03d}", sorted(rng.choice(N_ROWS, 1 + g % 7, replace=False).tolist()))
    pair = ((g // 2) % 3, (g // 6) % 8)
    return "mark", (*pair, "spurious" if (g // 2) % 2 else "core")


def _state_after(m: int) -> tuple[dict, dict]:
    """What slices.json and annotations.json must say once operations 0..m-1 are done."""
    slices = {"kept by hand": list(range(5))}
    marks: dict[tuple[int, int], str] = {(2, 7): "core"}
    for g in range(m):
        kind, arg = _op(g)
        if kind == "slice":
            slices[arg[0]] = arg[1]
        else:
            marks[arg[0], arg[1]] = arg[2]
    return slices, marks


def _on_disk(folder: Path) -> tuple[dict, dict]:
    slices = read_json(folder / "slices.json")["slices"]
    marks = read_json(folder / "annotations.json")["marks"]
    ids = [f"img-{i}" for i in range(N_ROWS)]
    for v in slices.values():
        assert v["ids"] == [ids[r] for r in v["rows"]]
    assert all(m["layer"] == "conv" for m in marks)
    return ({k: v["rows"] for k, v in slices.items()},
            {(m["class"], m["feature"]): m["mark"] for m in marks})  # fmt: skip


def _annotate(folder: str, log: str) -> None:
    """Continue the operation sequence through the widgets' own save paths."""
    _slow_writes(0.01)
    torch.set_num_threads(1)
    analysis = Analysis.load(folder)
    ex = Explorer(analysis)
    fb = FeatureBrowser(analysis, TinyNet().eval(), "conv", tiny_transform, k=2, gap_k=3)
    start = sum(line.startswith("done") for line in _log_lines(Path(log)))
    for g in range(start, start + OPS_PER_RUN):
        _log(log, f"try {g}")
        kind, arg = _op(g)
        if kind == "slice":
            ex.save_slice(arg[0], arg[1])
        else:
            fb.set_mark(*arg)
        _log(log, f"done {g}")


def _visible_files(folder: Path) -> set[str]:
    """The folder's files a user sees (a temporary file or a lock starts with a dot)."""
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


@pytest.mark.slow
def test_sigkill_during_slice_and_mark_saves_loses_nothing(forks: ForkServer, tmp_path: Path):
    folder, log = tmp_path / "analysis", tmp_path / "ops.log"
    annotated_analysis(folder, N_ROWS)  # its slice and mark, saved before: must survive every kill
    calib = forks.run("annotate", folder, log)
    assert calib.code == 0
    assert _on_disk(folder) == _state_after(OPS_PER_RUN)
    files = _visible_files(folder)
    assert {"slices.json", "annotations.json"} <= files
    phases: Counter[str] = Counter()
    kills = forks.kills
    for delay in _delays(10, 0.9 * calib.seconds):
        before = len([x for x in _log_lines(log) if x.startswith("done")])
        killed = forks.run("annotate", folder, log, kill_after=delay).code != 0
        lines = _log_lines(log)
        done = len([x for x in lines if x.startswith("done")])
        in_flight = lines[-1].startswith("try")
        state = _on_disk(folder)
        # every confirmed save is there; at most the one in flight is there too
        allowed = [_state_after(done)] + ([_state_after(done + 1)] if in_flight else [])
        assert state in allowed, (done, in_flight)
        phases["finished before the kill" if not killed else
               "before the first save" if done == before else
               "between saves" if not in_flight else "during a save"] += 1  # fmt: skip
        if in_flight and state == allowed[-1] and len(allowed) == 2:
            phases["after the rename, before it was confirmed"] += 1
        if temp_files(folder):
            phases["temp file left by the kill"] += 1
        assert _visible_files(folder) == files, "a kill left a visible file, or took one away"
        # the widgets on a fresh process read it back
        assert len(Explorer(Analysis.load(folder)).saved_slices) == len(state[0])
    assert forks.run("annotate", folder, log).code == 0
    total = len([x for x in _log_lines(log) if x.startswith("done")])
    print(f"\nannotations: {forks.kills - kills} kills, {total} saves, phases {dict(phases)}")
    assert _on_disk(folder) == _state_after(total)
    assert temp_files(folder) == [], "temporary files of killed saves were never removed"
    assert phases["before the first save"] >= 1, phases
    assert phases["during a save"] >= 3 and phases["temp file left by the kill"] >= 1, phases


WORKLOADS = {"embed": _embed, "project": _project, "annotate": _annotate}


# --------------------------------------------------------------------------- no network


def test_offline_analysis_makes_no_network_call(monkeypatch: pytest.MonkeyPatch, tiny_net) -> None:
    calls = []

    def no_network(self, *args, **kwargs):
        calls.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: no_network(None, *a))
    imgs, labels = blob_images(12)  # few enough to skip UMAP (no numba compile)
    with pytest.warns(ProjectionWarning):
        a = faultlens.analyze(
            imgs,
            labels=labels,
            classifier=Classifier(tiny_net, tiny_transform),
            embedder=EfficientNetLiteEmbedder(64),
            progress=False,
        )
    assert len(a) == 12 and a.arrays["imagenet_logits"].shape == (12, 1000)
    a.describe(np.arange(5))
    assert calls == []


# --------------------------------------------------------------------------- one kill, no marker

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


def _embed_blobs(cache: Path) -> tuple[np.ndarray, list[int]]:
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

    resumed, computed = _embed_blobs(cache)
    assert sorted(computed) == sorted(set(range(12)) - set(done_before))
    assert not list(shard_dir.glob(".*.tmp")), "a temporary file stayed visible"
    fresh, computed_fresh = _embed_blobs(tmp_path / "fresh")
    assert computed_fresh == list(range(12))
    np.testing.assert_array_equal(resumed, fresh)
    # a third run computes nothing
    _, again = _embed_blobs(cache)
    assert again == []
