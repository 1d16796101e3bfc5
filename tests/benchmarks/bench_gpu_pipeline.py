"""The GPU decoding path (``faultlens.data.gpu_decode``) against the bare float16 model and against
the CPU-decoded path, on JPEGs like ImageNet's (about 500 × 375, quality 90).

    python tests/benchmarks/bench_gpu_pipeline.py                 # on a CUDA machine: n=4096
    python tests/benchmarks/bench_gpu_pipeline.py --device cpu --n 64 --models lite   # code-path check

For EfficientNet-Lite0 and ViT-B-32 (open_clip architecture, random weights: throughput needs no
weights), in one run:

- *bare*: ``model.run`` (autocast float16 on CUDA, channels-last for the CNN) on batches already on
  the device — the ceiling;
- *loop*: ``iter_batches`` over the JPEG files (reader thread, JPEGs decoded on the device by
  ``decode_jpeg``, resize + normalise there) → ``model.run``: the GPU path in a loop of your own;
- *runner, gpu*: ``run_models(decode="gpu")`` on the same folder: the same path inside the runner
  (the model's :func:`~faultlens.models.device_decode.preprocess_for`, skips, cache shards);
- *runner, cpu*: ``run_models(decode="cpu")`` (decode on CPU worker processes → pinned batches →
  model), the path every run took before.

Prints images/s and the ratios runner gpu / bare (the goal: ≥ 0.5) and runner gpu / runner cpu.
Without CUDA the GPU branch runs with the CPU as its device (``decode_jpeg`` on the CPU): the
figures only show that the code path runs, they are not the GPU figures. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from faultlens.data.gpu_decode import Preprocess, iter_batches  # noqa: E402
from faultlens.data.sources import FolderSource  # noqa: E402
from faultlens.models import device_decode  # noqa: E402
from faultlens.models.runner import run_models  # noqa: E402
from faultlens.store import ArtifactStore  # noqa: E402
from tests.benchmarks.bench_end_to_end import make_jpeg_folder  # noqa: E402


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def models(device: str, which: list[str]) -> dict[str, tuple[object, Preprocess]]:
    """name → (batch model, the Preprocess the runner's GPU path gives it)."""
    from faultlens.models.embedders import EfficientNetLiteEmbedder, OpenClipEmbedder

    out = {}
    if "lite" in which:
        m = EfficientNetLiteEmbedder(224, device=device)
        out["EfficientNet-Lite0 @224"] = (m, device_decode.preprocess_for(m))
    if "vit" in which:
        m = OpenClipEmbedder("ViT-B-32", pretrained=None, device=device)
        out["open_clip ViT-B-32 (random)"] = (m, device_decode.preprocess_for(m))
    return out


def _median_rate(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def collect(
    n: int, batch: int, device: str, which: list[str], repeats: int, workers: int | None
) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_jpeg_folder(Path(tmp) / "jpegs", n)
        source = FolderSource(folder)
        paths = list(source.paths or [])
        for name, (model, pre) in models(device, which).items():
            x = next(iter_batches(paths[:batch], pre, batch_size=batch, device=device)).images
            k = max(1, n // len(x))

            def bare(model=model, x=x, k=k) -> None:
                for _ in range(k):
                    model.run(x)

            def loop(model=model, pre=pre) -> None:
                for b in iter_batches(paths, pre, batch_size=batch, device=device):
                    model.run(b.images)

            def runner(decode: str, model=model) -> None:
                with tempfile.TemporaryDirectory() as cache:
                    run_models(source, {"m": model}, store=ArtifactStore(cache), batch_size=batch,
                               num_workers=workers, progress=False, decode=decode)  # fmt: skip

            bare_rate = _median_rate(bare, k * len(x), repeats)
            loop_rate = _median_rate(loop, n, repeats)
            gpu_rate = _median_rate(lambda: runner("gpu"), n, repeats)
            cpu_rate = _median_rate(lambda: runner("cpu"), n, repeats)
            row = {"model": name, "device": device, "n": n, "batch": batch, "bare_img_s": bare_rate,
                   "loop_img_s": loop_rate, "runner_gpu_img_s": gpu_rate, "runner_cpu_img_s": cpu_rate,
                   "runner_gpu_over_bare": gpu_rate / bare_rate,
                   "runner_gpu_over_cpu": gpu_rate / cpu_rate,
                   "measured_on_gpu": device.startswith("cuda")}  # fmt: skip
            print(
                f"[gpu-pipeline] {name:<28} {device}: bare {bare_rate:8.0f} img/s, loop "
                f"{loop_rate:8.0f}, runner gpu {gpu_rate:8.0f} ({gpu_rate / bare_rate:.2f} of bare), "
                f"runner cpu {cpu_rate:8.0f} img/s (gpu ×{gpu_rate / cpu_rate:.2f})",
                flush=True,
            )
            rows.append(row)
    if not device.startswith("cuda"):
        print(
            "[gpu-pipeline] no CUDA here: these figures only show the code path runs; the GPU figures are unmeasured"
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="*", default=["lite", "vit"], choices=["lite", "vit"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--workers", type=int, default=None, help="run_models' num_workers (today's path)"
    )
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    else:  # the runner's GPU branch with the CPU as its device: the code path, not a GPU figure
        device_decode.cuda_device = lambda: torch.device("cpu")
    rows = collect(a.n, a.batch, a.device, a.models, a.repeats, a.workers)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
