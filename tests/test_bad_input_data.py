"""Bad input to the data layer: the decoder and the sources.

Random bytes, mutated or truncated PNGs and arrays of any dtype and shape either decode to an RGB
image or raise the project's own clear error (property-based); a torch Dataset whose labels are
class names is read by name. Models: test_bad_input_models.py; analyze's arguments:
test_bad_input_analysis.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from faultlens.analysis.analyze import analyze
from faultlens.data.decode import ImageDecodeError, decode_image
from faultlens.data.sources import TorchDatasetSource
from tests.helpers import MeanColour, blob_images

# --------------------------------------------------------------------------- the decoder


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


GOOD_PNG = _png(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))


def _decodes_or_fails_clearly(item: object) -> None:
    """An RGB image, or faultlens's own error with a message: never another exception."""
    error = None
    try:
        img = decode_image(item)
    except ImageDecodeError as exc:
        error = str(exc)
    if error is None:
        assert img.mode == "RGB"
    else:
        assert len(error) > 5


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_decode_or_fail_clearly(data: bytes) -> None:
    _decodes_or_fails_clearly(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOOD_PNG) - 1), st.integers(0, 255), st.booleans())
def test_mutated_or_truncated_png_decodes_or_fails_clearly(
    pos: int, value: int, truncate: bool
) -> None:
    data = bytearray(GOOD_PNG)
    if truncate:
        data = data[:pos]
    else:
        data[pos] = value
    _decodes_or_fails_clearly(bytes(data))


_dtypes = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_])


@settings(max_examples=200, deadline=None)
@example(np.array([[-1.3344407e36]], dtype=np.float32))  # overflowed when scaled by 255
@example(np.array([[0.5, -1e308]], dtype=np.float64))
@given(
    arrays(
        _dtypes,
        st.one_of(
            st.tuples(st.integers(1, 12), st.integers(1, 12)),
            st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 5)),
            st.tuples(st.integers(0, 3)),
            st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
        ),
    )
)
def test_any_array_is_an_image_or_a_clear_error(arr: np.ndarray) -> None:
    _decodes_or_fails_clearly(arr)


# --------------------------------------------------------------------------- the sources


class NamedLabels(torch.utils.data.Dataset):
    """Items (image, class name): the name, not an index, as many datasets give it."""

    def __init__(self) -> None:
        self.images, labels = blob_images(6, seed=2)
        self.names = np.array(["cat", "dog", "eel"])[labels]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, str]:
        return self.images[i], str(self.names[i])


@pytest.mark.filterwarnings("ignore:.*too few for UMAP")  # 6 points: the map is PCA's
def test_a_torch_dataset_with_class_names_as_labels_is_analyzed(tmp_path: Path) -> None:
    data = NamedLabels()
    source = TorchDatasetSource(data)
    assert source.class_names == ["cat", "dog", "eel"]
    assert not source._broken
    probs = np.full((len(data), 3), 0.1)
    probs[np.arange(len(data)), np.arange(len(data)) % 3] = 0.8
    result = analyze(data, probs=probs, embedder=MeanColour(), thumbnails=None,
                     cache_dir=tmp_path / "cache", progress=False, num_workers=0)  # fmt: skip
    assert result.skipped == []
    assert result.table["label_name"].tolist() == data.names.tolist()
    assert result.accuracy == 1.0
