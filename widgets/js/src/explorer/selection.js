// The selection: committed from the view (box, lasso, clear) or received from Python; every change
// is announced on ctx.selection.changed.

import { typed } from "../shared/binary.js";
import { signal } from "../shared/scope.js";

/** Rows whose point lies in the data-space box (plus the selected ones when `add`). */
export function rowsInBox(data, xa, xb, ya, yb, add) {
  const { x, y, visible, selMask } = data;
  const out = [];
  for (let i = 0; i < x.length; i++) {
    if ((visible[i] && x[i] >= xa && x[i] <= xb && y[i] >= ya && y[i] <= yb) || (add && selMask[i])) out.push(i);
  }
  return Uint32Array.from(out);
}

/** Even-odd test of (px, py) against a polygon of [x, y] vertices. */
function insidePolygon(poly, px, py) {
  let inside = false;
  for (let k = 0, j = poly.length - 1; k < poly.length; j = k++) {
    const [xi, yi] = poly[k], [xj, yj] = poly[j];
    if ((yi > py) !== (yj > py) && px < ((xj - xi) * (py - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Rows whose point lies inside the data-space polygon (plus the selected ones when `add`). */
export function rowsInPolygon(data, poly, add) {
  const { x, y, visible, selMask } = data;
  let xa = Infinity, xb = -Infinity, ya = Infinity, yb = -Infinity;
  for (const [a, b] of poly) { xa = Math.min(xa, a); xb = Math.max(xb, a); ya = Math.min(ya, b); yb = Math.max(yb, b); }
  const out = [];
  for (let i = 0; i < x.length; i++) {
    const px = x[i], py = y[i];
    const inBox = visible[i] && px >= xa && px <= xb && py >= ya && py <= yb;
    if ((inBox && insidePolygon(poly, px, py)) || (add && selMask[i])) out.push(i);
  }
  return Uint32Array.from(out);
}

export function mountSelection(ctx) {
  const { model, data } = ctx;
  const changed = signal();
  /** Sends a selection made in the view to Python. */
  function commit(rows, source) {
    model.set("_selection", new DataView(rows.buffer, rows.byteOffset, rows.byteLength));
    model.set("_selection_source", source);
    model.set("_selection_counter", (model.get("_selection_counter") || 0) + 1);
    model.save_changes();
    data.setSelection(rows);
    changed.emit();
  }
  function load() {
    data.setSelection(typed(model.get("_selection"), Uint32Array));
    changed.emit();
  }
  ctx.on("change:_selection_counter", load);
  ctx.selection = { commit, changed };
  data.setSelection(typed(model.get("_selection"), Uint32Array));
  return () => {};
}
