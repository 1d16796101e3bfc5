// faultlens FeatureBrowser front end: class picker, top features, top-k / bottom-k images beside
// their activation-map overlays (PNG buffers pulled on demand), core/spurious marks, spuriosity
// strip. Every data string reaches the page through textContent or attributes, never innerHTML.

import { el, setTrait } from "../shared/dom.js";
import { createDispatcher, createScope } from "../shared/scope.js";
import { createTaskBar } from "../shared/task.js";
import { createImages } from "./images.js";
import { createMitigationButton, drawMitigation } from "./mitigation.js";
import { drawFeatures, drawGroups, drawMark, drawStrip } from "./views.js";

/** The header controls: class, map kind, overlay opacity, export. */
function controls(model) {
  const classSel = el("select", { "aria-label": "class", onchange: () => setTrait(model, "class_index", Number(classSel.value)) });
  const kindSel = el("select", { "aria-label": "map kind", onchange: () => setTrait(model, "map_kind", kindSel.value) }, [
    el("option", { value: "nam", text: "activation map (NAM)" }),
    el("option", { value: "gradcam", text: "Grad-CAM (class)" }),
  ]);
  const opacity = el("input", { type: "range", min: "0", max: "1", step: "0.05", "aria-label": "overlay opacity", onchange: () => setTrait(model, "opacity", Number(opacity.value)) });
  const exportBtn = el("button", { text: "export CSV", "aria-label": "export marks", onclick: () => model.send({ type: "export" }) });
  const mitigate = createMitigationButton(model);
  const head = el("div", { class: "fl-head" }, [el("label", { text: "class " }), classSel, kindSel, el("label", { text: " opacity " }), opacity, exportBtn, mitigate.button]);
  function sync() {
    classSel.replaceChildren(...model.get("class_names").map((n, i) => el("option", { value: String(i), text: `${i}: ${n}` })));
    classSel.value = String(model.get("class_index"));
    kindSel.value = model.get("map_kind");
    opacity.value = String(model.get("opacity"));
  }
  return { head, classSel, kindSel, opacity, mitigate, sync };
}

function layout(model, on) {
  const c = controls(model);
  const parts = {
    task: createTaskBar(model, on),
    featList: el("div", { class: "fl-featlist", role: "listbox", "aria-label": "top features" }),
    markBar: el("div", { class: "fl-mark" }),
    groups: el("div", { class: "fl-groups" }),
    strip: el("div", { class: "fl-strip" }),
    mitigation: el("section", { class: "fl-mitigation", "aria-label": "mitigation preview", hidden: "" }),
    status: el("div", { class: "fl-status" }),
  };
  const root = el("div", { class: "fl-features" }, [
    c.head,
    parts.task,
    el("div", { class: "fl-body" }, [parts.featList, el("div", { class: "fl-main" }, [parts.markBar, parts.mitigation, parts.groups, parts.strip])]),
    parts.status,
  ]);
  return { root, parts, controls: c };
}

function render({ model, el: host }) {
  const scope = createScope(model);
  const { root, parts, controls: c } = layout(model, scope.on);
  const ctx = { model, root, parts, handle: createDispatcher(scope) };
  ctx.images = createImages(ctx);
  const redrawImages = () => { ctx.images.reset(); drawGroups(ctx); drawStrip(ctx); };
  scope.on("change:class_names", c.sync);
  scope.on("change:class_index", () => { c.classSel.value = String(model.get("class_index")); ctx.images.reset(); });
  scope.on("change:features", () => { drawFeatures(ctx); drawMark(ctx); });
  scope.on("change:feature", () => { ctx.images.reset(); drawFeatures(ctx); drawMark(ctx); });
  scope.on("change:mark", () => drawMark(ctx));
  scope.on("change:groups", () => drawGroups(ctx));
  scope.on("change:strip", () => drawStrip(ctx));
  scope.on("change:map_kind", () => { c.kindSel.value = model.get("map_kind"); redrawImages(); });
  scope.on("change:opacity", () => { c.opacity.value = String(model.get("opacity")); redrawImages(); });
  scope.on("change:status", () => { parts.status.textContent = model.get("status"); });
  scope.on("change:mitigation", () => { c.mitigate.sync(); drawMitigation(ctx); });
  scope.on("change:task", c.mitigate.sync);
  host.append(root);
  c.sync();
  parts.status.textContent = model.get("status") || "";
  drawFeatures(ctx); drawMark(ctx); drawGroups(ctx); drawStrip(ctx); drawMitigation(ctx);
  return () => { scope.dispose(); ctx.images.close(); };
}

export default { render };
