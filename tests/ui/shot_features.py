"""Screenshot of the FeatureBrowser on the demo: Shirt's top features, the logo feature's top and
bottom images each beside its activation map (README material; not a test).

    python -m tests.ui.shot_features [/tmp/feature-browser.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.ui.shot_slices import take
from tests.ui.test_browser import DEMO

FEATURES_NB = r"""
import numpy as np, faultlens
from IPython.display import display
from faultlens.data.demo import load_spurious_fashion_mnist, CUE_CLASS
from faultlens.models.demo_cnn import demo_transform, trained_cnn
from faultlens.store import ArtifactStore

analysis = faultlens.load(%r)
train = load_spurious_fashion_mnist()["train"]
model = trained_cnn(train.images, train.labels, store=ArtifactStore(analysis.folder.parent), progress=False)
fb = faultlens.FeatureBrowser(analysis, model, "features.7", demo_transform, k=6)
fb.class_index = CUE_CLASS
fb.feature = 3  # the logo feature of the demo CNN (see notebooks/03-spurious-features.ipynb)
ex = faultlens.explore(analysis, height=260)
fb.link_explorer(ex)
display(ex)
display(fb)
"""

LOADED = (
    "() => { const t = [...document.querySelectorAll('.fl-features .fl-group img')];"
    " return t.length >= 12 && t.every(i => i.complete && i.naturalWidth > 0); }"
)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/feature-browser.png")  # noqa: S108
    take(
        [FEATURES_NB % str(DEMO)],
        "features.ipynb",
        [".fl-features .fl-group", LOADED],
        ".fl-features",
        out,
    )
