"""The :func:`analyze` pipeline: a source and a classifier in, an :class:`Analysis` out.

Its stages run once each, in this order: check the arguments and open the source (with its
classes in the classifier's output order) → run the models over it (here or on Ray; both fill the
same cache) → take the embeddings and the classifier outputs of the items that could be read →
project the embeddings onto the 2-D map → assemble the table (:func:`build_table`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from faultlens._checks import whole_number
from faultlens.analysis.label_errors import label_issues
from faultlens.analysis.projection import DEFAULT_FIT_SAMPLE, project, start_warmup
from faultlens.analysis.result import TABLE_COLUMNS, Analysis
from faultlens.data.sources import ImageSource, as_source
from faultlens.models.base import BatchModel
from faultlens.models.classifier import Outputs, outputs_from_logits, outputs_from_probs
from faultlens.models.runner import RunResult, open_outputs, run_models, skip_entry
from faultlens.store import ArtifactStore


def analyze(
    source: Any,
    *,
    classifier: BatchModel | None = None,
    embedder: BatchModel | str | None = "offline",
    probs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    labels: Sequence[Any] | np.ndarray | None = None,
    columns: pd.DataFrame | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    projection: dict[str, Any] | None = None,
    engine: Any = "local",
    force: bool = False,
    progress: bool = True,
    thumbnails: int | None = 96,
    image_properties: bool = True,
) -> Analysis:
    """Classifier outputs, embeddings and a 2-D map of ``source``, cached on disk.

    Parameters
    ----------
    source:
        A folder of class sub-folders, a CSV/parquet table or DataFrame of paths and labels, an
        image array (with ``labels=``), a torch Dataset, or an :class:`ImageSource`.
    classifier:
        A :class:`~faultlens.Classifier` (any torch model + transform). Or pass ``probs``.
    embedder:
        ``"offline"`` (EfficientNet-Lite0, the default), an embedder object
        (:class:`~faultlens.OpenClipEmbedder`, :class:`~faultlens.LayerEmbedder`, …), or ``None``
        when ``embeddings`` are given.
    probs, embeddings:
        Your own arrays, one row per item of ``source``, instead of running models.
    class_names, labels:
        For an image array: the class names (in label order) and one label per image (names or
        indices). ``class_names`` also names the columns of ``probs``.
    columns:
        Extra per-image columns for an image array (a table's own extra columns are kept as they
        are; folders and torch Datasets take none).
    cache_dir:
        Where outputs are cached (default ``$FAULTLENS_CACHE``, else the user cache folder); a
        rerun computes only what is missing.
    batch_size, num_workers:
        Images per model batch; worker processes (``None``: chosen from the CPU count; 0: all
        in this process). On CPU each worker decodes its batches and runs the models on them
        with one torch thread; with a GPU (or a model that is not a ``TorchBatchModel``) the
        workers only decode and the models run here.
    force:
        Recompute everything instead of reading the cache.
    progress:
        Print what runs and how far it got (to stderr).
    projection:
        Options for :func:`faultlens.analysis.projection.project` (``n_neighbors``, ``seed`` …).
    engine:
        Where the models run: ``"local"`` (this machine; ``num_workers`` worker processes),
        ``"ray"`` (Ray Data with ``num_workers`` actors, default 2) or a
        :class:`faultlens.models.ray_runner.RayEngine` (actors, CPUs/GPUs per actor, cluster
        address). Both fill the same cache, so the result is the same analysis.
    thumbnails:
        Size in pixels of the thumbnails rendered in the same decoding pass and kept in one
        compact store (the Explorer's grid and the report read them instead of decoding each
        image again); ``None`` renders none.
    image_properties:
        Measure each image in the same decoding pass (brightness, contrast, saturation,
        sharpness, noise, object size and position, the file's aspect ratio and resolution;
        :mod:`faultlens.data.properties`) and keep them as table columns, so the map can be
        coloured by them and descriptions can compare a slice with its reference.
    """
    src = _open_source(source, classifier, class_names=class_names, labels=labels, columns=columns)
    embedder, batch_size = _check_arguments(
        len(src),
        classifier=classifier,
        embedder=embedder,
        probs=probs,
        embeddings=embeddings,
        batch_size=batch_size,
    )
    store = ArtifactStore(cache_dir)
    models = _models(classifier, embedder, image_properties=image_properties)
    run = _run_models(
        src,
        models,
        store,
        engine=engine,
        batch_size=batch_size,
        num_workers=num_workers,
        force=force,
        progress=progress,
        thumbnails=thumbnails,
        projection=projection,
    )
    emb, arrays, keep, skipped = _embeddings(src, run, models, embeddings)
    out = _outputs(src, run, probs, keep)
    xy = project(emb, store=store, force=force, progress=progress, **(projection or {}))
    meta = {
        "models": {name: m.id for name, m in models.items()},
        "source_fingerprint": src.fingerprint(),
        "projection": projection or {},
        "projection_fit": _projection_fit(emb, projection or {}),
        "n_source": len(src),
        "thumbnail_size": int(thumbnails) if thumbnails else None,
        # which decode path ran (CPU, or JPEG on the GPU) and why; None when nothing ran here
        "decode": getattr(run, "decode", None),
    }
    props = run.outputs.get("properties") if run is not None else None
    return Analysis(
        build_table(src, keep, out, xy, properties=None if props is None else props[keep]),
        class_names=src.class_names,
        probs=out.probs,
        embeddings=emb,
        arrays=arrays,
        skipped=skipped,
        meta=meta,
        source=src,
        thumbnails=run.thumbnails if run else None,
        classifier=classifier,
    )


# --------------------------------------------------------------------------- the stages


def _open_source(
    source: Any,
    classifier: BatchModel | None,
    *,
    class_names: Sequence[str] | None,
    labels: Sequence[Any] | np.ndarray | None,
    columns: pd.DataFrame | None,
) -> ImageSource:
    """``source`` as an :class:`ImageSource`, its classes in the classifier's output order."""
    kwargs: dict[str, Any] = {}
    if class_names is not None:
        kwargs["class_names"] = class_names
    if labels is not None:
        kwargs["labels"] = labels
    if columns is not None:
        kwargs["columns"] = columns
    src = as_source(source, **kwargs)
    if classifier is not None and getattr(classifier, "class_names", None) is not None:
        src = _align_classes(src, list(classifier.class_names), given=class_names)
    return src


def _check_arguments(
    n: int,
    *,
    classifier: BatchModel | None,
    embedder: BatchModel | str | None,
    probs: np.ndarray | None,
    embeddings: np.ndarray | None,
    batch_size: int,
) -> tuple[BatchModel | str | None, int]:
    """The embedder to run (None: the user's ``embeddings`` are used) and the batch size, after
    checking that the arguments name one way to each output and that arrays have ``n`` rows."""
    if classifier is None and probs is None:
        msg = "pass classifier= (a faultlens.Classifier) or probs= (your own (N, C) probabilities)"
        raise TypeError(msg)
    if classifier is not None and probs is not None:
        msg = "pass either classifier= or probs=, not both"
        raise TypeError(msg)
    if embeddings is not None and embedder is not None and not _is_offline(embedder):
        msg = "pass either embedder= or embeddings=, not both (embedder=None with your embeddings)"
        raise TypeError(msg)
    if _is_offline(embedder) and embeddings is None:
        embedder = _default_embedder()
    elif _is_offline(embedder) or embeddings is not None:
        embedder = None
    if embedder is None and embeddings is None:
        msg = "pass embedder= (or leave the offline default) or embeddings="
        raise TypeError(msg)
    batch_size = whole_number(batch_size, "batch_size")  # checked before any work
    if embeddings is not None:
        shape = np.shape(embeddings)
        if len(shape) != 2 or shape[1] < 1:
            msg = f"embeddings must be (n_images, dim) with dim ≥ 1, got shape {shape}"
            raise ValueError(msg)
    for name, arr in (("probs", probs), ("embeddings", embeddings)):
        if arr is not None and len(arr) != n:
            msg = (
                f"{name} has {len(arr)} rows but the source has {n} images: pass one row per image"
            )
            raise ValueError(msg)
    return embedder, batch_size


def _models(
    classifier: BatchModel | None, embedder: BatchModel | str | None, *, image_properties: bool
) -> dict[str, BatchModel]:
    """The models to run, by role (``classifier``, ``embedder``, ``properties``)."""
    models: dict[str, BatchModel] = {}
    if classifier is not None:
        models["classifier"] = classifier
    if embedder is not None:
        if isinstance(embedder, str):
            msg = f"unknown embedder {embedder!r}: use 'offline' or an embedder object"
            raise ValueError(msg)
        models["embedder"] = embedder
    if image_properties:
        from faultlens.models.properties import ImageProperties

        models["properties"] = ImageProperties()
    return models


def _run_models(
    src: ImageSource,
    models: dict[str, BatchModel],
    store: ArtifactStore,
    *,
    engine: Any,
    batch_size: int,
    num_workers: int | None,
    force: bool,
    progress: bool,
    thumbnails: int | None,
    projection: dict[str, Any] | None,
) -> RunResult | None:
    """Every model's outputs over ``src`` (and the thumbnails), computed where the cache lacks
    them: by the Ray engine, which fills the cache, or here; None when there is nothing to run."""
    ray_engine = None
    if models and engine != "local":
        from faultlens.models.ray_runner import as_engine

        ray_engine = as_engine(engine, num_workers)
    if force or _models_to_run(src, models, store, ray_engine.shard_size if ray_engine else 1024):
        # compile UMAP's kernels while the models run; with every output cached there is nothing
        # to overlap, and the map itself may be cached too (then UMAP is never imported)
        start_warmup(
            len(src),
            **{k: v for k, v in (projection or {}).items() if k in ("n_neighbors", "metric")},
        )
    run_opts: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers}
    filled: dict[str, list[int]] = {}
    if ray_engine is not None:
        filled = ray_engine.fill(
            src,
            models,
            store=store,
            batch_size=batch_size,
            force=force,
            progress=progress,
            thumbnails=thumbnails,
        )
        run_opts = {"shard_size": ray_engine.shard_size}  # every shard is there: only assemble
    if not (models or thumbnails):
        return None
    result = run_models(
        src,
        models,
        store=store,
        force=force and engine == "local",
        progress=progress,
        thumbnails=thumbnails,
        **run_opts,
    )
    if any(filled.values()):  # the Ray engine computed them; run_models only assembled
        from faultlens.models.ray_runner import RAY_DECODE

        result.decode = dict(RAY_DECODE)
    return result


def _embeddings(
    src: ImageSource,
    run: RunResult | None,
    models: dict[str, BatchModel],
    embeddings: np.ndarray | None,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, list[dict[str, Any]]]:
    """The kept items' embeddings, the embedder's further output blocks (float16), which source
    items are kept, and the skipped ones (unreadable, or a non-finite row of the user's
    ``embeddings``)."""
    n = len(src)
    skipped = run.skipped if run else []
    keep = np.ones(n, dtype=bool)
    keep[[s["index"] for s in skipped]] = False
    arrays: dict[str, np.ndarray] = {}
    if run is not None and "embedder" in run.outputs:
        raw = run.outputs["embedder"]
        blocks = getattr(models["embedder"], "outputs", None) or {"embedding": slice(None)}
        emb = raw[:, blocks["embedding"]]
        for block, sl in blocks.items():
            if block != "embedding":
                arrays[block] = raw[keep][:, sl].astype(np.float16)
    else:
        emb = np.asarray(embeddings, dtype=np.float32)
        bad = keep & ~np.isfinite(emb).all(axis=1)
        skipped = sorted(
            [
                *skipped,
                *(skip_entry(src, i, "embedding row has NaN or inf") for i in np.flatnonzero(bad)),
            ],
            key=lambda s: s["index"],
        )
        keep &= ~bad
    if not keep.any():
        raise ValueError(_all_skipped_message(skipped, n))
    return emb[keep].astype(np.float32, copy=False), arrays, keep, skipped


def _outputs(
    src: ImageSource, run: RunResult | None, probs: np.ndarray | None, keep: np.ndarray
) -> Outputs:
    """The classifier's outputs at the kept items: from its logits, or from the user's ``probs``."""
    if run is not None and "classifier" in run.outputs:
        logits = run.outputs["classifier"][keep]
        if logits.shape[1] != len(src.class_names):
            msg = (
                f"the classifier gives {logits.shape[1]} outputs but there are "
                f"{len(src.class_names)} classes {src.class_names[:10]}: pass class_names in the "
                "model's output order"
            )
            raise ValueError(msg)
        return outputs_from_logits(logits, src.labels[keep])
    return _outputs_of_user_probs(probs, src, keep)


# --------------------------------------------------------------------------- helpers


def _default_embedder() -> BatchModel:
    from faultlens.models.embedders import EfficientNetLiteEmbedder

    return EfficientNetLiteEmbedder()


def _is_offline(embedder: Any) -> bool:
    return isinstance(embedder, str) and embedder == "offline"


def _align_classes(src: ImageSource, names: list[str], given: Sequence[str] | None) -> ImageSource:
    """``src`` with its classes in the classifier's output order ``names``, matched by name.

    Folder names, string labels and a Dataset's ``classes`` are names: each is looked up in
    ``names`` (a source class the classifier lacks is an error naming it). Integer labels that came
    without names (named "0", "1", … by the source) are taken as output indices. The user's source
    object is not changed: a relabelled copy is returned.
    """
    have = list(src.class_names)
    if have == names:
        return src
    if given is not None and list(given) != names:
        msg = (
            f"class_names= {list(given)[:10]} and the classifier's class_names {names[:10]} "
            "differ: pass one list, in the model's output order"
        )
        raise ValueError(msg)
    if have == [str(k) for k in range(len(have))] and not set(have) <= set(names):
        if len(have) > len(names):
            msg = (
                f"label {len(have) - 1} is outside the classifier's {len(names)} outputs "
                f"{names[:10]}: labels are output indices"
            )
            raise ValueError(msg)
        new_labels = src.labels
    else:
        missing = [c for c in have if c not in set(names)]
        if missing:
            msg = (
                f"the source's classes {missing[:10]} are not among the classifier's class_names "
                f"{names[:10]}: give the Classifier the names the source uses (folder names, "
                "string labels), in the model's output order, or leave its class_names out to "
                "take the source's classes as the model's outputs, in the source's order"
            )
            raise ValueError(msg)
        where = {c: k for k, c in enumerate(names)}
        new_labels = np.asarray([where[c] for c in have], dtype=np.int64)[src.labels]
    out = copy.copy(src)
    out.labels = np.asarray(new_labels, dtype=np.int64)
    out.class_names = list(names)
    return out


def _all_skipped_message(skipped: list[dict[str, Any]], n: int) -> str:
    """Why there is nothing to analyze: the first few skip reasons, and what to check."""
    shown = "; ".join(f"{s['id']!r}: {s['reason']}" for s in skipped[:3])
    more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
    return (
        f"all {n} items were skipped, so there is nothing to analyze. The first: {shown}{more}. "
        "Check that the source gives readable images with their labels (load one with "
        "source.load(0)), that the transforms accept them, and that your probs/embeddings rows "
        "are finite"
    )


def _outputs_of_user_probs(probs: Any, src: ImageSource, keep: np.ndarray) -> Outputs:
    """Outputs of the user's ``probs`` (one row per source item) at the kept items. Checked on
    every kept row, with errors naming the row as the source numbers it; the rows of skipped
    items are not used (they may hold anything)."""
    names = src.class_names
    p = np.array(probs, dtype=np.float64)  # a copy: skipped rows are filled in below
    if p.ndim != 2:
        msg = f"probs must be 2-D (n_images, n_classes), got shape {p.shape}"
        raise ValueError(msg)
    # Skipped rows get a harmless stand-in, so the checks run on source rows and name them. The
    # rows are checked first; the labels (valid for the source's classes) are clipped so that too
    # few columns is reported as such, below, and not as a label outside them.
    p[~keep] = 1.0 / max(p.shape[1], 1)
    out = outputs_from_probs(p, np.minimum(src.labels, max(p.shape[1] - 1, 0)))
    if p.shape[1] != len(names):
        msg = (
            f"probs has {p.shape[1]} columns but there are {len(names)} classes {names[:10]}: "
            "pass one column per class, with class_names= in the columns' order"
        )
        raise ValueError(msg)
    return Outputs(**{f.name: getattr(out, f.name)[keep] for f in dataclasses.fields(Outputs)})


def _models_to_run(
    src: ImageSource, models: dict[str, BatchModel], store: ArtifactStore, shard_size: int
) -> bool:
    """Whether any model still has an output shard to compute over ``src``."""
    if not models:
        return False
    _arrays, missing = open_outputs(src, models, store, shard_size)
    return any(missing.values())


def _projection_fit(emb: np.ndarray, projection: dict[str, Any]) -> dict[str, int]:
    """How many points the map was fitted on, of how many placed (the rest by UMAP.transform)."""
    placed = int(np.isfinite(emb).all(axis=1).sum())
    sample = projection.get("fit_sample", DEFAULT_FIT_SAMPLE)
    return {"fitted_on": placed if sample is None else min(placed, int(sample)), "placed": placed}


def build_table(
    src: ImageSource,
    keep: np.ndarray,
    out: Outputs,
    xy: np.ndarray,
    *,
    properties: np.ndarray | None = None,
) -> pd.DataFrame:
    """The analysis table of the kept items: :data:`TABLE_COLUMNS`, ``label_issue`` (how likely
    the label is wrong, :func:`~faultlens.analysis.label_errors.label_issues`), the image
    properties (when measured), then the source's columns."""
    names = np.asarray(src.class_names, dtype=object)
    labels = src.labels[keep]
    ids = np.asarray(src.ids, dtype=object)[keep]
    paths = np.asarray(src.paths, dtype=object)[keep] if src.paths is not None else None
    table = pd.DataFrame(
        {
            "id": ids,
            "path": paths
            if paths is not None
            else pd.Series([None] * int(keep.sum()), dtype=object),
            "label": labels,
            "label_name": names[labels],
            "pred": out.pred,
            "pred_name": names[out.pred],
            "confidence": out.confidence,
            "loss": out.loss,
            "correct": out.correct,
            "x": xy[:, 0],
            "y": xy[:, 1],
            "source_index": np.flatnonzero(keep),
        },
        columns=TABLE_COLUMNS,
    )
    # likely label errors, from the classifier's own probabilities: a column to colour and sort by
    table["label_issue"] = label_issues(out.probs, labels).score.astype(np.float32)
    if properties is not None:
        from faultlens.models.properties import property_columns

        for name, values in property_columns(properties).items():
            table[name] = values
    user = src.columns.loc[keep].reset_index(drop=True)
    clash = [c for c in user.columns if c in table.columns]
    if clash:
        user = user.rename(columns={c: f"user_{c}" for c in clash})
    return pd.concat([table, user], axis=1)
