// The selection: committed from the view (box, lasso, clear) or received from Python; every change
// is announced on ctx.selection.changed. The view sends each of its selections as a "select"
// message; Python writes the selection traits (`_selection`, `_selection_source`,
// `_selection_counter`) for every view.

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

/** A token per rendered view, so each view counts its own selections still on their way. */
const viewToken = () => Math.random().toString(36).slice(2, 10);

export function mountSelection(ctx) {
  const { model, data } = ctx;
  const changed = signal();
  const view = viewToken();
  let inflight = 0; // selections this view sent that Python has not applied yet
  const pending = (on) => ctx.root.classList.toggle("fl-pending", on);
  /** Sends a selection made in the view to Python as a message of its own: messages are never
   * merged (trait updates are, while the kernel is busy), so Python applies every selection, in
   * order. Python writes the selection traits and answers "selected"; until the answer to this
   * view's last one, the view keeps showing its own newest rows. */
  function commit(rows, source) {
    inflight += 1;
    pending(true);
    model.send({ type: "select", source, view }, undefined, [new DataView(rows.buffer, rows.byteOffset, rows.byteLength)]);
    data.setSelection(rows);
    changed.emit();
  }
  function load() {
    data.setSelection(typed(model.get("_selection"), Uint32Array));
    changed.emit();
  }
  ctx.handle("selected", (msg) => {
    if (msg.view !== view || inflight === 0) return;
    inflight -= 1;
    if (!inflight) pending(false);
  });
  // a selection from Python or another view; while this view's own are on their way, the newest
  // is the one it shows (Python applies them after anything that came before)
  ctx.on("change:_selection_counter", () => { if (!inflight) load(); });
  ctx.selection = { commit, changed };
  data.setSelection(typed(model.get("_selection"), Uint32Array));
  return () => {};
}
