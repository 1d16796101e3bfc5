// faultlens FeatureBrowser front end: class picker, top features, top-k / bottom-k images beside their
// activation-map overlays (PNG buffers pulled on demand), core/spurious marks, spuriosity strip.
// Hand-written ESM, no dependencies. Every data string goes into the DOM through textContent or
// attributes, never innerHTML.

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

const pct = (v) => (v === null || v === undefined || Number.isNaN(v) ? "–" : (100 * v).toFixed(1) + "%");
const num = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toPrecision(d));

function render({ model, el: root }) {
  const urls = new Map(); // row → [originalURL, overlayURL] for the current map settings
  let req = 0;
  let gen = 0; // bumped by resetImages: the shown images went stale (feature, class, map kind, opacity)
  const reqGen = new Map(); // request id → the generation it was sent in
  const pending = new Set(); // rows asked for in this generation, not yet answered
  let flushQueued = false;
  const cleanup = [];
  const on = (ev, fn) => { model.on(ev, fn); cleanup.push(() => model.off(ev, fn)); };

  const wrap = el("div", { class: "fl-features" });
  const classSel = el("select", { "aria-label": "class" });
  const kindSel = el("select", { "aria-label": "map kind" }, [
    el("option", { value: "nam", text: "activation map (NAM)" }),
    el("option", { value: "gradcam", text: "Grad-CAM (class)" }),
  ]);
  const opacity = el("input", { type: "range", min: "0", max: "1", step: "0.05", "aria-label": "overlay opacity" });
  const exportBtn = el("button", { text: "export CSV", "aria-label": "export marks" });
  const head = el("div", { class: "fl-head" }, [
    el("label", { text: "class " }), classSel, kindSel, el("label", { text: " opacity " }), opacity, exportBtn,
  ]);
  const featList = el("div", { class: "fl-featlist", role: "listbox", "aria-label": "top features" });
  const markBar = el("div", { class: "fl-mark" });
  const groupsEl = el("div", { class: "fl-groups" });
  const stripEl = el("div", { class: "fl-strip" });
  const status = el("div", { class: "fl-status" });
  wrap.append(head, el("div", { class: "fl-body" }, [featList, el("div", { class: "fl-main" }, [markBar, groupsEl, stripEl])]), status);
  root.append(wrap);

  function fillClasses() {
    classSel.replaceChildren(...model.get("class_names").map((n, i) => el("option", { value: String(i), text: `${i}: ${n}` })));
    classSel.value = String(model.get("class_index"));
  }
  classSel.addEventListener("change", () => { model.set("class_index", Number(classSel.value)); model.save_changes(); });
  kindSel.addEventListener("change", () => { model.set("map_kind", kindSel.value); model.save_changes(); });
  opacity.addEventListener("change", () => { model.set("opacity", Number(opacity.value)); model.save_changes(); });
  exportBtn.addEventListener("click", () => model.send({ type: "export" }));

  function drawFeatures() {
    const cur = model.get("feature");
    featList.replaceChildren(...model.get("features").map((f) => el("button", {
      class: "fl-feat" + (f.feature === cur ? " fl-current" : "") + (f.mark ? ` fl-${f.mark}` : ""),
      "aria-label": `feature ${f.feature}`,
      text: `#${f.rank} feature ${f.feature} · ${num(f.importance)}${f.mark ? " · " + f.mark : f.suggest ? " · spurious?" : ""}`,
      onclick: () => { model.set("feature", f.feature); model.save_changes(); },
    })));
  }

  function drawMark() {
    const cur = model.get("mark");
    const btn = (m, label) => el("button", {
      class: "fl-markbtn" + (cur === m ? " fl-on" : ""), "aria-label": `mark ${label}`, "aria-pressed": String(cur === m), text: label,
      onclick: () => model.send({ type: "set_mark", mark: cur === m ? "" : m }),
    });
    const f = model.get("feature");
    const shown = model.get("features").find((x) => x.feature === f);
    const hint = shown && shown.suggest && !cur
      ? el("span", { class: "fl-suggest", text: ` spurious? (suspicion ${num(shown.suspicion, 2)}): confirm with "spurious", reject with "core"` })
      : null;
    markBar.replaceChildren(
      el("span", { text: f >= 0 ? `feature ${f}: ` : "no feature" }), btn("core", "core"), btn("spurious", "spurious"), hint,
    );
  }

  function tile(row, correct, caption) {
    const pair = urls.get(row);
    const a = el("img", { class: "fl-img", alt: `image ${row}` });
    const b = el("img", { class: "fl-img", alt: `map of image ${row}` });
    if (pair) { a.src = pair[0]; b.src = pair[1]; }
    a.dataset.row = b.dataset.row = String(row);
    return el("figure", { class: "fl-tile " + (correct ? "fl-ok" : "fl-bad") }, [
      el("div", { class: "fl-pair" }, [a, b]), el("figcaption", { text: caption }),
    ]);
  }

  function drawGroups() {
    const g = model.get("groups");
    if (!g || !g.top) { groupsEl.replaceChildren(el("p", { text: "Choose a feature." })); return; }
    const block = (name, grp) => el("div", { class: "fl-group" }, [
      el("button", { type: "button", class: "fl-gtitle", title: "select these images",
        text: `${name} ${grp.rows.length} by activation · accuracy ${pct(grp.accuracy)}`,
        onclick: () => model.send({ type: "select", group: name === "most activating" ? "top" : "bottom" }) }),
      el("div", { class: "fl-tiles" }, grp.rows.map((r, i) => tile(r, grp.correct[i], `${grp.correct[i] ? "✓" : "✗"} ${num(grp.acts[i])}`))),
    ]);
    const gap = g.gap || {};
    groupsEl.replaceChildren(
      el("div", { class: "fl-gap", text: `gap (top-${gap.k ?? "–"} − bottom-${gap.k ?? "–"}): ${num(gap.gap)} points, 95% CI [${num(gap.ci_low)}, ${num(gap.ci_high)}] · ${g.scale}` }),
      ...(g.note ? [el("div", { class: "fl-note", text: g.note })] : []),
      block("most activating", g.top), block("least activating", g.bottom),
    );
    request();
  }

  function drawStrip() {
    const s = model.get("strip");
    if (!s || !s.rows || !s.rows.length) { stripEl.replaceChildren(el("p", { class: "fl-note", text: (s && s.note) || "" })); return; }
    const gap = s.gap || {};
    stripEl.replaceChildren(
      el("button", { type: "button", class: "fl-gtitle", title: "select these images",
        text: `spuriosity ranking (features ${s.features.join(", ")}): least → most spurious · gap ${num(gap.gap)} points [${num(gap.ci_low)}, ${num(gap.ci_high)}]`,
        onclick: () => model.send({ type: "select", group: "strip" }) }),
      el("div", { class: "fl-note", text: s.note }),
      el("div", { class: "fl-tiles fl-striprow" }, s.rows.map((r, i) => tile(r, s.correct[i], `${s.correct[i] ? "✓" : "✗"} ${num(s.score[i], 2)}`))),
    );
    request();
  }

  // Images are asked for once the current batch of model changes has been applied (a microtask
  // later), for the tiles then on the page: so whatever order a batch's change events come in,
  // the request is made for the final feature / class / map settings and nothing is left blank.
  function request() {
    if (flushQueued) return;
    flushQueued = true;
    queueMicrotask(flush);
  }
  function fill() {
    for (const img of wrap.querySelectorAll("img.fl-img")) {
      const pair = urls.get(Number(img.dataset.row));
      const url = pair ? (img.alt.startsWith("map") ? pair[1] : pair[0]) : null;
      if (url && img.getAttribute("src") !== url) img.src = url;
      else if (!url && img.getAttribute("src")) img.removeAttribute("src"); // a revoked URL
    }
  }
  function flush() {
    flushQueued = false;
    fill();
    const want = new Set();
    for (const img of wrap.querySelectorAll("img.fl-img")) {
      const row = Number(img.dataset.row);
      if (!urls.has(row) && !pending.has(row)) want.add(row);
    }
    const rows = [...want];
    for (let i = 0; i < rows.length; i += 200) { // Python answers at most 200 rows a request
      const chunk = rows.slice(i, i + 200);
      req += 1;
      reqGen.set(req, gen);
      for (const r of chunk) pending.add(r);
      model.send({ type: "tiles", rows: chunk, req });
    }
  }

  function revoke(pair) { URL.revokeObjectURL(pair[0]); URL.revokeObjectURL(pair[1]); }
  function resetImages() {
    gen += 1; // replies to earlier requests are dropped from now on
    reqGen.clear();
    pending.clear();
    for (const pair of urls.values()) revoke(pair);
    urls.clear(); // the tiles drawn next (or redrawn now) ask for images with the new settings
  }

  on("msg:custom", (msg, buffers) => {
    if (!msg || msg.type !== "tiles") return;
    const sentIn = reqGen.get(msg.req);
    reqGen.delete(msg.req);
    // a late reply for another feature, class, map kind or opacity must not fill this view
    if (sentIn !== gen || msg.feature !== model.get("feature") || msg.kind !== model.get("map_kind")
        || (msg.class !== undefined && msg.class !== model.get("class_index"))) return;
    msg.rows.forEach((row, i) => {
      const mk = (buf) => URL.createObjectURL(new Blob([buf], { type: "image/png" }));
      pending.delete(row);
      if (urls.has(row)) revoke(urls.get(row)); // overlapping requests: never leak a blob URL
      urls.set(row, [mk(buffers[2 * i]), mk(buffers[2 * i + 1])]);
    });
    fill();
  });

  on("change:class_names", fillClasses);
  on("change:class_index", () => { classSel.value = String(model.get("class_index")); resetImages(); });
  on("change:features", () => { drawFeatures(); drawMark(); });
  on("change:feature", () => { resetImages(); drawFeatures(); drawMark(); });
  on("change:mark", drawMark);
  on("change:groups", drawGroups);
  on("change:strip", drawStrip);
  on("change:map_kind", () => { kindSel.value = model.get("map_kind"); resetImages(); drawGroups(); drawStrip(); });
  on("change:opacity", () => { opacity.value = String(model.get("opacity")); resetImages(); drawGroups(); drawStrip(); });
  on("change:status", () => { status.textContent = model.get("status"); });

  fillClasses();
  kindSel.value = model.get("map_kind");
  opacity.value = String(model.get("opacity"));
  status.textContent = model.get("status") || "";
  drawFeatures(); drawMark(); drawGroups(); drawStrip();
  return () => { cleanup.forEach((f) => f()); resetImages(); flushQueued = true; /* no more requests */ };
}

export default { render };
