"""Screenshot of the slice panel's evidence on the demo (README material; not a test: finding
slices on the demo takes ~50 s on 2 cores): the discovered slice that holds the most logo-carrying
tops is selected, showing its summary (clickable parts) and where the model looks.

    FAULTLENS_CACHE=<a cache holding the demo CNN> python -m tests.ui.shot_evidence [OUT.png]

The demo CNN is read from the cache (``models/``; copy ``<demo cache>/models`` there first, or it is
trained once, ~1 min); the default output is tests/ui/screenshots/explorer-evidence.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.ui.shot_slices import take
from tests.ui.test_browser import DEMO

EVIDENCE_NB = r"""
import numpy as np, faultlens
from faultlens.data.demo import CLASS_NAMES, load_spurious_fashion_mnist
from faultlens.models.classifier import Classifier
from faultlens.models.demo_cnn import demo_transform, trained_cnn
from faultlens.store import ArtifactStore

analysis = faultlens.load(%r)
analysis.meta["truth_columns"] = ["cue", "small", "planted_group"]  # never read by a describer
train = load_spurious_fashion_mnist(n_test_per_class=400, seed=0)["train"]
model = trained_cnn(train.images, train.labels, store=ArtifactStore(), seed=0, progress=False)
analysis.classifier = Classifier(model, demo_transform, class_names=CLASS_NAMES, name="demo-cnn")
ex = faultlens.explore(analysis)
found = ex.find_slices(5)
logo = analysis.table["planted_group"].to_numpy() == "top_with_logo"
ex.select_discovered(int(np.argmax([logo[s.indices].mean() for s in found])))
ex
"""

PICTURES_LOADED = (
    "() => { const im = [...document.querySelectorAll('.fl-evidence-fig img')];"
    " return im.length === 3 && im.every((i) => i.complete && i.naturalWidth > 0); }"
)


def main(out: Path) -> None:
    take(
        [EVIDENCE_NB % str(DEMO)],
        "demo-evidence.ipynb",
        [PICTURES_LOADED],
        ".fl-discovered",
        out,
    )


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).parent / "screenshots" / "explorer-evidence.png"
    )
