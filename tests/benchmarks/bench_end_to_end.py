"""The whole job a user feels: a folder of N JPEGs → ``faultlens.analyze(...)`` → an open Explorer.

    python tests/benchmarks/bench_end_to_end.py --smoke        # 500 JPEGs
    python tests/benchmarks/bench_end_to_end.py --n 10000      # the full run

(Not collected by the test run: it only prints numbers.) The folder is generated first (not timed):
N photos of about 500 × 375, JPEG quality 90, random crops with brightness/contrast jitter of the
colour sample photos bundled with scikit-image, one class sub-folder per photo. The job is
``analyze(folder, classifier=<torchvision MobileNetV3-Small, seeded random weights>)`` with the
offline embedder (EfficientNet-Lite0) and 96-pixel thumbnails, then ``faultlens.Explorer(analysis)``:

- *cold*: a fresh cache folder in a fresh process (UMAP's first compile included);
- *warm*: the same call again on the filled cache (same process).

Then the stage breakdown, each stage timed alone in this process on the same files with the
functions the runner uses (one process, no workers, so the stages add up to more than the
parallel run): read (file bytes), decode (``decode_image`` with the model's ``min_size``), the
classifier's and the embedder's transform and forward pass, the projection
(``faultlens.analysis.projection.project``, uncached) and the thumbnails (``encode_thumbnail``).
The runner logs no stage timings of its own, so they are wrapped here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
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


def stage_breakdown(
    folder: Path, classifier, embedder, thumb: int = 96, batch: int = 64
) -> dict[str, float]:
    """Seconds per stage, each timed alone in this process on every file of ``folder``."""
    import torch

    from faultlens.analysis.projection import project
    from faultlens.data.decode import decode_image, encode_thumbnail

    files = sorted(folder.glob("*/*.jpg"))
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
    emb = []
    for name, model in (("classifier", classifier), ("embedder", embedder)):
        t0 = time.perf_counter()
        xs = [model.transform(im) for im in imgs]
        t[f"{name} transform"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        outs = [model.run(torch.stack(xs[i : i + batch])) for i in range(0, len(xs), batch)]
        t[f"{name} forward"] = time.perf_counter() - t0
        if name == "embedder":
            emb = np.concatenate(outs)
    t0 = time.perf_counter()
    project(np.asarray(emb, dtype=np.float32), store=None, progress=False)
    t["projection"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for im in imgs:
        encode_thumbnail(im, thumb)
    t["thumbnails"] = time.perf_counter() - t0
    return t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="500 JPEGs")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=None, help="analyze(num_workers=...)")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--json", help="also write the result to this JSON file")
    args = ap.parse_args(argv)
    n = 500 if args.smoke else args.n

    import faultlens
    from faultlens.models.embedders import EfficientNetLiteEmbedder

    res: dict = {"n": n, "faultlens": faultlens.__version__, "cpus": os.cpu_count()}
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
        cache = Path(tmp) / "cache"
        for kind in ("cold", "warm"):
            t0 = time.perf_counter()
            analysis = faultlens.analyze(
                folder, classifier=clf, cache_dir=cache, num_workers=args.workers, progress=False
            )
            t_an = time.perf_counter() - t0
            t0 = time.perf_counter()
            faultlens.Explorer(analysis)
            t_ex = time.perf_counter() - t0
            res[kind] = {"analyze_s": t_an, "explorer_s": t_ex, "total_s": t_an + t_ex,
                         "images_per_s": n / (t_an + t_ex)}  # fmt: skip
            print(
                f"[e2e] {kind}: folder → open Explorer {t_an + t_ex:7.1f} s "
                f"(analyze {t_an:.1f} s, Explorer() {t_ex:.2f} s; {n / (t_an + t_ex):.0f} images/s)",
                flush=True,
            )
        if not args.no_breakdown:
            emb = EfficientNetLiteEmbedder()
            stages = stage_breakdown(folder, clf, emb)
            total = sum(stages.values())
            res["stages_s"] = stages
            print(f"[e2e] stage breakdown (each stage alone, one process, {n:,} images):")
            for k, v in stages.items():
                print(
                    f"[e2e]   {k:<22} {v:7.2f} s  {100 * v / total:5.1f} %  ({n / v:8.0f} images/s)"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
