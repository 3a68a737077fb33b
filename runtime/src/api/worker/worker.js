// The two ways a Worker receives requests: `export default { fetch }` (modules: Rust calls the
// handler directly) and `addEventListener('fetch', ...)` (service workers: this file fires a
// FetchEvent). The global scope is an EventTarget, as in workerd.
(function (ops, internals, global, primordials) {
  "use strict";
  const { ObjectDefineProperty } = primordials;
  const { defineHidden, webClass, Event, EventTarget, hooks } = internals;

  const globalTarget = new EventTarget();
  internals.globalTarget = globalTarget;
  defineHidden(global, "addEventListener", function addEventListener(type, listener, options = undefined) {
    globalTarget.addEventListener(type, listener, options);
  });
  defineHidden(global, "removeEventListener", function removeEventListener(type, listener, options = undefined) {
    globalTarget.removeEventListener(type, listener, options);
  });
  defineHidden(global, "dispatchEvent", function dispatchEvent(event) {
    return globalTarget.dispatchEvent(event);
  });

  class FetchEvent extends Event {
    #request; #ctx; #response = undefined; #responded = false;
    constructor(type, init) {
      super(type);
      if (init === undefined || init === null || init.request === undefined) {
        throw new TypeError("FetchEvent: init.request is required");
      }
      this.#request = init.request;
      this.#ctx = init[internals.token];
    }
    get request() { return this.#request; }
    respondWith(response) {
      if (this.#responded) throw new internals.DOMException("FetchEvent.respondWith() has already been called", "InvalidStateError");
      this.#responded = true;
      this.#response = response;
    }
    waitUntil(promise) {
      if (this.#ctx !== undefined) this.#ctx.waitUntil(promise);
    }
    passThroughOnException() {
      if (this.#ctx !== undefined) this.#ctx.passThroughOnException();
    }
    static _outcome(e) { return e.#responded ? { response: e.#response } : undefined; }
  }
  const fetchEventOutcome = FetchEvent._outcome;
  delete FetchEvent._outcome;
  webClass(FetchEvent, "FetchEvent");
  defineHidden(global, "FetchEvent", FetchEvent);

  // A service worker's request: the value given to respondWith (a Response or a promise of one).
  hooks.dispatchFetch = function dispatchFetch(request, ctx) {
    const event = new FetchEvent("fetch", { request, [internals.token]: ctx });
    internals.dispatchEvent(globalTarget, event, true);
    const outcome = fetchEventOutcome(event);
    if (outcome === undefined) {
      throw new Error("no fetch listener called event.respondWith(); the script will never generate a response");
    }
    return outcome.response;
  };

  // Whether a service-worker script registered a fetch listener.
  hooks.checkServiceWorker = function checkServiceWorker() {
    return internals.listenersOf(globalTarget, "fetch").length > 0;
  };

  // A service worker's bindings are globals (a module worker gets them as `env`).
  hooks.setGlobalBindings = function setGlobalBindings(env) {
    for (const key of primordials.ObjectKeys(env)) {
      ObjectDefineProperty(global, key, { value: env[key], writable: true, configurable: true, enumerable: true });
    }
  };
})
