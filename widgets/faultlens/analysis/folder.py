"""The saved-analysis folder: its file names, its format version, writing and reading it.

A folder holds ``analysis.json`` (format version, library version, class names, array names,
meta), ``table.parquet``, ``probs.npy``/``embeddings.npy``/``images.npy`` where the analysis has
them, ``arrays/<name>.npy``, ``skipped.json`` and the ``thumbnails/`` store. A save writes them all
into a new folder that then takes the old one's place in one step, and nothing is ever pickled.
Files the widgets write beside an analysis (saved slices, feature marks) live in the same folder
but are not part of this format: a save keeps them.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from faultlens._version import __version__
from faultlens.analysis.records import MARKS_FILE, SLICES_FILE
from faultlens.data.sources import ArraySource
from faultlens.store import (
    CacheWarning,
    ShardedBlobs,
    read_json,
    read_npy,
    write_json,
    write_npy,
)
from faultlens.store.files import atomic_file, replace_folder

if TYPE_CHECKING:
    from faultlens.analysis.result import Analysis

#: The version written into ``analysis.json``.
FORMAT_VERSION = 1
INFO_FILE = "analysis.json"
TABLE_FILE = "table.parquet"
SKIPPED_FILE = "skipped.json"
ARRAYS_DIR = "arrays"
THUMBNAILS_DIR = "thumbnails"
#: The arrays saved at the folder's top level, as ``<name>.npy`` (``images``: an in-memory image
#: array source, so that the analysis loads with its images).
TOP_ARRAYS = ("probs", "embeddings", "images")
#: Every name of the format: what a save replaces (other files in the folder are carried over).
FORMAT_FILES = (INFO_FILE, TABLE_FILE, SKIPPED_FILE, ARRAYS_DIR, THUMBNAILS_DIR,
                *(f"{name}.npy" for name in TOP_ARRAYS))  # fmt: skip
#: The records a user writes beside an analysis (:mod:`faultlens.analysis.records`): a save
#: carries them over under their locks.
RECORD_FILES = (SLICES_FILE, MARKS_FILE)
READ_TRIES = 5  # reads of a folder that another process keeps replacing, before the last try


def save_analysis(analysis: Analysis, folder: str | os.PathLike[str]) -> Path:
    """Write ``analysis`` to ``folder`` (parquet + npy + JSON, never pickled) and return it.

    The save is all or nothing: everything is checked before the first file is written (an
    object array, a bad array name, a column parquet cannot hold), the files are written into a
    new sibling folder, and that folder takes the place of ``folder`` in one step
    (:func:`~faultlens.store.files.replace_folder`). A save that fails or is killed leaves the
    analysis saved there before as it was; two saves into one folder at once leave one of the two
    analyses, whole. Nothing of an analysis saved there before remains, except what a user wrote
    beside it: the saved slices and feature marks (:data:`RECORD_FILES`, carried over under their
    locks, so a record written by another kernel during the save is kept) and any other file not
    part of this format. Afterwards ``analysis.folder`` is ``folder`` and its thumbnails are read
    from the copy there."""
    folder = Path(folder).expanduser()
    src = analysis.source
    images = (
        src.images if isinstance(src, ArraySource) and isinstance(src.images, np.ndarray) else None
    )
    for name, arr in [("probs", analysis.probs), ("embeddings", analysis.embeddings),
                      *analysis.arrays.items()]:  # fmt: skip
        if name in analysis.arrays:
            _check_name(name)
        if arr is not None and np.asarray(arr).dtype.hasobject:
            msg = f"array {name!r} holds Python objects; save needs numbers (no pickles)"
            raise TypeError(msg)
    table_bytes = _parquet_bytes(analysis.table)
    top = dict(zip(TOP_ARRAYS, (analysis.probs, analysis.embeddings, images), strict=True))

    def build(tmp: Path) -> None:  # a new, empty folder
        with atomic_file(tmp / TABLE_FILE) as fh:
            fh.write(table_bytes)
        for name, arr in top.items():
            if arr is not None:
                write_npy(tmp / f"{name}.npy", arr)
        for name, arr in analysis.arrays.items():
            write_npy(tmp / ARRAYS_DIR / f"{name}.npy", arr)
        if analysis.thumbnails is not None:  # hard links: cheap, and the source may be replaced
            analysis.thumbnails.copy_to(tmp / THUMBNAILS_DIR)
        write_json(tmp / SKIPPED_FILE, analysis.skipped)
        write_json(
            tmp / INFO_FILE,
            {
                "format": FORMAT_VERSION,
                "faultlens": __version__,
                "class_names": analysis.class_names,
                "arrays": sorted(analysis.arrays),
                "meta": analysis.meta,
            },
        )

    replace_folder(folder, build, keep=RECORD_FILES, own=FORMAT_FILES)
    if analysis.thumbnails is not None:
        analysis.thumbnails = ShardedBlobs.open(folder / THUMBNAILS_DIR)
    analysis.folder = folder
    return folder


def read_analysis(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The parts of the analysis saved in ``folder``: the keyword arguments of
    :class:`~faultlens.analysis.result.Analysis` (``Analysis.load(folder)`` makes one of them).

    A file that is damaged, was not written by faultlens, or disagrees with the rest (rows, class
    count) is an error naming it; nothing is unpickled. Damaged thumbnails are left out with a
    warning (the grid and the report then render them from the images).

    A save into ``folder`` while it is read (another kernel) cannot mix two analyses: when the
    folder was replaced during the read, it is read again."""
    folder = Path(folder).expanduser()
    for _ in range(READ_TRIES - 1):
        before = _identity(folder)
        try:
            parts = _read_once(folder)
        except (OSError, ValueError):
            if before is not None and _identity(folder) != before:
                continue  # replaced while read: what was read may be half of each
            raise
        if _identity(folder) == before:
            return parts
    return _read_once(folder)


def _identity(folder: Path) -> tuple[int, int, int] | None:
    """What changes when a save puts a new folder at ``folder``: its device, inode and change
    time (None when there is nothing there)."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def _read_once(folder: Path) -> dict[str, Any]:
    if not (folder / INFO_FILE).exists():
        msg = f"{str(folder)!r} is not a faultlens analysis folder (no {INFO_FILE})"
        raise FileNotFoundError(msg)
    read = _reader(folder)

    def opt(path: Path) -> np.ndarray | None:
        return read(path, read_npy) if path.exists() else None

    info = read(folder / INFO_FILE, read_json)
    if not isinstance(info, dict) or not isinstance(info.get("class_names"), list):
        msg = f"{INFO_FILE} in {str(folder)!r} has no class_names list: save it again"
        raise ValueError(msg)
    class_names = info["class_names"]
    table = read(folder / TABLE_FILE, pd.read_parquet)
    images = opt(folder / "images.npy")
    needed = ["label", "source_index"] if images is not None else ["label"]
    lacking = [c for c in needed if c not in table.columns]
    if lacking:
        msg = f"{TABLE_FILE} in {str(folder)!r} lacks column(s) {lacking}: save it again"
        raise ValueError(msg)
    arrays = {
        name: read(folder / ARRAYS_DIR / f"{name}.npy", read_npy) for name in info.get("arrays", [])
    }
    probs, embeddings = opt(folder / "probs.npy"), opt(folder / "embeddings.npy")
    _check_shapes(folder, len(table), len(class_names), probs, embeddings)
    thumbnails = _open_thumbnails(folder / THUMBNAILS_DIR)
    source = None
    if images is not None:
        labels = np.zeros(len(images), dtype=np.int64)
        labels[table["source_index"].to_numpy()] = table["label"].to_numpy()
        source = ArraySource(images, labels, class_names=class_names)
    skipped_path = folder / SKIPPED_FILE
    return {
        "table": table,
        "class_names": class_names,
        "probs": probs,
        "embeddings": embeddings,
        "arrays": arrays,
        "skipped": read(skipped_path, read_json) if skipped_path.exists() else [],
        "meta": info.get("meta", {}),
        "source": source,
        "folder": folder,
        "thumbnails": thumbnails,
    }


def _reader(folder: Path) -> Callable[[Path, Callable[[Path], Any]], Any]:
    """``read(path, reader)``: ``reader(path)``, with a failure named as a damaged file of
    ``folder`` (a pickle named as such)."""

    def read(path: Path, reader: Callable[[Path], Any]) -> Any:
        try:
            return reader(path)
        except Exception as exc:
            why = str(exc)
            if "allow_pickle" in why:
                why = "it holds pickled Python objects, which faultlens never writes nor loads"
            msg = (
                f"{path.relative_to(folder)} in {str(folder)!r} cannot be read ({why}): is it "
                "damaged, or not written by faultlens? Save the analysis again"
            )
            raise ValueError(msg) from exc

    return read


def _check_shapes(folder: Path, n_rows: int, n_classes: int, probs: Any, embeddings: Any) -> None:
    """Probabilities are (rows, classes) and embeddings (rows, dim), or an error naming the file."""
    for name, arr, cols in (("probs", probs, n_classes), ("embeddings", embeddings, None)):
        if arr is not None and (arr.ndim != 2 or (cols is not None and arr.shape[1] != cols)):
            want = f"({n_rows}, {cols if cols is not None else 'dim'})"
            msg = (
                f"{name}.npy in {str(folder)!r} has shape {arr.shape}, not {want} (one row "
                f"per table row{', one column per class' if cols else ''}): save it again"
            )
            raise ValueError(msg)


def _open_thumbnails(path: Path) -> ShardedBlobs | None:
    """The thumbnail store at ``path``; None (with a warning where it is damaged) when absent."""
    if not (path / "manifest.json").exists():
        return None
    try:
        return ShardedBlobs.open(path)
    except Exception as exc:
        warnings.warn(
            f"the thumbnails in {str(path)!r} cannot be opened ({exc}); "
            "they are rendered from the images instead",
            CacheWarning,
            stacklevel=4,
        )
        return None


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        msg = f"array name {name!r} is not a plain file name"
        raise ValueError(msg)


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as parquet, in memory; a column parquet cannot hold is an error that names it."""
    import pyarrow as pa

    buf = io.BytesIO()
    try:
        df.to_parquet(buf, index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        bad = []
        for col in df.columns:
            try:
                pa.array(df[col], from_pandas=True)
            except (pa.ArrowException, ValueError, TypeError):
                bad.append(col)
        msg = (
            f"the table cannot be saved: column(s) {bad or '?'} mix types parquet cannot hold "
            f"together ({type(exc).__name__}: {exc}); give each one type, e.g. "
            "analysis.table[col] = analysis.table[col].astype(str)"
        )
        raise ValueError(msg) from exc
    return buf.getvalue()
