// The toolbar: selection tools, view reset, clear, colour-by, class / correctness / confidence
// filters and the selection count.

import { el, setTrait } from "../shared/dom.js";

export function fillSelect(select, options, value) {
  select.replaceChildren(...options.map((o) => el("option", { value: o, text: o })));
  select.value = value;
}

/** The class filter: a <details> list of checkboxes, "all" = no filter. */
function classFilter(model) {
  const box = el("div", { class: "fl-classes" });
  const details = el("details", { class: "fl-class-filter" }, [el("summary", { text: "classes" }), box]);
  const checks = () => [...box.querySelectorAll("input[type=checkbox]")];
  function rebuild(names, chosen) {
    box.replaceChildren(
      el("button", { type: "button", class: "fl-all", text: "all", onclick: () => setTrait(model, "filter_classes", []) }),
      ...names.map((name, i) => {
        const cb = el("input", { type: "checkbox", "data-label": String(i) });
        cb.checked = chosen.size === 0 || chosen.has(i);
        cb.addEventListener("change", () => {
          const picked = checks().filter((b) => b.checked).map((b) => Number(b.dataset.label));
          setTrait(model, "filter_classes", picked.length === names.length ? [] : picked);
        });
        return el("label", { class: "fl-class" }, [cb, el("span", { text: name })]);
      }),
    );
  }
  function sync() {
    const names = model.get("class_names") || [];
    const chosen = new Set(model.get("filter_classes") || []);
    const key = JSON.stringify(names);
    details.querySelector("summary").textContent = chosen.size ? `classes (${chosen.size}/${names.length})` : "classes (all)";
    if (box.dataset.names === key) {
      // same classes: update the boxes in place, so keyboard focus stays on the one just toggled
      for (const cb of checks()) cb.checked = chosen.size === 0 || chosen.has(Number(cb.dataset.label));
      return;
    }
    box.dataset.names = key;
    rebuild(names, chosen);
  }
  return { node: details, sync };
}

/** The confidence range inputs. */
function confidenceFilter(model) {
  const attrs = { type: "number", min: "0", max: "1", step: "0.05" };
  const lo = el("input", { ...attrs, class: "fl-conf-lo", "aria-label": "Minimum confidence" });
  const hi = el("input", { ...attrs, class: "fl-conf-hi", "aria-label": "Maximum confidence" });
  const change = () => {
    let a = Number(lo.value), b = Number(hi.value);
    if (!Number.isFinite(a)) a = 0;
    if (!Number.isFinite(b)) b = 1;
    if (a > b) [a, b] = [b, a];
    setTrait(model, "filter_confidence", [a, b]);
  };
  lo.addEventListener("change", change);
  hi.addEventListener("change", change);
  const sync = () => {
    const [a, b] = model.get("filter_confidence") || [0, 1];
    lo.value = String(a);
    hi.value = String(b);
  };
  return { node: el("label", { class: "fl-field" }, [el("span", { text: "conf " }), lo, el("span", { text: "–" }), hi]), sync };
}

function modeButtons(ctx) {
  const buttons = {};
  for (const [m, label] of [["box", "▭ Box"], ["lasso", "◌ Lasso"], ["pan", "✥ Pan"]]) {
    buttons[m] = el("button", {
      class: "fl-mode fl-mode-" + m, type: "button", "aria-pressed": String(m === ctx.tool.mode),
      title: m === "pan" ? "Drag to pan; wheel zooms" : "Drag to select (shift adds)", text: label,
      onclick: () => setMode(m),
    });
  }
  function setMode(m) {
    ctx.tool.mode = m;
    for (const [k, b] of Object.entries(buttons)) b.setAttribute("aria-pressed", String(k === m));
    ctx.map.overlay.style.cursor = m === "pan" ? "grab" : "crosshair";
  }
  return { nodes: Object.values(buttons), setMode };
}

export function mountToolbar(ctx) {
  const { model, data } = ctx;
  const modes = modeButtons(ctx);
  const reset = el("button", { type: "button", class: "fl-reset", text: "⟲ View", title: "Reset zoom (or double-click the map)", onclick: ctx.map.refit });
  const clear = el("button", { type: "button", class: "fl-clear", text: "✕ Clear", title: "Clear the selection", onclick: () => ctx.selection.commit(new Uint32Array(0), "box") });
  const color = el("select", { class: "fl-color", "aria-label": "Colour points by", onchange: () => setTrait(model, "color_by", color.value) });
  const correct = el("select", { class: "fl-filter-correct", "aria-label": "Show correct or incorrect", onchange: () => setTrait(model, "filter_correct", correct.value) });
  fillSelect(correct, ["all", "correct", "incorrect"], "all");
  const classes = classFilter(model), conf = confidenceFilter(model);
  const count = el("span", { class: "fl-selcount", "data-count": "0", text: "0 selected" });
  ctx.slots.toolbar.append(
    ...modes.nodes, reset, clear,
    el("label", { class: "fl-field" }, [el("span", { text: "colour " }), color]),
    classes.node,
    el("label", { class: "fl-field" }, [el("span", { text: "show " }), correct]),
    conf.node, count,
  );
  function sync() {
    fillSelect(color, model.get("color_options") || [], model.get("color_by"));
    correct.value = model.get("filter_correct");
    conf.sync();
    classes.sync();
  }
  function showCount() {
    count.dataset.count = String(data.selCount);
    count.textContent = `${data.selCount} selected`;
  }
  for (const name of ["color_options", "color_by", "filter_correct", "filter_confidence", "filter_classes", "class_names"]) ctx.on("change:" + name, sync);
  const unsubscribe = ctx.selection.changed.subscribe(showCount);
  sync();
  showCount();
  modes.setMode("box");
  return unsubscribe;
}
