// Discovered slices: found by a method (not named by the user), shown apart from the saved ones
// with a "found automatically" badge. A row click asks Python to select that slice; under the
// selected slice, its summary (each part that knows its images selects them) and the pictures
// that back it (asked for once per slice, as PNG buffers).

import { blobUrl } from "../shared/binary.js";
import { el, onActivateKey } from "../shared/dom.js";
import { pct, times } from "../shared/format.js";
import { summaryParts } from "./describe.js";

const HEAD = ["", "slice", "method", "images", "error rate [95% CI]", "lift", "description"];

function descriptionCell(s) {
  const [head, first] = s.summary || [];
  return el("td", { class: "fl-disc-desc" }, [
    head ? el("div", { class: "fl-desc-sentence" }, [el("b", { text: head.text }), first ? el("span", { text: ` · ${first.text}` }) : null]) : null,
    ...(s.descriptions || []).filter((d) => d.source !== "summary").map((d) => el("div", { class: "fl-desc-line" }, [
      el("span", { class: "fl-source", text: d.source }),
      el("span", { class: "fl-terms", text: (d.terms || []).join(", ") || d.note || "(no contrasting terms)" }),
    ])),
  ]);
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

/** The pictures of one slice: figures with captions, or what is still missing. */
function evidenceBlock(ev) {
  if (!ev) return el("div", { class: "fl-evidence fl-hint", role: "status", text: "loading the evidence pictures…" });
  if (!ev.items.length) return el("div", { class: "fl-evidence fl-hint", text: ev.note || "no pictures" });
  const groups = new Map();
  for (const it of ev.items) {
    if (!groups.has(it.source)) groups.set(it.source, []);
    groups.get(it.source).push(it);
  }
  return el("div", { class: "fl-evidence" }, [...groups].map(([source, items]) => el("div", { class: "fl-evidence-group" }, [
    el("div", { class: "fl-source", text: source }),
    el("div", { class: "fl-evidence-figs" }, items.map((it) => el("figure", { class: "fl-evidence-fig", "data-kind": it.kind }, [
      it.url ? el("img", { src: it.url, alt: it.caption }) : el("span", { class: "fl-hint", text: "(empty picture)" }),
      el("figcaption", { text: it.caption }),
    ]))),
  ])));
}

function detailRow(model, s, ev) {
  return el("tr", { class: "fl-disc-detail", "data-index": String(s.index) }, [
    el("td", { colspan: String(HEAD.length) }, [
      (s.summary || []).length ? summaryParts(model, s.summary, s.index) : el("div", { class: "fl-hint", text: "no summary: describe the slice to see one" }),
      evidenceBlock(ev),
    ]),
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
  const evidence = new Map(); // slice index -> {items: [{url, caption, source, kind}], note}
  const asked = new Set();
  function forget() {
    for (const ev of evidence.values()) for (const it of ev.items) if (it.url) URL.revokeObjectURL(it.url);
    evidence.clear();
    asked.clear();
  }
  function draw() {
    const list = model.get("discovered") || [];
    if (!list.length) {
      body.replaceChildren(el("div", { class: "fl-hint", text: "No discovered slices yet: press “Find slices” or call explorer.find_slices()." }));
      return;
    }
    const active = model.get("active_slice");
    const head = el("tr", {}, HEAD.map((h) => el("th", { text: h })));
    const rows = [];
    for (const s of list) {
      rows.push(sliceRow(model, s, active));
      if (s.index === active) {
        rows.push(detailRow(model, s, evidence.get(s.index)));
        if (!evidence.has(s.index) && !asked.has(s.index)) {
          asked.add(s.index);
          model.send({ type: "slice_evidence", index: s.index });
        }
      }
    }
    body.replaceChildren(el("table", { class: "fl-disc-table" }, [el("thead", {}, [head]), el("tbody", {}, rows)]));
  }
  ctx.handle("slice_evidence", (msg, buffers) => {
    const items = (msg.items || []).map((it, k) => ({ ...it, url: blobUrl(buffers && buffers[k]) }));
    const old = evidence.get(msg.index);
    if (old) for (const it of old.items) if (it.url) URL.revokeObjectURL(it.url);
    evidence.set(msg.index, { items, note: msg.note || "" });
    draw();
  });
  ctx.on("change:discovered", () => { forget(); draw(); });
  ctx.on("change:active_slice", draw);
  draw();
  return forget;
}
