"""The on-disk artifact cache.

Every heavy result (classifier outputs, embeddings, projections, trained demo weights) is stored under
a key derived from what it was computed from: a data fingerprint, a model id, parameters and the
library version. Arrays are written in shards; every file is written to a temporary name in the same
folder and moved into place with an atomic rename, so a killed process leaves either a whole file or
none. A run that was killed half-way computes only the shards that are missing.

Nothing here unpickles: arrays are ``.npy`` read with ``allow_pickle=False``, metadata is JSON.

Several processes may fill one cache (two notebooks, a class on one JupyterHub volume): a shard is
computed by the one process that holds its lock (:meth:`Shards.claim`; a lock dies with its
process), and every file is written through a temporary file created exclusively (``O_EXCL``,
``O_NOFOLLOW``) in the target folder, so a write never follows a link someone placed there. A
cache shared by a group (``FAULTLENS_CACHE_GROUP=1``, or a cache folder with the setgid bit) makes
its files group-writable and its folders setgid.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Self

import numpy as np

from faultlens._version import __version__

ENV_VAR = "FAULTLENS_CACHE"
GROUP_ENV_VAR = "FAULTLENS_CACHE_GROUP"
LOCK_TIMEOUT = 120.0  # seconds to wait for another process's lock before saying so


class UnsafePathError(OSError):
    """A file faultlens would read or write is a link, or lies outside its folder."""


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


def _owner() -> str:
    """Who writes a temporary file: this host and process (part of the temporary file's name)."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        pass
    return True


def remove_stale_temps(folder: Path, name: str | None = None) -> int:
    """Remove temporary files that a killed writer left in ``folder`` (of ``name`` only, or all).

    A temporary file is stale when the process named in it (on this host) no longer runs; files of a
    live writer, of another host, or on a system without POSIX process checks are left alone.
    Returns how many were removed.
    """
    if os.name != "posix":
        return 0
    host = _owner().rsplit("-", 1)[0]
    removed = 0
    pattern = f".{glob.escape(name) if name else '*'}.{host}-*.tmp"
    for tmp in Path(folder).glob(pattern):
        pid = tmp.name[: -len(".tmp")].rsplit(".", 1)[0].rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):  # gone already, or a read-only folder
                tmp.unlink()
                removed += 1
    return removed


@functools.cache
def _umask() -> int:
    """This process's umask (read once, by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def group_shared(folder: Path) -> bool:
    """Whether files written in ``folder`` are for a group: ``$FAULTLENS_CACHE_GROUP`` is set
    (``1``/``true``/``yes``), or the folder has the setgid bit (a folder prepared for a group with
    ``chmod 2775``)."""
    if os.environ.get(GROUP_ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        return bool(os.stat(folder).st_mode & stat.S_ISGID)
    except OSError:
        return False


def _mode_for(path: Path) -> int:
    """The permissions a file written at ``path`` gets: those of the file it replaces, else
    what the umask gives a new file (``mkstemp`` would leave it readable by its owner alone),
    group-writable in a group-shared folder (:func:`group_shared`)."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            return st.st_mode & 0o777
    except OSError:
        pass
    mode = 0o666 & ~_umask()
    if group_shared(path.parent):
        mode |= 0o660
    return mode


def make_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents; in a group-shared place (:func:`group_shared`
    of the nearest existing parent) each new folder is group-writable and setgid, so what is
    written in it stays with the group."""
    folder = Path(folder)
    if folder.is_dir():
        return
    missing = []
    at = folder
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    shared = group_shared(at)
    folder.mkdir(parents=True, exist_ok=True)
    if shared:
        for d in reversed(missing):
            with contextlib.suppress(OSError):  # made by another user meanwhile
                os.chmod(d, (os.stat(d).st_mode & 0o7777) | 0o2770)  # noqa: S103 (asked: a group's cache)


def check_inside(folder: Path, path: Path) -> Path:
    """``path`` when it is a plain name inside ``folder`` that is not a link; else an
    :class:`UnsafePathError` naming it (a record or shard path must not lead elsewhere)."""
    folder, path = Path(folder), Path(path)
    if path.parent != folder and os.path.realpath(path.parent) != os.path.realpath(folder):
        msg = f"{path} is not inside {folder}"
        raise UnsafePathError(msg)
    if path.is_symlink():
        msg = (
            f"{path} is a link (to {os.readlink(path)}): faultlens does not read or write through "
            "links in its folders; remove the link"
        )
        raise UnsafePathError(msg)
    return path


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file to write; on success it replaces ``path`` atomically.

    The temporary file is created exclusively (``O_EXCL``, ``O_NOFOLLOW``) in ``path``'s folder
    and written through the descriptor that created it, and the rename replaces a link at
    ``path`` instead of writing through it: a link someone placed there is never followed. The
    data is flushed to disk (fsync) before the rename. On any error the temporary file is
    removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    make_dirs(path.parent)
    remove_stale_temps(path.parent, path.name)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as exc:  # read-only folder, disk full: name the folder, not a temporary file
        raise type(exc)(
            exc.errno, f"cannot write {path.name} in {path.parent} ({exc.strerror})"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), _mode_for(path))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place atomically.

    For files a user names (an export): when ``path`` is a link, the file it points to is written
    and the link stays. Files in faultlens's own folders are written with :func:`atomic_file`,
    which never follows a link. On any error the temporary file is removed and ``path`` keeps
    its previous content. The temporary file is named after ``path`` and the writing process, so
    the next write of ``path`` removes what a killed writer left behind.
    """
    path = Path(path)
    if path.is_symlink():  # write the file the link points to; the link stays
        path = Path(os.path.realpath(path))
    make_dirs(path.parent)
    remove_stale_temps(path.parent, path.name)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as exc:  # read-only folder, disk full: name the folder, not a temporary file
        raise type(exc)(
            exc.errno, f"cannot write {path.name} in {path.parent} ({exc.strerror})"
        ) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _mode_for(path))
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the JSON faultlens writes (indented, keys sorted)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (never through a link: :func:`atomic_file`)."""
    data = json_bytes(obj)
    with atomic_file(path) as fh:
        fh.write(data)


def read_bytes(path: Path) -> bytes:
    """The bytes of the file at ``path``, refusing a link (``O_NOFOLLOW``): an
    :class:`UnsafePathError` names it."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            msg = f"{path} is a link: faultlens does not read through links in its folders"
            raise UnsafePathError(msg) from None
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


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
        """The folder of one artifact."""
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
        if target.exists() and not force:
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
        manifest = self.folder / "manifest.json"
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
        if not all(f.exists() for f in self._files(shard)):
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
        with atomic_path(data_path) as tmp, open(tmp, "wb") as fh:
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
                with atomic_path(dst) as tmp:
                    tmp.unlink()
                    try:
                        os.link(src, tmp)
                    except OSError:
                        shutil.copyfile(src, tmp)
        return out
