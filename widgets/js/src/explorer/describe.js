// The description of the selection: "Describe selection", its progress, and each describer's
// terms labelled with their source, with captions beside their images.

import { el } from "../shared/dom.js";

/** The summary's parts as chips: a button (selects the rows Python says carry it) where the
 * description knows which rows, plain text otherwise. `index`: the discovered slice, -1 for the
 * selection's description. */
export function summaryParts(model, parts, index) {
  return el("div", { class: "fl-summary", role: "group", "aria-label": "summary" }, (parts || []).map((p, k) => {
    const cls = "fl-part" + (k === 0 && p.term === "header" ? " fl-part-head" : "");
    if (p.n == null) return el("span", { class: cls, text: p.text, title: "does not say which images carry it" });
    return el("button", {
      type: "button", class: cls + " fl-part-link", "data-part": String(p.part), text: p.text,
      title: `select the ${p.n} images that carry it` + (p.among != null ? ` (of the ${p.among} members whose maps were computed)` : ""),
      onclick: (ev) => { ev.stopPropagation(); model.send({ type: "select_part", index, part: p.part }); },
    });
  }));
}

const EMPTY = "Select images, then “Describe selection”: captions, CLIP phrases or ImageNet tags, each labelled with its source.";

function itemParts(ctx, item, want) {
  if (item.source === "summary" && item.parts) {
    return [el("div", { class: "fl-desc-item", "data-source": item.source }, [
      el("span", { class: "fl-source", text: item.source }), summaryParts(ctx.model, item.parts, -1),
    ])];
  }
  const terms = (item.terms || []).map(([t]) => t);
  const parts = [el("div", { class: "fl-desc-item", "data-source": item.source }, [
    el("span", { class: "fl-source", text: item.source }),
    el("span", { class: "fl-terms", text: terms.join(", ") || "(no terms stand out against the reference group)" }),
  ])];
  if ((item.captions || []).length) {
    parts.push(el("ul", { class: "fl-caplist" }, item.captions.map((c) => el("li", { class: "fl-capitem", "data-row": String(c.row), title: c.id }, [
      ctx.thumbs.image(c.row, "fl-mini", `image ${c.row}`, want),
      el("span", { class: "fl-captext", text: c.caption }),
    ]))));
  }
  return parts;
}

export function mountDescribe(ctx) {
  const { model, data } = ctx;
  const button = el("button", {
    type: "button", class: "fl-describe", text: "Describe selection", title: "Describe the selected images (captions, phrases or ImageNet tags)",
    onclick: () => { button.disabled = true; state.textContent = "describing…"; model.send({ type: "describe" }); },
  });
  const state = el("span", { class: "fl-desc-state", role: "status", "aria-live": "polite" });
  const body = el("div", { class: "fl-desc-body" });
  ctx.slots.insights.append(el("section", { class: "fl-panel fl-describe-panel", "aria-label": "Description of the selection" }, [
    el("div", { class: "fl-panel-head" }, [el("h4", { text: "Description" }), button, state]),
    body,
  ]));
  function drawBusy() {
    const busy = !!model.get("describing");
    button.disabled = busy || !data.selCount;
    button.setAttribute("aria-busy", String(busy));
    state.textContent = busy ? "describing…" : "";
    ctx.root.classList.toggle("fl-is-describing", busy);
  }
  function draw() {
    const d = model.get("descriptions") || {};
    drawBusy();
    if (!d.items && !d.error) { body.replaceChildren(el("div", { class: "fl-hint", text: EMPTY })); return; }
    const want = [];
    const parts = [el("div", { class: "fl-sub", text: `${d.n || 0} images described` })];
    if (d.stale) parts.push(el("div", { class: "fl-desc-stale", role: "status", text: "described an earlier selection — Describe again" }));
    if (d.error) parts.push(el("div", { class: "fl-desc-error", role: "alert", text: `error: ${d.error}` }));
    for (const item of d.items || []) parts.push(...itemParts(ctx, item, want));
    for (const note of d.notes || []) parts.push(el("div", { class: "fl-desc-note", text: note }));
    body.replaceChildren(...parts);
    ctx.thumbs.request(want);
  }
  ctx.on("change:descriptions", draw);
  ctx.on("change:describing", drawBusy);
  const unsubscribe = ctx.selection.changed.subscribe(drawBusy);
  draw();
  return unsubscribe;
}
