"""Mitigation preview: retrain only the classifier's last linear layer and report what it buys.

Two recipes, both starting **from the original head** (retraining from scratch on low-spuriosity
images alone can reverse the bias, as Spuriosity Rankings reports):

- ``"low_spuriosity"`` (Spuriosity Rankings, ``mitigate_biases``): fine-tune on the ``per_class``
  least spurious training images of each class that has features marked spurious (a random
  ``per_class`` of every other class, so the head does not forget them), small learning rate, early
  stop once the validation spurious gap falls below ``target_gap``.
- ``"upweight"`` (JTT-style): fine-tune on all training images, the images flagged by a failure
  score (``flags``) weighted ``upweight`` times.

The head is trained on its own inputs (captured with a pre-hook on the ``nn.Linear``), so the
preview is exact and cheap: the rest of the network is frozen and runs once over each split. On the
demo (12,000 training images, 2 CPU cores) a preview takes 10-45 s, most of it that one pass.
:func:`split_features` is that pass on its own: a caller that previews again with other marks (the
FeatureBrowser) keeps its :class:`SplitFeatures` and passes them instead of images, so only the head
trains (a second or two).

``progress(done, total, stage)`` follows both parts: stage ``"images"`` after each batch through the
frozen network (``done``/``total`` count the images of the splits still to run), then stage
``"epochs"`` after each epoch. A raise from it (e.g. a widget's cancel) stops the preview there:
nothing is returned and nothing the caller holds has changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from faultlens.analysis.spurious import NeuralFeatures, spuriosity, spurious_gap
from faultlens.models.layers import HeadInfo, as_batches, model_device, pool

__all__ = ["MitigationResult", "SplitFeatures", "head_inputs", "mitigate", "split_features"]

#: ``progress(done, total, stage)``, stage ``"images"`` or ``"epochs"`` (see the module docstring).
ProgressFn = Callable[[int, int, str], None]


def head_inputs(
    model: nn.Module,
    head: nn.Linear,
    images: Any,
    *,
    transform: Callable[[Any], torch.Tensor] | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """(n, D) float32: what ``head`` receives for each image (captured with a forward pre-hook)."""
    got: list[np.ndarray] = []

    def pre(_m: nn.Module, args: tuple) -> None:
        got.append(args[0].detach().float().cpu().numpy())

    handle = head.register_forward_pre_hook(pre)
    try:
        with torch.inference_mode():
            for batch in as_batches(images, transform, batch_size):
                model(batch.to(model_device(model)))
    finally:
        handle.remove()
    return np.concatenate(got) if got else np.zeros((0, head.in_features), np.float32)


@dataclass
class SplitFeatures:
    """What the frozen network gives for one split: its pooled layer activations (spuriosity), the
    head's inputs (the head trains on these) and the labels. From :func:`split_features`."""

    name: str
    acts: np.ndarray  # (n, C) float32
    head_in: np.ndarray  # (n, D) float32
    labels: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.labels)


def _split_labels(name: str, split: Any) -> tuple[Any, np.ndarray]:
    """``split`` checked as ``(images, labels)``: a clear error naming the split otherwise."""
    if not isinstance(split, (tuple, list)) or len(split) != 2:
        msg = f"{name} must be (images, labels) or SplitFeatures, got {type(split).__name__}" + (
            f" of length {len(split)}" if isinstance(split, (tuple, list)) else ""
        )
        raise ValueError(msg)
    images, labels = split
    try:
        y = np.asarray(labels)
    except Exception as exc:
        msg = f"{name} labels cannot be read as an array: {exc}"
        raise ValueError(msg) from None
    if y.ndim != 1 or (len(y) and not np.issubdtype(y.dtype, np.integer)):
        msg = f"{name} labels must be a 1-D array of class indices, got shape {y.shape} {y.dtype}"
        raise ValueError(msg)
    array = isinstance(images, torch.Tensor) or (
        isinstance(images, np.ndarray) and images.dtype.kind != "O"
    )
    shape = tuple(images.shape) if array else None
    if shape is not None and len(shape) != 4:
        msg = (
            f"{name} images must be (n, C, H, W) transformed for the model (or a list of PIL "
            f"images with the browser's transform), got shape {shape}"
        )
        raise ValueError(msg)
    try:
        n = len(images)
    except TypeError:
        msg = f"{name} images must be a tensor, an array or a sequence, got {type(images).__name__}"
        raise ValueError(msg) from None
    if n != len(y):
        msg = f"{name} has {n} images but {len(y)} labels: pass one label per image"
        raise ValueError(msg)
    if n == 0:
        msg = f"{name} is empty: pass at least one image per class"
        raise ValueError(msg)
    return images, y.astype(np.int64)


def _linear_head(nf: NeuralFeatures, images: Any) -> HeadInfo:
    """The linear layer that reads ``nf.layer`` (traced with one image of ``images`` if need be)."""
    if nf._probe is None and images is None:
        msg = "the head is found by tracing a forward pass: compute the splits with this nf"
        raise RuntimeError(msg)
    if nf._probe is None:  # the head is found by tracing one forward pass
        nf._probe = next(iter(as_batches(images, nf.transform, 1)))
    head = nf._find_head()
    if head is None:
        msg = (
            f"mitigation retrains the linear layer that reads {nf.layer!r}; none was found (more "
            "parametric layers follow it): choose the last feature layer before the head"
        )
        raise ValueError(msg)
    return head


def split_features(
    nf: NeuralFeatures,
    split: tuple[Any, np.ndarray],
    *,
    name: str = "split",
    progress: Callable[[int, int], None] | None = None,
) -> SplitFeatures:
    """One pass of the frozen network over ``split = (images, labels)``: the layer's pooled
    activations and the head's inputs. ``progress(done, total)`` after each batch; ``name`` (e.g.
    ``"train"``) is what an error about this split says."""
    images, labels = _split_labels(name, split)
    try:
        head = _linear_head(nf, images)
    except (RuntimeError, TypeError) as exc:
        msg = f"{name} images: the model cannot read them ({exc})"
        raise ValueError(msg) from None
    n_out = head.module.out_features
    if labels.min() < 0 or labels.max() >= n_out:
        msg = (
            f"{name} labels must be class indices 0..{n_out - 1}, got "
            f"{labels.min()}..{labels.max()}"
        )
        raise ValueError(msg)
    got: list[np.ndarray] = []
    done = 0

    def pre(_m: nn.Module, args: tuple) -> None:
        got.append(args[0].detach().float().cpu().numpy())

    def each(out: torch.Tensor, batch: torch.Tensor) -> np.ndarray:
        nonlocal done
        pooled = pool(out).float().cpu().numpy()
        done += len(batch)
        if progress is not None:
            progress(done, len(labels))
        return pooled

    handle = head.module.register_forward_pre_hook(pre)
    try:
        parts = nf._run(images, each)
    except (RuntimeError, TypeError) as exc:
        msg = f"{name} images: the model failed on them ({exc}); pass them as the model expects"
        raise ValueError(msg) from None
    finally:
        handle.remove()
    acts = np.concatenate(parts).astype(np.float32, copy=False)
    return SplitFeatures(name, acts, np.concatenate(got).astype(np.float32, copy=False), labels)


@dataclass
class MitigationResult:
    """Before/after of a head retraining on the evaluation images.

    ``summary``: one row per metric (overall, each group, worst group, spurious gap per class) with
    ``before``, ``after``, ``change`` (accuracies in %, gaps in points). ``correct_before`` /
    ``correct_after``: per evaluation image. ``change``: per image ``"fixed"``, ``"broken"``,
    ``"unchanged"`` — ready to colour a map. ``history``: per epoch validation gap and accuracy.
    ``model``: a copy of the model with the new head.
    """

    summary: pd.DataFrame
    correct_before: np.ndarray
    correct_after: np.ndarray
    history: pd.DataFrame
    model: nn.Module
    head_name: str
    train_rows: np.ndarray
    epochs_run: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def change(self) -> np.ndarray:
        out = np.full(len(self.correct_before), "unchanged", dtype=object)
        out[~self.correct_before & self.correct_after] = "fixed"
        out[self.correct_before & ~self.correct_after] = "broken"
        return out

    def value(self, metric: str, when: str = "after") -> float:
        row = self.summary.loc[self.summary["metric"] == metric]
        if row.empty:
            msg = f"no metric {metric!r}; metrics: {list(self.summary['metric'])}"
            raise KeyError(msg)
        return float(row[when].iloc[0])


def _head_params(head: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The head's weight and bias (None when it has none) as float32 CPU copies.

    The preview trains on CPU float32 features (:func:`head_inputs`), whatever the device and dtype
    of the model (a CUDA or half-precision head must not meet CPU float32 features).
    """
    w = head.weight.detach().float().cpu().clone()
    b = head.bias.detach().float().cpu().clone() if head.bias is not None else None
    return w, b


def _predict(x: np.ndarray, w: torch.Tensor, b: torch.Tensor | None) -> np.ndarray:
    with torch.no_grad():
        logits = torch.from_numpy(x) @ w.T
        return (logits if b is None else logits + b).argmax(1).numpy()


def _gap_mean(score: np.ndarray, correct: np.ndarray, labels: np.ndarray, k: int) -> float:
    import warnings

    from faultlens.analysis.spurious import SpuriousWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpuriousWarning)  # k clamping on small validation sets
        g = spurious_gap(score, correct, labels, k=k)
    return float(np.mean(list(g.values()))) if g else float("nan")


def mitigate(
    nf: NeuralFeatures,
    spurious: Mapping[int, Sequence[int]],
    train: tuple[Any, np.ndarray],
    val: tuple[Any, np.ndarray],
    test: tuple[Any, np.ndarray],
    *,
    groups: np.ndarray | None = None,
    method: str = "low_spuriosity",
    flags: np.ndarray | None = None,
    per_class: int = 100,
    upweight: float = 5.0,
    lr: float = 3e-3,
    epochs: int = 30,
    batch_size: int = 64,
    target_gap: float = 5.0,
    max_val_drop: float = 2.0,
    k: int = 50,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> MitigationResult:
    """Retrain the head of ``nf.model`` and report before/after on ``test``.

    Parameters
    ----------
    nf:
        Neural features of the model (their layer defines spuriosity); the model needs a linear
        head that reads the layer through parameter-free modules (``nf.head``).
    spurious:
        ``{class: [feature, ...]}`` marked spurious (e.g. from a FeatureBrowser).
    train, val, test:
        ``(images, labels)``: images as :meth:`NeuralFeatures.activations` accepts them; or the
        :class:`SplitFeatures` of an earlier :func:`split_features` (the network does not run).
    groups:
        Optional group name per test image (e.g. the demo's ``planted_group``): accuracy per group
        and worst-group accuracy are reported.
    method:
        ``"low_spuriosity"`` or ``"upweight"`` (needs ``flags``: bool per training image).
    lr, epochs, batch_size:
        Adam on the head, starting from its current weights.
    target_gap, max_val_drop:
        Early stop at the first epoch whose mean validation gap is below ``target_gap`` points;
        otherwise keep the epoch with the smallest validation gap whose validation accuracy is
        within ``max_val_drop`` points of the original (or the original head, when none is).
    k:
        Images per end for the spurious gap (clamped per class).
    progress:
        ``progress(done, total, stage)`` after each batch of images (stage ``"images"``) and after
        each epoch (stage ``"epochs"``); a raise from it stops the preview (nothing returned).
    """
    if method not in ("low_spuriosity", "upweight"):
        msg = f"method must be 'low_spuriosity' or 'upweight', got {method!r}"
        raise ValueError(msg)
    spurious = {int(c): [int(f) for f in fs] for c, fs in spurious.items() if len(fs)}
    if not spurious:
        msg = "no feature is marked spurious: mark at least one (class, feature) first"
        raise ValueError(msg)
    model = nf.model
    feats = _all_split_features(nf, {"train": train, "val": val, "test": test}, progress)
    (tr_a, tr_h, tr_y), (va_a, va_h, va_y), (te_a, te_h, te_y) = (
        (f.acts, f.head_in, f.labels) for f in feats
    )
    if groups is not None and len(groups) != len(te_y):
        msg = f"groups has {len(groups)} entries but test has {len(te_y)} images: one per image"
        raise ValueError(msg)
    head = _linear_head(nf, None)
    # CPU float32 copies (the features are CPU float32); b0 is None for a bias-free head, which
    # then stays bias-free in training, in the reported numbers and in the returned model.
    w0, b0 = _head_params(head.module)
    rng = np.random.default_rng(seed)

    train_rows, weights = _training_rows(
        method, tr_y, spuriosity(tr_a, tr_y, spurious), spurious, per_class, flags, upweight, rng
    )
    va_score = spuriosity(va_a, va_y, spurious)
    te_score = spuriosity(te_a, te_y, spurious)

    def val_metrics(w: torch.Tensor, b: torch.Tensor | None) -> tuple[float, float]:
        c = _predict(va_h, w, b) == va_y
        return _gap_mean(va_score, c, va_y, k), 100.0 * float(c.mean())

    fit = _HeadFit(lr=lr, epochs=epochs, batch_size=batch_size, target_gap=target_gap,
                   max_val_drop=max_val_drop, seed=seed)  # fmt: skip
    best_epoch, w1, b1, hist = fit.run(
        tr_h[train_rows], tr_y[train_rows], weights, w0, b0, val_metrics, progress
    )
    gap0, acc0 = hist[0]["val_gap"], hist[0]["val_acc"]  # the original head's
    # report what the returned model will hold: the new weights rounded to the head's dtype
    dtype = head.module.weight.dtype
    w1 = w1.to(dtype).float()
    b1 = None if b1 is None else b1.to(dtype).float()
    c_before = _predict(te_h, w0, b0) == te_y
    c_after = _predict(te_h, w1, b1) == te_y
    return MitigationResult(
        summary=_before_after(c_before, c_after, te_score, te_y, groups, k),
        correct_before=c_before,
        correct_after=c_after,
        history=pd.DataFrame(hist),
        model=_with_head(model, head.name, w1, b1),
        head_name=head.name,
        train_rows=train_rows,
        epochs_run=int(hist[-1]["epoch"]),
        info={"method": method, "best_epoch": best_epoch, "val_gap_before": gap0,
              "val_acc_before": acc0, "lr": lr, "per_class": per_class, "k": k},
    )  # fmt: skip


def _training_rows(
    method: str, tr_y: np.ndarray, tr_score: np.ndarray, spurious: Mapping[int, Sequence[int]],
    per_class: int, flags: np.ndarray | None, upweight: float, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The training rows and their loss weights: ``"low_spuriosity"``, the ``per_class`` least
    spurious images of each marked class (a random ``per_class`` of the others), weight 1;
    ``"upweight"``, every image, the flagged ones weighted ``upweight``."""
    if method == "low_spuriosity":
        rows = []
        for c in np.unique(tr_y):
            m = np.flatnonzero(tr_y == c)
            if c in spurious:
                rows.append(m[np.argsort(tr_score[m], kind="stable")[:per_class]])
            else:
                rows.append(rng.permutation(m)[:per_class])
        train_rows = np.sort(np.concatenate(rows))
        return train_rows, np.ones(len(train_rows), dtype=np.float32)
    if flags is None or len(flags) != len(tr_y):
        msg = "method='upweight' needs flags: one bool per training image (e.g. score < 0)"
        raise ValueError(msg)
    weights = np.where(np.asarray(flags, dtype=bool), upweight, 1.0).astype(np.float32)
    return np.arange(len(tr_y)), weights


@dataclass
class _HeadFit:
    """Adam on a linear head from its current weights, epoch by epoch; keeps the epoch with the
    smallest validation gap whose validation accuracy stays within ``max_val_drop`` points of the
    original, and stops early once the gap is below ``target_gap``."""

    lr: float
    epochs: int
    batch_size: int
    target_gap: float
    max_val_drop: float
    seed: int

    def run(
        self, x_np: np.ndarray, y_np: np.ndarray, weights: np.ndarray, w0: torch.Tensor,
        b0: torch.Tensor | None, val_metrics: Callable[..., tuple[float, float]],
        progress: ProgressFn | None,
    ) -> tuple[int, torch.Tensor, torch.Tensor | None, list[dict[str, float]]]:  # fmt: skip
        """(best epoch, its weight, its bias, the history: epoch, val_gap, val_acc)."""
        gap0, acc0 = val_metrics(w0, b0)
        if progress is not None:
            progress(0, self.epochs, "epochs")
        lin = nn.Linear(w0.shape[1], w0.shape[0], bias=b0 is not None)  # CPU float32, like x
        with torch.no_grad():
            lin.weight.copy_(w0)
            if b0 is not None:
                lin.bias.copy_(b0)
        opt = torch.optim.Adam(lin.parameters(), lr=self.lr)
        x, y, wt = torch.from_numpy(x_np), torch.from_numpy(y_np), torch.from_numpy(weights)
        gen = torch.Generator().manual_seed(self.seed)
        hist = [{"epoch": 0, "val_gap": gap0, "val_acc": acc0}]
        best = (gap0, 0, w0.clone(), None if b0 is None else b0.clone())
        for epoch in range(1, self.epochs + 1):
            order = torch.randperm(len(y), generator=gen)
            for s in range(0, len(y), self.batch_size):
                idx = order[s : s + self.batch_size]
                opt.zero_grad()
                loss = nn.functional.cross_entropy(lin(x[idx]), y[idx], reduction="none") * wt[idx]
                (loss.sum() / wt[idx].sum()).backward()
                opt.step()
            w = lin.weight.detach().clone()
            b = lin.bias.detach().clone() if lin.bias is not None else None
            gap, acc = val_metrics(w, b)
            hist.append({"epoch": epoch, "val_gap": gap, "val_acc": acc})
            if progress is not None:
                progress(epoch, self.epochs, "epochs")  # a raise here stops between epochs
            if acc >= acc0 - self.max_val_drop and gap < best[0]:
                best = (gap, epoch, w, b)
            if gap < self.target_gap and acc >= acc0 - self.max_val_drop:
                break
        _, best_epoch, w1, b1 = best
        return best_epoch, w1, b1, hist


def _before_after(
    c_before: np.ndarray, c_after: np.ndarray, te_score: np.ndarray, te_y: np.ndarray,
    groups: np.ndarray | None, k: int,
) -> pd.DataFrame:  # fmt: skip
    """Before/after on the test split: overall accuracy, per group and the worst group's, and
    each class's spurious gap."""
    rows_out = [_metric("overall accuracy (%)", c_before, c_after)]
    if groups is not None:
        groups = np.asarray(groups)
        accs = []
        for g in sorted(set(groups.tolist())):
            m = groups == g
            rows_out.append(_metric(f"group {g} (%)", c_before[m], c_after[m], n=int(m.sum())))
            accs.append(rows_out[-1])
        worst_b = min(r["before"] for r in accs)
        worst_a = min(r["after"] for r in accs)
        rows_out.append({"metric": "worst-group accuracy (%)", "before": worst_b,
                         "after": worst_a, "change": worst_a - worst_b, "n": len(groups)})  # fmt: skip
    import warnings

    from faultlens.analysis.spurious import SpuriousWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpuriousWarning)
        gb = spurious_gap(te_score, c_before, te_y, k=k)
        ga = spurious_gap(te_score, c_after, te_y, k=k)
    for c in gb:
        rows_out.append({"metric": f"spurious gap class {c} (points)", "before": gb[c],
                         "after": ga.get(c, np.nan), "change": ga.get(c, np.nan) - gb[c],
                         "n": int(gb.table.loc[gb.table["class"] == c, "k"].iloc[0])})  # fmt: skip
    return pd.DataFrame(rows_out, columns=["metric", "before", "after", "change", "n"])


def _with_head(model: nn.Module, name: str, w1: torch.Tensor, b1: torch.Tensor | None) -> nn.Module:
    """A copy of ``model`` whose head ``name`` holds ``w1``/``b1`` (its device and dtype kept)."""
    new_model = copy.deepcopy(model)
    new_head = dict(new_model.named_modules())[name]
    with torch.no_grad():
        new_head.weight.copy_(w1.to(device=new_head.weight.device, dtype=new_head.weight.dtype))
        if new_head.bias is not None:
            new_head.bias.copy_(b1.to(device=new_head.bias.device, dtype=new_head.bias.dtype))
    return new_model


def _all_split_features(
    nf: NeuralFeatures, splits: dict[str, Any], progress: ProgressFn | None
) -> list[SplitFeatures]:
    """Each split's :class:`SplitFeatures` (given, or one pass of the network), checked."""
    todo = {}
    for name, split in splits.items():
        if not isinstance(split, SplitFeatures):
            todo[name] = _split_labels(name, split)
    total, base = sum(len(y) for _x, y in todo.values()), 0
    out = []
    for name, split in splits.items():
        if isinstance(split, SplitFeatures):
            out.append(split)
            continue
        step = None
        if progress is not None:
            step = lambda d, _n, b=base: progress(b + d, total, "images")  # noqa: E731
        out.append(split_features(nf, todo[name], name=name, progress=step))
        base += len(out[-1])
    dims = {f.name: f.head_in.shape[1] for f in out}
    if len(set(dims.values())) > 1:
        msg = f"the splits' features differ in width {dims}: compute them with the same model"
        raise ValueError(msg)
    return out


def _metric(name: str, before: np.ndarray, after: np.ndarray, n: int | None = None) -> dict:
    b = 100.0 * float(before.mean()) if len(before) else float("nan")
    a = 100.0 * float(after.mean()) if len(after) else float("nan")
    return {"metric": name, "before": b, "after": a, "change": a - b,
            "n": len(before) if n is None else n}  # fmt: skip
