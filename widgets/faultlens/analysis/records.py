"""What a user writes beside an analysis: saved slices (``slices.json``) and feature marks
(``annotations.json``), kept by one mechanism, :class:`RecordStore`, with a thin typed view for each
(:class:`~faultlens.analysis.record_views.SavedSlices`, :class:`~faultlens.analysis.record_views.FeatureMarks`).

A record store is a JSON file of records by key in the analysis folder:

* **Held in memory until a folder exists.** While ``analysis.folder`` is None, records live in
  memory. The first read or write after the analysis gets a folder moves them into the folder's
  file, merged with what is already there; a conflict is resolved by the kind's rule and named
  in the notes, nothing is dropped silently.
* **Safe with several writers.** Every write takes an inter-process lock (``filelock``, a hidden
  ``.<file stem>.lock`` beside the file), re-reads the file inside the lock, applies only its own
  change (a put or a delete by key: a delete removes only what it names), and replaces the file
  atomically (an exclusive temporary file in the folder, fsync, rename). Two widgets, in one kernel
  or in two, never lose each other's records.
* **Tolerant of hand edits.** Entries it cannot use are named once in the notes and kept in the
  file when it is written again. A file that is not JSON (or not an object) is moved aside to
  ``<file>.damaged-<time>`` before a new one is written, and the notes say so.
* **Change detection.** :meth:`RecordStore.changed` tells, from a ``stat``, whether the file
  changed since this store last read or wrote it (another process); :meth:`RecordStore.on_change`
  calls back at once when another store of this process writes the same file.

Nothing here imports a widget: the Explorer and the FeatureBrowser delegate to the views, and the
report reads saved slices through :class:`SavedSlices` too.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faultlens.store import json_bytes
from faultlens.store.files import (
    FileLock,
    atomic_file,
    check_inside,
    lock_path,
    read_bytes,
)

SLICES_FILE = "slices.json"
MARKS_FILE = "annotations.json"
FORMAT = 1
MARKS = ("", "core", "spurious")
SLICE_COLUMNS = ("id", "path", "label", "label_name", "pred", "pred_name", "confidence", "loss",
                 "correct")  # fmt: skip

_SLICE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9 _.\-]{0,63}$")


def check_slice_name(name: object) -> str:
    """Return ``name`` if it is a valid slice name, else raise ``ValueError`` saying why.

    Slice names become file names on export, so they are 1–64 characters of letters, digits,
    space, ``_``, ``-`` and ``.``, not starting with ``.``, ``-`` or a space (no path traversal).
    """
    if not isinstance(name, str):
        msg = f"a slice name must be a str, got {type(name).__name__}"
        raise TypeError(msg)
    if not _SLICE_NAME.match(name) or ".." in name or name != name.strip():
        msg = (
            f"invalid slice name {name!r}: use 1-64 letters, digits, spaces, '_', '-' or '.', "
            "starting with a letter, digit or '_' (no '/', '\\' or '..'), e.g. 'dark_shirts'"
        )
        raise ValueError(msg)
    return name


# --------------------------------------------------------------------------- kinds of records

# (key, the file's entry, the memory's entry, keys taken) -> the entries to put, and a note or ""
Merge = Callable[[Hashable, dict, dict, Mapping], tuple[dict[Hashable, dict], str]]


@dataclass(frozen=True)
class RecordKind:
    """How one kind of record sits in its file.

    ``keyed``: the file holds ``{section: {key: entry}}`` (the key is the entry's name); else
    ``{section: [entry, ...]}`` and ``key_of(entry)`` gives the key. ``key_of(name, entry)``
    raises ``ValueError``/``KeyError``/``TypeError`` for an entry that cannot be used (kept in
    the file as it is). ``merge`` decides what a record kept in memory does to the file's record
    of the same key when the two differ. ``unusable`` describes a usable entry, for the note.
    """

    file: str
    section: str
    noun: str
    keyed: bool
    key_of: Callable[[Any, Any], Hashable]
    merge: Merge
    unusable: str


def _slice_key(name: Any, entry: Any) -> str:
    check_slice_name(name)
    if not isinstance(entry, dict):
        msg = "not an object"
        raise TypeError(msg)
    rows, ids = entry.get("rows"), entry.get("ids")
    if rows is None and ids is None:
        msg = "neither rows nor ids"
        raise KeyError(msg)
    if rows is not None and not (
        isinstance(rows, list)
        and all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rows)
    ):
        msg = "rows must be a list of whole numbers >= 0"
        raise TypeError(msg)
    if ids is not None and not isinstance(ids, list):
        msg = "ids must be a list"
        raise TypeError(msg)
    return name


def free_slice_name(name: str, taken: Mapping[str, Any]) -> str:
    """A valid slice name like ``name`` that is not in ``taken``: ``<name>-unsaved``, then
    ``<name>-unsaved-2``, … (shortened to stay within 64 characters)."""
    for k in range(1, 10_000):
        suffix = "-unsaved" if k == 1 else f"-unsaved-{k}"
        new = name[: 64 - len(suffix)].rstrip() + suffix
        if new not in taken:
            return new
    msg = f"no free name for slice {name!r}"
    raise ValueError(msg)


def _merge_slice(key: Any, old: dict, new: dict, taken: Mapping) -> tuple[dict, str]:
    """Same images: stored once. Other images: the file's slice keeps its name, the memory one
    is stored under a free name (``<name>-unsaved``)."""
    if (old.get("ids"), old.get("rows")) == (new.get("ids"), new.get("rows")):
        return {}, ""
    other = free_slice_name(key, taken)
    return {other: new}, f"{key!r} -> {other!r}"


def _mark_key(_name: Any, m: Any) -> tuple[str, int, int]:
    if not isinstance(m, dict) or not isinstance(m.get("layer"), str) or m.get("mark") not in MARKS:
        msg = "not a mark"
        raise ValueError(msg)
    cls, feature = m["class"], m["feature"]
    if isinstance(cls, bool) or isinstance(feature, bool):
        msg = "class and feature must be whole numbers"
        raise TypeError(msg)
    cls, feature = int(cls), int(feature)
    if cls < 0 or feature < 0:
        msg = "class and feature must be >= 0"
        raise ValueError(msg)
    return (m["layer"], cls, feature)


def _merge_mark(key: Any, old: dict, new: dict, _taken: Mapping) -> tuple[dict, str]:
    """The more recently updated mark is kept (the memory one on a tie)."""
    where = f"{key[1]}/{key[2]}"
    if old.get("mark") == new.get("mark"):
        return {key: new}, ""
    if str(old.get("updated", "")) > str(new.get("updated", "")):
        return {}, f"{where}: kept the file's newer {old.get('mark')!r}, not {new.get('mark')!r}"
    return {key: new}, f"{where}: {new.get('mark')!r} replaced the file's {old.get('mark')!r}"


SLICES = RecordKind(
    file=SLICES_FILE, section="slices", noun="slice", keyed=True, key_of=_slice_key,
    merge=_merge_slice, unusable="that are not a saved slice (a valid name and a list of rows)",
)  # fmt: skip
MARKS_KIND = RecordKind(
    file=MARKS_FILE, section="marks", noun="mark", keyed=False, key_of=_mark_key,
    merge=_merge_mark, unusable="without a layer, class, feature and 'core'/'spurious' mark",
)  # fmt: skip


# --------------------------------------------------------------------------- the store

# stores of this process by the file they hold: a write tells the others at once
_LIVE: dict[str, weakref.WeakSet[RecordStore]] = {}
_LIVE_LOCK = threading.Lock()


@dataclass
class _Parsed:
    records: dict[Hashable, dict]
    unusable: list[tuple[Any, Any]]  # (name or None, raw entry): kept as they are
    top: dict[str, Any]  # the file's other top-level keys, kept
    damaged: str = ""  # why the file cannot be read ("" when it can)


class RecordStore:
    """Records of one kind by key, in ``<analysis folder>/<kind.file>`` (in memory while the
    analysis has no folder).

    Parameters
    ----------
    kind:
        :data:`SLICES` or :data:`MARKS_KIND` (or a :class:`RecordKind` of your own).
    where:
        The analysis (anything with a ``folder`` attribute, read on every call, so saving the
        analysis later is seen), a folder, or None (memory only).
    """

    def __init__(self, kind: RecordKind, where: Any) -> None:
        self.kind = kind
        self._where = where
        self._memory: dict[Hashable, dict] = {}  # the records while there is no folder
        self._seen: tuple[Path | None, tuple | None] = (None, None)  # (path, stat) last read
        self._parsed = _Parsed({}, [], {})
        self._notes: list[str] = []
        self._said: tuple[Path | None, int] = (None, 0)  # unusable entries last named
        self._callbacks: list[Callable[[], Any]] = []
        self._mutex = threading.RLock()
        #: Incremented whenever the records this store shows change (its own writes, another
        #: writer's seen by :meth:`read`).
        self.version = 0

    def __repr__(self) -> str:
        where = self.path or "memory"
        return f"<RecordStore {self.kind.file} at {where}: {len(self.read())} record(s)>"

    # -- where ---------------------------------------------------------------------------------

    @property
    def folder(self) -> Path | None:
        """The analysis folder, or None while it has none."""
        where = getattr(self._where, "folder", self._where)
        return None if where is None else Path(where).expanduser()

    @property
    def path(self) -> Path | None:
        """The records file, or None while the records are in memory."""
        folder = self.folder
        return None if folder is None else folder / self.kind.file

    @property
    def in_memory(self) -> int:
        """How many records are kept in memory, waiting for a folder."""
        return len(self._memory)

    # -- notes ---------------------------------------------------------------------------------

    def take_notes(self) -> str:
        """What happened that a user should know (records moved into the folder and their
        conflicts, unusable entries, a damaged file kept aside), once; ``""`` when nothing."""
        with self._mutex:
            notes, self._notes = self._notes, []
        return "; ".join(notes)

    def noted(self, text: str) -> str:
        """``text`` after the pending notes (:meth:`take_notes`), for a status line."""
        notes = self.take_notes()
        return f"{notes}; {text}" if notes else text

    def _note(self, text: str) -> None:
        self._notes.append(text)

    # -- reading ---------------------------------------------------------------------------------

    def read(self) -> dict[Hashable, dict]:
        """The usable records by key, each entry a new dict (its lists are shared: change records
        with :meth:`put`, not in place). Records kept in memory move into the folder's file
        first when the analysis has one now; when that cannot be written, the notes say why and
        the memory ones are still shown (and tried again next time)."""
        return {k: dict(v) for k, v in self._read().items()}

    def _read(self) -> dict[Hashable, dict]:
        with self._mutex:
            path = self.path
            if path is None:
                return dict(self._memory)
            if self._memory:
                try:
                    self.update()  # moves them, under the lock
                except OSError as exc:
                    n = len(self._memory)
                    self._note(f"could not store {n} unsaved {self.kind.noun}(s) in {path}: {exc}")
                    merged = dict(self._load(path).records)
                    merged.update(self._memory)
                    return merged
            return dict(self._load(path).records)

    def unusable(self) -> list[tuple[Any, Any]]:
        """The file's entries that cannot be used, as ``(name or None, entry)``: kept in it."""
        with self._mutex:
            path = self.path
            return [] if path is None else list(self._load(path).unusable)

    def changed(self) -> bool:
        """Whether the records may differ from the last :meth:`read` or write of this store: the
        file changed (its size, time, or inode: another process wrote it), the analysis got
        another folder, or records wait in memory for the folder it now has."""
        path = self.path
        if path != self._seen[0]:
            return True
        return path is not None and (bool(self._memory) or _signature(path) != self._seen[1])

    def on_change(self, callback: Callable[[], Any]) -> Callable[[], None]:
        """Call ``callback()`` after another store of this process writes the same file (two
        widgets on one analysis); returns a function that stops it. Another process's writes are
        seen by polling :meth:`changed`."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def _load(self, path: Path) -> _Parsed:
        """The parsed file, read again only when its ``stat`` changed."""
        sig = _signature(path)
        if (path, sig) != self._seen:
            self._parsed = self._parse(path) if sig is not None else _Parsed({}, [], {})
            if self._parsed.damaged:
                self._note(
                    f"{self.kind.file} cannot be read ({self._parsed.damaged}); its records are "
                    "not shown, and it is kept aside when a record is next written"
                )
            self._seen = (path, sig)
            self.version += 1
            self._say_unusable(path)
        return self._parsed

    def _say_unusable(self, path: Path) -> None:
        n = len(self._parsed.unusable)
        if n and (path, n) != self._said:
            self._note(
                f"{self.kind.file}: {n} entry(ies) {self.kind.unusable} are ignored (kept in the "
                "file)"
            )
        self._said = (path, n)

    def _parse(self, path: Path) -> _Parsed:
        check_inside(path.parent, path)
        try:
            data = json.loads(read_bytes(path))
        except FileNotFoundError:
            return _Parsed({}, [], {})
        except (ValueError, UnicodeDecodeError) as exc:
            return _Parsed({}, [], {}, damaged=f"not JSON: {exc}")
        kind = self.kind
        want = dict if kind.keyed else list
        if not isinstance(data, dict):
            return _Parsed({}, [], {}, damaged="not a JSON object")
        section = data.get(kind.section, want())
        if not isinstance(section, want):
            return _Parsed(
                {}, [], {}, damaged=f"its {kind.section!r} is not a JSON {want.__name__}"
            )
        top = {k: v for k, v in data.items() if k != kind.section}
        records: dict[Hashable, dict] = {}
        unusable: list[tuple[Any, Any]] = []
        items = section.items() if kind.keyed else ((None, e) for e in section)
        for name, entry in items:
            try:
                key = kind.key_of(name, entry)
            except (ValueError, KeyError, TypeError):
                unusable.append((name, entry))
                continue
            if not kind.keyed and key in records:  # the same mark twice (a hand edit): the later
                unusable.append((None, records.pop(key)))
            records[key] = entry
        return _Parsed(records, unusable, top)

    # -- writing ---------------------------------------------------------------------------------

    def put(self, key: Hashable, entry: dict) -> None:
        """Store ``entry`` under ``key`` (replacing a record of that key)."""
        self.update(puts={key: entry})

    def delete(self, key: Hashable) -> bool:
        """Remove the record ``key``; whether there was one (another writer may have removed
        it first)."""
        return bool(self.update(deletes=[key]))

    def update(
        self, puts: Mapping[Hashable, dict] | None = None, deletes: Iterable[Hashable] = ()
    ) -> list[Hashable]:
        """Apply deletes, then puts, in one write; returns the deleted keys that existed.

        With a folder: under the file's lock, the file is read again, the records kept in memory
        are merged in (see :class:`RecordKind`), this change is applied, and the file is replaced
        atomically. Without one: the change is made in memory.
        """
        puts, deletes = dict(puts or {}), list(deletes)
        with self._mutex:
            path = self.path
            if path is None:
                gone = [k for k in deletes if self._memory.pop(k, None) is not None]
                self._memory.update(puts)
                self.version += 1
                return gone
            check_inside(path.parent, path)
            with self._locked(path):
                parsed = self._parse(path)
                if parsed.damaged:
                    aside = _set_aside(path)
                    self._note(
                        f"{self.kind.file} could not be read ({parsed.damaged}): kept as "
                        f"{aside.name}, and a new one written"
                    )
                records = parsed.records
                moved = self._merge_memory(records, path) if self._memory else ""
                gone = [k for k in deletes if records.pop(k, None) is not None]
                unusable = parsed.unusable
                if self.kind.keyed:  # a put or delete that names an unusable entry replaces it
                    named = set(deletes) | set(puts)
                    gone += [n for n, _ in unusable if n in deletes]
                    unusable = [(n, e) for n, e in unusable if n not in named]
                records.update(puts)
                self._write(path, _Parsed(records, unusable, parsed.top))
                self._memory = {}
                if moved:
                    self._note(moved)
                self._parsed = _Parsed(records, unusable, parsed.top)
                self._seen = (path, _signature(path))
                self.version += 1
                self._say_unusable(path)
        self._tell_others(path)
        return gone

    def _merge_memory(self, records: dict[Hashable, dict], path: Path) -> str:
        """Merge the records kept in memory into ``records`` (the file's); the note to give."""
        conflicts = []
        for key, entry in self._memory.items():
            old = records.get(key)
            if old is None:
                records[key] = entry
                continue
            put, note = self.kind.merge(key, old, entry, records)
            records.update(put)
            if note:
                conflicts.append(note)
        n = len(self._memory)
        note = f"moved {n} {self.kind.noun}(s) kept in memory into {path}"
        if conflicts:
            note += f" (conflicts: {', '.join(conflicts)})"
        return note

    def _write(self, path: Path, parsed: _Parsed) -> None:
        kind = self.kind
        if kind.keyed:
            section: Any = {**dict(parsed.unusable), **parsed.records}
        else:
            section = [*parsed.records.values(), *(e for _, e in parsed.unusable)]
        data = {"format": FORMAT, **parsed.top, kind.section: section}
        payload = json_bytes(data)
        check_inside(path.parent, path)
        with atomic_file(path) as fh:
            fh.write(payload)

    def _locked(self, path: Path) -> FileLock:
        """The file's inter-process lock (``.<file stem>.lock`` beside it; it dies with its
        process)."""
        if not path.parent.is_dir():
            msg = f"the analysis folder {path.parent} does not exist"
            raise FileNotFoundError(msg)
        return FileLock(lock_path(path))

    def _tell_others(self, path: Path) -> None:
        real = os.path.realpath(path)
        with _LIVE_LOCK:
            live = _LIVE.setdefault(real, weakref.WeakSet())
            live.add(self)
            others = [s for s in live if s is not self]
        for other in others:
            if other.path is not None and os.path.realpath(other.path) == real:
                for callback in list(other._callbacks):
                    callback()

    def watch(self) -> None:
        """Register for :meth:`on_change` calls (done by every write; a store that only reads
        calls this once its analysis has a folder)."""
        path = self.path
        if path is not None:
            with _LIVE_LOCK:
                _LIVE.setdefault(os.path.realpath(path), weakref.WeakSet()).add(self)


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a changed file: size, modification and change time, inode (None: no file)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _set_aside(path: Path) -> Path:
    """Move a damaged records file to ``<name>.damaged-<UTC time>`` (never over another)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    for k in range(1000):
        aside = path.with_name(f"{path.name}.damaged-{stamp}" + (f"-{k}" if k else ""))
        if not os.path.lexists(aside):
            os.rename(path, aside)
            return aside
    msg = f"cannot keep the damaged {path} aside: too many damaged copies"
    raise OSError(msg)


# --------------------------------------------------------------------------- saved slices


__all__ = [
    "MARKS",
    "MARKS_FILE",
    "MARKS_KIND",
    "SLICES",
    "SLICES_FILE",
    "RecordKind",
    "RecordStore",
    "check_slice_name",
    "free_slice_name",
]
