"""The on-disk artifact cache.

Every heavy result (classifier outputs, embeddings, projections, trained demo weights) is stored under
a key derived from what it was computed from: a data fingerprint, a model id, parameters and the
library version. Arrays are written in shards; every file is written to a temporary name in the same
folder and moved into place with an atomic rename, so a killed process leaves either a whole file or
none. A run that was killed half-way computes only the shards that are missing.

Nothing here unpickles: arrays are ``.npy`` read with ``allow_pickle=False``, metadata is JSON.

Several processes may fill one cache (two notebooks, a class on one JupyterHub volume): a shard is
computed by the one process that holds its lock (:class:`ShardClaims`; a lock dies with its
process). Files are written by :mod:`faultlens.store.files`: never through a link someone placed in the
cache, group-writable in a cache shared by a group.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import numpy as np

from faultlens._version import __version__
from faultlens.store.files import (
    FileLock,
    UnsafePathError,
    atomic_file,
    link_or_copy,
    make_dirs,
    remove_stale_temps,
)
from faultlens.store.files import _owner as _owner  # who writes a temporary file (tests name one)
from faultlens.store.files import (
    _umask as _umask,  # the umask, read once (tests compare modes with it)
)
from faultlens.store.files import atomic_path as atomic_path  # for files a user names (exports)

ENV_VAR = "FAULTLENS_CACHE"


class CacheWarning(UserWarning):
    """A cache entry could not be used and was computed again; the message says which."""


def default_cache_dir() -> Path:
    """The cache folder: ``$FAULTLENS_CACHE`` when set, else the user cache dir."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("faultlens"))


def make_key(*parts: Any, **named: Any) -> str:
    """A short stable hex key from JSON-able parts (plus the library version)."""
    payload = json.dumps(
        {"parts": parts, "named": named, "faultlens": __version__},
        sort_keys=True,
        default=_json_default,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return fingerprint_array(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    msg = f"cannot derive a cache key from {type(obj).__name__}"
    raise TypeError(msg)


def fingerprint_array(arr: np.ndarray) -> str:
    """A content hash of an array (shape, dtype and bytes)."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(str((arr.shape, arr.dtype.str)).encode())
    h.update(memoryview(arr).cast("B") if arr.size else b"")  # a view with a 0 cannot be cast
    return h.hexdigest()[:24]


# --------------------------------------------------------------------------- atomic writes


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the JSON faultlens writes (indented, keys sorted)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (never through a link: :func:`atomic_file`)."""
    data = json_bytes(obj)
    with atomic_file(path) as fh:
        fh.write(data)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_npy(path: Path, arr: np.ndarray) -> None:
    """Write an array atomically as ``.npy`` (no pickles: object arrays are refused; never
    through a link: :func:`atomic_file`)."""
    arr = np.asarray(arr)
    if arr.dtype == object:
        msg = f"refusing to store an object array at {path}: it would need pickle"
        raise TypeError(msg)
    with atomic_file(path) as fh:
        np.save(fh, arr, allow_pickle=False)


def read_npy(path: Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)


def npy_shape(path: Path) -> tuple[int, ...]:
    """The shape of the ``.npy`` file at ``path``, read from its header alone; a ``ValueError``
    that says what is wrong when the header cannot be parsed or the file is not as long as the
    header says (a file copied half-way, a bad disk)."""
    from numpy.lib import format as npy_format

    with open(path, "rb") as fh:
        try:
            version = npy_format.read_magic(fh)
            read_header = {
                (1, 0): npy_format.read_array_header_1_0,
                (2, 0): npy_format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                msg = f"unknown .npy format version {version}"
                raise ValueError(msg)
            shape, _fortran, dtype = read_header(fh)
        except (ValueError, OSError, EOFError) as exc:
            msg = f"its .npy header cannot be read ({exc})"
            raise ValueError(msg) from None
        expected = fh.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = os.fstat(fh.fileno()).st_size
    if dtype.hasobject:
        msg = "it holds Python objects (it would need pickle)"
        raise ValueError(msg)
    if size != expected:
        msg = f"it has {size} bytes where its header (shape {shape}, {dtype}) needs {expected}"
        raise ValueError(msg)
    return tuple(shape)


# --------------------------------------------------------------------------- locks


class ShardClaims:
    """Which process computes which shard of one source: one lock file per shard
    (``shard-XXXXX.lock`` in ``folder``), held while the shard is computed and written. A lock
    dies with its process, so a shard whose writer was killed is claimed again."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        make_dirs(self.folder)
        self._held: dict[int, FileLock] = {}

    def _lock(self, shard: int) -> FileLock:
        return FileLock(self.folder / f"shard-{shard:05d}.lock", timeout=-1)

    def try_claim(self, shard: int) -> bool:
        """Claim ``shard`` unless another process holds it; whether this one now does."""
        if shard in self._held:
            return True
        lock = self._lock(shard)
        if lock.acquire(blocking=False):
            self._held[shard] = lock
            return True
        return False

    def wait(self, shard: int) -> None:
        """Claim ``shard``, waiting while another process holds it (computes it)."""
        if shard not in self._held:
            lock = self._lock(shard)
            lock.acquire()
            self._held[shard] = lock

    def release(self, shard: int) -> None:
        lock = self._held.pop(shard, None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for shard in list(self._held):
            self.release(shard)


# --------------------------------------------------------------------------- the store


class ArtifactStore:
    """A folder of cached artifacts, one sub-folder per key.

    Parameters
    ----------
    root:
        The cache folder. ``None`` means :func:`default_cache_dir`.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    def path(self, kind: str, key: str) -> Path:
        """The folder of one artifact. An :class:`UnsafePathError` when a folder under the root
        is a link (in a shared cache, someone else may have placed it)."""
        for part in (self.root / kind, self.root / kind / key):
            if part.is_symlink():
                msg = (
                    f"cache folder {part} is a link (to {os.readlink(part)}): faultlens does not "
                    "write through links in its cache; remove it"
                )
                raise UnsafePathError(msg)
        return self.root / kind / key

    # -- single arrays --------------------------------------------------------------------------

    def cached_array(
        self,
        kind: str,
        key: str,
        compute: Callable[[], np.ndarray],
        *,
        force: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Return the array stored under ``kind/key``, computing and storing it when missing.

        A stored array that cannot be read (a cache copied half-way, a bad disk) is computed again,
        with a warning, instead of being loaded.
        """
        folder = self.path(kind, key)
        target = folder / "array.npy"
        manifest = {"kind": kind, "key": key, "meta": meta or {}}
        if target.is_symlink():
            warnings.warn(
                f"cache entry {target} is a link: not read, computed again",
                CacheWarning,
                stacklevel=2,
            )
        elif target.exists() and not force:
            try:
                arr = read_npy(target)
            except (ValueError, OSError, EOFError) as exc:
                warnings.warn(
                    f"cache entry {target} is unreadable ({exc}): computing it again",
                    CacheWarning,
                    stacklevel=2,
                )
            else:
                # a writer killed after the array's rename left the manifest unwritten: finish it
                with contextlib.suppress(OSError):  # a read-only cache is still readable
                    if not (folder / "manifest.json").exists():
                        write_json(folder / "manifest.json", manifest)
                    remove_stale_temps(folder)
                return arr
        arr = np.asarray(compute())
        write_npy(target, arr)
        write_json(folder / "manifest.json", manifest)
        return arr

    # -- sharded arrays ------------------------------------------------------------------------

    def sharded(self, kind: str, key: str, n_items: int, shard_size: int = 1024) -> ShardedArray:
        """A sharded array of ``n_items`` rows under ``kind/key``."""
        return ShardedArray(self.path(kind, key), n_items, shard_size)


class Shards:
    """Items ``[0, n_items)`` stored in shards of ``shard_size`` items under one folder.

    The folder's ``manifest.json`` records the item count and shard size; a shard counts as present
    only when all of its files exist (each kind writes its completing file last). Subclasses say
    which files a shard has and how they are written and read.
    """

    def __init__(self, folder: Path, n_items: int, shard_size: int) -> None:
        if shard_size < 1:
            msg = f"shard_size must be >= 1, got {shard_size}"
            raise ValueError(msg)
        self.folder = Path(folder)
        self.n_items = int(n_items)
        self.shard_size = int(shard_size)
        if self.folder.is_symlink():
            msg = f"cache folder {self.folder} is a link: faultlens does not write through links"
            raise UnsafePathError(msg)
        manifest = self.folder / "manifest.json"
        if manifest.is_symlink():  # placed by someone else: not read, replaced
            manifest.unlink()
        if manifest.exists():
            old = read_json(manifest)
            if (old.get("n_items"), old.get("shard_size")) != (self.n_items, self.shard_size):
                msg = (
                    f"cache folder {self.folder} holds {old.get('n_items')} items in shards of "
                    f"{old.get('shard_size')}, not {self.n_items} in shards of {self.shard_size}; "
                    "pass force=True or remove the folder"
                )
                raise ValueError(msg)
        else:
            write_json(manifest, {"n_items": self.n_items, "shard_size": self.shard_size})
        # A process killed mid-write leaves a hidden temporary file (never a partial shard): tidy
        # up those of writers that no longer run (a live one may be filling the same cache).
        remove_stale_temps(self.folder)

    @classmethod
    def open(cls, folder: Path) -> Self:
        """The shards already stored in ``folder`` (its manifest says how many items)."""
        manifest = read_json(Path(folder) / "manifest.json")
        return cls(Path(folder), int(manifest["n_items"]), int(manifest["shard_size"]))

    @property
    def n_shards(self) -> int:
        return -(-self.n_items // self.shard_size)

    def bounds(self, shard: int) -> tuple[int, int]:
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.n_items)

    def _stem(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:05d}"

    def _files(self, shard: int) -> tuple[Path, ...]:
        raise NotImplementedError

    def has(self, shard: int) -> bool:
        """Whether every file of ``shard`` exists and is whole (see :meth:`_check`)."""
        return self._problem(shard) == ""

    def _problem(self, shard: int) -> str | None:
        """None when a file of ``shard`` is absent, ``""`` when all are whole, else what is wrong
        (naming the file)."""
        files = self._files(shard)
        links = [f for f in files if f.is_symlink()]
        if links:  # never read through a link placed in the cache: removed, computed again
            return f"{links[0]} is a link, not a file of this cache"
        if not all(f.exists() for f in files):
            return None
        try:
            self._check(shard)
        except FileNotFoundError:  # removed since (force, another process)
            return None
        except (ValueError, OSError) as exc:
            return str(exc)
        return ""

    def _check(self, shard: int) -> None:
        """A ``ValueError`` naming the file and what is wrong with it when a file of ``shard`` is
        not whole. Cheap: ``.npy`` files are checked by their header and length, not read."""
        start, stop = self.bounds(shard)
        for f in self._files(shard):
            if f.suffix != ".npy":
                continue
            try:
                shape = npy_shape(f)
            except FileNotFoundError:
                raise
            except (ValueError, OSError) as exc:  # name the file in what is said
                msg = f"{f}: {exc}"
                raise ValueError(msg) from None
            if self._rows(shape) != stop - start:
                msg = f"{f}: it has {self._rows(shape)} rows, not the shard's {stop - start}"
                raise ValueError(msg)

    def _rows(self, shape: tuple[int, ...]) -> int:
        """How many items an ``.npy`` file of this shape holds."""
        return shape[0] if shape else 0

    def missing(self) -> list[int]:
        """The shards still to compute: those with a file absent, and those with a file that is
        not whole, which are removed (with a :class:`CacheWarning` naming the file)."""
        out = []
        for s in range(self.n_shards):
            problem = self._problem(s)
            if problem:
                warnings.warn(
                    f"cache file {problem} — removed; shard {s} is computed again",
                    CacheWarning,
                    stacklevel=2,
                )
                self._remove(s)
            if problem != "":
                out.append(s)
        return out

    def _remove(self, shard: int) -> None:
        for f in self._files(shard):
            with contextlib.suppress(OSError):  # gone already, or a read-only cache
                f.unlink()

    def clear(self) -> None:
        for s in range(self.n_shards):
            for f in self._files(s):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()


class ShardedArray(Shards):
    """Rows ``[0, n_items)`` of one array, stored as ``shard-XXXXX.npy`` files of ``shard_size`` rows.

    Each shard also carries a JSON side-car (``shard-XXXXX.json``) with per-item notes (for example
    the items that could not be decoded), written after the array.
    """

    def _files(self, shard: int) -> tuple[Path, Path]:
        stem = self._stem(shard)
        return stem.with_suffix(".npy"), stem.with_suffix(".json")

    def write(self, shard: int, arr: np.ndarray, notes: dict[str, Any] | None = None) -> None:
        start, stop = self.bounds(shard)
        if len(arr) != stop - start:
            msg = f"shard {shard} needs {stop - start} rows, got {len(arr)}"
            raise ValueError(msg)
        arr_path, side_path = self._files(shard)
        write_npy(arr_path, arr)
        write_json(side_path, notes or {})

    def read(self, shard: int) -> tuple[np.ndarray, dict[str, Any]]:
        arr_path, side_path = self._files(shard)
        return read_npy(arr_path), read_json(side_path)

    def _check(self, shard: int) -> None:
        super()._check(shard)
        side_path = self._files(shard)[1]
        try:
            read_json(side_path)  # a few notes: small
        except (ValueError, UnicodeDecodeError) as exc:
            msg = f"{side_path}: it is not whole JSON ({exc})"
            raise ValueError(msg) from None

    def assemble(self) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """All shards concatenated in order, and their side-cars. Every shard must be present."""
        missing = self.missing()
        if missing:
            msg = f"{len(missing)} shard(s) of {self.folder} are missing: {missing[:5]}"
            raise RuntimeError(msg)
        arrays, notes = [], []
        for s in range(self.n_shards):
            arr, side = self.read(s)
            arrays.append(arr)
            notes.append(side)
        # A 2-D shard with no columns holds no values (every item in it failed): fill it with NaN.
        widths = {a.shape[1:] for a in arrays if not (a.ndim == 2 and a.shape[1] == 0)}
        if len(widths) == 1 and any(a.ndim == 2 and a.shape[1] == 0 for a in arrays):
            (tail,) = widths
            arrays = [
                np.full((len(a), *tail), np.nan, dtype=np.float32)
                if a.ndim == 2 and a.shape[1] == 0
                else a
                for a in arrays
            ]
        return np.concatenate(arrays, axis=0), notes


class ShardedBlobs(Shards):
    """One byte string per item (for example an encoded thumbnail), stored per shard as
    ``shard-XXXXX.bin`` (the items' bytes back to back) and ``shard-XXXXX.idx.npy`` (their
    ``n + 1`` offsets, written last). An item with no bytes (it could not be decoded) has an empty
    entry. :meth:`get` reads one item with a seek and a read; offsets are kept once read.
    """

    def __init__(self, folder: Path, n_items: int, shard_size: int) -> None:
        super().__init__(folder, n_items, shard_size)
        self._offsets: dict[int, np.ndarray] = {}

    def _files(self, shard: int) -> tuple[Path, Path]:
        stem = self._stem(shard)
        return stem.with_suffix(".bin"), stem.with_suffix(".idx.npy")

    def _rows(self, shape: tuple[int, ...]) -> int:
        return shape[0] - 1 if shape else 0  # the index holds n + 1 offsets

    def _check(self, shard: int) -> None:
        super()._check(shard)
        data_path, index_path = self._files(shard)
        end = int(read_npy(index_path)[-1])  # n + 1 offsets: small
        size = data_path.stat().st_size
        if size != end:
            msg = f"{data_path}: it has {size} bytes where its index says {end}"
            raise ValueError(msg)

    def write(self, shard: int, blobs: list[bytes]) -> None:
        start, stop = self.bounds(shard)
        if len(blobs) != stop - start:
            msg = f"shard {shard} needs {stop - start} items, got {len(blobs)}"
            raise ValueError(msg)
        data_path, index_path = self._files(shard)
        with atomic_file(data_path) as fh:
            for b in blobs:
                fh.write(b)
        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        write_npy(index_path, offsets)
        self._offsets.pop(shard, None)

    def get(self, i: int) -> bytes:
        """The bytes of item ``i`` (``b""`` for an item that has none). ``KeyError`` when its
        shard is not stored."""
        i = int(i)
        if not 0 <= i < self.n_items:
            msg = f"item {i} out of range 0..{self.n_items - 1}"
            raise IndexError(msg)
        shard = i // self.shard_size
        offsets = self._offsets.get(shard)
        data_path, index_path = self._files(shard)
        if offsets is None:
            if not self.has(shard):
                raise KeyError(f"shard {shard} of {self.folder} is not stored")
            offsets = self._offsets[shard] = read_npy(index_path)
        j = i - shard * self.shard_size
        a, b = int(offsets[j]), int(offsets[j + 1])
        if a == b:
            return b""
        with open(data_path, "rb") as fh:
            fh.seek(a)
            return fh.read(b - a)

    def nbytes(self) -> int:
        """Bytes on disk over the stored shards."""
        return sum(
            f.stat().st_size for s in range(self.n_shards) if self.has(s) for f in self._files(s)
        )

    def copy_to(self, folder: Path) -> ShardedBlobs:
        """The stored shards copied (hard-linked where the file system allows) into ``folder``,
        replacing whatever an earlier copy left there."""
        folder = Path(folder)
        if folder.resolve() == self.folder.resolve():
            return self
        if folder.exists():  # another analysis saved here before: none of it may survive
            shutil.rmtree(folder)
        out = ShardedBlobs(folder, self.n_items, self.shard_size)
        for s in range(self.n_shards):
            if not self.has(s):
                continue
            for src, dst in zip(self._files(s), out._files(s), strict=True):
                link_or_copy(src, dst)
        return out
