// Saved slices: the ones the user named (save the selection, select, export, delete).

import { el } from "../shared/dom.js";

function sliceItem(model, s) {
  const act = (op, extra = {}) => () => model.send({ type: "slice", op, name: s.name, ...extra });
  return el("li", { class: "fl-slice", "data-name": s.name }, [
    el("span", { class: "fl-slice-label", text: `${s.name} (${s.n})` }),
    el("button", { type: "button", text: "select", "aria-label": `select slice ${s.name}`, onclick: act("load") }),
    el("button", { type: "button", text: "csv", "aria-label": `export slice ${s.name} as CSV`, onclick: act("export", { fmt: "csv" }) }),
    el("button", { type: "button", text: "parquet", "aria-label": `export slice ${s.name} as parquet`, onclick: act("export", { fmt: "parquet" }) }),
    el("button", { type: "button", text: "delete", "aria-label": `delete slice ${s.name}`, onclick: act("delete") }),
  ]);
}

export function mountSavedSlices(ctx) {
  const { model } = ctx;
  const name = el("input", { type: "text", class: "fl-slice-name", placeholder: "slice name", "aria-label": "Slice name", maxlength: "64" });
  const save = el("button", { type: "button", class: "fl-slice-save", text: "Save selection", onclick: () => model.send({ type: "slice", op: "save", name: name.value.trim() }) });
  const list = el("ul", { class: "fl-slice-list" });
  ctx.slots.side.append(el("section", { class: "fl-panel fl-slices", "aria-label": "Saved slices" }, [el("h4", { text: "Saved slices" }), el("div", { class: "fl-row" }, [name, save]), list]));
  function draw() {
    const slices = model.get("saved_slices") || [];
    if (!slices.length) list.replaceChildren(el("li", { class: "fl-hint", text: "No saved slices." }));
    else list.replaceChildren(...slices.map((s) => sliceItem(model, s)));
  }
  ctx.on("change:saved_slices", draw);
  draw();
  return () => {};
}
