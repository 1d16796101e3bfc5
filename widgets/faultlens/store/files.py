"""Files faultlens writes and reads in its own folders (the cache, an analysis folder): atomic
writes, locks between processes, and links refused.

Every file is written to a temporary file created exclusively (``O_EXCL``, ``O_NOFOLLOW``) in the
target folder, through the descriptor that created it, flushed to disk and renamed into place: a
killed process leaves the whole old file or the whole new one, and a write never follows a link
someone placed there. Several processes coordinate through lock files (``filelock``: a lock dies
with its process). A folder shared by a group (``FAULTLENS_CACHE_GROUP=1``, or a folder with the
setgid bit) gets group-writable files and setgid folders. A whole folder is replaced in one step
with :func:`replace_folder`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Self

GROUP_ENV_VAR = "FAULTLENS_CACHE_GROUP"
LOCK_TIMEOUT = 120.0  # seconds to wait for another process's lock before saying so


class UnsafePathError(OSError):
    """A file faultlens would read or write is a link, or lies outside its folder."""


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


def _temp_beside(path: Path) -> tuple[int, str]:
    """An exclusively created temporary file in ``path``'s folder, named after ``path`` and the
    writing process (so the next write of ``path`` removes what a killed writer left behind)."""
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
    return fd, tmp


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
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            if hasattr(os, "fchmod"):  # not on Windows
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
    fd, tmp = _temp_beside(path)
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


def lock_path(path: Path) -> Path:
    """The lock file that guards ``path``: ``.<stem>.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.stem}.lock")


class FileLock:
    """An inter-process lock on a file (``filelock``; it dies with its process), made safe for
    shared folders: the lock file is never a link, is group-writable in a group-shared folder,
    and when the folder it is in was replaced while waiting (:func:`replace_folder`) the lock is
    taken again on the file now at that path."""

    def __init__(self, path: Path, timeout: float = LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock: Any = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock (waiting up to ``timeout`` s, or not at all); whether it was taken.
        ``TimeoutError`` names the file when another process holds it longer."""
        import filelock

        check_inside(self.path.parent, self.path)
        mode = 0o664 if group_shared(self.path.parent) else 0o644
        self._create(mode)
        while True:
            lock = filelock.FileLock(self.path, timeout=self.timeout if blocking else 0, mode=mode)
            try:
                lock.acquire()
            except filelock.Timeout:
                if not blocking:
                    return False
                msg = (
                    f"{self.path.parent} is being written by another process (it holds "
                    f"{self.path.name} for over {self.timeout:.0f} s); try again"
                )
                raise TimeoutError(msg) from None
            # the file locked is still the one at this path (not in a folder swapped away while
            # waiting: replace_folder); filelock keeps its descriptor in its context
            fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
            try:
                held, now = (os.fstat(fd), os.lstat(self.path)) if fd is not None else (None, None)
                same = held is None or (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
            except OSError:
                same = False
            if same:
                self._lock = lock
                return True
            lock.release()

    def _create(self, mode: int) -> None:
        """Create the lock file if it is missing, so that a folder that refuses new files is
        reported at once (``filelock`` would wait out its timeout on that)."""
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            os.close(os.open(self.path, flags, mode))
        except PermissionError as err:
            msg = (
                f"{self.path.parent} cannot be written ({err.strerror}): make the folder writable, "
                "or save the analysis to another folder"
            )
            raise PermissionError(err.errno, msg) from None
        except OSError:
            pass  # a link or another odd file: filelock and the check after it report it

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _rename_exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system cannot."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # old kernel, file system
            return False
        raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")
    return True


def _remove_stale_folders(parent: Path, name: str) -> None:
    """Remove the temporary folders a killed :func:`replace_folder` of ``name`` left (those whose
    process, on this host, no longer runs)."""
    prefix = f".{name}.{_owner().rsplit('-', 1)[0]}-"
    for d in parent.glob(f"{glob.escape(prefix)}*"):
        pid = d.name[len(prefix) :].split(".", 1)[0]
        if d.suffix in (".new", ".old") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _is_lock_or_temp(name: str) -> bool:
    """Whether ``name`` in a folder is one of faultlens's lock or temporary files."""
    return name.startswith(".") and name.endswith((".lock", ".tmp"))


def _carry(src: Path, dst: Path) -> None:
    """``src`` (a file or a folder) hard-linked (copied where links cannot be made) to ``dst``,
    which does not exist; links inside it are left out (never followed)."""
    if src.is_symlink():
        return
    if src.is_dir():
        make_dirs(dst)
        for child in src.iterdir():
            _carry(child, dst / child.name)
    elif src.is_file():
        try:
            os.link(src, dst, follow_symlinks=False)
        except (OSError, NotImplementedError):  # another file system; no such option here
            shutil.copy2(src, dst, follow_symlinks=False)


def replace_folder(
    folder: Path,
    build: Callable[[Path], Any],
    *,
    keep: tuple[str, ...] = (),
    own: Collection[str] | None = None,
) -> Path:
    """Write a whole folder atomically: ``build(tmp)`` fills a new temporary sibling folder, then,
    under the folder's lock (``.<name>.lock`` beside it), it takes the place of ``folder``.

    Two writers leave one complete folder, never a mix; a reader sees the old folder or the new
    one (on Linux the two are swapped in one step; elsewhere there is a moment with neither). The
    files named in ``keep`` (records a user writes beside the folder's content, each under its
    lock, :func:`lock_path`) are carried into the new folder under those locks, unless ``build``
    wrote them: a record written while the folder is replaced lands in the old folder before the
    swap, or in the new one after it. When ``own`` names what the folder's writer owns, everything
    else in the old folder (a user's own files; links, locks and temporary files excepted) is
    carried too, hard-linked; by default it goes with the old folder. A ``build`` that raises, or
    a process killed at any point, leaves ``folder`` whole: the old one or the new one (a killed
    writer's temporary folder is removed by the next replace). Returns ``folder``.
    """
    folder = Path(folder).expanduser()
    if folder.is_symlink():
        msg = f"{folder} is a link: save into the folder it points to, or remove the link"
        raise UnsafePathError(msg)
    parent = folder.parent
    make_dirs(parent)
    _remove_stale_folders(parent, folder.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{_owner()}.", suffix=".new", dir=parent))
    try:
        if group_shared(parent):
            os.chmod(tmp, 0o2770 | (0o777 & ~_umask()))  # noqa: S103 (asked: a group's folder)
        else:
            os.chmod(tmp, 0o777 & ~_umask())
        build(tmp)
        with FileLock(parent / f".{folder.name}.lock"), contextlib.ExitStack() as held:
            if folder.is_dir():  # each record's lock, released however this ends
                for name in keep:
                    held.enter_context(FileLock(lock_path(folder / name)))
            built = {p.name for p in tmp.iterdir()}
            carried = [name for name in keep if name not in built]
            if own is not None and folder.is_dir():
                carried += [
                    p.name
                    for p in folder.iterdir()
                    if p.name not in built
                    and p.name not in own
                    and p.name not in keep
                    and not _is_lock_or_temp(p.name)
                ]
            for name in carried:
                src, dst = folder / name, tmp / name
                if name in keep and src.is_file() and not src.is_symlink():
                    with atomic_file(dst) as fh:  # a copy: the old file may still be written
                        fh.write(read_bytes(src))
                elif name not in keep:
                    _carry(src, dst)
            if folder.is_dir() and _rename_exchange(tmp, folder):
                pass  # tmp now holds the old folder
            elif folder.exists():
                old = tmp.with_suffix(".old")
                os.rename(folder, old)
                os.rename(tmp, folder)
                tmp = old
            else:
                os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy where links cannot be made), replacing what
    was at ``dst`` atomically, never through a link."""
    tmp = dst.with_name(f".{dst.name}.{_owner()}.{os.urandom(6).hex()}.tmp")
    try:
        os.link(src, tmp, follow_symlinks=False)
    except (OSError, NotImplementedError):  # another file system; no such option here
        with atomic_file(dst) as fh, open(src, "rb") as fin:
            shutil.copyfileobj(fin, fh)
        return
    try:
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
