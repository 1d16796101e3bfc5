"""One pass over an image source that feeds several models and caches their outputs in shards.

Each image is decoded once, transformed for every model that still needs it, and run in batches;
the same decoded image also gives its thumbnail, encoded into one compact store beside the outputs.
Worker processes decode (and, for torch models on the CPU, run the models too: see
:func:`runs_in_workers`); this process writes what they give back.
Outputs go to the artifact store shard by shard (atomic renames), so a killed run resumes where it
stopped and computes only the missing shards. Items that cannot be decoded, or whose transformed
tensor has another shape than the others', are skipped: their rows are NaN and every shard's
side-car names them with the reason.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from faultlens.data.decode import ImageDecodeError, encode_thumbnail
from faultlens.data.sources import ImageSource, load_image
from faultlens.models.base import BatchModel
from faultlens.store import ArtifactStore, ShardedArray, ShardedBlobs, make_key


@dataclass
class RunResult:
    """What :func:`run_models` computed."""

    outputs: dict[str, np.ndarray]
    skipped: list[dict[str, Any]]  # {"index", "id", "path", "reason"}, sorted by index
    computed_shards: dict[str, list[int]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    thumbnails: ShardedBlobs | None = None  # one encoded thumbnail per source item, when asked


Item = tuple[int, "list[torch.Tensor] | None", bytes, str]  # index, tensors, thumbnail, reason


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
        try:
            img = load_image(self.source, i, self.min_size)
        except ImageDecodeError as exc:
            return i, None, b"", str(exc) or "could not be decoded"
        except Exception as exc:
            return i, None, b"", f"could not be decoded ({type(exc).__name__}: {exc})"
        thumb = b""
        if self.thumb_size:
            with contextlib.suppress(Exception):  # no thumbnail is no reason to skip the item
                thumb = encode_thumbnail(img, self.thumb_size)
        try:
            return i, [m.transform(img) for m in self.models], thumb, ""
        except Exception as exc:
            reason = f"could not be prepared for the model ({type(exc).__name__}: {exc})"
            return i, None, thumb, reason


def _shard_batches(bounds: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Batches of item indices that never cross a shard boundary, over the given shards only."""
    return [
        list(range(b, min(b + batch_size, stop)))
        for start, stop in bounds
        for b in range(start, stop, batch_size)
    ]


Shapes = tuple[tuple[int, ...], ...]  # the shape of an item's tensor for each model
Group = tuple[Shapes, list[int], list[torch.Tensor]]  # shapes, positions in the batch, stacks


def _collate_groups(items: list[Item]) -> tuple[Any, ...]:
    """A batch's indices, decode flags, skip reasons, thumbnails, and its decoded items grouped by
    the shapes their transforms gave (largest group first; each group stacked per model)."""
    idx = [i for i, _, _, _ in items]
    ok = [t is not None for _, t, _, _ in items]
    thumbs = [b for _, _, b, _ in items]
    reasons = [r for _, _, _, r in items]
    tensors: dict[Shapes, list[list[torch.Tensor]]] = {}
    positions: dict[Shapes, list[int]] = {}
    for pos, (_, ts, _, _) in enumerate(items):
        if ts is not None:
            shapes = tuple(tuple(t.shape) for t in ts)
            tensors.setdefault(shapes, []).append(ts)
            positions.setdefault(shapes, []).append(pos)
    groups: list[Group] = [
        (
            shapes,
            positions[shapes],
            [torch.stack(per_model) for per_model in zip(*got, strict=True)],
        )
        for shapes, got in sorted(
            tensors.items(), key=lambda kv: -len(kv[1])
        )  # stable: ties keep order
    ]
    return idx, ok, reasons, groups, thumbs


def _pick_group(
    groups: list[Group],
    ok: list[bool],
    reasons: list[str],
    shapes: Shapes | None,
    names: list[str] | None = None,
) -> list[torch.Tensor] | None:
    """The stacks of the group whose tensors have ``shapes`` (default: the largest group); the
    items of every other group are marked skipped in ``ok``/``reasons`` (in place), with a reason
    that names both shapes and the fix. None when no item is left."""
    if shapes is None and groups:
        shapes = groups[0][0]
    stacks = None
    for group_shapes, pos, group_stacks in groups:
        if _as_shapes(group_shapes) == _as_shapes(shapes):  # tuples may come back as lists
            stacks = group_stacks
            continue
        reason = _shape_reason(group_shapes, shapes, names)  # type: ignore[arg-type]
        for p in pos:
            ok[p] = False
            reasons[p] = reason
    return stacks


Ran = tuple[list[int], list[bool], list[str], dict[str, np.ndarray], list[bytes], "Shapes | None"]


def _run_batch(
    collated: tuple[Any, ...], models: list[BatchModel], names: list[str], shapes: Shapes | None
) -> Ran:
    """Run every model on the group of a collated batch whose tensors have ``shapes`` (None: the
    batch's largest group, whose shapes then hold for the run): the batch's indices, decode flags,
    skip reasons, outputs by model name, thumbnails and the shapes."""
    idx, ok, reasons, groups, thumbs = collated
    if shapes is None and groups:
        shapes = groups[0][0]
    stacks = _pick_group(groups, ok, reasons, shapes, names)
    outs: dict[str, np.ndarray] = {}
    if stacks:
        outs = {a: m.run(stacks[k]) for k, (a, m) in enumerate(zip(names, models, strict=True))}
    return idx, ok, reasons, outs, thumbs, shapes


class _CollateAndRun:
    """A worker's collate step when the workers run the models: collate, then run them."""

    def __init__(self, models: list[BatchModel], names: list[str], shapes: Shapes | None) -> None:
        self.models, self.names, self.shapes = models, names, shapes

    def __call__(self, items: list[Item]) -> Ran:
        return _run_batch(_collate_groups(items), self.models, self.names, self.shapes)


def _as_shapes(shapes: Any) -> Shapes | None:
    return None if shapes is None else tuple(tuple(int(d) for d in s) for s in shapes)


def _shape_reason(got: Shapes, want: Shapes, names: list[str] | None) -> str:
    def dims(shape: tuple[int, ...]) -> str:
        return "×".join(str(d) for d in shape)

    k = next(k for k, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
    which = f"the transform of {names[k]!r}" if names and len(names) > 1 else "the transform"
    return (
        f"{which} gave {dims(got[k])}, other images {dims(want[k])}: end the transform with a "
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
) -> RunResult:
    """Run every model over every image of ``source``; outputs cached in ``store``.

    Returns one (N, D) float32 array per model name (NaN rows for skipped items) and the skip report.
    With ``thumbnails`` (pixels a side), each image's thumbnail is encoded in the same pass and
    stored beside the outputs (``RunResult.thumbnails``); ``models`` may then be empty.
    """
    store = store or ArtifactStore()
    arrays, missing = open_outputs(source, models, store, shard_size, force=force)
    thumbs, thumbs_missing = (
        open_thumbnails(source, store, thumbnails, shard_size, force=force)
        if thumbnails
        else (None, set())
    )
    todo = sorted(set().union(*missing.values(), thumbs_missing))
    computed: dict[str, list[int]] = {name: [] for name in models}
    if todo:
        active = [name for name in models if missing[name]]
        mods = [models[a] for a in active]
        dataset = _Items(source, mods, thumbnails if thumbs_missing else None)
        first = arrays[active[0]] if active else thumbs
        assert first is not None  # todo is not empty: a model or the thumbnails miss a shard
        bounds = [first.bounds(s) for s in todo]
        workers = default_workers(source, mods) if num_workers is None else num_workers
        results = _batches(dataset, _shard_batches(bounds, batch_size), mods, active, workers)
        bar = tqdm(
            total=sum(b - a for a, b in bounds),
            desc="images",
            unit="img",
            disable=not progress,
            mininterval=0.5,
        )
        pending: dict[str, list[np.ndarray]] = {a: [] for a in active}
        pending_thumbs: list[bytes] = []
        notes: list[list[Any]] = []
        shard_iter = iter(todo)
        shard = next(shard_iter)
        filled = 0
        for idx, ok, reasons, outs, thumb_bytes, _ in results:
            ok_arr = np.asarray(ok)
            reasons = _nonfinite_reasons(outs, ok_arr, reasons)
            ok = [good and not r for good, r in zip(ok, reasons, strict=True)]
            for a in active:
                width = outs[a].shape[1] if a in outs else None
                pending[a].append((outs.get(a), ok_arr, width))  # type: ignore[arg-type]
            notes.extend(
                [i, source.describe(i), r]
                for i, good, r in zip(idx, ok, reasons, strict=True)
                if not good
            )
            pending_thumbs.extend(thumb_bytes)
            filled += len(idx)
            bar.update(len(idx))
            start, stop = first.bounds(shard)
            if filled == stop - start:
                for a in active:
                    if shard in missing[a]:
                        arrays[a].write(shard, _assemble(pending[a]), {"skipped": notes})
                        computed[a].append(shard)
                if thumbs is not None and shard in thumbs_missing:
                    thumbs.write(shard, pending_thumbs)
                pending = {a: [] for a in active}
                pending_thumbs = []
                notes = []
                filled = 0
                shard = next(shard_iter, -1)
        bar.close()
    outputs: dict[str, np.ndarray] = {}
    skipped: dict[int, dict[str, Any]] = {}
    for name, arr in arrays.items():
        full, sides = arr.assemble()
        outputs[name] = full
        for side in sides:
            for i, _desc, reason in side.get("skipped", []):
                skipped[int(i)] = skip_entry(source, int(i), reason)
    return RunResult(
        outputs=outputs,
        skipped=[skipped[i] for i in sorted(skipped)],
        computed_shards=computed,
        keys={name: arr.folder.name for name, arr in arrays.items()},
        thumbnails=thumbs,
    )


def _batches(
    dataset: _Items,
    batches: list[list[int]],
    models: list[BatchModel],
    names: list[str],
    workers: int,
) -> Iterator[Ran]:
    """Every batch decoded, transformed and run, in order. The shapes of the tensors of the first
    batch with a decodable item (most of its items) hold for the run; items of other shapes are
    skipped. With workers that run the models (:func:`runs_in_workers`), this process runs the
    batches up to that one, so every worker starts with the same shapes."""
    shapes: Shapes | None = None
    if workers > 0 and runs_in_workers(models):
        done = 0
        while shapes is None and done < len(batches):
            ran = _run_batch(
                _collate_groups([dataset[i] for i in batches[done]]), models, names, None
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


def skip_entry(source: ImageSource, i: int, reason: str) -> dict[str, Any]:
    """One entry of a skip report: the item's index, id, path (or None) and the reason."""
    return {
        "index": int(i),
        "id": source.ids[int(i)],
        "path": source.paths[int(i)] if source.paths is not None else None,
        "reason": reason,
    }


def _nonfinite_reasons(
    outs: dict[str, np.ndarray], ok: np.ndarray, reasons: list[str]
) -> list[str]:
    """Skip reasons, plus one for every decoded item a model gave NaN or inf for (its row stays
    NaN in the cache like any skipped item's, and the side-car names it)."""
    reasons = list(reasons)
    decoded = np.flatnonzero(ok)
    for name, out in outs.items():
        bad = ~np.isfinite(np.asarray(out, dtype=np.float64).reshape(len(out), -1)).all(axis=1)
        for j in np.flatnonzero(bad):
            i = int(decoded[j])
            if not reasons[i]:
                reasons[i] = f"model {name!r} gave NaN or inf for it"
    return reasons


def _assemble(parts: list[tuple[np.ndarray | None, np.ndarray, int | None]]) -> np.ndarray:
    """Rows for one shard: model outputs where decoding worked, NaN rows where it did not."""
    width = next((w for _, _, w in parts if w is not None), 0)  # 0: nothing decoded
    rows = []
    for out, ok, _ in parts:
        block = np.full((len(ok), width), np.nan, dtype=np.float32)
        if out is not None:
            block[ok] = out
        rows.append(block)
    return np.concatenate(rows)
