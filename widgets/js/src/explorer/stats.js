// The selection statistics panel: size, error rate with its interval, lift, class mix, confusions.

import { el, kvRows } from "../shared/dom.js";
import { pct, times } from "../shared/format.js";

function classMix(mix) {
  return mix.slice(0, 5).map((c) => {
    const bar = el("span", { class: "fl-bar" });
    bar.style.width = Math.round(100 * c.share) + "%";
    return el("div", { class: "fl-mix" }, [
      el("span", { class: "fl-mix-name", text: c.name }),
      el("span", { class: "fl-bar-wrap" }, [bar]),
      el("span", { text: `${pct(c.share)} (${pct(c.baseline_share)})` }),
    ]);
  });
}

function statsParts(st) {
  const s = st.selection || {}, b = st.baseline || {};
  const rows = [
    ["selected", `${s.n}` + (st.n_hidden ? ` (+${st.n_hidden} hidden by the filter)` : "")],
    ["error rate", `${pct(s.error_rate)}  [95% CI ${pct(s.ci_low)} – ${pct(s.ci_high)}]`],
    ["vs. filtered", `${pct(b.error_rate)} of ${b.n}`],
    ["lift", times(st.lift)],
  ];
  const parts = [el("table", { class: "fl-kv" }, kvRows(rows)), el("div", { class: "fl-sub", text: "class mix (vs. filtered)" })];
  parts.push(...classMix(st.class_mix || []));
  if ((st.confusions || []).length) {
    parts.push(el("div", { class: "fl-sub", text: "top confusions (label → prediction)" }));
    for (const c of st.confusions) parts.push(el("div", { class: "fl-conf", text: `${c.label_name} → ${c.pred_name}: ${c.n}` }));
  }
  return parts;
}

export function mountStats(ctx) {
  const body = el("div", { class: "fl-stats-body" });
  ctx.slots.side.append(el("section", { class: "fl-panel fl-stats", "aria-label": "Selection statistics" }, [el("h4", { text: "Selection" }), body]));
  function draw() {
    const st = ctx.model.get("stats") || {};
    if (!st.n_selected) {
      const b = st.baseline || {};
      body.replaceChildren(el("div", { class: "fl-hint", text: `Nothing selected. Filter: ${b.n ?? 0} images, error rate ${pct(b.error_rate)}.` }));
      return;
    }
    body.replaceChildren(...statsParts(st));
  }
  ctx.on("change:stats", draw);
  draw();
  return () => {};
}
