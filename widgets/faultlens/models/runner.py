"""One pass over an image source that feeds several models and caches their outputs in shards.

Each image is decoded once, transformed for every model that still needs it, and run in batches;
the same decoded image also gives its thumbnail, encoded into one compact store beside the outputs.
Worker processes decode (and, for torch models on the CPU, run the models too: see
:func:`runs_in_workers`); this process writes what they give back.
Outputs go to the artifact store shard by shard (atomic renames), so a killed run resumes where it
stopped and computes only the missing shards. Items that cannot be decoded are skipped for every
model; an item a model cannot take (its transform fails or gives another shape than the others',
or the model gives NaN or inf) is skipped for that model alone. A skipped item's rows are NaN and
the side-car of the model's shard names it with the reason.

On a CUDA machine with JPEG files the images are decoded on the GPU instead, in batches, and each
model's resize and normalisation run there (:mod:`faultlens.models.device_decode`, which also
says how ``decode=`` / ``FAULTLENS_DECODE`` choose the path); which path ran is printed and
returned in :attr:`RunResult.decode`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from faultlens._checks import whole_number
from faultlens.data.decode import ImageDecodeError, encode_thumbnail
from faultlens.data.sources import ImageSource, load_image
from faultlens.models.base import BatchModel
from faultlens.store import ArtifactStore, ShardClaims, ShardedArray, ShardedBlobs, make_key


@dataclass
class RunResult:
    """What :func:`run_models` computed."""

    outputs: dict[str, np.ndarray]
    skipped: list[dict[str, Any]]  # {"index", "id", "path", "reason"}, sorted by index
    computed_shards: dict[str, list[int]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    thumbnails: ShardedBlobs | None = None  # one encoded thumbnail per source item, when asked
    # the decoding path that computed this run's shards: {"path": "gpu"|"cpu", "device", "reason"}
    # (None when every output was already cached)
    decode: dict[str, str] | None = None


# index, one tensor per model (None where its transform failed, all None where decoding did), the
# encoded thumbnail, and one skip reason per model ("" where the item is fine for it)
Item = tuple[int, "list[torch.Tensor | None]", bytes, list[str]]


class _Items(Dataset):
    """Item ``i`` decoded once, transformed for each model, and (with ``thumb_size``) its encoded
    thumbnail."""

    def __init__(
        self, source: ImageSource, models: list[BatchModel], thumb_size: int | None = None
    ) -> None:
        self.source = source
        self.models = models
        self.thumb_size = thumb_size
        # Decode big JPEGs at reduced scale only when every model says how much it needs.
        sizes = [getattr(m, "input_size", None) for m in models]
        if thumb_size:
            sizes.append(thumb_size)
        self.min_size = max(sizes) if sizes and None not in sizes else None  # type: ignore[type-var]

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Item:
        n = len(self.models)
        try:
            img = load_image(self.source, i, self.min_size)
        except ImageDecodeError as exc:
            return i, [None] * n, b"", [str(exc) or "could not be decoded"] * n
        except Exception as exc:
            return i, [None] * n, b"", [f"could not be decoded ({type(exc).__name__}: {exc})"] * n
        thumb = b""
        if self.thumb_size:
            with contextlib.suppress(Exception):  # no thumbnail is no reason to skip the item
                thumb = encode_thumbnail(img, self.thumb_size)
        tensors: list[torch.Tensor | None] = []
        reasons: list[str] = []
        for m in self.models:  # a transform that fails skips the item for its model alone
            try:
                tensors.append(m.transform(img))
                reasons.append("")
            except Exception as exc:
                tensors.append(None)
                reasons.append(f"could not be prepared for the model ({type(exc).__name__}: {exc})")
        return i, tensors, thumb, reasons


def _shard_batches(bounds: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Batches of item indices that never cross a shard boundary, over the given shards only."""
    return [
        list(range(b, min(b + batch_size, stop)))
        for start, stop in bounds
        for b in range(start, stop, batch_size)
    ]


Shape = tuple[int, ...]
Shapes = tuple["Shape | None", ...]  # per model, the shape its tensors must have (None: not yet)
Group = tuple[Shape, list[int], torch.Tensor]  # a shape, positions in the batch, their stack
# per model: each item's skip reason so far, and its tensors grouped by shape (largest first)
Collated = tuple[list[int], list[bytes], list[tuple[list[str], list[Group]]]]


def _collate_groups(items: list[Item]) -> Collated:
    """A batch's indices, thumbnails, and per model the items' skip reasons and their tensors
    grouped by shape (largest group first, ties in batch order; each group stacked)."""
    idx = [it[0] for it in items]
    thumbs = [it[2] for it in items]
    per_model = []
    for k in range(len(items[0][1]) if items else 0):
        positions: dict[Shape, list[int]] = {}
        for pos, it in enumerate(items):
            t = it[1][k]
            if t is not None:
                positions.setdefault(tuple(t.shape), []).append(pos)
        groups: list[Group] = [
            (shape, pos, torch.stack([items[p][1][k] for p in pos]))  # type: ignore[misc]
            for shape, pos in sorted(positions.items(), key=lambda kv: -len(kv[1]))
        ]
        per_model.append(([it[3][k] for it in items], groups))
    return idx, thumbs, per_model


# a batch's indices, per model its ok flags and skip reasons, outputs by model name (one row per
# item of the batch, NaN where it was skipped), thumbnails, and the shapes that hold for the run
Ran = tuple[
    list[int], list[list[bool]], list[list[str]], dict[str, np.ndarray], list[bytes], Shapes
]


def _run_batch(
    collated: Collated, models: list[BatchModel], names: list[str], shapes: Shapes | None
) -> Ran:
    """Run each model on the items of a collated batch whose tensors have the model's shape in
    ``shapes`` (None: the largest group of the batch, whose shape then holds for the run).

    An item is skipped for one model alone when that model cannot take it: its transform failed,
    gave another shape, or the model gave NaN or inf for it. Only an item that cannot be decoded
    is skipped for every model. Each model's cache then records only its own skips, so a model
    that failed never marks items as skipped for another one."""
    idx, thumbs, per_model = collated
    want = [None] * len(models) if shapes is None else [_as_shape(x) for x in shapes]
    oks, reasons, outs = [], [], {}
    for k, (name, model) in enumerate(zip(names, models, strict=True)):
        why, groups = list(per_model[k][0]), per_model[k][1]
        ok = [False] * len(idx)
        if want[k] is None and groups:
            want[k] = tuple(groups[0][0])
        for shape, pos, stack in groups:
            if tuple(shape) != want[k]:
                for p in pos:
                    why[p] = _shape_reason(shape, want[k], name, len(models) > 1)  # type: ignore[arg-type]
                continue
            out = np.asarray(model.run(stack), dtype=np.float32)
            out = out.reshape(len(out), -1)
            finite = np.isfinite(out).all(axis=1)
            block = np.full((len(idx), out.shape[1]), np.nan, dtype=np.float32)
            block[np.asarray(pos)[finite]] = out[finite]
            outs[name] = block
            for j, p in enumerate(pos):
                ok[p] = bool(finite[j])
                if not finite[j]:
                    why[p] = f"model {name!r} gave NaN or inf for it"
        oks.append(ok)
        reasons.append(why)
    return idx, oks, reasons, outs, thumbs, tuple(want)


class _CollateAndRun:
    """A worker's collate step when the workers run the models: collate, then run them."""

    def __init__(self, models: list[BatchModel], names: list[str], shapes: Shapes | None) -> None:
        self.models, self.names, self.shapes = models, names, shapes

    def __call__(self, items: list[Item]) -> Ran:
        return _run_batch(_collate_groups(items), self.models, self.names, self.shapes)


def _as_shape(shape: Any) -> Shape | None:
    return None if shape is None else tuple(int(d) for d in shape)  # lists after a round trip


def _shape_reason(got: Shape, want: Shape, name: str, several: bool) -> str:
    def dims(shape: Shape) -> str:
        return "×".join(str(d) for d in shape)

    which = f"the transform of {name!r}" if several else "the transform"
    return (
        f"{which} gave {dims(got)}, other images {dims(want)}: end the transform with a "
        "fixed-size crop (e.g. CenterCrop) so every image gives the same shape"
    )


def default_workers(source: ImageSource, models: Iterable[BatchModel] = ()) -> int:
    """Worker processes: none for in-memory arrays or where processes cannot be forked; when a
    model runs on a GPU, every spare core up to 16 to decode (decoding is then the bottleneck: on
    an H200 with 16 cores, 4 workers gave 708 images/s and 8 gave 1136, against 13,800 for the
    model alone); when the models run in the workers (:func:`runs_in_workers`), one per core up
    to 8; else (decoding only, the model in this process) up to 4 spare cores."""
    from faultlens.data.sources import ArraySource

    if isinstance(source, ArraySource) or _worker_context() is None:
        return 0
    cores = available_cores()
    models = list(models)
    if any(getattr(getattr(m, "device", None), "type", "cpu") == "cuda" for m in models):
        return max(0, min(16, cores - 1))
    if runs_in_workers(models):
        return min(8, cores)
    return max(0, min(4, cores - 1))


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_context() -> Any:
    """Workers are forked: they inherit the models and transforms, so nothing needs to pickle
    (lambdas, forward hooks). Python 3.14 starts processes with forkserver on Linux by default,
    which would pickle them. None where fork does not exist (Windows): no workers by default."""
    import multiprocessing

    return (
        multiprocessing.get_context("fork")
        if "fork" in multiprocessing.get_all_start_methods()
        else None
    )


def runs_in_workers(models: Iterable[BatchModel]) -> bool:
    """Whether worker processes run the models too, not only decode: when every model is a
    :class:`~faultlens.models.base.TorchBatchModel` on the CPU. Each worker then decodes its own
    batches and runs them with one torch thread, so decoding never waits on the model nor steals
    its cores, and one thread per image batch wastes less than threads splitting each operation.
    On 2 cores over 1024 PNGs of 256², against one decoding worker and the model here with 2
    threads (fresh processes, alternated, medians of 3): EfficientNet-Lite0 @224 1.06×, @112
    1.23×, ViT-B-32 1.08×; ResNet-18 @64 + Lite0 @112 over 96² PNGs 1.04×. One thread, because
    a worker forked after this process used OpenMP hangs in its first multi-threaded operation.
    Other models (a GPU, a model of your own) run in this process."""
    from faultlens.models.base import TorchBatchModel

    models = list(models)
    return bool(models) and all(
        isinstance(m, TorchBatchModel) and m.device.type == "cpu" for m in models
    )


def output_key(fingerprint: str, model_id: str, shard_size: int) -> str:
    """The store key of one model's outputs over one source, cut into shards of ``shard_size``."""
    return make_key("outputs", fingerprint, model_id, shard_size)


def open_thumbnails(
    source: ImageSource,
    store: ArtifactStore,
    size: int,
    shard_size: int,
    *,
    force: bool = False,
) -> tuple[ShardedBlobs, set[int]]:
    """The thumbnail store of ``source`` at ``size`` pixels (cleared with ``force``) and its
    missing shards."""
    if int(size) < 8:
        msg = f"thumbnails={size}: a thumbnail needs at least 8 pixels a side (or None for none)"
        raise ValueError(msg)
    key = make_key("thumbnails", source.fingerprint(), int(size), shard_size)
    blobs = ShardedBlobs(store.path("thumbnails", key), len(source), shard_size)
    if force:
        blobs.clear()
    return blobs, set(blobs.missing())


def open_outputs(
    source: ImageSource,
    models: Mapping[str, BatchModel],
    store: ArtifactStore,
    shard_size: int,
    *,
    force: bool = False,
) -> tuple[dict[str, ShardedArray], dict[str, set[int]]]:
    """Each model's sharded output array in ``store`` (cleared with ``force``) and its missing
    shards: the one place that derives the cache keys, shared by every engine."""
    n = len(source)
    if n == 0:
        msg = "the image source is empty"
        raise ValueError(msg)
    fp = source.fingerprint()
    arrays = {
        name: store.sharded("outputs", output_key(fp, m.id, shard_size), n, shard_size)
        for name, m in models.items()
    }
    if force:
        for arr in arrays.values():
            arr.clear()
    return arrays, {name: set(arr.missing()) for name, arr in arrays.items()}


def run_models(
    source: ImageSource,
    models: Mapping[str, BatchModel],
    *,
    store: ArtifactStore | None = None,
    batch_size: int = 64,
    shard_size: int = 1024,
    num_workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    thumbnails: int | None = None,
    decode: str | None = None,
) -> RunResult:
    """Run every model over every image of ``source``; outputs cached in ``store``.

    Returns one (N, D) float32 array per model name (NaN rows for skipped items) and the skip report.
    With ``thumbnails`` (pixels a side), each image's thumbnail is encoded in the same pass and
    stored beside the outputs (``RunResult.thumbnails``); ``models`` may then be empty.
    ``decode``: ``"auto"`` (JPEG files decoded on the GPU when the models run on CUDA, else by CPU
    workers), ``"gpu"`` or ``"cpu"``; default ``$FAULTLENS_DECODE``, else ``"auto"``
    (:mod:`faultlens.models.device_decode`). ``RunResult.decode`` says which path ran and why.
    """
    batch_size = whole_number(batch_size, "batch_size")
    shard_size = whole_number(shard_size, "shard_size")
    store = store or ArtifactStore()
    arrays, missing = open_outputs(source, models, store, shard_size, force=force)
    thumbs, thumbs_missing = (
        open_thumbnails(source, store, thumbnails, shard_size, force=force)
        if thumbnails
        else (None, set())
    )
    todo = sorted(set().union(*missing.values(), thumbs_missing))
    computed: dict[str, list[int]] = {name: [] for name in models}
    plan = None
    if todo:
        from faultlens.models.device_decode import choose_decode

        plan = choose_decode(source, models.values(), decode)
        if progress:
            print(f"[faultlens] {plan.describe()}", file=sys.stderr, flush=True)
        layout = next(iter(arrays.values()), thumbs)
        assert layout is not None  # todo is not empty: a model or the thumbnails miss a shard
        bar = tqdm(
            total=sum(b - a for a, b in map(layout.bounds, todo)),
            desc="images",
            unit="img",
            disable=not progress,
            mininterval=0.5,
        )
        claims = ShardClaims(store.path("claims", claims_key(source, shard_size)))
        run = _Run(source, models, arrays, missing, thumbs, thumbs_missing, computed, bar, plan)
        try:
            remaining = todo
            while remaining:  # a few shards at a time, each claimed by one process of the cache
                mine = claim_shards(claims, remaining)
                remaining = [s for s in remaining if s not in mine]
                run.compute(mine, batch_size, num_workers, thumbnails)
                for s in mine:
                    claims.release(s)
        finally:
            claims.release_all()
            bar.close()
    outputs: dict[str, np.ndarray] = {}
    skipped: dict[int, dict[str, Any]] = {}
    for name, arr in arrays.items():
        full, sides = arr.assemble()
        outputs[name] = full
        for side in sides:  # an item skipped for several models: the first model's reason
            for i, _desc, reason in side.get("skipped", []):
                skipped.setdefault(int(i), skip_entry(source, int(i), reason))
    return RunResult(
        outputs=outputs,
        skipped=[skipped[i] for i in sorted(skipped)],
        computed_shards=computed,
        keys={name: arr.folder.name for name, arr in arrays.items()},
        thumbnails=thumbs,
        decode=plan.as_dict() if plan is not None else None,
    )


CLAIM_WINDOW = 8  # shards claimed at a time: processes sharing a cache split the work by these


def claims_key(source: ImageSource, shard_size: int) -> str:
    """The store key of the shard claims of ``source`` (shared by every model and thumbnails)."""
    return make_key("claims", source.fingerprint(), shard_size)


def claim_shards(
    claims: ShardClaims, remaining: list[int], window: int = CLAIM_WINDOW
) -> list[int]:
    """Up to ``window`` of ``remaining`` that no other process is computing, claimed; when every
    one is taken, wait for the first (its process writes it, or dies)."""
    mine: list[int] = []
    for s in remaining:
        if len(mine) == window:
            break
        if claims.try_claim(s):
            mine.append(s)
    if not mine:
        claims.wait(remaining[0])
        mine = [remaining[0]]
    return mine


@dataclass
class _Run:
    """What :func:`run_models` fills, shard by shard: each model's output shards, the
    thumbnails, and which shards this process computed."""

    source: ImageSource
    models: Mapping[str, BatchModel]
    arrays: dict[str, ShardedArray]
    missing: dict[str, set[int]]
    thumbs: ShardedBlobs | None
    thumbs_missing: set[int]
    computed: dict[str, list[int]]
    bar: Any
    plan: Any = None  # the DecodePlan (device_decode): None or "cpu" decodes in worker processes

    def compute(
        self, shards: list[int], batch_size: int, num_workers: int | None, thumb_size: int | None
    ) -> None:
        """Compute and write the claimed ``shards`` that are still missing (another process may
        have written some since they were listed)."""
        source, arrays, missing, thumbs = self.source, self.arrays, self.missing, self.thumbs
        for s in shards:
            for name, arr in arrays.items():
                if s in missing[name] and arr.has(s):
                    missing[name].discard(s)
            if thumbs is not None and s in self.thumbs_missing and thumbs.has(s):
                self.thumbs_missing.discard(s)
        todo = [
            s for s in shards if s in self.thumbs_missing or any(s in m for m in missing.values())
        ]
        done_elsewhere = [s for s in shards if s not in todo]
        first_layout = next(iter(arrays.values()), thumbs)
        assert first_layout is not None
        self.bar.update(sum(b - a for a, b in map(first_layout.bounds, done_elsewhere)))
        if not todo:
            return
        active = [name for name in self.models if missing[name] & set(todo)]
        mods = [self.models[a] for a in active]
        thumbs_todo = {s for s in todo if s in self.thumbs_missing}
        dataset = _Items(source, mods, thumb_size if thumbs_todo else None)
        first = arrays[active[0]] if active else thumbs
        assert first is not None
        bounds = [first.bounds(s) for s in todo]
        batches = _shard_batches(bounds, batch_size)
        if self.plan is not None and self.plan.path == "gpu":
            results = _device_batches(source, batches, mods, active, dataset.thumb_size, self.plan)
        else:
            workers = default_workers(source, mods) if num_workers is None else num_workers
            results = _batches(dataset, batches, mods, active, workers)
        decoded = {"decode": self.plan.path} if self.plan is not None else {}
        pending: dict[str, list[tuple[np.ndarray | None, int]]] = {a: [] for a in active}
        pending_thumbs: list[bytes] = []
        notes: dict[str, list[list[Any]]] = {a: [] for a in active}
        shard_iter = iter(todo)
        shard = next(shard_iter)
        filled = 0
        for idx, oks, reasons, outs, thumb_bytes, _ in results:
            for k, a in enumerate(active):  # each model's cache records its own skips only
                pending[a].append((outs.get(a), len(idx)))
                notes[a].extend(
                    [i, source.describe(i), r]
                    for i, good, r in zip(idx, oks[k], reasons[k], strict=True)
                    if not good
                )
            pending_thumbs.extend(thumb_bytes)
            filled += len(idx)
            self.bar.update(len(idx))
            start, stop = first.bounds(shard)
            if filled == stop - start:
                for a in active:
                    if shard in missing[a]:
                        side = {"skipped": notes[a], **decoded}
                        arrays[a].write(shard, _assemble(pending[a]), side)
                        missing[a].discard(shard)
                        self.computed[a].append(shard)
                if thumbs is not None and shard in thumbs_todo:
                    thumbs.write(shard, pending_thumbs)
                    self.thumbs_missing.discard(shard)
                pending = {a: [] for a in active}
                pending_thumbs = []
                notes = {a: [] for a in active}
                filled = 0
                shard = next(shard_iter, -1)


def _batches(
    dataset: _Items,
    batches: list[list[int]],
    models: list[BatchModel],
    names: list[str],
    workers: int,
) -> Iterator[Ran]:
    """Every batch decoded, transformed and run, in order. For each model, the shape of its
    tensors in the first batch that has any (most of them) holds for the run; its items of other
    shapes are skipped. With workers that run the models (:func:`runs_in_workers`), this process
    runs the batches until every model's shape is fixed, so every worker starts with the same
    shapes."""
    shapes: Shapes | None = None
    if workers > 0 and runs_in_workers(models):
        done = 0
        while (shapes is None or None in shapes) and done < len(batches):
            ran = _run_batch(
                _collate_groups([dataset[i] for i in batches[done]]), models, names, shapes
            )
            shapes = ran[-1]
            done += 1
            yield ran
        if done < len(batches):
            yield from DataLoader(
                dataset,
                batch_sampler=batches[done:],
                num_workers=workers,
                collate_fn=_CollateAndRun(models, names, shapes),
                multiprocessing_context=_worker_context(),
            )
        return
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=_collate_groups,
        pin_memory=torch.cuda.is_available(),
        multiprocessing_context=_worker_context() if workers > 0 else None,
    )
    for collated in loader:
        ran = _run_batch(collated, models, names, shapes)
        shapes = ran[-1]
        yield ran


def _device_batches(
    source: ImageSource,
    batches: list[list[int]],
    models: list[BatchModel],
    names: list[str],
    thumb_size: int | None,
    plan: Any,
) -> Iterator[Ran]:
    """Every batch decoded on the plan's device (:func:`~faultlens.models.device_decode.device_items`)
    and run here, with the same shape rule and skips as :func:`_batches`."""
    from faultlens.models.device_decode import device_items

    shapes: Shapes | None = None
    for items in device_items(source, batches, models, thumb_size, torch.device(plan.device)):
        ran = _run_batch(_collate_groups(items), models, names, shapes)
        shapes = ran[-1]
        yield ran


def skip_entry(source: ImageSource, i: int, reason: str) -> dict[str, Any]:
    """One entry of a skip report: the item's index, id, path (or None) and the reason."""
    return {
        "index": int(i),
        "id": source.ids[int(i)],
        "path": source.paths[int(i)] if source.paths is not None else None,
        "reason": reason,
    }


def _assemble(parts: list[tuple[np.ndarray | None, int]]) -> np.ndarray:
    """Rows for one shard from its batches' output blocks; a batch in which the model ran on
    nothing (``None``) gives NaN rows of the width the others have."""
    width = next((out.shape[1] for out, _ in parts if out is not None), 0)  # 0: nothing ran
    return np.concatenate(
        [out if out is not None else np.full((n, width), np.nan, np.float32) for out, n in parts]
    )
