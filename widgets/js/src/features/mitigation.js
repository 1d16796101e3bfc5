// The FeatureBrowser's mitigation preview: the "Preview mitigation" button (disabled, with a
// tooltip saying what is missing, until the browser has the splits and a spurious mark) and the
// before/after panel drawn from the `mitigation` trait that Python writes. Every string through
// textContent or attributes.

import { el } from "../shared/dom.js";

const num = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits));
const signed = (v) => (v === null || v === undefined || Number.isNaN(v) ? "–" : (v > 0 ? "+" : "") + Number(v).toFixed(1));

/** The header's button; `sync()` follows the trait. */
export function createMitigationButton(model) {
  const button = el("button", {
    type: "button", class: "fl-mitigate", text: "Preview mitigation",
    onclick: () => model.send({ type: "preview_mitigation" }),
  });
  function sync() {
    const m = model.get("mitigation") || {};
    const busy = (model.get("task") || {}).state === "running";
    const missing = m.missing || "";
    button.disabled = Boolean(missing) || busy;
    button.title = missing
      ? `Preview mitigation needs: ${missing}`
      : busy ? "a task is running" : "retrain the head without the features marked spurious and compare before/after";
  }
  sync();
  return { button, sync };
}

/** A before → after pair of bars (0-100 %) for a table cell. */
function bars(before, after) {
  const bar = (v, cls) => {
    const b = el("span", { class: `fl-mbar ${cls}` });
    b.style.width = `${Math.max(0, Math.min(100, Number(v) || 0))}%`;
    return b;
  };
  return el("span", { class: "fl-mbars", "aria-hidden": "true" }, [bar(before, "fl-mbar-before"), bar(after, "fl-mbar-after")]);
}

function countButton(model, r, change, group) {
  const n = change === "fixed" ? group ? group.fixed : r.overall.fixed : group ? group.broken : r.overall.broken;
  const label = `${n} ${change}`;
  if (!r.selectable || !n) return el("span", { class: `fl-mcount fl-m${change}`, text: label });
  return el("button", {
    type: "button", class: `fl-mcount fl-m${change}`, text: label,
    title: `select the ${change} images${group ? ` of ${group.name}` : ""}`,
    onclick: () => model.send({ type: "select_mitigation", change, group: group ? group.name : null }),
  });
}

function summaryRows(r) {
  // [name, before, after, unit, +1: higher is better (accuracy) | -1: lower is better (gap)]
  const rows = [["overall accuracy", r.overall.before, r.overall.after, "%", 1]];
  if (r.worst) rows.push([`worst-group accuracy (${r.worst.group_before} → ${r.worst.group_after})`, r.worst.before, r.worst.after, "%", 1]);
  for (const g of r.gaps || []) rows.push([`spurious gap: ${g.name} (top/bottom ${g.k})`, g.before, g.after, " pts", -1]);
  return rows.map(([name, b, a, unit, sign]) => {
    const d = sign * (a - b);
    return el("tr", {}, [
      el("th", { scope: "row", text: name }),
      el("td", { text: `${num(b)}${unit}` }), el("td", { text: `${num(a)}${unit}` }),
      el("td", { class: d > 0 ? "fl-up" : d < 0 ? "fl-down" : "", text: signed(a - b) }),
    ]);
  });
}

function groupRows(model, r) {
  return (r.groups || []).map((g) => el("tr", {}, [
    el("th", { scope: "row", text: g.name }),
    el("td", { text: String(g.n) }),
    el("td", { text: `${num(g.before)}% → ${num(g.after)}%` }),
    el("td", {}, [bars(g.before, g.after)]),
    el("td", {}, [countButton(model, r, "fixed", g), " ", countButton(model, r, "broken", g)]),
  ]));
}

/** The before/after panel (empty until a preview). */
export function drawMitigation(ctx) {
  const { model } = ctx, m = model.get("mitigation") || {}, r = m.result;
  const box = ctx.parts.mitigation;
  if (!r) { box.replaceChildren(); box.hidden = true; return; }
  box.hidden = false;
  const marks = (r.marks || []).map((x) => `${x.name}: ${x.features.join(", ")}`).join("; ");
  const head = (cells) => el("tr", {}, cells.map((c) => el("th", { scope: "col", text: c })));
  const parts = [
    el("div", { class: "fl-mtitle", text: `Mitigation preview — head retrained without the spurious features (${marks})` }),
    m.stale ? el("div", { class: "fl-mstale", role: "status", text: "the marks changed since this preview — Preview mitigation again" }) : null,
    el("table", { class: "fl-mtable fl-msummary" }, [el("thead", {}, [head(["", "before", "after", "change"])]), el("tbody", {}, summaryRows(r))]),
  ];
  if ((r.groups || []).length) {
    parts.push(el("table", { class: "fl-mtable fl-mgroups" }, [
      el("thead", {}, [head(["group", "images", "accuracy before → after", "", "test images"])]),
      el("tbody", {}, groupRows(model, r)),
    ]));
  }
  parts.push(el("div", { class: "fl-note fl-mfoot" }, [
    el("span", { text: `of ${r.overall.n} test images: ` }), countButton(model, r, "fixed", null), el("span", { text: ", " }),
    countButton(model, r, "broken", null),
    el("span", { text: ` · ${r.method} on ${r.train_images} training images, epoch ${r.best_epoch} of ${r.epochs_run} kept · ${num(r.seconds)} s` }),
  ]));
  box.replaceChildren(...parts.filter(Boolean));
}
