"""The FeatureBrowser's static copy (nbviewer, exported HTML): a PNG of the shown feature's top and
bottom images beside their activation maps, and an HTML summary of the class's top features."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["features_html", "png", "tiles_png"]

_PAD = 6
_LABEL_H = 16


def png(rgb: np.ndarray) -> bytes:
    """An RGB uint8 array as PNG bytes (fast compression)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def tiles_png(rows: Sequence[tuple[str, Sequence[tuple[bytes, bytes]]]], size: int = 96) -> bytes:
    """One PNG: per ``(title, [(original PNG, overlay PNG), ...])`` a titled row of tiles, each
    image with its overlay below it, scaled to ``size`` pixels wide."""
    width = max((len(pairs) for _, pairs in rows), default=0) * (size + _PAD) + _PAD
    height = len(rows) * (_LABEL_H + 2 * size + 2 * _PAD) + _PAD
    canvas = Image.new("RGB", (max(width, 240), max(height, 40)), "white")
    draw = ImageDraw.Draw(canvas)
    y = _PAD
    for title, pairs in rows:
        draw.text((_PAD, y), title, fill=(40, 40, 40))
        y += _LABEL_H
        for i, pair in enumerate(pairs):
            x = _PAD + i * (size + _PAD)
            for j, data in enumerate(pair):
                im = Image.open(io.BytesIO(data)).convert("RGB")
                im = im.resize((size, max(1, size * im.height // im.width)))
                canvas.paste(im, (x, y + j * (size + _PAD // 2)))
        y += 2 * size + 2 * _PAD
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _pct(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(f) else f"{100 * f:.1f} %"


def features_html(
    class_name: str,
    layer: str,
    features: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Any],
    image: bytes | None = None,
) -> str:
    """A static summary of the shown class: its top features (rank, importance, suspicion, mark),
    the shown feature's group accuracies and gap, and ``image`` (a PNG) when given. Every data
    string is escaped."""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{f['rank']}</td><td>{f['feature']}</td><td>{f['importance']:.3g}</td>"
        f"<td>{'' if f.get('suspicion') is None else format(f['suspicion'], '.2f')}"
        f"{' spurious?' if f.get('suggest') else ''}</td><td>{esc(str(f['mark']))}</td></tr>"
        for f in features
    )
    parts = [
        f"<div class='faultlens-features'><h4>{esc(class_name)} — layer {esc(layer)}</h4>",
        "<table><tr><th>rank</th><th>feature</th><th>importance</th><th>suspicion</th>"
        f"<th>mark</th></tr>{rows}</table>",
    ]
    if groups:
        gap = groups.get("gap", {})
        parts.append(
            f"<p>feature {int(groups['feature'])}: accuracy of the most activating images "
            f"{_pct(groups['top']['accuracy'])}, of the least {_pct(groups['bottom']['accuracy'])}; "
            f"gap {gap.get('gap', float('nan')):.1f} points</p>"
        )
    if image is not None:
        uri = base64.b64encode(image).decode()
        parts.append(
            f"<img alt='top and bottom images with their maps' src='data:image/png;base64,{uri}'>"
        )
    parts.append("</div>")
    return "".join(parts)
