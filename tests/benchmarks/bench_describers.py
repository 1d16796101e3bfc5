"""Top-1 accuracy of the offline describers on planted kinds (tests/planted_images.py): for each image
set, kind and seed, whether the planted property (image_properties) or the stamped region
(evidence_location over edge-energy maps) is ranked first.

    PYTHONPATH=widgets python tests/benchmarks/bench_describers.py [n_seeds] [n_images]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from faultlens.analysis import describe
from tests.planted_images import (
    PROPERTY_KINDS,
    SETS,
    STAMP_CELLS,
    edge_maps,
    planted_set,
)


def main(n_seeds: int = 5, n: int = 100) -> None:
    print("| set | planted kind | describer | top-1 |")
    print("|---|---|---|---|")
    for name in SETS:
        for kind, want in PROPERTY_KINDS.items():
            if name == "fashion" and kind == "desaturated":
                continue  # grey images
            hits = 0
            for seed in range(n_seeds):
                imgs, members = planted_set(name, kind, seed, n=n)
                hits += describe.image_properties(imgs, members).terms[0][0] == want
            print(f"| {name} | {kind} | properties | {hits}/{n_seeds} |")
        for region in STAMP_CELLS:
            hits = 0
            for seed in range(n_seeds):
                imgs, members = planted_set(name, f"stamp:{region}", seed, n=n)
                top = describe.evidence_location(edge_maps(imgs), members).terms[0][0]
                hits += top == region
            print(f"| {name} | stamp {region} | regions | {hits}/{n_seeds} |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
