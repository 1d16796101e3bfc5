// The inspector panel (the hovered or pinned image and its row) and the map's hover tooltip.

import { blobUrl } from "../shared/binary.js";
import { el, kvRows } from "../shared/dom.js";

export function mountInspector(ctx) {
  const { model } = ctx;
  const tooltip = el("div", { class: "fl-tooltip", hidden: "" });
  ctx.slots.mapWrap.append(tooltip);
  const img = el("img", { class: "fl-inspect-img", alt: "" });
  const meta = el("table", { class: "fl-inspect-meta" });
  const hint = el("div", { class: "fl-hint", text: "Hover a point to inspect it; click to pin." });
  // image requests carry this view's token: Python's answers reach every view of the widget
  const view = Math.random().toString(36).slice(2, 10);
  let pinned = null, hovered = -1, req = 0, timer = 0, url = null;
  // nearest neighbours in embedding space of the pinned image, or else of the selection
  const more = el("button", {
    type: "button", class: "fl-more-like", text: "More like this",
    title: "Select the images nearest in embedding space to the pinned image (or to the selection)",
    onclick: () => model.send({ type: "more_like_this", row: pinned }),
  });
  ctx.slots.side.append(el("section", { class: "fl-panel fl-inspector", "aria-label": "Inspector" }, [el("h4", { text: "Inspector" }), hint, img, meta, more]));

  function request(row, pin) {
    if (pinned !== null && !pin && pinned !== row) {
      model.send({ type: "inspect", row, req: -1 }); // tooltip only
      return;
    }
    req += 1;
    model.send({ type: "inspect", row, req: `${view}.${req}` });
  }
  function place(p) {
    tooltip.style.left = Math.min(p[0] + 12, ctx.map.size.W / ctx.map.size.dpr - 180) + "px";
    tooltip.style.top = p[1] + 12 + "px";
  }
  /** The pointer is over row i (-1: none) at CSS pixel p. */
  function hover(i, p) {
    if (i === hovered) { if (i >= 0) place(p); return; }
    hovered = i;
    if (i < 0) { tooltip.hidden = true; return; }
    tooltip.replaceChildren(el("div", { text: `row ${i}` }));
    place(p);
    tooltip.hidden = false;
    clearTimeout(timer);
    timer = setTimeout(() => request(i, false), 60);
  }
  function hideTooltip(forget) {
    tooltip.hidden = true;
    if (forget) hovered = -1;
  }
  function fillTooltip(get) {
    tooltip.replaceChildren(
      el("div", { class: "fl-tt-id", text: get("id") }),
      el("div", { text: `label: ${get("label_name")}` }),
      el("div", { text: `pred: ${get("pred_name")} (${get("correct") === "True" ? "✓" : "✗"})` }),
      el("div", { text: `confidence: ${get("confidence")}` }),
    );
  }
  ctx.handle("inspect", (msg, buffers) => {
    const info = msg.info || [];
    const get = (k) => (info.find((r) => r[0] === k) || [k, "–"])[1];
    if (hovered === msg.row && !tooltip.hidden) fillTooltip(get);
    if (msg.req === -1 || msg.req !== `${view}.${req}`) return;
    if (url) URL.revokeObjectURL(url);
    url = blobUrl(buffers && buffers[0]);
    img.src = url || "";
    img.alt = `image ${get("id")}`;
    img.hidden = !url;
    hint.textContent = msg.error || (pinned === msg.row ? "Pinned (click empty map to unpin)." : "Hovered point.");
    meta.replaceChildren(...kvRows(info));
  });
  ctx.inspector = {
    hover,
    hideTooltip,
    pin(row) { pinned = row; request(row, true); },
    unpin() { pinned = null; },
  };
  return () => { clearTimeout(timer); if (url) URL.revokeObjectURL(url); };
}
