// Pointer input on the map: box and lasso selection (shift adds), pan, wheel zoom, hover, click to
// pin, double-click to reset the view. The drag outline is drawn on the overlay canvas.

import { rowsInBox, rowsInPolygon } from "./selection.js";

function outline(g, drag) {
  if (drag.mode === "box") {
    const [a, b] = [drag.start, drag.last];
    g.rect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1]));
  } else {
    drag.path.forEach(([px, py], k) => (k ? g.lineTo(px, py) : g.moveTo(px, py)));
    g.closePath();
  }
}

/** The drag outline (box or lasso) on the overlay canvas; cleared when there is none. */
function paintOverlay(g, map, drag) {
  const { W, H, dpr } = map.size;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  if (!drag || drag.mode === "pan") return;
  g.strokeStyle = `rgb(${map.theme().fg.join(",")})`;
  g.fillStyle = "rgba(30,120,220,0.12)";
  g.setLineDash([4, 3]);
  g.beginPath();
  outline(g, drag);
  g.fill();
  g.stroke();
}

/** Commits the rows inside a finished box or lasso drag `d` ending at CSS pixel p. */
function finish(ctx, d, p) {
  const { map, data } = ctx;
  if (d.mode === "box") {
    const xa = Math.min(map.toX(d.start[0]), map.toX(p[0])), xb = Math.max(map.toX(d.start[0]), map.toX(p[0]));
    const ya = Math.min(map.toY(d.start[1]), map.toY(p[1])), yb = Math.max(map.toY(d.start[1]), map.toY(p[1]));
    ctx.selection.commit(rowsInBox(data, xa, xb, ya, yb, d.add), "box");
  } else if (d.path.length >= 3) {
    const poly = d.path.map(([px, py]) => [map.toX(px), map.toY(py)]);
    ctx.selection.commit(rowsInPolygon(data, poly, d.add), "lasso");
  }
}

/** Zooms around CSS pixel p by a wheel step. */
function zoom(map, p, deltaY) {
  const { view, size } = map;
  const bx = map.toX(p[0]), by = map.toY(p[1]);
  view.scale *= Math.exp(-deltaY * 0.0015);
  view.cx = bx - (p[0] - size.W / size.dpr / 2) / view.scale;
  view.cy = by - (size.H / size.dpr / 2 - p[1]) / view.scale;
  map.moved();
}

export function mountPointer(ctx) {
  const { map } = ctx;
  const overlay = map.overlay, g = overlay.getContext("2d");
  let drag = null;
  const local = (ev) => {
    const rect = overlay.getBoundingClientRect();
    return [ev.clientX - rect.left, ev.clientY - rect.top];
  };
  const drawOverlay = () => paintOverlay(g, map, drag);
  function down(ev) {
    if (ev.button !== 0) return;
    overlay.setPointerCapture(ev.pointerId);
    const p = local(ev);
    drag = { mode: ctx.tool.mode, start: p, last: p, path: [p], add: ev.shiftKey, view: { ...map.view } };
    ctx.inspector.hideTooltip(false);
  }
  function move(ev) {
    const p = local(ev);
    if (!drag) { ctx.inspector.hover(map.hit(p), p); return; }
    drag.last = p;
    if (drag.mode === "pan") {
      map.view.cx = drag.view.cx - (p[0] - drag.start[0]) / map.view.scale;
      map.view.cy = drag.view.cy + (p[1] - drag.start[1]) / map.view.scale;
      map.moved();
    } else if (drag.mode === "lasso") {
      const q = drag.path[drag.path.length - 1];
      if (Math.abs(q[0] - p[0]) + Math.abs(q[1] - p[1]) >= 2) drag.path.push(p);
    }
    drawOverlay();
  }
  function click(p, d) {
    const i = map.hit(p);
    if (i >= 0) ctx.inspector.pin(i);
    else if (!d.add) { ctx.inspector.unpin(); ctx.selection.commit(new Uint32Array(0), d.mode); }
  }
  function up(ev) {
    if (!drag) return;
    const d = drag;
    drag = null;
    drawOverlay();
    const p = local(ev);
    if (d.mode === "pan") return;
    if (Math.abs(p[0] - d.start[0]) + Math.abs(p[1] - d.start[1]) < 3) click(p, d);
    else finish(ctx, d, p);
  }
  ctx.listen(overlay, "pointerdown", down);
  ctx.listen(overlay, "pointermove", move);
  ctx.listen(overlay, "pointerup", up);
  ctx.listen(overlay, "pointercancel", () => { drag = null; drawOverlay(); });
  ctx.listen(overlay, "pointerleave", () => { if (!drag) ctx.inspector.hideTooltip(true); });
  ctx.listen(overlay, "dblclick", map.refit);
  ctx.listen(overlay, "wheel", (ev) => { ev.preventDefault(); zoom(map, local(ev), ev.deltaY); }, { passive: false });
  return () => {};
}
