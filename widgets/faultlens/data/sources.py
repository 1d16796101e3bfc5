"""Image sources: a folder tree, a table of paths, a torch Dataset, or in-memory arrays.

Every source answers the same small protocol: ``len(source)``, ``source.load(i)`` (an RGB PIL image
or an :class:`~faultlens.data.decode.ImageDecodeError`), ``ids``, ``labels`` (class indices),
``class_names``, ``paths`` (or ``None``), ``columns`` (extra per-item columns) and
``fingerprint()`` (a content key for the cache).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from faultlens.data.decode import ImageDecodeError, decode_image
from faultlens.store import fingerprint_array


def load_image(source: Any, i: int, min_size: int | None) -> Image.Image:
    """``source.load(i, min_size=…)``, or ``source.load(i)`` for a user's source whose ``load``
    takes no size hint."""
    if min_size is not None and _takes_min_size(type(source)):
        return source.load(i, min_size=min_size)
    return source.load(i)


@functools.cache
def _takes_min_size(cls: type) -> bool:
    try:
        params = inspect.signature(cls.load).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "min_size" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class ImageSource:
    """Base class of all sources. Subclasses set the attributes and implement :meth:`load`."""

    ids: list[str]
    labels: np.ndarray
    class_names: list[str]
    paths: list[str] | None = None
    columns: pd.DataFrame

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, i: int, min_size: int | None = None) -> Image.Image:
        """Item ``i`` as an RGB image; ``min_size`` as in :func:`decode_image` (a hint: a source
        may ignore it and return the image whole)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError

    def describe(self, i: int) -> str:
        """How to name item ``i`` in a message: its id, and its path when there is one."""
        if self.paths is not None and self.paths[i] != self.ids[i]:
            return f"{self.ids[i]!r} ({self.paths[i]})"
        return repr(self.ids[i])

    def _finish(self, n: int, columns: pd.DataFrame | None) -> None:
        if columns is None:
            columns = pd.DataFrame(index=range(n))
        columns = columns.reset_index(drop=True)
        if len(columns) != n:
            msg = f"columns has {len(columns)} rows but the source has {n} images"
            raise ValueError(msg)
        self.columns = columns
        dup = pd.Index(self.ids)[pd.Index(self.ids).duplicated()]
        if len(dup):
            msg = f"duplicate ids, e.g. {list(dup[:3])}: every image needs its own id"
            raise ValueError(msg)


def _encode_labels(
    raw: Sequence[Any] | np.ndarray, class_names: Sequence[str] | None, where: str
) -> tuple[np.ndarray, list[str]]:
    """Labels as int indices into ``class_names``; string labels are looked up by name."""
    arr = np.asarray(raw)
    if arr.ndim != 1:
        msg = f"{where}: labels must be 1-D, got shape {arr.shape}"
        raise ValueError(msg)
    if arr.dtype.kind in "iu":
        names = (
            list(class_names)
            if class_names is not None
            else [str(c) for c in range(int(arr.max(initial=-1)) + 1)]
        )
        bad = np.flatnonzero((arr < 0) | (arr >= len(names)))
        if len(bad):
            msg = (
                f"{where}: label {arr[bad[0]]} at item {bad[0]} is outside 0..{len(names) - 1}"
                f" ({len(bad)} such items); pass class_names with one name per class"
            )
            raise ValueError(msg)
        return arr.astype(np.int64), names
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))[0]
            msg = f"{where}: label {arr[bad].item()!r} at item {bad} is not a class index or name"
            raise ValueError(msg)
        return _encode_labels(arr.astype(np.int64), class_names, where)
    as_str = [str(v) for v in arr]
    names = list(class_names) if class_names is not None else sorted(set(as_str))
    lookup = {n: k for k, n in enumerate(names)}
    out = np.empty(len(as_str), dtype=np.int64)
    for k, v in enumerate(as_str):
        if v not in lookup:
            msg = f"{where}: label {v!r} at item {k} is not one of the class names {names[:10]}"
            raise ValueError(msg)
        out[k] = lookup[v]
    return out, names


class ArraySource(ImageSource):
    """Images held in memory: an (N, H, W), (N, H, W, C) or (N, C, H, W) array, or a list of arrays."""

    def __init__(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        labels: Sequence[Any] | np.ndarray,
        *,
        class_names: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        columns: pd.DataFrame | None = None,
    ) -> None:
        self.images = images
        n = len(images)
        if len(labels) != n:
            msg = f"{n} images but {len(labels)} labels: pass one label per image"
            raise ValueError(msg)
        self.labels, self.class_names = _encode_labels(labels, class_names, "labels")
        self.ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(n)]
        if len(self.ids) != n:
            msg = f"{n} images but {len(self.ids)} ids"
            raise ValueError(msg)
        self._finish(n, columns)

    def load(self, i: int, min_size: int | None = None) -> Image.Image:
        return decode_image(np.asarray(self.images[i]))

    def fingerprint(self) -> str:
        if isinstance(self.images, np.ndarray):
            img_key = fingerprint_array(self.images)
        else:
            h = hashlib.sha256()
            for im in self.images:
                h.update(fingerprint_array(np.asarray(im)).encode())
            img_key = h.hexdigest()[:24]
        return f"arrays-{img_key}-{fingerprint_array(self.labels)}"


class _FileSource(ImageSource):
    """Shared by folder and table sources: images are files named by ``paths``."""

    def load(self, i: int, min_size: int | None = None) -> Image.Image:
        assert self.paths is not None
        return decode_image(self.paths[i], min_size=min_size)

    def fingerprint(self) -> str:
        assert self.paths is not None
        h = hashlib.sha256()
        for p, y in zip(self.paths, self.labels, strict=True):
            try:
                st = os.stat(p)
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stamp = "unreadable"
            h.update(f"{p}\0{stamp}\0{y}\n".encode())
        return f"files-{h.hexdigest()[:24]}"


class FolderSource(_FileSource):
    """A folder with one sub-folder per class; every (non-hidden) file below a class folder is an item.

    Files that are not images are kept as items and reported as skipped, so nothing vanishes
    silently. Ids are the paths relative to ``root``.
    """

    def __init__(self, root: str | os.PathLike[str], *, class_names: Sequence[str] | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            msg = f"image folder {str(self.root)!r} does not exist or is not a folder"
            raise FileNotFoundError(msg)
        found = sorted(
            d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        if not found:
            msg = f"{str(self.root)!r} has no class sub-folders (expected root/<class>/<image>)"
            raise ValueError(msg)
        names = list(class_names) if class_names is not None else found
        unknown = sorted(set(found) - set(names))
        if unknown:
            msg = f"sub-folders {unknown} of {str(self.root)!r} are not in class_names"
            raise ValueError(msg)
        paths, labels = [], []
        for k, cls in enumerate(names):
            cls_dir = self.root / cls
            if not cls_dir.is_dir():
                continue
            for f in _walk_files(cls_dir):
                paths.append(str(f))
                labels.append(k)
        if not paths:
            msg = f"no files found under the class folders of {str(self.root)!r}"
            raise ValueError(msg)
        _check_utf8_names(paths, self.root)
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = names
        self.ids = [os.path.relpath(p, self.root) for p in paths]
        self._finish(len(paths), None)


def _check_utf8_names(paths: list[str], root: Path) -> None:
    """File names must be text (UTF-8) to be ids in the table; name those that are not."""
    bad = []
    for p in paths:
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(os.fsencode(os.path.relpath(p, root)).decode("utf-8", "backslashreplace"))
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        msg = (
            f"{len(bad)} file name(s) under {str(root)!r} are not UTF-8 text, e.g. {bad[:5]}{more}: "
            "rename them (for example with convmv -f latin1 -t utf8 -r --notest)"
        )
        raise ValueError(msg)


def _walk_files(folder: Path) -> list[Path]:
    """Regular files below ``folder``, sorted, skipping hidden names; symlink loops are not followed."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return out


class TableSource(_FileSource):
    """A table (DataFrame, CSV or parquet file) with a path column and a label column.

    Every other column is kept and can colour the map. Relative paths are resolved against ``root``
    (default: the CSV's folder, or the working directory for a DataFrame).
    """

    def __init__(
        self,
        table: pd.DataFrame | str | os.PathLike[str],
        *,
        path_col: str = "path",
        label_col: str = "label",
        id_col: str | None = None,
        root: str | os.PathLike[str] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if isinstance(table, pd.DataFrame):
            df = table.reset_index(drop=True)
            base = Path(root) if root is not None else Path.cwd()
        else:
            file = Path(table)
            if not file.exists():
                msg = f"table file {str(file)!r} not found"
                raise FileNotFoundError(msg)
            df = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
            base = Path(root) if root is not None else file.parent
        for col in (path_col, label_col):
            if col not in df.columns:
                msg = f"the table has no column {col!r}; its columns are {list(df.columns)}"
                raise ValueError(msg)
        for col, what in ((label_col, "label"), (path_col, "path")):
            empty = df[col].isna().to_numpy() | (df[col].astype(str).str.strip() == "").to_numpy()
            if empty.any():
                bad = int(np.flatnonzero(empty)[0])
                msg = (
                    f"row {bad} has no {what} (column {col!r}; {int(empty.sum())} such rows): "
                    "fill it or drop the row"
                )
                raise ValueError(msg)
        self.paths = [
            str(p if Path(p).is_absolute() else base / p) for p in df[path_col].astype(str)
        ]
        self.labels, self.class_names = _encode_labels(
            df[label_col].to_numpy(), class_names, f"column {label_col!r}"
        )
        self.ids = (
            [str(v) for v in df[id_col]] if id_col is not None else list(df[path_col].astype(str))
        )
        extra = df.drop(columns=[c for c in (path_col, label_col, id_col) if c is not None])
        self._finish(len(df), extra)


class TorchDatasetSource(ImageSource):
    """A torch ``Dataset`` whose items are ``(image, label)``; image as PIL, tensor or array.

    The cache key of a dataset is its class, length and a hash of a sample of its items; pass
    ``fingerprint=`` to name it yourself (for example when items are randomly augmented).
    """

    def __init__(
        self,
        dataset: Any,
        *,
        class_names: Sequence[str] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.dataset = dataset
        n = len(dataset)
        names = class_names if class_names is not None else getattr(dataset, "classes", None)
        self._broken: dict[int, str] = {}
        raw = getattr(dataset, "targets", None)
        if raw is not None and len(raw) == n:
            self.labels, self.class_names = _encode_labels(np.asarray(raw), names, "dataset labels")
        else:
            got = [self._label_of(i) for i in range(n)]
            read = [i for i in range(n) if i not in self._broken]
            # class indices or names, as any source's labels; a broken item's label 0 stands in
            encoded, self.class_names = _encode_labels(
                np.asarray([got[i] for i in read]) if read else np.zeros(0, np.int64),
                names,
                "dataset labels",
            )
            self.labels = np.zeros(n, dtype=np.int64)
            self.labels[read] = encoded
            if not self.class_names:  # every item broken: one stand-in class
                self.class_names = ["0"]
        self.ids = [str(i) for i in range(n)]
        self._fingerprint = fingerprint
        self._finish(n, None)

    def _label_of(self, i: int) -> Any:
        """The label of item i as the dataset gives it (a class index or name; a tensor or NumPy
        scalar as a Python value); an item that raises is remembered as broken (None)."""
        try:
            label = self.dataset[i][1]
            if label is None:
                msg = f"item {i} has no label (None): every item needs a class index or name"
                raise ValueError(msg)
            return label.item() if hasattr(label, "item") else label
        except Exception as exc:
            self._broken[i] = f"dataset raised {type(exc).__name__}: {exc}"
            return None

    def load(self, i: int, min_size: int | None = None) -> Image.Image:
        if i in self._broken:
            raise ImageDecodeError(self._broken[i])
        try:
            item = self.dataset[i]
        except Exception as exc:
            msg = f"dataset raised {type(exc).__name__}: {exc}"
            raise ImageDecodeError(msg) from None
        img = item[0] if isinstance(item, (tuple, list)) else item
        if hasattr(img, "detach"):
            img = img.detach().cpu().numpy()
        return decode_image(img, min_size=min_size)

    def fingerprint(self) -> str:
        if self._fingerprint is not None:
            return f"dataset-{self._fingerprint}"
        n = len(self)
        h = hashlib.sha256(f"{type(self.dataset).__qualname__}:{n}".encode())
        for i in np.unique(np.linspace(0, n - 1, num=min(n, 32)).astype(int)):
            try:
                h.update(np.asarray(self.load(int(i))).tobytes())
            except ImageDecodeError as exc:
                h.update(str(exc).encode())
        h.update(self.labels.tobytes())
        return f"dataset-{h.hexdigest()[:24]}"


def as_source(obj: Any, **kwargs: Any) -> ImageSource:
    """Turn what the user has into an :class:`ImageSource`.

    A folder path → :class:`FolderSource`; a ``.csv``/``.parquet`` path or a DataFrame →
    :class:`TableSource`; an array (with ``labels=``) → :class:`ArraySource`; an object with
    ``__getitem__`` and ``__len__`` → :class:`TorchDatasetSource`.
    """
    if isinstance(obj, ImageSource):
        if kwargs:
            msg = f"options {sorted(kwargs)} are not used when a source object is given"
            raise TypeError(msg)
        return obj
    if isinstance(obj, pd.DataFrame):
        return TableSource(obj, **kwargs)
    if isinstance(obj, (str, os.PathLike)):
        p = Path(obj)
        if p.is_dir():
            return FolderSource(p, **kwargs)
        if p.suffix.lower() in (".csv", ".parquet"):
            return TableSource(p, **kwargs)
        msg = f"{str(p)!r} is neither a folder of class sub-folders nor a .csv/.parquet table"
        raise ValueError(msg)
    if isinstance(obj, np.ndarray) or (
        isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], np.ndarray)
    ):
        if "labels" not in kwargs:
            msg = "images given as arrays need labels=: one class index or name per image"
            raise TypeError(msg)
        labels = kwargs.pop("labels")
        return ArraySource(obj, labels, **kwargs)
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        return TorchDatasetSource(obj, **kwargs)
    msg = (
        f"cannot read images from a {type(obj).__name__}: pass a folder, a CSV/parquet path, a "
        "DataFrame, an array with labels=, or a torch Dataset"
    )
    raise TypeError(msg)
