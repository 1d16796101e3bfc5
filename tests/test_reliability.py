"""Reliability and security: property-based bad input, injected faults, offline proof, traversal.

Every bad input either decodes or raises the project's own clear error; nothing crashes with a
stray exception, nothing half-written is ever visible, and nothing touches the network.
"""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import faultlens
from faultlens.analysis import slices
from faultlens.analysis.projection import ProjectionWarning, project
from faultlens.data.decode import ImageDecodeError, decode_image
from faultlens.store import read_json, write_json
from tests.helpers import blob_images, tiny_transform


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


# --------------------------------------------------------------------------- property-based input


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
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProjectionWarning)
        xy = project(Z, n_neighbors=50, progress=False)  # n_neighbors above N: never UMAP here
    assert xy.shape == (n, 2)
    assert np.isnan(xy[: min(nan_rows, n)]).all()
    assert np.isfinite(xy[min(nan_rows, n) :]).all()


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


# --------------------------------------------------------------------------- faults


WRITER = textwrap.dedent(
    """
    import sys, itertools
    from faultlens.store import write_json
    path = sys.argv[1]
    big = {"rows": list(range(20000))}
    for i in itertools.count():
        big["version"] = i
        write_json(path, big)
    """
)


@pytest.mark.slow
def test_sigkill_during_annotation_writes_never_leaves_a_broken_file(tmp_path: Path) -> None:
    target = tmp_path / "annotations.json"
    write_json(target, {"rows": [], "version": -1})
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(0)
    versions = []
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, str(script), str(target)])
        time.sleep(0.4 + rng.random() * 0.4)  # interpreter start-up, then some writes
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = read_json(target)  # always whole JSON: the old or a new version, never a mix
        assert data["rows"] in ([], list(range(20000)))
        versions.append(data["version"])
        visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
        assert sorted(visible) == ["annotations.json", "writer.py"]
    assert max(versions) > 0, "the writer never completed a write: the trial tested nothing"


def test_a_failing_write_keeps_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "slices.json"
    write_json(target, {"kept": True})
    import faultlens.store as store

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_json(target, {"kept": False})
    assert read_json(target) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["slices.json"]


# --------------------------------------------------------------------------- security


def test_offline_analysis_makes_no_network_call(monkeypatch: pytest.MonkeyPatch, tiny_net) -> None:
    calls = []

    def no_network(self, *args, **kwargs):
        calls.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: no_network(None, *a))
    imgs, labels = blob_images(12)  # few enough to skip UMAP (no numba compile)
    with pytest.warns(ProjectionWarning):
        a = faultlens.analyze(
            imgs,
            labels=labels,
            classifier=faultlens.Classifier(tiny_net, tiny_transform),
            embedder=faultlens.EfficientNetLiteEmbedder(64),
            progress=False,
        )
    assert len(a) == 12 and a.arrays["imagenet_logits"].shape == (12, 1000)
    a.describe(np.arange(5))
    assert calls == []


def test_names_cannot_escape_the_analysis_folder(tmp_path: Path, tiny_net) -> None:
    _, labels = blob_images(6)
    a = faultlens.Analysis(
        __import__("pandas").DataFrame(
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
    from faultlens.analysis.records import check_slice_name

    for bad in ["../x", "a/b", "..", ".hidden", "a\\b", "x" * 65, ""]:
        with pytest.raises(ValueError, match="invalid slice name"):
            check_slice_name(bad)
