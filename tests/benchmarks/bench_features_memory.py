"""Peak memory of opening a FeatureBrowser on N images, above the same process after its imports.

    python tests/benchmarks/bench_features_memory.py [--n 100000]

One fresh process per run: import faultlens and its dependencies, read the resident set size (the
baseline), build a synthetic analysis of N random 28×28 RGB images (uint8, held by an ArraySource:
the "data" figure) and a small seeded CNN whose transform reads each image at 56×56 (models
usually read images larger than they are stored, e.g. 224×224), open a FeatureBrowser on its last
conv layer, show the top and bottom images of a feature as tiles, and print the peak RSS
(``ru_maxrss``) above the baseline; then page through every feature of the layer in two classes
(each page's tiles rendered) and print the resident memory after the first page and the last.
Run it with ``PYTHONPATH=widgets`` to measure this tree, or without to measure the installed copy.
Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, resource, sys, tempfile, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np, pandas as pd, torch, anywidget  # noqa: F401
    from torch import nn
    import faultlens
    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource
    from faultlens.store import ArtifactStore
    from faultlens.ui.features import FeatureBrowser

    def rss_mb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    torch.manual_seed(0)
    torch.set_num_threads(1)
    n = int(sys.argv[1])
    base = rss_mb()
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    k = 10
    label = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.2, rng.integers(0, k, n), label)
    table = pd.DataFrame({"id": np.arange(n).astype(str), "label": label, "pred": pred,
                          "correct": pred == label, "source_index": np.arange(n)})
    images = rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8)
    a = Analysis(table, class_names=[f"c{i}" for i in range(k)],
                 source=ArraySource(images, label))
    model = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, k)).eval()

    def transform(im):
        x = torch.from_numpy(np.asarray(im.convert("RGB").resize((56, 56)), np.float32) / 255)
        return x.permute(2, 0, 1)

    kw = {"store": ArtifactStore(tempfile.mkdtemp())} if "store" in FeatureBrowser.__init__.__code__.co_varnames else {}
    if "progress" in FeatureBrowser.__init__.__code__.co_varnames:
        kw["progress"] = lambda *_: None
    fb = FeatureBrowser(a, model, "3", transform, **kw)
    fb.send = lambda *_a, **_k: None  # no front end: the Python side only
    fb.tile_pngs(fb.groups["top"]["rows"] + fb.groups["bottom"]["rows"])
    opened = {"peak_mb": peak_mb(), "above_mb": peak_mb() - base, "seconds": time.perf_counter() - t0}
    # paging: every feature of the layer in two classes, each page's tiles rendered as the view asks
    rss, pages = [], 0
    for c in (0, 1):
        fb.class_index = c
        for f in range(len(fb.features)):
            fb.feature = f
            fb.tile_pngs(fb.groups["top"]["rows"] + fb.groups["bottom"]["rows"])
            pages += 1
            rss.append(rss_mb())
    print(json.dumps({"n": n, "base_mb": base, **opened, "data_mb": images.nbytes / 2**20,
                      "pages": pages, "rss_after_first_page_mb": rss[0], "rss_after_last_mb": rss[-1],
                      "rss_max_mb": max(rss), "paging_s": time.perf_counter() - t0 - opened["seconds"]}))
    """
)


def collect(n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(n)], capture_output=True, text=True,
                         check=False)  # fmt: skip
    if out.returncode != 0:
        msg = f"the FeatureBrowser session failed:\n{out.stderr[-3000:]}"
        raise RuntimeError(msg)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    for n in ap.parse_args().n:
        r = collect(n)
        print(f"FeatureBrowser on {n:,} images: peak RSS {r['above_mb']:.0f} MB above "
              f"{r['base_mb']:.0f} MB of imports (images held by the source: {r['data_mb']:.0f} MB; "
              f"{r['seconds']:.0f} s); paging {r['pages']} features: RSS {r['rss_after_first_page_mb']:.0f} MB "
              f"after the first, {r['rss_after_last_mb']:.0f} MB after the last (max {r['rss_max_mb']:.0f}; "
              f"{r['paging_s']:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
