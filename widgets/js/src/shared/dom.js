// DOM helpers shared by both widgets. Every data string reaches the page through textContent or an
// attribute, never innerHTML.

/** An element with attributes ("class", "text", "on<event>" handlers, anything else as an attribute)
 * and children (null children are skipped). */
export function el(tag, attrs = {}, children = []) {
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

/** Calls `fn` on Enter or Space (for elements that act as buttons). */
export function onActivateKey(fn) {
  return (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      fn();
    }
  };
}

/** A two-column table of [key, value] text rows. */
export function kvRows(rows) {
  return rows.map(([k, v]) => el("tr", {}, [el("th", { text: k }), el("td", { text: v })]));
}

/** Sets a trait from the view and syncs it to Python. */
export function setTrait(model, name, value) {
  model.set(name, value);
  model.save_changes();
}
