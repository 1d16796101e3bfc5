// Image pairs (the image and its activation map) pulled as PNG buffers for the tiles on the page.
// Requests are made once the current batch of model changes has been applied (a microtask later),
// for the final feature / class / map settings, so nothing is left blank whatever order the change
// events of a batch come in. A reply sent for earlier settings is dropped.

import { blobUrl } from "../shared/binary.js";

export function createImages(ctx) {
  const { model, root } = ctx;
  const urls = new Map(); // row -> [image URL, map URL] for the current settings
  const reqGen = new Map(); // request id -> the generation it was sent in
  const pending = new Set(); // rows asked for in this generation, not yet answered
  let req = 0, gen = 0, queued = false, closed = false;
  const imgs = () => root.querySelectorAll("img.fl-img");

  function fill() {
    for (const img of imgs()) {
      const pair = urls.get(Number(img.dataset.row));
      const url = pair ? (img.alt.startsWith("map") ? pair[1] : pair[0]) : null;
      if (url && img.getAttribute("src") !== url) img.src = url;
      else if (!url && img.getAttribute("src")) img.removeAttribute("src"); // a revoked URL
    }
  }
  function flush() {
    queued = false;
    if (closed) return;
    fill();
    const want = new Set();
    for (const img of imgs()) {
      const row = Number(img.dataset.row);
      if (!urls.has(row) && !pending.has(row)) want.add(row);
    }
    const rows = [...want];
    for (let i = 0; i < rows.length; i += 200) { // Python answers at most 200 rows a request
      const chunk = rows.slice(i, i + 200);
      req += 1;
      reqGen.set(req, gen);
      for (const r of chunk) pending.add(r);
      model.send({ type: "tiles", rows: chunk, req });
    }
  }
  function request() {
    if (queued) return;
    queued = true;
    queueMicrotask(flush);
  }
  const revoke = (pair) => pair.forEach((u) => u && URL.revokeObjectURL(u));
  /** The shown images went stale (feature, class, map kind, opacity): drop them and late replies. */
  function reset() {
    gen += 1;
    reqGen.clear();
    pending.clear();
    for (const pair of urls.values()) revoke(pair);
    urls.clear();
  }
  function receive(msg, buffers) {
    const sentIn = reqGen.get(msg.req);
    reqGen.delete(msg.req);
    // a late reply for another feature, class, map kind or opacity must not fill this view
    if (sentIn !== gen || msg.feature !== model.get("feature") || msg.kind !== model.get("map_kind")
        || (msg.class !== undefined && msg.class !== model.get("class_index"))) return;
    msg.rows.forEach((row, i) => {
      pending.delete(row);
      if (urls.has(row)) revoke(urls.get(row)); // overlapping requests: never leak a blob URL
      urls.set(row, [blobUrl(buffers[2 * i]), blobUrl(buffers[2 * i + 1])]);
    });
    fill();
  }
  ctx.handle("tiles", receive);
  return { urls, request, reset, close() { closed = true; reset(); } };
}
