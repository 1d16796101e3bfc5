"""The images the Explorer's view pulls: thumbnails for the grid and the inspector's image and
metadata, LRU-cached and answered per request (widget-free)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np


class ImageServer:
    """Encoded images (JPEG or PNG) of an analysis's rows, at most ``size`` pixels a side: read
    from its pre-rendered thumbnail store when it holds that size, else rendered
    (:meth:`Analysis.thumbnail`); the last ``cache_size`` stay in memory (LRU)."""

    def __init__(self, analysis: Any, size: int = 96, cache_size: int = 4096) -> None:
        self.analysis = analysis
        self.size = int(size)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    def thumbnail(self, row: int, size: int | None = None) -> bytes:
        """The encoded image of ``row`` (cached)."""
        key = (int(row), self.size if size is None else int(size))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        data = self.analysis.thumbnail(*key)
        self._cache[key] = data
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return data

    def check_row(self, row: int) -> None:
        n = len(self.analysis.table)
        if not 0 <= row < n:
            msg = f"row {row} out of range 0..{n - 1}"
            raise IndexError(msg)

    def row_info(self, row: int) -> list[list[str]]:
        """``[[column, value-as-text], …]`` of one row, for the inspector (raw text: the view
        sets it with ``textContent``)."""
        rec = self.analysis.table.iloc[int(row)]
        out = [["row", str(int(row))]]
        for k, v in rec.items():
            if k not in ("x", "y", "source_index"):
                text = f"{float(v):.4g}" if isinstance(v, (float, np.floating)) else str(v)
                out.append([str(k), text])
        return out

    def thumbs_reply(self, rows: list[Any], limit: int = 500) -> tuple[dict, list[bytes]]:
        """The answer to a ``thumbs`` request: one buffer and one error text per requested row, in
        order, so the view can settle every tile it waits for (an empty buffer + error for a bad
        row, and for every row past ``limit``)."""
        buffers, errors = [], []
        for k, r in enumerate(rows):
            try:
                if k >= limit:
                    msg = f"not sent: at most {limit} thumbnails per request"
                    raise ValueError(msg)
                self.check_row(int(r))
                buffers.append(self.thumbnail(int(r)))
                errors.append("")
            except Exception as exc:  # one bad row or unreadable image must not break the page
                buffers.append(b"")
                errors.append(str(exc))
        return {"type": "thumbs", "rows": rows, "errors": errors}, buffers

    def inspect_reply(self, content: dict) -> tuple[dict, list[bytes]]:
        """The answer to an ``inspect`` request: the row's metadata and, unless ``req`` is -1 (the
        tooltip of a hover while pinned), its 320-pixel image."""
        row = int(content["row"])
        self.check_row(row)
        png, err = [], ""
        if content.get("req") != -1:
            try:
                png = [self.thumbnail(row, 320)]
            except Exception as exc:  # one unreadable image must not break the view
                png, err = [b""], f"cannot show this image: {exc}"
        reply = {"type": "inspect", "req": content.get("req"), "row": row,
                 "info": self.row_info(row), "error": err}  # fmt: skip
        return reply, png
