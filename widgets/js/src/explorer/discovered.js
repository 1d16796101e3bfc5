// Discovered slices: found by a method (not named by the user), shown apart from the saved ones
// with a "found automatically" badge. A row click asks Python to select that slice.

import { el, onActivateKey } from "../shared/dom.js";
import { pct, times } from "../shared/format.js";

const HEAD = ["", "slice", "method", "images", "error rate [95% CI]", "lift", "description"];

function descriptionCell(s) {
  return el("td", { class: "fl-disc-desc" }, (s.descriptions || []).map((d) => el("div", { class: "fl-desc-line" }, [
    el("span", { class: "fl-source", text: d.source }),
    el("span", { class: "fl-terms", text: (d.terms || []).join(", ") || "(no contrasting terms)" }),
  ])));
}

function sliceRow(model, s, active) {
  const sw = el("span", { class: "fl-swatch" });
  sw.style.background = s.color || "#bebebe";
  const select = () => model.send({ type: "select_slice", index: s.index });
  return el("tr", {
    class: "fl-disc-row" + (s.index === active ? " fl-active" : ""), "data-index": String(s.index), tabindex: "0",
    role: "button", "aria-label": `select discovered slice ${s.name}`, "aria-pressed": String(s.index === active),
    onclick: select, onkeydown: onActivateKey(select),
  }, [
    el("td", {}, [sw]),
    el("td", { class: "fl-disc-name", text: s.name }),
    el("td", { text: s.method }),
    el("td", { class: "fl-num", text: String(s.size) }),
    el("td", { class: "fl-num fl-rate" }, [el("span", { text: pct(s.error_rate) }), el("span", { class: "fl-ci", text: ` [${pct(s.ci_low)} – ${pct(s.ci_high)}]` })]),
    el("td", { class: "fl-num", text: times(s.lift) }),
    descriptionCell(s),
  ]);
}

export function mountDiscovered(ctx) {
  const { model } = ctx;
  const find = el("button", {
    type: "button", class: "fl-find", text: "Find slices", title: "Discover failure slices (failure directions, the error-aware mixture and likely label errors, de-duplicated)",
    onclick: () => { ctx.setStatus("finding slices…"); model.send({ type: "find_slices", n_slices: 5 }); },
  });
  const body = el("div", { class: "fl-disc-body" });
  ctx.slots.insights.append(el("section", { class: "fl-panel fl-discovered", "aria-label": "Discovered slices" }, [
    el("div", { class: "fl-panel-head" }, [el("h4", { text: "Discovered slices" }), el("span", { class: "fl-badge fl-badge-auto", text: "found automatically" }), find]),
    body,
  ]));
  function draw() {
    const list = model.get("discovered") || [];
    if (!list.length) {
      body.replaceChildren(el("div", { class: "fl-hint", text: "No discovered slices yet: press “Find slices” or call explorer.find_slices()." }));
      return;
    }
    const active = model.get("active_slice");
    const head = el("tr", {}, HEAD.map((h) => el("th", { text: h })));
    body.replaceChildren(el("table", { class: "fl-disc-table" }, [el("thead", {}, [head]), el("tbody", {}, list.map((s) => sliceRow(model, s, active)))]));
  }
  ctx.on("change:discovered", draw);
  ctx.on("change:active_slice", draw);
  draw();
  return () => {};
}
