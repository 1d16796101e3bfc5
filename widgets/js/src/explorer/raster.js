// Painting points into a 32-bit RGBA pixel buffer (one pass, no canvas calls), either one square
// per point or, for large maps, each pixel as the mean colour of the points covering it.

/** Little-endian RGBA word of [r, g, b] (opaque), as a Uint32Array pixel. */
export function word([r, g, b]) {
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** "#rrggbb" as [r, g, b]. */
export function hexRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

/** `rgb` moved a share `t` of the way towards `target`, rounded. */
export function mixRgb(rgb, target, t) {
  return rgb.map((v, i) => Math.round(v * (1 - t) + target[i] * t));
}

/** A pixel layer: colours and the row drawn on top of each pixel (-1: none). */
export function createLayer() {
  return { W: 0, H: 0, buf: new Uint32Array(0), own: new Int32Array(0), sums: null };
}

export function sizeLayer(layer, W, H) {
  if (layer.W === W && layer.H === H) return;
  Object.assign(layer, { W, H, buf: new Uint32Array(W * H), own: new Int32Array(W * H), sums: null });
}

// sq = [xa, xb, ya, yb]: the pixels of point i's square of `size`, clipped to the layer; false when
// none is on it (one shared array: no allocation per point). t = {s, ox, oy}: data -> device px.
const sq = new Int32Array(4);
function square(layer, t, xv, yv, size) {
  const px = Math.floor(xv * t.s + t.ox - size / 2);
  const py = Math.floor(t.oy - yv * t.s - size / 2);
  if (px >= layer.W || py >= layer.H || px + size <= 0 || py + size <= 0) return false;
  sq[0] = Math.max(0, px); sq[1] = Math.min(layer.W, px + size);
  sq[2] = Math.max(0, py); sq[3] = Math.min(layer.H, py + size);
  return true;
}

/** Paints row i as a square of `size` device pixels in colour `w`. */
export function plot(layer, data, i, w, size, t) {
  if (!square(layer, t, data.x[i], data.y[i], size)) return;
  const { buf, own, W } = layer;
  for (let yy = sq[2]; yy < sq[3]; yy++) {
    const row = yy * W;
    for (let xx = sq[0]; xx < sq[1]; xx++) {
      buf[row + xx] = w;
      own[row + xx] = i;
    }
  }
}

/** Every shown point, one square each, later rows on top. */
export function paintEach(layer, data, colors, size, t) {
  for (let i = 0; i < data.x.length; i++) {
    if (data.shown(i)) plot(layer, data, i, colors[data.codes[i]], size, t);
  }
}

/** Every pixel covered by shown points gets the mean of their colours (rounded to nearest). */
export function paintMean(layer, data, colors, size, t) {
  const n = layer.W * layer.H;
  if (!layer.sums) layer.sums = [0, 1, 2, 3].map(() => new Uint32Array(n));
  const [sumR, sumG, sumB, hits] = layer.sums;
  layer.sums.forEach((a) => a.fill(0));
  const { buf, own, W } = layer;
  for (let i = 0; i < data.x.length; i++) {
    if (!data.shown(i) || !square(layer, t, data.x[i], data.y[i], size)) continue;
    const w = colors[data.codes[i]];
    const cr = w & 255, cg = (w >>> 8) & 255, cb = (w >>> 16) & 255;
    for (let yy = sq[2]; yy < sq[3]; yy++) {
      for (let xx = sq[0], p = yy * W + xx; xx < sq[1]; xx++, p++) {
        sumR[p] += cr; sumG[p] += cg; sumB[p] += cb;
        hits[p] += 1;
        own[p] = i;
      }
    }
  }
  for (let p = 0; p < n; p++) {
    const c = hits[p];
    if (!c) continue;
    const half = c >>> 1;
    buf[p] = word([Math.floor((sumR[p] + half) / c), Math.floor((sumG[p] + half) / c), Math.floor((sumB[p] + half) / c)]);
  }
}

/** The row drawn nearest to CSS pixel p within 4 px on a layer of `owner` rows, or -1. */
export function hitTest(owner, size, p) {
  const { W, H, dpr } = size;
  const cx = Math.round(p[0] * dpr), cy = Math.round(p[1] * dpr), rad = Math.round(4 * dpr);
  let best = -1, bestD = Infinity;
  for (let dy = -rad; dy <= rad; dy++) {
    const yy = cy + dy;
    if (yy < 0 || yy >= H) continue;
    for (let dx = -rad; dx <= rad; dx++) {
      const xx = cx + dx, i = xx < 0 || xx >= W ? -1 : owner[yy * W + xx];
      if (i >= 0 && dx * dx + dy * dy < bestD) { best = i; bestD = dx * dx + dy * dy; }
    }
  }
  return best;
}
