"""The map as a PNG (PIL): the static image of the Explorer and the report's map."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from faultlens.render.colors import palette_rgb

_LEGEND_W = 170
_PAD = 12


def render_map_png(
    x: np.ndarray,
    y: np.ndarray,
    codes: np.ndarray,
    legend: dict,
    *,
    title: str | None = None,
    shown: np.ndarray | None = None,
    selected: np.ndarray | None = None,
    width: int = 720,
    height: int = 480,
) -> bytes:
    """A PNG of points at ``x``/``y`` (NaN: not placed, not drawn) coloured by ``codes`` with the
    ``legend`` of :func:`~faultlens.render.colors.encode_color` beside them.

    ``shown`` is a bool mask of the points drawn (default all: a filter), ``selected`` the row
    indices drawn on top, the others dimmed; the bottom line counts both.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    placed = np.isfinite(x) & np.isfinite(y)
    shown = np.ones(n, dtype=bool) if shown is None else np.asarray(shown, dtype=bool)
    sel = np.zeros(0, dtype=np.intp) if selected is None else np.asarray(selected, dtype=np.intp)
    pal = palette_rgb(legend)
    w_map = max(64, width - _LEGEND_W)
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    ok = placed & shown
    if ok.any():
        px, py = _pixels(x, y, placed, w_map, height)
        is_sel = np.zeros(n, dtype=bool)
        is_sel[sel] = True
        r = 1 if n > 20000 else 2
        layers = [ok & ~is_sel, ok & is_sel] if len(sel) else [ok]
        for li, layer in enumerate(layers):
            idx = np.flatnonzero(layer)
            colors = pal[codes[idx]]
            if len(sel) and li == 0:
                colors = (colors.astype(np.uint16) + 2 * 235) // 3  # dim the unselected
            for dx in range(r):
                for dy in range(r):
                    img[
                        np.clip(py[idx] + dy, 0, height - 1), np.clip(px[idx] + dx, 0, w_map - 1)
                    ] = colors
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    _draw_legend(draw, pal, legend, title or str(legend.get("column", "")), w_map + 8)
    draw.text((8, height - 16), f"{int(shown.sum())} of {n} shown, {len(sel)} selected",
              fill=(60, 60, 60))  # fmt: skip
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def _pixels(
    x: np.ndarray, y: np.ndarray, placed: np.ndarray, w_map: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel columns and rows of every point (the placed ones fitted into the map area, kept in
    aspect; points not placed land anywhere and are never drawn)."""
    x0, x1 = float(x[placed].min()), float(x[placed].max())
    y0, y1 = float(y[placed].min()), float(y[placed].max())
    s = min((w_map - 2 * _PAD) / max(x1 - x0, 1e-9), (height - 2 * _PAD) / max(y1 - y0, 1e-9))
    ox = _PAD + (w_map - 2 * _PAD - s * (x1 - x0)) / 2
    oy = _PAD + (height - 2 * _PAD - s * (y1 - y0)) / 2
    xs, ys = np.where(placed, x, x0), np.where(placed, y, y0)
    px = (ox + (xs - x0) * s).astype(np.int64)
    py = (height - 1 - (oy + (ys - y0) * s)).astype(np.int64)
    return px, py


def _draw_legend(
    draw: ImageDraw.ImageDraw, pal: np.ndarray, legend: dict, title: str, lx: int
) -> None:
    draw.text((lx, 8), f"colour: {title}"[:26], fill=(0, 0, 0))
    if legend["kind"] == "category":
        for i, label in enumerate(legend["labels"][:24]):
            yy = 28 + 16 * i
            draw.rectangle([lx, yy + 2, lx + 10, yy + 12], fill=tuple(pal[i].tolist()))
            draw.text((lx + 16, yy), str(label)[:22], fill=(0, 0, 0))
        return
    for i in range(200):
        code = 254 - int(i * 254 / 199)
        draw.line([lx, 28 + i, lx + 14, 28 + i], fill=tuple(pal[code].tolist()))
    draw.text((lx + 20, 26), f"{legend.get('vmax') or 0:.3g}", fill=(0, 0, 0))
    draw.text((lx + 20, 218), f"{legend.get('vmin') or 0:.3g}", fill=(0, 0, 0))
