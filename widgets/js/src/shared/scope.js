// Listener bookkeeping: everything registered through a scope is unregistered by its dispose(), so
// a widget's render() can return one cleanup that leaves no listener, observer or timer behind.

export function createScope(model) {
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
    },
  };
  return scope;
}

/** One handler per custom-message type, registered on one "msg:custom" listener. */
export function createDispatcher(scope) {
  const handlers = new Map();
  scope.on("msg:custom", (msg, buffers) => {
    const handler = msg && handlers.get(msg.type);
    if (handler) handler(msg, buffers);
  });
  return (type, fn) => handlers.set(type, fn);
}

/** A tiny publish/subscribe value: emit() calls every subscriber. */
export function signal() {
  const fns = new Set();
  return {
    emit: (...args) => fns.forEach((f) => f(...args)),
    subscribe(fn) {
      fns.add(fn);
      return () => fns.delete(fn);
    },
  };
}
