"""Activation maps and Grad-CAM for 64 images on CPU vs the bare forward pass, same run.

    python tests/benchmarks/bench_spurious.py [--n 64] [--repeats 5]

Uses the demo CNN with seeded random weights (no training, nothing downloaded): map cost does not
depend on the weights. Prints medians and the ratios map time / forward time; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from faultlens.analysis import spurious as sp
from faultlens.models.demo_cnn import SmallCNN


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = SmallCNN().eval()
    x = torch.rand(args.n, 1, 28, 28)
    nf = sp.NeuralFeatures(model, "features.7")

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    base = median_time(forward, args.repeats)
    rows = {
        "NAM (1 feature)": median_time(lambda: nf.activation_maps(x, 3), args.repeats),
        "pooled activations": median_time(lambda: nf.activations(x), args.repeats),
        "Grad-CAM (features.6)": median_time(
            lambda: sp.grad_cam(model, "features.6", x, 6), args.repeats
        ),
        "NAM + overlay RGB": median_time(
            lambda: [
                sp.overlay(im[0].numpy(), m)
                for im, m in zip(x, nf.activation_maps(x, 3), strict=True)
            ],
            args.repeats,
        ),
    }
    print(f"{args.n} images, 1×28×28, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"  bare forward pass        {1000 * base:8.2f} ms   (1.00×)")
    for name, sec in rows.items():
        print(f"  {name:<24} {1000 * sec:8.2f} ms   ({sec / base:.2f}× the forward pass)")


if __name__ == "__main__":
    main()
