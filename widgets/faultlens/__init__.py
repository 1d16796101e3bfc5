"""faultlens: Jupyter-native widgets for finding and explaining the failure modes of image classifiers.

The public API (imported lazily, so ``import faultlens`` is fast):

- :func:`analyze` — images + labels + a classifier → an :class:`Analysis` (outputs, embeddings, map);
- :func:`load` — read a saved analysis folder; :func:`demo` — the offline demo analysis
  (:func:`planted_report`: accuracy of its planted groups);
- :func:`explore` — the interactive map, grid and stats of an analysis (an :class:`Explorer`);
  :func:`write_report` — a self-contained HTML report of it;
- :class:`FeatureBrowser` — neural features, activation maps beside ranked images, annotation;
- :class:`Classifier`, :func:`outputs_from_probs` — classifier outputs from a model or your arrays;
- :class:`EfficientNetLiteEmbedder` (offline default), :class:`OpenClipEmbedder`,
  :class:`LayerEmbedder` — image embedders;
- :class:`ArtifactStore` — the on-disk cache.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from faultlens._version import __version__

if TYPE_CHECKING:
    from faultlens.analysis.result import Analysis
    from faultlens.ui.explorer import Explorer

_EXPORTS = {
    "analyze": "faultlens.analysis.analyze",
    "Analysis": "faultlens.analysis.result",
    "write_report": "faultlens.report",
    "demo": "faultlens._demo",
    "planted_report": "faultlens._demo",
    "Explorer": "faultlens.ui.explorer",
    "FeatureBrowser": "faultlens.ui.features",
    "Classifier": "faultlens.models.classifier",
    "outputs_from_probs": "faultlens.models.classifier",
    "EfficientNetLiteEmbedder": "faultlens.models.embedders",
    "OpenClipEmbedder": "faultlens.models.embedders",
    "LayerEmbedder": "faultlens.models.embedders",
    "ArtifactStore": "faultlens.store",
}

__all__ = ["__version__", "explore", "load", *_EXPORTS]


def load(folder: str | os.PathLike[str], *, classifier: Any = None) -> Analysis:
    """Read a saved analysis folder (see :meth:`Analysis.save`).

    ``classifier`` (a :class:`Classifier`) is attached as ``analysis.classifier``, which
    descriptions use to show where the model looks (it is not saved with the analysis). A demo
    analysis gets the demo's CNN back from the cache it was trained into when none is given."""
    from faultlens.analysis.result import Analysis

    analysis = Analysis.load(folder)
    if classifier is None and "demo" in analysis.meta:
        from faultlens._demo import demo_classifier

        # the demo saves to <cache>/demo-analysis by default: look there first
        classifier = demo_classifier(analysis, os.fspath(folder) + "/..") or demo_classifier(
            analysis
        )
    if classifier is not None:
        analysis.classifier = classifier
    return analysis


def explore(analysis: Analysis, **kwargs: Any) -> Explorer:
    """The interactive explorer of ``analysis``: ``Explorer(analysis, **kwargs)`` (see
    :class:`Explorer` for the options)."""
    from faultlens.ui.explorer import Explorer

    return Explorer(analysis, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    msg = f"module 'faultlens' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(__all__)
