"""The analysis: one table of per-image results plus the arrays beside it (:class:`Analysis`).

It is made by :func:`faultlens.analysis.analyze.analyze` and saved in the folder format of
:mod:`faultlens.analysis.folder`; the widgets and the report take it from above
(``faultlens.explore(analysis)``, ``faultlens.write_report(analysis, path)``).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from faultlens.analysis.folder import read_analysis, save_analysis
from faultlens.data.decode import decode_image, encode_thumbnail
from faultlens.data.sources import ImageSource, load_image
from faultlens.store import ShardedBlobs

#: The columns every analysis table starts with, in this order; user columns follow (a user column
#: whose name is taken here is renamed ``user_<name>``).
TABLE_COLUMNS = [
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
    "source_index",
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
    classifier:
        The :class:`~faultlens.Classifier` that made it (set by :func:`analyze`; not saved, so
        None after :meth:`load` until you set it): :meth:`describe` takes where-the-model-looks
        maps from it.
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
        classifier: Any = None,
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
        self.classifier = classifier

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        acc = float(self.table["correct"].mean()) if len(self) else float("nan")
        return (
            f"<faultlens.Analysis: {len(self)} images, {len(self.class_names)} classes, "
            f"accuracy {acc:.1%}, {len(self.skipped)} skipped>"
        )

    def _repr_html_(self) -> str:
        """A summary card for notebooks (and nbviewer): size, accuracy, the worst classes, where
        it is saved, what was skipped. Every name is escaped."""
        acc = float(self.table["correct"].mean()) if len(self) else float("nan")
        worst = self.group_accuracy("label_name").sort_values("accuracy").head(5)
        rows = "".join(
            f"<tr><td>{html.escape(str(name))}</td><td style='text-align:right'>"
            f"{r.accuracy:.1%}</td><td style='text-align:right'>{int(r.n)}</td></tr>"
            for name, r in worst.iterrows()
        )
        where = (
            html.escape(str(self.folder)) if self.folder else "not saved (analysis.save(folder))"
        )
        skipped = (
            f"{len(self.skipped)} skipped (analysis.skipped)" if self.skipped else "none skipped"
        )
        return (
            "<div class='faultlens-analysis'><b>faultlens.Analysis</b>: "
            f"{len(self):,} images, {len(self.class_names)} classes, accuracy {acc:.1%}; "
            f"{skipped}; folder: <code>{where}</code>"
            "<table><tr><th>worst classes</th><th>accuracy</th><th>images</th></tr>"
            f"{rows}</table>"
            "<div>Next: <code>faultlens.explore(analysis)</code> for the map, "
            "<code>analysis.find_slices()</code> for failure slices.</div></div>"
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
        """Write the analysis to ``folder`` (see :func:`faultlens.analysis.folder.save_analysis`)."""
        return save_analysis(self, folder)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Analysis:
        """Read an analysis written by :meth:`save` (see
        :func:`faultlens.analysis.folder.read_analysis`)."""
        return cls(**read_analysis(folder))

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
        from faultlens.analysis.failure_directions import FailureDirections

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

    def find_slices(
        self, n_slices: int = 5, method: str | None = None, **options: Any
    ) -> list[Any]:
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
        maps: Any = "auto",
        concepts: Any = None,
        reference: Any = None,
        progress: Any = None,
        max_maps: int = 64,
        map_seconds: float | None = 5.0,
    ) -> tuple[list[Any], list[str]]:
        """Descriptions of the images at ``rows`` and notes on what could not be made, each
        labelled with its source, a one-sentence summary first: the image properties measured
        when the analysis was made and the user's columns (slice vs reference), where the model
        looks, ImageNet tags when enriched, captions and CLIP phrases when a captioner or text
        encoder is given, and concepts learned from examples (``concepts``: ``{name: fitted
        ConceptFromExamples}``). Columns named in ``meta["truth_columns"]`` (the demo's planted
        truth) are left out, so a description cannot read the answer.
        ``progress(done, total)`` follows the captioning batch by batch (a ``BaseException``
        raised from it stops there). See
        :func:`faultlens.analysis.describe.describe_members`.

        Where the model looks: by default (``maps="auto"``) Grad-CAM of each image's predicted
        class at the last spatial layer of :attr:`classifier`, when the analysis has a torch
        classifier (:func:`analyze` keeps it; after :meth:`load`, set ``analysis.classifier =
        faultlens.Classifier(model, transform)``), for at most ``max_maps`` members and
        ``max_maps`` reference images (seeded samples; each map costs a forward pass and a
        backward pass to the layer). With ``map_seconds``, fewer (down to 16 each) when the
        model would take longer than that, timed on 5 members: the demo's CNN does 64 + 64 in
        0.4 s on CPU; a ResNet-50 at 224 px needs ≈ 0.4 s an image on 2 busy CPU cores and gets
        16 + 16 (≈ 15 s a slice). The maps of the last 2,048 rows are kept with the analysis, so describing a
        slice again is fast. ``maps=None`` switches them off; ``maps`` may also be (n, H, W)
        maps of every row, or a function ``rows -> maps``
        (:func:`faultlens.analysis.describe.maps.model_maps` makes one for another layer)."""
        from faultlens.analysis.describe import describe_members
        from faultlens.analysis.describe.maps import map_budget, model_maps, usable_model

        rows = np.asarray(rows, dtype=np.int64)
        if isinstance(maps, str):
            if maps != "auto":
                msg = f"maps must be 'auto', None, an array or a function of rows, got {maps!r}"
                raise ValueError(msg)
            maps = None
            if usable_model(self.classifier):
                # one map function (and its cache of maps) per classifier
                if getattr(self, "_maps", (None, None))[0] is not self.classifier:
                    self._maps = (self.classifier, model_maps(self.classifier, self.image))
                maps = self._maps[1]
                if map_seconds is not None and len(rows):
                    max_maps = map_budget(maps, rows[:5], seconds=map_seconds, most=max_maps)
        truth = [c for c in self.meta.get("truth_columns", ()) if c in self.table.columns]
        return describe_members(
            rows,
            labels=self.table["label"].to_numpy(),
            correct=self.table["correct"].to_numpy(),
            embeddings=self.embeddings,
            imagenet_logits=self.arrays.get("imagenet_logits"),
            load_image=self.image,
            captioner=captioner,
            text_encoder=text_encoder,
            phrases=phrases,
            class_names=self.class_names,
            maps=maps,
            table=self.table.drop(columns=truth),
            concepts=concepts,
            reference=reference,
            progress=progress,
            max_maps=max_maps,
        )


def load(folder: str | os.PathLike[str]) -> Analysis:
    """Read an analysis folder (see :meth:`Analysis.save`)."""
    return Analysis.load(folder)
