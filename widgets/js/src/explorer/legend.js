// The legend over the map: category swatches or a colour bar for a continuous column.

import { el } from "../shared/dom.js";
import { fmt } from "../shared/format.js";

function categoryItems(info) {
  const items = (info.labels || []).slice(0, 30).map((label, i) => {
    const sw = el("span", { class: "fl-swatch" });
    sw.style.background = info.colors[i] || "#bebebe";
    return el("div", { class: "fl-legend-item" }, [sw, el("span", { text: label })]);
  });
  if ((info.labels || []).length > 30) items.push(el("div", { text: `… ${info.labels.length - 30} more` }));
  return items;
}

function colorbarItems(info) {
  const stops = (info.colors || []).filter((_, i) => i % 32 === 0 || i === info.colors.length - 1);
  const bar = el("div", { class: "fl-colorbar" });
  bar.style.background = `linear-gradient(to top, ${stops.join(", ")})`;
  const labels = el("div", { class: "fl-colorbar-labels" }, [el("span", { text: "≥ " + fmt(info.vmax) }), el("span", { text: "≤ " + fmt(info.vmin) })]);
  const items = [el("div", { class: "fl-colorbar-wrap" }, [bar, labels])];
  if (info.missing) items.push(el("div", { class: "fl-hint", text: `${info.missing} missing (grey)` }));
  return items;
}

export function mountLegend(ctx) {
  const legend = el("div", { class: "fl-legend", "aria-label": "Legend" });
  ctx.slots.mapWrap.append(legend);
  function draw() {
    const info = ctx.model.get("_color_info") || {};
    const title = el("div", { class: "fl-legend-title", text: info.column || "" });
    const body = info.kind === "category" ? categoryItems(info) : info.kind === "continuous" ? colorbarItems(info) : [];
    legend.replaceChildren(title, ...body);
  }
  ctx.on("change:_color_info", draw);
  draw();
  return () => {};
}
