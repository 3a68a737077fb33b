// The two ways a Worker receives requests — `export default { fetch }` (modules) and
// `addEventListener('fetch', ...)` (service workers) — and the hand-off of each request's outcome
// to Rust through ops.respond / ops.fail.
(function (ops, internals, global) {
  "use strict";
  const { defineHidden, webClass, Event, EventTarget, Response, requestFromWire, responseToWire, reportError } = internals;
  const PromiseResolve = Promise.resolve.bind(Promise);

  // The global scope of a service worker is an EventTarget; isobar keeps one behind the globals.
  const globalTarget = new EventTarget();
  defineHidden(global, "addEventListener", (type, listener, options) => globalTarget.addEventListener(type, listener, options));
  defineHidden(global, "removeEventListener", (type, listener, options) => globalTarget.removeEventListener(type, listener, options));
  defineHidden(global, "dispatchEvent", (event) => globalTarget.dispatchEvent(event));

  function describe(error) {
    if (error instanceof Error && error.stack) return String(error.stack);
    return "Uncaught " + internals.inspect(error);
  }

  function finish(id, value) {
    if (!(value instanceof Response)) {
      ops.fail(id, `TypeError: the fetch handler returned ${internals.inspect(value)}, not a Response`);
      return;
    }
    let wire;
    try {
      wire = responseToWire(value);
    } catch (e) {
      ops.fail(id, describe(e));
      return;
    }
    if (wire[0] === 0) {
      ops.fail(id, "Error: the fetch handler returned Response.error()");
      return;
    }
    ops.respond(id, wire[0], wire[1], wire[2], wire[3]);
  }

  function settle(id, result) {
    // A handler that returned a Response synchronously needs no promise machinery.
    if (result instanceof Response) {
      finish(id, result);
      return;
    }
    PromiseResolve(result).then((value) => finish(id, value), (error) => ops.fail(id, describe(error)));
  }

  class ExecutionContext {
    constructor(key) {
      if (key !== internals.token) throw new TypeError("Illegal constructor");
    }
    waitUntil(promise) {
      PromiseResolve(promise).then(undefined, reportError);
    }
    passThroughOnException() {}
  }
  webClass(ExecutionContext, "ExecutionContext");

  class FetchEvent extends Event {
    #request; #response = undefined; #responded = false;
    constructor(type, init) {
      super(type);
      if (init === undefined || init === null || init.request === undefined) throw new TypeError("FetchEvent: init.request is required");
      this.#request = init.request;
    }
    get request() { return this.#request; }
    respondWith(response) {
      if (this.#responded) throw new DOMException("FetchEvent.respondWith() has already been called", "InvalidStateError");
      this.#responded = true;
      this.#response = response;
    }
    waitUntil(promise) { PromiseResolve(promise).then(undefined, reportError); }
    passThroughOnException() {}
    static _outcome(e) { return [e.#responded, e.#response]; }
  }
  const fetchEventOutcome = FetchEvent._outcome;
  delete FetchEvent._outcome;
  webClass(FetchEvent, "FetchEvent");
  defineHidden(global, "FetchEvent", FetchEvent);
  defineHidden(global, "ExecutionContext", ExecutionContext);

  let moduleHandler = null;
  let env = {};

  // Called by Rust once a module worker is evaluated. Returns an error message, or undefined.
  internals.setModuleExports = function setModuleExports(namespace) {
    const handler = namespace.default;
    moduleHandler = null;
    if (handler === undefined || handler === null) {
      return "the module has no default export; a module worker must `export default { async fetch(request, env, ctx) { ... } }`";
    }
    if (typeof handler.fetch !== "function") {
      return "the default export has no fetch() method; a module worker must `export default { async fetch(request, env, ctx) { ... } }`";
    }
    moduleHandler = handler;
    return undefined;
  };

  // Called by Rust once a service-worker script has run. Returns an error message, or undefined.
  internals.checkServiceWorker = function checkServiceWorker() {
    if (internals.listenersOf(globalTarget, "fetch").length === 0) {
      return "the script registered no fetch handler; call addEventListener('fetch', (event) => event.respondWith(...)) or `export default { fetch }`";
    }
    return undefined;
  };

  internals.setEnv = function setEnv(value) {
    env = value;
  };

  // One HTTP request in: Rust passes the parts, the outcome comes back through ops.respond/fail.
  internals.dispatch = function dispatch(id, method, url, flatHeaders, body) {
    const request = requestFromWire(method, url, flatHeaders, body);
    let result;
    try {
      if (moduleHandler !== null) {
        result = moduleHandler.fetch(request, env, new ExecutionContext(internals.token));
      } else {
        const event = new FetchEvent("fetch", { request });
        globalTarget.dispatchEvent(event);
        const [responded, response] = fetchEventOutcome(event);
        if (!responded) {
          ops.fail(id, "Error: no fetch listener called event.respondWith(); the script will never generate a response");
          return;
        }
        result = response;
      }
    } catch (error) {
      ops.fail(id, describe(error));
      return;
    }
    settle(id, result);
  };
})
