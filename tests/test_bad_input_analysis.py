"""Bad input to the analysis layer: ``analyze``'s arguments, the projection, slicing and the names
written into an analysis folder.

Labels outside the classes and NaN probabilities are named; a class of one image does not stop
slicing; probs of another width than the classes, or a bad row after a skipped item, are named by
their source row; when every item is skipped the error says why; the projection never crashes on
small or odd input (property-based); names cannot leave the analysis folder. The data layer:
test_bad_input_data.py; the models: test_bad_input_models.py; a damaged saved folder:
test_folder.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faultlens
from faultlens.analysis import slices
from faultlens.analysis.analyze import analyze
from faultlens.analysis.projection import ProjectionWarning, project
from faultlens.analysis.records import check_slice_name
from faultlens.data.sources import ArraySource
from tests.helpers import MeanColour, blob_images

# the analyses here are a dozen points: the map falls back to PCA, which is not under test
pytestmark = pytest.mark.filterwarnings("ignore:.*too few for UMAP")

# --------------------------------------------------------------------------- labels and probs


def test_odd_label_situations_are_named() -> None:
    imgs, _ = blob_images(6)
    with pytest.raises(ValueError, match="label -1 at item 0"):
        faultlens.analyze(
            imgs,
            labels=[-1, 0, 1, 0, 1, 0],
            probs=np.full((6, 2), 0.5),
            embeddings=np.zeros((6, 3)),
        )
    with pytest.raises(ValueError, match="label 'cat' at item 1"):
        faultlens.analyze(
            imgs, labels=["dog", "cat"] * 3, class_names=["dog"], probs=np.full((6, 1), 1.0)
        )
    with pytest.raises(ValueError, match="NaN"):
        faultlens.analyze(
            imgs, labels=[0] * 6, probs=np.full((6, 2), np.nan), embeddings=np.zeros((6, 3))
        )
    # a class with a single image: slicing and failure directions go on, the class is skipped
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1])
    P = np.tile([0.6, 0.4], (31, 1))
    P[:10] = [0.3, 0.7]
    with pytest.warns(Warning, match="need at least 2 of each|fewer than n_slices"):
        found = slices.discover(
            rng.normal(size=(31, 4)), y, P, method="failure_directions", n_slices=2
        )
    assert all(len(s.indices) for s in found)


def _probs_inputs(n: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 255, (n, 8, 8), dtype=np.uint8)
    emb = rng.normal(size=(n, 4)).astype(np.float32)
    return imgs, np.arange(n) % 3, emb


def test_probs_with_another_number_of_columns_than_classes_are_refused(tmp_path: Path) -> None:
    imgs, labels, emb = _probs_inputs()
    for width in (4, 2):  # too many, or too few (then label 2 is no column's: still named so)
        probs = np.full((len(imgs), width), 1 / width)
        too_wide_or_narrow = f"probs has {width} columns but there are 3 classes"
        with pytest.raises(ValueError, match=too_wide_or_narrow):
            analyze(imgs, labels=labels, class_names=["a", "b", "c"], probs=probs, embeddings=emb,
                    embedder=None, thumbnails=None, cache_dir=tmp_path / "c", progress=False)  # fmt: skip


def test_a_bad_probs_row_is_named_by_its_source_row_after_a_skipped_item(tmp_path: Path) -> None:
    imgs, labels, emb = _probs_inputs()
    emb[1] = np.nan  # item 1 is skipped
    probs = np.full((len(imgs), 3), 1 / 3)
    probs[1] = np.nan  # a skipped item's row is not used
    probs[5] *= 2
    with pytest.raises(ValueError, match=r"probs row 5 sums to 2\.000"):
        analyze(imgs, labels=labels, probs=probs, embeddings=emb, embedder=None,
                thumbnails=None, cache_dir=tmp_path / "c", progress=False)  # fmt: skip
    probs[5] /= 2
    result = analyze(imgs, labels=labels, probs=probs, embeddings=emb, embedder=None,
                     thumbnails=None, cache_dir=tmp_path / "c", progress=False)  # fmt: skip
    assert [s["index"] for s in result.skipped] == [1]
    assert len(result) == len(imgs) - 1 and np.isfinite(result.probs).all()


def test_when_every_item_is_skipped_the_error_says_why(tmp_path: Path) -> None:
    bad = ArraySource([np.zeros((2, 2, 2, 2), np.uint8)] * 4, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"all 4 items were skipped.*'0': array of shape"):
        analyze(bad, probs=np.full((4, 2), 0.5), embedder=MeanColour(), thumbnails=None,
                cache_dir=tmp_path / "cache", progress=False, num_workers=0)  # fmt: skip


# --------------------------------------------------------------------------- the projection


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    dim=st.integers(1, 6),
    nan_rows=st.integers(0, 3),
    constant=st.booleans(),
)
def test_projection_never_crashes_on_small_or_odd_input(
    n: int, dim: int, nan_rows: int, constant: bool
) -> None:
    rng = np.random.default_rng(n * 7 + dim)
    Z = np.ones((n, dim)) if constant else rng.normal(size=(n, dim))
    Z[: min(nan_rows, n)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProjectionWarning)
        xy = project(Z, n_neighbors=50, progress=False)  # n_neighbors above N: never UMAP here
    assert xy.shape == (n, 2)
    assert np.isnan(xy[: min(nan_rows, n)]).all()
    assert np.isfinite(xy[min(nan_rows, n) :]).all()


# --------------------------------------------------------------------------- names on disk


def test_names_cannot_escape_the_analysis_folder(tmp_path: Path) -> None:
    _, labels = blob_images(6)
    a = faultlens.Analysis(
        pd.DataFrame(
            {
                "id": ["../../etc/passwd"] * 1 + [str(i) for i in range(5)],
                "label": labels,
                "correct": True,
                "source_index": range(6),
            }
        ),
        class_names=["a", "b", "c"],
        arrays={"../escape": np.zeros((6, 1))},
    )
    with pytest.raises(ValueError, match="not a plain file name"):
        a.save(tmp_path / "out")
    assert not (tmp_path / "escape.npy").exists()
    for bad in ["../x", "a/b", "..", ".hidden", "a\\b", "x" * 65, ""]:
        with pytest.raises(ValueError, match="invalid slice name"):
            check_slice_name(bad)
