// DOMException, Event (and CustomEvent, ErrorEvent, PromiseRejectionEvent), EventTarget,
// AbortController/AbortSignal and reportError, as the DOM and HTML standards define them and
// workerd exposes them.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayPrototypePush, ArrayPrototypeSlice, ArrayPrototypeSplice, Boolean: BooleanCtor, Error: ErrorCtor,
    ErrorCaptureStackTrace, FunctionPrototypeCall, ObjectDefineProperty, ObjectFreeze, ObjectSetPrototypeOf,
    ReflectApply, SafeMap, SafeWeakMap, String: StringCtor, TypeError: TypeErrorCtor,
  } = primordials;
  const { defineHidden, webClass, hooks } = internals;

  // ---------------------------------------------------------------------------------------------
  // DOMException

  const DOM_CODES = {
    __proto__: null,
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InUseAttributeError: 10,
    InvalidStateError: 11, SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14,
    InvalidAccessError: 15, TypeMismatchError: 17, SecurityError: 18, NetworkError: 19,
    AbortError: 20, URLMismatchError: 21, QuotaExceededError: 22, TimeoutError: 23,
    InvalidNodeTypeError: 24, DataCloneError: 25,
  };
  class DOMException extends ErrorCtor {
    #name; #code;
    constructor(message = "", options = "Error") {
      super(StringCtor(message));
      // The second argument is a name, or (newer standard) an options bag with name and cause.
      if (options !== null && typeof options === "object") {
        this.#name = "name" in options ? StringCtor(options.name) : "Error";
        if ("cause" in options) defineHidden(this, "cause", options.cause);
      } else {
        this.#name = StringCtor(options);
      }
      this.#code = DOM_CODES[this.#name] ?? 0;
    }
    get name() { return this.#name; }
    get code() { return this.#code; }
  }
  for (const name in DOM_CODES) {
    // The legacy constants: DOMException.NOT_FOUND_ERR === 8, on the class and its prototype.
    const constant = name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase().replace(/_ERROR$/, "_ERR");
    const descriptor = { value: DOM_CODES[name], enumerable: true };
    ObjectDefineProperty(DOMException, constant, descriptor);
    ObjectDefineProperty(DOMException.prototype, constant, descriptor);
  }
  webClass(DOMException, "DOMException");
  defineHidden(global, "DOMException", DOMException);
  hooks.DOMException = DOMException;
  internals.DOMException = DOMException;

  // ---------------------------------------------------------------------------------------------
  // Event

  const NONE = 0, CAPTURING_PHASE = 1, AT_TARGET = 2, BUBBLING_PHASE = 3;

  class Event {
    #type; #bubbles; #cancelable; #composed; #defaultPrevented = false; #stop = false;
    #stopImmediate = false; #target = null; #currentTarget = null; #phase = NONE; #dispatching = false;
    #trusted = false; #timeStamp;
    constructor(type, init = undefined) {
      if (arguments.length === 0) throw new TypeErrorCtor("Event: 1 argument required, but only 0 present.");
      if (init !== undefined && init !== null && typeof init !== "object") {
        throw new TypeErrorCtor("Event: the init argument must be an object");
      }
      this.#type = StringCtor(type);
      this.#bubbles = BooleanCtor(init?.bubbles);
      this.#cancelable = BooleanCtor(init?.cancelable);
      this.#composed = BooleanCtor(init?.composed);
      this.#timeStamp = ops.now();
    }
    get type() { return this.#type; }
    get bubbles() { return this.#bubbles; }
    get cancelable() { return this.#cancelable; }
    get composed() { return this.#composed; }
    get defaultPrevented() { return this.#defaultPrevented; }
    get returnValue() { return !this.#defaultPrevented; }
    set returnValue(value) { if (!value) this.preventDefault(); }
    get cancelBubble() { return this.#stop; }
    set cancelBubble(value) { if (value) this.#stop = true; }
    get target() { return this.#target; }
    get srcElement() { return this.#target; }
    get currentTarget() { return this.#currentTarget; }
    get eventPhase() { return this.#phase; }
    get isTrusted() { return this.#trusted; }
    get timeStamp() { return this.#timeStamp; }
    composedPath() { return this.#dispatching && this.#currentTarget !== null ? [this.#currentTarget] : []; }
    preventDefault() { if (this.#cancelable) this.#defaultPrevented = true; }
    stopPropagation() { this.#stop = true; }
    stopImmediatePropagation() { this.#stop = true; this.#stopImmediate = true; }
    static _begin(event, target, trusted) {
      if (event.#dispatching) throw new internals.DOMException("The event is already being dispatched.", "InvalidStateError");
      event.#dispatching = true;
      event.#target = target;
      event.#currentTarget = target;
      event.#phase = AT_TARGET;
      if (trusted) event.#trusted = true;
    }
    static _end(event) {
      event.#dispatching = false;
      event.#currentTarget = null;
      event.#phase = NONE;
      event.#stop = false;
      event.#stopImmediate = false;
    }
    static _stoppedImmediately(event) { return event.#stopImmediate; }
  }
  const beginDispatch = Event._begin;
  const endDispatch = Event._end;
  const stoppedImmediately = Event._stoppedImmediately;
  delete Event._begin;
  delete Event._end;
  delete Event._stoppedImmediately;
  for (const [name, value] of [["NONE", NONE], ["CAPTURING_PHASE", CAPTURING_PHASE], ["AT_TARGET", AT_TARGET], ["BUBBLING_PHASE", BUBBLING_PHASE]]) {
    ObjectDefineProperty(Event, name, { value, enumerable: true });
    ObjectDefineProperty(Event.prototype, name, { value, enumerable: true });
  }
  webClass(Event, "Event");

  class CustomEvent extends Event {
    #detail;
    constructor(type, init = undefined) {
      super(type, init);
      this.#detail = init?.detail ?? null;
    }
    get detail() { return this.#detail; }
  }
  webClass(CustomEvent, "CustomEvent");

  class ErrorEvent extends Event {
    #message; #filename; #lineno; #colno; #error;
    constructor(type, init = undefined) {
      super(type, init);
      this.#message = init?.message === undefined ? "" : StringCtor(init.message);
      this.#filename = init?.filename === undefined ? "" : StringCtor(init.filename);
      this.#lineno = (init?.lineno ?? 0) >>> 0;
      this.#colno = (init?.colno ?? 0) >>> 0;
      this.#error = init?.error;
    }
    get message() { return this.#message; }
    get filename() { return this.#filename; }
    get lineno() { return this.#lineno; }
    get colno() { return this.#colno; }
    get error() { return this.#error; }
  }
  webClass(ErrorEvent, "ErrorEvent");

  class PromiseRejectionEvent extends Event {
    #promise; #reason;
    constructor(type, init = undefined) {
      super(type, init);
      if (init === undefined || init === null || !("promise" in init)) {
        throw new TypeErrorCtor("PromiseRejectionEvent: init.promise is required");
      }
      this.#promise = init.promise;
      this.#reason = init.reason;
    }
    get promise() { return this.#promise; }
    get reason() { return this.#reason; }
  }
  webClass(PromiseRejectionEvent, "PromiseRejectionEvent");

  // ---------------------------------------------------------------------------------------------
  // EventTarget

  // Listeners per target and type, bounded so a script adding listeners in a loop gets an error
  // instead of growing the isolate without end (the heap limit would stop it later, less kindly).
  const LISTENERS_MAX = 10000;

  class EventTarget {
    #listeners = new SafeMap();
    #count = 0;
    constructor() {}
    addEventListener(type, listener, options = undefined) {
      if (arguments.length < 2) throw new TypeErrorCtor("addEventListener: 2 arguments required");
      if (listener === null || listener === undefined) return;
      if (typeof listener !== "function" && typeof listener !== "object") {
        throw new TypeErrorCtor("addEventListener: the listener must be a function or an object");
      }
      const flags = typeof options === "object" && options !== null ? options : { capture: BooleanCtor(options) };
      const capture = BooleanCtor(flags.capture);
      const once = BooleanCtor(flags.once);
      const signal = flags.signal;
      if (signal !== undefined && signal !== null && !(signal instanceof AbortSignal)) {
        throw new TypeErrorCtor("addEventListener: options.signal must be an AbortSignal");
      }
      if (signal?.aborted) return;
      const key = StringCtor(type);
      let list = this.#listeners.get(key);
      if (list === undefined) this.#listeners.set(key, list = []);
      for (let i = 0; i < list.length; i++) {
        if (list[i].listener === listener && list[i].capture === capture) return;
      }
      if (this.#count >= LISTENERS_MAX) {
        throw new RangeError(`addEventListener: more than ${LISTENERS_MAX} listeners on one target`);
      }
      this.#count++;
      const entry = { listener, capture, once, removed: false };
      ArrayPrototypePush(list, entry);
      if (signal !== undefined && signal !== null) {
        signal.addEventListener("abort", () => this.removeEventListener(key, listener, { capture }));
      }
    }
    removeEventListener(type, listener, options = undefined) {
      const capture = typeof options === "object" && options !== null ? BooleanCtor(options.capture) : BooleanCtor(options);
      const list = this.#listeners.get(StringCtor(type));
      if (list === undefined) return;
      for (let i = 0; i < list.length; i++) {
        if (list[i].listener === listener && list[i].capture === capture) {
          list[i].removed = true;
          ArrayPrototypeSplice(list, i, 1);
          this.#count--;
          return;
        }
      }
    }
    dispatchEvent(event) {
      if (!(event instanceof Event)) throw new TypeErrorCtor("dispatchEvent: argument 1 is not an Event");
      return dispatch(this, event, false);
    }
    static _listeners(target, type) { return target.#listeners.get(type) ?? []; }
  }
  const listenersOf = EventTarget._listeners;
  delete EventTarget._listeners;
  internals.listenersOf = listenersOf;
  webClass(EventTarget, "EventTarget");

  // Calls the listeners of `target` for `event`; an exception in a listener is reported and the
  // next listener still runs. `trusted` marks events isobar itself fires.
  function dispatch(target, event, trusted) {
    beginDispatch(event, target, trusted);
    try {
      const list = ArrayPrototypeSlice(listenersOf(target, event.type));
      for (let i = 0; i < list.length; i++) {
        const entry = list[i];
        if (entry.removed) continue;
        if (entry.once) target.removeEventListener(event.type, entry.listener, { capture: entry.capture });
        const l = entry.listener;
        try {
          if (typeof l === "function") ReflectApply(l, target, [event]);
          else if (l !== null && typeof l.handleEvent === "function") FunctionPrototypeCall(l.handleEvent, l, event);
        } catch (e) {
          reportError(e);
        }
        if (stoppedImmediately(event)) break;
      }
    } finally {
      endDispatch(event);
    }
    return !event.defaultPrevented;
  }
  internals.dispatchEvent = dispatch;

  // ---------------------------------------------------------------------------------------------
  // reportError and the global `error` / `unhandledrejection` events. The global scope is an
  // EventTarget (as in workerd); these are what a script's `addEventListener("error", ...)`
  // observes. An error no listener cancels goes to the worker's log.

  function reportError(error) {
    const event = new ErrorEvent("error", {
      cancelable: true,
      message: error instanceof ErrorCtor ? StringCtor(error.message) : StringCtor(error),
      error,
    });
    let handled = false;
    if (internals.globalTarget !== undefined) {
      try {
        handled = !dispatchOnGlobal(event);
      } catch {
        handled = false;
      }
    }
    if (!handled) ops.print(internals.consts.logLevel.error, "Uncaught " + internals.inspect(error));
  }
  function dispatchOnGlobal(event) {
    // A listener that throws inside an error listener must not recurse into reportError.
    const list = ArrayPrototypeSlice(listenersOf(internals.globalTarget, event.type));
    if (list.length === 0) return true;
    return dispatch(internals.globalTarget, event, true);
  }
  internals.reportError = reportError;
  hooks.reportError = reportError;
  defineHidden(global, "reportError", function reportError(error) {
    if (arguments.length === 0) throw new TypeErrorCtor("reportError: 1 argument required");
    internals.reportError(error);
  });

  // Called by Rust after a microtask checkpoint for each promise rejected with no handler:
  // true if a listener handled it (called preventDefault), so nothing is logged.
  hooks.unhandledRejection = function unhandledRejection(promise, reason) {
    const event = new PromiseRejectionEvent("unhandledrejection", { cancelable: true, promise, reason });
    return !dispatchOnGlobal(event);
  };

  // ---------------------------------------------------------------------------------------------
  // AbortController and AbortSignal

  class AbortSignal extends EventTarget {
    #aborted = false; #reason = undefined; #onabort = null;
    constructor(key) {
      super();
      if (key !== internals.token) throw new TypeErrorCtor("Illegal constructor");
    }
    get aborted() { return this.#aborted; }
    get reason() { return this.#reason; }
    get onabort() { return this.#onabort; }
    set onabort(handler) {
      if (this.#onabort !== null) this.removeEventListener("abort", this.#onabort);
      this.#onabort = typeof handler === "function" ? handler : null;
      if (this.#onabort !== null) this.addEventListener("abort", this.#onabort);
    }
    throwIfAborted() { if (this.#aborted) throw this.#reason; }
    static abort(reason = undefined) {
      const s = new AbortSignal(internals.token);
      s.#aborted = true;
      s.#reason = reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
      return s;
    }
    static timeout(ms) {
      const delay = internals.enforceRange(ms, 0, Number.MAX_SAFE_INTEGER, "AbortSignal.timeout");
      const s = new AbortSignal(internals.token);
      internals.setTimer(() => abortSignal(s, new DOMException("The operation timed out.", "TimeoutError")), delay);
      return s;
    }
    static any(signals) {
      const s = new AbortSignal(internals.token);
      const list = [];
      for (const signal of signals) {
        if (!(signal instanceof AbortSignal)) throw new TypeErrorCtor("AbortSignal.any: every item must be an AbortSignal");
        ArrayPrototypePush(list, signal);
      }
      for (let i = 0; i < list.length; i++) {
        if (list[i].aborted) {
          s.#aborted = true;
          s.#reason = list[i].reason;
          return s;
        }
      }
      for (let i = 0; i < list.length; i++) {
        const source = list[i];
        source.addEventListener("abort", () => abortSignal(s, source.reason), { once: true });
      }
      return s;
    }
    static _abort(signal, reason) {
      if (signal.#aborted) return;
      signal.#aborted = true;
      signal.#reason = reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
      dispatch(signal, new Event("abort"), true);
    }
  }
  const abortSignal = AbortSignal._abort;
  delete AbortSignal._abort;
  internals.abortSignal = abortSignal;
  webClass(AbortSignal, "AbortSignal");

  class AbortController {
    #signal = new AbortSignal(internals.token);
    get signal() { return this.#signal; }
    abort(reason = undefined) { abortSignal(this.#signal, reason); }
  }
  webClass(AbortController, "AbortController");

  internals.Event = Event;
  internals.EventTarget = EventTarget;
  internals.AbortSignal = AbortSignal;
  internals.AbortController = AbortController;
  for (const [name, value] of [
    ["Event", Event], ["CustomEvent", CustomEvent], ["ErrorEvent", ErrorEvent],
    ["PromiseRejectionEvent", PromiseRejectionEvent], ["EventTarget", EventTarget],
    ["AbortSignal", AbortSignal], ["AbortController", AbortController],
  ]) {
    defineHidden(global, name, value);
  }
})
