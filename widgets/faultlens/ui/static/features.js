// generated from widgets/js/src by `npm run build` (esbuild); edit the sources, not this file

// src/shared/dom.js
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
function setTrait(model, name, value) {
  model.set(name, value);
  model.save_changes();
}

// src/shared/scope.js
function createScope(model) {
  const disposers = [];
  const scope = {
    /** model.on(name, fn), undone on dispose */
    on(name, fn) {
      model.on(name, fn);
      disposers.push(() => model.off(name, fn));
    },
    /** target.addEventListener(type, fn, options), undone on dispose */
    listen(target, type, fn, options) {
      target.addEventListener(type, fn, options);
      disposers.push(() => target.removeEventListener(type, fn, options));
    },
    /** runs `fn` on dispose (a module's own cleanup) */
    defer(fn) {
      if (typeof fn === "function") disposers.push(fn);
    },
    dispose() {
      while (disposers.length) disposers.pop()();
    }
  };
  return scope;
}
function createDispatcher(scope) {
  const handlers = /* @__PURE__ */ new Map();
  scope.on("msg:custom", (msg, buffers) => {
    const handler = msg && handlers.get(msg.type);
    if (handler) handler(msg, buffers);
  });
  return (type, fn) => handlers.set(type, fn);
}

// src/shared/task.js
function createTaskBar(model, on) {
  const text = el("span", { class: "fl-task-text" });
  const fill = el("span", { class: "fl-task-fill" });
  const bar = el("div", { class: "fl-task-bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, [fill]);
  const cancel = el("button", {
    type: "button",
    class: "fl-task-cancel",
    text: "Cancel",
    onclick: () => {
      cancel.disabled = true;
      text.textContent = "cancelling…";
      model.send({ type: "cancel" });
    }
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
      const pct2 = Math.max(0, Math.min(100, Math.round(100 * Number(t.done) / Number(t.total))));
      bar.setAttribute("aria-valuenow", String(pct2));
      fill.style.width = `${pct2}%`;
    } else {
      bar.removeAttribute("aria-valuenow");
      fill.style.width = "";
    }
    cancel.disabled = t.text === "cancelling…";
  }
  on("change:task", draw);
  draw();
  return node;
}

// src/shared/binary.js
function asBytes(dv) {
  if (!dv) return new Uint8Array(0);
  if (dv instanceof ArrayBuffer) return new Uint8Array(dv);
  return new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
}
function blobUrl(buffer) {
  const bytes = asBytes(buffer);
  if (!bytes.byteLength) return null;
  const jpeg = bytes.byteLength > 2 && bytes[0] === 255 && bytes[1] === 216;
  return URL.createObjectURL(new Blob([bytes], { type: jpeg ? "image/jpeg" : "image/png" }));
}

// src/features/images.js
function createImages(ctx) {
  const { model, root } = ctx;
  const urls = /* @__PURE__ */ new Map();
  const asked = /* @__PURE__ */ new Set();
  const pending = /* @__PURE__ */ new Set();
  const view = Math.random().toString(36).slice(2, 10);
  let req = 0, queued = false, closed = false;
  const imgs = () => root.querySelectorAll("img.fl-img");
  function fill() {
    for (const img of imgs()) {
      const pair = urls.get(Number(img.dataset.row));
      const url = pair ? img.alt.startsWith("map") ? pair[1] : pair[0] : null;
      if (url && img.getAttribute("src") !== url) img.src = url;
      else if (!url && img.getAttribute("src")) img.removeAttribute("src");
    }
  }
  function flush() {
    queued = false;
    if (closed) return;
    fill();
    const want = /* @__PURE__ */ new Set();
    for (const img of imgs()) {
      const row = Number(img.dataset.row);
      if (!urls.has(row) && !pending.has(row)) want.add(row);
    }
    const rows = [...want];
    for (let i = 0; i < rows.length; i += 200) {
      const chunk = rows.slice(i, i + 200);
      req += 1;
      const id = `${view}.${req}`;
      asked.add(id);
      for (const r of chunk) pending.add(r);
      model.send({ type: "tiles", rows: chunk, req: id });
    }
  }
  function request() {
    if (queued) return;
    queued = true;
    queueMicrotask(flush);
  }
  const revoke = (pair) => pair.forEach((u) => u && URL.revokeObjectURL(u));
  function reset() {
    asked.clear();
    pending.clear();
    for (const pair of urls.values()) revoke(pair);
    urls.clear();
    if (!closed) request();
  }
  function receive(msg, buffers) {
    if (!asked.delete(msg.req)) return;
    if (msg.feature !== model.get("feature") || msg.kind !== model.get("map_kind") || msg.class !== void 0 && msg.class !== model.get("class_index")) {
      for (const row of msg.rows) pending.delete(row);
      return;
    }
    msg.rows.forEach((row, i) => {
      pending.delete(row);
      if (urls.has(row)) revoke(urls.get(row));
      urls.set(row, [blobUrl(buffers[2 * i]), blobUrl(buffers[2 * i + 1])]);
    });
    fill();
  }
  ctx.handle("tiles", receive);
  return { urls, request, reset, close() {
    closed = true;
    reset();
  } };
}

// src/features/mitigation.js
var num = (v, digits = 1) => v === null || v === void 0 || Number.isNaN(v) ? "–" : Number(v).toFixed(digits);
var signed = (v) => v === null || v === void 0 || Number.isNaN(v) ? "–" : (v > 0 ? "+" : "") + Number(v).toFixed(1);
function createMitigationButton(model) {
  const button = el("button", {
    type: "button",
    class: "fl-mitigate",
    text: "Preview mitigation",
    onclick: () => model.send({ type: "preview_mitigation" })
  });
  function sync() {
    const m = model.get("mitigation") || {};
    const busy = (model.get("task") || {}).state === "running";
    const missing2 = m.missing || "";
    button.disabled = Boolean(missing2) || busy;
    button.title = missing2 ? `Preview mitigation needs: ${missing2}` : busy ? "a task is running" : "retrain the head without the features marked spurious and compare before/after";
  }
  sync();
  return { button, sync };
}
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
    type: "button",
    class: `fl-mcount fl-m${change}`,
    text: label,
    title: `select the ${change} images${group ? ` of ${group.name}` : ""}`,
    onclick: () => model.send({ type: "select_mitigation", change, group: group ? group.name : null })
  });
}
function summaryRows(r) {
  const rows = [["overall accuracy", r.overall.before, r.overall.after, "%", 1]];
  if (r.worst) rows.push([`worst-group accuracy (${r.worst.group_before} → ${r.worst.group_after})`, r.worst.before, r.worst.after, "%", 1]);
  for (const g of r.gaps || []) rows.push([`spurious gap: ${g.name} (top/bottom ${g.k})`, g.before, g.after, " pts", -1]);
  return rows.map(([name, b, a, unit, sign]) => {
    const d = sign * (a - b);
    return el("tr", {}, [
      el("th", { scope: "row", text: name }),
      el("td", { text: `${num(b)}${unit}` }),
      el("td", { text: `${num(a)}${unit}` }),
      el("td", { class: d > 0 ? "fl-up" : d < 0 ? "fl-down" : "", text: signed(a - b) })
    ]);
  });
}
function groupRows(model, r) {
  return (r.groups || []).map((g) => el("tr", {}, [
    el("th", { scope: "row", text: g.name }),
    el("td", { text: String(g.n) }),
    el("td", { text: `${num(g.before)}% → ${num(g.after)}%` }),
    el("td", {}, [bars(g.before, g.after)]),
    el("td", {}, [countButton(model, r, "fixed", g), " ", countButton(model, r, "broken", g)])
  ]));
}
function drawMitigation(ctx) {
  const { model } = ctx, m = model.get("mitigation") || {}, r = m.result;
  const box = ctx.parts.mitigation;
  if (!r) {
    box.replaceChildren();
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const marks = (r.marks || []).map((x) => `${x.name}: ${x.features.join(", ")}`).join("; ");
  const head = (cells) => el("tr", {}, cells.map((c) => el("th", { scope: "col", text: c })));
  const parts = [
    el("div", { class: "fl-mtitle", text: `Mitigation preview — head retrained without the spurious features (${marks})` }),
    m.stale ? el("div", { class: "fl-mstale", role: "status", text: "the marks changed since this preview — Preview mitigation again" }) : null,
    el("table", { class: "fl-mtable fl-msummary" }, [el("thead", {}, [head(["", "before", "after", "change"])]), el("tbody", {}, summaryRows(r))])
  ];
  if ((r.groups || []).length) {
    parts.push(el("table", { class: "fl-mtable fl-mgroups" }, [
      el("thead", {}, [head(["group", "images", "accuracy before → after", "", "test images"])]),
      el("tbody", {}, groupRows(model, r))
    ]));
  }
  parts.push(el("div", { class: "fl-note fl-mfoot" }, [
    el("span", { text: `of ${r.overall.n} test images: ` }),
    countButton(model, r, "fixed", null),
    el("span", { text: ", " }),
    countButton(model, r, "broken", null),
    el("span", { text: ` · ${r.method} on ${r.train_images} training images, epoch ${r.best_epoch} of ${r.epochs_run} kept · ${num(r.seconds)} s` })
  ]));
  box.replaceChildren(...parts.filter(Boolean));
}

// src/shared/format.js
var missing = (v) => v === null || v === void 0 || Number.isNaN(v);
function fmt(v, digits = 3) {
  return missing(v) ? "–" : Number(v).toPrecision(digits);
}
function pct(v) {
  return missing(v) ? "–" : (100 * v).toFixed(1) + "%";
}

// src/features/views.js
function tile(images, row, correct, caption) {
  const pair = images.urls.get(row);
  const a = el("img", { class: "fl-img", alt: `image ${row}` });
  const b = el("img", { class: "fl-img", alt: `map of image ${row}` });
  if (pair) {
    if (pair[0]) a.src = pair[0];
    if (pair[1]) b.src = pair[1];
  }
  a.dataset.row = b.dataset.row = String(row);
  return el("figure", { class: "fl-tile " + (correct ? "fl-ok" : "fl-bad") }, [
    el("div", { class: "fl-pair" }, [a, b]),
    el("figcaption", { text: caption })
  ]);
}
var tiles = (images, rows, correct, values, digits) => rows.map((r, i) => tile(images, r, correct[i], `${correct[i] ? "✓" : "✗"} ${fmt(values[i], digits)}`));
var groupTitle = (text, onclick) => el("button", { type: "button", class: "fl-gtitle", title: "select these images", text, onclick });
function drawFeatures(ctx) {
  const { model } = ctx, cur = model.get("feature");
  ctx.parts.featList.replaceChildren(...model.get("features").map((f) => el("button", {
    class: "fl-feat" + (f.feature === cur ? " fl-current" : "") + (f.mark ? ` fl-${f.mark}` : ""),
    "aria-label": `feature ${f.feature}`,
    text: `#${f.rank} feature ${f.feature} · ${fmt(f.importance)}${f.mark ? " · " + f.mark : f.suggest ? " · spurious?" : ""}`,
    onclick: () => setTrait(model, "feature", f.feature)
  })));
}
function suggestion(shown, cur) {
  if (!shown || !shown.suggest || cur) return null;
  return el("span", { class: "fl-suggest", text: ` spurious? (suspicion ${fmt(shown.suspicion, 2)}): confirm with "spurious", reject with "core"` });
}
function drawMark(ctx) {
  const { model } = ctx, cur = model.get("mark"), f = model.get("feature");
  const btn = (m) => el("button", {
    class: "fl-markbtn" + (cur === m ? " fl-on" : ""),
    "aria-label": `mark ${m}`,
    "aria-pressed": String(cur === m),
    text: m,
    onclick: () => model.send({ type: "set_mark", mark: cur === m ? "" : m })
  });
  const shown = model.get("features").find((x) => x.feature === f);
  const parts = [el("span", { text: f >= 0 ? `feature ${f}: ` : "no feature" }), btn("core"), btn("spurious"), suggestion(shown, cur)];
  ctx.parts.markBar.replaceChildren(...parts.filter(Boolean));
}
function drawGroups(ctx) {
  const { model, images } = ctx, g = model.get("groups");
  if (!g || !g.top) {
    ctx.parts.groups.replaceChildren(el("p", { text: "Choose a feature." }));
    return;
  }
  const block = (name, group, key) => el("div", { class: "fl-group" }, [
    groupTitle(`${name} ${group.rows.length} by activation · accuracy ${pct(group.accuracy)}`, () => model.send({ type: "select", group: key })),
    el("div", { class: "fl-tiles" }, tiles(images, group.rows, group.correct, group.acts))
  ]);
  const gap = g.gap || {};
  ctx.parts.groups.replaceChildren(
    el("div", { class: "fl-gap", text: `gap (top-${gap.k ?? "–"} − bottom-${gap.k ?? "–"}): ${fmt(gap.gap)} points, 95% CI [${fmt(gap.ci_low)}, ${fmt(gap.ci_high)}] · ${g.scale}` }),
    ...g.note ? [el("div", { class: "fl-note", text: g.note })] : [],
    block("most activating", g.top, "top"),
    block("least activating", g.bottom, "bottom")
  );
  images.request();
}
function drawStrip(ctx) {
  const { model, images } = ctx, s = model.get("strip");
  if (!s || !s.rows || !s.rows.length) {
    ctx.parts.strip.replaceChildren(el("p", { class: "fl-note", text: s && s.note || "" }));
    return;
  }
  const gap = s.gap || {};
  ctx.parts.strip.replaceChildren(
    groupTitle(
      `spuriosity ranking (features ${s.features.join(", ")}): least → most spurious · gap ${fmt(gap.gap)} points [${fmt(gap.ci_low)}, ${fmt(gap.ci_high)}]`,
      () => model.send({ type: "select", group: "strip" })
    ),
    el("div", { class: "fl-note", text: s.note }),
    el("div", { class: "fl-tiles fl-striprow" }, tiles(images, s.rows, s.correct, s.score, 2))
  );
  images.request();
}

// src/features/index.js
function controls(model) {
  const classSel = el("select", { "aria-label": "class", onchange: () => setTrait(model, "class_index", Number(classSel.value)) });
  const kindSel = el("select", { "aria-label": "map kind", onchange: () => setTrait(model, "map_kind", kindSel.value) }, [
    el("option", { value: "nam", text: "activation map (NAM)" }),
    el("option", { value: "gradcam", text: "Grad-CAM (class)" })
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
    status: el("div", { class: "fl-status" })
  };
  const root = el("div", { class: "fl-features" }, [
    c.head,
    parts.task,
    el("div", { class: "fl-body" }, [parts.featList, el("div", { class: "fl-main" }, [parts.markBar, parts.mitigation, parts.groups, parts.strip])]),
    parts.status
  ]);
  return { root, parts, controls: c };
}
function render({ model, el: host }) {
  const scope = createScope(model);
  const { root, parts, controls: c } = layout(model, scope.on);
  const ctx = { model, root, parts, handle: createDispatcher(scope) };
  ctx.images = createImages(ctx);
  const redrawImages = () => {
    ctx.images.reset();
    drawGroups(ctx);
    drawStrip(ctx);
  };
  scope.on("change:class_names", c.sync);
  scope.on("change:class_index", () => {
    c.classSel.value = String(model.get("class_index"));
    ctx.images.reset();
  });
  scope.on("change:features", () => {
    drawFeatures(ctx);
    drawMark(ctx);
  });
  scope.on("change:feature", () => {
    ctx.images.reset();
    drawFeatures(ctx);
    drawMark(ctx);
  });
  scope.on("change:mark", () => drawMark(ctx));
  scope.on("change:groups", () => drawGroups(ctx));
  scope.on("change:strip", () => drawStrip(ctx));
  scope.on("change:map_kind", () => {
    c.kindSel.value = model.get("map_kind");
    redrawImages();
  });
  scope.on("change:opacity", () => {
    c.opacity.value = String(model.get("opacity"));
    redrawImages();
  });
  scope.on("change:status", () => {
    parts.status.textContent = model.get("status");
  });
  scope.on("change:mitigation", () => {
    c.mitigate.sync();
    drawMitigation(ctx);
  });
  scope.on("change:task", c.mitigate.sync);
  host.append(root);
  c.sync();
  parts.status.textContent = model.get("status") || "";
  drawFeatures(ctx);
  drawMark(ctx);
  drawGroups(ctx);
  drawStrip(ctx);
  drawMitigation(ctx);
  return () => {
    scope.dispose();
    ctx.images.close();
  };
}
var features_default = { render };
export {
  features_default as default
};
