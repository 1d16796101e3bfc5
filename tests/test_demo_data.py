"""The demo's Fashion-MNIST: Debian's files when present, else a download through torchvision
(checksummed) that lands atomically. The download is mocked: no test touches the network."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets

from faultlens.data import demo


def _idx(arr: np.ndarray) -> bytes:
    head = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return gzip.compress(head + arr.astype(np.uint8).tobytes(), mtime=0)


def _fake_files(seed: int = 0) -> dict[str, bytes]:
    """Tiny but well-formed Fashion-MNIST files: 200 train / 100 test images, balanced classes."""
    rng = np.random.default_rng(seed)
    tr_y, te_y = np.arange(200) % 10, np.arange(100) % 10
    return {
        demo.FILES["train_images"]: _idx(rng.integers(0, 255, (200, 28, 28))),
        demo.FILES["train_labels"]: _idx(tr_y),
        demo.FILES["test_images"]: _idx(rng.integers(0, 255, (100, 28, 28))),
        demo.FILES["test_labels"]: _idx(te_y),
    }


class FakeFashionMNIST:
    """Stands in for torchvision's class: writes the files into root/FashionMNIST/raw (as it does)
    and publishes their MD5s in ``resources``; ``fail_after`` files it raises mid-download."""

    files = _fake_files()
    resources = [
        (name, hashlib.md5(data, usedforsecurity=False).hexdigest()) for name, data in files.items()
    ]
    calls: list[str] = []
    fail_after: int | None = None
    corrupt: str | None = None

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        assert download
        type(self).calls.append(root)
        raw = Path(root) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for i, (name, data) in enumerate(self.files.items()):
            if self.fail_after is not None and i == self.fail_after:
                (raw / name).write_bytes(data[: len(data) // 2])  # a partial file ...
                msg = f"Error downloading {name}: connection reset"  # ... then the error
                raise RuntimeError(msg)
            (raw / name).write_bytes(data[:-3] if name == self.corrupt else data)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[FakeFashionMNIST]:
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    monkeypatch.setattr(demo, "SYSTEM_DIR", tmp_path / "no-debian-package")
    monkeypatch.setattr(demo, "CACHE_DIR", tmp_path / "cache" / "fashion-mnist")
    monkeypatch.delenv("FAULTLENS_FASHION_MNIST", raising=False)
    FakeFashionMNIST.calls = []
    FakeFashionMNIST.fail_after = None
    FakeFashionMNIST.corrupt = None
    return FakeFashionMNIST


def test_without_the_debian_files_the_data_is_fetched_through_torchvision(
    fake: type[FakeFashionMNIST], tmp_path: Path
) -> None:
    splits = demo.load_spurious_fashion_mnist(
        n_train_per_class=5, n_val_per_class=1, n_test_per_class=3
    )
    assert len(fake.calls) == 1
    cache = tmp_path / "cache" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(demo.FILES.values())  # no temp left
    for name, data in fake.files.items():
        assert (cache / name).read_bytes() == data
    assert splits["test"].images.shape == (30, 28, 28)
    assert sorted(np.bincount(splits["train"].labels)) == [5] * 10
    # the next run takes the verified files and downloads nothing
    demo.load_spurious_fashion_mnist(n_train_per_class=5, n_val_per_class=1, n_test_per_class=3)
    assert len(fake.calls) == 1


def test_an_interrupted_download_leaves_nothing_that_looks_complete(
    fake: type[FakeFashionMNIST], tmp_path: Path
) -> None:
    fake.fail_after = 2
    with pytest.raises(FileNotFoundError, match="could not be downloaded \\(Error downloading"):
        demo.load_spurious_fashion_mnist()
    cache = tmp_path / "cache" / "fashion-mnist"
    assert not list(cache.iterdir())  # neither the two whole files nor the half one
    fake.fail_after = None
    assert demo.fetch_fashion_mnist() == cache
    assert all((cache / f).read_bytes() == d for f, d in fake.files.items())


def test_a_file_that_fails_its_checksum_is_not_kept(
    fake: type[FakeFashionMNIST], tmp_path: Path
) -> None:
    fake.corrupt = demo.FILES["test_labels"]
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz does not have"):
        demo.load_spurious_fashion_mnist()
    assert not list((tmp_path / "cache" / "fashion-mnist").iterdir())


def test_a_partial_file_from_an_old_download_is_replaced(
    fake: type[FakeFashionMNIST], tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "fashion-mnist"
    cache.mkdir(parents=True)
    for name, data in fake.files.items():
        (cache / name).write_bytes(data)
    truncated = fake.files[demo.FILES["train_images"]][:100]
    (cache / demo.FILES["train_images"]).write_bytes(truncated)
    assert demo.fetch_fashion_mnist() == cache
    assert len(fake.calls) == 1
    assert (cache / demo.FILES["train_images"]).read_bytes() == fake.files[
        demo.FILES["train_images"]
    ]


def test_a_truncated_file_in_a_given_folder_is_named(
    fake: type[FakeFashionMNIST], tmp_path: Path
) -> None:
    given = tmp_path / "mine"
    given.mkdir()
    for name, data in fake.files.items():
        (given / name).write_bytes(data)
    whole = fake.files[demo.FILES["train_labels"]]
    (given / demo.FILES["train_labels"]).write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        ValueError, match=r"train-labels-idx1-ubyte\.gz is not a complete gzip file"
    ):
        demo.load_spurious_fashion_mnist(data_dir=given)
    assert fake.calls == []
