"""Text search benchmark: ``Explorer.search`` (encode the phrase, rank every image by cosine, select
the top k, statistics and grid page) at 1e5 rows of 512-d embeddings, with a tiny randomly
initialised open_clip text tower (the ranking does not depend on the weights; a real ViT-B-32 text
tower adds its own encode time). Baseline in the same run: the ranking by a normalised copy of the
embeddings (what ``nearest`` did before) and a plain ``emb @ q`` + ``argpartition``.

Run as a script (not collected by pytest):
``PYTHONPATH=widgets python -m tests.benchmarks.bench_search [--rows 100000] [--repeat 10]``.
Prints medians; asserts no times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from faultlens.analysis.neighbors import _unit, nearest
from faultlens.ui.explorer import Explorer
from tests.helpers import TINY_CLIP, analysis_from

PHRASES = ["cat", "dog", "bus", "tree", "car", "boat", "bird", "plane", "ship", "frog", "horse"]


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    import open_clip

    from faultlens.models.embedders import OpenClipEmbedder

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp())
    (folder / "bench-tiny.json").write_text(json.dumps(dict(TINY_CLIP, embed_dim=args.dim)))
    open_clip.add_model_config(folder)
    enc = OpenClipEmbedder("bench-tiny", pretrained=None, device="cpu")
    n, rng = args.rows, np.random.default_rng(0)
    emb = _unit(rng.normal(size=(n, args.dim)).astype(np.float32))
    label = np.arange(n) % 10
    xy = rng.normal(size=(n, 2)).astype(np.float32)
    a = analysis_from(label, label, [str(i) for i in range(10)], xy=xy, embeddings=emb)
    a.meta["models"] = {"embedder": enc.id}
    ex = Explorer(a, text_encoder=enc)
    q = enc.encode_text(["a photo of a cat"])[0]
    it = iter(PHRASES * (args.repeat + 2))
    for k in (50, 1000):
        search = _median_ms(lambda k=k: ex.search(f"a photo of a {next(it)}", k=k), args.repeat)
        rank = _median_ms(lambda k=k: nearest(emb, q, k), args.repeat)
        copy = _median_ms(lambda: _unit(emb) @ _unit(q[None])[0], args.repeat)
        plain = _median_ms(lambda k=k: np.argpartition(-(emb @ q), k)[:k], args.repeat)
        print(
            f"n={n} d={args.dim} k={k}: search {search:.1f} ms (median of {args.repeat}); "
            f"ranking (nearest) {rank:.1f} ms; baselines: normalised copy {copy:.1f} ms, "
            f"plain matvec + argpartition {plain:.1f} ms"
        )
    encode = _median_ms(lambda: enc.encode_text(["a photo of a cat"]), args.repeat)
    print(f"encode_text (tiny tower) {encode:.1f} ms")


if __name__ == "__main__":
    main()
