// The map's data as typed arrays over the binary traits, and the selection as a mask + rows.

import { typed } from "../shared/binary.js";

/** Bounds of the finite points (a unit square when none is finite). */
function finiteBounds(x, y) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const a = x[i], b = y[i];
    if (!Number.isFinite(a) || !Number.isFinite(b)) continue; // NaN (or ±inf): not placed
    if (a < x0) x0 = a;
    if (a > x1) x1 = a;
    if (b < y0) y0 = b;
    if (b > y1) y1 = b;
  }
  return x0 <= x1 ? { x0, x1, y0, y1 } : { x0: -1, x1: 1, y0: -1, y1: 1 };
}

/** The data store: x, y, colour codes, filter mask and selection. `version` is bumped when anything
 * the base layer of the map depends on changes. */
export function createData(model) {
  const d = {
    x: new Float32Array(0),
    y: new Float32Array(0),
    codes: new Uint8Array(0),
    visible: new Uint8Array(0),
    selMask: new Uint8Array(0),
    selRows: new Uint32Array(0),
    selCount: 0,
    version: 0,
    bounds: null,
    /** true when point i is shown and placed */
    shown: (i) => d.visible[i] && d.x[i] === d.x[i] && d.y[i] === d.y[i],
    loadXY() {
      d.x = typed(model.get("_x"), Float32Array);
      d.y = typed(model.get("_y"), Float32Array);
      d.version += 1;
      d.bounds = finiteBounds(d.x, d.y);
      if (d.selMask.length !== d.x.length) d.selMask = new Uint8Array(d.x.length);
    },
    loadColor() {
      d.codes = typed(model.get("_color"), Uint8Array);
      d.version += 1;
    },
    loadVisible() {
      d.visible = typed(model.get("_visible"), Uint8Array);
      d.version += 1;
    },
    /** rows: the selected row indices (Uint32Array) */
    setSelection(rows) {
      d.selMask = new Uint8Array(d.x.length);
      for (let k = 0; k < rows.length; k++) if (rows[k] < d.selMask.length) d.selMask[rows[k]] = 1;
      d.selRows = rows;
      d.selCount = rows.length;
    },
  };
  return d;
}
