"""A widget's long jobs (faultlens.ui.tasks): progress, cancel between batches keeping what was
finished, errors in the status bar, one job at a time; and the Explorer's describe / find-slices
jobs built on it. Threads are coordinated with events, never with sleeps or timings."""

from __future__ import annotations

import threading
from typing import Any

import anywidget
import numpy as np
import pytest
import traitlets as t

from faultlens.analysis.describe.text import caption_slice
from faultlens.ui import tasks
from faultlens.ui.explorer import Explorer
from faultlens.ui.tasks import Cancelled, Progress, TaskBusyError, Tasks
from tests.helpers import planted_cluster

WAIT = 60  # seconds a test waits for a worker thread before it fails (never reached when it works)


class Host(Tasks, anywidget.AnyWidget):
    """The least host of the mixin: a status bar and the cancel command."""

    _esm = "export default { render() {} }"
    status = t.Unicode("").tag(sync=True)

    def __init__(self) -> None:
        super().__init__()
        self._init_tasks()
        self.tasks_seen: list[dict[str, Any]] = []
        self.observe(lambda c: self.tasks_seen.append(dict(c["new"])), names=["task"])

    def message(self, content: dict) -> None:
        """What a message from the view does."""
        handler = self._task_commands().get(content.get("type"))
        if handler is not None:
            handler(content)


class Gate:
    """A job of 10 batches that stops after batch ``at`` until the test opens the gate."""

    def __init__(self, at: int = 3, n: int = 10) -> None:
        self.at, self.n = at, n
        self.reached, self.open = threading.Event(), threading.Event()
        self.finished: list[int] = []

    def __call__(self, progress: Progress) -> list[int]:
        for i in range(self.n):
            progress(i, self.n, f"batch {i + 1}/{self.n}")
            if i == self.at:
                self.reached.set()
                assert self.open.wait(WAIT)
            self.finished.append(i)
        return list(self.finished)


def test_cancel_between_batches_keeps_the_finished_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "MIN_INTERVAL", 0.0)  # every update reaches the view
    w = Host()
    gate = Gate(at=3)
    thread = w.start_task("counting", gate)
    assert thread is not None and gate.reached.wait(WAIT)
    assert w.task_running and w.task["state"] == "running"
    w.message({"type": "cancel"})  # the view's Cancel button
    gate.open.set()
    assert w.wait_task(WAIT)
    # batch 3 was under way and is finished; the check before batch 4 stopped the job
    assert gate.finished == [0, 1, 2, 3]
    assert w.task["state"] == "cancelled" and w.task["name"] == "counting"
    assert "counting cancelled" in w.status
    assert not w.task_running
    # progress was shown while it ran: the view saw a running task with its fraction
    running = [s for s in w.tasks_seen if s["state"] == "running"]
    assert running[0]["done"] == 0 and running[-1]["text"] == "cancelling…"
    assert any(s["total"] == 10 and s["done"] > 0 for s in running)


def test_a_raise_inside_the_job_reaches_status() -> None:
    w = Host()

    def boom(progress: Progress) -> None:
        progress(1, 4, "batch 1/4")
        msg = "the captioner has no weights"
        raise RuntimeError(msg)

    assert w.start_task("describing", boom) is not None
    assert w.wait_task(WAIT)
    assert w.status == "describing failed: the captioner has no weights"
    assert w.task["state"] == "error" and w.task["text"] == "the captioner has no weights"
    # called from Python the error is raised as well, and said the same way
    with pytest.raises(RuntimeError, match="no weights"):
        w.run_task("describing", boom)
    assert w.status == "describing failed: the captioner has no weights"
    assert not w.task_running


def test_a_second_job_is_refused_while_one_runs() -> None:
    w = Host()
    gate = Gate(at=0)
    assert w.start_task("finding slices", gate) is not None
    assert gate.reached.wait(WAIT)
    other: list[int] = []
    assert w.start_task("describing", lambda p: other.append(1)) is None  # from the view
    assert w.status == (
        "busy: finding slices is running (cancel it or wait), describing not started"
    )
    with pytest.raises(TaskBusyError, match="finding slices is running"):
        w.run_task("describing", lambda p: other.append(1))  # from Python
    assert other == []
    gate.open.set()
    assert w.wait_task(WAIT)
    assert w.task["state"] == "done" and gate.finished == list(range(10))
    assert w.run_task("describing", lambda p: 42) == 42  # free again


def test_python_calls_run_synchronously_and_still_show_progress() -> None:
    w = Host()
    assert w.run_task("counting", Gate(at=99)) == list(range(10))
    assert w.task["state"] == "done" and w.task["done"] == w.task["total"] == 10
    assert any(s["state"] == "running" for s in w.tasks_seen)

    def outer(progress: Progress) -> int:  # a job that runs another: not refused
        progress(0, 2, "first")
        return w.run_task("inner", lambda p: p.part(1, 2, "second")(3, 3) or 7)

    assert w.run_task("outer", outer) == 7
    assert w.task["name"] == "outer" and w.task["text"] == "second: 3/3"

    def interrupted(progress: Progress) -> None:
        progress(0, 1)
        raise KeyboardInterrupt  # the kernel's stop button

    with pytest.raises(KeyboardInterrupt):
        w.run_task("counting", interrupted)
    assert w.task["state"] == "cancelled" and w.status == "counting cancelled: interrupted"
    assert not w.cancel_task()  # nothing runs


class SlowCaptioner:
    """A captioner that stops inside its ``stop_at``-th call until the test lets it go."""

    name = "slow"

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls = 0
        self.stop_at = stop_at
        self.stop_when: Any = None  # or stop in the first call for which this says True
        self.reached, self.go = threading.Event(), threading.Event()

    def caption(self, images: list) -> list[str]:
        self.calls += 1
        stop = self.calls == self.stop_at
        if self.stop_when is not None and not self.reached.is_set() and self.stop_when():
            stop = True
        if stop:
            self.reached.set()
            assert self.go.wait(WAIT)
        return [f"a photo {self.calls}" for _ in images]


def test_caption_slice_reports_progress_batch_by_batch() -> None:
    a, cluster = planted_cluster(400)
    seen: list[tuple[int, int]] = []
    cap = SlowCaptioner()
    ref = np.setdiff1d(np.arange(400), cluster)
    caption_slice(cap, a.image, cluster, ref, a.embeddings, correct=a.table["correct"].to_numpy(),
                  progress=lambda d, n: seen.append((d, n)), batch_size=4)  # fmt: skip
    totals = {n for _, n in seen}
    assert len(totals) == 1 and seen[-1][0] == seen[-1][1]
    done = [d for d, _ in seen]
    steps = np.diff([0, *done])
    # one call per batch of at most 4 images; with no term to check, the held-out part is skipped
    assert (steps[:-1] > 0).all() and (steps[:-1] <= 4).all() and cap.calls == len(seen) - 1


def test_cancelling_a_describe_from_the_view_keeps_the_previous_description() -> None:
    a, cluster = planted_cluster(400)
    cap = SlowCaptioner()
    ex = Explorer(a, captioner=cap)
    ex.select(cluster)
    ex.describe_selection()  # the description to keep
    before, last = dict(ex.descriptions), ex.last_description
    other = np.setdiff1d(np.arange(400), cluster)[:60]
    ex.select(other)
    cap.stop_at = cap.calls + 2  # inside the second batch of captions
    ex._on_custom_msg(ex, {"type": "describe"}, [])
    assert cap.reached.wait(WAIT)
    assert ex.describing and ex.task["name"] == "describing"
    ex._on_custom_msg(ex, {"type": "describe"}, [])  # a second request: refused, said
    assert ex.status.startswith("busy: describing is running")
    ex._on_custom_msg(ex, {"type": "cancel"}, [])  # the Cancel button
    cap.go.set()
    assert ex.wait_task(WAIT)
    assert cap.calls == cap.stop_at  # no batch after the cancel
    assert ex.task["state"] == "cancelled"
    assert ex.status == "describing cancelled: the previous description is kept"
    assert ex.descriptions == {**before, "stale": True}  # the earlier rows' description, intact
    assert ex.last_description is last and not ex.describing
    np.testing.assert_array_equal(ex.selection, other)  # the selection is kept


def test_cancelling_find_slices_shows_the_slices_with_the_finished_descriptions() -> None:
    a, _cluster = planted_cluster(400)
    cap = SlowCaptioner()
    ex = Explorer(a, captioner=cap)
    # stop in the first batch of captions of the second slice
    cap.stop_when = lambda: ex.status.startswith("describing slice 2/")
    ex._on_custom_msg(ex, {"type": "find_slices", "n_slices": 3}, [])
    assert cap.reached.wait(WAIT)
    ex._on_custom_msg(ex, {"type": "cancel"}, [])
    cap.go.set()
    assert ex.wait_task(WAIT)
    assert ex.task["state"] == "cancelled"
    assert ex.status == "finding slices cancelled: 3 slices shown, 1 of 3 described"
    assert len(ex.discovered) == 3
    described = [bool(s.descriptions) for s in ex.discovered_slices]
    assert described == [True, False, False]
    assert [bool(r["descriptions"]) for r in ex.discovered] == described


def test_cancelled_is_not_swallowed_by_a_stage_that_catches_errors() -> None:
    a, cluster = planted_cluster(400)

    def cancel(_d: int, _n: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):  # describe_members turns captioner *errors* into notes
        a.describe(cluster, captioner=SlowCaptioner(), progress=cancel)


def test_feature_browser_computes_in_the_background_and_a_cancel_keeps_the_shards(
    tiny_net, tmp_path
) -> None:
    import pandas as pd

    from faultlens.analysis import feature_index as fi
    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource
    from faultlens.store import ArtifactStore
    from faultlens.ui.features import FeatureBrowser
    from tests.helpers import blob_images, tiny_transform

    n = fi.SHARD + 200
    imgs, labels = blob_images(n)
    table = pd.DataFrame({"id": [str(i) for i in range(n)], "label": labels, "pred": labels,
                          "correct": True, "source_index": range(n)})  # fmt: skip
    a = Analysis(table, class_names=["r", "g", "b"], source=ArraySource(imgs, labels))
    store = ArtifactStore(tmp_path)
    reached, go = threading.Event(), threading.Event()

    def batches(done: int, _total: int) -> None:  # stops in the second shard until the test says
        if done > fi.SHARD and not reached.is_set():
            reached.set()
            assert go.wait(WAIT)

    fb = FeatureBrowser(a, tiny_net, "conv", tiny_transform, batch_size=100, store=store,
                        progress=batches, background=True)  # fmt: skip
    assert reached.wait(WAIT)  # the constructor returned while the model runs
    assert fb.task["name"] == "computing features" and fb.task["state"] == "running"
    assert not fb.ready and fb.features == [] and fb.class_names == ["r", "g", "b"]
    with pytest.raises(RuntimeError, match="not computed yet"):
        _ = fb.acts
    fb._on_custom_msg(fb, {"type": "cancel"}, [])
    go.set()
    assert fb.wait_task(WAIT)
    assert fb.task["state"] == "cancelled" and not fb.ready
    assert fb.status == (
        "computing features cancelled: finished shards stay cached; build the FeatureBrowser "
        "again to resume"
    )
    # the next one resumes after the finished shard, and fills every view
    seen: list[int] = []
    fb2 = FeatureBrowser(a, tiny_net, "conv", tiny_transform, batch_size=100, store=store,
                         progress=lambda d, _n: seen.append(d), background=True, k=3, gap_k=5)  # fmt: skip
    assert fb2.wait_task(WAIT)
    assert seen == [fi.SHARD + 100, fi.SHARD + 200]  # only the unfinished shard ran
    assert fb2.ready and fb2.task["state"] == "done" and fb2.feature >= 0
    assert len(fb2.groups["top"]["rows"]) == 3 and fb2.acts.shape[0] == n
