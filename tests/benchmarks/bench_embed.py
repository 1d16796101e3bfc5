"""Embedding pipeline throughput vs the bare model's forward pass on pre-made tensors, same run.

    python tests/benchmarks/bench_embed.py [--n 1024] [--repeats 3] [--skip-vit]

Prints images/s of both and their ratio (goal ≥ 0.9). The pipeline path decodes PNG files from a
folder, transforms, batches, runs the model and writes shards to a fresh cache, as ``run_models``
does by default; the baseline only runs the forward pass (``model.run``, torch's default threads)
on tensors made beforehand. Two more figures say what is possible: the same forward pass split
the way the pipeline's workers run it (one process per worker, one torch thread each), and the
ceiling of the ratio when decoding can only take CPU time from the model (every core decoding
and running the model, one thread each). Not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faultlens.data.sources import FolderSource
from faultlens.models.embedders import EfficientNetLiteEmbedder, OpenClipEmbedder
from faultlens.models.runner import available_cores, run_models
from faultlens.store import ArtifactStore


def _write_png(args: tuple[Path, int, int, int]) -> None:
    root, i, size, n_classes = args
    rng = np.random.default_rng(i)
    d = root / f"c{i % n_classes}"
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")


def make_folder(
    root: Path, n: int, size: int, n_classes: int = 4, processes: int = 1
) -> FolderSource:
    """``n`` seeded noise PNGs of ``size``² in ``n_classes`` class folders (the worst case for PNG
    decoding: nothing compresses), written by ``processes`` processes."""
    jobs = [(root, i, size, n_classes) for i in range(n)]
    if processes > 1:
        from multiprocessing import Pool

        with Pool(processes) as pool:
            pool.map(_write_png, jobs, chunksize=64)
    else:
        for job in jobs:
            _write_png(job)
    return FolderSource(root)


def make_jpeg_folder(root: Path, n: int, width: int = 2400, height: int = 1800) -> FolderSource:
    """``n`` camera-sized JPEG photos (skimage's astronaut, scaled up and shifted per image)."""
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    arr = np.asarray(base)
    for i in range(n):
        d = root / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        shifted = np.roll(arr, (37 * i, 53 * i), axis=(0, 1))
        Image.fromarray(shifted).save(d / f"{i}.jpg", quality=90)
    return FolderSource(root)


def jpeg_row(n: int, repeats: int, batch: int, workers: int) -> dict:
    """Lite0 @224 over big JPEGs: decoding at reduced scale (the model says it needs 224 px)
    against the same pipeline decoding every JPEG whole."""
    model = EfficientNetLiteEmbedder(224)
    with tempfile.TemporaryDirectory() as tmp:
        source = make_jpeg_folder(Path(tmp) / "jpegs", n)
        reduced = statistics.median(pipeline(model, source, batch, workers) for _ in range(repeats))
        model.input_size = None  # no size hint: every JPEG decoded whole
        whole = statistics.median(pipeline(model, source, batch, workers) for _ in range(repeats))
    return {
        "figure": "embedding pipeline, EfficientNet-Lite0 @224, 2400×1800 JPEGs",
        "ours": reduced, "baseline": whole, "baseline_is": "same pipeline decoding JPEGs whole",
        "unit": "img/s", "ratio": reduced / whole, "goal": None, "met": None,
        "note": f"{n} photos, reduced-scale JPEG decoding (DCT scaling to ≥ 224 px), batch "
        f"{batch}, {workers} workers, medians of {repeats}",
    }  # fmt: skip


def bare(model, tensors: torch.Tensor, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(tensors), batch):
        model.run(tensors[i : i + batch])
    return len(tensors) / (time.perf_counter() - t0)


def split_bare(model, tensors: torch.Tensor, batch: int, processes: int) -> float:
    """The bare forward pass as the pipeline's workers run it: ``processes`` forked processes, one
    torch thread each, taking alternate batches of the pre-made tensors."""
    if processes < 2:
        return bare(model, tensors, batch)
    t0 = time.perf_counter()
    pids = []
    for w in range(processes):
        pid = os.fork()
        if pid == 0:  # one thread: a child forked after OpenMP ran hangs with more
            code = 1
            try:
                torch.set_num_threads(1)
                for i in range(w * batch, len(tensors), processes * batch):
                    model.run(tensors[i : i + batch])
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    if any(os.waitpid(pid, 0)[1] for pid in pids):
        msg = "a forward-pass process failed"
        raise RuntimeError(msg)
    return len(tensors) / (time.perf_counter() - t0)


def cpu_ceiling(model, source: FolderSource, tensors: torch.Tensor, batch: int) -> float:
    """The best pipeline images/s on this machine's cores when decoding can only take CPU time
    from the model: every core decodes and runs the model with one thread, so it is cores over
    the CPU seconds of decoding plus forward per image (both measured with one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.process_time()
        for i in range(len(source)):
            model.transform(source.load(i))
        decode = time.process_time() - t0
        t0 = time.process_time()
        for i in range(0, len(tensors), batch):
            model.run(tensors[i : i + batch])
        forward = time.process_time() - t0
    finally:
        torch.set_num_threads(threads)
    return available_cores() * len(source) / (decode + forward)


def pipeline(
    model, source: FolderSource, batch: int, workers: int, thumbnails: int | None = None
) -> float:
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        run_models(
            source,
            {"e": model},
            store=ArtifactStore(cache),
            batch_size=batch,
            num_workers=workers,
            progress=False,
            thumbnails=thumbnails,
        )
        return len(source) / (time.perf_counter() - t0)


def thumbnail_rows(n: int, repeats: int, batch: int, workers: int, page: int = 24) -> list[dict]:
    """Thumbnails rendered in the embedding pass into one store, over big JPEGs: (1) what it adds
    to the pass (Lite0 @224 with 96-px thumbnails against without); (2) a grid page of ``page``
    thumbnails read from the store against rendered on demand (decode at reduced scale, shrink,
    encode: what the Explorer does without a store), medians over pages of different images."""
    from faultlens.data.decode import encode_thumbnail
    from faultlens.models.runner import open_thumbnails

    model = EfficientNetLiteEmbedder(224)
    with tempfile.TemporaryDirectory() as tmp:
        source = make_jpeg_folder(Path(tmp) / "jpegs", n)
        pipeline(model, source, batch, workers)  # warm-up (page cache, worker start)
        plain = statistics.median(pipeline(model, source, batch, workers) for _ in range(repeats))
        with_thumbs = statistics.median(
            pipeline(model, source, batch, workers, thumbnails=96) for _ in range(repeats)
        )
        store = ArtifactStore(Path(tmp) / "cache")
        run_models(source, {}, store=store, thumbnails=96, num_workers=workers, progress=False)
        blobs, _ = open_thumbnails(source, store, 96, 1024)
        pages = [list(range(a, min(a + page, n))) for a in range(0, n, page)]

        def stored(rows: list[int]) -> float:
            t0 = time.perf_counter()
            for i in rows:
                blobs.get(i)
            return (time.perf_counter() - t0) * 1e3

        def rendered(rows: list[int]) -> float:
            t0 = time.perf_counter()
            for i in rows:
                encode_thumbnail(source.load(i, min_size=96), 96)
            return (time.perf_counter() - t0) * 1e3

        ours = statistics.median(stored(p) for p in pages)
        base = statistics.median(rendered(p) for p in pages)
        per_image = blobs.nbytes() / n
    return [
        {
            "figure": "embedding pass + 96-px thumbnails, EfficientNet-Lite0 @224, 2400×1800 JPEGs",
            "ours": with_thumbs, "baseline": plain, "baseline_is": "same pass without thumbnails",
            "unit": "img/s", "ratio": with_thumbs / plain, "goal": None, "met": None,
            "note": f"{n} photos, thumbnails encoded in the workers ({workers}); store "
            f"{per_image / 1024:.1f} KB per image; medians of {repeats}",
        },
        {
            "figure": f"grid page of {page} thumbnails, 2400×1800 JPEGs",
            "ours": ours, "baseline": base, "baseline_is": "rendered on demand from the files",
            "unit": "ms", "ratio": base / ours, "goal": None, "met": None,
            "note": f"read from the thumbnail store vs decoded at reduced scale + shrunk + "
            f"encoded; ratio = speed-up; medians over {len(pages)} pages",
        },
    ]  # fmt: skip


def collect(
    n: int = 1024, repeats: int = 3, batch: int = 64, workers: int | None = None, vit: bool = True,
    jpegs: int = 64,
) -> list[dict]:  # fmt: skip
    """One row per model: pipeline images/s against the bare forward pass (goal: ratio ≥ 0.9);
    then big JPEGs decoded at reduced scale against decoded whole (``jpegs`` photos; 0: skip)."""
    from faultlens.models.runner import default_workers, runs_in_workers

    torch.manual_seed(0)
    models = {
        "EfficientNet-Lite0 @224": EfficientNetLiteEmbedder(224),
        "EfficientNet-Lite0 @112": EfficientNetLiteEmbedder(112),
    }
    if vit:
        models["open_clip ViT-B-32 (random)"] = OpenClipEmbedder("ViT-B-32", pretrained=None)
    rows = []
    layouts: dict[str, int] = {}  # workers per model
    with tempfile.TemporaryDirectory() as tmp:
        source = make_folder(Path(tmp) / "imgs", n, 256, processes=available_cores())
        for name, model in models.items():
            w = default_workers(source, [model]) if workers is None else workers
            layouts[name] = w
            tensors = torch.stack([model.transform(source.load(i)) for i in range(len(source))])
            bare(model, tensors[:batch], batch)  # warm-up
            b = statistics.median(bare(model, tensors, batch) for _ in range(repeats))
            p = statistics.median(pipeline(model, source, batch, w) for _ in range(repeats))
            split = statistics.median(split_bare(model, tensors, batch, w) for _ in range(repeats))
            ceiling = cpu_ceiling(model, source, tensors, batch) / b
            layout = (
                f"{w} worker processes, each decoding and running the model with 1 torch thread"
                if w and runs_in_workers([model])
                else f"{w} decoding workers, the model here with {torch.get_num_threads()} threads"
            )
            rows.append({
                "figure": f"embedding pipeline, {name}", "ours": p, "baseline": b,
                "baseline_is": "bare forward on pre-made tensors", "unit": "img/s",
                "ratio": p / b, "goal": "ratio ≥ 0.9", "met": p / b >= 0.9,
                "ceiling": ceiling, "split": split,
                "note": f"{n} PNGs 256×256, batch {batch}, {layout}; the bare forward split that "
                f"way: {split:.1f} img/s (ratio {p / split:.2f}); ceiling when decoding takes CPU "
                f"from the model: {ceiling:.2f}; medians of {repeats}",
            })  # fmt: skip
    if jpegs:  # the layout of the Lite0 rows above
        w = layouts["EfficientNet-Lite0 @224"]
        rows.append(jpeg_row(jpegs, repeats, batch, w))
        rows.extend(thumbnail_rows(jpegs, repeats, batch, w))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--skip-vit", action="store_true")
    args = ap.parse_args()
    rows = collect(args.n, args.repeats, args.batch, args.workers, vit=not args.skip_vit)
    print(f"{'model':<44} {'bare img/s':>11} {'pipeline img/s':>15} {'ratio':>7}")
    for r in rows:
        ceiling = (
            f"   (vs split forward {r['ours'] / r['split']:.2f}, ceiling {r['ceiling']:.2f})"
            if "ceiling" in r
            else ""
        )
        print(f"{r['figure']:<44} {r['baseline']:11.1f} {r['ours']:15.1f} {r['ratio']:7.2f}"
              f"{ceiling}")  # fmt: skip
    print(rows[0]["note"])


if __name__ == "__main__":
    main()
