"""The map's viewport as a widget trait, so a view displayed again (another cell, a reopened
notebook view) opens where the last one was zoomed and panned.

:class:`MapViewport` is a mixin of the Explorer holding one synced trait, ``view = [x0, y0, x1, y1]``:
the rectangle of map coordinates the map shows (x to the right, y upwards), or ``[]`` for "fit
everything". The front end writes it after a zoom, a pan or a reset (debounced), and every view
applies a value it did not write itself: a second view renders with it, two views of one Explorer
follow each other, and Python can zoom (``explorer.view = [0, 0, 1, 1]``) or reset
(``explorer.view = []``). A view of another width or height shows the same rectangle, centred and
as large as fits.
"""

from __future__ import annotations

import math
from typing import Any

import traitlets as t


class ViewBox(t.List):
    """``[]`` or ``[x0, y0, x1, y1]``: four finite floats with ``x0 < x1`` and ``y0 < y1``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(t.Float(), default_value=[], **kwargs)

    def validate(self, obj: Any, value: Any) -> list[float]:
        box = [float(v) for v in super().validate(obj, value)]
        if not box:
            return box
        ok = len(box) == 4 and all(map(math.isfinite, box))
        if not ok or box[0] >= box[2] or box[1] >= box[3]:
            msg = (
                f"{self.name} must be [] (fit the map) or [x0, y0, x1, y1] with finite "
                f"x0 < x1 and y0 < y1, got {box}"
            )
            raise t.TraitError(msg)
        return box


class MapViewport(t.HasTraits):
    """The map's zoom and pan as the ``view`` trait (a mixin of the Explorer)."""

    view = ViewBox(
        help="Both write (JS after a zoom, pan or reset): the map rectangle shown, [x0, y0, x1, y1] "
        "in map coordinates (y upwards), or [] to fit every point."
    ).tag(sync=True, echo_update=False)
