// The image grid of the selection: sort, order, pages; a tile click (or Enter) pins it.

import { el, onActivateKey, setTrait } from "../shared/dom.js";
import { fmt } from "../shared/format.js";
import { fillSelect } from "./toolbar.js";

function tileNode(ctx, tile, sort, want) {
  const img = ctx.thumbs.image(tile.row, "fl-thumb", `image ${tile.id}`, want);
  const mark = tile.correct ? "✓" : "✗";
  const cap = tile.correct ? `${mark} ${tile.label}` : `${mark} ${tile.label} → ${tile.pred}`;
  const sub = `conf ${fmt(tile.confidence, 2)}` + (tile.sort_value != null && sort !== "confidence" ? ` · ${sort} ${fmt(tile.sort_value)}` : "");
  const pin = () => ctx.inspector.pin(tile.row);
  return el("figure", {
    class: "fl-tile " + (tile.correct ? "fl-ok" : "fl-bad"), "data-row": String(tile.row), tabindex: "0", title: tile.id,
    onclick: pin, onkeydown: onActivateKey(pin),
  }, [
    img,
    el("figcaption", {}, [
      el("div", { class: "fl-cap", text: cap }),
      el("div", { class: "fl-capsub", text: sub }),
      tile.caption ? el("div", { class: "fl-tile-caption", title: "caption from the describe step", text: `“${tile.caption}”` }) : null,
    ]),
  ]);
}

export function mountGrid(ctx) {
  const { model } = ctx;
  const info = el("span", { class: "fl-grid-info" });
  const sort = el("select", { class: "fl-sort", "aria-label": "Sort images by", onchange: () => setTrait(model, "grid_sort", sort.value) });
  const order = el("button", { type: "button", class: "fl-order", onclick: () => setTrait(model, "grid_descending", !model.get("grid_descending")) });
  const turn = (d) => {
    const g = model.get("_grid") || {};
    setTrait(model, "grid_page", Math.max(0, Math.min((g.n_pages || 1) - 1, (g.page || 0) + d)));
  };
  const prev = el("button", { type: "button", class: "fl-prev", text: "◀", "aria-label": "Previous page", onclick: () => turn(-1) });
  const next = el("button", { type: "button", class: "fl-next", text: "▶", "aria-label": "Next page", onclick: () => turn(1) });
  const tiles = el("div", { class: "fl-tiles" });
  ctx.slots.grid.append(
    el("div", { class: "fl-grid-head" }, [info, el("label", { class: "fl-field" }, [el("span", { text: "sort " }), sort]), order, prev, next]),
    tiles,
  );
  function sync() {
    fillSelect(sort, [...(model.get("sort_options") || []), "index"], model.get("grid_sort"));
    order.textContent = model.get("grid_descending") ? "↓ desc" : "↑ asc";
    order.setAttribute("aria-label", model.get("grid_descending") ? "Largest first" : "Smallest first");
  }
  function draw() {
    const g = model.get("_grid") || {};
    info.textContent = g.total ? `${g.total} images · page ${g.page + 1}/${g.n_pages}` : "Select points on the map to see their images.";
    info.dataset.total = String(g.total || 0);
    prev.disabled = !g.page;
    next.disabled = !g.total || g.page >= g.n_pages - 1;
    const want = [];
    tiles.replaceChildren(...(g.tiles || []).map((tile) => tileNode(ctx, tile, g.sort, want)));
    ctx.thumbs.request(want);
  }
  for (const name of ["sort_options", "grid_sort", "grid_descending"]) ctx.on("change:" + name, sync);
  ctx.on("change:_grid", draw);
  sync();
  draw();
  return () => {};
}
