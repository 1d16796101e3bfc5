"""Long jobs of a widget: progress in the view, a Cancel button, one job at a time.

A widget mixes in :class:`Tasks` and runs each step that can take more than a moment (finding
slices, describing, computing features) through :meth:`Tasks.run_task`. The job receives a
:class:`Progress`: calling ``progress(done, total, text)`` between batches updates the synced
``task`` trait (the shared progress bar of ``widgets/js/src/shared/task.js`` shows it) and raises
:class:`Cancelled` once a cancel was asked for, so the job stops there with every finished batch
kept. The analysis layer never imports this module: it takes a plain ``progress(done, total)``
callback (e.g. :meth:`Progress.part`), and a raise from it is how it is stopped.

- Started by a front-end message (:meth:`Tasks.start_task`): the job runs in a worker thread, so the
  kernel keeps reading the widget's messages, among them ``{type: "cancel"}``.
- Called from Python (``explorer.find_slices()`` in a cell): it runs in the caller's thread and
  returns its result as any function does; ``task`` still shows the progress (stop it with the
  kernel's interrupt button; ``task`` then says "cancelled").
- One job at a time per widget: a second one while a job runs is refused with :class:`TaskBusyError`
  (a message from the view: said in ``status``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import traitlets as t

#: ``task["state"]`` values: running, then done, cancelled or error.
STATES = ("running", "done", "cancelled", "error")
#: The least seconds between two progress updates sent to the view (the last one is always sent).
MIN_INTERVAL = 0.1


class Cancelled(BaseException):
    """Raised by :class:`Progress` in a job whose cancel was asked for. A ``BaseException`` (as
    ``asyncio.CancelledError`` is) so that a job's ``except Exception`` around one of its stages
    does not swallow it. Its message, when given, says what was kept."""


class TaskBusyError(RuntimeError):
    """A job was started while another one of the same widget runs."""


class Progress:
    """The progress callback a job receives: ``progress(done, total, text="")``.

    Call it between batches: it raises :class:`Cancelled` once a cancel was asked for, else it
    updates the widget's ``task`` trait (at most every :data:`MIN_INTERVAL` seconds). ``total`` 0
    means "not known" (the view shows a busy bar without a fraction).
    """

    def __init__(self, owner: Tasks, name: str, cancel: threading.Event) -> None:
        self._owner, self.name, self._cancel = owner, name, cancel
        self._sent = 0.0

    @property
    def cancelled(self) -> bool:
        """Whether a cancel was asked for."""
        return self._cancel.is_set()

    def __call__(self, done: float, total: float, text: str = "") -> None:
        if self._cancel.is_set():
            raise Cancelled
        now = time.monotonic()
        if now - self._sent < MIN_INTERVAL and done < total:
            return
        self._sent = now
        self._owner.task = {"name": self.name, "done": float(done), "total": float(total),
                            "text": str(text), "state": "running"}  # fmt: skip

    def part(self, i: int, n: int, text: str) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` for step ``i`` of ``n`` (0-based): its fraction fills that
        step's share of the bar, and the text reads ``"{text}: done/total"``. This is what the
        analysis layer gets (it knows nothing of widgets)."""

        def step(done: int, total: int) -> None:
            frac = done / total if total else 0.0
            self(i + frac, n, f"{text}: {done}/{total}" if total else text)

        return step


class Tasks(t.HasTraits):
    """A widget's one running job (a mixin; see the module's docstring). The host has a synced
    ``status`` trait and calls :meth:`_init_tasks` in its constructor."""

    task = t.Dict(
        help="Python writes: the running or last job: {name, done, total (0: unknown), text, "
        "state: running | done | cancelled | error}; {} before the first. JS sends "
        "{type: 'cancel'} to stop it."
    ).tag(sync=True)

    def _init_tasks(self) -> None:
        self._task_mutex = threading.Lock()
        self._task_owner: int | None = None  # thread ident of the running job
        self._task_name = ""
        self._task_cancel = threading.Event()
        self._task_progress: Progress | None = None
        self._task_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ public

    @property
    def task_running(self) -> bool:
        """Whether a job runs now."""
        return self._task_owner is not None

    def cancel_task(self) -> bool:
        """Ask the running job to stop at its next batch (what it finished is kept); returns
        whether a job was running. The view's Cancel button sends ``{type: "cancel"}``."""
        if self._task_owner is None:
            return False
        self._task_cancel.set()
        self.task = {**self.task, "text": "cancelling…", "state": "running"}
        return True

    def wait_task(self, timeout: float | None = None) -> bool:
        """Wait for a job started from the view to end; returns False on timeout (for tests and
        scripts)."""
        thread = self._task_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # ------------------------------------------------------------------ running jobs

    def run_task(self, name: str, job: Callable[[Progress], Any]) -> Any:
        """Run ``job(progress)`` as this widget's job named ``name`` and return its result.

        Called inside a running job of the same thread (a job that runs another), ``job`` simply
        runs with the outer job's progress. Another thread's running job: :class:`TaskBusyError`.
        """
        me = threading.get_ident()
        if self._task_owner == me:
            assert self._task_progress is not None
            return job(self._task_progress)
        self._claim(name)
        self._task_owner = me
        return self._run_claimed(name, job, reraise=True)

    def start_task(self, name: str, job: Callable[[Progress], Any]) -> threading.Thread | None:
        """Run ``job(progress)`` in a worker thread (a command from the view); returns the thread,
        or None when another job runs (said in ``status``). Errors go to ``status``."""
        try:
            self._claim(name)
        except TaskBusyError as exc:
            self.status = str(exc)
            return None

        def work() -> None:
            self._task_owner = threading.get_ident()
            self._run_claimed(name, job, reraise=False)

        thread = threading.Thread(target=work, name=f"faultlens: {name}", daemon=True)
        self._task_thread = thread
        thread.start()
        return thread

    def _claim(self, name: str) -> None:
        with self._task_mutex:
            if self._task_owner is not None:
                msg = f"busy: {self._task_name} is running (cancel it or wait), {name} not started"
                raise TaskBusyError(msg)
            self._task_owner = -1  # reserved until the job's thread takes it
            self._task_name = name
            self._task_cancel.clear()
            self._task_progress = Progress(self, name, self._task_cancel)
        self.task = {"name": name, "done": 0.0, "total": 0.0, "text": "", "state": "running"}

    def _run_claimed(self, name: str, job: Callable[[Progress], Any], *, reraise: bool) -> Any:
        progress = self._task_progress
        assert progress is not None
        end: dict[str, Any] = {"name": name, "done": 0.0, "total": 0.0}
        try:
            result = job(progress)
        except (Cancelled, KeyboardInterrupt) as exc:
            kept = str(exc) if isinstance(exc, Cancelled) else "interrupted"
            text = f"{name} cancelled" + (f": {kept}" if kept else "")
            self._end({**end, "text": text, "state": "cancelled"}, text)
            if reraise:
                raise
            return None
        except BaseException as exc:
            text = f"{name} failed: {exc}"
            self._end({**end, "text": str(exc), "state": "error"}, text)
            if reraise:
                raise
            return None
        last = self.task
        self._end({**end, "done": last.get("total", 0.0), "total": last.get("total", 0.0),
                   "text": last.get("text", ""), "state": "done"}, None)  # fmt: skip
        return result

    def _end(self, task: dict[str, Any], status: str | None) -> None:
        with self._task_mutex:
            self._task_owner = None
            self._task_progress = None
        with self.hold_sync():
            self.task = task
            if status is not None:
                self.status = status

    def _task_commands(self) -> dict[str, Callable[[dict], Any]]:
        """The front end's command this mixin answers: ``{type: "cancel"}``."""
        return {"cancel": lambda _c: self.cancel_task()}
