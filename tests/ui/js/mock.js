const toView = (b64) => { const s = atob(b64), a = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i); return new DataView(a.buffer); };
const decode = (v) => {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === "object") {
    if (Object.keys(v).length === 1 && "__b64__" in v) return toView(v.__b64__);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x)]));
  }
  return v;
};
const encode = (v) => {
  if (v instanceof DataView || ArrayBuffer.isView(v)) {
    const b = new Uint8Array(v.buffer, v.byteOffset, v.byteLength); let s = "";
    for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
    return { __b64__: btoa(s) };
  }
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encode(x)]));
  return v;
};
export class MockModel {
  constructor(id, state) { this.id = id; this.state = decode(state); this.listeners = {}; this.dirty = {}; }
  get(k) { return this.state[k]; }
  set(k, v) { this.state[k] = v; this.dirty[k] = v; this.emit("change:" + k); }
  on(ev, fn) { (this.listeners[ev] ||= new Set()).add(fn); }
  off(ev, fn) { this.listeners[ev]?.delete(fn); }
  emit(ev, ...args) { for (const f of [...(this.listeners[ev] || [])]) f(...args); }
  async save_changes() { const p = encode(this.dirty); this.dirty = {}; this.apply(await window.flCall(this.id, "state", p)); }
  async send(msg) { this.apply(await window.flCall(this.id, "msg", encode(msg))); }
  apply(r) {
    for (const [k, v] of Object.entries(decode(r.state))) { this.state[k] = v; this.emit("change:" + k); }
    for (const m of r.msgs) this.emit("msg:custom", decode(m.content), m.buffers.map(toView));
  }
}
window.flMount = async (id, bundle, where, state) => {
  const mod = await import("/static/" + bundle);
  window.flModels = window.flModels || {};
  const model = (window.flModels[id] = new MockModel(id, state));
  window.flCleanups = window.flCleanups || {};
  window.flCleanups[id] = await mod.default.render({ model, el: document.getElementById(where) });
};
