// Image pairs (the image and its activation map) pulled as PNG buffers for the tiles on the page.
// Requests are made once the current batch of model changes has been applied (a microtask later),
// for the final feature / class / map settings, so nothing is left blank whatever order the change
// events of a batch come in, and again after each change of settings. A reply sent for earlier
// settings is dropped. Request ids carry a token of the view: Python's answers reach every view.

import { blobUrl } from "../shared/binary.js";

export function createImages(ctx) {
  const { model, root } = ctx;
  const urls = new Map(); // row -> [image URL, map URL] for the current settings
  const asked = new Set(); // ids of this view's requests for the current settings, not yet answered
  const pending = new Set(); // rows asked for with the current settings, not yet answered
  const view = Math.random().toString(36).slice(2, 10);
  let req = 0, queued = false, closed = false;
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
      const id = `${view}.${req}`;
      asked.add(id);
      for (const r of chunk) pending.add(r);
      model.send({ type: "tiles", rows: chunk, req: id });
    }
  }
  function request() {
    if (queued) return;
    queued = true;
    queueMicrotask(flush);
  }
  const revoke = (pair) => pair.forEach((u) => u && URL.revokeObjectURL(u));
  /** The shown images went stale (feature, class, map kind, opacity): drop them and late replies,
   * and ask for the images shown once this batch of changes is applied. */
  function reset() {
    asked.clear();
    pending.clear();
    for (const pair of urls.values()) revoke(pair);
    urls.clear();
    if (!closed) request();
  }
  function receive(msg, buffers) {
    if (!asked.delete(msg.req)) return; // another view's, or sent before the settings changed
    // answered for other settings than this view shows: they changed in Python before it
    // answered, and their change event, on its way, resets and asks again
    if (msg.feature !== model.get("feature") || msg.kind !== model.get("map_kind")
        || (msg.class !== undefined && msg.class !== model.get("class_index"))) {
      for (const row of msg.rows) pending.delete(row);
      return;
    }
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
