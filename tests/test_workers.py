"""The local engine's worker processes: on CPU they decode and run the models themselves (one torch
thread each), after this process has run the batches that fix the run's tensor shapes; the outputs
and the skip report are the same as with everything run in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from faultlens.data.sources import FolderSource
from faultlens.models.base import TorchBatchModel
from faultlens.models.runner import default_workers, run_models, runs_in_workers
from faultlens.store import ArtifactStore
from tests.helpers import MeanColour, TinyNet, tiny_transform


def _where(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TinyNet's logits, then the process id and torch thread count the batch ran with."""
    ran = torch.tensor([float(os.getpid()), float(torch.get_num_threads())])
    return torch.cat([net(x), ran.expand(len(x), 2)], dim=1)


def _model(transform=tiny_transform) -> TorchBatchModel:
    return TorchBatchModel(TinyNet().eval(), transform, forward=_where, device="cpu", model_id="w")


def _write(root: Path, sizes: dict[str, tuple[int, int] | None]) -> FolderSource:
    """One PNG per name (``None``: a corrupt file), coloured by its position."""
    for k, (name, size) in enumerate(sizes.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if size is None:
            path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        else:
            rng = np.random.default_rng(k)
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return FolderSource(root)


def test_cpu_models_run_in_the_workers_and_give_what_running_here_gives(tmp_path: Path) -> None:
    sizes: dict[str, tuple[int, int] | None] = {
        f"c{i % 3}/{i:02d}.png": (20 + i, 18) for i in range(22)
    }
    sizes["c1/05.png"] = None  # a corrupt file in a batch a worker runs
    source = _write(tmp_path / "imgs", sizes)
    model = _model()
    assert runs_in_workers([model])
    opts = {"batch_size": 4, "shard_size": 10, "progress": False}
    here = run_models(
        source, {"m": model}, store=ArtifactStore(tmp_path / "a"), num_workers=0, **opts
    )
    there = run_models(
        source, {"m": model}, store=ArtifactStore(tmp_path / "b"), num_workers=2, **opts
    )

    np.testing.assert_allclose(
        there.outputs["m"][:, :3], here.outputs["m"][:, :3], rtol=1e-5, atol=1e-6
    )
    assert there.skipped == here.skipped
    assert [s["id"] for s in there.skipped] == ["c1/05.png"]
    assert there.computed_shards == here.computed_shards == {"m": [0, 1, 2]}

    pid, threads = there.outputs["m"][:, 3], there.outputs["m"][:, 4]
    good = np.isfinite(pid)
    assert (pid[:4] == os.getpid()).all()  # the first batch (rows 0-3) fixed the shapes here
    workers = set(pid[4:][good[4:]].astype(int))  # 6 more batches, dealt out in turn
    assert len(workers) == 2 and os.getpid() not in workers
    assert (threads[4:][good[4:]] == 1).all()
    assert (here.outputs["m"][good, 3] == os.getpid()).all()


def test_workers_keep_the_shapes_of_the_first_batch_with_a_decodable_item(tmp_path: Path) -> None:
    """The first batch is all corrupt, so this process runs the second too (squares: they fix the
    shapes); the third batch, run by a worker, has wide images in the majority: they are skipped,
    its square one is kept, as when every batch runs here."""
    square, wide = (20, 20), (30, 20)
    sizes = {"a/0.png": None, "a/1.png": None, "a/2.png": None,
             "b/3.png": square, "b/4.png": square, "b/5.png": wide,
             "c/6.png": wide, "c/7.png": wide, "c/8.png": square,
             "d/9.png": wide, "d/10.png": wide, "d/11.png": wide}  # fmt: skip
    source = _write(tmp_path / "imgs", sizes)
    ids = source.ids
    model = _model(T.Compose([T.Resize(8), T.ToTensor()]))  # keeps the aspect: 8×8 or 8×12
    opts = {"batch_size": 3, "shard_size": 12, "progress": False}
    there = run_models(
        source, {"m": model}, store=ArtifactStore(tmp_path / "b"), num_workers=2, **opts
    )
    here = run_models(
        source, {"m": model}, store=ArtifactStore(tmp_path / "a"), num_workers=0, **opts
    )

    assert there.skipped == here.skipped
    skipped = {s["id"]: s["reason"] for s in there.skipped}
    assert set(skipped) == {n for n, s in sizes.items() if s != square}
    assert all("CenterCrop" in skipped[n] for n, s in sizes.items() if s == wide)
    pid = there.outputs["m"][:, 3]
    assert pid[ids.index("b/3.png")] == pid[ids.index("b/4.png")] == os.getpid()
    assert pid[ids.index("c/8.png")] != os.getpid()  # kept by a worker, with the run's shapes
    np.testing.assert_allclose(
        there.outputs["m"][:, :3], here.outputs["m"][:, :3], rtol=1e-5, atol=1e-6
    )


class _MeanColour(MeanColour):
    """A batch model of your own (not a TorchBatchModel), which always runs in this process: the
    mean colour, then the process id."""

    def run(self, batch: torch.Tensor) -> np.ndarray:
        ran = np.full((len(batch), 1), float(os.getpid()), np.float32)
        return np.concatenate([super().run(batch), ran], axis=1)


def test_other_models_run_here_while_workers_decode(tmp_path: Path) -> None:
    source = _write(tmp_path / "imgs", {f"c/{i}.png": (12, 12) for i in range(9)})
    mean = _MeanColour()
    assert not runs_in_workers([mean]) and not runs_in_workers([])
    assert not runs_in_workers([mean, _model()])
    cores = len(os.sched_getaffinity(0))
    assert default_workers(source, [_model()]) == min(8, cores)
    assert default_workers(source, [mean]) == max(0, min(4, cores - 1))
    run = run_models(source, {"m": mean}, store=ArtifactStore(tmp_path / "c"), batch_size=4,
                     num_workers=2, progress=False)  # fmt: skip
    assert (run.outputs["m"][:, 3] == os.getpid()).all()
    expected = [np.asarray(source.load(i), np.float32).mean(axis=(0, 1)) for i in range(9)]
    np.testing.assert_allclose(run.outputs["m"][:, :3], expected, rtol=1e-5)


def test_workers_are_forked_whatever_the_default_start_method(tmp_path: Path) -> None:
    """Under forkserver (Python 3.14's default on Linux) or spawn, workers that were started that
    way would have to pickle the models, and a lambda in them fails to; forked workers inherit them."""
    script = f"""
import multiprocessing, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore
from tests.test_workers import _model, _write

for method in ("forkserver", "spawn"):
    multiprocessing.set_start_method(method, force=True)
    root = Path({str(tmp_path)!r}) / method
    source = _write(root / "imgs", {{f"c/{{i}}.png": (12, 12) for i in range(9)}})
    model = _model()
    model._forward = lambda net, x: net(x)
    run = run_models(source, {{"m": model}}, store=ArtifactStore(root / "cache"), batch_size=2,
                     num_workers=2, progress=False)
    assert run.outputs["m"].shape == (9, 3) and not run.skipped
    print(method, "ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["forkserver", "ok", "spawn", "ok"]
