"""Image properties as a batch model, so the runner computes them in the pass that decodes each image
for the classifier and the embedder, and caches them in shards like any model's outputs.

The work happens in :meth:`ImageProperties.transform` (in the decoding workers, from the decoded
image and the file size the decoder recorded); :meth:`run` only hands the vectors back. It is a
:class:`~faultlens.models.base.TorchBatchModel` on the CPU (an identity module), so the runner still
lets its workers run every model when the others are CPU torch models too.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from faultlens.data.properties import (
    PROPERTY_COLUMNS,
    PROPERTY_NAMES,
    WORK_SIZE,
    compute_properties,
)
from faultlens.models.base import TorchBatchModel

#: Bump when a property's definition changes: it is part of the cache id.
VERSION = 2


class ImageProperties(TorchBatchModel):
    """``transform(img)`` → the image's properties (a float32 vector in
    :data:`~faultlens.data.properties.PROPERTY_NAMES` order); ``run(batch)`` → the (B, P) array."""

    names = PROPERTY_NAMES

    def __init__(self) -> None:
        super().__init__(
            torch.nn.Identity(),
            self._properties,
            name="image-properties",
            device="cpu",
            model_id=f"image-properties-v{VERSION}-{WORK_SIZE}",
            max_batch_pixels=None,
            channels_last=False,
            input_size=WORK_SIZE,
        )

    @staticmethod
    def _properties(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(compute_properties(image))


def property_columns(values: np.ndarray) -> dict[str, np.ndarray]:
    """The (n, P) output of :class:`ImageProperties` as table columns (``brightness``, …,
    ``object_size``, …), float32; NaN rows (items the model skipped) stay NaN."""
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != len(PROPERTY_NAMES):
        msg = f"image properties must be (n, {len(PROPERTY_NAMES)}), got shape {v.shape}"
        raise ValueError(msg)
    return {PROPERTY_COLUMNS[p]: v[:, j] for j, p in enumerate(PROPERTY_NAMES)}
