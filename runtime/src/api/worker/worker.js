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

  // Cron Triggers: `scheduled(controller, env, ctx)` of a module, or a service worker's
  // "scheduled" event. The controller and the event say which cron fired and when it was due.
  class ScheduledController {
    #cron; #scheduledTime; #noRetry = false;
    constructor(token, cron, scheduledTime) {
      if (token !== internals.token) throw new TypeError("Illegal constructor");
      this.#cron = cron;
      this.#scheduledTime = scheduledTime;
    }
    get cron() { return this.#cron; }
    get scheduledTime() { return this.#scheduledTime; }
    noRetry() { this.#noRetry = true; }
  }
  webClass(ScheduledController, "ScheduledController");
  defineHidden(global, "ScheduledController", ScheduledController);

  class ScheduledEvent extends Event {
    #cron; #scheduledTime; #ctx;
    constructor(type, init) {
      super(type);
      if (init === undefined || init === null || init[internals.token] === undefined) {
        throw new TypeError("Illegal constructor");
      }
      this.#cron = init.cron;
      this.#scheduledTime = init.scheduledTime;
      this.#ctx = init[internals.token];
    }
    get cron() { return this.#cron; }
    get scheduledTime() { return this.#scheduledTime; }
    noRetry() {}
    waitUntil(promise) { this.#ctx.waitUntil(promise); }
  }
  webClass(ScheduledEvent, "ScheduledEvent");
  defineHidden(global, "ScheduledEvent", ScheduledEvent);

  // Runs one firing: what `scheduled()` returned (awaited by the core like waitUntil work), or
  // undefined for a service worker (whose listeners use event.waitUntil).
  hooks.runScheduled = function runScheduled(handler, env, cron, scheduledTime, ctx) {
    if (handler !== undefined) {
      const scheduled = handler.scheduled;
      if (typeof scheduled !== "function") {
        throw new TypeError("the Worker has no scheduled handler: add `async scheduled(controller, env, ctx)` to its default export");
      }
      return primordials.FunctionPrototypeCall(scheduled, handler, new ScheduledController(internals.token, cron, scheduledTime), env, ctx);
    }
    if (internals.listenersOf(globalTarget, "scheduled").length === 0) {
      throw new TypeError("the Worker has no scheduled handler: call addEventListener('scheduled', (event) => ...)");
    }
    const event = new ScheduledEvent("scheduled", { cron, scheduledTime, [internals.token]: ctx });
    internals.dispatchEvent(globalTarget, event, true);
    return undefined;
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
