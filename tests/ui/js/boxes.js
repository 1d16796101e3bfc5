([root, sels]) => {
  const r = document.querySelector(root); if (!r) return null;
  const o = r.getBoundingClientRect(), out = {};
  for (const s of sels) {
    const e = r.matches(s) ? r : r.querySelector(s);
    if (!e) { out[s] = null; continue; }
    const b = e.getBoundingClientRect();
    out[s] = [b.x - o.x, b.y - o.y, b.width, b.height].map((v) => Math.round(v * 2) / 2);
  }
  return out;
}
