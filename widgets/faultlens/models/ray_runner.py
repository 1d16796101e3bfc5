"""The classifier and embedder pass on Ray Data: many workers, possibly many machines, same cache.

:func:`~faultlens.models.runner.run_models` (the local engine) caches every model's outputs as a
sharded array in the artifact store. :class:`RayEngine` fills those very shards with Ray Data:

1. the items of the shards still missing become a dataset of rows (``index``, and ``path`` for
   folder and table sources; other sources travel once through Ray's object store);
2. ``map_batches`` runs them through a pool of actors (``workers`` of them, each with ``num_cpus``
   CPUs and ``num_gpus`` GPUs), each holding the models: the actor decodes every item with
   faultlens's own decoder, applies each model's transform and runs the models batch by batch,
   returning one output row per item (NaN where the item could not be read, and the reason);
3. the driver puts the rows into their shards and writes each shard, with the same skip side-car
   as the local engine and the same atomic renames, as soon as its last row arrives.

A rerun computes only the shards that are still missing. Afterwards ``run_models`` finds every
shard present and assembles them, so the table, the projection and the saved analysis folder are
made by the local engine's own code: ``faultlens.explore(faultlens.load(folder))`` works unchanged.

Use it through :func:`faultlens.analyze` (``engine="ray"`` or ``engine=RayEngine(...)``) or the
command line (``faultlens prepare SOURCE --engine ray --workers N [--ray-address auto]``). Ray is
an optional dependency: ``pip install 'faultlens[ray]'``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from faultlens.data.decode import decode_image
from faultlens.data.sources import ImageSource, _FileSource
from faultlens.models.base import BatchModel, TorchBatchModel
from faultlens.models.runner import (
    _collate_groups,
    _Items,
    _run_batch,
    claim_shards,
    claims_key,
    open_outputs,
    open_thumbnails,
)
from faultlens.store import ArtifactStore, ShardClaims, ShardedArray, ShardedBlobs

INSTALL_HINT = "pip install 'faultlens[ray]'"
RAY_CLAIMS = (
    256  # shards claimed per Ray run (one lock file open each); a run over more makes passes
)

# how the engine's actors decode (RunResult.decode of a run the engine computed)
RAY_DECODE = {
    "path": "cpu",
    "device": "Ray actors",
    "reason": "the Ray engine decodes in its actors",
}


def import_ray() -> Any:
    """The ``ray`` module, or an error that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        msg = f"engine='ray' needs Ray Data, which is not installed ({exc}): {INSTALL_HINT}"
        raise ImportError(msg) from exc
    return ray


@dataclass
class RayEngine:
    """Where and how to run the model pass on Ray (see the module docstring).

    Parameters
    ----------
    workers:
        Actors in the pool; each holds its own copy of the models.
    num_cpus, num_gpus:
        Resources each actor asks Ray for. With ``num_gpus > 0`` an actor moves the models to its
        GPU (their forward pass then runs under autocast, as the local engine does on CUDA). An
        actor decodes with ``max(1, int(num_cpus))`` threads.
    address:
        The Ray cluster to join: ``None`` starts a local one unless Ray is already initialised in
        this process, ``"auto"`` joins the cluster this machine belongs to (inside a ``ray job``).
    shard_size:
        Items per cached shard (the unit of resumption and of writes).
    batch_size:
        Images per model batch; ``None`` takes the one given to :func:`faultlens.analyze`.
    init_kwargs:
        More keyword arguments for ``ray.init`` when this engine starts or joins a cluster.
    """

    workers: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    address: str | None = None
    shard_size: int = 1024
    batch_size: int | None = None
    init_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workers < 1:
            msg = f"RayEngine(workers={self.workers}): need at least one worker"
            raise ValueError(msg)
        if self.num_cpus < 0 or self.num_gpus < 0:
            msg = f"RayEngine: num_cpus={self.num_cpus} and num_gpus={self.num_gpus} must be >= 0"
            raise ValueError(msg)

    def connect(self) -> Any:
        """Initialise Ray (or join ``address``) unless it already is; return the ``ray`` module."""
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
        return ray

    def fill(
        self,
        source: ImageSource,
        models: Mapping[str, BatchModel],
        *,
        store: ArtifactStore | None = None,
        batch_size: int = 64,
        force: bool = False,
        progress: bool = True,
        thumbnails: int | None = None,
    ) -> dict[str, list[int]]:
        """Compute every missing shard of every model's outputs (and with ``thumbnails``, of the
        thumbnail store) on Ray; return the shards computed per model.

        Afterwards ``run_models(source, models, store=store, shard_size=self.shard_size,
        thumbnails=thumbnails)`` computes nothing and returns the assembled outputs and the skip
        report.
        """
        store = store or ArtifactStore()
        arrays, missing = open_outputs(source, models, store, self.shard_size, force=force)
        thumbs, thumbs_missing = (
            open_thumbnails(source, store, thumbnails, self.shard_size, force=force)
            if thumbnails
            else (None, set())
        )
        todo = sorted(set().union(*missing.values(), thumbs_missing))
        computed: dict[str, list[int]] = {name: [] for name in models}
        if not todo:
            return computed
        ray = self.connect()
        claims = ShardClaims(store.path("claims", claims_key(source, self.shard_size)))
        try:
            while todo:  # the shards no other process of this cache computes, in passes
                mine = claim_shards(claims, todo, RAY_CLAIMS)
                todo = [s for s in todo if s not in mine]
                for s in mine:  # another process may have written some since they were listed
                    for name, arr in arrays.items():
                        if s in missing[name] and arr.has(s):
                            missing[name].discard(s)
                    if thumbs is not None and s in thumbs_missing and thumbs.has(s):
                        thumbs_missing.discard(s)
                run = [
                    s for s in mine if s in thumbs_missing or any(s in m for m in missing.values())
                ]
                if run:
                    self._pass(
                        ray,
                        source,
                        models,
                        store,
                        arrays,
                        missing,
                        thumbs,
                        thumbs_missing,
                        run,
                        batch_size,
                        progress,
                        thumbnails,
                        computed,
                    )
                for s in mine:
                    claims.release(s)
        finally:
            claims.release_all()
        return computed

    def _pass(
        self,
        ray: Any,
        source: ImageSource,
        models: Mapping[str, BatchModel],
        store: ArtifactStore,
        arrays: dict[str, ShardedArray],
        missing: dict[str, set[int]],
        thumbs: ShardedBlobs | None,
        thumbs_missing: set[int],
        todo: list[int],
        batch_size: int,
        progress: bool,
        thumbnails: int | None,
        computed: dict[str, list[int]],
    ) -> None:
        """One Ray run over the shards ``todo`` (claimed by this process); what it wrote is added
        to ``computed``."""
        shards = set(todo)
        active = [name for name in models if missing[name] & shards]
        thumbs_todo = thumbs_missing & shards
        first = arrays[active[0]] if active else thumbs
        assert first is not None  # todo is not empty: a model or the thumbnails miss a shard
        by_files = isinstance(source, _FileSource)
        rows = pd.DataFrame({"index": np.concatenate([np.arange(*first.bounds(s)) for s in todo])})
        if by_files:
            rows["path"] = [source.paths[i] for i in rows["index"]]  # type: ignore[index]
        # Ray hands whole blocks to actors: cut enough of them to keep every actor busy.
        batch = self.batch_size or batch_size
        per_block = min(self.shard_size, max(batch, -(-len(rows) // (4 * self.workers))))
        frames = [rows.iloc[b : b + per_block] for b in range(0, len(rows), per_block)]
        outputs = ray.data.from_pandas(frames).map_batches(
            _ModelActor,
            fn_constructor_args=(
                ray.put({a: models[a] for a in active}),
                None if by_files else ray.put(source),
                self.num_gpus > 0,
                max(1, int(self.num_cpus)),
                thumbnails if thumbs_todo else None,
            ),
            batch_size=batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
        )
        writer = _ShardWriter(
            source, {a: arrays[a] for a in active}, missing, first, thumbs, thumbs_todo
        )
        bar = tqdm(
            total=len(rows),
            desc="images (ray)",
            unit="img",
            disable=not progress,
            mininterval=0.5,
        )
        context = ray.data.DataContext.get_current()
        ray_bars, context.enable_progress_bars = context.enable_progress_bars, False  # ours below
        try:
            for batch in outputs.iter_batches(batch_size=None, batch_format="numpy"):
                writer.add(batch, active)
                bar.update(len(batch["index"]))
        except Exception as exc:
            said = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            msg = (
                f"the Ray run stopped ({said[-1].strip()}). The {len(writer.written)} "
                f"shard(s) finished before it are kept in {store.root}; run again to compute only "
                "the missing ones"
            )
            raise RuntimeError(msg) from exc
        finally:
            bar.close()
            context.enable_progress_bars = ray_bars
        for name in active:
            computed[name] = sorted(
                {*computed[name], *(s for s in writer.written if s in missing[name])}
            )


def as_engine(engine: Any, workers: int | None = None) -> RayEngine:
    """``"ray"`` (with ``workers`` actors) or a :class:`RayEngine` → a :class:`RayEngine`."""
    if isinstance(engine, RayEngine):
        return engine
    if engine == "ray":
        return RayEngine() if workers is None else RayEngine(workers=workers)
    msg = f"unknown engine {engine!r}: use 'local', 'ray' or faultlens.models.ray_runner.RayEngine(...)"
    raise ValueError(msg)


class _ShardWriter:
    """Collects output rows, which arrive in any order, and writes each shard once it is whole."""

    def __init__(
        self,
        source: ImageSource,
        arrays: dict[str, ShardedArray],
        missing: dict[str, set[int]],
        layout: ShardedArray | ShardedBlobs,
        thumbs: ShardedBlobs | None = None,
        thumbs_missing: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        self.source = source
        self.arrays = arrays
        self.missing = missing
        self.layout = layout  # any of the stores: they share the shard bounds
        self.shard_size = layout.shard_size
        self.thumbs = thumbs
        self.thumbs_missing = thumbs_missing
        self.parts: dict[int, list[dict[str, np.ndarray]]] = {}
        self.filled: dict[int, int] = {}
        self.written: list[int] = []

    def add(self, batch: dict[str, np.ndarray], active: list[str]) -> None:
        shard_of = batch["index"] // self.shard_size
        for shard in np.unique(shard_of):
            rows = shard_of == shard
            s = int(shard)
            self.parts.setdefault(s, []).append({k: v[rows] for k, v in batch.items()})
            self.filled[s] = self.filled.get(s, 0) + int(rows.sum())
            start, stop = self.layout.bounds(s)
            if self.filled[s] == stop - start:
                self._write(s, start, active)

    def _write(self, shard: int, start: int, active: list[str]) -> None:
        parts = self.parts.pop(shard)
        del self.filled[shard]
        index = np.concatenate([p["index"] for p in parts])
        order = np.argsort(index)
        if not np.array_equal(index[order], np.arange(start, start + len(index))):
            msg = f"shard {shard}: the rows that came back are not the shard's items, one each"
            raise RuntimeError(msg)
        for k, name in enumerate(active):
            if shard in self.missing[name]:  # each model's cache records its own skips only
                reasons = np.concatenate([p[f"reason_{k}"] for p in parts])[order]
                notes = [
                    [int(i), self.source.describe(int(i)), str(r)]
                    for i, r in zip(index[order], reasons, strict=True)
                    if r
                ]
                out = np.concatenate([p[f"model_{k}"] for p in parts])[order]
                side = {"skipped": notes, "decode": RAY_DECODE["path"]}
                self.arrays[name].write(shard, out.astype(np.float32), side)
        if self.thumbs is not None and shard in self.thumbs_missing:
            thumbs = np.concatenate([p["thumb"] for p in parts])[order]
            self.thumbs.write(shard, [bytes(b) for b in thumbs])
        self.written.append(shard)


class _PathRows:
    """The files of one batch as a source for :class:`~faultlens.models.runner._Items`."""

    def __init__(self, paths: np.ndarray) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int, min_size: int | None = None) -> Image.Image:
        return decode_image(str(self.paths[i]), min_size=min_size)


class _ModelActor:
    """A Ray Data actor: decodes, transforms and runs the models on one batch of rows."""

    def __init__(
        self, models: Any, source: Any, to_gpu: bool, threads: int, thumb_size: int | None = None
    ) -> None:
        import ray

        def get(ref: Any) -> Any:
            return ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref

        models = get(models)
        self.names = list(models)
        self.models: list[BatchModel] = [_on_device(m, to_gpu) for m in models.values()]
        self.source = get(source)
        self.threads = threads
        self.thumb_size = thumb_size
        self.widths: dict[int, int] = {}
        self.shapes: Any = None  # of the tensors of this actor's first batch (most of its items)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["index"].astype(np.int64)
        if "path" in batch:
            rows = _PathRows(batch["path"])
            items = _Items(rows, self.models, self.thumb_size)  # type: ignore[arg-type]
            keys = list(range(len(index)))
        else:
            items = _Items(self.source, self.models, self.thumb_size)
            keys = [int(i) for i in index]
        if self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                got = list(pool.map(items.__getitem__, keys))
        else:
            got = [items[k] for k in keys]
        # as the local engine: the shapes of the first batch (most of its items) hold
        # as the local engine: each model's own skips, NaN or inf out included
        _, _oks, reasons, runs, thumbs, self.shapes = _run_batch(
            _collate_groups(got), self.models, self.names, self.shapes
        )
        out: dict[str, np.ndarray] = {"index": index}
        if self.thumb_size:
            out["thumb"] = np.asarray(thumbs, dtype=object)
        for k, name in enumerate(self.names):
            out[f"reason_{k}"] = np.asarray(reasons[k], dtype=object)
            result = runs.get(name)
            if result is None:  # the model ran on nothing here: NaN rows of its width
                width = self.widths[k] if k in self.widths else self._probe_width(k)
                result = np.full((len(index), width), np.nan, dtype=np.float32)
            self.widths[k] = result.shape[1]
            out[f"model_{k}"] = result
        return out

    def _probe_width(self, k: int) -> int:
        """Output width of model ``k`` before any item decoded: run it once on a blank image."""
        model = self.models[k]
        blank = model.transform(Image.new("RGB", (224, 224)))
        self.widths[k] = int(model.run(torch.stack([blank])).shape[1])
        return self.widths[k]


def _on_device(model: BatchModel, to_gpu: bool) -> BatchModel:
    """Move a torch model to this actor's GPU when it was given one."""
    if to_gpu and isinstance(model, TorchBatchModel) and torch.cuda.is_available():
        model.device = torch.device("cuda")
        model.module.to(model.device)
    elif to_gpu and not torch.cuda.is_available():
        print(
            f"faultlens ray worker {os.getpid()}: num_gpus > 0 but torch sees no CUDA device; "
            "running on the CPU",
            file=sys.stderr,
        )
    return model
