// The toolbar's text search: a phrase goes to Python, whose CLIP text encoder ranks the images by
// similarity and selects the top k (the status bar says how many and the similarity range). Without
// a text encoder whose space matches the image embeddings the box is disabled and its tooltip says
// why (`search_info.reason`).

import { el } from "../shared/dom.js";

export function mountSearch(ctx) {
  const { model } = ctx;
  const input = el("input", { type: "search", class: "fl-search", placeholder: "search images by text", "aria-label": "Search images by text" });
  const k = el("input", { type: "number", class: "fl-search-k", min: "1", step: "1", "aria-label": "How many images a search selects" });
  const go = el("button", { type: "button", class: "fl-search-go", text: "Search" });
  const box = el("span", { class: "fl-field fl-searchbox" }, [input, k, go]);
  function run() {
    const text = input.value.trim();
    if (!text || input.disabled) return;
    const n = Math.max(1, Math.floor(Number(k.value)) || model.get("search_info")?.k || 50);
    model.send({ type: "search", text, k: n });
  }
  input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); run(); } });
  go.addEventListener("click", run);
  function sync() {
    const info = model.get("search_info") || {};
    const off = !info.enabled;
    for (const c of [input, k, go]) c.disabled = off;
    box.title = off ? info.reason || "text search is not available" : "Select the images most similar to a phrase (CLIP)";
    box.dataset.enabled = String(!off);
    k.max = String(Math.max(1, model.get("n_points") || 1));
    if (!k.value) k.value = String(info.k || 50);
    if (info.query && !input.value) input.value = info.query;
  }
  ctx.slots.toolbar.insertBefore(box, ctx.slots.toolbar.querySelector(".fl-selcount"));
  ctx.on("change:search_info", sync);
  sync();
  return () => {};
}
