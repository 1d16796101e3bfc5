"""The analysis object: one table of per-image results plus the arrays beside it, and the one call that
makes it (:func:`analyze`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from faultlens._checks import whole_number
from faultlens._version import __version__
from faultlens.analysis.projection import DEFAULT_FIT_SAMPLE, project, start_warmup
from faultlens.data.decode import decode_image, encode_thumbnail
from faultlens.data.sources import ArraySource, ImageSource, as_source, load_image
from faultlens.models.base import BatchModel
from faultlens.models.classifier import Outputs, outputs_from_logits, outputs_from_probs
from faultlens.models.runner import open_outputs, run_models, skip_entry
from faultlens.store import (
    ArtifactStore,
    CacheWarning,
    ShardedBlobs,
    atomic_path,
    read_json,
    read_npy,
    write_json,
    write_npy,
)

#: Columns every analysis table has, in this order (user columns follow).
CORE_COLUMNS = [
    "id",
    "path",
    "label",
    "label_name",
    "pred",
    "pred_name",
    "confidence",
    "loss",
    "correct",
    "x",
    "y",
]


class Analysis:
    """Per-image results of one classifier on one image set.

    Attributes
    ----------
    table:
        One row per image that could be read: ``id``, ``path`` (or None), ``label``/``label_name``,
        ``pred``/``pred_name``, ``confidence``, ``loss``, ``correct``, ``x``/``y`` (the 2-D map),
        ``source_index`` (the item's position in the source), then user columns.
    embeddings:
        (n, D) float32, aligned with ``table`` (or None): the embedder's output, L2-normalised
        by faultlens's embedders; your own ``embeddings=`` rows are kept as given.
    probs:
        (n, C) float32 class probabilities aligned with ``table``.
    class_names:
        Names of the classes, indexed by label.
    arrays:
        Further named arrays aligned with ``table`` (e.g. ``imagenet_logits`` of the offline model).
    skipped:
        The items that could not be read: ``index``, ``id``, ``path``, ``reason``.
    meta:
        How it was made (models, parameters, library version).
    thumbnails:
        Every source item's thumbnail, encoded once by :func:`analyze` in its decoding pass and
        indexed by ``source_index`` (or None); ``meta["thumbnail_size"]`` is their size.
    folder:
        The folder it was saved to or loaded from (None before that); the Explorer's named
        slices and the FeatureBrowser's marks are kept there.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        *,
        class_names: Sequence[str],
        probs: np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
        arrays: dict[str, np.ndarray] | None = None,
        skipped: list[dict[str, Any]] | None = None,
        meta: dict[str, Any] | None = None,
        source: ImageSource | None = None,
        folder: str | os.PathLike[str] | None = None,
        thumbnails: ShardedBlobs | None = None,
    ) -> None:
        n = len(table)
        for name, arr in [("probs", probs), ("embeddings", embeddings), *(arrays or {}).items()]:
            if arr is not None and len(arr) != n:
                msg = f"{name} has {len(arr)} rows but the table has {n}: they must align"
                raise ValueError(msg)
        self.table = table.reset_index(drop=True)
        self.class_names = list(class_names)
        self.probs = probs
        self.embeddings = embeddings
        self.arrays = dict(arrays or {})
        self.skipped = list(skipped or [])
        self.meta = dict(meta or {})
        self.source = source
        self.folder = Path(folder) if folder is not None else None
        self.thumbnails = thumbnails

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        acc = float(self.table["correct"].mean()) if len(self) else float("nan")
        return (
            f"<faultlens.Analysis: {len(self)} images, {len(self.class_names)} classes, "
            f"accuracy {acc:.1%}, {len(self.skipped)} skipped>"
        )

    # -- images ---------------------------------------------------------------------------------

    def image(self, row: int, min_size: int | None = None) -> Image.Image:
        """The RGB image of table row ``row`` (``min_size``: see :func:`decode_image`)."""
        src_index = int(self.table["source_index"].iat[row])
        if self.source is not None:
            return load_image(self.source, src_index, min_size)
        path = self.table["path"].iat[row]
        if isinstance(path, str) and path:
            return decode_image(path, min_size=min_size)
        msg = (
            f"row {row} has no image: this analysis was loaded without its images (an in-memory "
            "source not saved with it)"
        )
        raise LookupError(msg)

    def thumbnail(self, row: int, size: int = 96) -> bytes:
        """Encoded bytes (JPEG or PNG, see :func:`encode_thumbnail`) of row ``row``'s image at most
        ``size`` pixels a side: read from the pre-rendered store when it holds this size (up to
        twice as large; the page scales it), else decoded and rendered now."""
        stored = int(self.meta.get("thumbnail_size") or 0)
        if self.thumbnails is not None and size <= stored <= 2 * size:
            try:
                data = self.thumbnails.get(int(self.table["source_index"].iat[row]))
            except (KeyError, OSError):  # a store copied half-way: render it instead
                data = b""
            if data:
                return data
        return encode_thumbnail(self.image(row, min_size=size), size)

    # -- summaries ------------------------------------------------------------------------------

    @property
    def accuracy(self) -> float:
        return float(self.table["correct"].mean())

    def group_accuracy(self, column: str) -> pd.DataFrame:
        """Accuracy, error count and size per value of ``column``."""
        if column not in self.table.columns:
            msg = f"no column {column!r}; columns: {list(self.table.columns)}"
            raise KeyError(msg)
        g = self.table.groupby(column, observed=True, dropna=False)["correct"]
        return pd.DataFrame({"n": g.size(), "accuracy": g.mean(), "errors": g.size() - g.sum()})

    def summary(self) -> str:
        lines = [repr(self)]
        per_class = self.group_accuracy("label_name").sort_values("accuracy")
        lines.append("accuracy per class (worst first):")
        lines.extend(
            f"  {name:<16} {row.accuracy:6.1%}  (n={int(row.n)})"
            for name, row in per_class.iterrows()
        )
        fit = self.meta.get("projection_fit", {})
        if fit and fit.get("fitted_on", 0) < fit.get("placed", 0):
            lines.append(
                f"map: UMAP fitted on a seeded sample of {fit['fitted_on']:,} of {fit['placed']:,} "
                "points; the others placed with UMAP.transform"
            )
        if self.skipped:
            lines.append(f"{len(self.skipped)} item(s) skipped:")
            lines.extend(f"  {s['id']}: {s['reason']}" for s in self.skipped[:10])
            if len(self.skipped) > 10:
                lines.append(f"  … and {len(self.skipped) - 10} more (see analysis.skipped)")
        return "\n".join(lines)

    # -- persistence ----------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the analysis to ``folder`` (parquet + npy + JSON, each file atomically).

        Everything is checked before the first file is written, so an analysis that cannot be
        saved (an object array, a bad array name, a column parquet cannot hold) leaves what was
        saved in ``folder`` before as it was."""
        folder = Path(folder).expanduser()
        images = (
            self.source.images
            if isinstance(self.source, ArraySource) and isinstance(self.source.images, np.ndarray)
            else None
        )
        for name, arr in [("probs", self.probs), ("embeddings", self.embeddings),
                          *self.arrays.items()]:  # fmt: skip
            if name in self.arrays:
                _check_name(name)
            if arr is not None and np.asarray(arr).dtype.hasobject:
                msg = f"array {name!r} holds Python objects; save needs numbers (no pickles)"
                raise TypeError(msg)
        table_bytes = _parquet_bytes(self.table)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "table.parquet") as tmp:
            tmp.write_bytes(table_bytes)
        # what this analysis lacks is removed: files an analysis saved here before left must not
        # be loaded as this one's
        for name, arr in [
            ("probs", self.probs),
            ("embeddings", self.embeddings),
            ("images", images),
        ]:
            if arr is not None:
                write_npy(folder / f"{name}.npy", arr)
            else:
                (folder / f"{name}.npy").unlink(missing_ok=True)
        for name, arr in self.arrays.items():
            write_npy(folder / "arrays" / f"{name}.npy", arr)
        if (folder / "arrays").is_dir():
            for old in (folder / "arrays").glob("*.npy"):
                if old.stem not in self.arrays:
                    old.unlink(missing_ok=True)
        if self.thumbnails is not None:
            self.thumbnails = self.thumbnails.copy_to(folder / "thumbnails")
        elif (folder / "thumbnails").exists():  # left by an analysis saved here before
            shutil.rmtree(folder / "thumbnails")
        write_json(folder / "skipped.json", self.skipped)
        write_json(
            folder / "analysis.json",
            {
                "format": 1,
                "faultlens": __version__,
                "class_names": self.class_names,
                "arrays": sorted(self.arrays),
                "meta": self.meta,
            },
        )
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Analysis:
        """Read an analysis written by :meth:`save`.

        A file that is damaged, was not written by faultlens, or disagrees with the rest (rows,
        class count) is an error naming it; nothing is unpickled. Damaged thumbnails are left out
        with a warning (the grid and the report then render them from the images)."""
        folder = Path(folder).expanduser()
        info_path = folder / "analysis.json"
        if not info_path.exists():
            msg = f"{str(folder)!r} is not a faultlens analysis folder (no analysis.json)"
            raise FileNotFoundError(msg)

        def read(path: Path, reader: Any) -> Any:
            try:
                return reader(path)
            except Exception as exc:
                why = str(exc)
                if "allow_pickle" in why:
                    why = "it holds pickled Python objects, which faultlens never writes nor loads"
                msg = (
                    f"{path.relative_to(folder)} in {str(folder)!r} cannot be read ({why}): is it "
                    "damaged, or not written by faultlens? Save the analysis again"
                )
                raise ValueError(msg) from exc

        def opt(path: Path) -> np.ndarray | None:
            return read(path, read_npy) if path.exists() else None

        info = read(info_path, read_json)
        if not isinstance(info, dict) or not isinstance(info.get("class_names"), list):
            msg = f"analysis.json in {str(folder)!r} has no class_names list: save it again"
            raise ValueError(msg)
        table = read(folder / "table.parquet", pd.read_parquet)
        images = opt(folder / "images.npy")
        needed = ["label", "source_index"] if images is not None else ["label"]
        lacking = [c for c in needed if c not in table.columns]
        if lacking:
            msg = f"table.parquet in {str(folder)!r} lacks column(s) {lacking}: save it again"
            raise ValueError(msg)
        arrays = {
            name: read(folder / "arrays" / f"{name}.npy", read_npy)
            for name in info.get("arrays", [])
        }
        probs, embeddings = opt(folder / "probs.npy"), opt(folder / "embeddings.npy")
        n_classes = len(info["class_names"])
        for name, arr, cols in (("probs", probs, n_classes), ("embeddings", embeddings, None)):
            if arr is not None and (arr.ndim != 2 or (cols is not None and arr.shape[1] != cols)):
                want = f"({len(table)}, {cols if cols is not None else 'dim'})"
                msg = (
                    f"{name}.npy in {str(folder)!r} has shape {arr.shape}, not {want} (one row "
                    f"per table row{', one column per class' if cols else ''}): save it again"
                )
                raise ValueError(msg)
        thumbs = None
        if (folder / "thumbnails" / "manifest.json").exists():
            try:
                thumbs = ShardedBlobs.open(folder / "thumbnails")
            except Exception as exc:
                warnings.warn(
                    f"the thumbnails in {str(folder / 'thumbnails')!r} cannot be opened ({exc}); "
                    "they are rendered from the images instead",
                    CacheWarning,
                    stacklevel=2,
                )
        source = None
        if images is not None:
            labels = np.zeros(len(images), dtype=np.int64)
            labels[table["source_index"].to_numpy()] = table["label"].to_numpy()
            source = ArraySource(images, labels, class_names=info["class_names"])
        skipped_path = folder / "skipped.json"
        return cls(
            table,
            class_names=info["class_names"],
            probs=probs,
            embeddings=embeddings,
            arrays=arrays,
            skipped=read(skipped_path, read_json) if skipped_path.exists() else [],
            meta=info.get("meta", {}),
            source=source,
            folder=folder,
            thumbnails=thumbs,
        )

    # -- failure slices -------------------------------------------------------------------------

    def _need_embeddings(self) -> np.ndarray:
        if self.embeddings is None:
            msg = "this analysis has no embeddings: run analyze() with an embedder"
            raise ValueError(msg)
        return self.embeddings

    def failure_scores(
        self, *, fit_on: np.ndarray | None = None, random_state: int = 0
    ) -> np.ndarray:
        """Failure-direction scores (lower = more likely an error), also stored as the table's
        ``failure_score`` column. ``fit_on``: rows (or a bool mask) to fit the SVMs on — by default
        a seeded half, and each half is scored by the SVMs fitted on the other (cross-fitting), so
        no image is scored by a model that saw it.
        """
        from faultlens.analysis.errors import FailureDirections

        Z = self._need_embeddings()
        y = self.table["label"].to_numpy()
        pred = self.table["pred"].to_numpy()
        score = np.full(len(y), np.nan)
        if fit_on is not None:
            mask = np.zeros(len(y), dtype=bool)
            mask[fit_on] = True
            folds = [(mask, ~mask)]
        else:
            half = np.random.default_rng(random_state).random(len(y)) < 0.5
            folds = [(half, ~half), (~half, half)]
        for fit_rows, score_rows in folds:
            fd = FailureDirections(random_state=random_state).fit(
                Z[fit_rows], y[fit_rows], pred[fit_rows]
            )
            score[score_rows] = fd.score(Z[score_rows], y[score_rows])
        self.table["failure_score"] = score.astype(np.float32)
        return score

    def find_slices(self, n_slices: int = 5, method: str = "mixture", **options: Any) -> list[Any]:
        """Discover failure slices (see :func:`faultlens.analysis.slices.discover`)."""
        from faultlens.analysis.slices import discover

        return discover(
            self._need_embeddings(),
            self.table["label"].to_numpy(),
            self.probs,
            n_slices=n_slices,
            method=method,
            class_names=self.class_names,
            **options,
        )

    def describe(
        self,
        rows: Sequence[int] | np.ndarray,
        *,
        captioner: Any = None,
        text_encoder: Any = None,
        phrases: Sequence[str] = (),
    ) -> tuple[list[Any], list[str]]:
        """Descriptions of the images at ``rows`` (captions, phrases, ImageNet tags — each labelled
        with its source) and notes on what could not be made. See
        :func:`faultlens.analysis.describe.describe_members`."""
        from faultlens.analysis.describe import describe_members

        return describe_members(
            np.asarray(rows, dtype=np.int64),
            labels=self.table["label"].to_numpy(),
            correct=self.table["correct"].to_numpy(),
            embeddings=self.embeddings,
            imagenet_logits=self.arrays.get("imagenet_logits"),
            load_image=self.image,
            captioner=captioner,
            text_encoder=text_encoder,
            phrases=phrases,
            class_names=self.class_names,
        )

    def report(self, path: str | os.PathLike[str], **kwargs: Any) -> Path:
        """Write a self-contained HTML report (see :func:`faultlens.report.write_report`)."""
        from faultlens.report import write_report

        return write_report(self, path, **kwargs)

    def explore(self, **kwargs: Any) -> Any:
        """The interactive explorer of this analysis (see :class:`faultlens.Explorer`)."""
        from faultlens.ui.explorer import Explorer

        return Explorer(self, **kwargs)


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        msg = f"array name {name!r} is not a plain file name"
        raise ValueError(msg)


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as parquet, in memory; a column parquet cannot hold is an error that names it."""
    import io

    import pyarrow as pa

    buf = io.BytesIO()
    try:
        df.to_parquet(buf, index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        bad = []
        for col in df.columns:
            try:
                pa.array(df[col], from_pandas=True)
            except (pa.ArrowException, ValueError, TypeError):
                bad.append(col)
        msg = (
            f"the table cannot be saved: column(s) {bad or '?'} mix types parquet cannot hold "
            f"together ({type(exc).__name__}: {exc}); give each one type, e.g. "
            "analysis.table[col] = analysis.table[col].astype(str)"
        )
        raise ValueError(msg) from exc
    return buf.getvalue()


def load(folder: str | os.PathLike[str]) -> Analysis:
    """Read an analysis folder (see :meth:`Analysis.save`)."""
    return Analysis.load(folder)


# --------------------------------------------------------------------------- analyze


def _default_embedder() -> BatchModel:
    from faultlens.models.embedders import EfficientNetLiteEmbedder

    return EfficientNetLiteEmbedder()


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
    """
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
    n = len(src)
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

    store = ArtifactStore(cache_dir)
    models: dict[str, BatchModel] = {}
    if classifier is not None:
        models["classifier"] = classifier
    if embedder is not None:
        if isinstance(embedder, str):
            msg = f"unknown embedder {embedder!r}: use 'offline' or an embedder object"
            raise ValueError(msg)
        models["embedder"] = embedder
    ray_engine = None
    if models and engine != "local":
        from faultlens.models.ray_runner import as_engine

        ray_engine = as_engine(engine, num_workers)
    if force or _models_to_run(src, models, store, ray_engine.shard_size if ray_engine else 1024):
        # compile UMAP's kernels while the models run; with every output cached there is nothing
        # to overlap, and the map itself may be cached too (then UMAP is never imported)
        start_warmup(
            n, **{k: v for k, v in (projection or {}).items() if k in ("n_neighbors", "metric")}
        )
    run_opts: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers}
    if ray_engine is not None:
        ray_engine.fill(
            src,
            models,
            store=store,
            batch_size=batch_size,
            force=force,
            progress=progress,
            thumbnails=thumbnails,
        )
        run_opts = {"shard_size": ray_engine.shard_size}  # every shard is there: only assemble
    run = (
        run_models(
            src,
            models,
            store=store,
            force=force and engine == "local",
            progress=progress,
            thumbnails=thumbnails,
            **run_opts,
        )
        if models or thumbnails
        else None
    )
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
    emb = emb[keep].astype(np.float32, copy=False)
    labels_kept = src.labels[keep]
    if run is not None and "classifier" in run.outputs:
        logits = run.outputs["classifier"][keep]
        if logits.shape[1] != len(src.class_names):
            msg = (
                f"the classifier gives {logits.shape[1]} outputs but there are "
                f"{len(src.class_names)} classes {src.class_names[:10]}: pass class_names in the "
                "model's output order"
            )
            raise ValueError(msg)
        out = outputs_from_logits(logits, labels_kept)
    else:
        out = _outputs_of_user_probs(probs, src, keep)
    xy = project(emb, store=store, force=force, progress=progress, **(projection or {}))
    table = build_table(src, keep, out, xy)
    meta = {
        "models": {name: m.id for name, m in models.items()},
        "source_fingerprint": src.fingerprint(),
        "projection": projection or {},
        "projection_fit": _projection_fit(emb, projection or {}),
        "n_source": n,
        "thumbnail_size": int(thumbnails) if thumbnails else None,
    }
    return Analysis(
        table,
        class_names=src.class_names,
        probs=out.probs,
        embeddings=emb,
        arrays=arrays,
        skipped=skipped,
        meta=meta,
        source=src,
        thumbnails=run.thumbnails if run else None,
    )


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


def build_table(src: ImageSource, keep: np.ndarray, out: Outputs, xy: np.ndarray) -> pd.DataFrame:
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
        }
    )
    user = src.columns.loc[keep].reset_index(drop=True)
    clash = [c for c in user.columns if c in table.columns]
    if clash:
        user = user.rename(columns={c: f"user_{c}" for c in clash})
    return pd.concat([table, user], axis=1)
