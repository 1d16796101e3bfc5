// Thumbnails pulled on demand: one object URL per row (at most 600 kept), asked for once.

import { blobUrl } from "../shared/binary.js";
import { el } from "../shared/dom.js";

export function mountThumbs(ctx) {
  const urls = new Map(); // row -> object URL
  const pending = new Set();
  /** An <img> of `row` (class `cls`); its row is added to `want` when it still has to be fetched. */
  function image(row, cls, alt, want) {
    const img = el("img", { class: cls, alt, "data-row": String(row) });
    if (urls.has(row)) img.src = urls.get(row);
    else if (!pending.has(row)) { want.push(row); pending.add(row); }
    return img;
  }
  function request(want) {
    if (want.length) ctx.model.send({ type: "thumbs", rows: want });
  }
  function keep(row, url) {
    if (urls.has(row)) URL.revokeObjectURL(urls.get(row));
    urls.set(row, url);
    if (urls.size > 600) { const [r0, u0] = urls.entries().next().value; URL.revokeObjectURL(u0); urls.delete(r0); }
  }
  ctx.handle("thumbs", (msg, buffers) => {
    (msg.rows || []).forEach((row, k) => {
      pending.delete(row);
      const url = blobUrl(buffers && buffers[k]);
      if (url) keep(row, url);
      for (const img of ctx.root.querySelectorAll(`img[data-row="${row}"]`)) {
        if (url) img.src = url;
        else img.alt = (msg.errors && msg.errors[k]) || "no image";
      }
    });
  });
  ctx.thumbs = { image, request };
  return () => { for (const u of urls.values()) URL.revokeObjectURL(u); };
}
