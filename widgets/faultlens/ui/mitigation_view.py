"""The FeatureBrowser's mitigation preview: what retraining the head without the features marked
spurious would buy, before and after, per group — run as the widget's task (progress, Cancel).

A mixin of :class:`~faultlens.ui.features.FeatureBrowser`. The browser keeps the splits it was given
(:meth:`MitigationPreview.use_splits`, the constructor's ``splits=`` or the first
:meth:`MitigationPreview.preview_mitigation`) so its "Preview mitigation" button can run again with
the current marks. Each split goes through the frozen network once (its
:class:`~faultlens.analysis.mitigation.SplitFeatures` are kept), so a second preview after changing
marks only retrains the head. The test split defaults to the analysis's own images: then "fixed" and
"broken" are rows of the analysis, and the panel's counts select them.

``mitigation`` (Python writes) is what the front end draws: ``missing`` (why the button cannot run,
"" when it can), ``stale`` (the marks changed since the preview shown) and ``result`` (the panel's
numbers, or None).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import traitlets as t

from faultlens.analysis.feature_index import AnalysisImages
from faultlens.analysis.mitigation import MitigationResult, SplitFeatures, mitigate, split_features
from faultlens.ui.tasks import Cancelled, Progress

TASK = "previewing mitigation"
SPLITS = ("train", "val", "test")
_GAP = re.compile(r"spurious gap class (\d+) \(points\)")


def _norm(spurious: Mapping[int, Any]) -> dict[int, list[int]]:
    return {int(c): sorted(int(f) for f in fs) for c, fs in spurious.items() if len(fs)}


class MitigationPreview(t.HasTraits):
    """The mitigation preview of a FeatureBrowser (a mixin; see the module's docstring)."""

    mitigation = t.Dict(
        help="Python writes: the mitigation preview: {missing: why the button cannot run ('' when "
        "it can), stale: the marks changed since, result: before/after numbers or None}. JS sends "
        "{type: 'preview_mitigation'} and {type: 'select_mitigation', change, group}."
    ).tag(sync=True)

    def _init_mitigation(self, splits: Mapping[str, Any] | None) -> None:
        self._splits: dict[str, Any] = {}
        self._split_feats: dict[str, SplitFeatures] = {}
        self._groups: np.ndarray | None = None
        self._used_marks: dict[int, list[int]] | None = None
        self._recipe: tuple[str, dict[str, Any]] = ("low_spuriosity", {})  # the button's
        self.mitigation_result: MitigationResult | None = None
        if splits:
            self.use_splits(**splits)
        else:
            self._update_mitigation()

    # ------------------------------------------------------------------ public

    def use_splits(
        self, train: Any = None, val: Any = None, test: Any = None, groups: Any = None
    ) -> None:
        """Keep the splits a preview uses: ``train`` and ``val`` as ``(images, labels)`` (a
        transformed (n, C, H, W) tensor, or PIL images the browser's transform reads); ``test``
        likewise, default the analysis's own images; ``groups``: a group per test image, or the
        name of an analysis column when ``test`` is the analysis (e.g. ``"planted_group"``).
        Splits not given keep what was kept before."""
        new = {"train": train, "val": val, "test": test}
        for name, split in new.items():
            if split is not None:
                self._splits[name] = split
                self._split_feats.pop(name, None)
        if groups is not None or test is not None:
            self._splits["groups"] = groups
        self._update_mitigation()

    def preview_mitigation(
        self,
        train: Any = None,
        val: Any = None,
        test: Any = None,
        groups: Any = None,
        method: str = "low_spuriosity",
        **opts: Any,
    ) -> MitigationResult:
        """Retrain the head without the features marked spurious in this browser and return the
        :class:`~faultlens.analysis.mitigation.MitigationResult` (also shown in the widget).

        The splits are kept (:meth:`use_splits`, whose arguments these are); ``method`` and
        ``opts`` go to :func:`~faultlens.analysis.mitigation.mitigate` (``epochs``, ``lr``,
        ``per_class``, ``seed``, ...); the widget's button uses them again. Runs as the widget's
        task: the progress bar follows it, the kernel's stop button cancels it (the marks and the
        earlier preview stay).
        """
        if any(x is not None for x in (train, val, test, groups)):
            self.use_splits(train, val, test, groups)
        self._recipe = (method, dict(opts))
        return self.run_task(TASK, lambda task: self._preview(task, method, opts))

    # ------------------------------------------------------------------ the job

    def _missing(self) -> str:
        """Why a preview cannot run now ("" when it can)."""
        if getattr(self, "index", None) is None:
            return "the features are not computed yet"
        lacking = [s for s in ("train", "val") if s not in self._splits]
        if lacking:
            return (
                f"no {' and '.join(lacking)} images: give them with fb.use_splits(train=(images, "
                "labels), val=(images, labels)) or fb.preview_mitigation(train=..., val=...)"
            )
        if not self.marks.spurious_features(self.layer):
            return (
                f"no feature of layer {self.layer} is marked spurious: mark one with the "
                "'spurious' button (or fb.set_mark(class, feature, 'spurious')) first"
            )
        return ""

    def _test_split(self) -> tuple[tuple[Any, np.ndarray], np.ndarray | None, bool]:
        """(test split, groups per test image or None, whether test rows are analysis rows)."""
        groups = self._splits.get("groups")
        test = self._splits.get("test")
        if test is None:
            table = self.analysis.table
            split = (AnalysisImages(self.analysis), table["label"].to_numpy(dtype=np.int64))
            if isinstance(groups, str):
                if groups not in table.columns:
                    msg = f"groups={groups!r}: the analysis has no such column; columns: " + str(
                        list(table.columns)
                    )
                    raise ValueError(msg)
                groups = table[groups].to_numpy()
            return split, None if groups is None else np.asarray(groups), True
        if isinstance(groups, str):
            msg = f"groups={groups!r} names an analysis column; with test= pass one group per image"
            raise ValueError(msg)
        return test, None if groups is None else np.asarray(groups), False

    def _preview(self, task: Progress, method: str, opts: dict[str, Any]) -> MitigationResult:
        missing = self._missing()
        if missing:
            raise ValueError(missing)
        t0 = time.perf_counter()
        spurious = _norm(self.marks.spurious_features(self.layer))
        test, groups, on_analysis = self._test_split()
        nf = self.index.features
        todo = [s for s in SPLITS if s not in self._split_feats]
        n = len(todo) + 1
        try:
            for i, name in enumerate(todo):
                split = test if name == "test" else self._splits[name]
                step = task.part(i, n, f"{name} images through the network")
                self._split_feats[name] = split_features(nf, split, name=name, progress=step)
            epoch = task.part(n - 1, n, "training the head: epoch")
            res = mitigate(
                nf, spurious, *(self._split_feats[s] for s in SPLITS), groups=groups,
                method=method, progress=lambda d, total, _stage: epoch(d, total), **opts,
            )  # fmt: skip
        except Cancelled:
            kept = "no result; the marks and the earlier preview are unchanged"
            raise Cancelled(kept) from None
        self.mitigation_result, self._used_marks = res, spurious
        self._groups = groups if on_analysis else None
        payload = _payload(res, spurious, groups, list(self.class_names))
        payload.update(seconds=round(time.perf_counter() - t0, 1), selectable=on_analysis)
        with self.hold_sync():
            self.mitigation = {"missing": "", "stale": False, "result": payload}
            worst = payload["worst"]
            self.status = (
                f"mitigation preview: overall {payload['overall']['before']:.1f}% → "
                f"{payload['overall']['after']:.1f}%"
                + (f", worst group {worst['before']:.1f}% → {worst['after']:.1f}%" if worst else "")
            )
        return res

    # ------------------------------------------------------------------ the view

    def _update_mitigation(self) -> None:
        """Refresh ``missing`` and ``stale`` (after marks change, splits are given, features end)."""
        cur = dict(self.mitigation)
        new = {**cur, "missing": self._missing(), "result": cur.get("result")}
        if self._used_marks is not None and getattr(self, "index", None) is not None:
            new["stale"] = _norm(self.marks.spurious_features(self.layer)) != self._used_marks
        else:
            new["stale"] = False
        if new != cur:
            self.mitigation = new

    def _mitigation_command(self, kind: str, content: dict) -> bool:
        """Answer a front-end message of the preview; returns whether it was one."""
        if kind == "preview_mitigation":
            missing = self._missing()
            if missing:
                self.status = f"cannot preview mitigation: {missing}"
            else:
                self.start_task(TASK, lambda task: self._preview(task, *self._recipe))
            return True
        if kind == "select_mitigation":
            self.select(self.mitigation_rows(content.get("change", "fixed"), content.get("group")))
            return True
        return False

    def mitigation_rows(self, change: str = "fixed", group: Any = None) -> np.ndarray:
        """Analysis rows the last preview ``"fixed"`` or ``"broken"`` (of ``group`` when given);
        only when its test split was the analysis."""
        res = self.mitigation_result
        if res is None:
            msg = "no mitigation preview yet: run fb.preview_mitigation(...) first"
            raise ValueError(msg)
        if not (self.mitigation.get("result") or {}).get("selectable"):
            msg = "the preview's test images are not the analysis's: no rows to select"
            raise ValueError(msg)
        if change not in ("fixed", "broken"):
            msg = f"change must be 'fixed' or 'broken', got {change!r}"
            raise ValueError(msg)
        hit = res.change == change
        if group is not None and self._groups is not None:
            hit &= self._groups.astype(str) == str(group)
        return np.flatnonzero(hit)


def _payload(
    res: MitigationResult, spurious: dict[int, list[int]], groups: np.ndarray | None,
    names: list[str],
) -> dict[str, Any]:  # fmt: skip
    """The panel's numbers (accuracies in %, gaps in points; plain floats and strings)."""
    cb, ca = res.correct_before, res.correct_after

    def counts(m: np.ndarray) -> dict[str, Any]:
        return {"n": int(m.sum()), "before": 100.0 * float(cb[m].mean()),
                "after": 100.0 * float(ca[m].mean()), "fixed": int((~cb & ca & m).sum()),
                "broken": int((cb & ~ca & m).sum())}  # fmt: skip

    rows = []
    if groups is not None:
        g = groups.astype(str)
        rows = [{"name": name, **counts(g == name)} for name in sorted(set(g.tolist()))]
    worst = None
    if rows:
        b = min(rows, key=lambda r: r["before"])
        a = min(rows, key=lambda r: r["after"])
        worst = {"before": b["before"], "after": a["after"], "group_before": b["name"],
                 "group_after": a["name"]}  # fmt: skip
    gaps = []
    for r in res.summary.itertuples(index=False):
        m = _GAP.fullmatch(str(r.metric))
        if m:
            c = int(m.group(1))
            gaps.append({"class": c, "name": names[c] if c < len(names) else str(c),
                         "before": _num(r.before), "after": _num(r.after), "k": int(r.n)})  # fmt: skip
    return {
        "method": res.info.get("method"),
        "marks": [
            {"class": c, "name": names[c] if c < len(names) else str(c), "features": fs}
            for c, fs in sorted(spurious.items())
        ],
        "overall": counts(np.ones(len(cb), dtype=bool)),
        "worst": worst,
        "groups": rows,
        "gaps": gaps,
        "epochs_run": int(res.epochs_run),
        "best_epoch": int(res.info.get("best_epoch", 0)),
        "train_images": len(res.train_rows),
    }


def _num(v: Any) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def mitigation_html(state: Mapping[str, Any]) -> str:
    """The before/after panel of a ``mitigation`` trait value as static HTML ("" before a
    preview); every data string escaped."""
    r = state.get("result") if state else None
    if not r:
        return ""
    esc = html.escape

    def f(v: Any) -> str:
        return "–" if v is None else f"{float(v):.1f}"

    rows = [("overall accuracy (%)", r["overall"]["before"], r["overall"]["after"])]
    if r.get("worst"):
        rows.append(("worst-group accuracy (%)", r["worst"]["before"], r["worst"]["after"]))
    rows += [(f"spurious gap: {g['name']} (points)", g["before"], g["after"]) for g in r["gaps"]]
    body = "".join(f"<tr><td>{esc(str(n))}</td><td>{f(b)}</td><td>{f(a)}</td></tr>"
                   for n, b, a in rows)  # fmt: skip
    body += "".join(
        f"<tr><td>group {esc(str(g['name']))} (%, n={int(g['n'])})</td><td>{f(g['before'])}</td>"
        f"<td>{f(g['after'])}</td><td>{int(g['fixed'])} fixed, {int(g['broken'])} broken</td></tr>"
        for g in r["groups"]
    )
    stale = " (stale: the marks changed since)" if state.get("stale") else ""
    return (
        f"<div class='faultlens-mitigation'><h4>Mitigation preview{stale}</h4><table>"
        f"<tr><th></th><th>before</th><th>after</th><th></th></tr>{body}</table></div>"
    )
