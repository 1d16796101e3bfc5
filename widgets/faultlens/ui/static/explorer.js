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
function onActivateKey(fn) {
  return (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      fn();
    }
  };
}
function kvRows(rows) {
  return rows.map(([k, v]) => el("tr", {}, [el("th", { text: k }), el("td", { text: v })]));
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
function signal() {
  const fns = /* @__PURE__ */ new Set();
  return {
    emit: (...args) => fns.forEach((f) => f(...args)),
    subscribe(fn) {
      fns.add(fn);
      return () => fns.delete(fn);
    }
  };
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
function mountTask(ctx) {
  ctx.slots.toolbar.after(createTaskBar(ctx.model, ctx.on));
}

// src/shared/binary.js
function asBytes(dv) {
  if (!dv) return new Uint8Array(0);
  if (dv instanceof ArrayBuffer) return new Uint8Array(dv);
  return new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
}
function typed(dv, Type) {
  const b = asBytes(dv);
  const n = Math.floor(b.byteLength / Type.BYTES_PER_ELEMENT);
  if (b.byteOffset % Type.BYTES_PER_ELEMENT === 0) return new Type(b.buffer, b.byteOffset, n);
  return new Type(b.slice().buffer, 0, n);
}
function blobUrl(buffer) {
  const bytes = asBytes(buffer);
  if (!bytes.byteLength) return null;
  const jpeg = bytes.byteLength > 2 && bytes[0] === 255 && bytes[1] === 216;
  return URL.createObjectURL(new Blob([bytes], { type: jpeg ? "image/jpeg" : "image/png" }));
}

// src/explorer/data.js
function finiteBounds(x, y) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const a = x[i], b = y[i];
    if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
    if (a < x0) x0 = a;
    if (a > x1) x1 = a;
    if (b < y0) y0 = b;
    if (b > y1) y1 = b;
  }
  return x0 <= x1 ? { x0, x1, y0, y1 } : { x0: -1, x1: 1, y0: -1, y1: 1 };
}
function createData(model) {
  const d = {
    x: new Float32Array(0),
    y: new Float32Array(0),
    codes: new Uint8Array(0),
    visible: new Uint8Array(0),
    selMask: new Uint8Array(0),
    selRows: new Uint32Array(0),
    selCount: 0,
    version: 0,
    bounds: null,
    /** true when point i is shown and placed */
    shown: (i) => d.visible[i] && d.x[i] === d.x[i] && d.y[i] === d.y[i],
    loadXY() {
      d.x = typed(model.get("_x"), Float32Array);
      d.y = typed(model.get("_y"), Float32Array);
      d.version += 1;
      d.bounds = finiteBounds(d.x, d.y);
      if (d.selMask.length !== d.x.length) d.selMask = new Uint8Array(d.x.length);
    },
    loadColor() {
      d.codes = typed(model.get("_color"), Uint8Array);
      d.version += 1;
    },
    loadVisible() {
      d.visible = typed(model.get("_visible"), Uint8Array);
      d.version += 1;
    },
    /** rows: the selected row indices (Uint32Array) */
    setSelection(rows) {
      d.selMask = new Uint8Array(d.x.length);
      for (let k = 0; k < rows.length; k++) if (rows[k] < d.selMask.length) d.selMask[rows[k]] = 1;
      d.selRows = rows;
      d.selCount = rows.length;
    }
  };
  return d;
}

// src/explorer/describe.js
function summaryParts(model, parts, index) {
  return el("div", { class: "fl-summary", role: "group", "aria-label": "summary" }, (parts || []).map((p, k) => {
    const cls = "fl-part" + (k === 0 && p.term === "header" ? " fl-part-head" : "");
    if (p.n == null) return el("span", { class: cls, text: p.text, title: "does not say which images carry it" });
    return el("button", {
      type: "button",
      class: cls + " fl-part-link",
      "data-part": String(p.part),
      text: p.text,
      title: `select the ${p.n} images that carry it` + (p.among != null ? ` (of the ${p.among} members whose maps were computed)` : ""),
      onclick: (ev) => {
        ev.stopPropagation();
        model.send({ type: "select_part", index, part: p.part });
      }
    });
  }));
}
var EMPTY = "Select images, then “Describe selection”: captions, CLIP phrases or ImageNet tags, each labelled with its source.";
function itemParts(ctx, item, want) {
  if (item.source === "summary" && item.parts) {
    return [el("div", { class: "fl-desc-item", "data-source": item.source }, [
      el("span", { class: "fl-source", text: item.source }),
      summaryParts(ctx.model, item.parts, -1)
    ])];
  }
  const terms = (item.terms || []).map(([t]) => t);
  const parts = [el("div", { class: "fl-desc-item", "data-source": item.source }, [
    el("span", { class: "fl-source", text: item.source }),
    el("span", { class: "fl-terms", text: terms.join(", ") || "(no terms stand out against the reference group)" })
  ])];
  if ((item.captions || []).length) {
    parts.push(el("ul", { class: "fl-caplist" }, item.captions.map((c) => el("li", { class: "fl-capitem", "data-row": String(c.row), title: c.id }, [
      ctx.thumbs.image(c.row, "fl-mini", `image ${c.row}`, want),
      el("span", { class: "fl-captext", text: c.caption })
    ]))));
  }
  return parts;
}
function mountDescribe(ctx) {
  const { model, data } = ctx;
  const button = el("button", {
    type: "button",
    class: "fl-describe",
    text: "Describe selection",
    title: "Describe the selected images (captions, phrases or ImageNet tags)",
    onclick: () => {
      button.disabled = true;
      state.textContent = "describing…";
      model.send({ type: "describe" });
    }
  });
  const state = el("span", { class: "fl-desc-state", role: "status", "aria-live": "polite" });
  const body = el("div", { class: "fl-desc-body" });
  ctx.slots.insights.append(el("section", { class: "fl-panel fl-describe-panel", "aria-label": "Description of the selection" }, [
    el("div", { class: "fl-panel-head" }, [el("h4", { text: "Description" }), button, state]),
    body
  ]));
  function drawBusy() {
    const busy = !!model.get("describing");
    button.disabled = busy || !data.selCount;
    button.setAttribute("aria-busy", String(busy));
    state.textContent = busy ? "describing…" : "";
    ctx.root.classList.toggle("fl-is-describing", busy);
  }
  function draw() {
    const d = model.get("descriptions") || {};
    drawBusy();
    if (!d.items && !d.error) {
      body.replaceChildren(el("div", { class: "fl-hint", text: EMPTY }));
      return;
    }
    const want = [];
    const parts = [el("div", { class: "fl-sub", text: `${d.n || 0} images described` })];
    if (d.stale) parts.push(el("div", { class: "fl-desc-stale", role: "status", text: "described an earlier selection — Describe again" }));
    if (d.error) parts.push(el("div", { class: "fl-desc-error", role: "alert", text: `error: ${d.error}` }));
    for (const item of d.items || []) parts.push(...itemParts(ctx, item, want));
    for (const note of d.notes || []) parts.push(el("div", { class: "fl-desc-note", text: note }));
    body.replaceChildren(...parts);
    ctx.thumbs.request(want);
  }
  ctx.on("change:descriptions", draw);
  ctx.on("change:describing", drawBusy);
  const unsubscribe = ctx.selection.changed.subscribe(drawBusy);
  draw();
  return unsubscribe;
}

// src/shared/format.js
var missing = (v) => v === null || v === void 0 || Number.isNaN(v);
function fmt(v, digits = 3) {
  return missing(v) ? "–" : Number(v).toPrecision(digits);
}
function pct(v) {
  return missing(v) ? "–" : (100 * v).toFixed(1) + "%";
}
function times(v) {
  return missing(v) ? "–" : `${Number(v).toFixed(2)}×`;
}

// src/explorer/discovered.js
var HEAD = ["", "slice", "method", "images", "error rate [95% CI]", "lift", "description"];
function descriptionCell(s) {
  const [head, first] = s.summary || [];
  return el("td", { class: "fl-disc-desc" }, [
    head ? el("div", { class: "fl-desc-sentence" }, [el("b", { text: head.text }), first ? el("span", { text: ` · ${first.text}` }) : null]) : null,
    ...(s.descriptions || []).filter((d) => d.source !== "summary").map((d) => el("div", { class: "fl-desc-line" }, [
      el("span", { class: "fl-source", text: d.source }),
      el("span", { class: "fl-terms", text: (d.terms || []).join(", ") || d.note || "(no contrasting terms)" })
    ]))
  ]);
}
function sliceRow(model, s, active) {
  const sw = el("span", { class: "fl-swatch" });
  sw.style.background = s.color || "#bebebe";
  const select = () => model.send({ type: "select_slice", index: s.index });
  return el("tr", {
    class: "fl-disc-row" + (s.index === active ? " fl-active" : ""),
    "data-index": String(s.index),
    tabindex: "0",
    role: "button",
    "aria-label": `select discovered slice ${s.name}`,
    "aria-pressed": String(s.index === active),
    onclick: select,
    onkeydown: onActivateKey(select)
  }, [
    el("td", {}, [sw]),
    el("td", { class: "fl-disc-name", text: s.name }),
    el("td", { text: s.method }),
    el("td", { class: "fl-num", text: String(s.size) }),
    el("td", { class: "fl-num fl-rate" }, [el("span", { text: pct(s.error_rate) }), el("span", { class: "fl-ci", text: ` [${pct(s.ci_low)} – ${pct(s.ci_high)}]` })]),
    el("td", { class: "fl-num", text: times(s.lift) }),
    descriptionCell(s)
  ]);
}
function evidenceBlock(ev) {
  if (!ev) return el("div", { class: "fl-evidence fl-hint", role: "status", text: "loading the evidence pictures…" });
  if (!ev.items.length) return el("div", { class: "fl-evidence fl-hint", text: ev.note || "no pictures" });
  const groups = /* @__PURE__ */ new Map();
  for (const it of ev.items) {
    if (!groups.has(it.source)) groups.set(it.source, []);
    groups.get(it.source).push(it);
  }
  return el("div", { class: "fl-evidence" }, [...groups].map(([source, items]) => el("div", { class: "fl-evidence-group" }, [
    el("div", { class: "fl-source", text: source }),
    el("div", { class: "fl-evidence-figs" }, items.map((it) => el("figure", { class: "fl-evidence-fig", "data-kind": it.kind }, [
      it.url ? el("img", { src: it.url, alt: it.caption }) : el("span", { class: "fl-hint", text: "(empty picture)" }),
      el("figcaption", { text: it.caption })
    ])))
  ])));
}
function detailRow(model, s, ev) {
  return el("tr", { class: "fl-disc-detail", "data-index": String(s.index) }, [
    el("td", { colspan: String(HEAD.length) }, [
      (s.summary || []).length ? summaryParts(model, s.summary, s.index) : el("div", { class: "fl-hint", text: "no summary: describe the slice to see one" }),
      evidenceBlock(ev)
    ])
  ]);
}
function mountDiscovered(ctx) {
  const { model } = ctx;
  const find = el("button", {
    type: "button",
    class: "fl-find",
    text: "Find slices",
    title: "Discover failure slices (failure directions, the error-aware mixture and likely label errors, de-duplicated)",
    onclick: () => {
      ctx.setStatus("finding slices…");
      model.send({ type: "find_slices", n_slices: 5 });
    }
  });
  const body = el("div", { class: "fl-disc-body" });
  ctx.slots.insights.append(el("section", { class: "fl-panel fl-discovered", "aria-label": "Discovered slices" }, [
    el("div", { class: "fl-panel-head" }, [el("h4", { text: "Discovered slices" }), el("span", { class: "fl-badge fl-badge-auto", text: "found automatically" }), find]),
    body
  ]));
  const evidence = /* @__PURE__ */ new Map();
  const asked = /* @__PURE__ */ new Set();
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
    if (old) {
      for (const it of old.items) if (it.url) URL.revokeObjectURL(it.url);
    }
    evidence.set(msg.index, { items, note: msg.note || "" });
    draw();
  });
  ctx.on("change:discovered", () => {
    forget();
    draw();
  });
  ctx.on("change:active_slice", draw);
  draw();
  return forget;
}

// src/explorer/toolbar.js
function fillSelect(select, options, value) {
  select.replaceChildren(...options.map((o) => el("option", { value: o, text: o })));
  select.value = value;
}
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
      })
    );
  }
  function sync() {
    const names = model.get("class_names") || [];
    const chosen = new Set(model.get("filter_classes") || []);
    const key = JSON.stringify(names);
    details.querySelector("summary").textContent = chosen.size ? `classes (${chosen.size}/${names.length})` : "classes (all)";
    if (box.dataset.names === key) {
      for (const cb of checks()) cb.checked = chosen.size === 0 || chosen.has(Number(cb.dataset.label));
      return;
    }
    box.dataset.names = key;
    rebuild(names, chosen);
  }
  return { node: details, sync };
}
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
      class: "fl-mode fl-mode-" + m,
      type: "button",
      "aria-pressed": String(m === ctx.tool.mode),
      title: m === "pan" ? "Drag to pan; wheel zooms" : "Drag to select (shift adds)",
      text: label,
      onclick: () => setMode(m)
    });
  }
  function setMode(m) {
    ctx.tool.mode = m;
    for (const [k, b] of Object.entries(buttons)) b.setAttribute("aria-pressed", String(k === m));
    ctx.map.overlay.style.cursor = m === "pan" ? "grab" : "crosshair";
  }
  return { nodes: Object.values(buttons), setMode };
}
function mountToolbar(ctx) {
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
    ...modes.nodes,
    reset,
    clear,
    el("label", { class: "fl-field" }, [el("span", { text: "colour " }), color]),
    classes.node,
    el("label", { class: "fl-field" }, [el("span", { text: "show " }), correct]),
    conf.node,
    count
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

// src/explorer/grid.js
function tileNode(ctx, tile, sort, want) {
  const img = ctx.thumbs.image(tile.row, "fl-thumb", `image ${tile.id}`, want);
  const mark = tile.correct ? "✓" : "✗";
  const cap = tile.correct ? `${mark} ${tile.label}` : `${mark} ${tile.label} → ${tile.pred}`;
  const sub = `conf ${fmt(tile.confidence, 2)}` + (tile.sort_value != null && sort !== "confidence" ? ` · ${sort} ${fmt(tile.sort_value)}` : "");
  const pin = () => ctx.inspector.pin(tile.row);
  return el("figure", {
    class: "fl-tile " + (tile.correct ? "fl-ok" : "fl-bad"),
    "data-row": String(tile.row),
    tabindex: "0",
    title: tile.id,
    onclick: pin,
    onkeydown: onActivateKey(pin)
  }, [
    img,
    el("figcaption", {}, [
      el("div", { class: "fl-cap", text: cap }),
      el("div", { class: "fl-capsub", text: sub }),
      tile.caption ? el("div", { class: "fl-tile-caption", title: "caption from the describe step", text: `“${tile.caption}”` }) : null
    ])
  ]);
}
function mountGrid(ctx) {
  const { model } = ctx;
  const info = el("span", { class: "fl-grid-info" });
  const sort = el("select", { class: "fl-sort", "aria-label": "Sort images by", onchange: () => setTrait(model, "grid_sort", sort.value) });
  const order = el("button", { type: "button", class: "fl-order", onclick: () => setTrait(model, "grid_descending", !model.get("grid_descending")) });
  const turn = (d) => {
    const g = model.get("_grid") || {};
    setTrait(model, "grid_page", Math.max(0, Math.min((g.n_pages || 1) - 1, (g.page || 0) + d)));
  };
  const prev = el("button", { type: "button", class: "fl-prev", text: "◀", "aria-label": "Previous page", onclick: () => turn(-1) });
  const next = el("button", { type: "button", class: "fl-next", text: "▶", "aria-label": "Next page", onclick: () => turn(1) });
  const tiles = el("div", { class: "fl-tiles" });
  ctx.slots.grid.append(
    el("div", { class: "fl-grid-head" }, [info, el("label", { class: "fl-field" }, [el("span", { text: "sort " }), sort]), order, prev, next]),
    tiles
  );
  function sync() {
    fillSelect(sort, [...model.get("sort_options") || [], "index"], model.get("grid_sort"));
    order.textContent = model.get("grid_descending") ? "↓ desc" : "↑ asc";
    order.setAttribute("aria-label", model.get("grid_descending") ? "Largest first" : "Smallest first");
  }
  function draw() {
    const g = model.get("_grid") || {};
    info.textContent = g.total ? `${g.total} images · page ${g.page + 1}/${g.n_pages}` : "Select points on the map to see their images.";
    info.dataset.total = String(g.total || 0);
    prev.disabled = !g.page;
    next.disabled = !g.total || g.page >= g.n_pages - 1;
    const want = [];
    tiles.replaceChildren(...(g.tiles || []).map((tile) => tileNode(ctx, tile, g.sort, want)));
    ctx.thumbs.request(want);
  }
  for (const name of ["sort_options", "grid_sort", "grid_descending"]) ctx.on("change:" + name, sync);
  ctx.on("change:_grid", draw);
  sync();
  draw();
  return () => {
  };
}

// src/explorer/inspector.js
function mountInspector(ctx) {
  const { model } = ctx;
  const tooltip = el("div", { class: "fl-tooltip", hidden: "" });
  ctx.slots.mapWrap.append(tooltip);
  const img = el("img", { class: "fl-inspect-img", alt: "" });
  const meta = el("table", { class: "fl-inspect-meta" });
  const hint = el("div", { class: "fl-hint", text: "Hover a point to inspect it; click to pin." });
  const view = Math.random().toString(36).slice(2, 10);
  let pinned = null, hovered = -1, req = 0, timer = 0, url = null;
  const more = el("button", {
    type: "button",
    class: "fl-more-like",
    text: "More like this",
    title: "Select the images nearest in embedding space to the pinned image (or to the selection)",
    onclick: () => model.send({ type: "more_like_this", row: pinned })
  });
  ctx.slots.side.append(el("section", { class: "fl-panel fl-inspector", "aria-label": "Inspector" }, [el("h4", { text: "Inspector" }), hint, img, meta, more]));
  function request(row, pin) {
    if (pinned !== null && !pin && pinned !== row) {
      model.send({ type: "inspect", row, req: -1 });
      return;
    }
    req += 1;
    model.send({ type: "inspect", row, req: `${view}.${req}` });
  }
  function place(p) {
    tooltip.style.left = Math.min(p[0] + 12, ctx.map.size.W / ctx.map.size.dpr - 180) + "px";
    tooltip.style.top = p[1] + 12 + "px";
  }
  function hover(i, p) {
    if (i === hovered) {
      if (i >= 0) place(p);
      return;
    }
    hovered = i;
    if (i < 0) {
      tooltip.hidden = true;
      return;
    }
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
      el("div", { text: `confidence: ${get("confidence")}` })
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
    pin(row) {
      pinned = row;
      request(row, true);
    },
    unpin() {
      pinned = null;
    }
  };
  return () => {
    clearTimeout(timer);
    if (url) URL.revokeObjectURL(url);
  };
}

// src/explorer/legend.js
function categoryItems(info) {
  const items = (info.labels || []).slice(0, 30).map((label, i) => {
    const sw = el("span", { class: "fl-swatch" });
    sw.style.background = info.colors[i] || "#bebebe";
    return el("div", { class: "fl-legend-item" }, [sw, el("span", { text: label })]);
  });
  if ((info.labels || []).length > 30) items.push(el("div", { text: `… ${info.labels.length - 30} more` }));
  return items;
}
function colorbarItems(info) {
  const stops = (info.colors || []).filter((_, i) => i % 32 === 0 || i === info.colors.length - 1);
  const bar = el("div", { class: "fl-colorbar" });
  bar.style.background = `linear-gradient(to top, ${stops.join(", ")})`;
  const labels = el("div", { class: "fl-colorbar-labels" }, [el("span", { text: "≥ " + fmt(info.vmax) }), el("span", { text: "≤ " + fmt(info.vmin) })]);
  const items = [el("div", { class: "fl-colorbar-wrap" }, [bar, labels])];
  if (info.missing) items.push(el("div", { class: "fl-hint", text: `${info.missing} missing (grey)` }));
  return items;
}
function mountLegend(ctx) {
  const legend = el("div", { class: "fl-legend", "aria-label": "Legend" });
  ctx.slots.mapWrap.append(legend);
  function draw() {
    const info = ctx.model.get("_color_info") || {};
    const title = el("div", { class: "fl-legend-title", text: info.column || "" });
    const body = info.kind === "category" ? categoryItems(info) : info.kind === "continuous" ? colorbarItems(info) : [];
    legend.replaceChildren(title, ...body);
  }
  ctx.on("change:_color_info", draw);
  draw();
  return () => {
  };
}

// src/shared/theme.js
var probe = null;
function parseColor(text) {
  probe = probe || document.createElement("canvas").getContext("2d");
  probe.fillStyle = "#010203";
  probe.fillStyle = text.trim();
  const v = probe.fillStyle;
  if (v === "#010203" && text.trim() !== "#010203") return null;
  if (v.startsWith("#")) return [1, 3, 5].map((i) => parseInt(v.slice(i, i + 2), 16)).concat(1);
  const m = v.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const [r, g, b, a = "1"] = m[1].split(",");
  return [Number(r), Number(g), Number(b), Number(a)];
}
function cssRgb(node, name, fallback, under = [255, 255, 255]) {
  const c = parseColor(getComputedStyle(node).getPropertyValue(name) || "");
  if (!c) return fallback;
  return [0, 1, 2].map((i) => Math.round(c[i] * c[3] + under[i] * (1 - c[3])));
}
function onThemeChange(fn) {
  let timer = 0;
  const obs = new MutationObserver(() => {
    fn();
    clearTimeout(timer);
    timer = setTimeout(fn, 250);
  });
  obs.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name", "data-jp-theme-light"] });
  return () => {
    obs.disconnect();
    clearTimeout(timer);
  };
}

// src/explorer/raster.js
function word([r, g, b]) {
  return (255 << 24 | b << 16 | g << 8 | r) >>> 0;
}
function hexRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}
function mixRgb(rgb, target, t) {
  return rgb.map((v, i) => Math.round(v * (1 - t) + target[i] * t));
}
function createLayer() {
  return { W: 0, H: 0, buf: new Uint32Array(0), own: new Int32Array(0), sums: null };
}
function sizeLayer(layer, W, H) {
  if (layer.W === W && layer.H === H) return;
  Object.assign(layer, { W, H, buf: new Uint32Array(W * H), own: new Int32Array(W * H), sums: null });
}
var sq = new Int32Array(4);
function square(layer, t, xv, yv, size) {
  const px = Math.floor(xv * t.s + t.ox - size / 2);
  const py = Math.floor(t.oy - yv * t.s - size / 2);
  if (px >= layer.W || py >= layer.H || px + size <= 0 || py + size <= 0) return false;
  sq[0] = Math.max(0, px);
  sq[1] = Math.min(layer.W, px + size);
  sq[2] = Math.max(0, py);
  sq[3] = Math.min(layer.H, py + size);
  return true;
}
function plot(layer, data, i, w, size, t) {
  if (!square(layer, t, data.x[i], data.y[i], size)) return;
  const { buf, own, W } = layer;
  for (let yy = sq[2]; yy < sq[3]; yy++) {
    const row = yy * W;
    for (let xx = sq[0]; xx < sq[1]; xx++) {
      buf[row + xx] = w;
      own[row + xx] = i;
    }
  }
}
function paintEach(layer, data, colors, size, t) {
  for (let i = 0; i < data.x.length; i++) {
    if (data.shown(i)) plot(layer, data, i, colors[data.codes[i]], size, t);
  }
}
function paintMean(layer, data, colors, size, t) {
  const n = layer.W * layer.H;
  if (!layer.sums) layer.sums = [0, 1, 2, 3].map(() => new Uint32Array(n));
  const [sumR, sumG, sumB, hits] = layer.sums;
  layer.sums.forEach((a) => a.fill(0));
  const { buf, own, W } = layer;
  for (let i = 0; i < data.x.length; i++) {
    if (!data.shown(i) || !square(layer, t, data.x[i], data.y[i], size)) continue;
    const w = colors[data.codes[i]];
    const cr = w & 255, cg = w >>> 8 & 255, cb = w >>> 16 & 255;
    for (let yy = sq[2]; yy < sq[3]; yy++) {
      for (let xx = sq[0], p = yy * W + xx; xx < sq[1]; xx++, p++) {
        sumR[p] += cr;
        sumG[p] += cg;
        sumB[p] += cb;
        hits[p] += 1;
        own[p] = i;
      }
    }
  }
  for (let p = 0; p < n; p++) {
    const c = hits[p];
    if (!c) continue;
    const half = c >>> 1;
    buf[p] = word([Math.floor((sumR[p] + half) / c), Math.floor((sumG[p] + half) / c), Math.floor((sumB[p] + half) / c)]);
  }
}
function hitTest(owner, size, p) {
  const { W, H, dpr } = size;
  const cx = Math.round(p[0] * dpr), cy = Math.round(p[1] * dpr), rad = Math.round(4 * dpr);
  let best = -1, bestD = Infinity;
  for (let dy = -rad; dy <= rad; dy++) {
    const yy = cy + dy;
    if (yy < 0 || yy >= H) continue;
    for (let dx = -rad; dx <= rad; dx++) {
      const xx = cx + dx, i = xx < 0 || xx >= W ? -1 : owner[yy * W + xx];
      if (i >= 0 && dx * dx + dy * dy < bestD) {
        best = i;
        bestD = dx * dx + dy * dy;
      }
    }
  }
  return best;
}

// src/explorer/map.js
var MISSING = "#bebebe";
function palettes(info, dim) {
  const colors = info.colors || [];
  const pal = new Uint32Array(256), dimPal = new Uint32Array(256);
  for (let c = 0; c < 256; c++) {
    const rgb = hexRgb(c < colors.length ? colors[c] : MISSING);
    pal[c] = word(rgb);
    dimPal[c] = word(mixRgb(rgb, dim, 0.72));
  }
  return { pal, dimPal };
}
function readTheme(node) {
  const bg = cssRgb(node, "--fl-map-bg", [255, 255, 255]);
  return { bg, dim: cssRgb(node, "--fl-map-dim", [235, 235, 235], bg), fg: cssRgb(node, "--fl-fg", [34, 34, 34], bg) };
}
function createView() {
  const view = { cx: 0, cy: 0, scale: 1 }, size = { W: 0, H: 0, dpr: 1 };
  return {
    view,
    size,
    fit(b) {
      const cssW = size.W / size.dpr, cssH = size.H / size.dpr;
      const dx = Math.max(b.x1 - b.x0, 1e-9), dy = Math.max(b.y1 - b.y0, 1e-9);
      view.scale = 0.92 * Math.min(cssW / dx, cssH / dy);
      view.cx = (b.x0 + b.x1) / 2;
      view.cy = (b.y0 + b.y1) / 2;
    },
    /** Shows the map rectangle [x0, y0, x1, y1] whole, centred, as large as fits. */
    show([x0, y0, x1, y1]) {
      view.scale = Math.min(size.W / size.dpr / (x1 - x0), size.H / size.dpr / (y1 - y0));
      view.cx = (x0 + x1) / 2;
      view.cy = (y0 + y1) / 2;
    },
    /** The map rectangle on screen. */
    box() {
      const hw = size.W / size.dpr / 2 / view.scale, hh = size.H / size.dpr / 2 / view.scale;
      return [view.cx - hw, view.cy - hh, view.cx + hw, view.cy + hh];
    },
    toX: (px) => (px - size.W / size.dpr / 2) / view.scale + view.cx,
    toY: (py) => (size.H / size.dpr / 2 - py) / view.scale + view.cy
  };
}
function createPainter(model, data) {
  const base = createLayer();
  let baseKey = "", pals = null, palKey = "";
  const painter = { aggregated: false, owner: new Int32Array(0) };
  function palettesFor(theme) {
    const info = model.get("_color_info") || {};
    const key = JSON.stringify([info.colors || [], theme.dim]);
    if (key !== palKey) {
      pals = palettes(info, theme.dim);
      palKey = key;
    }
    return pals;
  }
  function paintBase(theme, r, t, dim) {
    const { pal, dimPal } = palettesFor(theme);
    base.buf.fill(word(theme.bg));
    base.own.fill(-1);
    painter.aggregated = data.x.length > (model.get("aggregate_above") ?? 2e5);
    (painter.aggregated ? paintMean : paintEach)(base, data, dim ? dimPal : pal, r, t);
  }
  painter.paint = (img, { view, size }, theme) => {
    const { W, H, dpr } = size, n = data.x.length;
    const r = Math.max(1, Math.round((n <= 2e4 ? 3 : n <= 2e5 ? 2 : 1) * dpr));
    const s = view.scale * dpr, t = { s, ox: W / 2 - view.cx * s, oy: H / 2 + view.cy * s };
    const hasSel = data.selCount > 0;
    palettesFor(theme);
    const key = [W, H, s, t.ox, t.oy, r, hasSel, data.version, model.get("aggregate_above"), theme.bg, palKey].join("|");
    sizeLayer(base, W, H);
    if (key !== baseKey) {
      paintBase(theme, r, t, hasSel);
      baseKey = key;
    }
    if (painter.owner.length !== W * H) painter.owner = new Int32Array(W * H);
    const top = { W, H, buf: new Uint32Array(img.data.buffer), own: painter.owner };
    top.buf.set(base.buf);
    top.own.set(base.own);
    if (!hasSel) return;
    const rs = r + Math.max(1, Math.round(dpr)), { pal } = palettesFor(theme);
    for (const i of data.selRows) if (i < n && data.shown(i)) plot(top, data, i, pal[data.codes[i]], rs, t);
  };
  return painter;
}
function mountMap(ctx) {
  const { model, data, slots } = ctx;
  const canvas = el("canvas", { class: "fl-map", "aria-label": "Map of images; drag to select" });
  const overlay = el("canvas", { class: "fl-overlay" });
  slots.mapWrap.append(canvas, overlay);
  const v = createView(), { view, size } = v, painter = createPainter(model, data);
  let frame = 0;
  function resize() {
    const cssW = Math.max(200, Math.floor(slots.mapWrap.clientWidth || 600)), cssH = model.get("height") || 440;
    size.dpr = Math.min(2, window.devicePixelRatio || 1);
    size.W = Math.floor(cssW * size.dpr);
    size.H = Math.floor(cssH * size.dpr);
    for (const c of [canvas, overlay]) {
      Object.assign(c, { width: size.W, height: size.H });
      Object.assign(c.style, { width: cssW + "px", height: cssH + "px" });
    }
    slots.mapWrap.style.height = cssH + "px";
    slots.side.style.maxHeight = cssH + "px";
  }
  function draw() {
    frame = 0;
    if (!size.W || !size.H) return;
    const g = canvas.getContext("2d"), img = g.createImageData(size.W, size.H);
    painter.paint(img, v, readTheme(slots.mapWrap));
    g.putImageData(img, 0, 0);
    Object.assign(canvas.dataset, { cx: String(view.cx), cy: String(view.cy), scale: String(view.scale), view: JSON.stringify(v.box()) });
    canvas.dataset.rendered = String(Number(canvas.dataset.rendered || 0) + 1);
    canvas.dataset.aggregated = String(painter.aggregated);
  }
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  let saveTimer = 0;
  const valid = (b) => Array.isArray(b) && b.length === 4 && b.every(Number.isFinite) && b[0] < b[2] && b[1] < b[3];
  const same = (a, b) => valid(a) && valid(b) && a.every((x, i) => Math.abs(x - b[i]) <= 1e-9 * (Math.abs(b[2] - b[0]) + Math.abs(b[3] - b[1])));
  const save = (box) => {
    saveTimer = 0;
    setTrait(model, "view", box);
  };
  function moved() {
    schedule();
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => save(v.box()), 200);
  }
  function restore() {
    const b = model.get("view");
    if (valid(b)) v.show(b);
    else v.fit(data.bounds);
    schedule();
  }
  const refit = () => {
    clearTimeout(saveTimer);
    v.fit(data.bounds);
    draw();
    save([]);
  };
  ctx.map = {
    canvas,
    overlay,
    view,
    size,
    toX: v.toX,
    toY: v.toY,
    schedule,
    refit,
    moved,
    hit: (p) => hitTest(painter.owner, size, p),
    theme: () => readTheme(slots.mapWrap)
  };
  ctx.on("change:view", () => {
    const b = model.get("view");
    if (!saveTimer && !same(v.box(), b)) restore();
  });
  const reloadXY = () => {
    data.loadXY();
    restore();
  };
  ctx.on("change:_x", reloadXY);
  ctx.on("change:_y", reloadXY);
  ctx.on("change:_color", () => {
    data.loadColor();
    schedule();
  });
  ctx.on("change:_color_info", () => {
    data.loadColor();
    schedule();
  });
  ctx.on("change:_visible", () => {
    data.loadVisible();
    schedule();
  });
  const keepBox = () => {
    if (saveTimer) {
      clearTimeout(saveTimer);
      save(v.box());
    }
    resize();
    restore();
  };
  ctx.on("change:height", keepBox);
  ctx.on("change:aggregate_above", schedule);
  const unsubscribe = ctx.selection.changed.subscribe(schedule);
  const ro = new ResizeObserver(() => {
    const w = Math.floor(slots.mapWrap.clientWidth);
    if (w && Math.floor(w * size.dpr) !== size.W) keepBox();
  });
  const offTheme = onThemeChange(schedule);
  ro.observe(slots.mapWrap);
  resize();
  restore();
  draw();
  return () => {
    unsubscribe();
    offTheme();
    ro.disconnect();
    clearTimeout(saveTimer);
    if (frame) cancelAnimationFrame(frame);
  };
}

// src/explorer/selection.js
function rowsInBox(data, xa, xb, ya, yb, add) {
  const { x, y, visible, selMask } = data;
  const out = [];
  for (let i = 0; i < x.length; i++) {
    if (visible[i] && x[i] >= xa && x[i] <= xb && y[i] >= ya && y[i] <= yb || add && selMask[i]) out.push(i);
  }
  return Uint32Array.from(out);
}
function insidePolygon(poly, px, py) {
  let inside = false;
  for (let k = 0, j = poly.length - 1; k < poly.length; j = k++) {
    const [xi, yi] = poly[k], [xj, yj] = poly[j];
    if (yi > py !== yj > py && px < (xj - xi) * (py - yi) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
function rowsInPolygon(data, poly, add) {
  const { x, y, visible, selMask } = data;
  let xa = Infinity, xb = -Infinity, ya = Infinity, yb = -Infinity;
  for (const [a, b] of poly) {
    xa = Math.min(xa, a);
    xb = Math.max(xb, a);
    ya = Math.min(ya, b);
    yb = Math.max(yb, b);
  }
  const out = [];
  for (let i = 0; i < x.length; i++) {
    const px = x[i], py = y[i];
    const inBox = visible[i] && px >= xa && px <= xb && py >= ya && py <= yb;
    if (inBox && insidePolygon(poly, px, py) || add && selMask[i]) out.push(i);
  }
  return Uint32Array.from(out);
}
var viewToken = () => Math.random().toString(36).slice(2, 10);
function mountSelection(ctx) {
  const { model, data } = ctx;
  const changed = signal();
  const view = viewToken();
  let inflight = 0;
  const pending = (on) => ctx.root.classList.toggle("fl-pending", on);
  function commit(rows, source) {
    inflight += 1;
    pending(true);
    model.send({ type: "select", source, view }, void 0, [new DataView(rows.buffer, rows.byteOffset, rows.byteLength)]);
    data.setSelection(rows);
    changed.emit();
  }
  function load() {
    data.setSelection(typed(model.get("_selection"), Uint32Array));
    changed.emit();
  }
  ctx.handle("selected", (msg) => {
    if (msg.view !== view || inflight === 0) return;
    inflight -= 1;
    if (!inflight) pending(false);
  });
  ctx.on("change:_selection_counter", () => {
    if (!inflight) load();
  });
  ctx.selection = { commit, changed };
  data.setSelection(typed(model.get("_selection"), Uint32Array));
  return () => {
  };
}

// src/explorer/pointer.js
function outline(g, drag) {
  if (drag.mode === "box") {
    const [a, b] = [drag.start, drag.last];
    g.rect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1]));
  } else {
    drag.path.forEach(([px, py], k) => k ? g.lineTo(px, py) : g.moveTo(px, py));
    g.closePath();
  }
}
function paintOverlay(g, map, drag) {
  const { W, H, dpr } = map.size;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  if (!drag || drag.mode === "pan") return;
  g.strokeStyle = `rgb(${map.theme().fg.join(",")})`;
  g.fillStyle = "rgba(30,120,220,0.12)";
  g.setLineDash([4, 3]);
  g.beginPath();
  outline(g, drag);
  g.fill();
  g.stroke();
}
function finish(ctx, d, p) {
  const { map, data } = ctx;
  if (d.mode === "box") {
    const xa = Math.min(map.toX(d.start[0]), map.toX(p[0])), xb = Math.max(map.toX(d.start[0]), map.toX(p[0]));
    const ya = Math.min(map.toY(d.start[1]), map.toY(p[1])), yb = Math.max(map.toY(d.start[1]), map.toY(p[1]));
    ctx.selection.commit(rowsInBox(data, xa, xb, ya, yb, d.add), "box");
  } else if (d.path.length >= 3) {
    const poly = d.path.map(([px, py]) => [map.toX(px), map.toY(py)]);
    ctx.selection.commit(rowsInPolygon(data, poly, d.add), "lasso");
  }
}
function zoom(map, p, deltaY) {
  const { view, size } = map;
  const bx = map.toX(p[0]), by = map.toY(p[1]);
  view.scale *= Math.exp(-deltaY * 15e-4);
  view.cx = bx - (p[0] - size.W / size.dpr / 2) / view.scale;
  view.cy = by - (size.H / size.dpr / 2 - p[1]) / view.scale;
  map.moved();
}
function mountPointer(ctx) {
  const { map } = ctx;
  const overlay = map.overlay, g = overlay.getContext("2d");
  let drag = null;
  const local = (ev) => {
    const rect = overlay.getBoundingClientRect();
    return [ev.clientX - rect.left, ev.clientY - rect.top];
  };
  const drawOverlay = () => paintOverlay(g, map, drag);
  function down(ev) {
    if (ev.button !== 0) return;
    overlay.setPointerCapture(ev.pointerId);
    const p = local(ev);
    drag = { mode: ctx.tool.mode, start: p, last: p, path: [p], add: ev.shiftKey, view: { ...map.view } };
    ctx.inspector.hideTooltip(false);
  }
  function move(ev) {
    const p = local(ev);
    if (!drag) {
      ctx.inspector.hover(map.hit(p), p);
      return;
    }
    drag.last = p;
    if (drag.mode === "pan") {
      map.view.cx = drag.view.cx - (p[0] - drag.start[0]) / map.view.scale;
      map.view.cy = drag.view.cy + (p[1] - drag.start[1]) / map.view.scale;
      map.moved();
    } else if (drag.mode === "lasso") {
      const q = drag.path[drag.path.length - 1];
      if (Math.abs(q[0] - p[0]) + Math.abs(q[1] - p[1]) >= 2) drag.path.push(p);
    }
    drawOverlay();
  }
  function click(p, d) {
    const i = map.hit(p);
    if (i >= 0) ctx.inspector.pin(i);
    else if (!d.add) {
      ctx.inspector.unpin();
      ctx.selection.commit(new Uint32Array(0), d.mode);
    }
  }
  function up(ev) {
    if (!drag) return;
    const d = drag;
    drag = null;
    drawOverlay();
    const p = local(ev);
    if (d.mode === "pan") return;
    if (Math.abs(p[0] - d.start[0]) + Math.abs(p[1] - d.start[1]) < 3) click(p, d);
    else finish(ctx, d, p);
  }
  ctx.listen(overlay, "pointerdown", down);
  ctx.listen(overlay, "pointermove", move);
  ctx.listen(overlay, "pointerup", up);
  ctx.listen(overlay, "pointercancel", () => {
    drag = null;
    drawOverlay();
  });
  ctx.listen(overlay, "pointerleave", () => {
    if (!drag) ctx.inspector.hideTooltip(true);
  });
  ctx.listen(overlay, "dblclick", map.refit);
  ctx.listen(overlay, "wheel", (ev) => {
    ev.preventDefault();
    zoom(map, local(ev), ev.deltaY);
  }, { passive: false });
  return () => {
  };
}

// src/explorer/saved.js
function sliceItem(model, s) {
  const act = (op, extra = {}) => () => model.send({ type: "slice", op, name: s.name, ...extra });
  return el("li", { class: "fl-slice", "data-name": s.name }, [
    el("span", { class: "fl-slice-label", text: `${s.name} (${s.n})` }),
    el("button", { type: "button", text: "select", "aria-label": `select slice ${s.name}`, onclick: act("load") }),
    el("button", { type: "button", text: "csv", "aria-label": `export slice ${s.name} as CSV`, onclick: act("export", { fmt: "csv" }) }),
    el("button", { type: "button", text: "parquet", "aria-label": `export slice ${s.name} as parquet`, onclick: act("export", { fmt: "parquet" }) }),
    el("button", { type: "button", text: "delete", "aria-label": `delete slice ${s.name}`, onclick: act("delete") })
  ]);
}
function mountSavedSlices(ctx) {
  const { model } = ctx;
  const name = el("input", { type: "text", class: "fl-slice-name", placeholder: "slice name", "aria-label": "Slice name", maxlength: "64" });
  const save = el("button", { type: "button", class: "fl-slice-save", text: "Save selection", onclick: () => model.send({ type: "slice", op: "save", name: name.value.trim() }) });
  const list = el("ul", { class: "fl-slice-list" });
  ctx.slots.side.append(el("section", { class: "fl-panel fl-slices", "aria-label": "Saved slices" }, [el("h4", { text: "Saved slices" }), el("div", { class: "fl-row" }, [name, save]), list]));
  function draw() {
    const slices = model.get("saved_slices") || [];
    if (!slices.length) list.replaceChildren(el("li", { class: "fl-hint", text: "No saved slices." }));
    else list.replaceChildren(...slices.map((s) => sliceItem(model, s)));
  }
  ctx.on("change:saved_slices", draw);
  draw();
  return () => {
  };
}

// src/explorer/search.js
function mountSearch(ctx) {
  const { model } = ctx;
  const input = el("input", { type: "search", class: "fl-search", placeholder: "search images by text", "aria-label": "Search images by text" });
  const k = el("input", { type: "number", class: "fl-search-k", min: "1", step: "1", "aria-label": "How many images a search selects" });
  const go = el("button", { type: "button", class: "fl-search-go", text: "Search" });
  const box = el("span", { class: "fl-field fl-searchbox" }, [input, k, go]);
  function run() {
    const text = input.value.trim();
    if (!text || input.disabled) return;
    const n = Math.max(1, Math.floor(Number(k.value)) || model.get("search_info")?.k || 50);
    model.send({ type: "search", text, k: n });
  }
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      run();
    }
  });
  go.addEventListener("click", run);
  function sync() {
    const info = model.get("search_info") || {};
    const off = !info.enabled;
    for (const c of [input, k, go]) c.disabled = off;
    box.title = off ? info.reason || "text search is not available" : "Select the images most similar to a phrase (CLIP)";
    box.dataset.enabled = String(!off);
    k.max = String(Math.max(1, model.get("n_points") || 1));
    if (!k.value) k.value = String(info.k || 50);
    if (info.query && !input.value) input.value = info.query;
  }
  ctx.slots.toolbar.insertBefore(box, ctx.slots.toolbar.querySelector(".fl-selcount"));
  ctx.on("change:search_info", sync);
  sync();
  return () => {
  };
}

// src/explorer/stats.js
function classMix(mix) {
  return mix.slice(0, 5).map((c) => {
    const bar = el("span", { class: "fl-bar" });
    bar.style.width = Math.round(100 * c.share) + "%";
    return el("div", { class: "fl-mix" }, [
      el("span", { class: "fl-mix-name", text: c.name }),
      el("span", { class: "fl-bar-wrap" }, [bar]),
      el("span", { text: `${pct(c.share)} (${pct(c.baseline_share)})` })
    ]);
  });
}
function statsParts(st) {
  const s = st.selection || {}, b = st.baseline || {};
  const rows = [
    ["selected", `${s.n}` + (st.n_hidden ? ` (+${st.n_hidden} hidden by the filter)` : "")],
    ["error rate", `${pct(s.error_rate)}  [95% CI ${pct(s.ci_low)} – ${pct(s.ci_high)}]`],
    ["vs. filtered", `${pct(b.error_rate)} of ${b.n}`],
    ["lift", times(st.lift)]
  ];
  const parts = [el("table", { class: "fl-kv" }, kvRows(rows)), el("div", { class: "fl-sub", text: "class mix (vs. filtered)" })];
  parts.push(...classMix(st.class_mix || []));
  if ((st.confusions || []).length) {
    parts.push(el("div", { class: "fl-sub", text: "top confusions (label → prediction)" }));
    for (const c of st.confusions) parts.push(el("div", { class: "fl-conf", text: `${c.label_name} → ${c.pred_name}: ${c.n}` }));
  }
  return parts;
}
function mountStats(ctx) {
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
  return () => {
  };
}

// src/explorer/thumbs.js
function mountThumbs(ctx) {
  const urls = /* @__PURE__ */ new Map();
  const pending = /* @__PURE__ */ new Set();
  function image(row, cls, alt, want) {
    const img = el("img", { class: cls, alt, "data-row": String(row) });
    if (urls.has(row)) img.src = urls.get(row);
    else if (!pending.has(row)) {
      want.push(row);
      pending.add(row);
    }
    return img;
  }
  function request(want) {
    if (want.length) ctx.model.send({ type: "thumbs", rows: want });
  }
  function keep(row, url) {
    if (urls.has(row)) URL.revokeObjectURL(urls.get(row));
    urls.set(row, url);
    if (urls.size > 600) {
      const [r0, u0] = urls.entries().next().value;
      URL.revokeObjectURL(u0);
      urls.delete(r0);
    }
  }
  ctx.handle("thumbs", (msg, buffers) => {
    (msg.rows || []).forEach((row, k) => {
      pending.delete(row);
      const url = blobUrl(buffers && buffers[k]);
      if (url) keep(row, url);
      for (const img of ctx.root.querySelectorAll(`img[data-row="${row}"]`)) {
        if (url) img.src = url;
        else img.alt = msg.errors && msg.errors[k] || "no image";
      }
    });
  });
  ctx.thumbs = { image, request };
  return () => {
    for (const u of urls.values()) URL.revokeObjectURL(u);
  };
}

// src/explorer/index.js
function layout() {
  const slots = {
    toolbar: el("div", { class: "fl-toolbar" }),
    mapWrap: el("div", { class: "fl-mapwrap" }),
    side: el("div", { class: "fl-side" }),
    insights: el("div", { class: "fl-insights" }),
    grid: el("section", { class: "fl-grid", "aria-label": "Images of the selection" }),
    status: el("div", { class: "fl-status", role: "status", "aria-live": "polite" })
  };
  const root = el("div", { class: "faultlens-explorer" }, [
    slots.toolbar,
    el("div", { class: "fl-main" }, [slots.mapWrap, slots.side]),
    slots.insights,
    slots.grid,
    slots.status
  ]);
  return { root, slots };
}
var PARTS = [
  mountSelection,
  mountThumbs,
  mountMap,
  mountStats,
  mountInspector,
  mountLegend,
  mountSavedSlices,
  mountDiscovered,
  mountDescribe,
  mountGrid,
  mountToolbar,
  mountSearch,
  mountPointer,
  mountTask
];
function render({ model, el: host }) {
  const scope = createScope(model);
  const { root, slots } = layout();
  const data = createData(model);
  const ctx = {
    model,
    root,
    slots,
    data,
    on: scope.on,
    listen: scope.listen,
    handle: createDispatcher(scope),
    tool: { mode: "box" },
    setStatus: (text) => {
      slots.status.textContent = text;
    }
  };
  host.append(root);
  data.loadXY();
  data.loadColor();
  data.loadVisible();
  for (const mount of PARTS) scope.defer(mount(ctx));
  scope.on("change:status", () => ctx.setStatus(model.get("status")));
  ctx.setStatus(model.get("status") || "");
  return () => scope.dispose();
}
var explorer_default = { render };
export {
  explorer_default as default
};
