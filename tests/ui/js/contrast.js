(roots) => {
  const parse = (s) => {
    let m = s.match(/^rgba?\(([^)]+)\)/);
    if (m) { const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
    m = s.match(/^color\(srgb ([^)]+)\)/);
    if (m) { const p = m[1].split(/[\s\/]+/).filter(Boolean).map(Number); return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1]; }
    return null;
  };
  const over = (c, bg, a) => [0, 1, 2].map((i) => c[i] * a + bg[i] * (1 - a));
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const background = (e) => {
    const layers = [];
    for (let n = e; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255];
    for (const c of layers.reverse()) bg = over(c, bg, c[3]);
    return bg;
  };
  const opacity = (e) => { let o = 1; for (let n = e; n; n = n.parentElement) o *= Number(getComputedStyle(n).opacity); return o; };
  const out = [];
  for (const root of document.querySelectorAll(roots)) for (const e of [root, ...root.querySelectorAll('*')]) {
    if (e.tagName === 'OPTION' || e.closest(':disabled') || !e.getClientRects().length) continue;
    const st = getComputedStyle(e);
    if (st.visibility !== 'visible') continue;
    const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const field = ['SELECT', 'INPUT'].includes(e.tagName) && !['checkbox', 'range'].includes(e.type);
    if (!own && !field) continue;
    const fg = parse(st.color), bg = background(e);
    const shown = over(fg, bg, fg[3] * opacity(e));
    const size = parseFloat(st.fontSize), bold = Number(st.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    out.push({ root: root.className, tag: e.tagName, cls: e.className, text: (e.value || e.textContent).trim().slice(0, 40),
      ratio: Math.round(ratio(shown, bg) * 100) / 100, need: large ? 3 : 4.5,
      fg: shown.map(Math.round), bg: bg.map(Math.round) });
  }
  // graphics that carry meaning (WCAG 1.4.11, 3:1): the frames marking wrong (✗) and right tiles, the
  // discovered-slice panel's accent bar; each against the background around it
  const cues = [['.faultlens-explorer .fl-tile.fl-bad', 'Top'], ['.fl-features .fl-tile.fl-bad', 'Top'],
    ['.fl-features .fl-tile.fl-ok', 'Top'], ['.faultlens-explorer .fl-discovered', 'Left']];
  for (const [sel, side] of cues) for (const e of [...document.querySelectorAll(sel)].slice(0, 3)) {
    const c = parse(getComputedStyle(e)[`border${side}Color`]), bg = background(e.parentElement);
    const shown = over(c, bg, c[3]);
    out.push({ root: e.closest(roots).className, tag: e.tagName, cls: e.className, text: `[${side.toLowerCase()} border]`,
      ratio: Math.round(ratio(shown, bg) * 100) / 100, need: 3, fg: shown.map(Math.round), bg: bg.map(Math.round) });
  }
  return out;
}
