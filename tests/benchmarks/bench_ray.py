"""The model pass on Ray Data (1 and 2 local workers) against the local engine, same input, same run.

    python -m tests.benchmarks.bench_ray [--n 2000] [--size 96] [--cpus N]

A folder of ``--n`` random PNGs (``--size`` pixels square, 3 classes) goes through a ResNet-18
classifier (random weights, 64 px input) and the offline EfficientNet-Lite0 embedder (112 px), into
a fresh cache each time: first with the local engine (``run_models``, default decoding workers),
then with ``RayEngine(workers=1)`` and ``RayEngine(workers=2)`` (one CPU per actor) on a local Ray
instance of ``--cpus`` CPUs. Prints per engine the wall time, images/s and the ratio to the local
engine; the fixed cost of a Ray pass (actor start-up, measured on one small shard) and the
throughput without it; and the peak resident memory of each Ray worker (sampled from /proc, or
psutil when installed) and of this process. Also checks that all engines gave the same outputs.
Not a test: asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray
import torch
import torchvision
from torchvision import transforms as T

from faultlens.data.sources import FolderSource
from faultlens.models.classifier import Classifier
from faultlens.models.embedders import EfficientNetLiteEmbedder
from faultlens.models.ray_runner import RayEngine
from faultlens.models.runner import run_models
from faultlens.store import ArtifactStore
from tests.benchmarks.bench_embed import make_folder

ACTOR_TAG = "_ModelActor"


def models() -> dict[str, object]:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=3)
    tf = T.Compose([T.Resize((64, 64), antialias=True), T.ToTensor()])
    return {"classifier": Classifier(net, tf), "embedder": EfficientNetLiteEmbedder(112)}


def rss_mib(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, MiB (psutil if installed, else /proc)."""
    try:
        import psutil

        info = psutil.Process(pid).memory_info()
        return info.rss / 2**20, getattr(info, "peak_wset", info.rss) / 2**20
    except ImportError:
        fields = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


class WorkerMemory:
    """Samples the peak RSS of every Ray model actor process while it lives."""

    def __init__(self) -> None:
        self.peak: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._before: set[int] = set()

    @staticmethod
    def actors() -> list[int]:
        found = []
        for pid_dir in Path("/proc").iterdir():
            if pid_dir.name.isdigit():
                with contextlib.suppress(OSError):
                    if ACTOR_TAG in (pid_dir / "cmdline").read_bytes().decode(errors="replace"):
                        found.append(int(pid_dir.name))
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in set(self.actors()) - self._before:  # actors of an earlier pass may linger
                with contextlib.suppress(OSError):
                    now, hwm = rss_mib(pid)
                    self.peak[pid] = max(self.peak.get(pid, 0.0), now, hwm)
            self._stop.wait(0.2)

    def __enter__(self) -> WorkerMemory:
        self._before = set(self.actors())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_local(source: FolderSource, cache: Path) -> tuple[float, dict[str, np.ndarray]]:
    ms = models()
    t0 = time.perf_counter()
    out = run_models(source, ms, store=ArtifactStore(cache), progress=False)
    return time.perf_counter() - t0, out.outputs


def run_ray(
    source: FolderSource, cache: Path, workers: int
) -> tuple[float, dict[str, np.ndarray], list[float]]:
    engine = RayEngine(workers=workers, num_cpus=1)
    ms = models()
    with WorkerMemory() as mem:
        t0 = time.perf_counter()
        engine.fill(source, ms, store=ArtifactStore(cache), batch_size=64, progress=False)
        wall = time.perf_counter() - t0
    out = run_models(source, ms, store=ArtifactStore(cache), progress=False)
    return wall, out.outputs, sorted(mem.peak.values())


def collect(n: int = 2000, size: int = 96, cpus: int | None = None) -> list[dict]:
    """One row per engine: wall seconds, images/s, ratio to the local engine, Ray's fixed cost,
    images/s without it, and the peak RSS (MiB) of each Ray worker."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source = make_folder(tmp_path / "imgs", n, size, n_classes=3)
        small = make_folder(tmp_path / "small", 64, size, n_classes=3)
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        init_s = time.perf_counter() - t0
        local_s, ref = run_local(source, tmp_path / "local")
        rows = [{"engine": "local", "workers": None, "wall_s": local_s, "fixed_s": None, "rss": []}]
        for workers in (1, 2):
            fixed, _, _ = run_ray(small, tmp_path / f"small-{workers}", workers)
            wall, out, peaks = run_ray(source, tmp_path / f"ray-{workers}", workers)
            for name, arr in ref.items():
                diff = float(np.nanmax(np.abs(out[name] - arr)))
                assert diff < 1e-4, (name, workers, diff)
            rows.append(
                {
                    "engine": "ray",
                    "workers": workers,
                    "wall_s": wall,
                    "fixed_s": fixed,
                    "rss": peaks,
                }
            )
        ray.shutdown()
    for row in rows:
        row |= {
            "images": n,
            "img_per_s": n / row["wall_s"],
            "ratio_vs_local": local_s / row["wall_s"],
            "img_per_s_without_fixed": n / (row["wall_s"] - row["fixed_s"])
            if row["fixed_s"] is not None and row["wall_s"] > row["fixed_s"]
            else None,
            "ray_init_s": init_s,
            "driver_peak_rss_mib": rss_mib(os.getpid())[1],
        }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray instance")
    args = ap.parse_args()
    rows = collect(args.n, args.size, args.cpus)
    print(
        f"\n{args.n} PNGs {args.size}x{args.size}; ResNet-18@64 + EfficientNet-Lite0@112; "
        f"{os.cpu_count()} cores (load average at the end {os.getloadavg()[0]:.1f}), "
        f"torch {torch.__version__}, ray {ray.__version__}; "
        f"ray.init {rows[0]['ray_init_s']:.1f} s (not counted)"
    )
    head = (
        f"{'engine':<7}{'workers':>8}{'wall s':>9}{'img/s':>8}{'vs local':>10}"
        f"{'fixed s':>9}{'img/s w/o fixed':>17}   peak RSS per worker (MiB)"
    )
    print(head)
    print("-" * len(head))

    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for r in rows:
        print(
            f"{r['engine']:<7}{fmt(r['workers'], 'd'):>8}{r['wall_s']:>9.1f}{r['img_per_s']:>8.0f}"
            f"{r['ratio_vs_local']:>9.2f}x{fmt(r['fixed_s'], '.1f'):>9}"
            f"{fmt(r['img_per_s_without_fixed'], '.0f'):>17}   "
            + (", ".join(f"{p:.0f}" for p in r["rss"]) or "-")
        )
    print(
        f"driver (this process) peak RSS: {rows[0]['driver_peak_rss_mib']:.0f} MiB; "
        "outputs equal across engines"
    )


if __name__ == "__main__":
    main()
