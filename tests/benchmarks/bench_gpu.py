"""The embedding pipeline on a CUDA GPU: images/s of faultlens's path against the bare model on the
same card, in the same run. Needs CUDA; on a machine without one it says so and stops.

    python -m tests.benchmarks.bench_gpu [--n 4096] [--batch 256] [--workers 4 8 15] [--json f]

For each model it measures, on tensors already on the GPU:
- the bare forward as faultlens runs it (autocast to float16, channels-last memory order for
  convolutional networks), the same in the default NCHW order, and plain float32 NCHW;
- how far the float16 outputs are from float32 ones (worst cosine of the embeddings; top-1
  agreement of the logits where the model has them);
and through ``run_models`` from PNG files on disk (decode → transform → pinned batches → GPU →
shards in a fresh cache), with several decode-worker counts, next to a null model that only
decodes: the data path's own ceiling. Not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
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
from faultlens.models.runner import default_workers, run_models
from faultlens.store import ArtifactStore
from tests.benchmarks.bench_embed import make_folder


class DecodeOnly:
    """A batch model that runs nothing: what the data path alone delivers."""

    def __init__(self, like) -> None:
        self.id = f"decode-only-{like.id}"
        self._like = like

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self._like.transform(image)

    def run(self, batch: torch.Tensor) -> np.ndarray:
        return np.zeros((len(batch), 1), np.float32)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up: cuDNN autotuning, kernel loads
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fp32(model, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out = model._forward(model.module, x) if model._forward else model.module(x)
    return out.float()


def bare_rows(name: str, model, tensors: torch.Tensor, batch: int, repeats: int) -> dict:
    n = len(tensors)
    chunks = [tensors[i : i + batch] for i in range(0, n, batch)]

    def run_fp16() -> None:
        for c in chunks:
            model.run(c)

    def run_fp32() -> None:  # plain float32, NCHW: what ``module(x)`` gives
        model.module.to(memory_format=torch.contiguous_format)
        for c in chunks:
            _fp32(model, c).cpu()
        if model.channels_last:
            model.module.to(memory_format=torch.channels_last)

    res = {
        "model": name,
        "fp16": n / _timed(run_fp16, repeats),
        "fp32": n / _timed(run_fp32, repeats),
    }
    if model.channels_last:  # the same autocast run in the default (NCHW) memory order
        model.channels_last = False
        model.module.to(memory_format=torch.contiguous_format)
        res["fp16_nchw"] = n / _timed(run_fp16, repeats)
        model.channels_last = True
        model.module.to(memory_format=torch.channels_last)
    # accuracy of float16 against float32 on the same batch
    x = chunks[0]
    a = torch.from_numpy(model.run(x)).double()
    b = _fp32(model, x).cpu().double()
    dim = getattr(model, "dim", a.shape[1])
    ea, eb = a[:, :dim], b[:, :dim]
    cos = torch.nn.functional.cosine_similarity(ea, eb, dim=1)
    res["min_cosine_fp16_vs_fp32"] = float(cos.min())
    res["rel_err"] = float((a - b).norm() / b.norm())
    if a.shape[1] > dim:
        res["top1_agree"] = float((a[:, dim:].argmax(1) == b[:, dim:].argmax(1)).double().mean())
    return res


def pipeline(model, source: FolderSource, batch: int, workers: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            run_models(source, {"e": model}, store=ArtifactStore(cache), batch_size=batch,
                       num_workers=workers, progress=False)  # fmt: skip
            _sync()
            times.append(time.perf_counter() - t0)
    return len(source) / statistics.median(times)


def collect(
    n: int = 4096, size: int = 256, batch: int = 256, workers: list[int] | None = None,
    repeats: int = 3, device: str = "cuda", analyze: bool = False,
) -> list[dict]:  # fmt: skip
    """One row per model and worker count. ``device="cpu"`` only dry-runs the script."""
    if device == "cuda" and not torch.cuda.is_available():
        msg = "bench_gpu needs a CUDA GPU; none is visible to torch"
        raise SystemExit(msg)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    models = {
        "EfficientNet-Lite0 @224": EfficientNetLiteEmbedder(224, device=device),
        "open_clip ViT-B-32 (random)": OpenClipEmbedder("ViT-B-32", pretrained=None, device=device),
    }
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        source = make_folder(Path(tmp) / "imgs", n, size, processes=os.cpu_count() or 1)
        print(f"wrote {n} PNGs in {time.perf_counter() - t0:.1f} s", flush=True)
        ws = sorted(set(workers or [4, default_workers(source, models.values())]))
        for name, model in models.items():
            k = min(n, 8 * batch)
            tensors = torch.stack([model.transform(source.load(i)) for i in range(k)]).to(device)
            bare = bare_rows(name, model, tensors, batch, repeats)
            print(json.dumps(bare), flush=True)
            for w in ws:
                p = pipeline(model, source, batch, w, repeats)
                d = pipeline(DecodeOnly(model), source, batch, w, 1)
                row = {**bare, "workers": w, "pipeline": p, "decode_only": d,
                       "ratio": p / bare["fp16"]}  # fmt: skip
                print(json.dumps(row), flush=True)
                rows.append(row)
        if analyze:
            print(json.dumps(analyze_on_gpu(source, device)), flush=True)
    return rows


def analyze_on_gpu(source: FolderSource, device: str = "cuda") -> dict:
    """``faultlens.analyze`` end to end with a ResNet-18 classifier (random weights) and the offline
    embedder, both on ``device``: seconds, and that the models ran there with finite outputs."""
    import torchvision
    from torchvision import transforms as T

    import faultlens
    from faultlens.models.classifier import Classifier

    torch.manual_seed(0)
    tf = T.Compose([T.Resize((224, 224), antialias=True), T.ToTensor()])
    clf = Classifier(torchvision.models.resnet18(num_classes=4), tf, device=device)
    emb = EfficientNetLiteEmbedder(224, device=device)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        a = faultlens.analyze(source, classifier=clf, embedder=emb, cache_dir=cache, progress=False)
        seconds = time.perf_counter() - t0
    return {
        "analyze_s": seconds, "images": len(a.table),
        "devices": sorted({str(next(clf.module.parameters()).device),
                           str(next(emb.module.parameters()).device)}),
        "finite_probs": bool(np.isfinite(a.probs).all()),
        "finite_map": bool(np.isfinite(a.table[["x", "y"]].to_numpy()).all()),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="*", default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script")
    ap.add_argument("--analyze", action="store_true", help="also time faultlens.analyze end to end")
    args = ap.parse_args()
    rows = collect(args.n, args.size, args.batch, args.workers, args.repeats, args.device,
                   args.analyze)  # fmt: skip
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"\n{gpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}")
    print(f"{'model':<30} {'workers':>7} {'bare fp32':>10} {'bare fp16':>10} {'fp16 NCHW':>9} "
          f"{'pipeline':>9} {'decode':>8} {'ratio':>6} {'cos':>7}")  # fmt: skip
    for r in rows:
        cl = r.get("fp16_nchw")
        print(f"{r['model']:<30} {r['workers']:>7} {r['fp32']:10.0f} {r['fp16']:10.0f} "
              f"{(f'{cl:.0f}' if cl else '—'):>9} {r['pipeline']:9.0f} {r['decode_only']:8.0f} "
              f"{r['ratio']:6.2f} {r['min_cosine_fp16_vs_fp32']:7.4f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
