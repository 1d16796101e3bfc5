// faultlens Explorer front end: a canvas map (ImageData, one pass per frame), box / lasso selection,
// filters, legend, inspector, stats, slices and an image grid. Hand-written ESM, no dependencies.
// Every data string goes into the DOM through textContent / attributes, never innerHTML.

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

function asBytes(dv) {
  if (!dv) return new Uint8Array(0);
  if (dv instanceof ArrayBuffer) return new Uint8Array(dv);
  return new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
}

function typed(dv, Type) {
  const b = asBytes(dv);
  const n = Math.floor(b.byteLength / Type.BYTES_PER_ELEMENT);
  if (b.byteOffset % Type.BYTES_PER_ELEMENT === 0) return new Type(b.buffer, b.byteOffset, n);
  return new Type(b.slice().buffer, 0, n); // misaligned: copy once
}

function rgbaWord(hex, mix = 0) {
  let r = parseInt(hex.slice(1, 3), 16);
  let g = parseInt(hex.slice(3, 5), 16);
  let b = parseInt(hex.slice(5, 7), 16);
  if (mix) {
    r = Math.round(r * (1 - mix) + 235 * mix);
    g = Math.round(g * (1 - mix) + 235 * mix);
    b = Math.round(b * (1 - mix) + 235 * mix);
  }
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0; // little-endian RGBA in a Uint32
}

function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toPrecision(digits);
}

function pct(v) {
  if (v === null || v === undefined) return "–";
  return (100 * v).toFixed(1) + "%";
}

function render({ model, el: root }) {
  const disposers = [];
  const on = (name, cb) => {
    model.on(name, cb);
    disposers.push(() => model.off(name, cb));
  };
  const urls = new Map(); // row -> object URL of its thumbnail
  const pendingThumbs = new Set();

  // ---------------------------------------------------------------- data
  let x = new Float32Array(0);
  let y = new Float32Array(0);
  let codes = new Uint8Array(0);
  let visible = new Uint8Array(0);
  let selMask = new Uint8Array(0);
  let selRows = new Uint32Array(0);
  let selCount = 0;
  let dataVersion = 0; // bumped when positions, colours or the filter change: the base layer is stale
  let pal = new Uint32Array(256);
  let dimPal = new Uint32Array(256);
  let bounds = null;
  const view = { cx: 0, cy: 0, scale: 1 }; // data -> CSS px
  let mode = "box";
  let pinned = null;
  let inspectReq = 0;

  function loadXY() {
    x = typed(model.get("_x"), Float32Array);
    y = typed(model.get("_y"), Float32Array);
    dataVersion += 1;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < x.length; i++) {
      const a = x[i], b = y[i];
      if (!Number.isFinite(a) || !Number.isFinite(b)) continue; // NaN (or ±inf): not placed
      if (a < x0) x0 = a;
      if (a > x1) x1 = a;
      if (b < y0) y0 = b;
      if (b > y1) y1 = b;
    }
    bounds = x0 <= x1 ? { x0, x1, y0, y1 } : { x0: -1, x1: 1, y0: -1, y1: 1 };
    if (selMask.length !== x.length) selMask = new Uint8Array(x.length);
  }
  function loadColor() {
    codes = typed(model.get("_color"), Uint8Array);
    dataVersion += 1;
    const info = model.get("_color_info") || {};
    const colors = info.colors || [];
    const missing = rgbaWord("#bebebe");
    for (let c = 0; c < 256; c++) {
      pal[c] = c < colors.length ? rgbaWord(colors[c]) : missing;
      dimPal[c] = c < colors.length ? rgbaWord(colors[c], 0.72) : rgbaWord("#bebebe", 0.72);
    }
  }
  function loadVisible() {
    visible = typed(model.get("_visible"), Uint8Array);
    dataVersion += 1;
  }
  function loadSelection() {
    const sel = typed(model.get("_selection"), Uint32Array);
    selMask = new Uint8Array(x.length);
    for (let k = 0; k < sel.length; k++) if (sel[k] < selMask.length) selMask[sel[k]] = 1;
    selRows = sel;
    selCount = sel.length;
  }

  // ---------------------------------------------------------------- DOM
  const status = el("div", { class: "fl-status", role: "status", "aria-live": "polite" });
  const selCountEl = el("span", { class: "fl-selcount", "data-count": "0", text: "0 selected" });
  const colorSelect = el("select", { class: "fl-color", "aria-label": "Colour points by" });
  const correctSelect = el("select", { class: "fl-filter-correct", "aria-label": "Show correct or incorrect" });
  for (const v of ["all", "correct", "incorrect"]) correctSelect.append(el("option", { value: v, text: v }));
  const confLo = el("input", { type: "number", min: "0", max: "1", step: "0.05", class: "fl-conf-lo", "aria-label": "Minimum confidence" });
  const confHi = el("input", { type: "number", min: "0", max: "1", step: "0.05", class: "fl-conf-hi", "aria-label": "Maximum confidence" });
  const classBox = el("div", { class: "fl-classes" });
  const classDetails = el("details", { class: "fl-class-filter" }, [el("summary", { text: "classes" }), classBox]);
  const modeButtons = {};
  const toolbar = el("div", { class: "fl-toolbar" });
  for (const [m, label] of [["box", "▭ Box"], ["lasso", "◌ Lasso"], ["pan", "✥ Pan"]]) {
    modeButtons[m] = el("button", {
      class: "fl-mode fl-mode-" + m, type: "button", "aria-pressed": String(m === mode),
      title: m === "pan" ? "Drag to pan; wheel zooms" : "Drag to select (shift adds)", text: label,
      onclick: () => setMode(m),
    });
  }
  const resetBtn = el("button", { type: "button", class: "fl-reset", text: "⟲ View", title: "Reset zoom (or double-click the map)", onclick: () => { fitView(); draw(); } });
  const clearBtn = el("button", { type: "button", class: "fl-clear", text: "✕ Clear", title: "Clear the selection", onclick: () => commitSelection(new Uint32Array(0), "box") });
  toolbar.append(
    modeButtons.box, modeButtons.lasso, modeButtons.pan, resetBtn, clearBtn,
    el("label", { class: "fl-field" }, [el("span", { text: "colour " }), colorSelect]),
    classDetails,
    el("label", { class: "fl-field" }, [el("span", { text: "show " }), correctSelect]),
    el("label", { class: "fl-field" }, [el("span", { text: "conf " }), confLo, el("span", { text: "–" }), confHi]),
    selCountEl,
  );

  const canvas = el("canvas", { class: "fl-map", "aria-label": "Map of images; drag to select" });
  const overlay = el("canvas", { class: "fl-overlay" });
  const tooltip = el("div", { class: "fl-tooltip", hidden: "" });
  const legend = el("div", { class: "fl-legend", "aria-label": "Legend" });
  const mapWrap = el("div", { class: "fl-mapwrap" }, [canvas, overlay, tooltip, legend]);

  const inspImg = el("img", { class: "fl-inspect-img", alt: "" });
  const inspMeta = el("table", { class: "fl-inspect-meta" });
  const inspHint = el("div", { class: "fl-hint", text: "Hover a point to inspect it; click to pin." });
  const inspector = el("section", { class: "fl-panel fl-inspector", "aria-label": "Inspector" }, [el("h4", { text: "Inspector" }), inspHint, inspImg, inspMeta]);
  const statsBody = el("div", { class: "fl-stats-body" });
  const statsPanel = el("section", { class: "fl-panel fl-stats", "aria-label": "Selection statistics" }, [el("h4", { text: "Selection" }), statsBody]);
  const sliceName = el("input", { type: "text", class: "fl-slice-name", placeholder: "slice name", "aria-label": "Slice name", maxlength: "64" });
  const sliceSave = el("button", { type: "button", class: "fl-slice-save", text: "Save selection", onclick: () => {
    model.send({ type: "slice", op: "save", name: sliceName.value.trim() });
  } });
  const sliceList = el("ul", { class: "fl-slice-list" });
  const slicePanel = el("section", { class: "fl-panel fl-slices", "aria-label": "Saved slices" }, [el("h4", { text: "Saved slices" }), el("div", { class: "fl-row" }, [sliceName, sliceSave]), sliceList]);
  const side = el("div", { class: "fl-side" }, [statsPanel, inspector, slicePanel]);

  const gridInfo = el("span", { class: "fl-grid-info" });
  const sortSelect = el("select", { class: "fl-sort", "aria-label": "Sort images by" });
  const orderBtn = el("button", { type: "button", class: "fl-order", onclick: () => { model.set("grid_descending", !model.get("grid_descending")); model.save_changes(); } });
  const prevBtn = el("button", { type: "button", class: "fl-prev", text: "◀", "aria-label": "Previous page", onclick: () => turn(-1) });
  const nextBtn = el("button", { type: "button", class: "fl-next", text: "▶", "aria-label": "Next page", onclick: () => turn(1) });
  const tiles = el("div", { class: "fl-tiles" });
  const grid = el("section", { class: "fl-grid", "aria-label": "Images of the selection" }, [
    el("div", { class: "fl-grid-head" }, [gridInfo, el("label", { class: "fl-field" }, [el("span", { text: "sort " }), sortSelect]), orderBtn, prevBtn, nextBtn]),
    tiles,
  ]);
  // discovered slices (found by a method) — kept apart from the saved (named) slices above
  const findBtn = el("button", { type: "button", class: "fl-find", text: "Find slices", title: "Discover failure slices (error-aware mixture on the embeddings)", onclick: () => {
    status.textContent = "finding slices…";
    model.send({ type: "find_slices", n_slices: 5, method: "mixture" });
  } });
  const discBody = el("div", { class: "fl-disc-body" });
  const discPanel = el("section", { class: "fl-panel fl-discovered", "aria-label": "Discovered slices" }, [
    el("div", { class: "fl-panel-head" }, [el("h4", { text: "Discovered slices" }), el("span", { class: "fl-badge fl-badge-auto", text: "found automatically" }), findBtn]),
    discBody,
  ]);
  // describing the selection
  const describeBtn = el("button", { type: "button", class: "fl-describe", text: "Describe selection", title: "Describe the selected images (captions, phrases or ImageNet tags)", onclick: () => {
    describeBtn.disabled = true;
    descState.textContent = "describing…";
    model.send({ type: "describe" });
  } });
  const descState = el("span", { class: "fl-desc-state", role: "status", "aria-live": "polite" });
  const descBody = el("div", { class: "fl-desc-body" });
  const descPanel = el("section", { class: "fl-panel fl-describe-panel", "aria-label": "Description of the selection" }, [
    el("div", { class: "fl-panel-head" }, [el("h4", { text: "Description" }), describeBtn, descState]),
    descBody,
  ]);
  const insights = el("div", { class: "fl-insights" }, [discPanel, descPanel]);
  const container = el("div", { class: "faultlens-explorer" }, [toolbar, el("div", { class: "fl-main" }, [mapWrap, side]), insights, grid, status]);
  root.append(container);

  // ---------------------------------------------------------------- controls
  function setMode(m) {
    mode = m;
    for (const [k, b] of Object.entries(modeButtons)) b.setAttribute("aria-pressed", String(k === m));
    overlay.style.cursor = m === "pan" ? "grab" : "crosshair";
  }
  function fillSelect(select, options, value) {
    select.replaceChildren(...options.map((o) => el("option", { value: o, text: o })));
    select.value = value;
  }
  function syncControls() {
    fillSelect(colorSelect, model.get("color_options") || [], model.get("color_by"));
    fillSelect(sortSelect, [...(model.get("sort_options") || []), "index"], model.get("grid_sort"));
    correctSelect.value = model.get("filter_correct");
    const [lo, hi] = model.get("filter_confidence") || [0, 1];
    confLo.value = String(lo);
    confHi.value = String(hi);
    orderBtn.textContent = model.get("grid_descending") ? "↓ desc" : "↑ asc";
    orderBtn.setAttribute("aria-label", model.get("grid_descending") ? "Largest first" : "Smallest first");
    const names = model.get("class_names") || [];
    const chosen = new Set(model.get("filter_classes") || []);
    const namesKey = JSON.stringify(names);
    classDetails.querySelector("summary").textContent = chosen.size ? `classes (${chosen.size}/${names.length})` : "classes (all)";
    if (classBox.dataset.names === namesKey) {
      // same classes: update the boxes in place, so keyboard focus stays on the one just toggled
      for (const box of classBox.querySelectorAll("input[type=checkbox]")) {
        box.checked = chosen.size === 0 || chosen.has(Number(box.dataset.label));
      }
      return;
    }
    classBox.dataset.names = namesKey;
    classBox.replaceChildren(
      el("button", { type: "button", class: "fl-all", text: "all", onclick: () => { model.set("filter_classes", []); model.save_changes(); } }),
      ...names.map((name, i) => {
        const box = el("input", { type: "checkbox", "data-label": String(i) });
        box.checked = chosen.size === 0 || chosen.has(i);
        box.addEventListener("change", () => {
          const picked = [...classBox.querySelectorAll("input[type=checkbox]")].filter((b) => b.checked).map((b) => Number(b.dataset.label));
          model.set("filter_classes", picked.length === names.length ? [] : picked);
          model.save_changes();
        });
        return el("label", { class: "fl-class" }, [box, el("span", { text: name })]);
      }),
    );
  }
  colorSelect.addEventListener("change", () => { model.set("color_by", colorSelect.value); model.save_changes(); });
  sortSelect.addEventListener("change", () => { model.set("grid_sort", sortSelect.value); model.save_changes(); });
  correctSelect.addEventListener("change", () => { model.set("filter_correct", correctSelect.value); model.save_changes(); });
  const confChange = () => {
    let lo = Number(confLo.value), hi = Number(confHi.value);
    if (!Number.isFinite(lo)) lo = 0;
    if (!Number.isFinite(hi)) hi = 1;
    if (lo > hi) [lo, hi] = [hi, lo];
    model.set("filter_confidence", [lo, hi]);
    model.save_changes();
  };
  confLo.addEventListener("change", confChange);
  confHi.addEventListener("change", confChange);
  function turn(d) {
    const g = model.get("_grid") || {};
    const p = Math.max(0, Math.min((g.n_pages || 1) - 1, (g.page || 0) + d));
    model.set("grid_page", p);
    model.save_changes();
  }

  // ---------------------------------------------------------------- map drawing
  let W = 0, H = 0, dpr = 1;
  let owner = new Int32Array(0);
  let sumR = new Uint32Array(0), sumG = sumR, sumB = sumR, hits = sumR; // aggregated drawing
  let frame = 0;

  function resize() {
    const cssW = Math.max(200, Math.floor(mapWrap.clientWidth || 600));
    const cssH = model.get("height") || 440;
    dpr = Math.min(2, window.devicePixelRatio || 1);
    W = Math.floor(cssW * dpr);
    H = Math.floor(cssH * dpr);
    for (const c of [canvas, overlay]) {
      c.width = W;
      c.height = H;
      c.style.width = cssW + "px";
      c.style.height = cssH + "px";
    }
    mapWrap.style.height = cssH + "px";
    side.style.maxHeight = cssH + "px";
    owner = new Int32Array(W * H);
  }
  function fitView() {
    const cssW = W / dpr, cssH = H / dpr;
    const dx = Math.max(bounds.x1 - bounds.x0, 1e-9), dy = Math.max(bounds.y1 - bounds.y0, 1e-9);
    view.scale = 0.92 * Math.min(cssW / dx, cssH / dy);
    view.cx = (bounds.x0 + bounds.x1) / 2;
    view.cy = (bounds.y0 + bounds.y1) / 2;
  }
  // data -> CSS px, and back
  const toPx = (a) => (a - view.cx) * view.scale + W / dpr / 2;
  const toPy = (b) => H / dpr / 2 - (b - view.cy) * view.scale;
  const toX = (px) => (px - W / dpr / 2) / view.scale + view.cx;
  const toY = (py) => (H / dpr / 2 - py) / view.scale + view.cy;

  // The base layer (every visible point, dimmed while there is a selection) is kept per view and
  // data version; a new selection then only copies it and draws the selected points on top.
  let baseKey = "", baseBuf = new Uint32Array(0), baseOwner = new Int32Array(0), baseAggregated = false;
  function drawBase(r, s, ox, oy, dim) {
    if (baseBuf.length !== W * H) { baseBuf = new Uint32Array(W * H); baseOwner = new Int32Array(W * H); }
    const buf = baseBuf, own = baseOwner, n = x.length, colors = dim ? dimPal : pal;
    buf.fill(rgbaWord("#ffffff"));
    own.fill(-1);
    const aggregate = n > (model.get("aggregate_above") ?? 200000);
    if (aggregate) {
      // each pixel: the mean colour of the visible points under it
      if (sumR.length !== W * H) { sumR = new Uint32Array(W * H); sumG = new Uint32Array(W * H); sumB = new Uint32Array(W * H); hits = new Uint32Array(W * H); }
      sumR.fill(0); sumG.fill(0); sumB.fill(0); hits.fill(0);
      for (let i = 0; i < n; i++) {
        if (!visible[i] || x[i] !== x[i] || y[i] !== y[i]) continue;
        if (!square(i, r, s, ox, oy)) continue;
        const q = sq;
        const word = colors[codes[i]];
        const cr = word & 255, cg = (word >>> 8) & 255, cb = (word >>> 16) & 255;
        for (let yy = q[2]; yy < q[3]; yy++) {
          for (let xx = q[0], p = yy * W + xx; xx < q[1]; xx++, p++) {
            sumR[p] += cr; sumG[p] += cg; sumB[p] += cb;
            hits[p] += 1;
            own[p] = i;
          }
        }
      }
      for (let p = 0; p < W * H; p++) {
        const c = hits[p];
        if (!c) continue;
        const half = c >>> 1; // round to nearest
        buf[p] = ((255 << 24) | (Math.floor((sumB[p] + half) / c) << 16) | (Math.floor((sumG[p] + half) / c) << 8) | Math.floor((sumR[p] + half) / c)) >>> 0;
      }
    } else {
      for (let i = 0; i < n; i++) {
        if (!visible[i] || x[i] !== x[i] || y[i] !== y[i]) continue;
        plot(buf, own, i, colors[codes[i]], r, s, ox, oy);
      }
    }
    baseAggregated = aggregate;
  }
  // sq = [xa, xb, ya, yb]: the pixels of point i's square of `size`, clipped to the canvas;
  // false when none is on it (one shared array: no allocation per point)
  const sq = new Int32Array(4);
  function square(i, size, s, ox, oy) {
    const px = Math.floor(x[i] * s + ox - size / 2);
    const py = Math.floor(oy - y[i] * s - size / 2);
    if (px >= W || py >= H || px + size <= 0 || py + size <= 0) return false;
    sq[0] = Math.max(0, px); sq[1] = Math.min(W, px + size);
    sq[2] = Math.max(0, py); sq[3] = Math.min(H, py + size);
    return true;
  }
  function plot(buf, own, i, word, size, s, ox, oy) {
    if (!square(i, size, s, ox, oy)) return;
    const q = sq;
    for (let yy = q[2]; yy < q[3]; yy++) {
      const row = yy * W;
      for (let xx = q[0]; xx < q[1]; xx++) {
        buf[row + xx] = word;
        own[row + xx] = i;
      }
    }
  }

  function draw() {
    frame = 0;
    if (!W || !H) return;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(W, H);
    const buf = new Uint32Array(img.data.buffer);
    const n = x.length;
    const base = n <= 20000 ? 3 : n <= 200000 ? 2 : 1;
    const r = Math.max(1, Math.round(base * dpr));
    const s = view.scale * dpr, ox = W / 2 - view.cx * s, oy = H / 2 + view.cy * s;
    const hasSel = selCount > 0;
    const key = [W, H, s, ox, oy, r, hasSel, dataVersion, model.get("aggregate_above")].join("|");
    if (key !== baseKey || baseBuf.length !== W * H) {
      drawBase(r, s, ox, oy, hasSel);
      baseKey = key;
    }
    buf.set(baseBuf);
    owner.set(baseOwner);
    const aggregate = baseAggregated;
    if (hasSel) {
      // selected points on top, one step larger, so the dimmed square beneath is covered
      const rs = r + Math.max(1, Math.round(dpr));
      for (let k = 0; k < selRows.length; k++) {
        const i = selRows[k];
        if (i >= n || !visible[i] || x[i] !== x[i] || y[i] !== y[i]) continue;
        plot(buf, owner, i, pal[codes[i]], rs, s, ox, oy);
      }
    }
    ctx.putImageData(img, 0, 0);
    canvas.dataset.cx = String(view.cx);
    canvas.dataset.cy = String(view.cy);
    canvas.dataset.scale = String(view.scale);
    canvas.dataset.rendered = String(Number(canvas.dataset.rendered || 0) + 1);
    canvas.dataset.aggregated = String(aggregate);
  }
  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };

  function drawLegend() {
    const info = model.get("_color_info") || {};
    const items = [el("div", { class: "fl-legend-title", text: info.column || "" })];
    if (info.kind === "category") {
      (info.labels || []).slice(0, 30).forEach((label, i) => {
        const sw = el("span", { class: "fl-swatch" });
        sw.style.background = info.colors[i] || "#bebebe";
        items.push(el("div", { class: "fl-legend-item" }, [sw, el("span", { text: label })]));
      });
      if ((info.labels || []).length > 30) items.push(el("div", { text: `… ${info.labels.length - 30} more` }));
    } else if (info.kind === "continuous") {
      const stops = (info.colors || []).filter((_, i) => i % 32 === 0 || i === info.colors.length - 1);
      const bar = el("div", { class: "fl-colorbar" });
      bar.style.background = `linear-gradient(to top, ${stops.join(", ")})`;
      items.push(el("div", { class: "fl-colorbar-wrap" }, [bar, el("div", { class: "fl-colorbar-labels" }, [el("span", { text: "≥ " + fmt(info.vmax) }), el("span", { text: "≤ " + fmt(info.vmin) })])]));
      if (info.missing) items.push(el("div", { class: "fl-hint", text: `${info.missing} missing (grey)` }));
    }
    legend.replaceChildren(...items);
  }

  // ---------------------------------------------------------------- selection
  function commitSelection(rows, source) {
    model.set("_selection", new DataView(rows.buffer, rows.byteOffset, rows.byteLength));
    model.set("_selection_source", source);
    model.set("_selection_counter", (model.get("_selection_counter") || 0) + 1);
    model.save_changes();
    selMask = new Uint8Array(x.length);
    for (let k = 0; k < rows.length; k++) selMask[rows[k]] = 1;
    selRows = rows;
    selCount = rows.length;
    showCount();
    schedule();
  }
  function showCount() {
    selCountEl.dataset.count = String(selCount);
    selCountEl.textContent = `${selCount} selected`;
    drawDescribing();
  }
  function finishBox(a, b, add) {
    const xa = Math.min(toX(a[0]), toX(b[0])), xb = Math.max(toX(a[0]), toX(b[0]));
    const ya = Math.min(toY(a[1]), toY(b[1])), yb = Math.max(toY(a[1]), toY(b[1]));
    const out = [];
    for (let i = 0; i < x.length; i++) {
      if ((visible[i] && x[i] >= xa && x[i] <= xb && y[i] >= ya && y[i] <= yb) || (add && selMask[i])) out.push(i);
    }
    commitSelection(Uint32Array.from(out), "box");
  }
  function finishLasso(path, add) {
    if (path.length < 3) return;
    const poly = path.map(([px, py]) => [toX(px), toY(py)]);
    let xa = Infinity, xb = -Infinity, ya = Infinity, yb = -Infinity;
    for (const [a, b] of poly) { xa = Math.min(xa, a); xb = Math.max(xb, a); ya = Math.min(ya, b); yb = Math.max(yb, b); }
    const out = [];
    for (let i = 0; i < x.length; i++) {
      let inside = false;
      const px = x[i], py = y[i];
      if (visible[i] && px >= xa && px <= xb && py >= ya && py <= yb) {
        for (let k = 0, j = poly.length - 1; k < poly.length; j = k++) {
          const [xi, yi] = poly[k], [xj, yj] = poly[j];
          if ((yi > py) !== (yj > py) && px < ((xj - xi) * (py - yi)) / (yj - yi) + xi) inside = !inside;
        }
      }
      if (inside || (add && selMask[i])) out.push(i);
    }
    commitSelection(Uint32Array.from(out), "lasso");
  }

  // ---------------------------------------------------------------- pointer
  let drag = null;
  const octx = overlay.getContext("2d");
  const local = (ev) => {
    const rect = overlay.getBoundingClientRect();
    return [ev.clientX - rect.left, ev.clientY - rect.top];
  };
  function drawOverlay() {
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, W, H);
    if (!drag || drag.mode === "pan") return;
    octx.strokeStyle = "#222";
    octx.fillStyle = "rgba(30,120,220,0.12)";
    octx.setLineDash([4, 3]);
    octx.beginPath();
    if (drag.mode === "box") {
      const [a, b] = [drag.start, drag.last];
      octx.rect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1]));
    } else {
      drag.path.forEach(([px, py], k) => (k ? octx.lineTo(px, py) : octx.moveTo(px, py)));
      octx.closePath();
    }
    octx.fill();
    octx.stroke();
  }
  function hit(p) {
    const cx = Math.round(p[0] * dpr), cy = Math.round(p[1] * dpr);
    const rad = Math.round(4 * dpr);
    let best = -1, bestD = Infinity;
    for (let dy = -rad; dy <= rad; dy++) {
      const yy = cy + dy;
      if (yy < 0 || yy >= H) continue;
      for (let dx = -rad; dx <= rad; dx++) {
        const xx = cx + dx;
        if (xx < 0 || xx >= W) continue;
        const i = owner[yy * W + xx];
        if (i >= 0 && dx * dx + dy * dy < bestD) { best = i; bestD = dx * dx + dy * dy; }
      }
    }
    return best;
  }
  let hoverTimer = 0;
  let hovered = -1;
  function hover(p) {
    const i = hit(p);
    if (i === hovered) { if (i >= 0) placeTooltip(p); return; }
    hovered = i;
    if (i < 0) { tooltip.hidden = true; return; }
    tooltip.replaceChildren(el("div", { text: `row ${i}` }));
    placeTooltip(p);
    tooltip.hidden = false;
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(() => requestInspect(i, false), 60);
  }
  function placeTooltip(p) {
    const cssW = W / dpr;
    tooltip.style.left = Math.min(p[0] + 12, cssW - 180) + "px";
    tooltip.style.top = p[1] + 12 + "px";
  }
  overlay.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    overlay.setPointerCapture(ev.pointerId);
    const p = local(ev);
    drag = { mode, start: p, last: p, path: [p], add: ev.shiftKey, view: { ...view } };
    tooltip.hidden = true;
  });
  overlay.addEventListener("pointermove", (ev) => {
    const p = local(ev);
    if (!drag) { hover(p); return; }
    drag.last = p;
    if (drag.mode === "pan") {
      view.cx = drag.view.cx - (p[0] - drag.start[0]) / view.scale;
      view.cy = drag.view.cy + (p[1] - drag.start[1]) / view.scale;
      schedule();
    } else if (drag.mode === "lasso") {
      const q = drag.path[drag.path.length - 1];
      if (Math.abs(q[0] - p[0]) + Math.abs(q[1] - p[1]) >= 2) drag.path.push(p);
    }
    drawOverlay();
  });
  const endDrag = (ev) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    drawOverlay();
    const p = local(ev);
    const moved = Math.abs(p[0] - d.start[0]) + Math.abs(p[1] - d.start[1]);
    if (d.mode === "pan") return;
    if (moved < 3) {
      const i = hit(p);
      if (i >= 0) { pinned = i; requestInspect(i, true); }
      else if (!d.add) { pinned = null; commitSelection(new Uint32Array(0), d.mode); }
      return;
    }
    if (d.mode === "box") finishBox(d.start, p, d.add);
    else finishLasso(d.path, d.add);
  };
  overlay.addEventListener("pointerup", endDrag);
  overlay.addEventListener("pointercancel", () => { drag = null; drawOverlay(); });
  overlay.addEventListener("pointerleave", () => { if (!drag) { tooltip.hidden = true; hovered = -1; } });
  overlay.addEventListener("dblclick", () => { fitView(); draw(); });
  const onWheel = (ev) => {
    ev.preventDefault();
    const p = local(ev);
    const bx = toX(p[0]), by = toY(p[1]);
    view.scale *= Math.exp(-ev.deltaY * 0.0015);
    view.cx = bx - (p[0] - W / dpr / 2) / view.scale;
    view.cy = by - (H / dpr / 2 - p[1]) / view.scale;
    schedule();
  };
  overlay.addEventListener("wheel", onWheel, { passive: false });

  // ---------------------------------------------------------------- inspector, thumbnails
  function requestInspect(row, pin) {
    if (pinned !== null && !pin && pinned !== row) {
      model.send({ type: "inspect", row, req: -1 }); // tooltip only
      return;
    }
    inspectReq += 1;
    model.send({ type: "inspect", row, req: inspectReq });
  }
  function blobUrl(buffer) {
    const bytes = asBytes(buffer);
    if (!bytes.byteLength) return null;
    // thumbnails are JPEG (photos) or PNG (small images): name the type from the signature
    const jpeg = bytes.byteLength > 2 && bytes[0] === 0xff && bytes[1] === 0xd8;
    return URL.createObjectURL(new Blob([bytes], { type: jpeg ? "image/jpeg" : "image/png" }));
  }
  let inspUrl = null;
  function onInspect(msg, buffers) {
    const info = msg.info || [];
    const get = (k) => (info.find((r) => r[0] === k) || [k, "–"])[1];
    if (hovered === msg.row && !tooltip.hidden) {
      tooltip.replaceChildren(
        el("div", { class: "fl-tt-id", text: get("id") }),
        el("div", { text: `label: ${get("label_name")}` }),
        el("div", { text: `pred: ${get("pred_name")} (${get("correct") === "True" ? "✓" : "✗"})` }),
        el("div", { text: `confidence: ${get("confidence")}` }),
      );
    }
    if (msg.req === -1 || msg.req !== inspectReq) return;
    if (inspUrl) URL.revokeObjectURL(inspUrl);
    inspUrl = blobUrl(buffers && buffers[0]);
    inspImg.src = inspUrl || "";
    inspImg.alt = `image ${get("id")}`;
    inspImg.hidden = !inspUrl;
    inspHint.textContent = msg.error || (pinned === msg.row ? "Pinned (click empty map to unpin)." : "Hovered point.");
    inspMeta.replaceChildren(...info.map(([k, v]) => el("tr", {}, [el("th", { text: k }), el("td", { text: v })])));
  }
  function onThumbs(msg, buffers) {
    (msg.rows || []).forEach((row, k) => {
      pendingThumbs.delete(row);
      const url = blobUrl(buffers && buffers[k]);
      if (url) {
        if (urls.has(row)) URL.revokeObjectURL(urls.get(row));
        urls.set(row, url);
        if (urls.size > 600) { const [r0, u0] = urls.entries().next().value; URL.revokeObjectURL(u0); urls.delete(r0); }
      }
      for (const img of container.querySelectorAll(`img[data-row="${row}"]`)) {
        if (url) img.src = url;
        else img.alt = (msg.errors && msg.errors[k]) || "no image";
      }
    });
  }
  on("msg:custom", (msg, buffers) => {
    if (msg.type === "inspect") onInspect(msg, buffers);
    else if (msg.type === "thumbs") onThumbs(msg, buffers);
  });

  // ---------------------------------------------------------------- stats, grid, slices
  function drawStats() {
    const st = model.get("stats") || {};
    const s = st.selection || {}, b = st.baseline || {};
    if (!st.n_selected) {
      statsBody.replaceChildren(el("div", { class: "fl-hint", text: `Nothing selected. Filter: ${b.n ?? 0} images, error rate ${pct(b.error_rate)}.` }));
      return;
    }
    const rows = [
      ["selected", `${s.n}` + (st.n_hidden ? ` (+${st.n_hidden} hidden by the filter)` : "")],
      ["error rate", `${pct(s.error_rate)}  [95% CI ${pct(s.ci_low)} – ${pct(s.ci_high)}]`],
      ["vs. filtered", `${pct(b.error_rate)} of ${b.n}`],
      ["lift", st.lift == null ? "–" : `${st.lift.toFixed(2)}×`],
    ];
    const parts = [el("table", { class: "fl-kv" }, rows.map(([k, v]) => el("tr", {}, [el("th", { text: k }), el("td", { text: v })])))];
    parts.push(el("div", { class: "fl-sub", text: "class mix (vs. filtered)" }));
    for (const c of (st.class_mix || []).slice(0, 5)) {
      const bar = el("span", { class: "fl-bar" });
      bar.style.width = Math.round(100 * c.share) + "%";
      parts.push(el("div", { class: "fl-mix" }, [el("span", { class: "fl-mix-name", text: c.name }), el("span", { class: "fl-bar-wrap" }, [bar]), el("span", { text: `${pct(c.share)} (${pct(c.baseline_share)})` })]));
    }
    if ((st.confusions || []).length) {
      parts.push(el("div", { class: "fl-sub", text: "top confusions (label → prediction)" }));
      for (const c of st.confusions) parts.push(el("div", { class: "fl-conf", text: `${c.label_name} → ${c.pred_name}: ${c.n}` }));
    }
    statsBody.replaceChildren(...parts);
  }
  function drawGrid() {
    const g = model.get("_grid") || {};
    const list = g.tiles || [];
    gridInfo.textContent = g.total ? `${g.total} images · page ${g.page + 1}/${g.n_pages}` : "Select points on the map to see their images.";
    gridInfo.dataset.total = String(g.total || 0);
    prevBtn.disabled = !g.page;
    nextBtn.disabled = !g.total || g.page >= g.n_pages - 1;
    const want = [];
    tiles.replaceChildren(...list.map((tile) => {
      const img = el("img", { class: "fl-thumb", alt: `image ${tile.id}`, "data-row": String(tile.row) });
      if (urls.has(tile.row)) img.src = urls.get(tile.row);
      else if (!pendingThumbs.has(tile.row)) { want.push(tile.row); pendingThumbs.add(tile.row); }
      const mark = tile.correct ? "✓" : "✗";
      const cap = tile.correct ? `${mark} ${tile.label}` : `${mark} ${tile.label} → ${tile.pred}`;
      const node = el("figure", { class: "fl-tile " + (tile.correct ? "fl-ok" : "fl-bad"), "data-row": String(tile.row), tabindex: "0", title: tile.id }, [
        img,
        el("figcaption", {}, [
          el("div", { class: "fl-cap", text: cap }),
          el("div", { class: "fl-capsub", text: `conf ${fmt(tile.confidence, 2)}` + (tile.sort_value != null && g.sort !== "confidence" ? ` · ${g.sort} ${fmt(tile.sort_value)}` : "") }),
          tile.caption ? el("div", { class: "fl-tile-caption", title: "caption from the describe step", text: `“${tile.caption}”` }) : null,
        ]),
      ]);
      const pin = () => { pinned = tile.row; requestInspect(tile.row, true); };
      node.addEventListener("click", pin);
      node.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pin(); } });
      return node;
    }));
    if (want.length) model.send({ type: "thumbs", rows: want });
  }
  function drawSlices() {
    const list = model.get("saved_slices") || [];
    sliceList.replaceChildren(...list.map((s) => {
      const act = (op, extra = {}) => () => model.send({ type: "slice", op, name: s.name, ...extra });
      return el("li", { class: "fl-slice", "data-name": s.name }, [
        el("span", { class: "fl-slice-label", text: `${s.name} (${s.n})` }),
        el("button", { type: "button", text: "select", "aria-label": `select slice ${s.name}`, onclick: act("load") }),
        el("button", { type: "button", text: "csv", "aria-label": `export slice ${s.name} as CSV`, onclick: act("export", { fmt: "csv" }) }),
        el("button", { type: "button", text: "parquet", "aria-label": `export slice ${s.name} as parquet`, onclick: act("export", { fmt: "parquet" }) }),
        el("button", { type: "button", text: "delete", "aria-label": `delete slice ${s.name}`, onclick: act("delete") }),
      ]);
    }));
    if (!list.length) sliceList.replaceChildren(el("li", { class: "fl-hint", text: "No saved slices." }));
  }

  function wantThumb(row, want) {
    const img = el("img", { class: "fl-mini", alt: `image ${row}`, "data-row": String(row) });
    if (urls.has(row)) img.src = urls.get(row);
    else if (!pendingThumbs.has(row)) { want.push(row); pendingThumbs.add(row); }
    return img;
  }
  function drawDiscovered() {
    const list = model.get("discovered") || [];
    const active = model.get("active_slice");
    if (!list.length) {
      discBody.replaceChildren(el("div", { class: "fl-hint", text: "No discovered slices yet: press “Find slices” or call explorer.find_slices()." }));
      return;
    }
    const head = el("tr", {}, ["", "slice", "method", "images", "error rate [95% CI]", "lift", "description"].map((h) => el("th", { text: h })));
    const body = list.map((s) => {
      const sw = el("span", { class: "fl-swatch" });
      sw.style.background = s.color || "#bebebe";
      const desc = el("td", { class: "fl-disc-desc" }, (s.descriptions || []).map((d) => el("div", { class: "fl-desc-line" }, [
        el("span", { class: "fl-source", text: d.source }),
        el("span", { class: "fl-terms", text: (d.terms || []).join(", ") || "(no contrasting terms)" }),
      ])));
      const select = () => model.send({ type: "select_slice", index: s.index });
      const tr = el("tr", {
        class: "fl-disc-row" + (s.index === active ? " fl-active" : ""), "data-index": String(s.index), tabindex: "0",
        role: "button", "aria-label": `select discovered slice ${s.name}`, "aria-pressed": String(s.index === active),
        onclick: select, onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(); } },
      }, [
        el("td", {}, [sw]),
        el("td", { class: "fl-disc-name", text: s.name }),
        el("td", { text: s.method }),
        el("td", { class: "fl-num", text: String(s.size) }),
        el("td", { class: "fl-num fl-rate" }, [el("span", { text: pct(s.error_rate) }), el("span", { class: "fl-ci", text: ` [${pct(s.ci_low)} – ${pct(s.ci_high)}]` })]),
        el("td", { class: "fl-num", text: s.lift == null ? "–" : `${s.lift.toFixed(2)}×` }),
        desc,
      ]);
      return tr;
    });
    discBody.replaceChildren(el("table", { class: "fl-disc-table" }, [el("thead", {}, [head]), el("tbody", {}, body)]));
  }
  function drawDescribing() {
    const busy = !!model.get("describing");
    describeBtn.disabled = busy || !selCount;
    describeBtn.setAttribute("aria-busy", String(busy));
    descState.textContent = busy ? "describing…" : "";
    container.classList.toggle("fl-is-describing", busy);
  }
  function drawDescriptions() {
    const d = model.get("descriptions") || {};
    drawDescribing();
    if (!d.items && !d.error) {
      descBody.replaceChildren(el("div", { class: "fl-hint", text: "Select images, then “Describe selection”: captions, CLIP phrases or ImageNet tags, each labelled with its source." }));
      return;
    }
    const want = [];
    const parts = [el("div", { class: "fl-sub", text: `${d.n || 0} images described` })];
    if (d.stale) parts.push(el("div", { class: "fl-desc-stale", role: "status", text: "described an earlier selection — Describe again" }));
    if (d.error) parts.push(el("div", { class: "fl-desc-error", role: "alert", text: `error: ${d.error}` }));
    for (const item of d.items || []) {
      const terms = (item.terms || []).map(([t]) => t);
      parts.push(el("div", { class: "fl-desc-item", "data-source": item.source }, [
        el("span", { class: "fl-source", text: item.source }),
        el("span", { class: "fl-terms", text: terms.join(", ") || "(no terms stand out against the reference group)" }),
      ]));
      if ((item.captions || []).length) {
        parts.push(el("ul", { class: "fl-caplist" }, item.captions.map((c) => el("li", { class: "fl-capitem", "data-row": String(c.row), title: c.id }, [
          wantThumb(c.row, want),
          el("span", { class: "fl-captext", text: c.caption }),
        ]))));
      }
    }
    for (const note of d.notes || []) parts.push(el("div", { class: "fl-desc-note", text: note }));
    descBody.replaceChildren(...parts);
    if (want.length) model.send({ type: "thumbs", rows: want });
  }

  // ---------------------------------------------------------------- wiring
  on("change:_x", () => { loadXY(); fitView(); schedule(); });
  on("change:_y", () => { loadXY(); fitView(); schedule(); });
  on("change:_color", () => { loadColor(); schedule(); });
  on("change:_color_info", () => { loadColor(); drawLegend(); schedule(); });
  on("change:_visible", () => { loadVisible(); schedule(); });
  on("change:_selection_counter", () => { loadSelection(); showCount(); drawDescribing(); schedule(); });
  on("change:discovered", drawDiscovered);
  on("change:active_slice", drawDiscovered);
  on("change:descriptions", drawDescriptions);
  on("change:describing", drawDescribing);
  on("change:stats", drawStats);
  on("change:_grid", drawGrid);
  on("change:saved_slices", drawSlices);
  on("change:status", () => { status.textContent = model.get("status"); });
  for (const name of ["color_options", "sort_options", "color_by", "grid_sort", "grid_descending", "filter_correct", "filter_confidence", "filter_classes", "class_names"]) {
    on("change:" + name, syncControls);
  }
  on("change:height", () => { resize(); fitView(); draw(); });
  on("change:aggregate_above", schedule);

  loadXY();
  loadColor();
  loadVisible();
  loadSelection();
  showCount();
  syncControls();
  drawLegend();
  drawStats();
  drawGrid();
  drawSlices();
  drawDiscovered();
  drawDescriptions();
  status.textContent = model.get("status") || "";
  setMode("box");
  const ro = new ResizeObserver(() => {
    const w = Math.floor(mapWrap.clientWidth);
    if (w && Math.floor(w * dpr) !== W) { resize(); fitView(); draw(); }
  });
  ro.observe(mapWrap);
  resize();
  fitView();
  draw();

  return () => {
    for (const d of disposers) d();
    ro.disconnect();
    clearTimeout(hoverTimer);
    if (frame) cancelAnimationFrame(frame);
    for (const u of urls.values()) URL.revokeObjectURL(u);
    if (inspUrl) URL.revokeObjectURL(inspUrl);
  };
}

export default { render };
