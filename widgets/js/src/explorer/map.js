// The map canvas: view transform (fit, pan, zoom), the cached base layer of every shown point
// (dimmed while there is a selection), the selected points on top, and hit-testing. The viewport is
// the synced `view` trait ([x0, y0, x1, y1] in map coordinates, [] = fit): written after a zoom, pan
// or reset, applied when another view or Python changes it, so a view displayed again opens there.

import { el, setTrait } from "../shared/dom.js";
import { cssRgb, onThemeChange } from "../shared/theme.js";
import { createLayer, hexRgb, hitTest, mixRgb, paintEach, paintMean, plot, sizeLayer, word } from "./raster.js";

const MISSING = "#bebebe";

/** Full and dimmed (72 % towards `dim`) palettes of the colour codes, 256 words each. */
function palettes(info, dim) {
  const colors = info.colors || [];
  const pal = new Uint32Array(256), dimPal = new Uint32Array(256);
  for (let c = 0; c < 256; c++) {
    const rgb = hexRgb(c < colors.length ? colors[c] : MISSING);
    pal[c] = word(rgb);
    dimPal[c] = word(mixRgb(rgb, dim, 0.72));
  }
  return { pal, dimPal };
}

/** Colours the canvas takes from the stylesheet (which follows the host theme). */
function readTheme(node) {
  const bg = cssRgb(node, "--fl-map-bg", [255, 255, 255]);
  return { bg, dim: cssRgb(node, "--fl-map-dim", [235, 235, 235], bg), fg: cssRgb(node, "--fl-fg", [34, 34, 34], bg) };
}

/** The view: data -> CSS px is (a - cx) * scale + width / 2 (y upwards); `size` in device px. */
function createView() {
  const view = { cx: 0, cy: 0, scale: 1 }, size = { W: 0, H: 0, dpr: 1 };
  return {
    view, size,
    fit(b) {
      const cssW = size.W / size.dpr, cssH = size.H / size.dpr;
      const dx = Math.max(b.x1 - b.x0, 1e-9), dy = Math.max(b.y1 - b.y0, 1e-9);
      view.scale = 0.92 * Math.min(cssW / dx, cssH / dy);
      view.cx = (b.x0 + b.x1) / 2;
      view.cy = (b.y0 + b.y1) / 2;
    },
    /** Shows the map rectangle [x0, y0, x1, y1] whole, centred, as large as fits. */
    show([x0, y0, x1, y1]) {
      view.scale = Math.min(size.W / size.dpr / (x1 - x0), size.H / size.dpr / (y1 - y0));
      view.cx = (x0 + x1) / 2;
      view.cy = (y0 + y1) / 2;
    },
    /** The map rectangle on screen. */
    box() {
      const hw = size.W / size.dpr / 2 / view.scale, hh = size.H / size.dpr / 2 / view.scale;
      return [view.cx - hw, view.cy - hh, view.cx + hw, view.cy + hh];
    },
    toX: (px) => (px - size.W / size.dpr / 2) / view.scale + view.cx,
    toY: (py) => (size.H / size.dpr / 2 - py) / view.scale + view.cy,
  };
}

/** Paints frames: the base layer (kept while view, data, theme and palette are unchanged) copied
 * into the frame, the selected points drawn on top one step larger. */
function createPainter(model, data) {
  const base = createLayer();
  let baseKey = "", pals = null, palKey = "";
  const painter = { aggregated: false, owner: new Int32Array(0) };
  function palettesFor(theme) {
    const info = model.get("_color_info") || {};
    const key = JSON.stringify([info.colors || [], theme.dim]);
    if (key !== palKey) { pals = palettes(info, theme.dim); palKey = key; }
    return pals;
  }
  function paintBase(theme, r, t, dim) {
    const { pal, dimPal } = palettesFor(theme);
    base.buf.fill(word(theme.bg));
    base.own.fill(-1);
    painter.aggregated = data.x.length > (model.get("aggregate_above") ?? 200000);
    (painter.aggregated ? paintMean : paintEach)(base, data, dim ? dimPal : pal, r, t);
  }
  painter.paint = (img, { view, size }, theme) => {
    const { W, H, dpr } = size, n = data.x.length;
    const r = Math.max(1, Math.round((n <= 20000 ? 3 : n <= 200000 ? 2 : 1) * dpr));
    const s = view.scale * dpr, t = { s, ox: W / 2 - view.cx * s, oy: H / 2 + view.cy * s };
    const hasSel = data.selCount > 0;
    palettesFor(theme);
    const key = [W, H, s, t.ox, t.oy, r, hasSel, data.version, model.get("aggregate_above"), theme.bg, palKey].join("|");
    sizeLayer(base, W, H);
    if (key !== baseKey) { paintBase(theme, r, t, hasSel); baseKey = key; }
    if (painter.owner.length !== W * H) painter.owner = new Int32Array(W * H);
    const top = { W, H, buf: new Uint32Array(img.data.buffer), own: painter.owner };
    top.buf.set(base.buf);
    top.own.set(base.own);
    if (!hasSel) return;
    const rs = r + Math.max(1, Math.round(dpr)), { pal } = palettesFor(theme);
    for (const i of data.selRows) if (i < n && data.shown(i)) plot(top, data, i, pal[data.codes[i]], rs, t);
  };
  return painter;
}

export function mountMap(ctx) {
  const { model, data, slots } = ctx;
  const canvas = el("canvas", { class: "fl-map", "aria-label": "Map of images; drag to select" });
  const overlay = el("canvas", { class: "fl-overlay" });
  slots.mapWrap.append(canvas, overlay);
  const v = createView(), { view, size } = v, painter = createPainter(model, data);
  let frame = 0;
  function resize() {
    const cssW = Math.max(200, Math.floor(slots.mapWrap.clientWidth || 600)), cssH = model.get("height") || 440;
    size.dpr = Math.min(2, window.devicePixelRatio || 1);
    size.W = Math.floor(cssW * size.dpr);
    size.H = Math.floor(cssH * size.dpr);
    for (const c of [canvas, overlay]) {
      Object.assign(c, { width: size.W, height: size.H });
      Object.assign(c.style, { width: cssW + "px", height: cssH + "px" });
    }
    slots.mapWrap.style.height = cssH + "px";
    slots.side.style.maxHeight = cssH + "px";
  }
  function draw() {
    frame = 0;
    if (!size.W || !size.H) return;
    const g = canvas.getContext("2d"), img = g.createImageData(size.W, size.H);
    painter.paint(img, v, readTheme(slots.mapWrap));
    g.putImageData(img, 0, 0);
    Object.assign(canvas.dataset, { cx: String(view.cx), cy: String(view.cy), scale: String(view.scale), view: JSON.stringify(v.box()) });
    canvas.dataset.rendered = String(Number(canvas.dataset.rendered || 0) + 1);
    canvas.dataset.aggregated = String(painter.aggregated);
  }
  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };
  // the viewport trait: written (debounced) after the user moves the view, applied when it changes
  let saveTimer = 0;
  const valid = (b) => Array.isArray(b) && b.length === 4 && b.every(Number.isFinite) && b[0] < b[2] && b[1] < b[3];
  const same = (a, b) => valid(a) && valid(b) && a.every((x, i) => Math.abs(x - b[i]) <= 1e-9 * (Math.abs(b[2] - b[0]) + Math.abs(b[3] - b[1])));
  const save = (box) => { saveTimer = 0; setTrait(model, "view", box); };
  function moved() {
    schedule();
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => save(v.box()), 200);
  }
  /** Shows the `view` trait's rectangle, or everything when it is empty. */
  function restore() {
    const b = model.get("view");
    if (valid(b)) v.show(b); else v.fit(data.bounds);
    schedule();
  }
  const refit = () => { clearTimeout(saveTimer); v.fit(data.bounds); draw(); save([]); };
  ctx.map = {
    canvas, overlay, view, size, toX: v.toX, toY: v.toY, schedule, refit, moved,
    hit: (p) => hitTest(painter.owner, size, p),
    theme: () => readTheme(slots.mapWrap),
  };
  ctx.on("change:view", () => {
    const b = model.get("view");
    if (!saveTimer && !same(v.box(), b)) restore();
  });
  const reloadXY = () => { data.loadXY(); restore(); };
  ctx.on("change:_x", reloadXY);
  ctx.on("change:_y", reloadXY);
  ctx.on("change:_color", () => { data.loadColor(); schedule(); });
  ctx.on("change:_color_info", () => { data.loadColor(); schedule(); });
  ctx.on("change:_visible", () => { data.loadVisible(); schedule(); });
  const keepBox = () => { if (saveTimer) { clearTimeout(saveTimer); save(v.box()); } resize(); restore(); };
  ctx.on("change:height", keepBox);
  ctx.on("change:aggregate_above", schedule);
  const unsubscribe = ctx.selection.changed.subscribe(schedule);
  const ro = new ResizeObserver(() => {
    const w = Math.floor(slots.mapWrap.clientWidth);
    if (w && Math.floor(w * size.dpr) !== size.W) keepBox();
  });
  const offTheme = onThemeChange(schedule);
  ro.observe(slots.mapWrap);
  resize();
  restore();
  draw();
  return () => { unsubscribe(); offTheme(); ro.disconnect(); clearTimeout(saveTimer); if (frame) cancelAnimationFrame(frame); };
}
