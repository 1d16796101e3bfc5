// The host theme as the canvas needs it. Stylesheets follow JupyterLab's theme through its --jp-*
// variables; a canvas cannot, so the map reads its colours from the computed style and redraws
// when JupyterLab switches theme (it marks <body> with data-jp-theme-name / data-jp-theme-light).

let probe = null;

/** [r, g, b, a] (0-255, a 0-1) of any CSS colour string; null when it does not parse. */
export function parseColor(text) {
  probe = probe || document.createElement("canvas").getContext("2d");
  probe.fillStyle = "#010203"; // a sentinel: an invalid colour leaves it unchanged
  probe.fillStyle = text.trim();
  const v = probe.fillStyle;
  if (v === "#010203" && text.trim() !== "#010203") return null;
  if (v.startsWith("#")) return [1, 3, 5].map((i) => parseInt(v.slice(i, i + 2), 16)).concat(1);
  const m = v.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const [r, g, b, a = "1"] = m[1].split(",");
  return [Number(r), Number(g), Number(b), Number(a)];
}

/** A custom property of `node` as [r, g, b] (alpha composed over `under`), or `fallback`. */
export function cssRgb(node, name, fallback, under = [255, 255, 255]) {
  const c = parseColor(getComputedStyle(node).getPropertyValue(name) || "");
  if (!c) return fallback;
  return [0, 1, 2].map((i) => Math.round(c[i] * c[3] + under[i] * (1 - c[3])));
}

/** Calls `fn` whenever JupyterLab switches theme; returns the disconnect. The theme's stylesheet
 * can land a moment after the attribute, so `fn` runs once more shortly after. */
export function onThemeChange(fn) {
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
