// The core of isobar's Workers API: console, timers, microtasks, text encoding, base64, events.
//
// Every file under js/ is a classic script whose completion value is a function called once per
// context with (ops, internals, global): `ops` are the native functions (the only bridge to Rust),
// `internals` is shared between these files and never reachable from tenant code, and `global`
// is the context's global object. Nothing here may keep a reference to `ops` where tenant code
// can reach it.
(function (ops, internals, global) {
  "use strict";

  // Captured once, so tenant code that replaces globals cannot change isobar's own behaviour.
  const ArrayIsArray = Array.isArray;
  const ObjectDefineProperty = Object.defineProperty;
  const ObjectGetPrototypeOf = Object.getPrototypeOf;
  const ObjectKeys = Object.keys;
  const StringFromCharCode = String.fromCharCode;
  const SymbolToStringTag = Symbol.toStringTag;
  const TypeErrorCtor = TypeError;
  const RangeErrorCtor = RangeError;
  const PromiseResolve = Promise.resolve.bind(Promise);
  const ReflectApply = Reflect.apply;
  const MapCtor = Map;

  // A value only isobar's own scripts hold: constructors that tenants may not call check it.
  internals.token = Symbol("isobar.internal");

  // Installs `value` on `target` the way Web IDL does: writable, configurable, not enumerable.
  function defineHidden(target, name, value) {
    ObjectDefineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
  }
  internals.defineHidden = defineHidden;

  // Gives a class the `[object Name]` tag and makes its prototype methods non-enumerable,
  // like the classes of a browser or workerd.
  function webClass(ctor, name) {
    ObjectDefineProperty(ctor.prototype, SymbolToStringTag, { value: name, configurable: true });
    return ctor;
  }
  internals.webClass = webClass;

  function toByteString(value, what) {
    const s = String(value);
    for (let i = 0; i < s.length; i++) {
      if (s.charCodeAt(i) > 255) {
        throw new TypeErrorCtor(`${what}: character at index ${i} has a value above 255`);
      }
    }
    return s;
  }
  internals.toByteString = toByteString;

  // ---------------------------------------------------------------------------------------------
  // console: formatted like a browser's console, written to the process log with the worker's name.

  const LEVEL = { debug: 0, log: 1, info: 1, warn: 2, error: 3 };

  function inspect(value, depth, seen) {
    switch (typeof value) {
      case "string": return depth === 0 ? value : JSON.stringify(value);
      case "number": return Object.is(value, -0) ? "-0" : String(value);
      case "bigint": return `${value}n`;
      case "boolean": case "undefined": return String(value);
      case "symbol": return value.toString();
      case "function": return `[Function: ${value.name || "(anonymous)"}]`;
    }
    if (value === null) return "null";
    if (seen.includes(value)) return "[Circular]";
    if (value instanceof Error) {
      return value.stack ? String(value.stack) : `${value.name}: ${value.message}`;
    }
    if (depth > 3) return ArrayIsArray(value) ? "[Array]" : "[Object]";
    seen.push(value);
    try {
      if (ArrayIsArray(value)) {
        const parts = [];
        const n = Math.min(value.length, 100);
        for (let i = 0; i < n; i++) parts.push(inspect(value[i], depth + 1, seen));
        if (value.length > n) parts.push(`... ${value.length - n} more items`);
        return `[ ${parts.join(", ")} ]`;
      }
      if (ArrayBuffer.isView(value)) {
        const n = Math.min(value.length ?? 0, 50);
        const items = [];
        for (let i = 0; i < n; i++) items.push(String(value[i]));
        if ((value.length ?? 0) > n) items.push(`... ${value.length - n} more items`);
        return `${value.constructor.name}(${value.length ?? value.byteLength}) [ ${items.join(", ")} ]`;
      }
      if (value instanceof MapCtor) {
        const parts = [];
        for (const [k, v] of value) parts.push(`${inspect(k, depth + 1, seen)} => ${inspect(v, depth + 1, seen)}`);
        return `Map(${value.size}) { ${parts.join(", ")} }`;
      }
      if (value instanceof Set) {
        const parts = [];
        for (const v of value) parts.push(inspect(v, depth + 1, seen));
        return `Set(${value.size}) { ${parts.join(", ")} }`;
      }
      if (value instanceof Promise) return "Promise { <pending?> }";
      if (value instanceof Date) return isNaN(value) ? "Invalid Date" : value.toISOString();
      if (value instanceof RegExp) return String(value);
      const custom = value[internals.inspectSymbol];
      if (typeof custom === "function") return custom.call(value, (v) => inspect(v, depth + 1, seen));
      const proto = ObjectGetPrototypeOf(value);
      const ctorName = proto && proto.constructor && proto.constructor.name;
      const prefix = ctorName && ctorName !== "Object" ? `${ctorName} ` : "";
      const keys = ObjectKeys(value);
      if (keys.length === 0) return `${prefix}{}`;
      const parts = [];
      for (const k of keys.slice(0, 100)) {
        const key = /^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k);
        parts.push(`${key}: ${inspect(value[k], depth + 1, seen)}`);
      }
      if (keys.length > 100) parts.push(`... ${keys.length - 100} more keys`);
      return `${prefix}{ ${parts.join(", ")} }`;
    } finally {
      seen.pop();
    }
  }
  internals.inspectSymbol = Symbol("isobar.inspect");
  internals.inspect = (v) => inspect(v, 1, []);

  function format(args) {
    let first = args[0];
    let rest = 1;
    let out = "";
    if (typeof first === "string" && first.includes("%")) {
      let i = 0;
      while (i < first.length) {
        const c = first[i];
        if (c === "%" && i + 1 < first.length) {
          const spec = first[i + 1];
          if (spec === "%") { out += "%"; i += 2; continue; }
          if ("sdifoOjc".includes(spec)) {
            if (spec === "c") { rest++; i += 2; continue; }
            if (rest >= args.length) { out += c + spec; i += 2; continue; }
            const arg = args[rest++];
            if (spec === "s") out += typeof arg === "string" ? arg : inspect(arg, 1, []);
            else if (spec === "d" || spec === "i") out += typeof arg === "bigint" ? `${arg}n` : String(spec === "i" ? parseInt(arg) : Number(arg));
            else if (spec === "f") out += String(parseFloat(arg));
            else if (spec === "j") { try { out += JSON.stringify(arg); } catch { out += "[Circular]"; } }
            else out += inspect(arg, 1, []);
            i += 2;
            continue;
          }
        }
        out += c;
        i++;
      }
    } else {
      out = inspect(first, 0, []);
    }
    for (; rest < args.length; rest++) out += " " + inspect(args[rest], 0, []);
    return out;
  }

  const counts = new MapCtor();
  const timers = new MapCtor();
  const console = {
    log: (...args) => ops.print(LEVEL.log, format(args)),
    info: (...args) => ops.print(LEVEL.info, format(args)),
    debug: (...args) => ops.print(LEVEL.debug, format(args)),
    warn: (...args) => ops.print(LEVEL.warn, format(args)),
    error: (...args) => ops.print(LEVEL.error, format(args)),
    trace: (...args) => {
      const err = new Error(format(args));
      err.name = "Trace";
      ops.print(LEVEL.log, String(err.stack));
    },
    assert: (cond, ...args) => {
      if (!cond) ops.print(LEVEL.error, "Assertion failed" + (args.length ? ": " + format(args) : ""));
    },
    count: (label = "default") => {
      const n = (counts.get(label) ?? 0) + 1;
      counts.set(label, n);
      ops.print(LEVEL.log, `${label}: ${n}`);
    },
    countReset: (label = "default") => counts.delete(label),
    time: (label = "default") => timers.set(label, ops.now()),
    timeEnd: (label = "default") => {
      const t = timers.get(label);
      timers.delete(label);
      if (t !== undefined) ops.print(LEVEL.log, `${label}: ${ops.now() - t}ms`);
    },
    timeLog: (label = "default", ...args) => {
      const t = timers.get(label);
      if (t !== undefined) ops.print(LEVEL.log, `${label}: ${ops.now() - t}ms` + (args.length ? " " + format(args) : ""));
    },
    table: (...args) => ops.print(LEVEL.log, format(args)),
    dir: (v) => ops.print(LEVEL.log, inspect(v, 1, [])),
    group: (...args) => { if (args.length) ops.print(LEVEL.log, format(args)); },
    groupCollapsed: (...args) => { if (args.length) ops.print(LEVEL.log, format(args)); },
    groupEnd: () => {},
  };
  defineHidden(global, "console", console);

  // Errors nobody caught (a throwing timer, a failing waitUntil promise) go to the worker's log.
  function reportError(error) {
    ops.print(LEVEL.error, "Uncaught " + inspect(error, 1, []));
  }
  internals.reportError = reportError;
  defineHidden(global, "reportError", reportError);

  // ---------------------------------------------------------------------------------------------
  // Microtasks and timers.

  function queueMicrotask(callback) {
    if (typeof callback !== "function") {
      throw new TypeErrorCtor("queueMicrotask: argument 1 is not a function");
    }
    // An exception in a queued microtask is reported, never turned into an unhandled rejection.
    PromiseResolve().then(() => {
      try { callback(); } catch (e) { reportError(e); }
    });
  }
  defineHidden(global, "queueMicrotask", queueMicrotask);

  // Timer callbacks live here, keyed by id; Rust keeps only (deadline, id) and calls fireTimer.
  const timerCallbacks = new MapCtor();
  let nextTimerId = 1;
  const TIMER_DELAY_MAX_MS = 2147483647;

  function startTimer(callback, delay, args, repeat) {
    if (typeof callback !== "function") {
      // Browsers compile a string callback with eval; Workers forbid it, and so do we.
      throw new TypeErrorCtor("setTimeout/setInterval: the callback must be a function");
    }
    let ms = Number(delay);
    if (!(ms >= 0)) ms = 0;
    if (ms > TIMER_DELAY_MAX_MS) ms = TIMER_DELAY_MAX_MS;
    ms = Math.floor(ms);
    const id = nextTimerId++;
    timerCallbacks.set(id, { callback, args, repeat, ms });
    ops.timerStart(id, ms);
    return id;
  }
  function clearTimer(id) {
    const n = Number(id);
    if (timerCallbacks.delete(n)) ops.timerCancel(n);
  }
  internals.fireTimer = function fireTimer(id) {
    const timer = timerCallbacks.get(id);
    if (timer === undefined) return;
    if (timer.repeat) ops.timerStart(id, timer.ms);
    else timerCallbacks.delete(id);
    try {
      ReflectApply(timer.callback, global, timer.args);
    } catch (e) {
      reportError(e);
    }
  };
  internals.pendingTimers = () => timerCallbacks.size;

  defineHidden(global, "setTimeout", (callback, delay = 0, ...args) => startTimer(callback, delay, args, false));
  defineHidden(global, "setInterval", (callback, delay = 0, ...args) => startTimer(callback, delay, args, true));
  defineHidden(global, "clearTimeout", clearTimer);
  defineHidden(global, "clearInterval", clearTimer);

  // ---------------------------------------------------------------------------------------------
  // TextEncoder / TextDecoder (UTF-8, as in workerd; other labels go through encoding_rs).

  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(input = "") {
      return ops.encodeUtf8(String(input));
    }
    encodeInto(source, destination) {
      if (!(destination instanceof Uint8Array)) {
        throw new TypeErrorCtor("TextEncoder.encodeInto: destination must be a Uint8Array");
      }
      return ops.encodeUtf8Into(String(source), destination);
    }
  }
  webClass(TextEncoder, "TextEncoder");

  function bytesOf(input, what) {
    if (input === undefined) return new Uint8Array(0);
    if (input instanceof ArrayBuffer) return new Uint8Array(input);
    if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    if (typeof SharedArrayBuffer !== "undefined" && input instanceof SharedArrayBuffer) return new Uint8Array(input);
    throw new TypeErrorCtor(`${what}: expected an ArrayBuffer or an ArrayBufferView`);
  }
  internals.bytesOf = bytesOf;

  // A streaming decoder's state lives in Rust; this frees it when its TextDecoder is collected.
  const decoderRegistry = new FinalizationRegistry((id) => ops.decoderFree(id));

  class TextDecoder {
    #encoding; #fatal; #ignoreBOM; #state;
    constructor(label = "utf-8", options = {}) {
      const encoding = ops.encodingForLabel(String(label));
      if (encoding === undefined) {
        throw new RangeErrorCtor(`TextDecoder: the encoding label "${label}" is not supported`);
      }
      this.#encoding = encoding;
      this.#fatal = Boolean(options?.fatal);
      this.#ignoreBOM = Boolean(options?.ignoreBOM);
      this.#state = null;
    }
    get encoding() { return this.#encoding; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input, options = {}) {
      const bytes = bytesOf(input, "TextDecoder.decode");
      const stream = Boolean(options?.stream);
      if (!stream && this.#state === null && this.#encoding === "utf-8") {
        const s = ops.decodeUtf8(bytes, this.#fatal, this.#ignoreBOM);
        if (s === undefined) throw new TypeErrorCtor("TextDecoder.decode: the input is not valid utf-8");
        return s;
      }
      // Streaming (or a legacy encoding): the decoder state lives in Rust between calls.
      if (this.#state === null) {
        this.#state = ops.decoderNew(this.#encoding, this.#fatal, this.#ignoreBOM);
        decoderRegistry.register(this, this.#state, this);
      }
      const s = ops.decoderDecode(this.#state, bytes, stream);
      if (!stream || s === undefined) {
        // The last call of a stream, or a fatal error, closes the Rust side of it.
        decoderRegistry.unregister(this);
        this.#state = null;
      }
      if (s === undefined) throw new TypeErrorCtor(`TextDecoder.decode: the input is not valid ${this.#encoding}`);
      return s;
    }
  }
  webClass(TextDecoder, "TextDecoder");
  defineHidden(global, "TextEncoder", TextEncoder);
  defineHidden(global, "TextDecoder", TextDecoder);

  internals.encodeUtf8 = (s) => ops.encodeUtf8(s);
  internals.decodeUtf8 = (bytes) => ops.decodeUtf8(bytes, false, false);

  // ---------------------------------------------------------------------------------------------
  // atob / btoa (forgiving base64, as in HTML).

  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const B64_INDEX = new Int16Array(256).fill(-1);
  for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i;

  function btoa(data) {
    if (arguments.length === 0) throw new TypeErrorCtor("btoa: 1 argument required");
    const s = String(data);
    let out = "";
    let i = 0;
    for (; i + 2 < s.length; i += 3) {
      const a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
      if ((a | b | c) > 255) throw new DOMException("btoa: the string contains characters outside of the Latin1 range", "InvalidCharacterError");
      out += B64[a >> 2] + B64[((a & 3) << 4) | (b >> 4)] + B64[((b & 15) << 2) | (c >> 6)] + B64[c & 63];
    }
    const left = s.length - i;
    if (left > 0) {
      const a = s.charCodeAt(i), b = left > 1 ? s.charCodeAt(i + 1) : 0;
      if ((a | b) > 255) throw new DOMException("btoa: the string contains characters outside of the Latin1 range", "InvalidCharacterError");
      out += B64[a >> 2] + B64[((a & 3) << 4) | (b >> 4)];
      out += left > 1 ? B64[(b & 15) << 2] + "=" : "==";
    }
    return out;
  }

  function atob(data) {
    if (arguments.length === 0) throw new TypeErrorCtor("atob: 1 argument required");
    let s = String(data).replace(/[\t\n\f\r ]/g, "");
    if (s.length % 4 === 0) s = s.replace(/==?$/, "");
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) {
      throw new DOMException("atob: the string is not correctly encoded", "InvalidCharacterError");
    }
    let out = "";
    let buffer = 0, bits = 0;
    for (let i = 0; i < s.length; i++) {
      buffer = (buffer << 6) | B64_INDEX[s.charCodeAt(i)];
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += StringFromCharCode((buffer >> bits) & 0xff);
      }
    }
    return out;
  }
  defineHidden(global, "btoa", btoa);
  defineHidden(global, "atob", atob);

  // ---------------------------------------------------------------------------------------------
  // DOMException, Event, EventTarget (enough for addEventListener('fetch') and AbortSignal).

  const DOM_CODES = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11,
    SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14, InvalidAccessError: 15,
    TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20, URLMismatchError: 21,
    QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24, DataCloneError: 25,
  };
  class DOMException extends Error {
    #name; #code;
    constructor(message = "", name = "Error") {
      super(String(message));
      this.#name = String(name);
      this.#code = DOM_CODES[this.#name] ?? 0;
    }
    get name() { return this.#name; }
    get code() { return this.#code; }
  }
  webClass(DOMException, "DOMException");
  defineHidden(global, "DOMException", DOMException);

  class Event {
    #type; #cancelable; #defaultPrevented = false; #stop = false; #target = null;
    constructor(type, init = {}) {
      if (arguments.length === 0) throw new TypeErrorCtor("Event: 1 argument required");
      this.#type = String(type);
      this.#cancelable = Boolean(init?.cancelable);
    }
    get type() { return this.#type; }
    get cancelable() { return this.#cancelable; }
    get defaultPrevented() { return this.#defaultPrevented; }
    get target() { return this.#target; }
    get currentTarget() { return this.#target; }
    get timeStamp() { return ops.now(); }
    preventDefault() { if (this.#cancelable) this.#defaultPrevented = true; }
    stopImmediatePropagation() { this.#stop = true; }
    stopPropagation() {}
    static _setTarget(event, target) { event.#target = target; }
    static _stopped(event) { return event.#stop; }
  }
  const setEventTarget = Event._setTarget;
  const eventStopped = Event._stopped;
  delete Event._setTarget;
  delete Event._stopped;
  webClass(Event, "Event");

  class EventTarget {
    #listeners = new MapCtor();
    addEventListener(type, listener, options) {
      if (listener === null || listener === undefined) return;
      const once = typeof options === "object" && options !== null && Boolean(options.once);
      const signal = typeof options === "object" && options !== null ? options.signal : undefined;
      const key = String(type);
      let list = this.#listeners.get(key);
      if (list === undefined) this.#listeners.set(key, list = []);
      if (list.some((l) => l.listener === listener)) return;
      const entry = { listener, once };
      list.push(entry);
      if (signal !== undefined && signal !== null) {
        signal.addEventListener("abort", () => this.removeEventListener(key, listener));
      }
    }
    removeEventListener(type, listener) {
      const list = this.#listeners.get(String(type));
      if (list === undefined) return;
      const i = list.findIndex((l) => l.listener === listener);
      if (i >= 0) list.splice(i, 1);
    }
    dispatchEvent(event) {
      if (!(event instanceof Event)) throw new TypeErrorCtor("dispatchEvent: argument 1 is not an Event");
      setEventTarget(event, this);
      const list = this.#listeners.get(event.type);
      if (list !== undefined) {
        for (const entry of list.slice()) {
          if (entry.once) this.removeEventListener(event.type, entry.listener);
          const l = entry.listener;
          try {
            if (typeof l === "function") ReflectApply(l, this, [event]);
            else if (l !== null && typeof l.handleEvent === "function") l.handleEvent(event);
          } catch (e) {
            reportError(e);
          }
          if (eventStopped(event)) break;
        }
      }
      return !event.defaultPrevented;
    }
    static _listeners(target, type) { return target.#listeners.get(type) ?? []; }
  }
  internals.listenersOf = EventTarget._listeners;
  delete EventTarget._listeners;
  webClass(EventTarget, "EventTarget");
  defineHidden(global, "Event", Event);
  defineHidden(global, "EventTarget", EventTarget);

  class AbortSignal extends EventTarget {
    #aborted = false; #reason = undefined;
    constructor(key) {
      super();
      if (key !== internals.token) throw new TypeErrorCtor("Illegal constructor");
    }
    get aborted() { return this.#aborted; }
    get reason() { return this.#reason; }
    throwIfAborted() { if (this.#aborted) throw this.#reason; }
    static abort(reason) {
      const s = new AbortSignal(internals.token);
      s.#aborted = true;
      s.#reason = reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
      return s;
    }
    static timeout(ms) {
      const s = new AbortSignal(internals.token);
      setTimeout(() => AbortSignal._abort(s, new DOMException("The operation timed out.", "TimeoutError")), ms);
      return s;
    }
    static _abort(signal, reason) {
      if (signal.#aborted) return;
      signal.#aborted = true;
      signal.#reason = reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
      signal.dispatchEvent(new Event("abort"));
    }
  }
  const abortSignal = AbortSignal._abort;
  delete AbortSignal._abort;
  webClass(AbortSignal, "AbortSignal");
  class AbortController {
    #signal = new AbortSignal(internals.token);
    get signal() { return this.#signal; }
    abort(reason) { abortSignal(this.#signal, reason); }
  }
  webClass(AbortController, "AbortController");
  defineHidden(global, "AbortSignal", AbortSignal);
  defineHidden(global, "AbortController", AbortController);

  internals.Event = Event;
  internals.EventTarget = EventTarget;

  // ---------------------------------------------------------------------------------------------
  // crypto: getRandomValues and randomUUID (SubtleCrypto is a later, larger piece of work).

  const crypto = {
    getRandomValues(array) {
      if (!ArrayBuffer.isView(array) || array instanceof Float32Array || array instanceof Float64Array || array instanceof DataView) {
        throw new DOMException("getRandomValues: the argument must be an integer TypedArray", "TypeMismatchError");
      }
      if (array.byteLength > 65536) {
        throw new DOMException(`getRandomValues: ${array.byteLength} bytes requested; the limit is 65536`, "QuotaExceededError");
      }
      ops.randomFill(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
      return array;
    },
    randomUUID() {
      const b = ops.randomFill(new Uint8Array(16));
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      let hex = "";
      for (let i = 0; i < 16; i++) hex += (b[i] + 0x100).toString(16).slice(1);
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    },
  };
  defineHidden(global, "crypto", crypto);

  // ---------------------------------------------------------------------------------------------
  // Time. Date.now(), new Date() and performance.now() read the isolate's clock, which the
  // scheduler moves only between I/O events: inside a request, code cannot time itself (the
  // timing-attack mitigation Cloudflare Workers apply).

  const OriginalDate = Date;
  const ReflectConstruct = Reflect.construct;
  // (A function expression, not a declaration: a hoisted `function Date` would shadow the
  // original before it is captured.)
  const FrozenDate = function Date(...args) {
    if (new.target === undefined) return new OriginalDate(ops.now()).toString();
    if (args.length === 0) return ReflectConstruct(OriginalDate, [ops.now()], new.target);
    return ReflectConstruct(OriginalDate, args, new.target);
  };
  ObjectDefineProperty(FrozenDate, "length", { value: 7 });
  FrozenDate.prototype = OriginalDate.prototype;
  ObjectDefineProperty(OriginalDate.prototype, "constructor", { value: FrozenDate, writable: true, configurable: true, enumerable: false });
  defineHidden(FrozenDate, "now", function now() { return ops.now(); });
  defineHidden(FrozenDate, "parse", OriginalDate.parse);
  defineHidden(FrozenDate, "UTC", OriginalDate.UTC);
  defineHidden(global, "Date", FrozenDate);

  defineHidden(global, "self", global);
  defineHidden(global, "navigator", Object.freeze({ userAgent: "isobar", hardwareConcurrency: 1 }));
  // performance.now() counts from the isolate's creation and follows the same frozen clock as
  // Date.now(). (Nothing here may read the clock at load time: this script runs once, into the
  // startup snapshot, not once per isolate.)
  defineHidden(global, "performance", Object.freeze({
    now: () => ops.now() - ops.timeOrigin(),
    get timeOrigin() { return ops.timeOrigin(); },
  }));
})
