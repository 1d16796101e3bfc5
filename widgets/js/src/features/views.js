// The FeatureBrowser's views: the feature list, the mark bar, the top / bottom image groups with
// their accuracy gap, and the spuriosity strip. Tiles show an image beside its activation map.

import { el, setTrait } from "../shared/dom.js";
import { fmt, pct } from "../shared/format.js";

function tile(images, row, correct, caption) {
  const pair = images.urls.get(row);
  const a = el("img", { class: "fl-img", alt: `image ${row}` });
  const b = el("img", { class: "fl-img", alt: `map of image ${row}` });
  if (pair) { if (pair[0]) a.src = pair[0]; if (pair[1]) b.src = pair[1]; }
  a.dataset.row = b.dataset.row = String(row);
  return el("figure", { class: "fl-tile " + (correct ? "fl-ok" : "fl-bad") }, [
    el("div", { class: "fl-pair" }, [a, b]), el("figcaption", { text: caption }),
  ]);
}

const tiles = (images, rows, correct, values, digits) =>
  rows.map((r, i) => tile(images, r, correct[i], `${correct[i] ? "✓" : "✗"} ${fmt(values[i], digits)}`));

const groupTitle = (text, onclick) => el("button", { type: "button", class: "fl-gtitle", title: "select these images", text, onclick });

export function drawFeatures(ctx) {
  const { model } = ctx, cur = model.get("feature");
  ctx.parts.featList.replaceChildren(...model.get("features").map((f) => el("button", {
    class: "fl-feat" + (f.feature === cur ? " fl-current" : "") + (f.mark ? ` fl-${f.mark}` : ""),
    "aria-label": `feature ${f.feature}`,
    text: `#${f.rank} feature ${f.feature} · ${fmt(f.importance)}${f.mark ? " · " + f.mark : f.suggest ? " · spurious?" : ""}`,
    onclick: () => setTrait(model, "feature", f.feature),
  })));
}

/** A suggested, unmarked feature: say so beside the mark buttons. */
function suggestion(shown, cur) {
  if (!shown || !shown.suggest || cur) return null;
  return el("span", { class: "fl-suggest", text: ` spurious? (suspicion ${fmt(shown.suspicion, 2)}): confirm with "spurious", reject with "core"` });
}

export function drawMark(ctx) {
  const { model } = ctx, cur = model.get("mark"), f = model.get("feature");
  const btn = (m) => el("button", {
    class: "fl-markbtn" + (cur === m ? " fl-on" : ""), "aria-label": `mark ${m}`, "aria-pressed": String(cur === m), text: m,
    onclick: () => model.send({ type: "set_mark", mark: cur === m ? "" : m }),
  });
  const shown = model.get("features").find((x) => x.feature === f);
  const parts = [el("span", { text: f >= 0 ? `feature ${f}: ` : "no feature" }), btn("core"), btn("spurious"), suggestion(shown, cur)];
  ctx.parts.markBar.replaceChildren(...parts.filter(Boolean));
}

export function drawGroups(ctx) {
  const { model, images } = ctx, g = model.get("groups");
  if (!g || !g.top) { ctx.parts.groups.replaceChildren(el("p", { text: "Choose a feature." })); return; }
  const block = (name, group, key) => el("div", { class: "fl-group" }, [
    groupTitle(`${name} ${group.rows.length} by activation · accuracy ${pct(group.accuracy)}`, () => model.send({ type: "select", group: key })),
    el("div", { class: "fl-tiles" }, tiles(images, group.rows, group.correct, group.acts)),
  ]);
  const gap = g.gap || {};
  ctx.parts.groups.replaceChildren(
    el("div", { class: "fl-gap", text: `gap (top-${gap.k ?? "–"} − bottom-${gap.k ?? "–"}): ${fmt(gap.gap)} points, 95% CI [${fmt(gap.ci_low)}, ${fmt(gap.ci_high)}] · ${g.scale}` }),
    ...(g.note ? [el("div", { class: "fl-note", text: g.note })] : []),
    block("most activating", g.top, "top"), block("least activating", g.bottom, "bottom"),
  );
  images.request();
}

export function drawStrip(ctx) {
  const { model, images } = ctx, s = model.get("strip");
  if (!s || !s.rows || !s.rows.length) { ctx.parts.strip.replaceChildren(el("p", { class: "fl-note", text: (s && s.note) || "" })); return; }
  const gap = s.gap || {};
  ctx.parts.strip.replaceChildren(
    groupTitle(`spuriosity ranking (features ${s.features.join(", ")}): least → most spurious · gap ${fmt(gap.gap)} points [${fmt(gap.ci_low)}, ${fmt(gap.ci_high)}]`,
      () => model.send({ type: "select", group: "strip" })),
    el("div", { class: "fl-note", text: s.note }),
    el("div", { class: "fl-tiles fl-striprow" }, tiles(images, s.rows, s.correct, s.score, 2)),
  );
  images.request();
}
