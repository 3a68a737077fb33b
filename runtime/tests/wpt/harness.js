// A small stand-in for WPT's testharness.js, written for isobar's conformance runner
// (runtime/tests/wpt.rs): enough of its API for the streams, encoding-streams and compression
// tests. Tests are collected while the script loads and run one at a time inside a fetch
// handler (where timers and promises work), and the response is JSON: one [name, status,
// message] per test. Status is "PASS", "FAIL" or "TIMEOUT".
"use strict";
const __tests = [];
const __results = [];
const TEST_TIMEOUT_MS = 2000;

class AssertionError extends Error {}

function format_value(v) {
  try {
    if (typeof v === "string") return JSON.stringify(v);
    if (typeof v === "symbol") return String(v);
    if (v instanceof Error) return `${v.name}: ${v.message}`;
    return String(v);
  } catch {
    return "<unprintable>";
  }
}

function assert(cond, message) {
  if (!cond) throw new AssertionError(message);
}
function same(a, b) {
  return Object.is(a, b);
}
function assert_true(v, d) { assert(v === true, `assert_true: ${d ?? ""} got ${format_value(v)}`); }
function assert_false(v, d) { assert(v === false, `assert_false: ${d ?? ""} got ${format_value(v)}`); }
function assert_equals(a, e, d) { assert(same(a, e), `assert_equals: ${d ?? ""} expected ${format_value(e)} got ${format_value(a)}`); }
function assert_not_equals(a, e, d) { assert(!same(a, e), `assert_not_equals: ${d ?? ""} got ${format_value(a)}`); }
function assert_in_array(a, list, d) { assert(list.some((x) => same(x, a)), `assert_in_array: ${d ?? ""} ${format_value(a)}`); }
function assert_array_equals(a, e, d) {
  assert(a !== null && typeof a === "object" && "length" in a, `assert_array_equals: ${d ?? ""} not an array: ${format_value(a)}`);
  assert(a.length === e.length, `assert_array_equals: ${d ?? ""} lengths differ: ${a.length} vs ${e.length}`);
  for (let i = 0; i < e.length; i++) {
    assert(same(a[i], e[i]), `assert_array_equals: ${d ?? ""} index ${i}: expected ${format_value(e[i])} got ${format_value(a[i])}`);
  }
}
function assert_object_equals(a, e, d) {
  const seen = new Set();
  function check(x, y, path) {
    if (typeof y !== "object" || y === null) {
      assert(same(x, y), `assert_object_equals: ${d ?? ""} ${path}: expected ${format_value(y)} got ${format_value(x)}`);
      return;
    }
    if (seen.has(y)) return;
    seen.add(y);
    assert(typeof x === "object" && x !== null, `assert_object_equals: ${d ?? ""} ${path} is not an object`);
    for (const k of Object.keys(y)) {
      assert(Object.prototype.hasOwnProperty.call(x, k), `assert_object_equals: ${d ?? ""} ${path}.${k} missing`);
      check(x[k], y[k], `${path}.${k}`);
    }
    for (const k of Object.keys(x)) {
      assert(Object.prototype.hasOwnProperty.call(y, k), `assert_object_equals: ${d ?? ""} unexpected ${path}.${k}`);
    }
  }
  check(a, e, "value");
}
function assert_less_than(a, b, d) { assert(a < b, `assert_less_than: ${d ?? ""} ${a} < ${b}`); }
function assert_greater_than(a, b, d) { assert(a > b, `assert_greater_than: ${d ?? ""} ${a} > ${b}`); }
function assert_less_than_equal(a, b, d) { assert(a <= b, `assert_less_than_equal: ${d ?? ""} ${a} <= ${b}`); }
function assert_greater_than_equal(a, b, d) { assert(a >= b, `assert_greater_than_equal: ${d ?? ""} ${a} >= ${b}`); }
function assert_approx_equals(a, e, eps, d) { assert(Math.abs(a - e) <= eps, `assert_approx_equals: ${d ?? ""} ${a} ~ ${e}`); }
function assert_regexp_match(a, re, d) { assert(re.test(a), `assert_regexp_match: ${d ?? ""} ${format_value(a)}`); }
function assert_own_property(o, p, d) { assert(Object.prototype.hasOwnProperty.call(o, p), `assert_own_property: ${d ?? ""} ${String(p)}`); }
function assert_not_own_property(o, p, d) { assert(!Object.prototype.hasOwnProperty.call(o, p), `assert_not_own_property: ${d ?? ""} ${String(p)}`); }
function assert_inherits(o, p, d) { assert(!Object.prototype.hasOwnProperty.call(o, p) && p in o, `assert_inherits: ${d ?? ""} ${String(p)}`); }
function assert_class_string(o, name, d) {
  assert_equals(Object.prototype.toString.call(o), `[object ${name}]`, d);
}
function assert_unreached(d) { throw new AssertionError(`assert_unreached: ${d ?? ""}`); }
function assert_implements(cond, d) { assert(cond, `assert_implements: ${d ?? ""}`); }
function assert_implements_optional(cond, d) { assert(cond, `assert_implements_optional: ${d ?? ""}`); }
function assert_throws_js(ctor, fn, d) {
  try {
    fn();
  } catch (e) {
    if (e instanceof AssertionError) throw e;
    assert(e !== null && typeof e === "object" && e.constructor === ctor && e.name === ctor.name,
      `assert_throws_js: ${d ?? ""} expected ${ctor.name}, got ${format_value(e)}`);
    return e;
  }
  throw new AssertionError(`assert_throws_js: ${d ?? ""} did not throw`);
}
function assert_throws_exactly(value, fn, d) {
  try {
    fn();
  } catch (e) {
    if (e instanceof AssertionError) throw e;
    assert(same(e, value), `assert_throws_exactly: ${d ?? ""} threw ${format_value(e)}`);
    return;
  }
  throw new AssertionError(`assert_throws_exactly: ${d ?? ""} did not throw`);
}
function assert_throws_dom(name, fn, d) {
  try {
    fn();
  } catch (e) {
    if (e instanceof AssertionError) throw e;
    assert(e instanceof DOMException && (e.name === name || e.code === DOMException[name]),
      `assert_throws_dom: ${d ?? ""} expected ${name}, got ${format_value(e)}`);
    return;
  }
  throw new AssertionError(`assert_throws_dom: ${d ?? ""} did not throw`);
}
function promise_rejects_js(t, ctor, p, d) {
  return p.then(() => assert_unreached(`promise_rejects_js: ${d ?? ""} should reject`),
    (e) => assert_throws_js(ctor, () => { throw e; }, d));
}
function promise_rejects_exactly(t, value, p, d) {
  return p.then(() => assert_unreached(`promise_rejects_exactly: ${d ?? ""} should reject`),
    (e) => assert_throws_exactly(value, () => { throw e; }, d));
}
function promise_rejects_dom(t, name, p, d) {
  return p.then(() => assert_unreached(`promise_rejects_dom: ${d ?? ""} should reject`),
    (e) => assert_throws_dom(name, () => { throw e; }, d));
}

class Test {
  constructor(name) {
    this.name = name;
    this._cleanups = [];
    this._done = false;
    this._resolve = null;
    this._reject = null;
    this.phase = 0;
  }
  step(fn, thisObj, ...args) {
    if (this._done) return undefined;
    try {
      return fn.apply(thisObj, args);
    } catch (e) {
      this._fail(e);
      return undefined;
    }
  }
  step_func(fn, thisObj) {
    return (...args) => this.step(fn, thisObj === undefined ? this : thisObj, ...args);
  }
  step_func_done(fn, thisObj) {
    return (...args) => {
      if (fn) this.step(fn, thisObj === undefined ? this : thisObj, ...args);
      this.done();
    };
  }
  unreached_func(d) {
    return this.step_func(() => assert_unreached(d));
  }
  step_timeout(fn, ms, ...args) {
    return setTimeout(this.step_func(fn), ms, ...args);
  }
  add_cleanup(fn) {
    this._cleanups.push(fn);
  }
  done() {
    if (this._done) return;
    this._done = true;
    if (this._resolve) this._resolve();
  }
  _fail(e) {
    if (this._done) return;
    this._done = true;
    if (this._reject) this._reject(e);
  }
}

function __add(kind, fn, name) {
  __tests.push({ kind, fn, name: name ?? `test ${__tests.length}` });
}
function test(fn, name) { __add("sync", fn, name); }
function promise_test(fn, name) { __add("promise", fn, name); }
function async_test(fn, name) {
  if (typeof fn === "string") {
    // async_test(name) returns a Test driven from the outside: not supported here.
    const t = new Test(fn);
    __add("external", t, fn);
    return t;
  }
  __add("async", fn, name);
  return undefined;
}
function setup() {}
function done() {}
function step_timeout(fn, ms, ...args) { return setTimeout(fn, ms, ...args); }
// What testharness.js tells tests about where they run: a worker-like global.
const GLOBAL = {
  isWindow: () => false,
  isWorker: () => true,
  isShadowRealm: () => false,
};
self.GLOBAL = GLOBAL;

async function __runOne(entry) {
  const t = new Test(entry.name);
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("TIMEOUT")), TEST_TIMEOUT_MS); });
  try {
    if (entry.kind === "sync") {
      entry.fn.call(t, t);
    } else if (entry.kind === "promise") {
      await Promise.race([Promise.resolve(entry.fn.call(t, t)), timeout]);
    } else if (entry.kind === "async") {
      const finished = new Promise((resolve, reject) => { t._resolve = resolve; t._reject = reject; });
      t.step(entry.fn, t, t);
      await Promise.race([finished, timeout]);
    } else {
      return ["NOTRUN", "async_test(name) is not supported by this harness"];
    }
    return ["PASS", ""];
  } catch (e) {
    if (e instanceof Error && e.message === "TIMEOUT") return ["TIMEOUT", ""];
    return ["FAIL", format_value(e)];
  } finally {
    clearTimeout(timer);
    for (const cleanup of t._cleanups) {
      try {
        await cleanup();
      } catch {
        // A cleanup's failure does not change the test's result.
      }
    }
  }
}

addEventListener("fetch", (event) => {
  event.respondWith((async () => {
    for (const entry of __tests) {
      const [status, message] = await __runOne(entry);
      __results.push([entry.name, status, message]);
    }
    return new Response(JSON.stringify(__results));
  })());
});
