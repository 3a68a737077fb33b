// The op fuzzer's worker (see op_fuzz.rs). It finds every function a tenant can reach that isobar
// installs (each global that is not one of V8's own ECMAScript built-ins, with its statics, its
// prototype chain's methods and accessors, and those of the objects it hands out), then calls
// them with arguments from a seeded generator: `/?seed=S&calls=N` makes N calls and answers a
// summary; `/ping` answers "pong". Every call is inside try/catch: throwing is the expected
// answer to bad input, and only a crash (a panic or an abort in Rust) is a failure.

// V8's own globals: not isobar's code (and generic ones such as Array.prototype.fill on
// `{length: 2 ** 53}` just run for a very long time). `Date` is isobar's (a frozen clock), so it
// is fuzzed.
const ecmascript = new Set([
  "Object", "Function", "Array", "Number", "parseFloat", "parseInt", "Infinity", "NaN", "undefined",
  "Boolean", "String", "Symbol", "Promise", "RegExp", "Error", "AggregateError", "EvalError",
  "RangeError", "ReferenceError", "SyntaxError", "TypeError", "URIError", "globalThis", "JSON", "Math",
  "Intl", "ArrayBuffer", "Atomics", "Uint8Array", "Int8Array", "Uint16Array", "Int16Array", "Uint32Array",
  "Int32Array", "Float16Array", "Float32Array", "Float64Array", "Uint8ClampedArray", "BigUint64Array",
  "BigInt64Array", "DataView", "Map", "BigInt", "Set", "WeakMap", "WeakSet", "Proxy", "Reflect",
  "FinalizationRegistry", "WeakRef", "decodeURI", "decodeURIComponent", "encodeURI", "encodeURIComponent",
  "escape", "unescape", "eval", "isFinite", "isNaN", "SharedArrayBuffer", "WebAssembly", "Iterator",
  "DisposableStack", "AsyncDisposableStack", "SuppressedError", "Temporal", "self",
]);

// mulberry32: small, seeded, good enough to pick arguments.
function generator(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function thrower(what) {
  return function () {
    throw new Error("fuzz: " + what);
  };
}

const throwingTraps = {};
for (const trap of [
  "get", "set", "has", "deleteProperty", "ownKeys", "getOwnPropertyDescriptor", "defineProperty",
  "getPrototypeOf", "setPrototypeOf", "isExtensible", "preventExtensions", "apply", "construct",
]) {
  throwingTraps[trap] = thrower("proxy trap " + trap);
}

function detachedBuffer() {
  const buffer = new ArrayBuffer(16);
  structuredClone(buffer, { transfer: [buffer] });
  return buffer;
}

function detachedView() {
  const buffer = new ArrayBuffer(16);
  const view = new Uint8Array(buffer, 4);
  structuredClone(buffer, { transfer: [buffer] });
  return view;
}

function shrunkView() {
  // A length-tracking view whose buffer then shrinks below the view's offset.
  const buffer = new ArrayBuffer(64, { maxByteLength: 128 });
  const view = new Uint8Array(buffer, 32);
  buffer.resize(8);
  return view;
}

let cachedRope;
// A flatten or copy of this string is one allocation of 256 MiB (512 MiB once a two-byte
// character joins it), past a 128 MiB isolate's heap: it must condemn the isolate, never make
// V8 abort the process (it did, through `console.count(rope)`, before the heap guard's headroom
// covered the largest object V8 can make).
function rope() {
  // A cons string near V8's maximum length: cheap to make, huge to flatten or copy.
  if (cachedRope === undefined) {
    let s = "r";
    try {
      for (let i = 0; i < 40; i++) s += s;
    } catch {
      // s is the longest V8 allowed.
    }
    cachedRope = s;
  }
  return cachedRope;
}

let cachedLong;
function longString() {
  // Just past the 16 MiB caps (URL, and others), and far past most.
  if (cachedLong === undefined) cachedLong = "l".repeat((16 << 20) + 1);
  return cachedLong;
}

const makers = [
  () => rope(),
  () => undefined, () => null, () => true, () => false,
  () => 0, () => -0, () => NaN, () => Infinity, () => -Infinity, () => 2 ** 53, () => -(2 ** 53),
  () => 2 ** 32, () => 2 ** 31, () => -1, () => 1.5, () => 4294967295, () => Number.MAX_VALUE,
  () => 10n, () => -(2n ** 64n),
  () => "", () => "a", () => "https://example.com/a?b=c#d", () => "text/plain", () => "\uD800",
  () => "a\uDFFFb\uD800", () => "\u0000", () => "\u00e9\u{1F600}", () => "GET", () => "content-type",
  () => "utf-8", () => "utf-16le", () => "gzip", () => "deflate-raw", () => "SHA-256", () => "AES-GCM",
  () => "raw", () => "jwk", () => "x".repeat(1 << 20), () => "%".repeat(1000),
  () => longString(),
  () => Symbol("fuzz"), () => Symbol.iterator,
  () => ({}), () => [], () => ["a", "b"], () => [["a", "b"]], () => [1, 2, 3], () => Object.create(null),
  () => ({ name: "AES-GCM", length: 256 }), () => ({ name: "HMAC", hash: "SHA-256" }),
  () => ({ method: "POST", body: "x", headers: { a: "b" } }), () => ({ status: 200, statusText: "x" }),
  () => ({ status: 999 }), () => ({ highWaterMark: 2 ** 53 }), () => ({ highWaterMark: -1 }),
  () => ({ stream: true }), () => ({ fatal: true, ignoreBOM: true }), () => ({ once: true, signal: 1 }),
  () => new Uint8Array(16), () => new Uint8Array(0), () => new Uint8Array(1 << 20).fill(0xff),
  () => new Float64Array(4), () => new DataView(new ArrayBuffer(8)), () => new ArrayBuffer(32),
  () => new Uint16Array([0xd800, 0xdc00, 0xdfff]), () => detachedBuffer(),
  () => detachedView(), () => shrunkView(),
  () => new ArrayBuffer(8, { maxByteLength: 1 << 20 }),
  () => new Proxy({}, throwingTraps), () => new Proxy(function () {}, throwingTraps),
  () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  },
  () => ({ get length() { throw new Error("fuzz: length"); } }),
  () => ({ toString: thrower("toString"), valueOf: thrower("valueOf") }),
  () => ({ [Symbol.toPrimitive]: thrower("toPrimitive") }),
  () => ({ [Symbol.iterator]: thrower("iterator") }),
  () => ({ [Symbol.iterator]() { return { next: thrower("next") }; } }),
  () => ({ [Symbol.iterator]() { let i = 0; return { next: () => ({ done: i++ > 3, value: ["k" + i, "v"] }) }; } }),
  () => ({ get then() { throw new Error("fuzz: then"); } }),
  () => ({ then(resolve) { resolve(1); resolve(2); } }),
  () => Object.defineProperty({}, "name", { get: thrower("name getter"), enumerable: true }),
  () => ({ length: 2 ** 53, 0: "a" }),
  () => thrower("callback"),
  () => function () { return this; },
  () => async () => { throw new Error("fuzz: async"); },
  () => Promise.reject(new Error("fuzz: rejected")),
  () => new Promise(() => {}),
  () => new Error("fuzz"),
  () => new Date(NaN),
];

// Instances of isobar's classes, made once; the fuzzer also adds what calls return.
const instances = [];
function keep(value) {
  if (value !== null && (typeof value === "object" || typeof value === "function") && instances.length < 400) {
    instances.push(value);
  }
}

function quietly(make) {
  try {
    const value = make();
    if (value instanceof Promise) value.then(undefined, () => {});
    return value;
  } catch {
    return undefined;
  }
}

function seedInstances() {
  const made = [
    () => new URL("https://u:p@example.com:8080/a/b?c=d#e"), () => new URLSearchParams("a=1&b=2"),
    () => new Headers({ a: "b" }), () => new Request("https://example.com/", { method: "POST", body: "x" }),
    () => new Response("body"), () => new Response("body").body, () => new Response("body").body.getReader(),
    () => new Blob(["blob"]), () => new File(["f"], "f.txt"), () => new FormData(), () => new TextEncoder(),
    () => new TextDecoder(), () => new TextEncoderStream(), () => new TextDecoderStream(),
    () => new CompressionStream("gzip"), () => new DecompressionStream("deflate"),
    () => new ReadableStream(), () => new WritableStream(), () => new WritableStream().getWriter(),
    () => new TransformStream(), () => new IdentityTransformStream(), () => new FixedLengthStream(4),
    () => new ByteLengthQueuingStrategy({ highWaterMark: 1 }), () => new CountQueuingStrategy({ highWaterMark: 1 }),
    () => new AbortController(), () => new AbortController().signal, () => new Event("x"), () => new EventTarget(),
    () => new DOMException("m", "DataError"), () => new MessageChannel(), () => new MessageChannel().port1,
    () => new URLPattern({ pathname: "/a/:b" }), () => crypto, () => crypto.subtle, () => performance,
    () => console, () => new Date(0), () => new ReadableStream({ type: "bytes" }).getReader({ mode: "byob" }),
  ];
  for (const make of made) keep(quietly(make));
  for (const usages of [["sign", "verify"], ["encrypt", "decrypt"]]) {
    const algorithm = usages[0] === "sign" ? { name: "HMAC", hash: "SHA-256" } : { name: "AES-GCM", length: 128 };
    quietly(() => crypto.subtle.generateKey(algorithm, true, usages).then(keep, () => {}));
  }
}

// Every function reachable from isobar's globals: [label, kind, fn].
function findTargets() {
  const targets = [];
  const seen = new Set();
  function addObject(label, object, depth) {
    if (object === null || (typeof object !== "object" && typeof object !== "function")) return;
    if (seen.has(object) || object === Object.prototype || object === Function.prototype || depth > 4) return;
    seen.add(object);
    for (const key of Reflect.ownKeys(object)) {
      if (key === "constructor" || key === "prototype" || key === "caller" || key === "arguments") continue;
      const descriptor = Reflect.getOwnPropertyDescriptor(object, key);
      const name = label + "." + String(key);
      if (descriptor.get) targets.push([name, "get", descriptor.get]);
      if (descriptor.set) targets.push([name, "set", descriptor.set]);
      if (typeof descriptor.value === "function") {
        targets.push([name, "call", descriptor.value]);
        addObject(name, descriptor.value.prototype, depth + 1);
      } else if (descriptor.value !== null && typeof descriptor.value === "object") {
        addObject(name, descriptor.value, depth + 1);
      }
    }
    addObject(label + ".__proto__", Object.getPrototypeOf(object), depth + 1);
  }
  for (const key of Reflect.ownKeys(globalThis)) {
    if (typeof key !== "string" || ecmascript.has(key)) continue;
    const value = globalThis[key];
    if (typeof value === "function") {
      targets.push([key, "call", value]);
      targets.push([key, "construct", value]);
      addObject(key, value, 1);
      addObject(key + ".prototype", value.prototype, 1);
    } else {
      addObject(key, value, 1);
    }
  }
  return targets;
}

seedInstances();
const targets = findTargets();
const timers = [];

function fuzz(seed, calls) {
  const random = generator(seed);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const value = () => {
    if (instances.length > 0 && random() < 0.3) return pick(instances);
    try {
      return pick(makers)();
    } catch {
      return undefined;
    }
  };
  let threw = 0;
  for (let n = 0; n < calls; n++) {
    const target = targets[(seed * 7919 + n) % targets.length];
    const name = target[0];
    const kind = target[1];
    const fn = target[2];
    const thisArg = random() < 0.6 && instances.length > 0 ? pick(instances) : value();
    const count = Math.floor(random() * 5);
    const args = [];
    for (let i = 0; i < count; i++) args.push(value());
    try {
      let result;
      if (kind === "construct") result = Reflect.construct(fn, args);
      else if (kind === "get") result = Reflect.apply(fn, thisArg, []);
      else result = Reflect.apply(fn, thisArg, args);
      if (result instanceof Promise) result.then(keep, () => {});
      else keep(result);
      if ((name === "setTimeout" || name === "setInterval") && typeof result === "number") timers.push(result);
    } catch {
      threw++;
    }
  }
  // Leave no timer running into the next request.
  for (let i = 0; i < timers.length; i++) clearTimeout(timers[i]);
  timers.length = 0;
  return threw;
}

export default {
  fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/ping") return new Response("pong");
    if (url.pathname === "/targets") return new Response(targets.map((t) => t[1] + " " + t[0]).join("\n"));
    const seed = Number(url.searchParams.get("seed"));
    const calls = Number(url.searchParams.get("calls"));
    const threw = fuzz(seed, calls);
    return new Response(JSON.stringify({ calls, threw, targets: targets.length }));
  },
};
