// The progress of a widget's long job and its Cancel button, shared by both widgets. Python writes
// the `task` trait ({name, done, total, text, state}); the bar is shown only while state is
// "running" (total 0: not known, a busy bar without a value). Cancel sends {type: "cancel"}: the
// job stops at its next batch and keeps what it finished.

import { el } from "./dom.js";

/** The bar's node and its cleanup; `on(name, fn)` is the widget's scoped model listener. */
export function createTaskBar(model, on) {
  const text = el("span", { class: "fl-task-text" });
  const fill = el("span", { class: "fl-task-fill" });
  const bar = el("div", { class: "fl-task-bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, [fill]);
  const cancel = el("button", {
    type: "button", class: "fl-task-cancel", text: "Cancel",
    onclick: () => {
      cancel.disabled = true;
      text.textContent = "cancelling…";
      model.send({ type: "cancel" });
    },
  });
  const node = el("div", { class: "fl-task", hidden: "" }, [text, bar, cancel]);
  function draw() {
    const t = model.get("task") || {};
    const running = t.state === "running";
    node.hidden = !running;
    node.dataset.state = t.state || "";
    if (!running) return;
    const label = [t.name, t.text].filter(Boolean).join(": ") || "working…";
    text.textContent = label;
    bar.setAttribute("aria-label", t.name || "progress");
    bar.setAttribute("aria-valuetext", label);
    const known = Number(t.total) > 0;
    node.classList.toggle("fl-task-unknown", !known);
    if (known) {
      const pct = Math.max(0, Math.min(100, Math.round((100 * Number(t.done)) / Number(t.total))));
      bar.setAttribute("aria-valuenow", String(pct));
      fill.style.width = `${pct}%`;
    } else {
      bar.removeAttribute("aria-valuenow"); // indeterminate, as ARIA defines it
      fill.style.width = "";
    }
    cancel.disabled = t.text === "cancelling…";
  }
  on("change:task", draw);
  draw();
  return node;
}

/** The Explorer's part: the bar right under the toolbar, where the buttons that start jobs are in view. */
export function mountTask(ctx) {
  ctx.slots.toolbar.after(createTaskBar(ctx.model, ctx.on));
}
