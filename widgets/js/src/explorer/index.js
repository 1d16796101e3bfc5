// faultlens Explorer front end: a canvas map (one ImageData pass per frame), box / lasso selection,
// filters, legend, inspector, statistics, saved and discovered slices, descriptions and an image
// grid. Each part is a module whose mount(ctx) adds its nodes and listeners and returns a cleanup;
// `ctx` carries the model, the scoped listeners, the data store and the few parts others call.

import { el } from "../shared/dom.js";
import { createDispatcher, createScope } from "../shared/scope.js";
import { mountTask } from "../shared/task.js";
import { createData } from "./data.js";
import { mountDescribe } from "./describe.js";
import { mountDiscovered } from "./discovered.js";
import { mountGrid } from "./grid.js";
import { mountInspector } from "./inspector.js";
import { mountLegend } from "./legend.js";
import { mountMap } from "./map.js";
import { mountPointer } from "./pointer.js";
import { mountSavedSlices } from "./saved.js";
import { mountSearch } from "./search.js";
import { mountSelection } from "./selection.js";
import { mountStats } from "./stats.js";
import { mountThumbs } from "./thumbs.js";
import { mountToolbar } from "./toolbar.js";

/** The empty frame every part mounts into. */
function layout() {
  const slots = {
    toolbar: el("div", { class: "fl-toolbar" }),
    mapWrap: el("div", { class: "fl-mapwrap" }),
    side: el("div", { class: "fl-side" }),
    insights: el("div", { class: "fl-insights" }),
    grid: el("section", { class: "fl-grid", "aria-label": "Images of the selection" }),
    status: el("div", { class: "fl-status", role: "status", "aria-live": "polite" }),
  };
  const root = el("div", { class: "faultlens-explorer" }, [
    slots.toolbar, el("div", { class: "fl-main" }, [slots.mapWrap, slots.side]), slots.insights, slots.grid, slots.status,
  ]);
  return { root, slots };
}

// mount order: within one slot, the order of the nodes on the page; a part may call another only
// from its event handlers, or at mount when that part is mounted before it
const PARTS = [
  mountSelection, mountThumbs, mountMap, mountStats, mountInspector, mountLegend, mountSavedSlices,
  mountDiscovered, mountDescribe, mountGrid, mountToolbar, mountSearch, mountPointer, mountTask,
];

function render({ model, el: host }) {
  const scope = createScope(model);
  const { root, slots } = layout();
  const data = createData(model);
  const ctx = {
    model, root, slots, data,
    on: scope.on, listen: scope.listen,
    handle: createDispatcher(scope),
    tool: { mode: "box" },
    setStatus: (text) => { slots.status.textContent = text; },
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

export default { render };
